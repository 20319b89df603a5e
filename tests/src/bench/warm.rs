//! Warm latency: the time from an inbound message to its reply delivered, with the session's
//! container already running and the fake model answering at once, in either wake mode
//! (file events, or polling at NanoClaw's 1 s intervals, `CRABPOT_WAKE_MODE=poll`).
//!
//! One host, one `cli.sock` connection, `n` sequential turns after one warm-up turn (which
//! starts the container and is excluded). Each sample is the time from writing the message to
//! the `reply` line. The fake model's own share is measured afterwards by replaying the last
//! model request straight to the fake, and its median is subtracted ([`WarmRun::added`]).
//! The same host gives the idle RSS of the host (fresh, before any message) and of the
//! agent-runner inside its container (after the turns).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bollard::Docker;

use super::cleanup::register_install;
use super::cli_client::CliClient;
use super::cli_client::TurnTiming;
use super::commit_watch::CommitWatch;
use super::resources::{cpu_millis, rss_kib, runner_pid};
use super::stats::Distribution;
use super::{Bench, fake_model_time_ms};
use crate::docker::list_containers_by_label;
use crate::fake_model::FakeModel;
use crate::host_process::{HostOptions, HostProcess, INSTALL_LABEL, ModelConfig};

/// How long one warm turn may take before the run fails.
const TURN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the host settles after start before its idle RSS is read.
const SETTLE: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WakeMode {
    Events,
    Poll,
}

impl WakeMode {
    fn as_env(self) -> &'static str {
        match self {
            WakeMode::Events => "events",
            WakeMode::Poll => "poll",
        }
    }
}

/// What one warm run measured.
#[derive(Clone, Debug)]
pub struct WarmRun {
    /// Message written -> reply line, as seen by the client.
    pub end_to_end: Distribution,
    /// Message written -> `accepted` (durable in `inbound.db`).
    pub accepted: Distribution,
    /// Where the time of a turn goes, in order; see [`Phases`].
    pub phases: Phases,
    /// The fake model's own time per request (median of direct replays), in ms.
    pub model_ms: f64,
    /// The host's RSS after start, before any message.
    pub host_rss_idle_kib: u64,
    /// The host's RSS after the turns, with one container running.
    pub host_rss_after_kib: u64,
    /// The agent-runner's RSS, idle after the turns.
    pub runner_rss_kib: u64,
    /// CPU time the host and the runner used per turn (user + system).
    pub host_cpu_ms_per_turn: f64,
    pub runner_cpu_ms_per_turn: f64,
}

impl WarmRun {
    /// The added latency: end to end minus the model's own time.
    pub fn added(&self) -> Distribution {
        self.end_to_end.minus(self.model_ms)
    }
}

pub async fn measure(
    bench: &Bench,
    docker: &Docker,
    mode: WakeMode,
    n_messages: usize,
) -> anyhow::Result<WarmRun> {
    let fake = FakeModel::start()?;
    let options = HostOptions {
        model: Some(ModelConfig::openai(&fake)),
        image: Some(bench.image.clone()),
        binary: Some(bench.crabpot_bin.clone()),
        rust_log: Some("info".to_owned()),
        ..HostOptions::default()
    }
    .env("CRABPOT_WAKE_MODE", mode.as_env())
    .env("CRABPOT_IDLE_TIMEOUT_SECS", "3600");
    let host = HostProcess::start(options).await?;
    register_install(host.install_id());
    let host_pid = host.pid().context("the host is not running")?;
    tokio::time::sleep(SETTLE).await;
    let host_rss_idle_kib = rss_kib(host_pid)?;

    let mut client = CliClient::connect(&host.cli_socket()).await?;
    client
        .turn("warm-up", None, Duration::from_secs(90))
        .await
        .with_context(|| format!("the warm-up turn; host log:\n{}", host.log_tail(40)))?;
    let runner = runner_of(docker, host.install_id()).await?;
    let cpu_before = (cpu_millis(host_pid)?, cpu_millis(runner)?);
    let mut end_to_end = Vec::with_capacity(n_messages);
    let mut accepted = Vec::with_capacity(n_messages);
    let watch = CommitWatch::start(&host.session_dir("main")?.join("out"))?;
    let mut phases = PhaseSamples::default();
    for i in 0..n_messages {
        watch.drain();
        let text = format!("warm {i}");
        let turn = client
            .turn(&text, None, TURN_TIMEOUT)
            .await
            .with_context(|| format!("host log:\n{}", host.log_tail(40)))?;
        if !turn.replies.iter().any(|reply| reply.contains(&text)) {
            bail!("turn {i} got {:?}, not the echo of {text:?}", turn.replies);
        }
        let reply_ms = turn.first_reply.as_secs_f64() * 1e3;
        end_to_end.push(reply_ms);
        accepted.push(turn.accepted.as_secs_f64() * 1e3);
        if let Some(request) = fake.requests().last() {
            phases.add(&turn, request.received_at, &watch.drain());
        }
    }

    let turns = n_messages.max(1) as f64;
    let host_cpu_ms_per_turn = (cpu_millis(host_pid)? - cpu_before.0) / turns;
    let runner_cpu_ms_per_turn = (cpu_millis(runner)? - cpu_before.1) / turns;
    let model_ms = fake_model_time_ms(&fake).await?;
    let host_rss_after_kib = rss_kib(host_pid)?;
    tokio::time::sleep(SETTLE).await;
    let runner_rss_kib = rss_kib(runner)?;
    Ok(WarmRun {
        end_to_end: Distribution::from_millis(end_to_end),
        accepted: Distribution::from_millis(accepted),
        phases: phases.finish(),
        model_ms,
        host_rss_idle_kib,
        host_rss_after_kib,
        runner_rss_kib,
        host_cpu_ms_per_turn,
        runner_cpu_ms_per_turn,
    })
}

