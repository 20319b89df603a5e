//! The hostile-session suite, sockets: a session floods its `in/proxy.sock` with held
//! connections, or sends a header that never ends; a local client sends `cli.sock` a line
//! that never ends. The host stays within its file descriptors, memory and log, closes what
//! it must, and another session's replies keep arriving. And the `cli` channel keeps a reply
//! produced while no terminal of its chat is connected, until one connects.
//!
//! The proxy socket is reached from the host side, as the container would (it is a file in
//! the session's `in/`, which the test process can open as root).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/arena.rs"]
mod arena;
mod support;

use arena::Arena;
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tests::docker::require_docker;
use tests::fake_model::{FakeModel, echo_reply};
use tests::host_process::{HostOptions, HostProcess, ModelConfig, crabpot_bin};
use tests::process_usage::{ProcessUsage, mib};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// The host's file-descriptor limit in the flood test: a common default, well below what the
/// attacker tries to hold, so an unbounded proxy runs out.
const HOST_NOFILE: u64 = 4096;

/// How many proxy connections the attacker tries to hold.
const FLOOD_CONNECTIONS: usize = 6000;

/// A generous deadline for the host to close a connection it must close.
const CLOSE_DEADLINE: Duration = Duration::from_secs(30);

/// A wrapper around the host binary that lowers its open-file limit, then `exec`s it (same
/// pid, so the harness still signals the host itself).
fn limited_host_binary(dir: &Path, nofile: u64) -> PathBuf {
    let script = dir.join("crabpot-limited");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nulimit -n {nofile} || exit 97\nexec '{}' \"$@\"\n",
            crabpot_bin().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proxy_socket_flood_leaves_other_sessions_served_and_the_host_bounded() {
    if !require_docker("a_proxy_socket_flood_leaves_other_sessions_served_and_the_host_bounded")
        .await
    {
        return;
    }
    let wrapper_dir = tempfile::tempdir().unwrap();
    let binary = limited_host_binary(wrapper_dir.path(), HOST_NOFILE);
    let mut arena = Arena::start(|options| HostOptions {
        binary: Some(binary),
        ..options
    })
    .await;
    let victim = arena.open_chat("victim").await;
    let attacker = arena.open_chat("attacker").await;
    let host = ProcessUsage::new(arena.pid());
    let log_before = std::fs::metadata(arena.host.log_path()).unwrap().len();

    // Hold as many connections as the socket takes; refusals are fine (a full backlog, or
    // the host's cap), and end the attempt after a run of them.
    let mut held = Vec::new();
    let mut refused_in_a_row = 0;
    for _ in 0..FLOOD_CONNECTIONS {
        let socket = attacker.proxy_socket();
        match tokio::time::timeout(Duration::from_secs(2), UnixStream::connect(&socket)).await {
            Ok(Ok(stream)) => {
                held.push(stream);
                refused_in_a_row = 0;
            }
            Ok(Err(_)) | Err(_) => {
                refused_in_a_row += 1;
                if refused_in_a_row >= 200 {
                    break;
                }
            }
        }
    }
    eprintln!("the attacker holds {} proxy connections", held.len());

    // While they are held: the other session gets its replies, and the host stays bounded.
    arena.round_trip(&victim).await;
    arena.round_trip(&victim).await;
    let fds = host.open_fds().unwrap();
    assert!(
        fds < (HOST_NOFILE / 2) as usize,
        "the host holds {fds} file descriptors while one session floods its proxy"
    );
    let rss = host.rss_bytes().unwrap();
    assert!(
        rss < 200 * 1024 * 1024,
        "host RSS {:.0} MiB under the flood",
        mib(rss)
    );
    let log_growth = std::fs::metadata(arena.host.log_path()).unwrap().len() - log_before;
    assert!(
        log_growth < 1024 * 1024,
        "the host log grew by {log_growth} bytes during the flood:\n{}",
        arena.host.log_tail(20)
    );
    drop(held);
    arena.round_trip(&victim).await;
    arena.round_trip(&attacker).await;
}

/// Reads until the peer closes, or fails after `deadline`; returns what was read.
async fn read_until_closed(stream: &mut UnixStream, deadline: Duration) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    let end = tokio::time::Instant::now() + deadline;
    loop {
        match tokio::time::timeout_at(end, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return seen,
            Ok(Ok(n)) => seen.extend_from_slice(&buffer[..n]),
            Err(_) => panic!(
                "the host kept the connection open for {deadline:?}; it sent {:?}",
                String::from_utf8_lossy(&seen)
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partial_proxy_header_is_closed_after_the_header_timeout() {
    if !require_docker("a_partial_proxy_header_is_closed_after_the_header_timeout").await {
        return;
    }
    let mut arena =
        Arena::start(|options| options.env("CRABPOT_PROXY_HEADER_TIMEOUT_SECS", "2")).await;
    let attacker = arena.open_chat("attacker").await;
    let mut stream = UnixStream::connect(attacker.proxy_socket()).await.unwrap();
    stream
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\nContent-Ty")
        .await
        .unwrap();
    let answer = read_until_closed(&mut stream, CLOSE_DEADLINE).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
        "a partial header is answered with an error or nothing: {answer}"
    );
    // The session itself still works.
    arena.round_trip(&attacker).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endless_cli_line_gets_an_error_and_the_host_stays_bounded() {
    if !require_docker("an_endless_cli_line_gets_an_error_and_the_host_stays_bounded").await {
        return;
    }
    let mut arena = Arena::start(|options| options).await;
    let chat = arena.open_chat("someone").await;
    let host = ProcessUsage::new(arena.pid());
    host.reset_peak_rss().unwrap();
    let rss_before = host.rss_bytes().unwrap();

    let stream = UnixStream::connect(arena.host.cli_socket()).await.unwrap();
    let (read, mut write) = stream.into_split();
    // Read from the start: the host may answer (and close) before the line is all sent.
    let reader = tokio::spawn(async move {
        let mut lines = BufReader::new(read).lines();
        let mut seen = Vec::new();
        while let Ok(Ok(Some(line))) = tokio::time::timeout(CLOSE_DEADLINE, lines.next_line()).await
        {
            seen.push(line);
        }
        seen
    });
    let chunk = vec![b'a'; 64 * 1024];
    for _ in 0..(8 * 1024 * 1024 / chunk.len()) {
        match tokio::time::timeout(Duration::from_secs(10), write.write_all(&chunk)).await {
            Ok(Ok(())) => {}
            // The host stopped reading or closed: that is its answer to the line.
            Ok(Err(_)) | Err(_) => break,
        }
    }
    let lines = reader.await.unwrap();
    let error = lines
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["type"] == "error");
    assert!(
        error.is_some(),
        "no error line for an 8 MiB line without a newline; got {lines:?}"
    );
    let peak = host.peak_rss_bytes().unwrap();
    assert!(
        peak < rss_before + 60 * 1024 * 1024,
        "host RSS peaked at {:.0} MiB (from {:.0} MiB) on one long cli line",
        mib(peak),
        mib(rss_before)
    );
    arena.round_trip(&chat).await;
}

/// A gate the fake model waits at before answering, so the test decides when a reply is
/// produced.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    fn open(&self) {
        let (open, changed) = &*self.0;
        *open.lock().unwrap() = true;
        changed.notify_all();
    }

    fn wait(&self, timeout: Duration) {
        let (open, changed) = &*self.0;
        let guard = open.lock().unwrap();
        let _unused = changed
            .wait_timeout_while(guard, timeout, |open| !*open)
            .unwrap();
    }
}

async fn read_json_line(lines: &mut tokio::io::Lines<BufReader<UnixStream>>) -> Option<Value> {
    let line = tokio::time::timeout(support::TURN, lines.next_line())
        .await
        .ok()?
        .ok()??;
    serde_json::from_str(&line).ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cli_reply_made_while_no_terminal_is_connected_appears_when_one_connects() {
    if !require_docker("a_cli_reply_made_while_no_terminal_is_connected_appears_when_one_connects")
        .await
    {
        return;
    }
    let fake = FakeModel::start().unwrap();
    let gate = Gate::default();
    let model_gate = gate.clone();
    fake.set_default_reply_fn(move |request| {
        // Blocks the fake's own thread, which only this test's one session uses.
        model_gate.wait(support::TURN);
        echo_reply(request)
    });
    let host = HostProcess::start(HostOptions::with_model(ModelConfig::openai(&fake)))
        .await
        .unwrap();
    let marker = format!("while-away-{}", uuid::Uuid::new_v4().simple());

    // A terminal sends a message in cli/local and leaves before the reply is produced.
    {
        let stream = UnixStream::connect(host.cli_socket()).await.unwrap();
        let mut lines = BufReader::new(stream).lines();
        let line = json!({"type": "message", "text": marker, "user": "ann"}).to_string() + "\n";
        lines.get_mut().write_all(line.as_bytes()).await.unwrap();
        let answer = read_json_line(&mut lines).await;
        assert_eq!(
            answer.as_ref().map(|a| a["type"].clone()),
            Some(json!("accepted")),
            "{answer:?}"
        );
    }
    gate.open();

    // The turn finishes with nobody listening: the agent's reply is written and the host has
    // read it (it copied the finished ack into inbound.db in the same pass).
    let session = host
        .wait_for_session_dir("main", support::TURN)
        .await
        .unwrap();
    support::eventually("the turn to finish unheard", support::TURN, || {
        // The files appear as the session starts (outbound.db with the first container).
        let read_only = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
        let inbound =
            rusqlite::Connection::open_with_flags(session.join("in/inbound.db"), read_only).ok()?;
        let open: i64 = inbound
            .query_row(
                "SELECT count(*) FROM messages_in WHERE kind = 'chat' AND status != 'completed'",
                [],
                |r| r.get(0),
            )
            .ok()?;
        let outbound =
            rusqlite::Connection::open_with_flags(session.join("out/outbound.db"), read_only)
                .ok()?;
        let replies: i64 = outbound
            .query_row("SELECT count(*) FROM messages_out", [], |r| r.get(0))
            .ok()?;
        (open == 0 && replies > 0).then_some(())
    })
    .await;

    // A terminal of that chat connects: the reply is there.
    let stream = UnixStream::connect(host.cli_socket()).await.unwrap();
    let mut lines = BufReader::new(stream).lines();
    let subscribe = json!({"type": "subscribe", "chat": "local"}).to_string() + "\n";
    lines
        .get_mut()
        .write_all(subscribe.as_bytes())
        .await
        .unwrap();
    let deadline = Instant::now() + support::TURN;
    let reply = loop {
        let line = read_json_line(&mut lines).await;
        match line {
            Some(line)
                if line["type"] == "reply"
                    && line["text"].as_str().is_some_and(|t| t.contains(&marker)) =>
            {
                break line;
            }
            Some(_) if Instant::now() < deadline => {}
            other => panic!(
                "the reply made while no terminal was connected never arrived (last line {other:?}); host log:\n{}",
                host.log_tail(40)
            ),
        }
    };
    assert!(
        reply["id"].as_str().is_some_and(|id| !id.is_empty()),
        "a reply line carries its id: {reply}"
    );
}
