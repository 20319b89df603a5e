//! Agent-to-agent end to end through real containers: agent `main` asks agent `helper` and
//! gets the answer back in the same session (files travel too); a row to an undeclared
//! destination is dropped, recorded and reported to the agent, and destination changes are
//! projected into the running session at once; a ping-pong loop between two agents is cut by
//! the per-pair cap.
//!
//! The fake model plays both agents, telling them apart by the system prompt: `helper`'s
//! AGENT.md carries the marker `ROLE-HELPER`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use rusqlite::Connection;
use serde_json::json;
use std::path::Path;
use std::time::Duration;
use support::{
    Platform, Say, TURN, after_tool_call, central, cli_ok, column, eventually, groups_dir,
    read_only, session_path, system_prompt,
};
use tests::docker::require_docker;
use tests::fake_model::{FakeModel, Reply, echo_reply};
use tests::host_process::{HostOptions, HostProcess, ModelConfig};

const HELPER: &str = "# Helper\n\nROLE-HELPER: you answer questions from other agents.\n";

fn is_helper(request: &tests::fake_model::RecordedRequest) -> bool {
    system_prompt(request).contains("ROLE-HELPER")
}

async fn start(fake: &FakeModel, groups: &Path, env: &[(&str, &str)]) -> HostProcess {
    let mut options = HostOptions {
        groups_dir: Some(groups.to_owned()),
        ..HostOptions::with_model(ModelConfig::openai(fake))
    };
    for (name, value) in env {
        options = options.env(*name, *value);
    }
    HostProcess::start(options).await.unwrap()
}

/// Plays a (hostile) container: writes a row straight into a session's outbound.db.
fn plant_row(session: &Path, id: &str, destination: &str, content: &serde_json::Value) -> i64 {
    let conn = Connection::open(session.join("out/outbound.db")).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let seq: i64 = conn
        .query_row("SELECT coalesce(max(seq), -1) FROM messages_out", [], |r| {
            r.get(0)
        })
        .unwrap();
    let seq = (seq + 2) | 1;
    conn.execute(
        "INSERT INTO messages_out (id, seq, created_at, kind, destination, content) VALUES (?1, ?2, 0, 'chat', ?3, ?4)",
        rusqlite::params![id, seq, destination, content.to_string()],
    )
    .unwrap();
    seq
}

