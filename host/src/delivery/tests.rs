//! Delivery end to end over real session files, a real central DB, the recording container
//! runtime and a fake `cli` channel: one session's blocked read delays no other, a timed-out
//! read fails only its session, rows slipped in below the high-water mark are refused (also
//! after a restart), the caps refuse the excess and tell once, a burst of events is one pass,
//! a row nobody can receive waits without counting attempts, and a backlog drains without
//! events. [`Harness`] builds a [`Delivery`] the way `serve` does.

use super::worker::{Backoff, MAX_BACKOFF, MIN_BACKOFF};
use super::*;
use crate::db::central;
use crate::edge::BoxFuture;
use crate::edge::{Capabilities, Channel, ChannelError, ChatAddress, OutgoingMessage};
use crate::proxy::Proxy;
use crate::router::RouterParts;
use crate::router::plan::PlanSettings;
use crate::runtime::{ContainerLimits, RecordingRuntime};
use crate::supervisor::{SupervisorConfig, SupervisorParts};
use protocol::MessageId;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A `cli` adapter that records what it is given; with no terminal "connected" it answers
/// `NoRecipient`.
#[derive(Default)]
struct FakeChannel {
    sent: Mutex<Vec<OutgoingMessage>>,
    disconnected: AtomicBool,
    /// A send of a `slow-` row is under way.
    slow_started: AtomicBool,
}

impl FakeChannel {
    fn sent_ids(&self) -> Vec<String> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .map(|m| m.id.to_string())
            .collect()
    }

    fn texts(&self) -> Vec<String> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .map(|m| m.text.clone())
            .collect()
    }
}

impl Channel for FakeChannel {
    fn channel_type(&self) -> &str {
        "cli"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            edits: true,
            reactions: true,
            files: true,
            max_file_bytes: u64::MAX,
            ..Capabilities::text_only(4000, crate::edge::Markup::Markdown)
        }
    }

    fn deliver<'a>(
        &'a self,
        _to: &'a ChatAddress,
        message: &'a OutgoingMessage,
    ) -> BoxFuture<'a, Result<String, ChannelError>> {
        Box::pin(async move {
            if self.disconnected.load(Ordering::SeqCst) {
                return Err(ChannelError::NoRecipient("no terminal".into()));
            }
            if message.id.as_str().starts_with("slow-") {
                // A platform whose every send takes 2 s.
                self.slow_started.store(true, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            self.sent.lock().unwrap().push(message.clone());
            Ok(format!("p{}", message.seq))
        })
    }

    fn edit<'a>(
        &'a self,
        _to: &'a ChatAddress,
        platform_message_id: &'a str,
        message: &'a OutgoingMessage,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            let mut edit = message.clone();
            edit.text = format!("(edit of {platform_message_id}) {}", message.text);
            self.sent.lock().unwrap().push(edit);
            Ok(())
        })
    }
}

/// Blocks reads of the files whose path contains `blocked` until released, and counts reads.
#[derive(Default)]
struct Gate {
    blocked: Mutex<Option<String>>,
    released: Condvar,
    reads: AtomicUsize,
}

impl Gate {
    fn block(&self, session: &SessionRef) {
        *self.blocked.lock().unwrap() = Some(session.id.to_string());
    }

    fn release(&self) {
        *self.blocked.lock().unwrap() = None;
        self.released.notify_all();
    }

    fn wait(&self, path: &Path) {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let mut blocked = self.blocked.lock().unwrap();
        while blocked
            .as_ref()
            .is_some_and(|id| path.to_string_lossy().contains(id.as_str()))
        {
            blocked = self.released.wait(blocked).unwrap();
        }
    }
}

struct Harness {
    central: Arc<DbThread<Connection>>,
    sessions: Arc<SessionStore>,
    supervisor: Arc<Supervisor>,
    runtime: Arc<RecordingRuntime>,
    channel: Arc<FakeChannel>,
    out_changed: mpsc::UnboundedSender<SessionRef>,
    arrivals: mpsc::UnboundedSender<crate::edge::Arrival>,
    shutdown: CancellationToken,
    run: tokio::task::JoinHandle<()>,
}

