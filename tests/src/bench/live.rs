//! First streamed text: from the fake model handing the first chunk of a reply to its
//! connection to the client seeing the first live draft on `cli.sock`, warm. The path in
//! between is the runner's stream parse, its live post on the proxy socket, the host's live
//! sink, the bridge's stream and the cli channel's draft line.
//!
//! Each turn's reply streams in chunks [`CHUNK_GAP`] apart, so the first chunk is alone on the
//! wire and the first draft can only be its text. Both ends are clocked in this process
//! ([`crate::fake_model::SentChunk::sent_at`] and the client's own `Instant`s).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::Bench;
use super::cleanup::register_install;
use super::cli_client::CliClient;
use super::stats::Distribution;
use crate::fake_model::{FakeModel, Reply};
use crate::host_process::{HostOptions, HostProcess, ModelConfig};

/// The gap between two chunks of a reply.
const CHUNK_GAP: Duration = Duration::from_millis(150);
/// Characters per chunk.
const CHUNK_CHARS: usize = 12;
const TURN_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn measure(bench: &Bench, turns: usize) -> anyhow::Result<Distribution> {
    let fake = FakeModel::start()?;
    let options = HostOptions {
        model: Some(ModelConfig::openai(&fake)),
        image: Some(bench.image.clone()),
        binary: Some(bench.crabpot_bin.clone()),
        rust_log: Some("info".to_owned()),
        ..HostOptions::default()
    }
    .env("CRABPOT_IDLE_TIMEOUT_SECS", "3600");
    let host = HostProcess::start(options).await?;
    register_install(host.install_id());
    let mut client = CliClient::connect(&host.cli_socket()).await?;
    client
        .turn("warm-up", None, Duration::from_secs(90))
        .await
        .with_context(|| format!("the warm-up turn; host log:\n{}", host.log_tail(40)))?;
    let mut samples = Vec::with_capacity(turns);
    for turn in 0..turns {
        let text = format!("streamed reply {turn:04} in three chunks");
        fake.push(Reply::text(text.clone()).streamed_slowly(CHUNK_CHARS, CHUNK_GAP));
        let requests_before = fake.requests().len();
        let timing = client
            .turn(&format!("stream {turn}"), None, TURN_TIMEOUT)
            .await
            .with_context(|| format!("turn {turn}; host log:\n{}", host.log_tail(40)))?;
        let draft_at = timing.started
            + timing
                .first_draft
                .with_context(|| format!("turn {turn} showed no draft before its reply"))?;
        let first_chunk = fake
            .sent_chunks()
            .into_iter()
            .find(|chunk| chunk.request_index >= requests_before && !chunk.text.is_empty())
            .map(|chunk| chunk.sent_at)
            .with_context(|| format!("the fake sent no chunk for turn {turn}"))?;
        if !timing.replies.iter().any(|reply| reply.contains(&text)) {
            bail!("turn {turn} got {:?}, not {text:?}", timing.replies);
        }
        samples.push(since(first_chunk, draft_at));
    }
    Ok(Distribution::from_durations(&samples))
}

fn since(from: Instant, to: Instant) -> Duration {
    to.saturating_duration_since(from)
}
