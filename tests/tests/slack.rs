//! The Slack adapter end to end: a real `crabpot serve`, real containers, the fake model and
//! the fake Slack (`tests::fake_slack`), which serves the Web API and posts signed Events
//! API requests and button presses to the host's `/hooks/slack/…`.
//!
//! - Events API: forged and stale requests are refused (401) and store nothing; a DM is
//!   answered and its retry (`X-Slack-Retry-Num`, same `event_id`) stored once; channel
//!   chatter without a mention is ignored while a mention (`message` + `app_mention` of the
//!   same `ts`) engages once; a slow stream is edited in place and ends as one message; a
//!   429 with `Retry-After` is waited out and the message arrives once; a question is
//!   answered by a button press; files travel both ways; a reaction is `reactions.add`; an
//!   approval request reaches the owner's DM and its Approve button lets the sender in;
//!   after a host restart an event Slack retries is stored once and nothing is posted twice.
//! - Socket Mode: the adapter opens the connection with the app token, acks an
//!   `events_api` envelope and the DM is answered, takes a button press from an
//!   `interactive` envelope, and reconnects when Slack sends `disconnect`.
//! - A refused bot token fails only the Slack adapter (`crabpot channels list`); the host
//!   answers on the terminal.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::{TURN, cli_ok};
use tests::docker::require_docker;
use tests::fake_model::{FakeModel, Reply};
use tests::fake_slack::outbound::{
    Signing, app_mention_event, block_actions, event_callback, message_event, now, post_event,
    post_interaction,
};
use tests::fake_slack::{APP_TOKEN, BOT_TOKEN, FakeSlack, SIGNING_SECRET};
use tests::host_process::{HostOptions, HostProcess, ModelConfig};

const DM: &str = "D0ANN";
const TEAM: &str = "C0TEAM";
const ANN: &str = "U0ANN";
const KIM: &str = "U0KIM";
const ROOM: &str = "C0ROOM";
/// How long the adapter may take to connect, or to fail.
const CONNECT_HEALTH: Duration = Duration::from_secs(30);
const SAM: &str = "U0SAM";

/// A host with Slack on against `slack`: Events API (signing secret) or Socket Mode.
async fn start_host(model: &FakeModel, slack: &FakeSlack, socket_mode: bool) -> HostProcess {
    let mut options = HostOptions::with_model(ModelConfig::openai(model))
        .env("CRABPOT_SLACK_BOT_TOKEN", BOT_TOKEN)
        .env("CRABPOT_SLACK_API_URL", slack.api_url());
    options = if socket_mode {
        options.env("CRABPOT_SLACK_APP_TOKEN", APP_TOKEN)
    } else {
        options.env("CRABPOT_SLACK_SIGNING_SECRET", SIGNING_SECRET)
    };
    HostProcess::start(options).await.unwrap()
}

/// Registers the DM and the team channel (public: anyone may talk) and wires them to main.
async fn wire_chats(host: &HostProcess) {
    cli_ok(
        host,
        &[
            "chats",
            "create",
            "slack",
            DM,
            "--unknown-senders",
            "public",
        ],
    )
    .await;
    cli_ok(host, &["wirings", "create", &format!("slack/{DM}"), "main"]).await;
    cli_ok(
        host,
        &[
            "chats",
            "create",
            "slack",
            TEAM,
            "--group-chat",
            "--unknown-senders",
            "public",
        ],
    )
    .await;
    cli_ok(
        host,
        &["wirings", "create", &format!("slack/{TEAM}"), "main"],
    )
    .await;
}

/// Posts an event signed as Slack signs; asserts the answer's status.
async fn post(host: &HostProcess, body: &Value, signing: &Signing, status: u16) {
    let web = host.web_url().unwrap();
    let answer = post_event(&web, body, signing).await.unwrap();
    assert_eq!(
        answer.status.as_u16(),
        status,
        "{}\n{}",
        answer.text(),
        host.log_tail(30)
    );
}