impl Harness {
    async fn start(dir: &Path, limits: OutboundLimits, gate: Option<Arc<Gate>>) -> Self {
        let path = dir.join("crabpot.db");
        let central = Arc::new(DbThread::spawn("central", move || central::open(&path)).unwrap());
        std::fs::create_dir_all(dir.join("groups/main")).unwrap();
        let sessions = SessionStore::start(dir.join("sessions"), None).unwrap();
        let runtime = Arc::new(RecordingRuntime::new());
        let (usage, _) = mpsc::unbounded_channel();
        let (out_changed, out_rx) = mpsc::unbounded_channel();
        let (notices, notice_rx) = mpsc::unbounded_channel();
        let (arrivals, arrival_rx) = mpsc::unbounded_channel();
        let shutdown = CancellationToken::new();
        let supervisor = Supervisor::new(
            SupervisorConfig {
                install_id: "t".into(),
                image: "img".into(),
                toolbox_image: "toolbox-img".into(),
                disk: crate::supervisor::DiskSettings::off("unit test"),
                limits: ContainerLimits {
                    memory_bytes: 64 << 20,
                    nano_cpus: 1_000_000_000,
                    pids_limit: 64,
                    tmpfs_tmp_bytes: 1 << 20,
                },
                max_containers: 4,
                groups_dir: dir.join("groups"),
                idle_timeout: Duration::from_secs(600),
                heartbeat_stale: Duration::from_secs(60),
                agent_log: "info".into(),
                wake_mode: crate::config::WakeMode::Events,
                session_config: protocol::SessionConfig::default(),
            },
            SupervisorParts {
                runtime: runtime.clone(),
                sessions: Arc::clone(&sessions),
                central: Arc::clone(&central),
                proxy: Proxy::new(None, usage).unwrap(),
                tasks: tokio_util::task::TaskTracker::new(),
                shutdown: shutdown.clone(),
                out_changed: out_changed.clone(),
                notices,
            },
        );
        let router = Router::with_parts(RouterParts {
            central: Arc::clone(&central),
            sessions: Arc::clone(&sessions),
            supervisor: Arc::clone(&supervisor),
            session_config: protocol::SessionConfig::default(),
            settings: PlanSettings::default(),
            groups_dir: dir.join("groups"),
        });
        let host_messages = router.take_host_messages().unwrap();
        let tasks = Tasks::new(
            Arc::clone(&sessions),
            Arc::clone(&central),
            Arc::clone(&supervisor),
        );
        let channel = Arc::new(FakeChannel::default());
        let channels = Arc::new(Channels::default());
        channels.register(channel.clone());
        let bridge = crate::bridge::Bridge::new(Arc::clone(&channels));
        let delivery = Delivery::new(DeliveryParts {
            sessions: Arc::clone(&sessions),
            central: Arc::clone(&central),
            supervisor: Arc::clone(&supervisor),
            channels,
            bridge,
            // No ticks during a test: every pass is caused by what the test does.
            interval: Duration::from_secs(3600),
            a2a_limits: A2aLimits::default(),
            router,
            tasks,
            files_dir: dir.join("files"),
            outbound_limits: limits,
        });
        if let Some(gate) = gate {
            delivery.set_read_gate(Arc::new(move |path: &Path| gate.wait(path)));
        }
        let run = tokio::spawn(delivery.run(
            out_rx,
            notice_rx,
            host_messages,
            arrival_rx,
            shutdown.clone(),
        ));
        Self {
            central,
            sessions,
            supervisor,
            runtime,
            channel,
            out_changed,
            arrivals,
            shutdown,
            run,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.run.await.unwrap();
        self.sessions.shutdown();
        self.central.shutdown();
    }

    /// A session of `main` whose origin is the terminal chat, with its folder.
    async fn session(&self, key: &str) -> SessionRef {
        let key = key.to_owned();
        let session = self
            .central
            .call(move |conn| {
                let group = central::ensure_agent_group(conn, "main", "Main")?;
                let (chat, _) =
                    central::ensure_messaging_group(conn, "cli", "local", "terminal", false)?;
                let (session, _) =
                    central::resolve_session(conn, &group.id, &key, Some(&chat.id), None)?;
                Ok(SessionRef {
                    id: session.id,
                    agent_group: group.id,
                    group_folder: group.folder,
                })
            })
            .await
            .unwrap();
        self.inbound_row(&session).await;
        // The first container start creates it in a real host.
        let outbound = self.outbound(&session);
        if std::fs::symlink_metadata(&outbound).is_err() {
            protocol::schema::create_outbound(&outbound).unwrap();
        }
        session
    }

    /// Writes a person's message into the session (a new turn); returns its seq.
    async fn inbound_row(&self, session: &SessionRef) -> Seq {
        let row = protocol::NewInboundRow::chat(&protocol::InboundContent {
            text: "hi".into(),
            ..Default::default()
        });
        self.sessions
            .with_inbound(session, move |tx, _| {
                Ok(protocol::inbound::insert(tx, &row, None)?)
            })
            .await
            .unwrap()
    }

    fn outbound(&self, session: &SessionRef) -> PathBuf {
        self.sessions.paths(session).outbound_db()
    }

    fn inbound(&self, session: &SessionRef) -> Connection {
        protocol::schema::open_inbound_reader(&self.sessions.paths(session).inbound_db()).unwrap()
    }

    fn poke(&self, session: &SessionRef) {
        self.out_changed.send(session.clone()).unwrap();
    }

    /// The delivery status and error of a row.
    fn state(&self, session: &SessionRef, id: &str) -> Option<(String, Option<String>)> {
        use rusqlite::OptionalExtension;
        self.inbound(session)
            .query_row(
                "SELECT status, error FROM delivered WHERE message_out_id = ?1",
                [id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .unwrap()
    }

    fn told(&self, session: &SessionRef, fragment: &str) -> i64 {
        self.inbound(session)
            .query_row(
                "SELECT count(*) FROM messages_in WHERE kind = 'system' AND json_extract(content, '$.text') LIKE ?1",
                [format!("%{fragment}%")],
                |row| row.get(0),
            )
            .unwrap()
    }
}

/// Writes a container row with a chosen seq (as a hostile container may).
fn write_row(path: &Path, id: &str, seq: i64, text: &str) {
    let conn = protocol::schema::open_outbound_writer(path).unwrap();
    conn.execute(
        "INSERT INTO messages_out (id, seq, created_at, kind, content) VALUES (?1, ?2, 0, 'chat', ?3)",
        rusqlite::params![id, seq, serde_json::json!({ "text": text }).to_string()],
    )
    .unwrap();
}

/// Writes `n` container rows of one turn above everything seen, as the runner does.
fn write_rows(path: &Path, prefix: &str, n: usize, seen: Seq) {
    let mut conn = protocol::schema::open_outbound_writer(path).unwrap();
    let tx = conn.transaction().unwrap();
    for i in 0..n {
        let row = protocol::NewOutboundRow {
            id: MessageId::new(format!("{prefix}{i}")),
            in_reply_to: None,
            deliver_after: None,
            kind: protocol::OutboundKind::Chat,
            destination: None,
            thread_id: None,
            content: protocol::OutboundContent::Message(protocol::MessageContent {
                text: format!("{prefix}{i}"),
                files: vec![],
            }),
        };
        protocol::outbound::insert(&tx, &row, Some(seen)).unwrap();
    }
    tx.commit().unwrap();
}

async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_read_of_one_session_delays_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Arc::new(Gate::default());
    let host = Harness::start(dir.path(), OutboundLimits::default(), Some(gate.clone())).await;
    let (stuck, other) = (
        host.session("chat:stuck").await,
        host.session("chat:other").await,
    );
    gate.block(&stuck);
    write_row(
        &host.outbound(&stuck),
        "stuck-1",
        1,
        "from the stuck session",
    );
    host.poke(&stuck);
    eventually("the stuck read to begin", || {
        (gate.reads.load(Ordering::SeqCst) >= 1).then_some(())
    })
    .await;
    write_row(
        &host.outbound(&other),
        "other-1",
        1,
        "from the other session",
    );
    host.poke(&other);
    // The other session's reply arrives while the stuck session's read is still blocked.
    eventually("the other session's reply", || {
        host.channel
            .sent_ids()
            .contains(&"other-1".to_owned())
            .then_some(())
    })
    .await;
    assert!(!host.channel.sent_ids().contains(&"stuck-1".to_owned()));
    gate.release();
    eventually("the stuck session's reply once unblocked", || {
        host.channel
            .sent_ids()
            .contains(&"stuck-1".to_owned())
            .then_some(())
    })
    .await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_send_that_takes_2s_delays_no_other_session() {
    let dir = tempfile::tempdir().unwrap();
    let host = Harness::start(dir.path(), OutboundLimits::default(), None).await;
    let (slow, other) = (
        host.session("chat:slow").await,
        host.session("chat:other").await,
    );
    write_row(&host.outbound(&slow), "slow-1", 1, "to a slow platform");
    host.poke(&slow);
    eventually("the slow send to begin", || {
        host.channel
            .slow_started
            .load(Ordering::SeqCst)
            .then_some(())
    })
    .await;
    let started = std::time::Instant::now();
    write_row(
        &host.outbound(&other),
        "other-1",
        1,
        "from the other session",
    );
    host.poke(&other);
    eventually("the other session's reply", || {
        host.channel
            .sent_ids()
            .contains(&"other-1".to_owned())
            .then_some(())
    })
    .await;
    // Delivered while the slow send still sleeps: it did not wait for it.
    assert!(
        !host.channel.sent_ids().contains(&"slow-1".to_owned()),
        "the other reply came after the slow send ({:?})",
        started.elapsed()
    );
    eventually("the slow reply in the end", || {
        host.channel
            .sent_ids()
            .contains(&"slow-1".to_owned())
            .then_some(())
    })
    .await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_that_times_out_fails_only_its_session_once() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Arc::new(Gate::default());
    let limits = OutboundLimits {
        read_timeout: Duration::from_millis(200),
        ..OutboundLimits::default()
    };
    let host = Harness::start(dir.path(), limits, Some(gate.clone())).await;
    let (stuck, other) = (
        host.session("chat:stuck").await,
        host.session("chat:other").await,
    );
    gate.block(&stuck);
    write_row(&host.outbound(&stuck), "stuck-1", 1, "never read");
    host.poke(&stuck);
    let stuck_id = stuck.id.clone();
    let failed = eventually("the session to be marked failed", || {
        host.central
            .call_blocking({
                let id = stuck_id.clone();
                move |conn| central::session(conn, &id)
            })
            .unwrap()
            .failed_reason
    })
    .await;
    assert!(failed.contains("did not finish within"), "{failed}");
    assert!(host.supervisor.is_failed(&stuck.id));
    // The person is told, through the origin chat, how to bring it back.
    eventually("the failure notice", || {
        host.channel
            .texts()
            .iter()
            .any(|t| t.contains("agent failed") && t.contains("crabpot sessions reset"))
            .then_some(())
    })
    .await;
    // Another session is delivered as usual.
    write_row(&host.outbound(&other), "other-1", 1, "fine");
    host.poke(&other);
    eventually("the other session's reply", || {
        host.channel
            .sent_ids()
            .contains(&"other-1".to_owned())
            .then_some(())
    })
    .await;
    // A failed session gets no container: a new message fails and its sender is told.
    let notices_before = host.channel.texts().len();
    host.inbound_row(&stuck).await;
    host.supervisor.wake(&stuck);
    eventually("the sender of the new message to be told", || {
        (host.channel.texts().len() > notices_before).then_some(())
    })
    .await;
    assert!(
        host.channel
            .texts()
            .last()
            .unwrap()
            .contains("takes no messages")
    );
    assert!(
        host.runtime
            .calls()
            .iter()
            .all(|call| call.kind() != crate::runtime::CallKind::Create),
        "no container for a failed session"
    );
    // Failing again is a no-op.
    assert!(!host.supervisor.quarantine(&stuck, "again").await);
    gate.release();
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_slipped_in_below_the_high_water_mark_are_refused_also_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let host = Harness::start(dir.path(), OutboundLimits::default(), None).await;
    let session = host.session("chat:a").await;
    let out = host.outbound(&session);
    // Everything delivered: a row slipped in below is never read, and so never delivered.
    write_row(&out, "r5", 5, "five");
    host.poke(&session);
    eventually("r5", || host.state(&session, "r5")).await;
    write_row(&out, "r3", 3, "slipped in");
    // While nobody is connected, rows wait for a recipient (without counting attempts).
    host.channel.disconnected.store(true, Ordering::SeqCst);
    write_row(&out, "r7", 7, "waits");
    write_row(&out, "r11", 11, "waits too");
    host.poke(&session);
    eventually("r11 to wait", || {
        let waiting: i64 = host
            .inbound(&session)
            .query_row("SELECT count(*) FROM delivery_waiting", [], |r| r.get(0))
            .unwrap();
        (waiting == 2).then_some(())
    })
    .await;
    let attempts: i64 = host
        .inbound(&session)
        .query_row(
            "SELECT attempts FROM delivered WHERE message_out_id = 'r7'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(attempts, 0, "a call that reached nobody is not an attempt");
    let session_id = session.id.clone();
    host.stop().await;

    // Slipped in while the host was down, between the rows that wait.
    write_row(&out, "r9", 9, "slipped in later");
    let host = Harness::start(dir.path(), OutboundLimits::default(), None).await;
    let session = SessionRef {
        id: session_id,
        ..session
    };
    // A restarted host tries the waiting rows once (a terminal may be connected by now).
    host.poke(&session);
    eventually("r7 and r11 after the restart", || {
        let sent = host.channel.sent_ids();
        (sent.contains(&"r7".to_owned()) && sent.contains(&"r11".to_owned())).then_some(())
    })
    .await;
    let (status, error) = eventually("r9 to be refused", || host.state(&session, "r9")).await;
    assert_eq!(status, "dropped");
    assert_eq!(
        error.as_deref(),
        Some("seq 9 is not above the last delivered seq 11")
    );
    assert_eq!(host.told(&session, "seq 9 is not above"), 1);
    // A new row is delivered; the row slipped in before the restart never is.
    write_row(&out, "r13", 13, "new");
    host.poke(&session);
    eventually("r13", || {
        host.channel
            .sent_ids()
            .contains(&"r13".to_owned())
            .then_some(())
    })
    .await;
    let sent = host.channel.sent_ids();
    assert!(
        !sent.contains(&"r3".to_owned()) && !sent.contains(&"r9".to_owned()),
        "{sent:?}"
    );
    assert_eq!(host.state(&session, "r3"), None);
    // The cursor is committed just after the send returns: wait for it, not for the send.
    let cursor = eventually("the cursor to reach r13", || {
        let cursor = protocol::inbound::delivery_cursor(&host.inbound(&session)).unwrap();
        (cursor.after == Some(Seq(13)) && cursor.high_water == Some(Seq(13))).then_some(cursor)
    })
    .await;
    assert_eq!(
        (cursor.after, cursor.high_water),
        (Some(Seq(13)), Some(Seq(13)))
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caps_refuse_the_excess_and_tell_once() {
    let dir = tempfile::tempdir().unwrap();
    let limits = OutboundLimits {
        max_rows_per_turn: 3,
        max_rows_per_minute: 5,
        ..OutboundLimits::default()
    };
    let host = Harness::start(dir.path(), limits, None).await;
    let session = host.session("chat:a").await;
    let out = host.outbound(&session);
    write_rows(&out, "a", 5, Seq(0));
    host.poke(&session);
    eventually("the first turn", || host.state(&session, "a4")).await;
    assert_eq!(host.channel.sent_ids(), ["a0", "a1", "a2"]);
    let (status, error) = host.state(&session, "a3").unwrap();
    assert_eq!(status, "dropped");
    assert!(error.unwrap().contains("per turn"));
    assert_eq!(
        host.told(&session, "over the cap"),
        1,
        "told once, not per row"
    );
    // A new turn: the minute has room for two more.
    let turn = host.inbound_row(&session).await;
    write_rows(&out, "b", 3, turn);
    host.poke(&session);
    eventually("the second turn", || host.state(&session, "b2")).await;
    assert_eq!(host.channel.sent_ids(), ["a0", "a1", "a2", "b0", "b1"]);
    assert!(
        host.state(&session, "b2")
            .unwrap()
            .1
            .unwrap()
            .contains("per minute")
    );
    assert_eq!(host.told(&session, "over the cap"), 2, "once per turn");
    let dropped: i64 = host
        .central
        .call_blocking(|conn| {
            Ok(conn.query_row(
                "SELECT coalesce(sum(count), 0) FROM dropped_messages WHERE direction = 'outbound'",
                [],
                |r| r.get(0),
            )?)
        })
        .unwrap();
    assert_eq!(dropped, 3, "every refused row is in dropped_messages");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_events_is_one_pass_and_a_backlog_drains_without_events() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Arc::new(Gate::default());
    let limits = OutboundLimits {
        max_rows_per_turn: 10_000,
        max_rows_per_minute: 10_000,
        ..OutboundLimits::default()
    };
    let host = Harness::start(dir.path(), limits, Some(gate.clone())).await;
    let session = host.session("chat:a").await;
    gate.block(&session);
    host.poke(&session);
    eventually("the first read", || {
        (gate.reads.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    for _ in 0..100 {
        host.poke(&session);
    }
    gate.release();
    eventually("the coalesced pass", || {
        (gate.reads.load(Ordering::SeqCst) >= 2).then_some(())
    })
    .await;
    // A backlog of several batches, announced by one event.
    let n = 3 * super::reader::BATCH + 10;
    write_rows(&host.outbound(&session), "r", n, Seq(0));
    host.poke(&session);
    let started = std::time::Instant::now();
    let last = format!("r{}", n - 1);
    eventually("the whole backlog", || host.state(&session, &last)).await;
    eprintln!("{n} rows drained in {:?}", started.elapsed());
    assert_eq!(host.channel.sent_ids().len(), n);
    // One read for the blocked pass, one for the hundred events, one per batch of the
    // backlog (and one that found the end): the hundred events were one pass.
    let reads = gate.reads.load(Ordering::SeqCst);
    assert!(reads <= 2 + n / super::reader::BATCH + 2, "{reads} reads");
    host.stop().await;
}

#[test]
fn a_session_without_progress_backs_off_and_progress_resets_it() {
    let mut backoff = Backoff::default();
    assert_eq!(backoff.current(), Duration::ZERO);
    let mut seen = Vec::new();
    for _ in 0..12 {
        backoff.after_pass(false);
        seen.push(backoff.current());
    }
    assert_eq!(seen[0], MIN_BACKOFF);
    assert_eq!(seen[1], MIN_BACKOFF * 2);
    assert!(seen.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(*seen.last().unwrap(), MAX_BACKOFF);
    backoff.after_pass(true);
    assert_eq!(backoff.current(), Duration::ZERO);
}

#[test]
fn order_checks_name_the_problem() {
    let row = |seq| OutboundRow {
        id: MessageId::new("x"),
        seq: Seq(seq),
        in_reply_to: None,
        created_at: 0,
        deliver_after: None,
        kind: "chat".into(),
        destination: None,
        thread_id: None,
        content: "{}".into(),
    };
    assert!(invalid_order(&row(4), None).unwrap().contains("not odd"));
    assert!(
        invalid_order(&row(5), Some(Seq(5)))
            .unwrap()
            .contains("does not increase")
    );
    assert_eq!(invalid_order(&row(7), Some(Seq(5))), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_nobody_can_receive_waits_and_goes_when_a_recipient_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let host = Harness::start(dir.path(), OutboundLimits::default(), None).await;
    let session = host.session("chat:a").await;
    host.channel.disconnected.store(true, Ordering::SeqCst);
    write_row(&host.outbound(&session), "r1", 1, "hello?");
    host.poke(&session);
    eventually("r1 to wait", || {
        let waiting: i64 = host
            .inbound(&session)
            .query_row(
                "SELECT count(*) FROM delivery_waiting WHERE reason = 'no_recipient'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        (waiting == 1).then_some(())
    })
    .await;
    host.channel.disconnected.store(false, Ordering::SeqCst);
    host.arrivals
        .send(crate::edge::Arrival::Chat(ChatAddress {
            channel_type: "cli".into(),
            platform_id: "local".into(),
            thread_id: None,
        }))
        .unwrap();
    let (status, _) = eventually("r1 on arrival", || {
        host.state(&session, "r1")
            .filter(|(status, _)| status == "delivered")
    })
    .await;
    assert_eq!(status, "delivered");
    assert_eq!(host.channel.sent_ids(), ["r1"]);
    host.stop().await;
}
