//! Cold start: from the first message of a new session until the session's first model
//! request reaches the fake, split into container create, start, and runner ready.
//!
//! One host with `n` chats wired to `main` (each its own session); each sample is the first
//! message into the next chat, sent once the previous sample has its reply, so it creates
//! the session, its folder and files, and its container while the earlier sessions' containers
//! keep running. The split comes from the host's own log
//! (`RUST_LOG=host=debug`, UTC timestamps): "create" runs from the message being written to
//! the runtime's `created and verified` (routing, session files, proxy socket, Docker create,
//! inspect and policy check), "start" from there to `container started` (Docker start), and
//! "runner ready" from there to the first request at the fake (runner start-up, reading the
//! row, building the request, the proxy hop).

use std::time::{Duration, SystemTime};

use anyhow::Context;

use super::Bench;
use super::chats::start_host_with_chats;
use super::cli_client::CliClient;
use super::clock::{millis_between, parse_rfc3339};
use super::stats::Distribution;
use crate::fake_model::FakeModel;
use crate::host_process::{HostOptions, ModelConfig};

const TURN_TIMEOUT: Duration = Duration::from_secs(90);

/// The parts of the cold starts, one sample per session.
#[derive(Clone, Debug, Default)]
pub struct ColdRun {
    pub total: Distribution,
    pub create: Distribution,
    pub start: Distribution,
    pub runner_ready: Distribution,
    /// Message written -> reply line, for reference.
    pub first_reply: Distribution,
}

pub async fn measure(bench: &Bench, n_sessions: usize) -> anyhow::Result<ColdRun> {
    let fake = FakeModel::start()?;
    let options = HostOptions {
        model: Some(ModelConfig::openai(&fake)),
        image: Some(bench.image.clone()),
        binary: Some(bench.crabpot_bin.clone()),
        rust_log: Some("info,host=debug".to_owned()),
        ..HostOptions::default()
    }
    .env("CRABPOT_MAX_CONTAINERS", (n_sessions + 8).to_string())
    .env("CRABPOT_IDLE_TIMEOUT_SECS", "3600");
    let chats: Vec<String> = (0..n_sessions).map(|i| format!("cold-{i}")).collect();
    let host = start_host_with_chats(options, &chats).await?;
    let mut client = CliClient::connect(&host.cli_socket()).await?;
    let mut run = Samples::default();
    for chat in &chats {
        let turn = client
            .turn(&format!("hello from {chat}"), Some(chat), TURN_TIMEOUT)
            .await
            .with_context(|| {
                format!(
                    "the first message into {chat}; host log:\n{}",
                    host.log_tail(40)
                )
            })?;
        let first_request = fake
            .requests()
            .last()
            .map(|request| request.received_at_system)
            .context("the fake model received no request")?;
        let log = host.log();
        let created = log_time_after(&log, "created and verified", turn.sent_at)?;
        let started = log_time_after(&log, "container started", turn.sent_at)?;
        run.total.push(millis_between(turn.sent_at, first_request));
        run.create.push(millis_between(turn.sent_at, created));
        run.start.push(millis_between(created, started));
        run.ready.push(millis_between(started, first_request));
        run.first_reply.push(turn.first_reply.as_secs_f64() * 1e3);
    }
    Ok(ColdRun {
        total: Distribution::from_millis(run.total),
        create: Distribution::from_millis(run.create),
        start: Distribution::from_millis(run.start),
        runner_ready: Distribution::from_millis(run.ready),
        first_reply: Distribution::from_millis(run.first_reply),
    })
}

#[derive(Default)]
struct Samples {
    total: Vec<f64>,
    create: Vec<f64>,
    start: Vec<f64>,
    ready: Vec<f64>,
    first_reply: Vec<f64>,
}

/// The timestamp of the first log line containing `marker` logged at or after `after`.
fn log_time_after(log: &str, marker: &str, after: SystemTime) -> anyhow::Result<SystemTime> {
    log.lines()
        .filter(|line| line.contains(marker))
        .filter_map(|line| parse_rfc3339(line.split_whitespace().next()?))
        .find(|at| *at >= after)
        .with_context(|| format!("no {marker:?} line in the host log after the message"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_timestamps_in_tracing_lines() {
        let log = "2025-01-02T03:04:05.000100Z  INFO host: starting\n\
                   2025-01-02T03:04:05.250000Z DEBUG session{session_id=s1}: host::runtime: created and verified container=abc\n";
        let start = parse_rfc3339("2025-01-02T03:04:05.000100Z").unwrap();
        let created = log_time_after(log, "created and verified", start).unwrap();
        assert!((millis_between(start, created) - 249.9).abs() < 1e-6);
        assert!(log_time_after(log, "container started", start).is_err());
        let later = parse_rfc3339("2025-01-02T03:04:06Z").unwrap();
        assert!(log_time_after(log, "created and verified", later).is_err());
    }
}
