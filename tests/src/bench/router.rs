//! Router throughput, in process: the host's own [`Router`], central DB thread and
//! [`SessionStore`] on a data dir on the machine's disk, `n_sessions` chats each wired to
//! `main` in `shared` mode (so each chat is its own session), and a [`Supervisor`] over the
//! [`RecordingRuntime`] whose container cap is zero, so routing wakes no container (every
//! wake only queues). Every routed message is durable when `route` returns, as in the host.
//!
//! Next to it, in the same folder and the same run, the raw rate of single-row INSERT commits
//! into one SQLite file with `journal_mode=DELETE` and `synchronous=FULL`: the same schema
//! and pragmas as `inbound.db`, written with plain SQL. Raw commits and routing alternate in
//! rounds, so drift in the disk or in the machine's load hits both alike.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use host::config::WakeMode;
use host::db::DbThread;
use host::db::central::{self, NewWiring, SessionMode};
use host::edge::InboundEvent;
use host::proxy::Proxy;
use host::router::Router;
use host::runtime::{ContainerLimits, ContainerRuntime, RecordingRuntime};
use host::session::SessionStore;
use host::supervisor::{Supervisor, SupervisorConfig, SupervisorParts};
use protocol::{Sender, SessionConfig};
use rusqlite::Connection;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const CHANNEL: &str = "bench";
const GROUP: &str = "main";
/// Raw commits and routing alternate in this many rounds.
const ROUNDS: usize = 5;

/// What the router run measured.
#[derive(Clone, Debug)]
pub struct RouterRun {
    pub n_sessions: usize,
    /// First message into each chat: creates the session, its folder and both files.
    pub new_session_rate: f64,
    pub n_routed: usize,
    pub senders: usize,
    /// Steady-state messages per second into existing sessions.
    pub routed_rate: f64,
    /// The same with one sender at a time.
    pub sequential_rate: f64,
    pub n_raw: usize,
    pub raw_rate: f64,
}

impl RouterRun {
    pub fn ratio(&self) -> f64 {
        self.routed_rate / self.raw_rate
    }
}

/// What to run.
pub struct RouterPlan {
    pub n_sessions: usize,
    pub n_messages: usize,
    pub n_raw: usize,
    /// Concurrent senders, as several platform connections would be.
    pub senders: usize,
}

