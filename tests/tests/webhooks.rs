//! Webhooks end to end: a real `crabpot serve` with its web server, real containers and the
//! fake model; requests posted over loopback HTTP to `/hooks/webhooks/<name>`, and a real
//! HTTP receiver of outbound hooks (`tests::webhook_receiver`).
//!
//! - a request signed with crabpot's header starts a turn (a `webhook` row from
//!   `webhook:<name>`), and the reply reaches the hook group's destination (the terminal
//!   chat); GitHub's `X-Hub-Signature-256` works too, with its event named;
//! - an unsigned request and a bad signature are refused (401), the same signed request sent
//!   twice is refused the second time (409), and none of them starts a turn;
//! - an outbound webhook as a group's destination gets the reply of a hook's turn, signed
//!   (the receiver verifies the HMAC), retried after a 500 with the same idempotency key,
//!   and taken once; a group with no destination records the refusal, and the adapter is
//!   `connected` in `crabpot channels list`; any session may `send_message` to an outbound
//!   hook destination.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;
use support::{Platform, TURN, cli_fails, cli_json, cli_ok, groups_dir};
use tests::docker::require_docker;
use tests::fake_model::{FakeModel, Reply};
use tests::host_process::{HostOptions, HostProcess, ModelConfig};
use tests::http_client::{HttpResponse, post_json_tcp};
use tests::webhook_receiver::{
    WebhookReceiver, crabpot_signature, github_signature, signature_is_valid,
};

async fn start_host(fake: &FakeModel, groups: &tempfile::TempDir) -> HostProcess {
    HostProcess::start(HostOptions {
        groups_dir: Some(groups.path().to_owned()),
        ..HostOptions::with_model(ModelConfig::openai(fake))
    })
    .await
    .unwrap()
}

/// The web server's address, from `data/web.url`.
fn web_addr(host: &HostProcess) -> SocketAddr {
    let url = host.web_url().unwrap();
    url.trim_end_matches('/')
        .trim_start_matches("http://")
        .parse()
        .unwrap_or_else(|e| panic!("{url}: {e}"))
}

