//! Usage accounting end to end: a real host and container, the fake model (OpenAI shape,
//! streamed, as the runner asks), and `crabpot sessions show`.
//!
//! A reply that reports usage is counted as reported. A reply from a server that reports none
//! (some llama.cpp and vLLM builds) is estimated from the text, marked as estimated, and never
//! left at zero; the request is not counted as failed. `sessions show` without `--json` shows
//! times as local dates with their age.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::Value;
use support::{TURN, cli_json, cli_json_until, cli_ok};
use tests::docker::require_docker;
use tests::fake_model::{FakeModel, Reply};
use tests::host_process::{HostOptions, HostProcess, ModelConfig};

/// `sessions show`'s usage once it has `requests` requests (the proxy records a request when
/// its response has finished, just after the reply went out).
async fn usage_after(host: &HostProcess, session: &str, requests: i64) -> Value {
    let what = format!("{requests} requests in the usage");
    cli_json_until(host, &["sessions", "show", session], &what, |shown| {
        shown["usage"]["requests"].as_i64() == Some(requests)
    })
    .await["usage"]
        .clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_is_reported_or_estimated_never_silently_zero() {
    if !require_docker("usage_is_reported_or_estimated_never_silently_zero").await {
        return;
    }
    let fake = FakeModel::start().unwrap();
    let host = HostProcess::start(HostOptions::with_model(ModelConfig::openai(&fake)))
        .await
        .unwrap();

    fake.push(Reply::text("reported").with_usage(120, 7));
    let output = host.chat("first", TURN).await.unwrap();
    assert!(
        output.success() && output.stdout.contains("reported"),
        "{output:?}"
    );
    let sessions = cli_json(&host, &["sessions", "list"]).await;
    let session = sessions[0]["session"]["id"].as_str().unwrap().to_owned();
    let usage = usage_after(&host, &session, 1).await;
    assert_eq!(usage["input_tokens"], 120, "{usage}");
    assert_eq!(usage["output_tokens"], 7, "{usage}");
    assert_eq!(usage["estimated_requests"], 0, "{usage}");
    assert_eq!(usage["failed_requests"], 0, "{usage}");

    // 40 characters of reply: 10 tokens by the estimate.
    let reply = "a reply from a server without any usage";
    assert_eq!(reply.len(), 39);
    fake.push(Reply::text(format!("{reply}!")).without_usage());
    let output = host.chat("second", TURN).await.unwrap();
    assert!(
        output.success() && output.stdout.contains(reply),
        "{output:?}"
    );
    let usage = usage_after(&host, &session, 2).await;
    assert_eq!(usage["estimated_requests"], 1, "{usage}");
    assert_eq!(usage["output_tokens"], 7 + 10, "{usage}");
    // The prompt (system prompt, messages, tool definitions) is thousands of characters.
    let estimated_input = usage["input_tokens"].as_i64().unwrap() - 120;
    assert!(estimated_input > 100, "{usage}");

    // Neither request failed: each reply reached the chat.
    assert_eq!(usage["failed_requests"], 0, "{usage}");

    // For people, times are local dates with their age.
    let shown = cli_ok(&host, &["sessions", "show", &session]).await;
    assert!(
        shown.contains(" ago)") || shown.contains("(just now)"),
        "{shown}"
    );
}
