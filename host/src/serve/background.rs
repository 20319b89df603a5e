//! The pieces of `crabpot serve` that run in the background until shutdown: the channel
//! adapters, the proxy's usage records, and the waits of the shutdown itself.

use crate::channels::Channels;
use crate::db::DbThread;
use crate::db::central;
use crate::edge::ChannelContext;
use crate::proxy::UsageRecord;
use protocol::SessionId;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Writes the proxy's usage records to the central DB until shutdown (the proxy, which holds
/// the sender, lives as long as `serve` itself).
pub(super) async fn persist_usage(
    central: Arc<DbThread<rusqlite::Connection>>,
    mut usage: mpsc::UnboundedReceiver<UsageRecord>,
    shutdown: CancellationToken,
) {
    loop {
        let record = tokio::select! {
            record = usage.recv() => match record {
                Some(record) => record,
                None => return,
            },
            _ = shutdown.cancelled() => return,
        };
        let row = central::UsageRow {
            session_id: SessionId::new(record.session_id.as_str()),
            agent_group_id: record.agent_group_id.clone(),
            model: record.model.clone(),
            failed: !record.completed || record.status >= 400,
            input_tokens: i64::try_from(record.input_tokens).unwrap_or(i64::MAX),
            output_tokens: i64::try_from(record.output_tokens).unwrap_or(i64::MAX),
            estimated: record.estimated,
        };
        if let Err(e) = central
            .call(move |conn| central::record_usage(conn, &row))
            .await
        {
            tracing::warn!(error = %e, "recording usage failed");
        }
    }
}

/// Waits for `work` at most `limit`, and says so in the log when it did not finish.
pub(super) async fn bounded<T>(
    what: &str,
    limit: Duration,
    work: impl std::future::Future<Output = T>,
) {
    if tokio::time::timeout(limit, work).await.is_err() {
        tracing::warn!(
            "shutdown: {what} did not finish within {} ms; going on without it",
            limit.as_millis()
        );
    }
}

pub(super) async fn shutdown_signal() {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

/// Starts every adapter on the host's tracker. An adapter whose start fails for good (a bad
/// token) is logged and shows `failing` in its health; the rest of the host runs on.
pub(super) fn start_channels(
    channels: &Channels,
    context: &ChannelContext,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) {
    for channel in channels.all() {
        let channel_type = channel.channel_type().to_owned();
        let run = Arc::clone(&channel).start(context.clone(), shutdown.clone());
        tasks.spawn(async move {
            if let Err(e) = run.await {
                tracing::error!(channel = %channel_type, error = %e, "the channel adapter failed to start; the host runs on without it");
            }
        });
    }
}