pub async fn measure(work_dir: &Path, plan: &RouterPlan) -> anyhow::Result<RouterRun> {
    let dir = work_dir.join(format!("router-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let result = measure_in(&dir, plan).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn measure_in(dir: &Path, plan: &RouterPlan) -> anyhow::Result<RouterRun> {
    let raw_path = dir.join("raw.db");
    let host = InProcessHost::start(dir).await?;
    host.wire_chats(plan.n_sessions).await?;
    let events: Vec<InboundEvent> = (0..plan.n_sessions).map(|i| event(i, 0)).collect();
    let (created, creation_time) = route_all(&host.router, events, plan.senders).await?;

    let sequential_n = plan.n_messages.min(plan.n_sessions).max(1);
    let events: Vec<InboundEvent> = (0..sequential_n).map(|i| event(i, 1)).collect();
    let (sequential, sequential_time) = route_all(&host.router, events, 1).await?;

    // Raw commits and routing take turns, so drift in the disk or the machine's load hits both.
    let (mut n_raw, mut raw_time) = (0, Duration::ZERO);
    let (mut routed, mut routed_time) = (0, Duration::ZERO);
    for round in 0..ROUNDS {
        let raw_chunk = share(plan.n_raw, round);
        let (n, took) = raw_commits(raw_path.clone(), n_raw, raw_chunk).await?;
        (n_raw, raw_time) = (n_raw + n, raw_time + took);
        let first = routed;
        let events: Vec<InboundEvent> = (first..first + share(plan.n_messages, round))
            .map(|i| event(i % plan.n_sessions, 2 + i / plan.n_sessions))
            .collect();
        let (n, took) = route_all(&host.router, events, plan.senders).await?;
        (routed, routed_time) = (routed + n, routed_time + took);
    }
    host.shutdown();
    Ok(RouterRun {
        n_sessions: plan.n_sessions,
        new_session_rate: rate(created, creation_time),
        n_routed: routed,
        senders: plan.senders,
        routed_rate: rate(routed, routed_time),
        sequential_rate: rate(sequential, sequential_time),
        n_raw,
        raw_rate: rate(n_raw, raw_time),
    })
}

/// Round `round`'s share of `total` over [`ROUNDS`] rounds.
fn share(total: usize, round: usize) -> usize {
    total / ROUNDS + usize::from(round < total % ROUNDS)
}

fn rate(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// The host's routing pieces, wired as `crabpot serve` wires them, without Docker.
struct InProcessHost {
    central: Arc<DbThread<Connection>>,
    sessions: Arc<SessionStore>,
    router: Arc<Router>,
    shutdown: CancellationToken,
}

impl InProcessHost {
    async fn start(dir: &Path) -> anyhow::Result<InProcessHost> {
        let central_path = dir.join("crabpot.db");
        let central = Arc::new(
            DbThread::spawn("central", move || central::open(&central_path))
                .context("opening the central DB")?,
        );
        let sessions =
            SessionStore::start(dir.join("sessions"), None).context("starting the store")?;
        let (usage_tx, _usage_rx) = mpsc::unbounded_channel();
        let proxy = Proxy::new(None, usage_tx).context("building the proxy")?;
        let (out_tx, _out_rx) = mpsc::unbounded_channel();
        let (notice_tx, _notice_rx) = mpsc::unbounded_channel();
        let shutdown = CancellationToken::new();
        let runtime: Arc<dyn ContainerRuntime> = Arc::new(RecordingRuntime::new());
        let supervisor = Supervisor::new(
            SupervisorConfig {
                install_id: "bench-router".to_owned(),
                image: "never-started".to_owned(),
                toolbox_image: "never-started".to_owned(),
                disk: host::supervisor::DiskSettings::off("the router bench starts no container"),
                limits: ContainerLimits::default(),
                // Zero slots: a wake only queues, so no container is ever started.
                max_containers: 0,
                groups_dir: PathBuf::from("/nonexistent"),
                idle_timeout: Duration::from_secs(3600),
                heartbeat_stale: Duration::from_secs(3600),
                agent_log: "info".into(),
                wake_mode: WakeMode::Events,
                session_config: SessionConfig::default(),
            },
            SupervisorParts {
                runtime,
                sessions: Arc::clone(&sessions),
                central: Arc::clone(&central),
                proxy,
                tasks: TaskTracker::new(),
                shutdown: shutdown.clone(),
                out_changed: out_tx,
                notices: notice_tx,
            },
        );
        let router = Router::new(
            Arc::clone(&central),
            Arc::clone(&sessions),
            supervisor,
            SessionConfig::default(),
        );
        Ok(InProcessHost {
            central,
            sessions,
            router,
            shutdown,
        })
    }

    /// `n` chats `bench/chat-<i>`, each wired to `main` in `shared` mode, engaging on all.
    async fn wire_chats(&self, n: usize) -> anyhow::Result<()> {
        self.central
            .call(move |conn| {
                let tx = conn.transaction()?;
                let group = central::ensure_agent_group(&tx, GROUP, "Main")?;
                for i in 0..n {
                    let name = format!("chat-{i}");
                    let (chat, _) =
                        central::ensure_messaging_group(&tx, CHANNEL, &name, &name, false)?;
                    central::ensure_wiring(
                        &tx,
                        &chat,
                        &group.id,
                        &NewWiring {
                            session_mode: SessionMode::Shared,
                            engage_mode: "pattern".into(),
                            engage_pattern: Some(".*".into()),
                            priority: 0,
                            destination_name: name,
                        },
                    )?;
                }
                tx.commit()?;
                Ok(())
            })
            .await
            .context("wiring the chats")?;
        Ok(())
    }

    fn shutdown(&self) {
        self.shutdown.cancel();
        self.sessions.shutdown();
        self.central.shutdown();
    }
}

/// Message `n` into chat `chat`.
fn event(chat: usize, n: usize) -> InboundEvent {
    InboundEvent {
        channel_type: CHANNEL.to_owned(),
        platform_id: format!("chat-{chat}"),
        thread_id: None,
        platform_message_id: format!("m-{chat}-{n}"),
        sender: Sender {
            id: format!("{CHANNEL}:user-{chat}"),
            name: Some("bench user".to_owned()),
        },
        text: format!("message {n} into chat {chat}: a line of ordinary length for a chat"),
        attachments: Vec::new(),
        is_mention: true,
        is_group: false,
        chat_name: None,
        uploads: Vec::new(),
    }
}

/// Routes every event with `senders` concurrent tasks (event `i` by task `i % senders`, in
/// order); returns how many rows were written and how long it took.
async fn route_all(
    router: &Arc<Router>,
    events: Vec<InboundEvent>,
    senders: usize,
) -> anyhow::Result<(usize, Duration)> {
    let senders = senders.max(1);
    let mut lanes: Vec<Vec<InboundEvent>> = vec![Vec::new(); senders];
    for (i, event) in events.into_iter().enumerate() {
        lanes[i % senders].push(event);
    }
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for lane in lanes {
        let router = Arc::clone(router);
        tasks.spawn(async move {
            let mut written = 0;
            for event in lane {
                let routed = router.route(event).await?;
                anyhow::ensure!(
                    routed.len() == 1,
                    "a message reached {} sessions",
                    routed.len()
                );
                written += routed.len();
            }
            anyhow::Ok(written)
        });
    }
    let mut written = 0;
    while let Some(joined) = tasks.join_next().await {
        written += joined.context("a routing task panicked")??;
    }
    Ok((written, start.elapsed()))
}

/// `n` single-row INSERT commits into `messages_in` of a session-file-shaped database at
/// `path` (the protocol's own schema and pragmas: DELETE journal, FULL sync), numbered from
/// `first`; plain SQL, with nothing of the host around it. Returns `n` and the time taken.
async fn raw_commits(path: PathBuf, first: usize, n: usize) -> anyhow::Result<(usize, Duration)> {
    tokio::task::spawn_blocking(move || -> anyhow::Result<(usize, Duration)> {
        let conn = protocol::schema::open_inbound_writer(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let mut insert = conn.prepare(
            "INSERT INTO messages_in (id, seq, kind, created_at, channel_type, platform_id, content) \
             VALUES (?1, ?2, 'chat', ?3, 'bench', 'chat-raw', ?4)",
        )?;
        let content = r#"{"text":"message 1 into chat 1: a line of ordinary length for a chat","sender":{"id":"bench:user-1","name":"bench user"}}"#;
        let start = Instant::now();
        for i in first..first + n {
            let i = i as i64;
            insert.execute(rusqlite::params![format!("raw-{i}"), i * 2, i, content])?;
        }
        Ok((n, start.elapsed()))
    })
    .await
    .context("the raw commit thread panicked")?
}
