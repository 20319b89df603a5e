//! The hostile-session suite, limits: what one session may take of the host. An idle session
//! costs the host (almost) no CPU, and neither does a container touching `out/` in a loop;
//! `work/` has a hard disk quota; each session's container runs as its own uid and owns only
//! its own `out/` and `work/`; a crash-looping runner does not flood the log; and a bad limit
//! stops `crabpot serve` at start, naming the key.
//!
//! Bounds here are generous (a share of one core, megabytes of log): they fail on the bugs
//! reproduced in issue 8, never on a slow machine. Timings belong to `make bench`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/arena.rs"]
mod arena;
mod support;

use arena::Arena;
use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tests::docker::{inspect_container_json, require_docker};
use tests::host_process::crabpot_bin;
use tests::process_usage::CpuMeter;

/// The measuring stretch of the CPU bounds.
const CPU_WINDOW: Duration = Duration::from_secs(4);

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_session_and_a_container_touching_out_cost_the_host_little_cpu() {
    if !require_docker("an_idle_session_and_a_container_touching_out_cost_the_host_little_cpu")
        .await
    {
        return;
    }
    let mut arena = Arena::start(|options| options).await;
    let idle = arena.open_chat("idle").await;
    // The container is up and idle once its turn is done.
    arena.container_of(&idle).await;

    let meter = CpuMeter::start(arena.pid()).unwrap();
    tokio::time::sleep(CPU_WINDOW).await;
    let share = meter.share().unwrap();
    eprintln!("idle: {share}");
    assert!(
        share.percent_of_one_core() < 20.0,
        "one idle container keeps the host busy: {share}"
    );

    // Now the container touches files in out/ as fast as it can: the host's wake-ups for the
    // session are coalesced and bounded.
    let meter = CpuMeter::start(arena.pid()).unwrap();
    let output = arena
        .exec(
            &idle,
            "end=$(( $(date +%s) + 4 )); n=0; \
             while [ $(date +%s) -lt $end ]; do \
               for i in 1 2 3 4 5 6 7 8 9 10; do touch /session/out/outbound.db /session/out/noise; done; \
               n=$((n + 10)); \
             done; echo touched $n",
        )
        .await;
    let share = meter.share().unwrap();
    eprintln!("touch loop ({}): {share}", output.stdout.trim());
    assert!(output.success(), "{output:?}");
    assert!(
        share.percent_of_one_core() < 30.0,
        "a container touching out/ in a loop keeps the host busy: {share}"
    );
    arena.round_trip(&idle).await;
}

/// Kibibytes under `path` on the host (`du -sk`).
fn du_kib(path: &Path) -> u64 {
    let output = Command::new("du").arg("-sk").arg(path).output().unwrap();
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .and_then(|kib| kib.parse().ok())
        .unwrap_or_else(|| panic!("du -sk {}: {output:?}", path.display()))
}

