//! Whole turns against a real session folder: the test plays the host (writes `inbound.db`
//! with `protocol`, reads `outbound.db` read-only) and a fake model proxy on `in/proxy.sock`
//! answers canned OpenAI or Anthropic streams.

mod support;

use agent_runner::{Runner, TurnOutcome};
use protocol::rows::AckStatus;
use protocol::schema::open_outbound_writer;
use protocol::{ProviderKind, outbound};
use std::time::Duration;
use support::{
    Canned, FakeModel, Session, anthropic_stream, chat_row, config, openai_stream, wait_for,
};

const NO_MODEL_BODY: &str = r#"{"error":{"type":"no_model_configured","message":"no model is configured on the host: set CRABPOT_MODEL_PROVIDER and CRABPOT_MODEL_NAME"}}"#;

#[tokio::test]
async fn openai_turn_sends_tool_messages_and_the_final_reply() {
    let session = Session::new(config(ProviderKind::OpenAi));
    let mut context_row = chat_row("(earlier chatter)");
    context_row.trigger = false;
    session.insert(&context_row);
    let (asked, asked_seq) = session.chat("tell the family I'm late");
    let model = FakeModel::serve(
        &session,
        vec![
            Canned::Sse(openai_stream(
                "On it.",
                &[
                    (
                        "call_1",
                        "send_message",
                        r#"{"to":"famly","text":"Ann is late"}"#,
                    ),
                    (
                        "call_2",
                        "send_message",
                        r#"{"to":"family","text":"Ann is late"}"#,
                    ),
                ],
            )),
            Canned::Sse(openai_stream("Done: I told the family.", &[])),
        ],
    );

    let mut runner = Runner::open(session.options()).await.unwrap();
    let summary = runner.process_pending().await.unwrap().unwrap();
    assert_eq!(summary.outcome, TurnOutcome::Answered);
    assert_eq!(summary.model_calls, 2);
    assert!(runner.process_pending().await.unwrap().is_none());
    runner.close().await;

    let rows = session.outbound_rows();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0].destination.as_deref(), Some("family"));
    assert_eq!(Session::text(&rows[0]), "Ann is late");
    assert_eq!(rows[1].destination, None);
    assert_eq!(Session::text(&rows[1]), "Done: I told the family.");
    for row in &rows {
        assert_eq!(row.seq.0 % 2, 1, "container seqs are odd");
        assert!(row.seq > asked_seq);
        assert_eq!(row.kind, "chat");
        assert_eq!(row.in_reply_to.as_ref(), Some(&asked));
    }
    assert!(rows[1].seq > rows[0].seq);
    assert_eq!(session.ack(&asked), Some(AckStatus::Completed));
    assert_eq!(session.ack(&context_row.id), Some(AckStatus::Completed));

    let requests = model.requests();
    assert_eq!(requests.len(), 2);
    let first = &requests[0];
    assert_eq!(first.path, "/v1/chat/completions");
    assert_eq!(
        first.header("authorization"),
        None,
        "the runner never sends a key"
    );
    assert_eq!(first.body["model"], "test-model");
    assert_eq!(first.body["stream"], true);
    assert_eq!(first.body["max_tokens"], 512);
    let system = first.body["messages"][0]["content"].as_str().unwrap();
    assert!(system.starts_with("You are the test agent."), "{system}");
    assert!(system.contains("`family`: Family chat"), "{system}");
    let user = first.body["messages"][1]["content"].as_str().unwrap();
    let lines: Vec<(&str, &str)> = user
        .lines()
        .map(|line| {
            let (head, said) = line.split_once(" UTC] ").unwrap();
            (head.split(" at ").next().unwrap(), said)
        })
        .collect();
    assert_eq!(
        lines,
        [
            (
                format!("[seq {}", asked_seq.0 - 2).as_str(),
                "Ann: (earlier chatter)"
            ),
            (
                format!("[seq {asked_seq}").as_str(),
                "Ann: tell the family I'm late"
            ),
        ]
    );
    let second = &requests[1].body["messages"];
    let tool_messages: Vec<&serde_json::Value> = second
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .collect();
    assert_eq!(
        tool_messages[0]["content"],
        "Error: unknown destination \"famly\"; valid destinations: family; omit `to` to send to the chat this conversation came from"
    );
    assert_eq!(tool_messages[1]["tool_call_id"], "call_2");
    assert!(
        tool_messages[1]["content"]
            .as_str()
            .unwrap()
            .starts_with("sent (seq ")
    );
}

