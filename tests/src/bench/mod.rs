//! `make bench`: measures the host against the targets of DESIGN §9 on the machine at hand,
//! against the real host binary, real containers and the fake model answering at once, and
//! against a polling baseline (the same host with `CRABPOT_WAKE_MODE=poll`, NanoClaw's 1 s
//! intervals), and reports one [`Report`]: a markdown table on stdout and the same figures as
//! JSON in `data/bench/latest.json`.
//!
//! The parts, one module each: [`resources`] (binary size, start-up, RSS, image size),
//! [`router`] (in-process throughput next to raw SQLite commits), [`warm`] (warm latency in
//! both wake modes), [`cold`] (cold start split), [`concurrency`] (many containers at once).
//! [`fairness`] (one session's flood against another's replies, a backlog's drain rate, and
//! the host's CPU with every container idle, from the concurrency part's containers),
//! [`live`] (the first streamed text), [`conversation`] (host CPU per turn at turn 10 and at
//! turn 500 of one conversation).
//! [`rows`] turns their results into rows and notes. [`Scale`] sizes the runs (`full` is the
//! issue's sizes; `quick` is a look in about a minute). [`cleanup`] makes sure no container
//! outlives the run, even when it is interrupted.

pub mod chats;
pub mod cleanup;
pub mod cli_client;
pub mod clock;
pub mod cold;
pub mod commit_watch;
pub mod concurrency;
pub mod conversation;
pub mod fairness;
pub mod live;
pub mod machine;
pub mod report;
pub mod resources;
pub mod router;
pub mod rows;
pub mod stats;
pub mod warm;

use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use anyhow::Context;
use bollard::Docker;

use crate::fake_model::FakeModel;
use crate::http_client;
use report::{Report, Row};
use stats::Distribution;

/// How big the runs are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// The sizes of the issue: 200 warm messages per mode, 20 cold starts, 1,000 sessions,
    /// 200 containers.
    Full,
    /// Small runs for a quick look.
    Quick,
}

/// The sizes of one scale.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    pub warm_messages: usize,
    pub poll_messages: usize,
    pub cold_sessions: usize,
    pub router_sessions: usize,
    pub router_messages: usize,
    pub raw_commits: usize,
    pub router_senders: usize,
    pub concurrent_containers: usize,
    pub startup_runs: usize,
    /// Victim turns alone and again under a flood.
    pub fairness_turns: usize,
    /// Rows of the backlog drained at once.
    pub backlog_rows: usize,
    /// Warm turns whose reply streams, for the first streamed text.
    pub live_turns: usize,
    /// Turns of the one long conversation (host CPU per turn, early and late).
    pub conversation_turns: usize,
}

impl Scale {
    pub fn sizes(self) -> Sizes {
        match self {
            Scale::Full => Sizes {
                warm_messages: 200,
                poll_messages: 200,
                cold_sessions: 20,
                router_sessions: 1_000,
                router_messages: 5_000,
                raw_commits: 4_000,
                router_senders: 8,
                concurrent_containers: 200,
                startup_runs: 10,
                fairness_turns: 100,
                backlog_rows: 10_000,
                live_turns: 50,
                conversation_turns: 500,
            },
            Scale::Quick => Sizes {
                warm_messages: 30,
                poll_messages: 5,
                cold_sessions: 3,
                router_sessions: 200,
                router_messages: 1_000,
                raw_commits: 1_000,
                router_senders: 8,
                concurrent_containers: 20,
                startup_runs: 3,
                fairness_turns: 20,
                backlog_rows: 2_000,
                live_turns: 10,
                conversation_turns: 60,
            },
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Scale::Full => "full",
            Scale::Quick => "quick",
        }
    }

    /// "full (200 warm + 200 polled messages, ...)".
    pub fn describe(self) -> String {
        let s = self.sizes();
        format!(
            "{} ({} warm + {} polled messages, {} cold starts, {} router sessions, {} containers)",
            self.name(),
            s.warm_messages,
            s.poll_messages,
            s.cold_sessions,
            s.router_sessions,
            s.concurrent_containers
        )
    }
}

/// The parts of a run, for `--only`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// Host binary size and start-up time.
    Startup,
    /// Router throughput and raw SQLite commits (in process, no Docker).
    Router,
    /// Warm latency with file-event wake, host and runner RSS, image size.
    Warm,
    /// Warm latency with polling wake.
    Poll,
    /// Cold start.
    Cold,
    /// Many containers at once, host RSS with them, host CPU with all of them idle.
    Concurrency,
    /// One session's flood against another's replies, and a backlog's drain rate.
    Fairness,
    /// First streamed text: the model's first token to the client's first draft.
    Live,
    /// One long conversation: host CPU per turn early and late.
    Conversation,
}

/// What every part of the run shares.
#[derive(Clone, Debug)]
pub struct Bench {
    pub scale: Scale,
    /// The host binary under test (the release build).
    pub crabpot_bin: PathBuf,
    pub image: String,
    /// Scratch space on the data dir's disk, removed at the end.
    pub work_dir: PathBuf,
    /// Only these parts; all when empty.
    pub only: Vec<Part>,
}

impl Bench {
    fn wants(&self, part: Part) -> bool {
        self.only.is_empty() || self.only.contains(&part)
    }

