//! The toolset and conversation management through whole turns: questions answered by the
//! host, plans updated in place, scheduled rows waking the runner, `/clear`, and compaction
//! near the context limit. The test plays the host; a fake model answers canned streams.

// Test helpers: a failed step should fail the test on the spot.
#![allow(clippy::unwrap_used)]

mod support;

use agent_runner::commands::{CLEAR_REFUSED_REPLY, CLEARED_REPLY};
use agent_runner::compaction::SUMMARY_SYSTEM_PROMPT;
use agent_runner::transcript::Transcript;
use agent_runner::{Runner, TurnOutcome};
use protocol::rows::AckStatus;
use protocol::{InboundContent, NewInboundRow, ProviderKind, Sender};
use std::time::Duration;
use support::{Canned, FakeModel, Session, chat_row, config, openai_stream, wait_for};

fn chat_with_role(text: &str, role: Option<&str>) -> NewInboundRow {
    NewInboundRow::chat(&InboundContent {
        text: text.into(),
        sender: Some(Sender {
            id: "u1".into(),
            name: Some("Ann".into()),
        }),
        sender_role: role.map(str::to_owned),
        ..InboundContent::default()
    })
}

/// The text of every tool result the model was sent in one request.
fn tool_results(body: &serde_json::Value) -> Vec<String> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_question_blocks_until_the_host_delivers_the_answer() {
    let session = Session::new(config(ProviderKind::OpenAi));
    let (asked, _) = session.chat("pick a colour for me");
    let model = FakeModel::serve(
        &session,
        vec![
            Canned::Sse(openai_stream(
                "",
                &[(
                    "c1",
                    "ask_user_question",
                    r#"{"question":"Which one?","options":["Red","Blue"]}"#,
                )],
            )),
            Canned::Sse(openai_stream("Blue it is.", &[])),
        ],
    );
    let mut runner = Runner::open(session.options()).await.unwrap();
    let question = || {
        session
            .outbound_rows()
            .into_iter()
            .find(|row| row.content.contains(r#""operation":"question""#))
    };
    let (summary, answer_id) = tokio::join!(runner.process_pending(), async {
        wait_for("the question row", || question().is_some()).await;
        let content: serde_json::Value =
            serde_json::from_str(&question().unwrap().content).unwrap();
        let answer = NewInboundRow::chat(&InboundContent {
            text: "2".into(),
            sender: Some(Sender {
                id: "u1".into(),
                name: Some("Ann".into()),
            }),
            question_id: content["question_id"].as_str().map(str::to_owned),
            answer: Some("Blue".into()),
            ..InboundContent::default()
        });
        session.insert(&answer);
        answer.id
    });
    let summary = summary.unwrap().unwrap();
    assert_eq!(summary.outcome, TurnOutcome::Answered);
    assert_eq!(
        tool_results(&model.requests()[1].body),
        ["Ann answered: Blue"]
    );
    assert_eq!(session.ack(&asked), Some(AckStatus::Completed));
    assert_eq!(
        session.ack(&answer_id),
        Some(AckStatus::Completed),
        "the answer is consumed by the tool"
    );
    assert!(
        runner.process_pending().await.unwrap().is_none(),
        "the answer does not start a turn of its own"
    );
    runner.close().await;
    let texts: Vec<String> = session
        .outbound_rows()
        .iter()
        .filter(|row| !row.content.contains("question"))
        .map(Session::text)
        .collect();
    assert_eq!(texts, ["Blue it is."]);
}

#[tokio::test]
async fn plans_are_posted_once_per_turn_and_edited_in_place() {
    let session = Session::new(config(ProviderKind::OpenAi));
    session.chat("do the two steps");
    let plan = |status: &str| {
        format!(
            r#"{{"items":[{{"text":"step one","status":"{status}"}},{{"text":"step two","status":"pending"}}]}}"#
        )
    };
    let _model = FakeModel::serve(
        &session,
        vec![
            Canned::Sse(openai_stream(
                "",
                &[("c1", "todo_write", &plan("in_progress"))],
            )),
            Canned::Sse(openai_stream(
                "",
                &[
                    ("c2", "bash", r#"{"command":"echo one > one.txt"}"#),
                    ("c3", "todo_write", &plan("done")),
                ],
            )),
            Canned::Sse(openai_stream("Both done.", &[])),
        ],
    );
    let mut runner = Runner::open(session.options()).await.unwrap();
    runner.process_pending().await.unwrap().unwrap();
    runner.close().await;
    let rows = session.outbound_rows();
    let contents: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| serde_json::from_str(&row.content).unwrap())
        .collect();
    assert_eq!(contents.len(), 3, "{contents:?}");
    assert_eq!(contents[0]["operation"], "progress");
    assert!(contents[0].get("target_seq").is_none());
    assert_eq!(contents[1]["target_seq"], rows[0].seq.0);
    assert_eq!(contents[1]["items"][0]["status"], "done");
    assert_eq!(contents[2]["text"], "Both done.");
    assert_eq!(
        std::fs::read_to_string(session.paths.work_dir().join("one.txt")).unwrap(),
        "one\n"
    );
}

#[tokio::test]
async fn a_scheduled_row_wakes_the_running_loop_when_it_comes_due() {
    let session = Session::new(config(ProviderKind::OpenAi));
    let model = FakeModel::serve(&session, vec![Canned::Sse(openai_stream("Watered.", &[]))]);
    let runner = Runner::open(session.options()).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = runner.run_until(async {
        let _ = stopped.await;
    });
    let test = async {
        wait_for("the first heartbeat", || session.paths.heartbeat().exists()).await;
        // The file event of this insert wakes the runner before the row is due; with a
        // one-minute poll, only the due-time timer can start the turn in time.
        let task = NewInboundRow::task(
            "t-plants",
            "water the plants",
            protocol::time::now_ms() + 300,
            None,
        );
        session.insert(&task);
        wait_for("the reply", || !session.outbound_rows().is_empty()).await;
        let _ = stop.send(());
        task.id
    };
    let (result, task_id) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(running, test)
    })
    .await
    .unwrap();
    result.unwrap();
    assert_eq!(session.ack(&task_id), Some(AckStatus::Completed));
    let user = model.requests()[0].body["messages"][1]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        user.ends_with("] task t-plants: water the plants"),
        "{user}"
    );
}

