//! Out-of-process channel adapters end to end: a real `crabpot serve`, a real container, the
//! fake model, and the Python reference adapter (`tests/adapters/reference_adapter.py`) on
//! `data/adapters.sock`. A message pushed by the adapter reaches the agent and its reply
//! comes back as a `deliver` the adapter answers; an adapter killed (SIGKILL) after it got a
//! delivery and before it answered gets that delivery exactly once more when it is started
//! again, and the row ends `delivered`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{TURN, cli_json, cli_ok, eventually, read_only};
use tests::docker::require_docker;
use tests::fake_model::FakeModel;
use tests::host_process::{HostOptions, HostProcess, ModelConfig};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::Notify;

const CHANNEL: &str = "refchat";

/// How long an adapter may take to start and be welcomed.
const CONNECT: Duration = Duration::from_secs(20);

/// One run of the reference adapter, with everything it logged on stdout.
struct ReferenceAdapter {
    child: Child,
    stdin: ChildStdin,
    events: Arc<Mutex<Vec<Value>>>,
    arrived: Arc<Notify>,
}

impl ReferenceAdapter {
    async fn start(host: &HostProcess, token: &str, extra: &[&str]) -> ReferenceAdapter {
        let script = tests::repo_root().join("tests/adapters/reference_adapter.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg("--socket")
            .arg(host.data_dir().join("adapters.sock"))
            .args(["--channel-type", CHANNEL])
            .args(extra)
            .env("CRABPOT_ADAPTER_TOKEN", token)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs the reference adapter");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let arrived = Arc::new(Notify::new());
        let (sink, notify) = (Arc::clone(&events), Arc::clone(&arrived));
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let event: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("the adapter logs JSON lines: {e}: {line}"));
                sink.lock().unwrap().push(event);
                notify.notify_waiters();
            }
        });
        let adapter = ReferenceAdapter {
            child,
            stdin,
            events,
            arrived,
        };
        adapter
            .wait("the adapter's welcome", CONNECT, |event| {
                (event["event"] == "welcome").then_some(())
            })
            .await;
        adapter
    }

    /// The platform sends a message into the chat.
    async fn push(&mut self, event: Value) {
        let mut line = event.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// Waits for a logged event `find` accepts.
    async fn wait<T>(
        &self,
        what: &str,
        timeout: Duration,
        find: impl Fn(&Value) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.arrived.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(found) = self.events.lock().unwrap().iter().find_map(&find) {
                return found;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let seen = self.events.lock().unwrap().clone();
                panic!("timed out waiting for {what}; the adapter logged: {seen:#?}");
            }
        }
    }

    /// Waits for the host's first `ack`, which must say the message woke one row.
    async fn accepted(&self) {
        let ack = self
            .wait("the host's ack", Duration::from_secs(30), |event| {
                (event["event"] == "ack").then(|| event["ack"].clone())
            })
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
        assert_eq!(ack["message_ids"].as_array().unwrap().len(), 1, "{ack}");
    }

    /// How many `deliver` lines for outbound row `id` the adapter received.
    fn delivers_of(&self, id: &str) -> usize {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|event| {
                event["event"] == "received"
                    && event["line"]["type"] == "deliver"
                    && event["line"]["message"]["id"] == id
            })
            .count()
    }

    /// SIGKILL, as a crash would.
    async fn kill(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }
}