fn delivery_state(session: &Path, id: &str) -> Option<(String, Option<String>)> {
    read_only(&session.join("in/inbound.db"))
        .query_row(
            "SELECT status, error FROM delivered WHERE message_out_id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_asks_another_and_gets_the_answer_back_in_the_same_session() {
    if !require_docker("an_agent_asks_another_and_gets_the_answer_back_in_the_same_session").await {
        return;
    }
    let groups = groups_dir(&[("helper", HELPER)]);
    let fake = FakeModel::start().unwrap();
    fake.set_default_reply_fn(|request| {
        let last = request.last_user_text().unwrap_or_default();
        if is_helper(request) {
            Reply::text(format!("helper says: 42, about <{last}>"))
        } else if after_tool_call(request) {
            Reply::text("")
        } else if last.contains("ask the helper") {
            Reply::tool_call(
                "send_message",
                json!({"to": "helper", "text": "what is six times seven?"}),
            )
        } else {
            echo_reply(request)
        }
    });
    let host = start(&fake, groups.path(), &[]).await;
    cli_ok(&host, &["groups", "create", "helper", "--name", "Helper"]).await;
    cli_ok(
        &host,
        &["destinations", "add", "main", "helper", "--agent", "helper"],
    )
    .await;

    let mut platform = Platform::connect(&host).await;
    platform
        .say(&Say::dm("ann", "local"), "please ask the helper")
        .await;
    let (reply, _) = platform.reply_containing("local", "helper says: 42").await;
    assert!(reply.contains("what is six times seven?"), "{reply}");

    // One session of main (the asking one), and helper's session for it.
    let db = central(&host);
    let main_sessions: Vec<String> =
        column(&db, "SELECT id FROM sessions WHERE agent_group_id = 'main'");
    assert_eq!(main_sessions.len(), 1, "{main_sessions:?}");
    let main_session = &main_sessions[0];
    let (helper_session, key, source): (String, String, String) = db
        .query_row(
            "SELECT id, session_key, source_session_id FROM sessions WHERE agent_group_id = 'helper'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(key, format!("a2a:{main_session}"));
    assert_eq!(&source, main_session);

    // The question in helper's session carries the return path...
    let helper_dir = session_path(&host, "helper", &helper_session);
    let (text, from): (String, String) = read_only(&helper_dir.join("in/inbound.db"))
        .query_row(
            "SELECT json_extract(content, '$.text'), source_session_id FROM messages_in WHERE kind = 'chat'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(text, "what is six times seven?");
    assert_eq!(&from, main_session);
    // ...and the answer came back into main's session as a chat row from the helper.
    let main_dir = session_path(&host, "main", main_session);
    let answers: Vec<(String, String, String)> = read_only(&main_dir.join("in/inbound.db"))
        .prepare(
            "SELECT json_extract(content, '$.text'), json_extract(content, '$.sender.id'), source_session_id \
             FROM messages_in WHERE source_session_id IS NOT NULL",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert!(answers[0].0.starts_with("helper says: 42"), "{answers:?}");
    assert_eq!(answers[0].1, "agent:helper");
    assert_eq!(answers[0].2, helper_session);

    // Files travel from main's outbox to helper's inbox.
    let outbox = main_dir.join("out/outbox/m-with-file");
    std::fs::create_dir_all(&outbox).unwrap();
    std::fs::write(outbox.join("notes.txt"), "six times seven").unwrap();
    plant_row(
        &main_dir,
        "m-with-file",
        "helper",
        &json!({"text": "see the attached notes", "files": ["notes.txt"]}),
    );
    let (reply, _) = platform
        .reply_containing("local", "see the attached notes")
        .await;
    let inbox_file = format!("/session/in/inbox/{main_session}.m-with-file/notes.txt");
    assert!(
        reply.contains(&inbox_file),
        "the helper saw the file at {inbox_file}: {reply}"
    );
    let copied = helper_dir
        .join("in/inbox")
        .join(format!("{main_session}.m-with-file"))
        .join("notes.txt");
    assert_eq!(std::fs::read_to_string(copied).unwrap(), "six times seven");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_row_to_an_undeclared_destination_is_dropped_recorded_and_reported() {
    if !require_docker("a_row_to_an_undeclared_destination_is_dropped_recorded_and_reported").await
    {
        return;
    }
    let groups = groups_dir(&[("helper", HELPER)]);
    let fake = FakeModel::start().unwrap();
    let host = start(&fake, groups.path(), &[]).await;
    cli_ok(&host, &["groups", "create", "helper"]).await;
    let mut platform = Platform::connect(&host).await;
    platform.say(&Say::dm("ann", "local"), "hello").await;
    platform.reply_containing("local", "hello").await;
    let main_dir = host.session_dir("main").unwrap();
    let projected = |dir: &Path| -> Vec<String> {
        column(
            &read_only(&dir.join("in/inbound.db")),
            "SELECT name FROM destinations ORDER BY name",
        )
    };
    assert_eq!(projected(&main_dir), ["terminal"]);

    // A destination change reaches the running session's inbound.db at once.
    cli_ok(
        &host,
        &["destinations", "add", "main", "helper", "--agent", "helper"],
    )
    .await;
    eventually("helper to be projected", TURN, || {
        (projected(&main_dir) == ["helper", "terminal"]).then_some(())
    })
    .await;
    cli_ok(&host, &["destinations", "remove", "main", "helper"]).await;
    eventually("helper to be withdrawn", TURN, || {
        (projected(&main_dir) == ["terminal"]).then_some(())
    })
    .await;

    // Rows naming a destination main does not have: made up, and just withdrawn.
    let nowhere = plant_row(&main_dir, "m-nowhere", "nowhere", &json!({"text": "leak"}));
    let withdrawn = plant_row(
        &main_dir,
        "m-withdrawn",
        "helper",
        &json!({"text": "sneak"}),
    );
    for (id, seq) in [("m-nowhere", nowhere), ("m-withdrawn", withdrawn)] {
        let (status, error) = eventually(&format!("{id} to be handled"), TURN, || {
            delivery_state(&main_dir, id)
        })
        .await;
        assert_eq!(status, "dropped");
        assert!(
            error
                .as_deref()
                .unwrap_or_default()
                .contains("is not one of this agent group's destinations"),
            "{error:?}"
        );
        // The agent is told with a system row.
        eventually(&format!("the agent to be told about seq {seq}"), TURN, || {
            let told: i64 = read_only(&main_dir.join("in/inbound.db"))
                .query_row(
                    "SELECT count(*) FROM messages_in WHERE kind = 'system' AND json_extract(content, '$.text') LIKE ?1",
                    [format!("your message seq {seq} was not delivered%")],
                    |r| r.get(0),
                )
                .unwrap();
            (told == 1).then_some(())
        })
        .await;
    }
    // Recorded in dropped_messages, and visible to the operator.
    let reasons: Vec<String> = column(
        &central(&host),
        "SELECT reason FROM dropped_messages WHERE direction = 'outbound' AND agent_group_id = 'main'",
    );
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    let listed = cli_ok(&host, &["dropped", "list"]).await;
    assert!(listed.contains("\"nowhere\" is not one of"), "{listed}");
    // Nothing reached the helper or the terminal.
    let helper_sessions: Vec<String> = column(
        &central(&host),
        "SELECT id FROM sessions WHERE agent_group_id = 'helper'",
    );
    assert!(helper_sessions.is_empty());
    assert!(
        !platform
            .replies("local")
            .iter()
            .any(|r| r == "leak" || r == "sneak")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ping_pong_loop_between_two_agents_is_cut_by_the_cap() {
    if !require_docker("a_ping_pong_loop_between_two_agents_is_cut_by_the_cap").await {
        return;
    }
    let groups = groups_dir(&[("helper", HELPER)]);
    let fake = FakeModel::start().unwrap();
    // main pings the helper on every message; the helper pongs; every pong comes back to
    // main, which pings again. When a ping is refused, main gives up and tells the user.
    fake.set_default_reply_fn(|request| {
        let last = request.last_user_text().unwrap_or_default();
        if is_helper(request) {
            Reply::text("pong")
        } else if after_tool_call(request) {
            Reply::text("")
        } else if last.contains("was not delivered") {
            Reply::text(format!("giving up: {last}"))
        } else {
            Reply::tool_call("send_message", json!({"to": "helper", "text": "ping"}))
        }
    });
    let host = start(&fake, groups.path(), &[("CRABPOT_A2A_MAX_PER_PAIR", "3")]).await;
    cli_ok(&host, &["groups", "create", "helper"]).await;
    cli_ok(
        &host,
        &["destinations", "add", "main", "helper", "--agent", "helper"],
    )
    .await;
    let mut platform = Platform::connect(&host).await;
    platform
        .say(&Say::dm("ann", "local"), "start the game")
        .await;
    let (reply, _) = platform.reply_containing("local", "giving up").await;
    assert!(reply.contains("agent-to-agent loop cap"), "{reply}");

    let db = central(&host);
    let helper_session: String = db
        .query_row(
            "SELECT id FROM sessions WHERE agent_group_id = 'helper'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let main_session: String = db
        .query_row(
            "SELECT id FROM sessions WHERE agent_group_id = 'main'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let pings: i64 =
        read_only(&session_path(&host, "helper", &helper_session).join("in/inbound.db"))
            .query_row(
                "SELECT count(*) FROM messages_in WHERE kind = 'chat'",
                [],
                |r| r.get(0),
            )
            .unwrap();
    assert_eq!(pings, 3, "exactly the cap got through");
    let main_inbound = read_only(&session_path(&host, "main", &main_session).join("in/inbound.db"));
    let refused: i64 = main_inbound
        .query_row(
            "SELECT count(*) FROM delivered WHERE status = 'dropped' AND error LIKE '%loop cap%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(refused, 1);
    let drops: Vec<(String, i64)> = db
        .prepare("SELECT reason, count FROM dropped_messages WHERE direction = 'outbound'")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(drops.len(), 1, "{drops:?}");
    assert!(
        drops[0]
            .0
            .contains("more than 3 messages to agent group helper"),
        "{drops:?}"
    );
    // The loop is over: every row of both sessions is finished.
    eventually("both sessions to go quiet", TURN, || {
        let pending = |dir: &Path| -> i64 {
            read_only(&dir.join("in/inbound.db"))
                .query_row(
                    "SELECT count(*) FROM messages_in WHERE status = 'pending'",
                    [],
                    |r| r.get(0),
                )
                .unwrap()
        };
        (pending(&session_path(&host, "main", &main_session)) == 0
            && pending(&session_path(&host, "helper", &helper_session)) == 0)
            .then_some(())
    })
    .await;
}