#[tokio::test]
async fn clear_from_an_admin_resets_the_conversation() {
    let session = Session::new(config(ProviderKind::OpenAi));
    session.chat("remember: the code is 42");
    let model = FakeModel::serve(
        &session,
        vec![
            Canned::Sse(openai_stream("Noted.", &[])),
            Canned::Sse(openai_stream("Hello again.", &[])),
        ],
    );
    let mut runner = Runner::open(session.options()).await.unwrap();
    runner.process_pending().await.unwrap().unwrap();

    // A member may not clear; nothing is asked of the model and the transcript stays.
    let refused = chat_with_role("/clear", None);
    session.insert(&refused);
    let summary = runner.process_pending().await.unwrap().unwrap();
    assert_eq!(summary.outcome, TurnOutcome::ClearRefused);
    assert_eq!(session.ack(&refused.id), Some(AckStatus::Completed));
    assert_eq!(model.requests().len(), 1);
    assert_eq!(
        Transcript::load(&session.paths.transcript())
            .unwrap()
            .entries()
            .len(),
        2
    );

    // An admin's /clear, with a context row before it and a question after it.
    let mut before = chat_row("(chatter before the clear)");
    before.trigger = false;
    session.insert(&before);
    let clear = chat_with_role(" /clear ", Some("admin"));
    session.insert(&clear);
    let (after, _) = session.chat("hi, who are you?");
    let summary = runner.process_pending().await.unwrap().unwrap();
    assert_eq!(summary.outcome, TurnOutcome::Cleared);
    assert_eq!(summary.rows, [before.id.clone(), clear.id.clone()]);
    assert!(
        Transcript::load(&session.paths.transcript())
            .unwrap()
            .entries()
            .is_empty()
    );
    let summary = runner.process_pending().await.unwrap().unwrap();
    assert_eq!(summary.rows, std::slice::from_ref(&after));
    runner.close().await;

    let messages = model.requests()[1].body["messages"].clone();
    let messages = messages.as_array().unwrap();
    assert_eq!(messages.len(), 2, "system prompt and the new message only");
    assert!(
        messages[1]["content"]
            .as_str()
            .unwrap()
            .ends_with("Ann: hi, who are you?")
    );
    let texts: Vec<String> = session.outbound_rows().iter().map(Session::text).collect();
    assert_eq!(
        texts,
        ["Noted.", CLEAR_REFUSED_REPLY, CLEARED_REPLY, "Hello again."]
    );
}

