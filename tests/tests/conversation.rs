//! Conversation management end to end: with a tiny context window configured on the host
//! (`CRABPOT_MODEL_CONTEXT_WINDOW`), the runner compacts the conversation — the fake model
//! sees a summarisation request — and the conversation carries on from the summary; `/clear`
//! from an owner resets the conversation, and from anyone else it is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{Platform, Say, TURN, cli_ok, is_summary_request};
use tests::docker::require_docker;
use tests::fake_model::{FakeModel, Reply, echo_reply};
use tests::host_process::{HostOptions, HostProcess, ModelConfig};

/// The whole request as text, to look for what the model was shown.
fn request_text(request: &tests::fake_model::RecordedRequest) -> String {
    request.body["messages"].to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn compaction_happens_when_the_context_window_is_small_and_the_conversation_carries_on() {
    if !require_docker("compaction_happens_when_the_context_window_is_small").await {
        return;
    }
    let fake = FakeModel::start().unwrap();
    fake.set_default_reply_fn(|request| {
        if is_summary_request(request) {
            Reply::text("SUMMARY-NOTE: ann named her crab Pinch.")
        } else {
            echo_reply(request)
        }
    });
    let host = HostProcess::start(
        HostOptions::with_model(ModelConfig::openai(&fake))
            .env("CRABPOT_MODEL_CONTEXT_WINDOW", "1000")
            .env("CRABPOT_MODEL_COMPACT_AT_PERCENT", "50"),
    )
    .await
    .unwrap();
    let mut platform = Platform::connect(&host).await;
    let dm = Say::dm("ann", "local");
    platform.say(&dm, "my crab is called Pinch").await;
    platform.reply_containing("local", "Pinch").await;
    assert!(
        !fake.requests().iter().any(is_summary_request),
        "nothing to compact in the first turn"
    );
    platform.say(&dm, "what else is there to know").await;
    platform
        .reply_containing("local", "what else is there to know")
        .await;
    let requests = fake.requests();
    let summary_at = requests
        .iter()
        .position(is_summary_request)
        .expect("a summarisation request");
    assert!(
        request_text(&requests[summary_at]).contains("Pinch"),
        "the older turn is what gets condensed"
    );
    // The turn went on from the summary, without the condensed turn verbatim.
    let next = &requests[summary_at + 1];
    assert!(!is_summary_request(next));
    let text = request_text(next);
    assert!(text.contains("SUMMARY-NOTE"), "{text}");
    assert!(!text.contains("my crab is called Pinch"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn clear_from_an_owner_resets_the_conversation_and_is_refused_to_others() {
    if !require_docker("clear_from_an_owner_resets_the_conversation_and_is_refused_to_others").await
    {
        return;
    }
    let fake = FakeModel::start().unwrap();
    let host = HostProcess::start(HostOptions::with_model(ModelConfig::openai(&fake)))
        .await
        .unwrap();
    cli_ok(&host, &["users", "create", "cli:ann"]).await;
    cli_ok(&host, &["roles", "grant", "cli:ann", "owner"]).await;
    let mut platform = Platform::connect(&host).await;
    platform
        .say(&Say::dm("ann", "local"), "the secret is pumpkin")
        .await;
    platform.reply_containing("local", "pumpkin").await;

    platform.say(&Say::dm("bob", "local"), "/clear").await;
    platform
        .reply_containing("local", "Only an owner or admin")
        .await;
    platform.say(&Say::dm("ann", "local"), "/clear").await;
    platform
        .reply_containing("local", "Conversation cleared.")
        .await;
    let n_before = fake.requests().len();
    platform
        .say(&Say::dm("ann", "local"), "what was the secret?")
        .await;
    platform
        .reply_containing("local", "what was the secret?")
        .await;
    let requests = fake.requests();
    assert_eq!(requests.len(), n_before + 1, "/clear needs no model call");
    let text = request_text(requests.last().unwrap());
    assert!(
        !text.contains("pumpkin"),
        "the conversation was reset: {text}"
    );
}

/// The owners in `crabpot roles list --json`.
async fn owners(host: &HostProcess) -> Vec<String> {
    let listed = cli_ok(host, &["--json", "roles", "list"]).await;
    let grants: serde_json::Value = serde_json::from_str(&listed).unwrap();
    grants
        .as_array()
        .unwrap()
        .iter()
        .filter(|grant| grant["role"] == "owner")
        .filter_map(|grant| grant["user_id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_person_at_the_terminal_is_the_owner_from_the_first_start() {
    if !require_docker("the_person_at_the_terminal_is_the_owner_from_the_first_start").await {
        return;
    }
    let fake = FakeModel::start().unwrap();
    let mut host = HostProcess::start(HostOptions::with_model(ModelConfig::openai(&fake)))
        .await
        .unwrap();
    // One owner: the identity `crabpot chat` speaks as by default.
    let first = owners(&host).await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(first[0].starts_with("cli:"), "{first:?}");

    // So `/clear` works from the terminal with no grant.
    let output = host.chat("remember pumpkin", TURN).await.unwrap();
    assert!(output.success(), "{output:?}");
    let output = host.chat("/clear", TURN).await.unwrap();
    assert!(
        output.success() && output.stdout.contains("Conversation cleared."),
        "{output:?}\n{}",
        host.log_tail(40)
    );

    // It is a first-start grant only: revoked, it stays revoked across a restart.
    cli_ok(&host, &["roles", "revoke", &first[0], "owner"]).await;
    host.restart().await.unwrap();
    assert!(owners(&host).await.is_empty());
    let output = host.chat("/clear", TURN).await.unwrap();
    assert!(
        output.stdout.contains("Only an owner or admin"),
        "{output:?}"
    );
}
