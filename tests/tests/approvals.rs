//! Approvals end to end, with a fake chat platform on `cli.sock` and real containers:
//! an unknown sender in a `request_approval` chat is held, the owner is asked in their DM, a
//! member who is not an approver is refused (in their DM and through `--as`) and the refusal
//! is logged, the owner's DM `approve` makes the sender a member and replays the held message
//! to the agent. A denial drops; a mention in an unwired chat asks for registration, and
//! approving it with an agent group wires the chat and replays.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use host::channels::cli::ServerLine;
use support::{Platform, Say, central, cli_fails, cli_json, cli_ok, column};
use tests::docker::require_docker;
use tests::fake_model::FakeModel;
use tests::host_process::{HostOptions, HostProcess, ModelConfig};

#[tokio::test(flavor = "multi_thread")]
async fn the_wrong_user_is_refused_and_the_right_one_replays_the_held_message() {
    if !require_docker("the_wrong_user_is_refused_and_the_right_one_replays_the_held_message").await
    {
        return;
    }
    let fake = FakeModel::start().unwrap();
    let host = HostProcess::start(HostOptions::with_model(ModelConfig::openai(&fake)))
        .await
        .unwrap();
    cli_ok(
        &host,
        &["users", "create", "cli:olivia", "--dm", "cli/dm:olivia"],
    )
    .await;
    cli_ok(&host, &["roles", "grant", "cli:olivia", "owner"]).await;
    cli_ok(
        &host,
        &["users", "create", "cli:mallory", "--dm", "cli/dm:mallory"],
    )
    .await;
    cli_ok(&host, &["members", "add", "main", "cli:mallory"]).await;
    cli_ok(
        &host,
        &[
            "chats",
            "create",
            "cli",
            "room-1",
            "--group-chat",
            "--unknown-senders",
            "request_approval",
        ],
    )
    .await;
    cli_ok(&host, &["wirings", "create", "cli/room-1", "main"]).await;
    let mut platform = Platform::connect(&host).await;

    // An unknown sender is held; the owner is asked in their DM.
    let held = Platform::held(
        &platform
            .say(&Say::group("sam", "room-1", true), "@crab hello from sam")
            .await,
    );
    assert_eq!(held.len(), 1);
    let id = held[0].clone();
    let (question, _) = platform.reply_containing("dm:olivia", &id).await;
    assert!(
        question.contains("cli:sam") && question.contains("hello from sam"),
        "{question}"
    );
    let listed = cli_json(&host, &["approvals", "list"]).await;
    assert_eq!(listed[0]["id"], id.as_str());
    // Olivia, and the terminal's own user, the owner from the first start (on the same
    // platform, so an approver too; with no DM, only Olivia is asked).
    let approvers = listed[0]["approvers"].as_array().unwrap();
    assert!(
        approvers.contains(&serde_json::json!("cli:olivia")) && approvers.len() == 2,
        "{approvers:?}"
    );
    assert!(listed[0]["expires_at"].as_i64() > listed[0]["created_at"].as_i64());
    assert!(fake.requests().is_empty(), "nothing reached the agent yet");

    // A member who is not an approver: refused in their DM...
    let answer = platform
        .say(&Say::dm("mallory", "dm:mallory"), &format!("approve {id}"))
        .await;
    match &answer {
        ServerLine::Accepted { decision, .. } => {
            assert!(
                decision
                    .as_deref()
                    .unwrap_or_default()
                    .contains("may not decide"),
                "{answer:?}"
            )
        }
        other => panic!("{other:?}"),
    }
    platform
        .reply_containing("dm:mallory", "may not decide")
        .await;
    // ...and through the CLI on their behalf (exit code 8).
    let stderr = cli_fails(
        &host,
        &["approvals", "approve", &id, "--as", "cli:mallory"],
        8,
    )
    .await;
    assert!(stderr.contains("cli:mallory may not decide"), "{stderr}");
    let shown = cli_json(&host, &["approvals", "show", &id]).await;
    assert_eq!(shown["approval"]["status"], "pending");
    let log = shown["log"].as_array().unwrap();
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(
        log.iter().all(|e| e["actor"] == "cli:mallory"
            && e["outcome"].as_str().unwrap().starts_with("refused"))
    );

    // The owner approves in their DM: sam becomes a member, the message is replayed.
    platform
        .say(&Say::dm("olivia", "dm:olivia"), &format!("approve {id}"))
        .await;
    let (reply, _) = platform.reply_containing("room-1", "hello from sam").await;
    assert!(reply.starts_with("echo:"), "{reply}");
    let members = cli_json(&host, &["members", "list", "--group", "main"]).await;
    assert!(
        members
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["user_id"] == "cli:sam"),
        "{members}"
    );
    let shown = cli_json(&host, &["approvals", "show", &id]).await;
    assert_eq!(shown["approval"]["status"], "approved");
    assert_eq!(shown["approval"]["decided_by"], "cli:olivia");
    // A decided approval cannot be decided again.
    cli_fails(&host, &["approvals", "deny", &id], 8).await;

    // Another stranger, denied by the operator: the held message is dropped and recorded.
    let held = Platform::held(
        &platform
            .say(&Say::group("eve", "room-1", true), "@crab let me in")
            .await,
    );
    let out = cli_ok(
        &host,
        &["approvals", "deny", &held[0], "--reason", "not today"],
    )
    .await;
    assert!(out.contains("denied"), "{out}");
    let reasons: Vec<String> = column(
        &central(&host),
        "SELECT reason FROM dropped_messages WHERE sender = 'cli:eve'",
    );
    assert_eq!(reasons, ["denied by an approver"]);
    let answer = platform
        .say(&Say::group("eve", "room-1", true), "@crab again?")
        .await;
    assert!(
        matches!(answer, ServerLine::Error { ref message } if message.contains("denied")),
        "{answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mention_in_an_unwired_chat_is_registered_to_the_chosen_group() {
    if !require_docker("a_mention_in_an_unwired_chat_is_registered_to_the_chosen_group").await {
        return;
    }
    let fake = FakeModel::start().unwrap();
    let host = HostProcess::start(HostOptions::with_model(ModelConfig::openai(&fake)))
        .await
        .unwrap();
    let mut platform = Platform::connect(&host).await;
    let quiet = platform
        .say(&Say::group("kim", "room-2", false), "just chatting")
        .await;
    assert!(
        matches!(quiet, ServerLine::Error { ref message } if message.contains("not wired")),
        "{quiet:?}"
    );
    let held = Platform::held(
        &platform
            .say(&Say::group("kim", "room-2", true), "@crab are you there?")
            .await,
    );
    let id = held[0].clone();
    let shown = cli_json(&host, &["approvals", "show", &id]).await;
    assert_eq!(shown["approval"]["kind"], "channel");
    let stderr = cli_fails(&host, &["approvals", "approve", &id], 6).await;
    assert!(stderr.contains("agent group"), "{stderr}");
    cli_fails(&host, &["approvals", "approve", &id, "--group", "nope"], 6).await;
    cli_ok(&host, &["approvals", "approve", &id, "--group", "main"]).await;
    platform.reply_containing("room-2", "are you there?").await;
    let wirings = cli_json(&host, &["wirings", "list", "--chat", "cli/room-2"]).await;
    assert_eq!(wirings.as_array().unwrap().len(), 1, "{wirings}");
    let destinations = cli_json(&host, &["destinations", "list", "--group", "main"]).await;
    assert!(
        destinations
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["chat_address"] == "cli/room-2"),
        "{destinations}"
    );
}
