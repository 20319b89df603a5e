//! One long conversation: the host's CPU time per turn early on and late, to show that a
//! turn does not cost the host more as the conversation grows (the delivery pass reads acks
//! from a cursor, rows above a high-water mark, and nothing else of the file's history).
//!
//! One host, one chat, `turns` sequential turns with the fake model answering at once. The
//! host's CPU is read around a window of [`WINDOW`] turns ending at turn 10 and at the last
//! turn, from the scheduler's nanosecond counters of every host thread
//! (`/proc/<pid>/task/*/schedstat`): `/proc/<pid>/stat` counts in 10 ms ticks, too coarse for
//! a few milliseconds a turn. (A thread that exits inside a window takes its share with it;
//! the host's threads live for the whole run.)

use std::time::Duration;

use anyhow::{Context, bail};

use super::Bench;
use super::cleanup::register_install;
use super::cli_client::CliClient;
use crate::fake_model::FakeModel;
use crate::host_process::{HostOptions, HostProcess, ModelConfig};

/// Turns per measured window.
pub const WINDOW: usize = 10;
/// How long one turn may take before the run fails.
const TURN_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
pub struct ConversationRun {
    pub turns: usize,
    /// Host CPU per turn over turns 1..=10.
    pub early_cpu_ms: f64,
    /// Host CPU per turn over the last [`WINDOW`] turns.
    pub late_cpu_ms: f64,
}

impl ConversationRun {
    pub fn ratio(&self) -> f64 {
        self.late_cpu_ms / self.early_cpu_ms.max(1e-6)
    }
}

pub async fn measure(bench: &Bench, turns: usize) -> anyhow::Result<ConversationRun> {
    if turns < 2 * WINDOW {
        bail!("a conversation of {turns} turns is shorter than two windows of {WINDOW}");
    }
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
    let pid = host.pid().context("the host is not running")?;
    let mut client = CliClient::connect(&host.cli_socket()).await?;
    // The warm-up starts the container; the windows count warm turns only.
    client
        .turn("warm-up", None, Duration::from_secs(90))
        .await
        .with_context(|| format!("the warm-up turn; host log:\n{}", host.log_tail(40)))?;
    let early_start = cpu_nanos(pid)?;
    let mut early = 0;
    let mut late_start = 0;
    let mut late = 0;
    for turn in 1..=turns {
        if turn == turns - WINDOW + 1 {
            late_start = cpu_nanos(pid)?;
        }
        let text = format!("turn {turn}");
        let timing = client
            .turn(&text, None, TURN_TIMEOUT)
            .await
            .with_context(|| format!("turn {turn}; host log:\n{}", host.log_tail(40)))?;
        if !timing.replies.iter().any(|reply| reply.contains(&text)) {
            bail!("turn {turn} got {:?}, not its echo", timing.replies);
        }
        if turn == WINDOW {
            early = cpu_nanos(pid)?.saturating_sub(early_start);
        }
        if turn == turns {
            late = cpu_nanos(pid)?.saturating_sub(late_start);
        }
    }
    let per_turn_ms = |nanos: u64| nanos as f64 / 1e6 / WINDOW as f64;
    Ok(ConversationRun {
        turns,
        early_cpu_ms: per_turn_ms(early),
        late_cpu_ms: per_turn_ms(late),
    })
}

/// CPU time of every thread of `pid` so far, in nanoseconds (the first field of each
/// thread's `schedstat`: time spent on a CPU).
pub fn cpu_nanos(pid: u32) -> anyhow::Result<u64> {
    let dir = format!("/proc/{pid}/task");
    let mut total = 0u64;
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let path = entry?.path().join("schedstat");
        // A thread that exited between the listing and the read has nothing left to count.
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let nanos: u64 = text
            .split_whitespace()
            .next()
            .and_then(|field| field.parse().ok())
            .with_context(|| format!("{} is not a schedstat line", path.display()))?;
        total += nanos;
    }
    Ok(total)
}