/// A warm turn split at what can be seen from outside: the client's `accepted`, the runner's
/// claim commit and reply commit in `outbound.db` ([`CommitWatch`]), and the model request's
/// arrival at the fake. Medians of each part, in ms.
#[derive(Clone, Debug, Default)]
pub struct Phases {
    /// Message written -> `accepted`: the host routed it and `inbound.db` committed.
    pub route: Distribution,
    /// `accepted` -> the runner's claim committed: wake, read, claim.
    pub wake_and_claim: Distribution,
    /// Claim -> model request at the fake: prompt, runner -> proxy -> upstream.
    pub claim_to_model: Distribution,
    /// Model request -> reply committed: the answer streamed back, the runner's write.
    pub model_to_reply_commit: Distribution,
    /// Reply committed -> reply line at the client: the host notices, checks, delivers.
    pub delivery: Distribution,
}

#[derive(Default)]
struct PhaseSamples {
    route: Vec<f64>,
    wake_and_claim: Vec<f64>,
    claim_to_model: Vec<f64>,
    model_to_reply_commit: Vec<f64>,
    delivery: Vec<f64>,
}

impl PhaseSamples {
    /// Adds one turn when the commits around its model request were seen.
    fn add(&mut self, turn: &TurnTiming, request_at: Instant, commits: &[Instant]) {
        let accepted = turn.started + turn.accepted;
        let replied = turn.started + turn.first_reply;
        let claim = commits
            .iter()
            .find(|at| **at >= accepted && **at <= request_at);
        let reply = commits
            .iter()
            .rev()
            .find(|at| **at >= request_at && **at <= replied);
        let (Some(claim), Some(reply)) = (claim, reply) else {
            return;
        };
        let ms =
            |from: Instant, to: Instant| to.saturating_duration_since(from).as_secs_f64() * 1e3;
        self.route.push(turn.accepted.as_secs_f64() * 1e3);
        self.wake_and_claim.push(ms(accepted, *claim));
        self.claim_to_model.push(ms(*claim, request_at));
        self.model_to_reply_commit.push(ms(request_at, *reply));
        self.delivery.push(ms(*reply, replied));
    }

    fn finish(self) -> Phases {
        Phases {
            route: Distribution::from_millis(self.route),
            wake_and_claim: Distribution::from_millis(self.wake_and_claim),
            claim_to_model: Distribution::from_millis(self.claim_to_model),
            model_to_reply_commit: Distribution::from_millis(self.model_to_reply_commit),
            delivery: Distribution::from_millis(self.delivery),
        }
    }
}

/// The pid of the install's one agent-runner.
async fn runner_of(docker: &Docker, install_id: &str) -> anyhow::Result<u32> {
    let containers = list_containers_by_label(docker, INSTALL_LABEL, install_id).await?;
    let id = containers
        .first()
        .and_then(|container| container.id.clone())
        .context("the session's container is gone")?;
    runner_pid(docker, &id).await
}
