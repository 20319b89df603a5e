//! Many containers at once: `n` chats, each its own session, each answered by its own
//! container, all running together; then, with every container up, one more message per
//! chat sent in a burst, timing the host's routing (message written -> `accepted`, i.e.
//! durable) and the replies, and checking that every chat is answered. The host's RSS is read
//! while all run, and its CPU once all are idle. Last, with every container still up, one
//! message at a time (the next sent once the last is answered): the reply latency a person
//! sees on a host holding `n` containers, apart from the queueing of a burst of `n` turns on
//! the machine's cores.
//!
//! The chats are `cli` chats `bench-<i>`, wired by [`start_host_with_chats`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bollard::Docker;
use futures_util::StreamExt;
use host::channels::cli::ServerLine;

use super::chats::start_host_with_chats;
use super::cli_client::CliClient;
use super::resources::{cpu_millis, rss_kib};
use super::stats::Distribution;
use super::{Bench, fake_model_time_ms};
use crate::docker::list_containers_by_label;
use crate::fake_model::FakeModel;
use crate::host_process::{HostOptions, HostProcess, INSTALL_LABEL, ModelConfig};

/// How long all first turns together may take (every container starts in this time).
const START_ALL_TIMEOUT: Duration = Duration::from_secs(420);
/// How long the second round's replies may take.
const ROUND_TIMEOUT: Duration = Duration::from_secs(180);
/// How long the host's CPU is watched with every container idle.
const IDLE_WINDOW: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub struct ConcurrencyRun {
    pub containers: usize,
    /// The most containers of the install seen running at once.
    pub running_peak: usize,
    /// Chats answered in the round with every container up.
    pub answered: usize,
    /// Message -> `accepted` with every container up.
    pub routing: Distribution,
    /// Message -> reply with every container up, all `n` messages sent at once.
    pub reply: Distribution,
    /// Message -> reply with every container up, one message at a time.
    pub paced_reply: Distribution,
    /// From the first message until every chat had its first reply.
    pub all_started_secs: f64,
    pub host_rss_kib: u64,
    /// The host's CPU time per message of the round with every container up.
    pub host_cpu_ms_per_message: f64,
    /// How busy the machine's CPUs were during that round (0..1).
    pub machine_busy: f64,
    /// The host's CPU afterwards, every container up and idle, in percent of one core, over
    /// `idle_window_secs`.
    pub idle_host_cpu_percent: f64,
    pub idle_window_secs: f64,
    /// The fake model's own time per request (median of direct replays), in ms.
    pub model_ms: f64,
}

pub async fn measure(bench: &Bench, docker: &Docker, n: usize) -> anyhow::Result<ConcurrencyRun> {
    let fake = FakeModel::start()?;
    let options = HostOptions {
        model: Some(ModelConfig::openai(&fake)),
        image: Some(bench.image.clone()),
        binary: Some(bench.crabpot_bin.clone()),
        rust_log: Some("info".to_owned()),
        ..HostOptions::default()
    }
    .env("CRABPOT_MAX_CONTAINERS", (n + 50).to_string())
    .env("CRABPOT_IDLE_TIMEOUT_SECS", "3600");
    let chats: Vec<String> = (0..n).map(chat).collect();
    let mut host = start_host_with_chats(options, &chats).await?;
    let result = match rounds(&host, docker, n).await {
        Ok(mut run) => fake_model_time_ms(&fake).await.map(|model_ms| {
            run.model_ms = model_ms;
            run
        }),
        Err(e) => Err(e),
    };
    // Stop the host first, then remove the containers in parallel: one by one would take
    // minutes at this size.
    let _ = host.stop();
    remove_in_parallel(docker, host.install_id()).await;
    let complete = result
        .as_ref()
        .is_ok_and(|run| run.running_peak == n && run.answered == n);
    if !complete {
        // Something was missing: keep the host's whole log next to the report.
        let kept = bench.work_dir.with_file_name("concurrency-host.log");
        if std::fs::copy(host.log_path(), &kept).is_ok() {
            eprintln!(
                "bench: the many-containers host's log is in {}",
                kept.display()
            );
        }
    }
    result
}

fn chat(i: usize) -> String {
    format!("bench-{i}")
}

/// What one round saw.
struct Round {
    routing: Vec<Duration>,
    reply: Vec<Duration>,
    answered: usize,
    elapsed: Duration,
}

async fn rounds(host: &HostProcess, docker: &Docker, n: usize) -> anyhow::Result<ConcurrencyRun> {
    let mut client = CliClient::connect(&host.cli_socket()).await?;
    let first = round(&mut client, n, 1, Pace::Burst, START_ALL_TIMEOUT).await?;
    if first.answered < n {
        bail!(
            "only {} of {n} chats were answered while their containers started",
            first.answered
        );
    }
    let running_peak = count_running(docker, host.install_id()).await?;
    let host_pid = host.pid().context("the host is not running")?;
    let host_rss_kib = rss_kib(host_pid)?;
    let (host_cpu_before, machine_before) = (cpu_millis(host_pid)?, machine_cpu_ticks()?);
    let second = round(&mut client, n, 2, Pace::Burst, ROUND_TIMEOUT).await?;
    let host_cpu_ms_per_message = (cpu_millis(host_pid)? - host_cpu_before) / n.max(1) as f64;
    let machine_after = machine_cpu_ticks()?;
    let busy = machine_after.0.saturating_sub(machine_before.0) as f64;
    let idle = machine_after.1.saturating_sub(machine_before.1) as f64;
    let running_after = count_running(docker, host.install_id()).await?;
    // Every chat is answered: now all containers idle, and an idle session costs the host
    // no CPU (issue 8: the host's own reads must not wake it).
    let idle_cpu_before = cpu_millis(host_pid)?;
    let idle_started = Instant::now();
    tokio::time::sleep(IDLE_WINDOW).await;
    let idle_window_secs = idle_started.elapsed().as_secs_f64();
    let idle_host_cpu_percent = (cpu_millis(host_pid)? - idle_cpu_before) / 10.0 / idle_window_secs;
    let paced = round(&mut client, n, 3, Pace::OneAtATime, ROUND_TIMEOUT).await?;
    if paced.answered < n {
        bail!(
            "only {} of {n} chats were answered one at a time",
            paced.answered
        );
    }
    Ok(ConcurrencyRun {
        containers: n,
        running_peak: running_peak.max(running_after),
        answered: second.answered,
        routing: Distribution::from_durations(&second.routing),
        reply: Distribution::from_durations(&second.reply),
        paced_reply: Distribution::from_durations(&paced.reply),
        all_started_secs: first.elapsed.as_secs_f64(),
        host_rss_kib,
        host_cpu_ms_per_message,
        machine_busy: busy / (busy + idle).max(1.0),
        idle_host_cpu_percent,
        idle_window_secs,
        model_ms: 0.0,
    })
}