/// The model requests whose last user text contains `fragment`.
fn model_saw(model: &FakeModel, fragment: &str) -> usize {
    model
        .requests()
        .iter()
        .filter(|request| {
            request
                .last_user_text()
                .is_some_and(|text| text.contains(fragment))
        })
        .count()
}

/// The `chat.postMessage` calls whose text contains `fragment`.
fn posts_with(slack: &FakeSlack, fragment: &str) -> Vec<tests::fake_platform::Call> {
    slack
        .calls_of("chat.postMessage")
        .into_iter()
        .filter(|call| {
            call.json()["text"]
                .as_str()
                .is_some_and(|text| text.contains(fragment))
        })
        .collect()
}

/// Every button (label, value) of a posted message's blocks.
fn buttons(blocks: &Value) -> Vec<(String, String)> {
    blocks
        .as_array()
        .into_iter()
        .flatten()
        .filter(|block| block["type"] == "actions")
        .flat_map(|block| block["elements"].as_array().cloned().unwrap_or_default())
        .map(|button| {
            (
                button["text"]["text"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                button["value"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn slack_events_api_end_to_end() {
    if !require_docker("slack_events_api_end_to_end").await {
        return;
    }
    let model = FakeModel::start().unwrap();
    support::echo_or_tool_result(&model);
    let slack = FakeSlack::start().unwrap();
    slack.add_user(ANN, "Ann");
    slack.add_user(KIM, "Kim");
    let mut host = start_host(&model, &slack, false).await;
    wire_chats(&host).await;
    support::wait_channel_health(&host, "slack", "connected", CONNECT_HEALTH).await;

    // A forged signature and a stale timestamp are refused and store nothing.
    let forged = event_callback(
        "EvForged",
        message_event(DM, ANN, "forged-words", "1700000100.000001"),
    );
    let wrong_secret = Signing {
        secret: "not-the-secret".into(),
        ..Signing::default()
    };
    post(&host, &forged, &wrong_secret, 401).await;
    let stale = Signing {
        timestamp: Some(now() - 600),
        ..Signing::default()
    };
    post(&host, &forged, &stale, 401).await;

    // Slack checks the endpoint with a challenge.
    let web = host.web_url().unwrap();
    let challenge =
        json!({"token": "XXYYZZ", "challenge": "crab-challenge-1", "type": "url_verification"});
    let answer = post_event(&web, &challenge, &Signing::default())
        .await
        .unwrap();
    assert_eq!(answer.status.as_u16(), 200);
    assert_eq!(answer.json().unwrap()["challenge"], "crab-challenge-1");

    // 1. A DM is answered; its retry (same event_id) is stored once.
    let hello = event_callback(
        "EvHello",
        message_event(DM, ANN, "hello crab", "1700000100.000002"),
    );
    post(&host, &hello, &Signing::default(), 200).await;
    let reply = slack.wait_message(DM, "hello crab", TURN).await.unwrap();
    assert_eq!(reply.thread_ts, None);
    let retry = Signing {
        retry: Some(1),
        ..Signing::default()
    };
    post(&host, &hello, &retry, 200).await;

    // 2. Chatter in the channel without a mention is ignored; a mention engages, once,
    // though it arrives as both `message` and `app_mention`.
    let chatter = event_callback(
        "EvChatter",
        message_event(TEAM, KIM, "just chatting here", "1700000100.000003"),
    );
    post(&host, &chatter, &Signing::default(), 200).await;
    // In a thread: the reply goes to that thread.
    let thread = "1700000100.000000";
    let mention_text = "<@UCRABBOT> mention-ping-42";
    let mut as_message = message_event(TEAM, KIM, mention_text, "1700000100.000004");
    as_message["thread_ts"] = json!(thread);
    let mut as_mention = app_mention_event(TEAM, KIM, mention_text, "1700000100.000004");
    as_mention["thread_ts"] = json!(thread);
    post(
        &host,
        &event_callback("EvMention1", as_message),
        &Signing::default(),
        200,
    )
    .await;
    post(
        &host,
        &event_callback("EvMention2", as_mention),
        &Signing::default(),
        200,
    )
    .await;
    let answer = slack
        .wait_message(TEAM, "mention-ping-42", TURN)
        .await
        .unwrap();
    assert_eq!(
        answer.thread_ts.as_deref(),
        Some(thread),
        "answered in the thread"
    );

    // 4. A slowly streamed reply grows by chat.update and ends as one message.
    let streamed = "The crab builds its pot one stone at a time and never hurries at all.";
    model.push(Reply::text(streamed).streamed_slowly(6, Duration::from_millis(250)));
    let stream_event = event_callback(
        "EvStream",
        message_event(DM, ANN, "tell me slowly", "1700000100.000005"),
    );
    post(&host, &stream_event, &Signing::default(), 200).await;
    let final_message = slack
        .wait_until("the streamed reply to be complete", TURN, |fake| {
            fake.messages_in(DM)
                .into_iter()
                .find(|message| message.text == streamed)
        })
        .await
        .unwrap();
    assert!(
        final_message.updates >= 1,
        "the reply was edited in place: {final_message:?}"
    );
    let stream_posts: Vec<_> = slack
        .calls_of("chat.postMessage")
        .into_iter()
        .filter(|call| {
            call.json()["text"]
                .as_str()
                .is_some_and(|text| !text.is_empty() && streamed.starts_with(text))
        })
        .collect();
    assert_eq!(
        stream_posts.len(),
        1,
        "one chat.postMessage for the streamed reply"
    );
    let updates = slack
        .calls_of("chat.update")
        .into_iter()
        .filter(|call| call.json()["ts"] == final_message.ts.as_str())
        .count();
    assert!(updates >= 1, "chat.update edited it");

    // 6. A 429 with Retry-After: 1 is waited out; the message arrives once.
    let chat_calls = |slack: &FakeSlack| -> Vec<tests::fake_platform::Call> {
        slack
            .recorder()
            .calls()
            .into_iter()
            .filter(|call| {
                (call.path.ends_with("/chat.postMessage") || call.path.ends_with("/chat.update"))
                    && call.json()["channel"] == DM
            })
            .collect()
    };
    let before = chat_calls(&slack).len();
    slack.rate_limit("chat.postMessage", 1, Duration::from_secs(1));
    let limited = event_callback(
        "EvLimited",
        message_event(DM, ANN, "limited-words", "1700000100.000006"),
    );
    post(&host, &limited, &Signing::default(), 200).await;
    slack.wait_message(DM, "limited-words", TURN).await.unwrap();
    let attempts = chat_calls(&slack).split_off(before);
    assert!(
        attempts.len() >= 2,
        "a refused attempt and a retry: {attempts:?}"
    );
    for later in &attempts[1..] {
        let waited = later.at.duration_since(attempts[0].at);
        assert!(
            waited >= Duration::from_millis(990),
            "no call before Retry-After passed: {waited:?}"
        );
    }
    let delivered = slack
        .messages_in(DM)
        .into_iter()
        .filter(|message| message.text.contains("limited-words"))
        .count();
    assert_eq!(delivered, 1, "the reply arrived once");

    // 3. A question is answered by pressing its button.
    model.push(Reply::tool_call(
        "ask_user_question",
        json!({"question": "Which colour for the pot?", "options": ["red", "green"], "timeout_seconds": 120}),
    ));
    let paint = event_callback(
        "EvPaint",
        message_event(DM, ANN, "paint it", "1700000100.000007"),
    );
    post(&host, &paint, &Signing::default(), 200).await;
    let question = slack
        .wait_until("the question with buttons", TURN, |fake| {
            fake.messages_in(DM)
                .into_iter()
                .find(|message| !buttons(&message.blocks).is_empty())
        })
        .await
        .unwrap();
    assert!(question.text.contains("Which colour"), "{question:?}");
    let choices = buttons(&question.blocks);
    let (label, value) = choices
        .iter()
        .find(|(label, _)| label.contains("green"))
        .cloned()
        .unwrap_or_else(|| panic!("a green button: {choices:?}"));
    let press = block_actions(DM, ANN, &question.ts, &question.text, &label, &value);
    let pressed = post_interaction(&host.web_url().unwrap(), &press, &Signing::default())
        .await
        .unwrap();
    assert_eq!(pressed.status.as_u16(), 200, "{}", pressed.text());
    slack
        .wait_message(DM, "tool said: Ann answered: green", TURN)
        .await
        .unwrap();
    slack
        .wait_until("the question to show the choice", TURN, |fake| {
            fake.messages_in(DM).into_iter().find(|message| {
                message.ts == question.ts
                    && buttons(&message.blocks).is_empty()
                    && message.blocks.to_string().contains("green")
            })
        })
        .await
        .unwrap();

    // 5. Files both ways: a file Ann sends reaches the session's inbox, and a file the agent
    // sends completes the external upload flow.
    let url = slack.add_private_file("F0NOTE", "pot-notes.txt", b"three stones\n");
    let mut with_file = message_event(DM, ANN, "see my notes", "1700000100.000008");
    with_file["subtype"] = json!("file_share");
    with_file["files"] = json!([{
        "id": "F0NOTE", "name": "pot-notes.txt", "title": "pot-notes.txt",
        "mimetype": "text/plain", "filetype": "text", "size": 13,
        "url_private": url, "url_private_download": url, "mode": "hosted",
    }]);
    post(
        &host,
        &event_callback("EvFile", with_file),
        &Signing::default(),
        200,
    )
    .await;
    slack.wait_message(DM, "see my notes", TURN).await.unwrap();
    let found = host
        .group_session_dirs("main")
        .unwrap()
        .iter()
        .find_map(|session| support::find_file(&session.join("in/inbox"), "pot-notes.txt"))
        .expect("the file is in the DM session's inbox");
    assert_eq!(std::fs::read(found).unwrap(), b"three stones\n");
    let downloads = slack.recorder().calls_to("/pot-notes.txt");
    assert_eq!(downloads.len(), 1);
    assert_eq!(
        downloads[0].header("authorization"),
        Some(format!("Bearer {BOT_TOKEN}").as_str())
    );

    model.push(Reply::tool_call(
        "write_file",
        json!({"path": "report.txt", "content": "crab pots: 3\n"}),
    ));
    model.push(Reply::tool_call(
        "send_file",
        json!({"path": "report.txt", "text": "here is the report"}),
    ));
    model.push(Reply::text(""));
    let send = event_callback(
        "EvSend",
        message_event(DM, ANN, "send me a report", "1700000100.000009"),
    );
    post(&host, &send, &Signing::default(), 200).await;
    let uploaded = slack
        .wait_until("the upload to complete", TURN, |fake| {
            fake.files()
                .into_iter()
                .find(|file| file.shared_in.is_some())
        })
        .await
        .unwrap();
    assert_eq!(uploaded.filename, "report.txt");
    assert_eq!(uploaded.bytes.as_deref(), Some(&b"crab pots: 3\n"[..]));
    assert_eq!(uploaded.shared_in.as_deref(), Some(DM));
    assert!(
        uploaded
            .initial_comment
            .as_deref()
            .is_some_and(|comment| comment.contains("here is the report")),
        "{uploaded:?}"
    );

    // A reaction is reactions.add with the emoji's Slack name, on the person's message.
    model.push(Reply::tool_call(
        "add_reaction",
        json!({"seq": 0, "emoji": "👍"}),
    ));
    model.push(Reply::text("reacted-done"));
    let react = event_callback(
        "EvReact",
        message_event(DM, ANN, "react please", "1700000100.000012"),
    );
    post(&host, &react, &Signing::default(), 200).await;
    slack.wait_message(DM, "reacted-done", TURN).await.unwrap();
    let reactions = slack.calls_of("reactions.add");
    assert_eq!(reactions.len(), 1, "{reactions:?}");
    let reaction = reactions[0].json();
    assert_eq!(reaction["name"], "thumbsup");
    assert_eq!(reaction["channel"], DM);
    assert!(
        reaction["timestamp"]
            .as_str()
            .is_some_and(|ts| ts.starts_with("1700000100.")),
        "on one of Ann's messages: {reaction}"
    );

    // Approvals reach the approver's DM with buttons: Ann (an owner, whose DM the adapter
    // reported) approves Sam, unknown in a request_approval room, by pressing Approve.
    cli_ok(&host, &["roles", "grant", &format!("slack:{ANN}"), "owner"]).await;
    cli_ok(
        &host,
        &[
            "chats",
            "create",
            "slack",
            ROOM,
            "--group-chat",
            "--unknown-senders",
            "request_approval",
        ],
    )
    .await;
    cli_ok(
        &host,
        &["wirings", "create", &format!("slack/{ROOM}"), "main"],
    )
    .await;
    let from_sam = event_callback(
        "EvSam",
        app_mention_event(ROOM, SAM, "<@UCRABBOT> hello-from-sam", "1700000100.000011"),
    );
    post(&host, &from_sam, &Signing::default(), 200).await;
    let request = slack
        .wait_until("the approval request in Ann's DM", TURN, |fake| {
            fake.messages_in(DM).into_iter().find(|message| {
                buttons(&message.blocks)
                    .iter()
                    .any(|(_, value)| value.contains("approve"))
            })
        })
        .await
        .unwrap();
    let (label, value) = buttons(&request.blocks)
        .into_iter()
        .find(|(_, value)| value.contains("approve"))
        .unwrap();
    let press = block_actions(DM, ANN, &request.ts, &request.text, &label, &value);
    let pressed = post_interaction(&host.web_url().unwrap(), &press, &Signing::default())
        .await
        .unwrap();
    assert_eq!(pressed.status.as_u16(), 200, "{}", pressed.text());
    slack
        .wait_message(ROOM, "hello-from-sam", TURN)
        .await
        .unwrap();

    // 7. A restart loses and repeats nothing: Slack's retry of an event taken before it is
    // stored once, and nothing is posted again.
    host.restart().await.unwrap();
    support::wait_channel_health(&host, "slack", "connected", CONNECT_HEALTH).await;
    let retry_after_restart = Signing {
        retry: Some(2),
        ..Signing::default()
    };
    post(&host, &hello, &retry_after_restart, 200).await;
    let after = event_callback(
        "EvAfter",
        message_event(DM, ANN, "after the restart", "1700000100.000010"),
    );
    post(&host, &after, &Signing::default(), 200).await;
    slack
        .wait_message(DM, "after the restart", TURN)
        .await
        .unwrap();

    // 8 and the rest: nothing forged, ignored or retried reached the model twice.
    assert_eq!(model_saw(&model, "forged-words"), 0);
    assert_eq!(model_saw(&model, "just chatting"), 0);
    assert_eq!(
        model_saw(&model, "hello crab"),
        1,
        "the retried event is stored once"
    );
    assert_eq!(model_saw(&model, "mention-ping-42"), 1);
    assert_posted_once(&slack, DM, "hello crab");
    assert_posted_once(&slack, TEAM, "mention-ping-42");
    assert_eq!(posts_with(&slack, "just chatting").len(), 0);
    assert_eq!(posts_with(&slack, "forged-words").len(), 0);
}

/// Exactly one message in `channel` contains `fragment`, and no draft of it was left behind
/// (a streamed reply is posted with its first words, then edited in place).
fn assert_posted_once(slack: &FakeSlack, channel: &str, fragment: &str) {
    let all = slack.messages_in(channel);
    let messages: Vec<_> = all
        .iter()
        .filter(|message| message.text.contains(fragment))
        .collect();
    assert_eq!(messages.len(), 1, "one message with {fragment:?}: {all:?}");
    let orphans: Vec<_> = all
        .iter()
        .filter(|message| {
            !message.deleted
                && message.ts != messages[0].ts
                && messages[0].text.starts_with(&message.text)
        })
        .collect();
    assert!(orphans.is_empty(), "drafts left behind: {orphans:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn slack_socket_mode_acks_an_envelope_and_answers_the_dm() {
    if !require_docker("slack_socket_mode_acks_an_envelope_and_answers_the_dm").await {
        return;
    }
    let model = FakeModel::start().unwrap();
    let slack = FakeSlack::start().unwrap();
    slack.add_user(ANN, "Ann");
    let host = start_host(&model, &slack, true).await;
    wire_chats(&host).await;
    slack
        .recorder()
        .wait_for("the socket connection", Duration::from_secs(30), |calls| {
            calls
                .iter()
                .any(|call| call.path == "/socket/connected")
                .then_some(())
        })
        .await
        .unwrap();
    support::wait_channel_health(&host, "slack", "connected", CONNECT_HEALTH).await;
    let opened = slack.calls_of("apps.connections.open");
    assert_eq!(
        opened[0].header("authorization"),
        Some(format!("Bearer {APP_TOKEN}").as_str()),
        "Socket Mode opens with the app token"
    );
    let payload = event_callback(
        "EvSocket",
        message_event(DM, ANN, "hello over the socket", "1700000200.000001"),
    );
    assert!(
        slack
            .socket()
            .send_envelope("env-1", "events_api", &payload)
    );
    slack
        .recorder()
        .wait_for("the envelope's ack", TURN, |calls| {
            calls
                .iter()
                .find(|call| call.path == "/socket/ack" && call.json()["envelope_id"] == "env-1")
                .map(|_| ())
        })
        .await
        .unwrap();
    slack
        .wait_message(DM, "hello over the socket", TURN)
        .await
        .unwrap();
    // A button press comes as an `interactive` envelope: a shortcut is the presser typing it.
    let press = block_actions(
        DM,
        ANN,
        "1700000200.000001",
        "pick one",
        "Say it",
        r#"{"t":"pressed-over-the-socket"}"#,
    );
    assert!(
        slack
            .socket()
            .send_envelope("env-press", "interactive", &press)
    );
    slack
        .wait_message(DM, "pressed-over-the-socket", TURN)
        .await
        .unwrap();
    assert!(
        slack
            .recorder()
            .calls()
            .iter()
            .any(|call| call.path == "/socket/ack" && call.json()["envelope_id"] == "env-press"),
        "the press was acked"
    );

    // Slack asks to reconnect; the adapter opens a new connection and goes on.
    assert!(slack.socket().send_disconnect());
    slack
        .recorder()
        .wait_for("a second connection", Duration::from_secs(30), |calls| {
            (calls
                .iter()
                .filter(|call| call.path == "/socket/connected")
                .count()
                >= 2)
                .then_some(())
        })
        .await
        .unwrap();
    let again = event_callback(
        "EvSocket2",
        message_event(DM, ANN, "still there", "1700000200.000002"),
    );
    assert!(slack.socket().send_envelope("env-2", "events_api", &again));
    slack.wait_message(DM, "still there", TURN).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_slack_token_fails_only_the_slack_adapter() {
    if !require_docker("a_refused_slack_token_fails_only_the_slack_adapter").await {
        return;
    }
    let model = FakeModel::start().unwrap();
    let slack = FakeSlack::start_with_token("xoxb-the-real-one").unwrap();
    let host = start_host(&model, &slack, false).await;
    let health = support::wait_channel_health(&host, "slack", "failing", CONNECT_HEALTH).await;
    let error = health["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("CRABPOT_SLACK_BOT_TOKEN") && error.contains("invalid_auth"),
        "{health}"
    );
    let listing = cli_ok(&host, &["channels", "list"]).await;
    assert!(listing.contains("failing"), "{listing}");
    let output = host.chat("are you there", TURN).await.unwrap();
    assert!(output.success(), "{output:?}");
    assert!(output.stdout.contains("are you there"), "{}", output.stdout);
}