#[tokio::test(flavor = "multi_thread")]
async fn writing_past_the_disk_quota_fails_with_no_space_left_and_spares_the_host_disk() {
    if !require_docker("writing_past_the_disk_quota_fails_with_no_space_left").await {
        return;
    }
    const QUOTA_MB: u64 = 64;
    let mut arena =
        Arena::start(|options| options.env("CRABPOT_DISK_QUOTA_MB", QUOTA_MB.to_string())).await;
    let chat = arena.open_chat("filler").await;
    let reply = arena
        .agent_runs(
            &chat,
            "dd if=/dev/zero of=/session/work/big bs=1M count=2048 2>&1; echo dd-exit=$?; \
             stat -c size=%s /session/work/big",
        )
        .await;
    assert!(
        reply.contains("No space left"),
        "the agent sees no space left: {reply}"
    );
    assert!(!reply.contains("dd-exit=0"), "{reply}");
    let size: u64 = reply
        .split("size=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|size| size.parse().ok())
        .unwrap_or_else(|| panic!("no size in {reply}"));
    let mib = size / (1024 * 1024);
    assert!(
        (QUOTA_MB / 4..=QUOTA_MB + 8).contains(&mib),
        "dd stopped at {mib} MiB, the quota is {QUOTA_MB} MiB: {reply}"
    );
    // The host's disk holds at most the quota's worth of it.
    let on_host = du_kib(arena.host.data_dir()) / 1024;
    assert!(
        on_host < 3 * QUOTA_MB + 64,
        "the data dir holds {on_host} MiB after a {QUOTA_MB} MiB quota"
    );
    // The session survives a full disk: the next turn is answered.
    arena.round_trip(&chat).await;
}

/// `uid:gid` of a container's `Config.User`.
async fn container_uid(arena: &Arena, chat: &arena::ArenaChat) -> u32 {
    let container = arena.container_of(chat).await;
    let inspected = inspect_container_json(&arena.docker, &container)
        .await
        .unwrap();
    let user = inspected["Config"]["User"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    user.split(':')
        .next()
        .and_then(|uid| uid.parse().ok())
        .unwrap_or_else(|| panic!("container {container} runs as {user:?}, not a numeric uid"))
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[tokio::test(flavor = "multi_thread")]
async fn each_session_runs_as_its_own_uid_and_host_files_are_private() {
    if !require_docker("each_session_runs_as_its_own_uid_and_host_files_are_private").await {
        return;
    }
    let mut arena = Arena::start(|options| options).await;
    let first = arena.open_chat("first").await;
    let second = arena.open_chat("second").await;
    let first_uid = container_uid(&arena, &first).await;
    let second_uid = container_uid(&arena, &second).await;
    assert_ne!(first_uid, 0, "a container runs as root");
    assert_ne!(second_uid, 0, "a container runs as root");
    assert_ne!(
        first_uid, second_uid,
        "two sessions' containers share the uid {first_uid}"
    );
    for (chat, uid) in [(&first, first_uid), (&second, second_uid)] {
        for dir in ["out", "work"] {
            let path = chat.dir.join(dir);
            let metadata = std::fs::symlink_metadata(&path).unwrap();
            assert_eq!(
                metadata.uid(),
                uid,
                "{} belongs to {}, its container runs as {uid}",
                path.display(),
                metadata.uid()
            );
            assert_eq!(
                mode(&path),
                0o700,
                "{} is {:o}",
                path.display(),
                mode(&path)
            );
        }
        let inbound = chat.inbound_db();
        assert_eq!(
            mode(&inbound) & 0o004,
            0,
            "{} is world-readable ({:o})",
            inbound.display(),
            mode(&inbound)
        );
    }
    // From inside, one session's user cannot read the other's files, even by their host path
    // (it cannot see them at all: only its own folder is mounted).
    let probe = arena
        .exec(
            &first,
            &format!("cat {} 2>&1", second.outbound_db().display()),
        )
        .await;
    assert!(!probe.success(), "{probe:?}");

    let data_dir = arena.host.data_dir();
    assert_eq!(
        mode(data_dir) & 0o077,
        0,
        "the data dir is {:o}",
        mode(data_dir)
    );
    let sessions = arena.host.sessions_dir();
    assert_eq!(
        mode(&sessions) & 0o007,
        0,
        "{} is {:o}",
        sessions.display(),
        mode(&sessions)
    );
    let central = data_dir.join("crabpot.db");
    assert_eq!(
        mode(&central) & 0o077,
        0,
        "crabpot.db is {:o}",
        mode(&central)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_limit_stops_serve_at_start_naming_the_key() {
    // No Docker needed: the configuration is refused before anything else happens.
    for (variable, value, key) in [
        ("CRABPOT_PIDS_LIMIT", "-1", "pids_limit"),
        ("CRABPOT_MEMORY_MB", "-5", "memory_mb"),
        ("CRABPOT_CPUS", "0", "cpus"),
        ("CRABPOT_DISK_QUOTA_MB", "1", "disk_quota_mb"),
        ("CRABPOT_CONTAINER_UID_RANGE", "5-1", "container_uid_range"),
        (
            "CRABPOT_PROXY_MAX_CONNECTIONS",
            "0",
            "proxy_max_connections",
        ),
        (
            "CRABPOT_PROXY_HEADER_TIMEOUT_SECS",
            "0",
            "proxy_header_timeout_secs",
        ),
        (
            "CRABPOT_OUTBOUND_MAX_ROWS_PER_TURN",
            "0",
            "outbound_max_rows_per_turn",
        ),
        (
            "CRABPOT_OUTBOUND_MAX_ROWS_PER_MINUTE",
            "0",
            "outbound_max_rows_per_minute",
        ),
    ] {
        let data_dir = tempfile::tempdir().unwrap();
        let mut command = Command::new(crabpot_bin());
        command
            .arg("--data-dir")
            .arg(data_dir.path())
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("CRABPOT_") {
                command.env_remove(name);
            }
        }
        command
            .env(
                "CRABPOT_INSTALL_ID",
                format!("t-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
            )
            .env("CRABPOT_GROUPS_DIR", tests::repo_root().join("groups"))
            .env(variable, value);
        let mut child = tokio::process::Command::from(command)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
        let status = match status {
            Ok(status) => status.unwrap(),
            Err(_) => panic!("`crabpot serve` with {variable}={value} is still running"),
        };
        let output = child.wait_with_output().await.unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            !status.success(),
            "{variable}={value} was accepted: {status:?} {text}"
        );
        assert!(
            text.to_lowercase().contains(key),
            "the error for {variable}={value} names {key}: {text}"
        );
        assert!(
            !data_dir.path().join("cli.sock").exists(),
            "{variable}={value}: the host started serving before refusing it"
        );
    }
}

/// An image whose entrypoint crashes at once, as a runner dying mid-write would: it leaves a
/// journal next to `outbound.db` (hot, so the host's read-only open cannot use the file until
/// a runner recovers it) and exits. Every container of it crash-loops.
fn crash_loop_image() -> String {
    let tag = "crabpot-test-crashloop:latest".to_owned();
    let crash = "printf '\\331\\325\\005\\371\\040\\241\\143\\327crashed mid-write' \
                 > /session/out/outbound.db-journal; echo crash-loop >&2; exit 3";
    let dockerfile = format!(
        "FROM {}\nENTRYPOINT [\"/bin/sh\", \"-c\", {}]\nCMD []\n",
        tests::image_name(),
        serde_json::to_string(crash).unwrap()
    );
    let mut build = Command::new("docker")
        .args(["build", "-q", "-t", &tag, "-"])
        .env("DOCKER_BUILDKIT", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    build
        .stdin
        .take()
        .unwrap()
        .write_all(dockerfile.as_bytes())
        .unwrap();
    let output = build.wait_with_output().unwrap();
    assert!(output.status.success(), "docker build: {output:?}");
    tag
}

/// A log line with its digits (timestamps, counts, ids' digits) blanked, so repeats of one
/// warning compare equal.
fn shape(line: &str) -> String {
    line.chars()
        .map(|c| if c.is_ascii_digit() { '#' } else { c })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_looping_runner_does_not_flood_the_log() {
    if !require_docker("a_crash_looping_runner_does_not_flood_the_log").await {
        return;
    }
    let image = crash_loop_image();
    let mut arena = Arena::start(|options| options.env("CRABPOT_IMAGE", &image)).await;
    let log_before = std::fs::metadata(arena.host.log_path()).unwrap().len();
    let say = support::Say::dm("ann", "local");
    arena.platform.say(&say, "start crashing").await;

    // Wait until the runner has crashed a few times, then watch the log for a while.
    support::eventually(
        "the crash-looping container to restart",
        support::TURN,
        || {
            let log = arena.host.log();
            // A restart shows as a second start (the exits may be logged coalesced).
            (log.matches("container started").count() >= 2 || log.matches("exited").count() >= 2)
                .then_some(())
        },
    )
    .await;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let log = arena.host.log();
    let growth = log.len() as u64 - log_before;
    let mut repeats: HashMap<String, usize> = HashMap::new();
    for line in log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
    {
        *repeats.entry(shape(line)).or_default() += 1;
    }
    let (worst, count) = repeats
        .iter()
        .max_by_key(|(_, count)| **count)
        .map(|(line, count)| (line.clone(), *count))
        .unwrap_or_default();
    eprintln!(
        "{:?} of crash loop: log grew {growth} bytes; worst repeat {count}x: {worst}",
        started.elapsed()
    );
    assert!(
        count <= 50,
        "one warning repeated {count} times in the log: {worst}"
    );
    assert!(
        growth < 1024 * 1024,
        "the log grew by {growth} bytes in a crash loop"
    );
    // The host is still up and answers its admin API.
    assert!(arena.host.is_running());
    support::cli_ok(&arena.host, &["status"]).await;
}
