//! Agents that create agents, end to end: `create_agent` waits for an approval (the default
//! policy); once the operator approves, the child's folder, agent group and both
//! destinations exist, the parent is told, sends to the child by name, and the child's answer
//! comes back to the parent (agent to agent). A denied request is reported to the parent with
//! the reason, and nothing is created.
//!
//! The fake model plays both agents, telling them apart by the system prompt: the child's
//! instructions carry the marker `ROLE-SCOUT`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use support::{
    Platform, Say, after_tool_call, cli_json, cli_ok, groups_dir, system_prompt, tool_result,
};
use tests::docker::require_docker;
use tests::fake_model::{FakeModel, Reply, echo_reply};
use tests::host_process::{HostOptions, HostProcess, ModelConfig};

const SCOUT: &str = "# Scout\n\nROLE-SCOUT: you look for crabs and report back.\n";

fn script(fake: &FakeModel) {
    fake.set_default_reply_fn(|request| {
        let last = request.last_user_text().unwrap_or_default();
        if system_prompt(request).contains("ROLE-SCOUT") {
            Reply::text(format!("scout says: found it, re <{last}>"))
        } else if after_tool_call(request) {
            let result = tool_result(request).unwrap_or_default();
            if result.starts_with("asked the host to create agent") {
                Reply::text(format!("asked: {result}"))
            } else {
                Reply::text("")
            }
        } else if last.contains("scout says") {
            Reply::text(format!("parent relays: {last}"))
        } else if last.contains("now exists") {
            Reply::tool_call(
                "send_message",
                json!({"to": "scout", "text": "find the crab"}),
            )
        } else if last.contains("was denied") {
            Reply::text(format!("ok: {last}"))
        } else if last.contains("make a scout") {
            Reply::tool_call(
                "create_agent",
                json!({"name": "scout", "instructions": SCOUT}),
            )
        } else if last.contains("make a spy") {
            Reply::tool_call(
                "create_agent",
                json!({"name": "spy", "instructions": "You spy."}),
            )
        } else {
            echo_reply(request)
        }
    });
}

fn pending_create_agent(approvals: &Value) -> String {
    let list = approvals.as_array().unwrap();
    let found: Vec<&Value> = list
        .iter()
        .filter(|a| a["kind"] == "create_agent" && a["status"] == "pending")
        .collect();
    assert_eq!(found.len(), 1, "{approvals}");
    found[0]["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn create_agent_waits_for_approval_and_then_the_child_answers_its_parent() {
    if !require_docker("create_agent_waits_for_approval_and_then_the_child_answers_its_parent")
        .await
    {
        return;
    }
    let groups = groups_dir(&[]);
    let fake = FakeModel::start().unwrap();
    script(&fake);
    let host = HostProcess::start(HostOptions {
        groups_dir: Some(groups.path().to_owned()),
        ..HostOptions::with_model(ModelConfig::openai(&fake))
    })
    .await
    .unwrap();
    let mut platform = Platform::connect(&host).await;
    platform.say(&Say::dm("ann", "local"), "make a scout").await;
    let (asked, _) = platform.reply_containing("local", "asked:").await;
    assert!(asked.contains("\"scout\""), "{asked}");

    // Nothing exists until someone approves.
    let approval = pending_create_agent(&cli_json(&host, &["approvals", "list"]).await);
    let shown = cli_json(&host, &["approvals", "show", &approval]).await;
    assert_eq!(shown["approval"]["agent_group_id"], "main");
    assert!(
        shown["approval"]["summary"]
            .as_str()
            .unwrap()
            .contains("wants to create agent \"scout\""),
        "{shown}"
    );
    assert!(!groups.path().join("scout").exists());
    let listed = cli_ok(&host, &["groups", "list"]).await;
    assert!(!listed.contains("scout"), "{listed}");

    let decided = cli_ok(&host, &["approvals", "approve", &approval]).await;
    assert!(decided.contains("approved"), "{decided}");
    let (relayed, _) = platform.reply_containing("local", "parent relays:").await;
    assert!(relayed.contains("scout says: found it"), "{relayed}");
    assert!(
        relayed.contains("find the crab"),
        "the child got the parent's message: {relayed}"
    );

    // The child: its folder and instructions, its group (a child of main), both destinations.
    assert_eq!(
        std::fs::read_to_string(groups.path().join("scout/AGENT.md")).unwrap(),
        SCOUT
    );
    let group = cli_json(&host, &["groups", "show", "scout"]).await;
    assert_eq!(group["group"]["parent_agent_group_id"], "main");
    let destinations = cli_json(&host, &["destinations", "list"]).await;
    let has = |group: &str, name: &str, target: &str| {
        destinations.as_array().unwrap().iter().any(|d| {
            d["agent_group_id"] == group
                && d["name"] == name
                && d["target"]["agent_group_id"] == target
        })
    };
    assert!(has("main", "scout", "scout"), "{destinations}");
    assert!(has("scout", "parent", "main"), "{destinations}");
    // The child's session was started by the parent's: its answers go back there.
    let sessions = cli_json(&host, &["sessions", "list", "--group", "scout"]).await;
    assert_eq!(sessions.as_array().unwrap().len(), 1, "{sessions}");
    assert!(sessions[0]["session"]["source_session_id"].is_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_denied_create_agent_is_reported_and_creates_nothing() {
    if !require_docker("a_denied_create_agent_is_reported_and_creates_nothing").await {
        return;
    }
    let groups = groups_dir(&[]);
    let fake = FakeModel::start().unwrap();
    script(&fake);
    let host = HostProcess::start(HostOptions {
        groups_dir: Some(groups.path().to_owned()),
        ..HostOptions::with_model(ModelConfig::openai(&fake))
    })
    .await
    .unwrap();
    let mut platform = Platform::connect(&host).await;
    platform.say(&Say::dm("ann", "local"), "make a spy").await;
    platform.reply_containing("local", "asked:").await;
    let approval = pending_create_agent(&cli_json(&host, &["approvals", "list"]).await);
    cli_ok(
        &host,
        &["approvals", "deny", &approval, "--reason", "no spies here"],
    )
    .await;
    let (reply, _) = platform.reply_containing("local", "ok:").await;
    assert!(reply.contains("create_agent \"spy\" was denied"), "{reply}");
    assert!(reply.contains("no spies here"), "{reply}");
    assert!(!groups.path().join("spy").exists());
    let destinations = cli_json(&host, &["destinations", "list", "--group", "main"]).await;
    assert_eq!(destinations.as_array().unwrap().len(), 1, "{destinations}");

    // With the policy `deny`, the agent is refused at once and told why.
    cli_ok(
        &host,
        &["groups", "update", "main", "--create-agents", "deny"],
    )
    .await;
    platform.say(&Say::dm("ann", "local"), "make a spy").await;
    let (refused, _) = platform
        .reply_containing("local", "may not create agents")
        .await;
    assert!(
        refused.contains("create_agent \"spy\" was refused"),
        "{refused}"
    );
}