/// When a round sends its next message.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pace {
    /// Once the previous one is durable: `n` turns run at once.
    Burst,
    /// Once the previous one is answered: one turn at a time.
    OneAtATime,
}

/// One message into each chat, the next sent as `pace` says; then waits for the replies.
/// Replies are matched by the `[r<round>-<i>]` token they echo.
async fn round(
    client: &mut CliClient,
    n: usize,
    number: usize,
    pace: Pace,
    timeout: Duration,
) -> anyhow::Result<Round> {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut sent_at: HashMap<String, Instant> = HashMap::new();
    let mut routing = Vec::with_capacity(n);
    let mut reply = Vec::with_capacity(n);
    for i in 0..n {
        let token = format!("[r{number}-{i}]");
        let sent = Instant::now();
        client
            .send(&format!("message {token}"), Some(&chat(i)))
            .await?;
        sent_at.insert(token, sent);
        loop {
            match client.next(deadline).await? {
                ServerLine::Accepted { .. } => {
                    routing.push(sent.elapsed());
                    break;
                }
                ServerLine::Reply { text, .. } => note_reply(&text, &mut sent_at, &mut reply),
                ServerLine::TurnComplete { .. }
                | ServerLine::Subscribed { .. }
                | ServerLine::Draft { .. }
                | ServerLine::Typing { .. } => {}
                ServerLine::Error { message, .. } => {
                    bail!("the host refused a message to {}: {message}", chat(i))
                }
            }
        }
        if pace == Pace::OneAtATime {
            let token = format!("[r{number}-{i}]");
            while sent_at.contains_key(&token) {
                match client.next(deadline).await? {
                    ServerLine::Reply { text, .. } => note_reply(&text, &mut sent_at, &mut reply),
                    ServerLine::Error { message, .. } => bail!("the host reported: {message}"),
                    ServerLine::Accepted { .. }
                    | ServerLine::TurnComplete { .. }
                    | ServerLine::Subscribed { .. }
                    | ServerLine::Draft { .. }
                    | ServerLine::Typing { .. } => {}
                }
            }
        }
    }
    while !sent_at.is_empty() && Instant::now() < deadline {
        match client.next(deadline).await {
            Ok(ServerLine::Reply { text, .. }) => note_reply(&text, &mut sent_at, &mut reply),
            Ok(
                ServerLine::Accepted { .. }
                | ServerLine::TurnComplete { .. }
                | ServerLine::Subscribed { .. }
                | ServerLine::Draft { .. }
                | ServerLine::Typing { .. },
            ) => {}
            Ok(ServerLine::Error { message, .. }) => bail!("the host reported: {message}"),
            Err(_) => break,
        }
    }
    Ok(Round {
        answered: reply.len(),
        routing,
        reply,
        elapsed: start.elapsed(),
    })
}

fn note_reply(text: &str, sent_at: &mut HashMap<String, Instant>, reply: &mut Vec<Duration>) {
    // The reply echoes the prompt, which may hold other brackets: try every `[r...]`.
    let tokens = text.match_indices("[r").filter_map(|(open, _)| {
        let close = text[open..].find(']')?;
        Some(&text[open..=open + close])
    });
    for token in tokens {
        if let Some(sent) = sent_at.remove(token) {
            reply.push(sent.elapsed());
            return;
        }
    }
}

async fn count_running(docker: &Docker, install_id: &str) -> anyhow::Result<usize> {
    let containers = list_containers_by_label(docker, INSTALL_LABEL, install_id).await?;
    Ok(containers
        .iter()
        .filter(|container| {
            container
                .state
                .as_ref()
                .is_some_and(|state| state.to_string() == "running")
        })
        .count())
}

/// The machine's CPU ticks so far from `/proc/stat`: (busy, idle + iowait).
fn machine_cpu_ticks() -> anyhow::Result<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("cpu "))
        .context("no cpu line in /proc/stat")?
        .split_whitespace()
        .filter_map(|field| field.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    let total: u64 = fields.iter().take(8).sum();
    Ok((total.saturating_sub(idle), idle))
}

/// Force-removes the install's containers, eight at a time.
async fn remove_in_parallel(docker: &Docker, install_id: &str) {
    let Ok(containers) = list_containers_by_label(docker, INSTALL_LABEL, install_id).await else {
        return;
    };
    let options = bollard::query_parameters::RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    futures_util::stream::iter(containers.into_iter().filter_map(|c| c.id))
        .for_each_concurrent(8, |id| {
            let options = options.clone();
            async move {
                let _ = docker.remove_container(&id, Some(options)).await;
            }
        })
        .await;
}
