//! `make crash-test`: kills the real host with SIGKILL at random points around a stream of
//! messages across several sessions, restarts it on the same data dir each time (containers
//! keep running and are adopted), and checks that nothing was lost or duplicated — at the
//! client and in the session files.
//!
//! [`run`] starts a fake model whose replies name the messages they answer ([`tokens`]), a
//! host whose `cli` chats `crash-1..=K` are each wired to `main` as their own session, and the
//! [`client`] that plays the chat platform. Then it kills and restarts the host
//! [`CrashOptions::kills`] times with delays drawn from a seeded [`rng::Rng`], waits for every
//! reply (with a deadline), and reads the [`database`] view. The figures come back as a
//! [`report::CrashReport`].

pub mod client;
pub mod database;
pub mod report;
pub mod rng;
pub mod tokens;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::bench::chats::start_host_with_chats;
use crate::fake_model::FakeModel;
use crate::host_process::{HostOptions, ModelConfig};
use client::{PlannedMessage, SharedTally, Tally};
use report::CrashReport;
use rng::Rng;

/// The agent group every crash chat is wired to.
pub const GROUP: &str = "main";

/// How often the run looks at the tally while it waits for the last replies.
const SETTLE_POLL: Duration = Duration::from_millis(100);

/// How long the session files may lag behind the client once it has every reply.
const DATABASE_GRACE: Duration = Duration::from_secs(15);

/// How a crash run goes.
#[derive(Clone, Debug)]
pub struct CrashOptions {
    pub kills: usize,
    pub seed: u64,
    pub sessions: usize,
    pub messages: usize,
    /// How long the host runs between becoming ready and the next kill.
    pub kill_delay: (Duration, Duration),
    /// How long the host stays dead before it is started again.
    pub dead_time: (Duration, Duration),
    /// The pause between two messages of the stream.
    pub message_gap: (Duration, Duration),
    /// How long to wait for the last replies after the last kill.
    pub reply_deadline: Duration,
    /// The host binary; default as the harness finds it.
    pub binary: Option<PathBuf>,
}

impl Default for CrashOptions {
    fn default() -> Self {
        Self {
            kills: 50,
            seed: 0,
            sessions: 4,
            messages: 200,
            kill_delay: (Duration::from_millis(50), Duration::from_millis(3_000)),
            dead_time: (Duration::ZERO, Duration::from_millis(300)),
            message_gap: (Duration::ZERO, Duration::from_millis(600)),
            reply_deadline: Duration::from_secs(180),
            binary: None,
        }
    }
}

/// Runs one crash test; an error means the run itself could not go on (the host did not come
/// back, Docker is gone), not that something was lost.
pub async fn run(options: &CrashOptions) -> anyhow::Result<CrashReport> {
    let started = Instant::now();
    let rng = Rng::new(options.seed);
    let fake = FakeModel::start()?;
    fake.set_default_reply_fn(tokens::reply_naming);
    let chats: Vec<String> = (1..=options.sessions.max(1))
        .map(|i| format!("crash-{i}"))
        .collect();
    let host_options = HostOptions {
        model: Some(ModelConfig::openai(&fake)),
        binary: options.binary.clone(),
        rust_log: Some("info".into()),
        ..HostOptions::default()
    };
    let mut host = start_host_with_chats(host_options, &chats)
        .await
        .context("starting the host with the crash chats")?;
    eprintln!(
        "crash-test: host up (data dir {}), {} chats, {} messages, {} kills, seed {}",
        host.data_dir().display(),
        chats.len(),
        options.messages,
        options.kills,
        options.seed
    );
    let plan: Vec<PlannedMessage> = (0..options.messages)
        .map(|n| PlannedMessage {
            token: tokens::token(n),
            chat: chats[n % chats.len()].clone(),
        })
        .collect();
    let tally = SharedTally::new(Tally::new(plan));
    let stop = CancellationToken::new();
    let client = tokio::spawn(client::run(
        host.cli_socket(),
        chats.clone(),
        rng.fork(1),
        options.message_gap,
        tally.clone(),
        stop.clone(),
    ));

    let mut kills = rng.fork(2);
    let mut restart_times = Vec::with_capacity(options.kills);
    for kill in 1..=options.kills {
        tokio::time::sleep(kills.duration(options.kill_delay.0, options.kill_delay.1)).await;
        host.kill().with_context(|| format!("kill {kill}"))?;
        tokio::time::sleep(kills.duration(options.dead_time.0, options.dead_time.1)).await;
        let restart = Instant::now();
        host.restart()
            .await
            .with_context(|| format!("restarting the host after kill {kill}"))?;
        restart_times.push(restart.elapsed());
        if kill % 10 == 0 || kill == options.kills {
            let (unsent, sent, accepted, refused) = tally.lock().counts();
            eprintln!(
                "crash-test: {kill}/{} kills; messages unsent {unsent}, awaiting {sent}, accepted {accepted}, refused {refused}",
                options.kills
            );
        }
    }

    let deadline = Instant::now() + options.reply_deadline;
    while !tally.lock().settled() && Instant::now() < deadline {
        tokio::time::sleep(SETTLE_POLL).await;
    }
    let client_settled = tally.lock().settled();
    // The client has all it will get; give the session files a moment to record the last
    // deliveries, then read them.
    let grace = Instant::now() + DATABASE_GRACE;
    let sessions = loop {
        let sessions_dir = host.sessions_dir();
        let sessions =
            tokio::task::spawn_blocking(move || database::read_group(&sessions_dir, GROUP))
                .await
                .context("the session-file reader panicked")??;
        let lost = {
            let tally = tally.lock();
            CrashReport::new(options, &tally, &sessions, &restart_times, started)
                .database
                .lost
        };
        if lost == 0 || Instant::now() >= grace {
            break sessions;
        }
        tokio::time::sleep(SETTLE_POLL).await;
    };
    stop.cancel();
    if let Err(e) = client.await {
        eprintln!("crash-test: the client task failed: {e}");
    }
    let tally = tally.lock();
    let mut report = CrashReport::new(options, &tally, &sessions, &restart_times, started);
    report.client_settled = client_settled;
    if !report.passed() {
        report.host_log_tail = host.log_tail(40);
    }
    Ok(report)
}