/// `crabpot webhooks create <args>`: the secret, and the answer.
async fn create_hook(host: &HostProcess, args: &[&str]) -> (String, Value) {
    let mut full = vec!["webhooks", "create"];
    full.extend_from_slice(args);
    let created = cli_json(host, &full).await;
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("cpw_"), "{created}");
    (secret, created)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn post(
    host: &HostProcess,
    hook: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> HttpResponse {
    post_json_tcp(
        web_addr(host),
        &format!("/hooks/webhooks/{hook}"),
        headers,
        body,
    )
    .await
    .unwrap()
}

/// Posts `body` signed with crabpot's header at `timestamp`.
async fn post_signed(
    host: &HostProcess,
    hook: &str,
    secret: &str,
    timestamp: i64,
    body: &Value,
) -> HttpResponse {
    let signature = crabpot_signature(secret, timestamp, body.to_string().as_bytes());
    post(host, hook, &[("x-crabpot-signature", &signature)], body).await
}

/// How many model requests so far carried `needle` in their last user message.
fn turns_with(fake: &FakeModel, needle: &str) -> usize {
    fake.requests()
        .iter()
        .filter(|request| {
            request
                .last_user_text()
                .is_some_and(|text| text.contains(needle))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_requests_start_turns_and_others_are_refused() {
    if !require_docker("signed_requests_start_turns_and_others_are_refused").await {
        return;
    }
    let fake = FakeModel::start().unwrap();
    let groups = groups_dir(&[]);
    let host = start_host(&fake, &groups).await;
    let terminal = Platform::connect(&host).await;
    let (secret, created) = create_hook(&host, &["ci", "--group", "main"]).await;
    let endpoint = created["endpoint"].as_str().unwrap();
    assert!(
        endpoint.starts_with(&host.web_url().unwrap()) && endpoint.ends_with("/hooks/webhooks/ci"),
        "{created}"
    );
    let listed = cli_json(&host, &["webhooks", "list"]).await;
    assert_eq!(listed[0]["name"], "ci", "{listed}");
    assert_eq!(listed[0]["direction"], "inbound", "{listed}");
    assert!(
        !listed.to_string().contains(&secret),
        "list never shows secrets"
    );
    cli_fails(&host, &["webhooks", "create", "ci", "--group", "main"], 7).await;
    cli_fails(
        &host,
        &["webhooks", "create", "bad/name", "--group", "main"],
        6,
    )
    .await;
    cli_fails(
        &host,
        &["webhooks", "create", "x", "--url", "ftp://example.com/"],
        6,
    )
    .await;
    cli_fails(&host, &["webhooks", "create", "x", "--group", "nope"], 5).await;

    // 1. crabpot's header: a turn, answered in the group's destination (the terminal).
    let body = json!({ "alert": "disk-full-4711", "host": "db-1" });
    let accepted = post_signed(&host, "ci", &secret, now(), &body).await;
    assert_eq!(accepted.status, 202, "{}", accepted.text());
    assert!(
        accepted.json().unwrap()["message_id"].is_string(),
        "{}",
        accepted.text()
    );
    let (reply, _) = terminal.reply_containing("local", "disk-full-4711").await;
    assert!(reply.contains("webhook ci received:"), "{reply}");
    let session = host.session_dir("main").unwrap();
    let inbound = support::read_only(&session.join("in/inbound.db"));
    let senders = support::column::<String>(
        &inbound,
        "SELECT json_extract(content, '$.sender.id') FROM messages_in WHERE kind = 'webhook'",
    );
    assert_eq!(senders, ["webhook:ci"]);

    // 2. GitHub's header, with its event named.
    let body = json!({ "action": "completed", "workflow_run": { "conclusion": "failure-0815" } });
    let signature = github_signature(&secret, body.to_string().as_bytes());
    let headers = [
        ("x-hub-signature-256", signature.as_str()),
        ("x-github-event", "workflow_run"),
        ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
    ];
    let accepted = post(&host, "ci", &headers, &body).await;
    assert_eq!(accepted.status, 202, "{}", accepted.text());
    let (reply, _) = terminal.reply_containing("local", "failure-0815").await;
    assert!(reply.contains("GitHub event workflow_run"), "{reply}");
    // GitHub's redelivery of the same event is taken once.
    assert_eq!(post(&host, "ci", &headers, &body).await.status, 409);

    // 3. Unsigned, forged and replayed requests are refused and start nothing.
    let unsigned = json!({ "alert": "unsigned-1" });
    let refused = post(&host, "ci", &[], &unsigned).await;
    assert_eq!(refused.status, 401, "{}", refused.text());
    let forged = json!({ "alert": "forged-2" });
    let refused = post_signed(&host, "ci", "cpw_not-the-secret", now(), &forged).await;
    assert_eq!(refused.status, 401, "{}", refused.text());
    let stale = json!({ "alert": "stale-3" });
    let refused = post_signed(&host, "ci", &secret, now() - 3600, &stale).await;
    assert_eq!(refused.status, 401, "{}", refused.text());
    assert_eq!(
        post_signed(&host, "nope", &secret, now(), &stale)
            .await
            .status,
        404
    );
    let replayed = json!({ "alert": "replayed-5" });
    let at = now();
    assert_eq!(
        post_signed(&host, "ci", &secret, at, &replayed)
            .await
            .status,
        202
    );
    let again = post_signed(&host, "ci", &secret, at, &replayed).await;
    assert_eq!(again.status, 409, "{}", again.text());
    // The replayed request's one turn is the last; by then every refusal had its chance.
    terminal.reply_containing("local", "replayed-5").await;
    assert_eq!(
        turns_with(&fake, "replayed-5"),
        1,
        "the replay started no turn"
    );
    for refused in ["unsigned-1", "forged-2", "stale-3"] {
        assert_eq!(turns_with(&fake, refused), 0, "{refused} started a turn");
    }
    assert_eq!(turns_with(&fake, "failure-0815"), 1);

    // Removed, the hook answers 404 and its chat is gone.
    let removed = cli_ok(&host, &["webhooks", "remove", "ci"]).await;
    assert!(removed.contains("removed webhook ci"), "{removed}");
    let gone = json!({ "alert": "after-removal" });
    assert_eq!(
        post_signed(&host, "ci", &secret, now(), &gone).await.status,
        404
    );
    cli_fails(&host, &["chats", "show", "webhook/ci"], 5).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn outbound_webhooks_are_signed_retried_and_taken_once() {
    if !require_docker("outbound_webhooks_are_signed_retried_and_taken_once").await {
        return;
    }
    let fake = FakeModel::start().unwrap();
    let groups = groups_dir(&[]);
    let host = start_host(&fake, &groups).await;
    support::wait_channel_health(&host, "webhook", "connected", Duration::from_secs(30)).await;
    let receiver = WebhookReceiver::start(&[500]).unwrap();
    cli_ok(&host, &["groups", "create", "ops"]).await;
    let (out_secret, created) = create_hook(&host, &["alerts", "--url", &receiver.url()]).await;
    assert_eq!(created["webhook"]["direction"], "outbound", "{created}");
    cli_ok(
        &host,
        &["destinations", "add", "ops", "pager", "--webhook", "alerts"],
    )
    .await;
    cli_fails(
        &host,
        &["destinations", "add", "ops", "x", "--webhook", "nope"],
        5,
    )
    .await;
    let listed = cli_json(&host, &["destinations", "list", "--group", "ops"]).await;
    assert_eq!(listed[0]["name"], "pager", "{listed}");
    assert_eq!(listed[0]["target"]["type"], "webhook", "{listed}");
    let table = cli_ok(&host, &["destinations", "list", "--group", "ops"]).await;
    assert!(table.contains("webhook"), "{table}");
    // For people: the URL to post to, and the secret on the last line.
    let created = cli_ok(&host, &["webhooks", "create", "deploys", "--group", "ops"]).await;
    let endpoint = format!("{}/hooks/webhooks/deploys", host.web_url().unwrap());
    assert!(created.contains(&endpoint), "{created}");
    let in_secret = created.trim_end().lines().last().unwrap().to_owned();
    assert!(in_secret.starts_with("cpw_"), "{created}");

    // The reply of the hook's turn goes to the group's one destination, the outbound hook:
    // a 500 first, then the retry is taken.
    let body = json!({ "deploy": "rollback-9931" });
    let accepted = post_signed(&host, "deploys", &in_secret, now(), &body).await;
    assert_eq!(accepted.status, 202, "{}", accepted.text());
    let calls = receiver
        .recorder()
        .wait_for("the retried delivery", TURN, |calls| {
            (calls.len() >= 2).then(|| calls.to_vec())
        })
        .await
        .unwrap();
    assert_eq!(receiver.script_left(), 0);
    let key = calls[0].header("x-crabpot-delivery").unwrap().to_owned();
    for call in &calls[..2] {
        assert!(signature_is_valid(call, &out_secret), "{:?}", call.headers);
        assert_eq!(call.header("content-type"), Some("application/json"));
        assert_eq!(
            call.header("x-crabpot-delivery"),
            Some(key.as_str()),
            "one key"
        );
        let json = call.json();
        assert_eq!(json["hook"], "alerts", "{json}");
        assert_eq!(json["id"], key.as_str(), "{json}");
        assert!(
            json["text"].as_str().unwrap().contains("rollback-9931"),
            "{json}"
        );
    }
    assert!(
        !signature_is_valid(&calls[0], &in_secret),
        "signed with the hook's own secret"
    );
    // Delivered for good: the row is `delivered`, and nothing more arrives.
    let session = host.session_dir("ops").unwrap();
    let delivered = support::eventually("the reply recorded as delivered", TURN, || {
        let inbound = support::read_only(&session.join("in/inbound.db"));
        let statuses = support::column::<String>(&inbound, "SELECT status FROM delivered");
        statuses
            .iter()
            .any(|s| s == "delivered")
            .then_some(statuses)
    })
    .await;
    assert!(delivered.iter().all(|s| s == "delivered"), "{delivered:?}");
    assert_eq!(
        receiver.recorder().calls().len(),
        2,
        "taken once after the retry"
    );

    // A hook whose group has no destination: the reply is refused with its reason.
    cli_ok(&host, &["groups", "create", "lonely"]).await;
    let (lonely_secret, _) = create_hook(&host, &["nobody", "--group", "lonely"]).await;
    let body = json!({ "note": "nowhere-to-go" });
    let accepted = post_signed(&host, "nobody", &lonely_secret, now(), &body).await;
    assert_eq!(accepted.status, 202, "{}", accepted.text());
    let reasons = support::eventually("the refusal recorded", TURN, || {
        let central = support::central(&host);
        let reasons = support::column::<String>(
            &central,
            "SELECT reason FROM dropped_messages WHERE agent_group_id = 'lonely'",
        );
        (!reasons.is_empty()).then_some(reasons)
    })
    .await;
    assert!(
        reasons[0].starts_with("no_fanout_destination:"),
        "{reasons:?}"
    );
    // The agent is not told (its answer would have nowhere to go either): the note would be
    // in the session, written before the drop was recorded.
    let lonely = host.session_dir("lonely").unwrap();
    let notes = support::column::<i64>(
        &support::read_only(&lonely.join("in/inbound.db")),
        "SELECT count(*) FROM messages_in WHERE kind = 'system'",
    );
    assert_eq!(notes, [0]);
    assert_eq!(receiver.recorder().calls().len(), 2);

    // Any session may name an outbound hook destination: send_message(to=...) from the
    // terminal's session of main.
    cli_ok(
        &host,
        &[
            "destinations",
            "add",
            "main",
            "pager",
            "--webhook",
            "alerts",
        ],
    )
    .await;
    fake.push(Reply::tool_call(
        "send_message",
        json!({ "to": "pager", "text": "paged-5150" }),
    ));
    fake.push(Reply::text("paged them"));
    let output = host.chat("page the on-call", TURN).await.unwrap();
    assert!(output.success(), "{output:?}");
    let paged = receiver
        .recorder()
        .wait_for("the explicit message", TURN, |calls| {
            calls
                .iter()
                .find(|call| call.text().contains("paged-5150"))
                .cloned()
        })
        .await
        .unwrap();
    assert!(signature_is_valid(&paged, &out_secret));
    assert_eq!(receiver.recorder().calls().len(), 3);
}