#[tokio::test]
async fn older_turns_are_summarised_near_the_context_limit() {
    let mut small = config(ProviderKind::OpenAi);
    // The tools and system prompt take about 4,000 tokens; 80% of 20,000 leaves room for
    // about 12,000 more before compaction.
    small.context_window_tokens = 20_000;
    small.compact_at_percent = 80;
    let session = Session::new(small);
    let mut transcript = Transcript::load(&session.paths.transcript()).unwrap();
    for (turn, seq) in [(1, 100), (2, 102), (3, 104)] {
        transcript
            .append(agent_runner::transcript::Entry::User {
                text: format!("[seq {seq}] Ann: turn {turn} {}", "x".repeat(20_000)),
                seqs: vec![seq],
                images: Vec::new(),
            })
            .unwrap();
        transcript
            .append(agent_runner::transcript::Entry::Assistant {
                text: format!("answer {turn}"),
                tool_calls: vec![],
            })
            .unwrap();
    }
    drop(transcript);
    session.chat("and now?");
    let model = FakeModel::serve(
        &session,
        vec![
            Canned::Sse(openai_stream(
                "Ann sent two long messages; answered both.",
                &[],
            )),
            Canned::Sse(openai_stream("Now this.", &[])),
        ],
    );
    let mut runner = Runner::open(session.options()).await.unwrap();
    let summary = runner.process_pending().await.unwrap().unwrap();
    runner.close().await;
    assert_eq!(
        summary.model_calls, 1,
        "the summary call is not a tool round"
    );
    let requests = model.requests();
    assert_eq!(requests.len(), 2);
    let condense = &requests[0].body;
    assert_eq!(condense["messages"][0]["content"], SUMMARY_SYSTEM_PROMPT);
    assert!(condense.get("tools").is_none());
    let history = condense["messages"][1]["content"].as_str().unwrap();
    assert!(history.starts_with("Condense this conversation history:"));
    assert!(history.contains("turn 1") && history.contains("answer 2"));
    assert!(!history.contains("turn 3"), "the last turns stay verbatim");

    let turn = requests[1].body["messages"].as_array().unwrap().clone();
    assert!(
        turn[1]["content"]
            .as_str()
            .unwrap()
            .ends_with("Ann sent two long messages; answered both.")
    );
    assert!(turn[2]["content"].as_str().unwrap().contains("turn 3"));
    assert_eq!(turn[3]["content"], "answer 3");
    assert!(
        turn[4]["content"]
            .as_str()
            .unwrap()
            .ends_with("Ann: and now?")
    );
    assert_eq!(turn.len(), 5);

    let entries = Transcript::load(&session.paths.transcript()).unwrap();
    let first = serde_json::to_value(&entries.entries()[0]).unwrap();
    assert_eq!(first["type"], "summary");
    assert_eq!(first["seqs"], serde_json::json!([100, 102]));
    assert_eq!(
        entries.entries().len(),
        5,
        "summary, turn 3, the new turn and its answer"
    );
}