    /// Runs `work` if the part is wanted, else reports it skipped.
    async fn part<T>(
        &self,
        part: Part,
        what: &str,
        work: impl std::future::Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        if !self.wants(part) {
            anyhow::bail!("skipped (--only)");
        }
        eprintln!("bench: {what} ...");
        let started = Instant::now();
        let result = work.await;
        eprintln!("bench: {what}: {:.1} s", started.elapsed().as_secs_f64());
        result
    }
}

/// How many times the fake's own time is sampled.
const MODEL_REPLAYS: usize = 50;

/// Connects to Docker, or explains why the benchmark cannot run.
pub async fn require_docker() -> anyhow::Result<Docker> {
    crate::docker::connect().await.context(
        "Docker is not reachable: the benchmark runs real containers. Start the Docker engine \
         (`docker info` must work) and run `make bench` again",
    )
}

/// Runs every part in turn. A part that fails becomes a "not measured" row and a note, and
/// the run goes on; the caller decides the exit code from [`Report::rows`].
pub async fn run(bench: &Bench, docker: &Docker) -> anyhow::Result<Report> {
    let started = Instant::now();
    let started_at = SystemTime::now();
    let load_at_start = machine::load_average();
    let sizes = bench.scale.sizes();
    resources::image_size_bytes(docker, &bench.image).await?;
    std::fs::create_dir_all(&bench.work_dir)
        .with_context(|| format!("creating {}", bench.work_dir.display()))?;
    let binary_bytes = std::fs::metadata(&bench.crabpot_bin)
        .map(|m| m.len())
        .with_context(|| format!("reading {}", bench.crabpot_bin.display()));
    let probe = resources::StartupProbe {
        binary: &bench.crabpot_bin,
        image: &bench.image,
        work_dir: &bench.work_dir,
    };
    let startup = bench
        .part(Part::Startup, "host start-up time", async {
            let times = resources::startup_times(&probe, sizes.startup_runs).await?;
            Ok(Distribution::from_durations(&times))
        })
        .await;
    let plan = router::RouterPlan {
        n_sessions: sizes.router_sessions,
        n_messages: sizes.router_messages,
        n_raw: sizes.raw_commits,
        senders: sizes.router_senders,
    };
    let router = bench
        .part(
            Part::Router,
            "router throughput (in process) and raw SQLite commits",
            router::measure(&bench.work_dir, &plan),
        )
        .await;
    let image_bytes = resources::image_size_bytes(docker, &bench.image).await;
    let warm_events = bench
        .part(
            Part::Warm,
            "warm latency, file-event wake",
            warm::measure(bench, docker, warm::WakeMode::Events, sizes.warm_messages),
        )
        .await;
    let warm_poll = bench
        .part(
            Part::Poll,
            "warm latency, polling wake (NanoClaw's 1 s intervals)",
            warm::measure(bench, docker, warm::WakeMode::Poll, sizes.poll_messages),
        )
        .await;
    let cold = bench
        .part(
            Part::Cold,
            "cold start",
            cold::measure(bench, sizes.cold_sessions),
        )
        .await;
    let concurrency = bench
        .part(
            Part::Concurrency,
            "many containers at once",
            concurrency::measure(bench, docker, sizes.concurrent_containers),
        )
        .await;
    let flood = bench
        .part(
            Part::Fairness,
            "another session's replies under one session's flood",
            fairness::measure_flood(bench, sizes.fairness_turns),
        )
        .await;
    let drain = bench
        .part(
            Part::Fairness,
            "backlog drain rate",
            fairness::measure_drain(bench, sizes.backlog_rows),
        )
        .await;
    let live = bench
        .part(
            Part::Live,
            "first streamed text",
            live::measure(bench, sizes.live_turns),
        )
        .await;
    let conversation = bench
        .part(
            Part::Conversation,
            "host CPU per turn in one long conversation",
            conversation::measure(bench, sizes.conversation_turns),
        )
        .await;

    let findings = rows::Findings {
        binary_bytes,
        startup,
        router,
        image_bytes,
        warm_events,
        warm_poll,
        cold,
        concurrency,
        flood,
        drain,
        live,
        conversation,
    };
    let _ = std::fs::remove_dir_all(&bench.work_dir);
    let (rows, notes) = findings.into_rows(bench.scale);
    Ok(Report {
        scale: bench.scale.describe(),
        machine: machine::Machine::describe(docker).await,
        started_at: clock::format_rfc3339(started_at),
        duration_secs: started.elapsed().as_secs_f64(),
        load_at_start,
        load_at_end: machine::load_average(),
        rows,
        notes,
    })
}

/// Whether any row could not be measured.
pub fn has_failures(rows: &[Row]) -> bool {
    rows.iter()
        .any(|row| row.figure.starts_with("not measured"))
}

/// The fake model's own time for one request as the runner makes it: the last recorded
/// request replayed straight to the fake over loopback TCP, [`MODEL_REPLAYS`] times; the
/// median in milliseconds.
pub async fn fake_model_time_ms(fake: &FakeModel) -> anyhow::Result<f64> {
    let last = fake
        .requests()
        .into_iter()
        .last()
        .context("the fake model received no request")?;
    let mut samples = Vec::with_capacity(MODEL_REPLAYS);
    for _ in 0..MODEL_REPLAYS {
        let start = Instant::now();
        let response = http_client::post_json_tcp(fake.addr(), &last.path, &[], &last.body).await?;
        samples.push(start.elapsed());
        anyhow::ensure!(
            response.status.is_success(),
            "the fake answered a replay with {}",
            response.status
        );
    }
    Ok(Distribution::from_durations(&samples).p50())
}