#[tokio::test]
async fn anthropic_send_to_origin_replaces_the_final_text() {
    let session = Session::new(config(ProviderKind::Anthropic));
    let (asked, _) = session.chat("say hi");
    let model = FakeModel::serve(
        &session,
        vec![
            Canned::Sse(anthropic_stream(
                "",
                &[("toolu_1", "send_message", r#"{"text":"hi!"}"#)],
            )),
            Canned::Sse(anthropic_stream("I said hi.", &[])),
        ],
    );
    let mut runner = Runner::open(session.options()).await.unwrap();
    let summary = runner.process_pending().await.unwrap().unwrap();
    runner.close().await;
    assert!(summary.effects.sent_to_origin);
    assert!(
        summary.replies.is_empty(),
        "never both a tool message and the final text"
    );
    let rows = session.outbound_rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(Session::text(&rows[0]), "hi!");
    assert_eq!(rows[0].destination, None);
    assert_eq!(session.ack(&asked), Some(AckStatus::Completed));

    let requests = model.requests();
    assert_eq!(requests[0].path, "/v1/messages");
    assert_eq!(requests[0].header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(requests[0].header("x-api-key"), None);
    assert_eq!(
        requests[0].body["system"]
            .as_str()
            .map(|s| s.starts_with("You are the test agent.")),
        Some(true)
    );
    let result = &requests[1].body["messages"][2]["content"][0];
    assert_eq!(result["type"], "tool_result");
    assert_eq!(result["tool_use_id"], "toolu_1");
    assert!(result.get("is_error").is_none());
}

#[tokio::test]
async fn no_model_configured_reaches_the_user_verbatim() {
    let session = Session::new(config(ProviderKind::OpenAi));
    let (asked, _) = session.chat("hello?");
    let model = FakeModel::serve(
        &session,
        vec![Canned::Json {
            status: 503,
            headers: vec![],
            body: NO_MODEL_BODY.into(),
        }],
    );
    let mut runner = Runner::open(session.options()).await.unwrap();
    let summary = runner.process_pending().await.unwrap().unwrap();
    runner.close().await;
    assert_eq!(summary.outcome, TurnOutcome::ModelFailed);
    assert_eq!(
        model.requests().len(),
        1,
        "no_model_configured is not retried"
    );
    let rows = session.outbound_rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        Session::text(&rows[0]),
        "I could not reach the model: no model is configured on the host: set CRABPOT_MODEL_PROVIDER and CRABPOT_MODEL_NAME"
    );
    assert_eq!(session.ack(&asked), Some(AckStatus::Completed));
}

#[tokio::test]
async fn rate_limits_are_retried() {
    let session = Session::new(config(ProviderKind::OpenAi));
    session.chat("hello");
    let model = FakeModel::serve(
        &session,
        vec![
            Canned::Json {
                status: 429,
                headers: vec![("retry-after", "0".into())],
                body: r#"{"error":{"type":"rate_limit","message":"slow down"}}"#.into(),
            },
            Canned::Json {
                status: 500,
                headers: vec![],
                body: "{}".into(),
            },
            Canned::Sse(openai_stream("Hello!", &[])),
        ],
    );
    let mut runner = Runner::open(session.options()).await.unwrap();
    runner.process_pending().await.unwrap().unwrap();
    runner.close().await;
    assert_eq!(model.requests().len(), 3);
    assert_eq!(Session::text(&session.outbound_rows()[0]), "Hello!");
}

#[tokio::test]
async fn a_bad_request_is_final_and_explained() {
    let session = Session::new(config(ProviderKind::Anthropic));
    session.chat("hello");
    let model = FakeModel::serve(
        &session,
        vec![Canned::Json {
            status: 400,
            headers: vec![],
            body: r#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens is too large"}}"#.into(),
        }],
    );
    let mut runner = Runner::open(session.options()).await.unwrap();
    runner.process_pending().await.unwrap().unwrap();
    runner.close().await;
    assert_eq!(model.requests().len(), 1);
    assert_eq!(
        Session::text(&session.outbound_rows()[0]),
        "I could not reach the model: max_tokens is too large"
    );
}

#[tokio::test]
async fn invalid_tool_arguments_become_an_error_result() {
    let session = Session::new(config(ProviderKind::OpenAi));
    session.chat("hello");
    let model = FakeModel::serve(
        &session,
        vec![
            Canned::Sse(openai_stream(
                "",
                &[
                    ("c1", "send_message", r#"{"text": "unterminated"#),
                    ("c2", "send_message", r#"{"text": 5}"#),
                    ("c3", "launch_rockets", "{}"),
                ],
            )),
            Canned::Sse(openai_stream("Sorry.", &[])),
        ],
    );
    let mut runner = Runner::open(session.options()).await.unwrap();
    runner.process_pending().await.unwrap().unwrap();
    runner.close().await;
    let messages = model.requests()[1].body["messages"].clone();
    let results: Vec<String> = messages
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(results.len(), 3);
    assert!(
        results[0]
            .starts_with("Error: invalid arguments for send_message: arguments are not valid JSON"),
        "{}",
        results[0]
    );
    assert!(
        results[1].starts_with("Error: invalid arguments for send_message: invalid type"),
        "{}",
        results[1]
    );
    assert!(
        results[2].starts_with(
            "Error: unknown tool \"launch_rockets\"; available tools: send_message, send_file, "
        ),
        "{}",
        results[2]
    );
    let rows = session.outbound_rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(Session::text(&rows[0]), "Sorry.");
}

#[tokio::test]
async fn the_round_limit_ends_the_turn_with_a_note() {
    let mut limited = config(ProviderKind::OpenAi);
    limited.max_tool_rounds = 2;
    let session = Session::new(limited);
    let (asked, _) = session.chat("loop forever");
    let call = openai_stream(
        "",
        &[("c", "send_message", r#"{"to":"family","text":"again"}"#)],
    );
    let model = FakeModel::serve(&session, vec![Canned::Sse(call.clone()), Canned::Sse(call)]);
    let mut runner = Runner::open(session.options()).await.unwrap();
    let summary = runner.process_pending().await.unwrap().unwrap();
    runner.close().await;
    assert_eq!(summary.outcome, TurnOutcome::RoundLimit);
    assert_eq!(model.requests().len(), 2);
    let rows = session.outbound_rows();
    assert_eq!(rows.len(), 3, "two tool messages and the note");
    assert!(Session::text(&rows[2]).contains("limit of 2 model calls"));
    assert_eq!(session.ack(&asked), Some(AckStatus::Completed));
}

#[tokio::test]
async fn context_rows_wait_for_a_trigger() {
    let session = Session::new(config(ProviderKind::OpenAi));
    let mut context_row = chat_row("just chatting");
    context_row.trigger = false;
    session.insert(&context_row);
    let model = FakeModel::serve(&session, vec![Canned::Sse(openai_stream("Hi.", &[]))]);
    let mut runner = Runner::open(session.options()).await.unwrap();
    assert!(runner.process_pending().await.unwrap().is_none());
    assert!(model.requests().is_empty());
    assert_eq!(session.ack(&context_row.id), None);
    session.chat("@agent hi");
    let summary = runner.process_pending().await.unwrap().unwrap();
    runner.close().await;
    assert_eq!(summary.rows.len(), 2);
    assert_eq!(session.ack(&context_row.id), Some(AckStatus::Completed));
}

#[tokio::test]
async fn on_wake_rows_are_seen_only_by_a_fresh_process() {
    let session = Session::new(config(ProviderKind::OpenAi));
    let model = FakeModel::serve(
        &session,
        vec![
            Canned::Sse(openai_stream("A.", &[])),
            Canned::Sse(openai_stream("B.", &[])),
        ],
    );
    let mut runner = Runner::open(session.options()).await.unwrap();
    session.chat("first");
    runner.process_pending().await.unwrap().unwrap();
    let mut late = chat_row("you were restarted");
    late.on_wake = true;
    late.trigger = false;
    session.insert(&late);
    session.chat("second");
    let summary = runner.process_pending().await.unwrap().unwrap();
    runner.close().await;
    assert_eq!(
        summary.rows.len(),
        1,
        "a running process does not see on_wake rows"
    );
    assert_eq!(session.ack(&late.id), None);
    drop(model);

    let model = FakeModel::serve(&session, vec![Canned::Sse(openai_stream("C.", &[]))]);
    session.chat("third");
    let mut fresh = Runner::open(session.options()).await.unwrap();
    let summary = fresh.process_pending().await.unwrap().unwrap();
    fresh.close().await;
    assert_eq!(summary.rows.len(), 2);
    assert_eq!(session.ack(&late.id), Some(AckStatus::Completed));
    assert_eq!(model.requests().len(), 1);
}

#[tokio::test]
async fn a_restarted_runner_resumes_and_retakes_claimed_rows() {
    let session = Session::new(config(ProviderKind::Anthropic));
    let model = FakeModel::serve(
        &session,
        vec![Canned::Sse(anthropic_stream("First answer.", &[]))],
    );
    session.chat("first question");
    let mut runner = Runner::open(session.options()).await.unwrap();
    runner.process_pending().await.unwrap().unwrap();
    runner.close().await;
    drop(model);

    // A container claimed this row and died before finishing it.
    let (crashed, _) = session.chat("second question");
    let writer = open_outbound_writer(&session.paths.outbound_db()).unwrap();
    outbound::set_ack(&writer, &crashed, AckStatus::Processing).unwrap();
    drop(writer);

    let model = FakeModel::serve(
        &session,
        vec![Canned::Sse(anthropic_stream("Second answer.", &[]))],
    );
    let mut runner = Runner::open(session.options()).await.unwrap();
    runner.process_pending().await.unwrap().unwrap();
    runner.close().await;
    assert_eq!(session.ack(&crashed), Some(AckStatus::Completed));
    let messages = model.requests()[0].body["messages"].clone();
    let roles: Vec<&str> = messages
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "user"]);
    assert_eq!(messages[1]["content"][0]["text"], "First answer.");
    let texts: Vec<String> = session.outbound_rows().iter().map(Session::text).collect();
    assert_eq!(texts, ["First answer.", "Second answer."]);
}

#[tokio::test]
async fn unusable_sessions_have_exit_code_3() {
    let session = Session::new(config(ProviderKind::OpenAi));
    session
        .host
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let error = Runner::open(session.options()).await.err().unwrap();
    assert_eq!(error.exit_code(), agent_runner::EXIT_SESSION_UNUSABLE);
    assert!(error.to_string().contains("schema version 99"), "{error}");

    let session = Session::new(config(ProviderKind::OpenAi));
    std::fs::remove_file(session.paths.outbound_db()).unwrap();
    let error = Runner::open(session.options()).await.err().unwrap();
    assert_eq!(error.exit_code(), agent_runner::EXIT_SESSION_UNUSABLE);
    assert!(error.to_string().contains("does not exist"), "{error}");

    let session = Session::new(config(ProviderKind::OpenAi));
    session
        .host
        .execute("DELETE FROM session_config", [])
        .unwrap();
    let error = Runner::open(session.options()).await.err().unwrap();
    assert_eq!(error.exit_code(), agent_runner::EXIT_SESSION_UNUSABLE);
    assert!(error.to_string().contains("session_config"), "{error}");
}

#[tokio::test]
async fn the_running_loop_wakes_on_new_rows_heartbeats_through_long_calls_and_stops() {
    let session = Session::new(config(ProviderKind::OpenAi));
    let (release, held) = tokio::sync::oneshot::channel();
    let model = FakeModel::serve(
        &session,
        vec![Canned::Held(
            held,
            Box::new(Canned::Sse(openai_stream("Took a while.", &[]))),
        )],
    );
    let runner = Runner::open(session.options()).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = runner.run_until(async {
        let _ = stopped.await;
    });
    let heartbeat = session.paths.heartbeat();
    let mtime = || {
        std::fs::metadata(&heartbeat)
            .and_then(|m| m.modified())
            .ok()
    };
    let test = async {
        wait_for("the first heartbeat", || mtime().is_some()).await;
        // The poll interval is a minute: only a file event can wake the runner this fast.
        session.chat("take your time");
        wait_for("the model call", || !model.requests().is_empty()).await;
        let during_call = mtime();
        wait_for("a heartbeat during the model call", || {
            mtime() > during_call
        })
        .await;
        let _ = release.send(());
        wait_for("the reply", || !session.outbound_rows().is_empty()).await;
        let _ = stop.send(());
    };
    let (result, ()) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(running, test)
    })
    .await
    .unwrap();
    result.unwrap();
    assert_eq!(Session::text(&session.outbound_rows()[0]), "Took a while.");
}

#[tokio::test]
async fn an_answer_written_before_a_crash_is_sent_without_asking_again() {
    let session = Session::new(config(ProviderKind::OpenAi));
    let (asked, seq) = session.chat("what time is it?");
    // The previous container wrote the answer to its transcript and died before the commit.
    let transcript = [
        serde_json::json!({"type": "user", "text": format!("[seq {seq}] Ann: what time is it?"), "seqs": [seq.0]}),
        serde_json::json!({"type": "assistant", "text": "Noon.", "tool_calls": []}),
    ];
    let lines: Vec<String> = transcript.iter().map(|entry| entry.to_string()).collect();
    std::fs::write(session.paths.transcript(), lines.join("\n") + "\n").unwrap();
    let writer = open_outbound_writer(&session.paths.outbound_db()).unwrap();
    outbound::set_ack(&writer, &asked, AckStatus::Processing).unwrap();
    drop(writer);

    // No fake model is listening: a model call would end in "I could not reach the model".
    let mut runner = Runner::open(session.options()).await.unwrap();
    let summary = runner.process_pending().await.unwrap().unwrap();
    runner.close().await;
    assert_eq!(summary.outcome, TurnOutcome::Recovered);
    assert_eq!(summary.model_calls, 0);
    let texts: Vec<String> = session.outbound_rows().iter().map(Session::text).collect();
    assert_eq!(texts, ["Noon."]);
    assert_eq!(session.ack(&asked), Some(AckStatus::Completed));
}
