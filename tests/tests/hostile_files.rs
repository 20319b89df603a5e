//! The hostile-session suite, files: a session's container replaces its `out/outbound.db` with
//! something the host must not trust — a FIFO, a database whose `messages_out` is an endless
//! recursive view, a symlink to a host file, to another session's `outbound.db`, or to a
//! missing path. Each time the host neither blocks, spins, opens nor creates anything it must
//! not; it marks only that session failed, once; and another session's replies keep arriving.
//!
//! Each test runs a real host with two chats wired to `main` (two sessions, two containers):
//! `victim` and `attacker`. The attacker acts from inside its container (`docker exec` as the
//! container's user) or, where busybox lacks the tool, from the host side as the container
//! would (rusqlite on its `out/outbound.db`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/arena.rs"]
mod arena;
mod support;

use arena::{Arena, NOTICE, OutboundWriter};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tests::docker::require_docker;
use tests::process_usage::CpuMeter;

/// `O_NONBLOCK` on Linux (x86_64 and aarch64 alike): a writer's open of a FIFO then fails
/// with `ENXIO` instead of waiting, unless some process holds the FIFO open for reading.
const O_NONBLOCK: i32 = 0o4000;

/// SIGKILL: how the harness ends a host that ignored SIGTERM for 10 s.
const SIGKILL: i32 = 9;

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

