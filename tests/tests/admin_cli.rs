//! The admin CLI against a running host: every `crabpot <resource> <verb>`, in tables and
//! with `--json`, and the error cases with their documented exit codes (2 bad arguments,
//! 3 host not running, 5 not found, 6 invalid input, 7 conflict, 8 refused), plus
//! `crabpot help` and `crabpot <resource> help`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::Value;
use support::{Platform, Say, cli_fails, cli_json, cli_ok, groups_dir};
use tests::docker::require_docker;
use tests::host_process::{HostOptions, HostProcess};

fn ids(list: &Value, field: &str) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|item| {
            item.pointer(field)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn groups_chats_wirings_and_destinations() {
    if !require_docker("groups_chats_wirings_and_destinations").await {
        return;
    }
    let groups = groups_dir(&[]);
    let host = HostProcess::start(HostOptions {
        groups_dir: Some(groups.path().to_owned()),
        ..HostOptions::default()
    })
    .await
    .unwrap();

    // groups
    let table = cli_ok(&host, &["groups", "list"]).await;
    assert!(table.starts_with("ID") && table.contains("main"), "{table}");
    let out = cli_ok(
        &host,
        &[
            "groups",
            "create",
            "research",
            "--name",
            "Research",
            "--instructions",
            "You research.",
            "--memory-mb",
            "256",
        ],
    )
    .await;
    assert!(out.contains("created agent group research"), "{out}");
    assert_eq!(
        std::fs::read_to_string(groups.path().join("research/AGENT.md")).unwrap(),
        "You research."
    );
    cli_fails(&host, &["groups", "create", "research"], 7).await;
    cli_fails(&host, &["groups", "create", "../escape"], 6).await;
    cli_fails(&host, &["groups", "create", "tiny", "--memory-mb", "1"], 6).await;
    cli_ok(
        &host,
        &[
            "groups",
            "update",
            "research",
            "--name",
            "Research team",
            "--cpus",
            "0.5",
        ],
    )
    .await;
    let shown = cli_json(&host, &["groups", "show", "research"]).await;
    assert_eq!(shown["group"]["name"], "Research team");
    assert_eq!(shown["limits"]["memory_mb"], 256);
    assert_eq!(shown["limits"]["cpus"], 0.5);
    let outline = cli_ok(&host, &["groups", "show", "research"]).await;
    assert!(outline.contains("name: Research team"), "{outline}");
    cli_fails(&host, &["groups", "show", "nope"], 5).await;
    cli_fails(&host, &["groups", "update", "nope", "--name", "x"], 5).await;
    cli_fails(
        &host,
        &["groups", "update", "research", "--pids-limit", "1"],
        6,
    )
    .await;
    let out = cli_ok(&host, &["groups", "restart", "research"]).await;
    assert!(out.contains("0 container(s) stopped"), "{out}");
    cli_fails(&host, &["groups", "restart", "nope"], 5).await;

    // chats
    let chat = cli_json(
        &host,
        &[
            "chats",
            "create",
            "cli",
            "room-9",
            "--name",
            "Room nine",
            "--group-chat",
        ],
    )
    .await;
    assert_eq!(chat["unknown_sender_policy"], "public");
    assert_eq!(chat["is_group"], true);
    let chat_id = chat["id"].as_str().unwrap().to_owned();
    cli_fails(&host, &["chats", "create", "cli", "room-9"], 7).await;
    cli_fails(
        &host,
        &["chats", "create", "cli", "x", "--unknown-senders", "maybe"],
        2,
    )
    .await;
    cli_ok(
        &host,
        &[
            "chats",
            "update",
            "cli/room-9",
            "--unknown-senders",
            "strict",
        ],
    )
    .await;
    let shown = cli_json(&host, &["chats", "show", &chat_id]).await;
    assert_eq!(shown["chat"]["unknown_sender_policy"], "strict");
    assert_eq!(shown["address"], "cli/room-9");
    let table = cli_ok(&host, &["chats", "list"]).await;
    assert!(
        table.contains("room-9") && table.contains("strict"),
        "{table}"
    );
    cli_fails(&host, &["chats", "show", "cli/nope"], 5).await;
    cli_fails(&host, &["chats", "update", "mg-nope", "--name", "x"], 5).await;

    // wirings: bad regexes and missing patterns are refused when saved
    let stderr = cli_fails(
        &host,
        &[
            "wirings",
            "create",
            "cli/room-9",
            "research",
            "--engage",
            "pattern",
            "--pattern",
            "(unclosed",
        ],
        6,
    )
    .await;
    assert!(stderr.contains("not a valid regex"), "{stderr}");
    let stderr = cli_fails(
        &host,
        &[
            "wirings",
            "create",
            "cli/room-9",
            "research",
            "--engage",
            "pattern",
        ],
        6,
    )
    .await;
    assert!(stderr.contains("needs a pattern"), "{stderr}");
    cli_fails(
        &host,
        &[
            "wirings",
            "create",
            "cli/room-9",
            "research",
            "--pattern",
            "x",
        ],
        6,
    )
    .await;
    cli_fails(&host, &["wirings", "create", "cli/nope", "research"], 5).await;
    cli_fails(&host, &["wirings", "create", "cli/room-9", "nope"], 5).await;
    cli_fails(
        &host,
        &[
            "wirings",
            "create",
            "cli/room-9",
            "research",
            "--session-mode",
            "sometimes",
        ],
        2,
    )
    .await;
    let created = cli_json(
        &host,
        &[
            "wirings",
            "create",
            "cli/room-9",
            "research",
            "--session-mode",
            "per-thread",
            "--engage",
            "mention-sticky",
            "--sender-scope",
            "known",
            "--ignored",
            "accumulate",
            "--priority",
            "3",
        ],
    )
    .await;
    let wiring_id = created["wiring"]["id"].as_str().unwrap().to_owned();
    assert_eq!(created["destination"], "room-nine");
    assert_eq!(created["wiring"]["session_mode"], "per-thread");
    cli_fails(&host, &["wirings", "create", "cli/room-9", "research"], 7).await;
    // A destination name clash is refused.
    let stderr = cli_fails(
        &host,
        &[
            "wirings",
            "create",
            "cli/room-9",
            "main",
            "--destination",
            "terminal",
        ],
        7,
    )
    .await;
    assert!(stderr.contains("terminal"), "{stderr}");
    cli_ok(
        &host,
        &[
            "wirings",
            "update",
            &wiring_id,
            "--engage",
            "pattern",
            "--pattern",
            "(?i)research",
        ],
    )
    .await;
    cli_fails(
        &host,
        &["wirings", "update", &wiring_id, "--pattern", "[z-a]"],
        6,
    )
    .await;
    cli_fails(
        &host,
        &["wirings", "update", "w-nope", "--priority", "1"],
        5,
    )
    .await;
    let listed = cli_json(&host, &["wirings", "list", "--group", "research"]).await;
    assert_eq!(ids(&listed, "/id"), [wiring_id.as_str()]);
    assert_eq!(listed[0]["engage_pattern"], "(?i)research");
    let table = cli_ok(&host, &["wirings", "list", "--chat", "cli/room-9"]).await;
    assert!(
        table.contains("(?i)research") && table.contains("accumulate"),
        "{table}"
    );
    let out = cli_ok(&host, &["wirings", "delete", &wiring_id]).await;
    assert!(out.contains("destination for the chat stays"), "{out}");
    cli_fails(&host, &["wirings", "delete", &wiring_id], 5).await;

    // destinations
    let listed = cli_json(&host, &["destinations", "list", "--group", "research"]).await;
    assert_eq!(ids(&listed, "/name"), ["room-nine"]);
    cli_ok(
        &host,
        &["destinations", "add", "research", "boss", "--agent", "main"],
    )
    .await;
    cli_ok(
        &host,
        &[
            "destinations",
            "add",
            "research",
            "room-thread",
            "--chat",
            "cli/room-9",
            "--thread",
            "t1",
        ],
    )
    .await;
    cli_fails(
        &host,
        &["destinations", "add", "research", "boss", "--agent", "main"],
        7,
    )
    .await;
    cli_fails(
        &host,
        &[
            "destinations",
            "add",
            "research",
            "bad name",
            "--agent",
            "main",
        ],
        6,
    )
    .await;
    cli_fails(
        &host,
        &[
            "destinations",
            "add",
            "research",
            "self",
            "--agent",
            "research",
        ],
        6,
    )
    .await;
    cli_fails(
        &host,
        &["destinations", "add", "nope", "x", "--agent", "main"],
        5,
    )
    .await;
    cli_fails(
        &host,
        &["destinations", "add", "research", "x", "--agent", "nope"],
        5,
    )
    .await;
    cli_fails(
        &host,
        &["destinations", "add", "research", "x", "--chat", "cli/nope"],
        5,
    )
    .await;
    cli_fails(&host, &["destinations", "add", "research", "x"], 6).await;
    cli_fails(
        &host,
        &[
            "destinations",
            "add",
            "research",
            "x",
            "--chat",
            "cli/room-9",
            "--agent",
            "main",
        ],
        2,
    )
    .await;
    let table = cli_ok(&host, &["destinations", "list"]).await;
    assert!(
        table.contains("boss") && table.contains("agent") && table.contains("t1"),
        "{table}"
    );
    cli_ok(&host, &["destinations", "remove", "research", "boss"]).await;
    cli_fails(&host, &["destinations", "remove", "research", "boss"], 5).await;
    cli_fails(&host, &["destinations", "list", "--group", "nope"], 5).await;

    // deletes
    cli_fails(&host, &["groups", "delete", "main"], 6).await;
    cli_fails(&host, &["groups", "delete", "nope"], 5).await;
    cli_ok(&host, &["groups", "delete", "research"]).await;
    cli_fails(&host, &["groups", "show", "research"], 5).await;
    cli_ok(&host, &["chats", "delete", "cli/room-9"]).await;
    cli_fails(&host, &["chats", "delete", "cli/room-9"], 5).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn people_sessions_approvals_dropped_status_and_help() {
    if !require_docker("people_sessions_approvals_dropped_status_and_help").await {
        return;
    }
    let mut host = HostProcess::start(HostOptions::default()).await.unwrap();

    // users, roles, members
    let user = cli_json(
        &host,
        &[
            "users",
            "create",
            "cli:olivia",
            "--name",
            "Olivia",
            "--dm",
            "cli/dm:olivia",
        ],
    )
    .await;
    assert_eq!(user["dms"], serde_json::json!(["cli/dm:olivia"]));
    cli_fails(&host, &["users", "create", "cli:olivia"], 7).await;
    cli_fails(&host, &["users", "create", "olivia"], 6).await;
    cli_fails(&host, &["users", "create", "cli:x", "--dm", "nodm"], 6).await;
    let table = cli_ok(&host, &["users", "list"]).await;
    assert!(
        table.contains("cli:olivia") && table.contains("Olivia"),
        "{table}"
    );
    cli_ok(&host, &["roles", "grant", "cli:olivia", "owner"]).await;
    cli_ok(
        &host,
        &["roles", "grant", "cli:olivia", "admin", "--group", "main"],
    )
    .await;
    cli_fails(&host, &["roles", "grant", "cli:olivia", "owner"], 7).await;
    cli_fails(
        &host,
        &["roles", "grant", "cli:olivia", "owner", "--group", "main"],
        6,
    )
    .await;
    cli_fails(&host, &["roles", "grant", "cli:olivia", "emperor"], 6).await;
    cli_fails(&host, &["roles", "grant", "cli:nobody", "admin"], 5).await;
    cli_fails(
        &host,
        &["roles", "grant", "cli:olivia", "admin", "--group", "nope"],
        5,
    )
    .await;
    // Olivia's two, and the owner the first start made of the terminal's user.
    let roles = cli_json(&host, &["roles", "list"]).await;
    assert_eq!(roles.as_array().unwrap().len(), 3, "{roles}");
    assert_eq!(
        roles
            .as_array()
            .unwrap()
            .iter()
            .filter(|grant| grant["user_id"] != "cli:olivia" && grant["role"] == "owner")
            .count(),
        1,
        "{roles}"
    );
    cli_ok(
        &host,
        &["roles", "revoke", "cli:olivia", "admin", "--group", "main"],
    )
    .await;
    cli_fails(
        &host,
        &["roles", "revoke", "cli:olivia", "admin", "--group", "main"],
        5,
    )
    .await;
    cli_ok(&host, &["members", "add", "main", "cli:kim"]).await;
    cli_fails(&host, &["members", "add", "main", "cli:kim"], 7).await;
    cli_fails(&host, &["members", "add", "nope", "cli:kim"], 5).await;
    let members = cli_json(&host, &["members", "list", "--group", "main"]).await;
    assert_eq!(ids(&members, "/user_id"), ["cli:kim"]);
    assert!(
        cli_ok(&host, &["users", "list"]).await.contains("cli:kim"),
        "members add creates the user"
    );
    cli_ok(&host, &["members", "remove", "main", "cli:kim"]).await;
    cli_fails(&host, &["members", "remove", "main", "cli:kim"], 5).await;
    cli_fails(&host, &["members", "list", "--group", "nope"], 5).await;

    // sessions: one from a chat turn (no model configured: the reply says so)
    let reply = host.chat("hi", support::TURN).await.unwrap();
    assert!(reply.success(), "{reply:?}");
    let sessions = cli_json(&host, &["sessions", "list"]).await;
    let session = sessions[0]["session"]["id"].as_str().unwrap().to_owned();
    assert_eq!(sessions[0]["container"], "running");
    let table = cli_ok(&host, &["sessions", "list", "--group", "main"]).await;
    assert!(
        table.contains(&session) && table.contains("running"),
        "{table}"
    );
    let out = cli_ok(&host, &["groups", "restart", "main"]).await;
    assert!(out.contains("1 container(s) stopped"), "{out}");
    let shown = cli_json(&host, &["sessions", "show", &session]).await;
    assert_eq!(shown["container"], "none");
    let reply = host.chat("back again", support::TURN).await.unwrap();
    assert!(reply.success(), "{reply:?}");
    let shown = cli_json(&host, &["sessions", "show", &session]).await;
    assert_eq!(shown["session"]["agent_group_id"], "main");
    let out = cli_ok(&host, &["sessions", "stop", &session]).await;
    assert!(out.contains("stopped"), "{out}");
    let shown = cli_json(&host, &["sessions", "show", &session]).await;
    assert_eq!(shown["session"]["status"], "stopped");
    assert_eq!(shown["container"], "none");
    cli_ok(&host, &["sessions", "reset", &session]).await;
    assert!(!host.sessions_dir().join("main").join(&session).exists());
    cli_fails(&host, &["sessions", "show", &session], 5).await;
    cli_fails(&host, &["sessions", "stop", "s-nope"], 5).await;
    cli_fails(&host, &["sessions", "reset", "s-nope"], 5).await;
    let reply = host.chat("a fresh start", support::TURN).await.unwrap();
    assert!(reply.success(), "{reply:?}");
    let sessions = cli_json(&host, &["sessions", "list"]).await;
    assert_ne!(sessions[0]["session"]["id"], session.as_str());

    // approvals and dropped
    cli_ok(
        &host,
        &[
            "chats",
            "create",
            "cli",
            "vip",
            "--group-chat",
            "--unknown-senders",
            "request_approval",
        ],
    )
    .await;
    cli_ok(&host, &["wirings", "create", "cli/vip", "main"]).await;
    let mut platform = Platform::connect(&host).await;
    let held = Platform::held(
        &platform
            .say(&Say::group("sam", "vip", true), "@crab hi")
            .await,
    );
    let table = cli_ok(&host, &["approvals", "list"]).await;
    assert!(
        table.contains(&held[0]) && table.contains("cli:olivia"),
        "{table}"
    );
    let outline = cli_ok(&host, &["approvals", "show", &held[0]]).await;
    assert!(outline.contains("status: pending"), "{outline}");
    cli_fails(&host, &["approvals", "show", "ap-0000000000"], 5).await;
    cli_fails(&host, &["approvals", "approve", "ap-0000000000"], 5).await;
    cli_fails(
        &host,
        &["approvals", "deny", &held[0], "--as", "cli:kim"],
        8,
    )
    .await;
    let out = cli_ok(&host, &["approvals", "deny", &held[0], "--reason", "no"]).await;
    assert!(out.contains("denied"), "{out}");
    assert_eq!(
        cli_json(&host, &["approvals", "list"]).await,
        serde_json::json!([])
    );
    let all = cli_json(&host, &["approvals", "list", "--all"]).await;
    assert_eq!(all[0]["status"], "denied");
    assert_eq!(all[0]["reason"], "no");
    platform
        .say(&Say::group("stranger", "cli-unwired", false), "hello?")
        .await;
    let dropped = cli_json(&host, &["dropped", "list", "--limit", "10"]).await;
    let reasons: Vec<String> = ids(&dropped, "/reason");
    assert!(
        reasons.iter().any(|r| r == "denied by an approver"),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("not wired")),
        "{reasons:?}"
    );
    let table = cli_ok(&host, &["dropped", "list"]).await;
    assert!(
        table.starts_with("DIRECTION") && table.contains("cli/vip"),
        "{table}"
    );

    // status
    let status = cli_json(&host, &["status"]).await;
    assert_eq!(status["install_id"], host.install_id());
    assert_eq!(status["pending_approvals"], 0);
    let text = cli_ok(&host, &["status"]).await;
    assert!(
        text.contains("containers") && text.contains("approvals"),
        "{text}"
    );

    // help
    let help = cli_ok(&host, &["help"]).await;
    for resource in [
        "groups",
        "chats",
        "wirings",
        "destinations",
        "users",
        "roles",
        "members",
        "sessions",
        "approvals",
        "dropped",
        "status",
    ] {
        assert!(help.contains(resource), "{resource} in {help}");
    }
    assert!(help.contains("8  refused"), "{help}");
    let help = cli_ok(&host, &["groups", "help"]).await;
    for verb in ["list", "show", "create", "update", "delete", "restart"] {
        assert!(help.contains(verb), "{verb} in {help}");
    }
    let help = cli_ok(&host, &["approvals", "help", "approve"]).await;
    assert!(help.contains("--as"), "{help}");
    cli_fails(&host, &["groups", "frobnicate"], 2).await;

    // A host that is not running.
    host.stop().unwrap();
    let stderr = cli_fails(&host, &["groups", "list"], 3).await;
    assert!(stderr.contains("is `crabpot serve` running?"), "{stderr}");
    cli_fails(&host, &["status"], 3).await;
}
