//! The agent's toolset end to end, through a real container running the real runner, with
//! the fake model scripted to call each tool: a `bash` command's output returns to the
//! model; a file made with `write_file` is sent with `send_file` and reaches the `cli` chat
//! (`crabpot chat` prints where), and its outbox folder is removed; a question asked with
//! `ask_user_question` is answered through `crabpot chat` and the answer reaches the model,
//! while an answer after the question timed out is kept for the next turn without waking the
//! agent; a `todo_write` plan and a reaction degrade to lines on the terminal.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;
use std::time::Duration;
use support::{
    Platform, Say, TURN, central, cli_ok, echo_or_tool_result, eventually, read_only, tool_result,
};
use tests::docker::require_docker;
use tests::fake_model::{FakeModel, Reply};
use tests::host_process::{HostOptions, HostProcess, ModelConfig};

async fn start(fake: &FakeModel) -> HostProcess {
    HostProcess::start(HostOptions::with_model(ModelConfig::openai(fake)))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bash_commands_output_returns_to_the_model() {
    if !require_docker("a_bash_commands_output_returns_to_the_model").await {
        return;
    }
    let fake = FakeModel::start().unwrap();
    echo_or_tool_result(&fake);
    fake.push(Reply::tool_call(
        "bash",
        json!({"command": "echo crab-$((6 * 7)) && pwd"}),
    ));
    let host = start(&fake).await;
    let mut platform = Platform::connect(&host).await;
    platform.say(&Say::dm("ann", "local"), "run it").await;
    let (reply, _) = platform.reply_containing("local", "tool said:").await;
    assert!(reply.contains("crab-42"), "{reply}");
    assert!(
        reply.contains("/session/work"),
        "bash runs in the workspace: {reply}"
    );
    let result = fake
        .requests()
        .iter()
        .find_map(tool_result)
        .expect("a tool result reached the model");
    assert!(result.contains("crab-42"), "{result}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_written_file_is_sent_with_send_file_and_reaches_the_cli_chat() {
    if !require_docker("a_written_file_is_sent_with_send_file_and_reaches_the_cli_chat").await {
        return;
    }
    let fake = FakeModel::start().unwrap();
    fake.push(Reply::tool_call(
        "write_file",
        json!({"path": "notes/report.txt", "content": "crab pots: 3\n"}),
    ));
    fake.push(Reply::tool_call(
        "send_file",
        json!({"path": "notes/report.txt", "text": "here is the report"}),
    ));
    fake.push(Reply::text(""));
    let host = start(&fake).await;
    let output = host
        .chat("write me a report", Duration::from_secs(90))
        .await
        .unwrap();
    assert!(output.success(), "{output:?}\n{}", host.log_tail(60));
    assert!(
        output.stdout.contains("here is the report"),
        "{}",
        output.stdout
    );
    let path = output
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("[file] "))
        .unwrap_or_else(|| panic!("`crabpot chat` prints the file: {}", output.stdout));
    let path = std::path::Path::new(path.trim());
    assert!(
        path.starts_with(host.data_dir().join("files")),
        "a host copy under data/files: {}",
        path.display()
    );
    assert_eq!(path.file_name().unwrap(), "report.txt");
    assert_eq!(std::fs::read_to_string(path).unwrap(), "crab pots: 3\n");
    // The tool result said what was sent; the outbox folder is gone after delivery.
    let sent = fake
        .requests()
        .iter()
        .filter_map(tool_result)
        .nth(1)
        .unwrap();
    assert!(sent.starts_with("sent report.txt"), "{sent}");
    let session = host.session_dir("main").unwrap();
    eventually("the outbox folder to be removed", TURN, || {
        let left = std::fs::read_dir(session.join("out/outbox"))
            .unwrap()
            .count();
        (left == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_question_is_answered_through_crabpot_chat_and_reaches_the_model() {
    if !require_docker("a_question_is_answered_through_crabpot_chat_and_reaches_the_model").await {
        return;
    }
    let fake = FakeModel::start().unwrap();
    echo_or_tool_result(&fake);
    fake.push(Reply::tool_call(
        "ask_user_question",
        json!({"question": "Which colour for the pot?", "options": ["red", "green"], "timeout_seconds": 120}),
    ));
    let host = start(&fake).await;
    let mut platform = Platform::connect(&host).await;
    platform.say(&Say::dm("ann", "local"), "paint it").await;
    let (question_id, text, options) = platform.question("local").await;
    assert_eq!(options, ["red", "green"]);
    assert!(text.contains("Which colour for the pot?"), "{text}");
    assert!(
        text.contains("1. red") && text.contains("2. green"),
        "{text}"
    );
    assert!(text.contains(&question_id), "{text}");

    let output = host
        .run_cli_with_timeout(
            &[
                "chat",
                "--user",
                "ann",
                "--answer",
                &question_id,
                "--message",
                "2",
                "--timeout",
                "90",
            ],
            Duration::from_secs(120),
        )
        .await
        .unwrap();
    assert!(output.success(), "{output:?}\n{}", host.log_tail(60));
    assert!(
        output.stdout.contains("tool said: ann answered: green"),
        "{}",
        output.stdout
    );
    let result = fake.requests().iter().find_map(tool_result).unwrap();
    assert_eq!(result, "ann answered: green");
    // Recorded, and a second answer is refused.
    let (status, answer): (String, String) = central(&host)
        .query_row(
            "SELECT status, answer FROM questions WHERE question_id = ?1",
            [&question_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((status.as_str(), answer.as_str()), ("answered", "green"));
    let again = host
        .run_cli(&["chat", "--answer", &question_id, "--message", "1"])
        .await
        .unwrap();
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    assert!(
        again.stderr.contains("answered already"),
        "{}",
        again.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_late_answer_is_kept_for_the_next_turn_without_waking_the_agent() {
    if !require_docker("a_late_answer_is_kept_for_the_next_turn_without_waking_the_agent").await {
        return;
    }
    let fake = FakeModel::start().unwrap();
    echo_or_tool_result(&fake);
    fake.push(Reply::tool_call(
        "ask_user_question",
        json!({"question": "Still there?", "timeout_seconds": 1}),
    ));
    let host = start(&fake).await;
    let mut platform = Platform::connect(&host).await;
    platform.say(&Say::dm("ann", "local"), "check on me").await;
    let (reply, _) = platform.reply_containing("local", "tool said:").await;
    assert!(reply.contains("no answer within 1 s"), "{reply}");
    let (question_id, _, _) = platform.question("local").await;
    let n_requests = fake.requests().len();

    let output = host
        .run_cli(&["chat", "--answer", "latest", "--message", "yes, sorry"])
        .await
        .unwrap();
    assert!(output.success(), "{output:?}");
    let inbound = read_only(&host.session_dir("main").unwrap().join("in/inbound.db"));
    let (trigger, answer): (bool, String) = inbound
        .query_row(
            "SELECT trigger, json_extract(content, '$.answer') FROM messages_in \
             WHERE json_extract(content, '$.question_id') = ?1",
            [&question_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(!trigger, "a late answer does not wake the agent");
    assert_eq!(answer, "yes, sorry");
    // It rides along with the next turn.
    platform.say(&Say::dm("ann", "local"), "and now?").await;
    platform.reply_containing("local", "and now?").await;
    let requests = fake.requests();
    assert_eq!(
        requests.len(),
        n_requests + 1,
        "no turn ran for the late answer alone"
    );
    let last = requests.last().unwrap().last_user_text().unwrap();
    assert!(
        last.contains("answering question") && last.contains("yes, sorry"),
        "{last}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plan_and_a_reaction_reach_the_terminal_as_lines() {
    if !require_docker("a_plan_and_a_reaction_reach_the_terminal_as_lines").await {
        return;
    }
    let fake = FakeModel::start().unwrap();
    fake.push(Reply::tool_call(
        "todo_write",
        json!({"items": [{"text": "dig", "status": "in_progress"}, {"text": "plant", "status": "pending"}]}),
    ));
    fake.push(Reply::tool_call(
        "todo_write",
        json!({"items": [{"text": "dig", "status": "done"}, {"text": "plant", "status": "in_progress"}]}),
    ));
    fake.push(Reply::tool_call(
        "add_reaction",
        json!({"seq": 0, "emoji": "👍"}),
    ));
    fake.push(Reply::text("all planted"));
    let host = start(&fake).await;
    let mut platform = Platform::connect(&host).await;
    platform
        .say(&Say::dm("ann", "local"), "garden please")
        .await;
    platform.reply_containing("local", "all planted").await;
    let replies = platform.replies("local");
    let first = replies.iter().position(|r| r.starts_with("plan:")).unwrap();
    assert!(replies[first].contains("[in_progress] dig"), "{replies:?}");
    assert!(
        replies
            .iter()
            .any(|r| r.starts_with("plan (update of ") && r.contains("[done] dig")),
        "the terminal cannot edit: the update is sent anew: {replies:?}"
    );
    assert!(
        replies.iter().any(|r| r == "(reaction to 0) 👍"),
        "{replies:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_sees_the_tools_and_an_unknown_destination_lists_the_valid_ones() {
    if !require_docker(
        "the_operator_sees_the_tools_and_an_unknown_destination_lists_the_valid_ones",
    )
    .await
    {
        return;
    }
    let fake = FakeModel::start().unwrap();
    echo_or_tool_result(&fake);
    fake.push(Reply::tool_call(
        "send_message",
        json!({"to": "nowhere", "text": "psst"}),
    ));
    let host = start(&fake).await;
    let mut platform = Platform::connect(&host).await;
    platform.say(&Say::dm("ann", "local"), "whisper").await;
    let (reply, _) = platform.reply_containing("local", "tool said:").await;
    assert!(
        reply.contains("unknown destination \"nowhere\"; valid destinations: terminal"),
        "{reply}"
    );
    // Every tool is offered to the model, once per provider format.
    let tools: Vec<String> = fake.requests()[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tool| tool["function"]["name"].as_str().unwrap().to_owned())
        .collect();
    for tool in [
        "bash",
        "read_file",
        "write_file",
        "edit_file",
        "list_files",
        "grep",
        "send_message",
        "send_file",
        "edit_message",
        "add_reaction",
        "ask_user_question",
        "todo_write",
        "schedule_task",
        "list_tasks",
        "update_task",
        "pause_task",
        "resume_task",
        "cancel_task",
        "create_agent",
    ] {
        assert!(
            tools.iter().any(|t| t == tool),
            "{tool} missing from {tools:?}"
        );
    }
    cli_ok(&host, &["status"]).await;
}