/// Watches a FIFO for a reader: every few milliseconds it tries a non-blocking open for
/// writing, which only succeeds while some process (the host, if it followed a link to the
/// FIFO) has it open for reading. Counts the successes.
struct FifoWatch {
    opened: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FifoWatch {
    fn start(fifo: &Path) -> FifoWatch {
        let opened = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (path, seen, stopped) = (fifo.to_owned(), Arc::clone(&opened), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                let writer = std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(O_NONBLOCK)
                    .open(&path);
                if writer.is_ok() {
                    seen.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        FifoWatch {
            opened,
            stop,
            thread: Some(thread),
        }
    }

    fn times_opened(&self) -> usize {
        self.opened.load(Ordering::Relaxed)
    }
}

impl Drop for FifoWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outbound_db_replaced_by_a_fifo_fails_only_its_session_and_sigterm_still_works() {
    if !require_docker("an_outbound_db_replaced_by_a_fifo_fails_only_its_session").await {
        return;
    }
    let mut arena = Arena::start(|options| options).await;
    let victim = arena.open_chat("victim").await;
    let attacker = arena.open_chat("attacker").await;

    arena
        .exec_ok(
            &attacker,
            "rm -f /session/out/outbound.db && mkfifo /session/out/outbound.db && ls -l /session/out",
        )
        .await;

    // The host reads the FIFO's session on its next pass; the other session is served.
    arena.round_trip(&victim).await;
    let reason = arena
        .assert_failed_once(&attacker, &["fifo", "regular file", "not a file"])
        .await;
    eprintln!("attacker failed: {reason}");
    arena.round_trip(&victim).await;

    // No host thread is stuck in open(): SIGTERM stops the host, no SIGKILL needed.
    let status = arena.host.stop().unwrap();
    assert_ne!(
        status.signal(),
        Some(SIGKILL),
        "the host ignored SIGTERM and was killed; host log:\n{}",
        arena.host.log_tail(40)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endless_recursive_view_as_messages_out_does_not_make_the_host_spin() {
    if !require_docker("an_endless_recursive_view_as_messages_out_does_not_make_the_host_spin")
        .await
    {
        return;
    }
    let mut arena = Arena::start(|options| options).await;
    let victim = arena.open_chat("victim").await;
    let attacker = arena.open_chat("attacker").await;

    // busybox has no sqlite3: the container's write is done from the host side.
    let writer = OutboundWriter::open(&attacker);
    writer
        .conn()
        .execute_batch(
            "DROP TABLE messages_out;
             CREATE VIEW messages_out AS
               WITH RECURSIVE forever(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM forever)
               SELECT 'loop-' || n AS id, 2 * n + 1 AS seq, NULL AS in_reply_to, 0 AS created_at,
                      NULL AS deliver_after, 'chat' AS kind, NULL AS destination,
                      NULL AS thread_id, '{\"text\":\"loop\"}' AS content
               FROM forever WHERE n < 0;",
        )
        .unwrap();
    drop(writer);

    arena.round_trip(&victim).await;
    let reason = arena
        .assert_failed_once(&attacker, &["view", "schema", "messages_out"])
        .await;
    eprintln!("attacker failed: {reason}");

    // Once the session is failed, nothing keeps reading it: the host is not spinning.
    let meter = CpuMeter::start(arena.pid()).unwrap();
    arena.round_trip(&victim).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let share = meter.share().unwrap();
    assert!(
        share.percent_of_one_core() < 50.0,
        "the host spins after the recursive view: {share}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outbound_db_linked_to_a_host_file_is_never_opened() {
    if !require_docker("an_outbound_db_linked_to_a_host_file_is_never_opened").await {
        return;
    }
    let mut arena = Arena::start(|options| options).await;
    let victim = arena.open_chat("victim").await;
    let attacker = arena.open_chat("attacker").await;

    // Stands for /etc/shadow: a host file outside every session. A FIFO, because an opener
    // shows: the host would hold it open for reading.
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("shadow");
    mkfifo(&target);
    let watch = FifoWatch::start(&target);
    arena
        .exec_ok(
            &attacker,
            &format!("ln -sf {} /session/out/outbound.db", target.display()),
        )
        .await;

    arena.round_trip(&victim).await;
    let reason = arena
        .assert_failed_once(&attacker, &["link", "regular file", "not a file"])
        .await;
    eprintln!("attacker failed: {reason}");
    arena.round_trip(&victim).await;
    assert_eq!(
        watch.times_opened(),
        0,
        "the host opened the link's target {}",
        target.display()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outbound_db_linked_to_another_sessions_never_leaks_its_replies() {
    if !require_docker("an_outbound_db_linked_to_another_sessions_never_leaks_its_replies").await {
        return;
    }
    let mut arena = Arena::start(|options| options).await;
    let victim = arena.open_chat("victim").await;
    let attacker = arena.open_chat("attacker").await;
    let before_attack = arena.round_trip(&victim).await;

    arena
        .exec_ok(
            &attacker,
            &format!(
                "ln -sf {} /session/out/outbound.db",
                victim.outbound_db().display()
            ),
        )
        .await;
    // The in-memory cursors go with a restart: the link must be refused on its own merits.
    arena.host.restart().await.unwrap();
    arena.platform = support::Platform::connect(&arena.host).await;
    arena.send(&attacker, "anything for me?").await;
    let after_restart = arena.round_trip(&victim).await;
    let reason = arena
        .assert_failed_once(&attacker, &["link", "regular file", "not a file"])
        .await;
    eprintln!("attacker failed: {reason}");
    let later = arena.round_trip(&victim).await;

    let leaked: Vec<String> = arena
        .platform
        .replies(&attacker.chat)
        .into_iter()
        .filter(|reply| reply.contains("ping-"))
        .collect();
    assert!(
        leaked.is_empty(),
        "the attacker's chat received the victim's replies: {leaked:?}"
    );
    for reply in [&before_attack, &after_restart, &later] {
        assert!(
            !arena.platform.replies(&attacker.chat).contains(reply),
            "{reply} leaked"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outbound_db_linked_to_a_missing_path_creates_nothing_there() {
    if !require_docker("an_outbound_db_linked_to_a_missing_path_creates_nothing_there").await {
        return;
    }
    let mut arena = Arena::start(|options| options).await;
    let victim = arena.open_chat("victim").await;
    let attacker = arena.open_chat("attacker").await;

    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("planted.db");
    arena
        .exec_ok(
            &attacker,
            &format!("ln -sf {} /session/out/outbound.db", target.display()),
        )
        .await;
    // A restart reopens every session file: the old host re-created a missing outbound.db
    // there, through the link.
    arena.host.restart().await.unwrap();
    arena.platform = support::Platform::connect(&arena.host).await;
    arena.send(&attacker, "wake up").await;
    arena.round_trip(&victim).await;
    let reason = arena
        .assert_failed_once(
            &attacker,
            &["link", "regular file", "not a file", "missing"],
        )
        .await;
    eprintln!("attacker failed: {reason}");

    let deadline = Instant::now() + Duration::from_secs(5).min(NOTICE);
    while Instant::now() < deadline {
        assert!(
            std::fs::symlink_metadata(&target).is_err(),
            "the host created {} through the link",
            target.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left: Vec<_> = std::fs::read_dir(outside.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert!(
        left.is_empty(),
        "files appeared outside the session: {left:?}"
    );
}