/// The `delivered` row of outbound row `id`: (status, platform message id).
fn delivered(session: &std::path::Path, id: &str) -> Option<(String, Option<String>)> {
    read_only(&session.join("in/inbound.db"))
        .query_row(
            "SELECT status, platform_message_id FROM delivered WHERE message_out_id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .ok()
}

async fn adapter_health(host: &HostProcess) -> String {
    let listed = cli_json(host, &["adapters", "list"]).await;
    let adapter = &listed.as_array().unwrap()[0];
    assert_eq!(adapter["name"], CHANNEL, "{listed}");
    adapter["health"]["state"].as_str().unwrap().to_owned()
}

fn message(id: &str, text: &str) -> Value {
    json!({
        "platform_id": "room-1",
        "platform_message_id": id,
        "sender": {"id": "ann", "name": "Ann"},
        "text": text,
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn an_adapter_round_trip_and_a_delivery_that_survives_its_crash() {
    if !require_docker("an_adapter_round_trip_and_a_delivery_that_survives_its_crash").await {
        return;
    }
    let fake = FakeModel::start().unwrap();
    let host = HostProcess::start(HostOptions::with_model(ModelConfig::openai(&fake)))
        .await
        .unwrap();
    let added = cli_json(&host, &["adapters", "add", CHANNEL]).await;
    let token = added["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("cpa_"), "{added}");
    assert_eq!(added["adapter"]["channel_type"], CHANNEL);
    // The host keeps only the token's hash.
    let stored: String = support::central(&host)
        .query_row("SELECT token_hash FROM adapters", [], |r| r.get(0))
        .unwrap();
    assert!(
        stored.starts_with("sha256:") && !stored.contains(&token[4..]),
        "{stored}"
    );
    assert_eq!(adapter_health(&host).await, "starting");
    cli_ok(
        &host,
        &["chats", "create", CHANNEL, "room-1", "--name", "room one"],
    )
    .await;
    cli_ok(
        &host,
        &[
            "wirings",
            "create",
            &format!("{CHANNEL}/room-1"),
            "main",
            "--engage",
            "pattern",
            "--pattern",
            ".*",
        ],
    )
    .await;

    // A round trip: the adapter's message reaches the agent, the reply comes as a deliver.
    let mut first = ReferenceAdapter::start(&host, &token, &[]).await;
    assert_eq!(adapter_health(&host).await, "connected");
    first.push(message("pm-1", "hello adapter")).await;
    first.accepted().await;
    let (key, platform_id, text) = first
        .wait("the agent's reply", TURN, |event| {
            (event["event"] == "posted").then(|| {
                (
                    event["key"].as_str().unwrap().to_owned(),
                    event["platform_message_id"].as_str().unwrap().to_owned(),
                    event["text"].as_str().unwrap().to_owned(),
                )
            })
        })
        .await;
    assert!(
        text.starts_with("echo:") && text.contains("hello adapter"),
        "{text}"
    );
    let first_row = key.trim_end_matches(":0").to_owned();
    let session = host
        .wait_for_session_dir("main", Duration::from_secs(5))
        .await
        .unwrap();
    let (status, stored_id) = eventually("the reply recorded delivered", TURN, || {
        delivered(&session, &first_row).filter(|(status, _)| status == "delivered")
    })
    .await;
    assert_eq!(
        (status.as_str(), stored_id.as_deref()),
        ("delivered", Some(platform_id.as_str()))
    );
    first.kill().await;

    // Killed after it got the delivery and before it answered: the row waits, no attempt.
    let mut holding = ReferenceAdapter::start(&host, &token, &["--hold-deliveries"]).await;
    holding.push(message("pm-2", "second message")).await;
    holding.accepted().await;
    let held = holding
        .wait("the second reply, held", TURN, |event| {
            (event["event"] == "holding").then(|| event["key"].as_str().unwrap().to_owned())
        })
        .await;
    let row = held.trim_end_matches(":0").to_owned();
    assert_eq!(holding.delivers_of(&row), 1);
    holding.kill().await;
    assert_ne!(
        delivered(&session, &row)
            .map(|(status, _)| status)
            .as_deref(),
        Some("delivered")
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while adapter_health(&host).await != "failing" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the adapter is never shown failing"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Started again: it gets that delivery once, and the row ends delivered.
    let mut again = ReferenceAdapter::start(&host, &token, &[]).await;
    let posted = again
        .wait("the held reply, delivered again", TURN, |event| {
            (event["event"] == "posted" && event["key"] == held.as_str())
                .then(|| event["platform_message_id"].as_str().unwrap().to_owned())
        })
        .await;
    eventually("the held reply recorded delivered", TURN, || {
        delivered(&session, &row)
            .filter(|(status, id)| status == "delivered" && id.as_deref() == Some(posted.as_str()))
    })
    .await;
    // Delivery keeps a session's rows in seq order: once a later reply is through, no
    // repeat of the held one is still to come.
    again.push(message("pm-3", "third message")).await;
    again
        .wait("the third reply", TURN, |event| {
            (event["event"] == "posted"
                && event["text"].as_str().unwrap().contains("third message"))
            .then_some(())
        })
        .await;
    assert_eq!(
        again.delivers_of(&row),
        1,
        "the held delivery came once more"
    );
    assert_eq!(
        again.delivers_of(&first_row),
        0,
        "the delivered one never came again"
    );
    let duplicates = again
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|event| event["event"] == "duplicate")
        .count();
    assert_eq!(duplicates, 0);
    assert_eq!(adapter_health(&host).await, "connected");

    // Removed: the connection is closed and the token refused.
    cli_ok(&host, &["adapters", "remove", CHANNEL]).await;
    again
        .wait("the removal", Duration::from_secs(10), |event| {
            (event["event"] == "refused").then_some(())
        })
        .await;
    let listed = cli_json(&host, &["adapters", "list"]).await;
    assert_eq!(listed, json!([]));
}
