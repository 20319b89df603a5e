//! End to end through a real container: `crabpot serve` + `crabpot chat --message`, for both
//! providers, against the fake model. Covers the reply path, `send_message` (exactly one
//! message), seq parity in both session files, the read-only `in/` mount, the canary key that
//! must never enter a container, malformed outbound rows, and the no-model message.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use rusqlite::{Connection, OpenFlags};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};
use tests::docker::{self, require_docker};
use tests::fake_model::{FakeModel, Reply};
use tests::host_process::{HostOptions, HostProcess, ModelConfig};

const TURN_TIMEOUT: Duration = Duration::from_secs(90);

fn read_only(path: &Path) -> Connection {
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap()
}

fn seqs(path: &Path, table: &str) -> Vec<i64> {
    let conn = read_only(path);
    let mut statement = conn
        .prepare(&format!("SELECT seq FROM {table} ORDER BY seq"))
        .unwrap();
    statement
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Polls `check` until it returns `Some`, or panics with `what` after `deadline`.
async fn eventually<T>(what: &str, deadline: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn chat_ok(host: &HostProcess, text: &str) -> Vec<String> {
    let output = host.chat(text, TURN_TIMEOUT).await.unwrap();
    assert!(
        output.success(),
        "crabpot chat failed: {:?}\nstdout: {}\nstderr: {}\nhost log:\n{}",
        output.status,
        output.stdout,
        output.stderr,
        host.log_tail(80)
    );
    output.stdout.lines().map(str::to_owned).collect()
}

async fn reply_and_send_message(model: fn(&FakeModel) -> ModelConfig, test: &str) {
    if !require_docker(test).await {
        return;
    }
    let fake = FakeModel::start().unwrap();
    let host = HostProcess::start(HostOptions::with_model(
        model(&fake).with_api_key("sk-test"),
    ))
    .await
    .unwrap();

    // A plain turn: the fake echoes the user's text back.
    let replies = chat_ok(&host, "hello crab").await;
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert!(
        replies[0].starts_with("echo:") && replies[0].contains("hello crab"),
        "{replies:?}"
    );

    // A turn where the model calls send_message, then ends with text: exactly one message.
    fake.push(Reply::tool_call(
        "send_message",
        json!({"text": "sent by the tool"}),
    ));
    fake.push(Reply::text("final words that must not be sent too"));
    let replies = chat_ok(&host, "use the tool").await;
    assert_eq!(
        replies,
        ["sent by the tool"],
        "host log:\n{}",
        host.log_tail(60)
    );

    // The requests reached the fake with the host's key and the configured model, streamed.
    let requests = fake.requests();
    assert!(requests.len() >= 3, "{} requests", requests.len());
    for request in &requests {
        assert!(request.is_stream(), "the runner streams");
        let key = request
            .header("authorization")
            .or(request.header("x-api-key"))
            .unwrap_or_default();
        assert!(key.contains("sk-test"), "key header {key:?}");
    }

    // Seq parity in both files.
    let session = host.session_dir("main").unwrap();
    let inbound = seqs(&session.join("in/inbound.db"), "messages_in");
    let outbound = seqs(&session.join("out/outbound.db"), "messages_out");
    assert!(
        inbound.len() >= 2 && inbound.iter().all(|s| s % 2 == 0),
        "{inbound:?}"
    );
    assert!(
        outbound.len() >= 2 && outbound.iter().all(|s| s % 2 == 1),
        "{outbound:?}"
    );
    let delivered: i64 = read_only(&session.join("in/inbound.db"))
        .query_row(
            "SELECT count(*) FROM delivered WHERE status = 'delivered'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(delivered, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn openai_reply_and_send_message() {
    reply_and_send_message(ModelConfig::openai, "openai_reply_and_send_message").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn anthropic_reply_and_send_message() {
    reply_and_send_message(ModelConfig::anthropic, "anthropic_reply_and_send_message").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn canary_key_never_enters_the_container_and_in_is_read_only() {
    if !require_docker("canary_key_never_enters_the_container_and_in_is_read_only").await {
        return;
    }
    let canary = format!("sk-canary-{}", uuid::Uuid::new_v4().simple());
    let fake = FakeModel::start().unwrap();
    let host = HostProcess::start(HostOptions::with_model(
        ModelConfig::openai(&fake).with_api_key(&canary),
    ))
    .await
    .unwrap();
    chat_ok(&host, "hi").await;
    // The key reached the upstream...
    let auth = fake.requests()[0]
        .header("authorization")
        .unwrap_or_default()
        .to_owned();
    assert_eq!(auth, format!("Bearer {canary}"));

    // ...and is nowhere in the container: inspect output, environment, image, mounts.
    let docker = docker::connect().await.unwrap();
    let containers =
        docker::list_containers_by_label(&docker, "crabpot.install", host.install_id())
            .await
            .unwrap();
    assert_eq!(containers.len(), 1, "one container for one session");
    let id = containers[0].id.clone().unwrap();
    let inspect = docker::inspect_container_json(&docker, &id).await.unwrap();
    assert!(
        !inspect.to_string().contains(&canary),
        "canary in docker inspect"
    );
    assert_eq!(inspect["HostConfig"]["NetworkMode"], "none");
    let environ = docker::exec(&docker, &id, &["cat", "/proc/1/environ"])
        .await
        .unwrap();
    assert!(
        environ.success() && !environ.stdout.contains(&canary),
        "{environ:?}"
    );
    let env = docker::exec(&docker, &id, &["env"]).await.unwrap();
    assert!(env.success() && !env.stdout.contains("sk-"), "{env:?}");
    let grep = docker::exec(
        &docker,
        &id,
        &[
            // Everything but the proxy socket, which grep cannot read.
            "grep",
            "-rl",
            &canary,
            "/bin",
            "/usr",
            "/etc",
            "/session/in/inbound.db",
            "/session/out",
            "/session/work",
            "/group",
            "/tmp",
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        grep.exit_code, 1,
        "grep found the canary (or failed): {grep:?}"
    );
    assert!(grep.stdout.trim().is_empty(), "{grep:?}");

    // From inside, /session/in is read-only, /session/out writable.
    for cmd in [
        vec!["touch", "/session/in/planted"],
        vec!["sh", "-c", "echo x >> /session/in/inbound.db"],
        vec!["sh", "-c", "echo x > /session/in/inbound.db-journal"],
    ] {
        let result = docker::exec(&docker, &id, &cmd).await.unwrap();
        assert!(!result.success(), "{cmd:?} should fail: {result:?}");
    }
    let out = docker::exec(&docker, &id, &["touch", "/session/out/probe"])
        .await
        .unwrap();
    assert!(out.success(), "{out:?}");
    let user = docker::exec(&docker, &id, &["id", "-u"]).await.unwrap();
    assert_ne!(user.stdout.trim(), "0", "the agent must not run as root");
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_outbound_rows_are_refused_and_the_host_keeps_serving() {
    if !require_docker("malformed_outbound_rows_are_refused_and_the_host_keeps_serving").await {
        return;
    }
    let fake = FakeModel::start().unwrap();
    let host = HostProcess::start(HostOptions::with_model(ModelConfig::openai(&fake)))
        .await
        .unwrap();
    chat_ok(&host, "first").await;
    let session = host.session_dir("main").unwrap();
    let outbound = session.join("out/outbound.db");
    {
        // Plays a hostile container: rows the schema's CHECKs would refuse, written anyway.
        let conn = Connection::open(&outbound).unwrap();
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        conn.pragma_update(None, "ignore_check_constraints", "ON")
            .unwrap();
        let big = format!(r#"{{"text":"{}"}}"#, "x".repeat(300 * 1024));
        conn.execute_batch(&format!(
            "INSERT INTO messages_out (id, seq, created_at, kind, content) VALUES ('bad-even', 1000, 0, 'chat', '{{\"text\":\"even\"}}');
             INSERT INTO messages_out (id, seq, created_at, kind, content) VALUES ('bad-json', 1001, 0, 'chat', 'not json');
             INSERT INTO messages_out (id, seq, created_at, kind, content) VALUES ('bad-big', 1003, 0, 'chat', '{big}');"
        ))
        .unwrap();
    }
    let inbound = session.join("in/inbound.db");
    let refused = eventually("the three rows to be refused", TURN_TIMEOUT, || {
        let conn = read_only(&inbound);
        let rows: Vec<(String, String)> = conn
            .prepare(
                "SELECT message_out_id, error FROM delivered WHERE status = 'dropped' ORDER BY seq",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        (rows.len() == 3).then_some(rows)
    })
    .await;
    assert!(
        refused[0].0 == "bad-even" && refused[0].1.contains("not odd"),
        "{refused:?}"
    );
    assert!(
        refused[1].0 == "bad-json" && refused[1].1.contains("not valid JSON"),
        "{refused:?}"
    );
    assert!(
        refused[2].0 == "bad-big" && refused[2].1.contains("over the cap"),
        "{refused:?}"
    );
    let log = host.log();
    assert_eq!(log.matches("refused outbound row").count(), 3, "{log}");
    // None of them reached the terminal, and the agent was told about each.
    eventually("the agent to finish the system rows", TURN_TIMEOUT, || {
        let conn = read_only(&inbound);
        let pending: i64 = conn
            .query_row(
                "SELECT count(*) FROM messages_in WHERE kind = 'system' AND status = 'pending'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let total: i64 = conn
            .query_row(
                "SELECT count(*) FROM messages_in WHERE kind = 'system'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        (total == 3 && pending == 0).then_some(())
    })
    .await;
    let replies = chat_ok(&host, "still there?").await;
    assert!(
        replies.iter().any(|r| r.contains("still there?")),
        "{replies:?}"
    );
    assert!(
        !replies
            .iter()
            .any(|r| r.contains("even") || r.contains("xxxx")),
        "{replies:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_model_configured_gets_a_clear_reply() {
    if !require_docker("no_model_configured_gets_a_clear_reply").await {
        return;
    }
    let host = HostProcess::start(HostOptions::default()).await.unwrap();
    let replies = chat_ok(&host, "anyone home?").await;
    let text = replies.join("\n");
    assert!(text.contains("no model is configured"), "{text}");
    assert!(text.contains("CRABPOT_MODEL_PROVIDER"), "{text}");
}
