//! Routing end to end through real containers, with a fake chat platform on `cli.sock`: a
//! group chat wired with engage mode `mention` and `accumulate` (chatter is stored as context
//! and rides along with the next mention's turn), a threaded message forced into its own
//! per-thread session with the reply in that thread, and fan-out of one message to two agent
//! groups in priority order.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use host::channels::cli::ServerLine;
use support::{Platform, Say, TURN, central, cli_ok, column, eventually, groups_dir};
use tests::docker::require_docker;
use tests::fake_model::FakeModel;
use tests::host_process::{HostOptions, HostProcess, ModelConfig};

#[tokio::test(flavor = "multi_thread")]
async fn accumulated_chatter_rides_along_and_threads_get_their_own_session() {
    if !require_docker("accumulated_chatter_rides_along_and_threads_get_their_own_session").await {
        return;
    }
    let fake = FakeModel::start().unwrap();
    let host = HostProcess::start(HostOptions::with_model(ModelConfig::openai(&fake)))
        .await
        .unwrap();
    cli_ok(&host, &["chats", "create", "cli", "team", "--group-chat"]).await;
    cli_ok(
        &host,
        &[
            "wirings",
            "create",
            "cli/team",
            "main",
            "--ignored",
            "accumulate",
        ],
    )
    .await;
    let mut platform = Platform::connect(&host).await;
    let kim = Say::group("kim", "team", false);

    // Chatter without a mention: stored as context, wakes nothing.
    let answer = platform.say(&kim, "the password is swordfish").await;
    match &answer {
        ServerLine::Accepted {
            message_ids,
            context_ids,
            ..
        } => assert!(
            message_ids.is_empty() && context_ids.len() == 1,
            "{answer:?}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(fake.requests().is_empty(), "context alone calls no model");

    // A mention: the turn sees both rows; the reply lands in the team chat.
    let mention = Say::group("kim", "team", true);
    platform.say(&mention, "@crab what is the password?").await;
    let (reply, thread) = platform
        .reply_containing("team", "what is the password")
        .await;
    assert!(
        reply.contains("swordfish"),
        "the context row rode along: {reply}"
    );
    assert_eq!(thread, None);
    let request = fake.requests().pop().unwrap();
    let user_text = request.last_user_text().unwrap();
    assert!(
        user_text.contains("swordfish") && user_text.contains("what is the password"),
        "{user_text}"
    );

    // A mention in a thread of the group chat: its own session, the reply in the thread.
    platform
        .say(&mention.clone().thread("t-42"), "@crab in a thread")
        .await;
    let (_, thread) = platform.reply_containing("team", "in a thread").await;
    assert_eq!(thread.as_deref(), Some("t-42"));
    let keys: Vec<String> = column(
        &central(&host),
        "SELECT session_key FROM sessions WHERE agent_group_id = 'main' ORDER BY created_at",
    );
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(
        keys[0].starts_with("chat:")
            && keys[1].starts_with("thread:")
            && keys[1].ends_with(":t-42"),
        "{keys:?}"
    );
    // The thread's session saw only the thread's message.
    let last = fake.requests().pop().unwrap().last_user_text().unwrap();
    assert!(!last.contains("swordfish"), "{last}");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_message_fans_out_to_every_engaged_group_in_priority_order() {
    if !require_docker("one_message_fans_out_to_every_engaged_group_in_priority_order").await {
        return;
    }
    let groups = groups_dir(&[("second", "# Second\n\nROLE-SECOND: answer briefly.\n")]);
    let fake = FakeModel::start().unwrap();
    fake.set_default_reply_fn(|request| {
        let who = if support::system_prompt(request).contains("ROLE-SECOND") {
            "second"
        } else {
            "main"
        };
        tests::fake_model::Reply::text(format!(
            "{who} heard: {}",
            request.last_user_text().unwrap_or_default()
        ))
    });
    let host = HostProcess::start(HostOptions {
        groups_dir: Some(groups.path().to_owned()),
        ..HostOptions::with_model(ModelConfig::openai(&fake))
    })
    .await
    .unwrap();
    cli_ok(&host, &["groups", "create", "second", "--memory-mb", "128"]).await;
    cli_ok(&host, &["chats", "create", "cli", "lobby", "--group-chat"]).await;
    cli_ok(
        &host,
        &[
            "wirings",
            "create",
            "cli/lobby",
            "main",
            "--engage",
            "pattern",
            "--pattern",
            "(?i)crab",
            "--priority",
            "1",
        ],
    )
    .await;
    cli_ok(
        &host,
        &[
            "wirings",
            "create",
            "cli/lobby",
            "second",
            "--engage",
            "pattern",
            "--pattern",
            "(?i)lobster|crab",
            "--priority",
            "9",
        ],
    )
    .await;
    let mut platform = Platform::connect(&host).await;
    let anna = Say::group("anna", "lobby", false);

    let answer = platform.say(&anna, "crab and lobster").await;
    match &answer {
        ServerLine::Accepted { message_ids, .. } => assert_eq!(message_ids.len(), 2, "{answer:?}"),
        other => panic!("{other:?}"),
    }
    platform.reply_containing("lobby", "main heard").await;
    platform.reply_containing("lobby", "second heard").await;
    // Priority order: the higher-priority group's session was created first.
    let groups_in_order: Vec<String> = column(
        &central(&host),
        "SELECT agent_group_id FROM sessions ORDER BY rowid",
    );
    assert_eq!(groups_in_order, ["second", "main"]);

    // The second group's containers get its own memory limit.
    let docker = tests::docker::connect().await.unwrap();
    let containers = tests::docker::list_containers_by_label(&docker, "crabpot.group", "second")
        .await
        .unwrap();
    let ours: Vec<_> = containers
        .iter()
        .filter(|c| {
            c.labels
                .as_ref()
                .and_then(|l| l.get("crabpot.install"))
                .map(String::as_str)
                == Some(host.install_id())
        })
        .collect();
    assert_eq!(ours.len(), 1);
    let inspect = tests::docker::inspect_container_json(&docker, ours[0].id.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(inspect["HostConfig"]["Memory"], 128 * 1024 * 1024);

    // Only the second group engages on "lobster"; main records a drop.
    platform.say(&anna, "just a lobster").await;
    let (reply, _) = platform.reply_containing("lobby", "just a lobster").await;
    assert!(reply.starts_with("second heard"), "{reply}");
    eventually("main's drop to be recorded", TURN, || {
        let reasons: Vec<String> = column(
            &central(&host),
            "SELECT reason FROM dropped_messages WHERE agent_group_id = 'main'",
        );
        reasons
            .iter()
            .any(|r| r.contains("did not engage"))
            .then_some(())
    })
    .await;
}
