//! Telegram end to end: a real `crabpot serve` with the Telegram adapter on, polling the fake
//! Bot API (`tests::fake_telegram`), real containers and the fake model.
//!
//! - a DM is answered; a group message without a mention is ignored and one with a mention
//!   engages; a reply streamed slowly is edited in place and ends as one message; a 429 with
//!   `retry_after` is waited out and the message arrives once;
//! - a question is answered by pressing its inline button; files travel both ways
//!   (a document into the session's inbox, `send_file` out as `sendDocument`); an unknown
//!   sender in a group is held, the owner gets the request in their DM with buttons and
//!   approving by button answers the held message;
//! - a host stopped mid-conversation, or killed, loses and repeats nothing (the offset is
//!   stored only after each update is durable); a host killed while a reply streams edits
//!   the draft's message into the reply after its restart, so the turn is still one message;
//! - in webhook mode, `setWebhook` registers the web server's URL with the secret, a post
//!   without the secret is refused and the same update posted twice is taken once;
//! - a refused token fails only the Telegram adapter (`crabpot channels list`), and the cli
//!   channel still answers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;
use std::time::Duration;
use support::{TURN, central, cli_json, cli_ok};
use tests::docker::require_docker;
use tests::fake_model::{FakeModel, Reply};
use tests::fake_telegram::{FakeTelegram, Say, Sent, TgChat, TgUser};
use tests::host_process::{HostOptions, HostProcess, ModelConfig};

const TOKEN: &str = "123456:TEST-token_abc";

async fn start_host(fake: &FakeModel, telegram: &FakeTelegram, token: &str) -> HostProcess {
    HostProcess::start(
        HostOptions::with_model(ModelConfig::openai(fake))
            .env("CRABPOT_TELEGRAM_BOT_TOKEN", token)
            .env("CRABPOT_TELEGRAM_API_URL", telegram.url()),
    )
    .await
    .unwrap()
}

/// Creates the chat `telegram/<id>` and wires it to `main` (flags before the id, which may
/// be negative).
async fn wire(host: &HostProcess, chat: &TgChat, flags: &[&str]) {
    let mut args = vec!["chats", "create"];
    if chat.kind != "private" {
        args.push("--group-chat");
    }
    args.extend_from_slice(flags);
    let id = chat.id.to_string();
    args.extend_from_slice(&["telegram", "--", &id]);
    cli_ok(host, &args).await;
    let address = format!("telegram/{}", chat.id);
    cli_ok(host, &["wirings", "create", &address, "main"]).await;
}

/// The first message sent to `chat` whose text contains `needle`.
async fn sent_containing(telegram: &FakeTelegram, chat: i64, needle: &str) -> Sent {
    telegram
        .wait_sent(&format!("a message containing {needle:?}"), TURN, |sent| {
            sent.iter()
                .find(|s| s.chat_id == chat && !s.deleted && s.text.contains(needle))
                .cloned()
        })
        .await
        .unwrap()
}

fn count_containing(telegram: &FakeTelegram, chat: i64, needle: &str) -> usize {
    telegram
        .sent_to(chat)
        .iter()
        .filter(|s| s.text.contains(needle))
        .count()
}

/// Waits until the adapter has confirmed `update_id` (a later `getUpdates` with an offset
/// past it).
async fn confirmed(telegram: &FakeTelegram, update_id: i64) {
    telegram
        .recorder()
        .wait_for("the update to be confirmed", TURN, |calls| {
            calls
                .iter()
                .filter(|call| call.path.ends_with("/getUpdates"))
                .any(|call| {
                    call.json()["offset"]
                        .as_i64()
                        .is_some_and(|o| o > update_id)
                })
                .then_some(())
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn dms_groups_streamed_edits_and_rate_limits() {
    if !require_docker("dms_groups_streamed_edits_and_rate_limits").await {
        return;
    }
    let fake = FakeModel::start().unwrap();
    let telegram = FakeTelegram::start(TOKEN).unwrap();
    let host = start_host(&fake, &telegram, TOKEN).await;
    let ann = TgUser::new(4201, "Ann", Some("Lee"));
    let bob = TgUser::new(4202, "Bob", None);
    let room = TgChat::supergroup(-100_777, "Crab room");
    wire(&host, &ann.dm(), &[]).await;
    wire(&host, &room, &[]).await;

    // 1. A DM gets an answer, in HTML, from the sender's display name.
    telegram.send(&ann.dm(), &ann, Say::text("hello crab"));
    let answer = sent_containing(&telegram, ann.id, "hello crab").await;
    assert!(answer.text.starts_with("echo:"), "{answer:?}");
    assert_eq!(answer.parse_mode.as_deref(), Some("HTML"));
    let user = cli_json(&host, &["users", "list"]).await.to_string();
    assert!(
        user.contains("telegram:4201") && user.contains("Ann Lee"),
        "{user}"
    );

    // 2. In the group, no mention: ignored; a mention: answered.
    let before = fake.requests().len();
    telegram.send(&room, &bob, Say::text("just chatting"));
    confirmed(&telegram, telegram.last_update_id()).await;
    assert_eq!(
        fake.requests().len(),
        before,
        "no turn for a message without a mention"
    );
    assert!(telegram.sent_to(room.id).is_empty());
    telegram.send(&room, &bob, Say::text("are you there").mentioning());
    let answer = sent_containing(&telegram, room.id, "are you there").await;
    assert!(answer.text.starts_with("echo:"), "{answer:?}");
    assert_eq!(count_containing(&telegram, room.id, "just chatting"), 0);
    // A reply to one of the bot's messages is a mention too.
    telegram.send(
        &room,
        &bob,
        Say::text("and another thing").replying_to(answer.message_id),
    );
    sent_containing(&telegram, room.id, "and another thing").await;

    // 6. A 429 with retry_after=1: the retry waits at least that, and one message arrives.
    let calls_before = telegram.recorder().calls().len();
    telegram.rate_limit_next("sendMessage", 1, 1);
    telegram.send(&ann.dm(), &ann, Say::text("limited please"));
    sent_containing(&telegram, ann.id, "limited please").await;
    // The first sendMessage after the injection was answered 429; the next one is the retry
    // (of the draft or of the reply itself).
    let tries: Vec<_> = telegram.recorder().calls()[calls_before..]
        .iter()
        .filter(|call| call.path.ends_with("/sendMessage"))
        .cloned()
        .collect();
    assert!(tries.len() >= 2, "one 429, then a retry: {tries:?}");
    let waited = tries[1].at.duration_since(tries[0].at);
    assert!(
        waited >= Duration::from_secs(1),
        "the retry came {waited:?} after the 429"
    );
    assert_eq!(count_containing(&telegram, ann.id, "limited please"), 1);

    // 4. A slow stream: one sendMessage, edited in place, ending with the whole text.
    let text = "The crab builds its pot one stone at a time, and never hurries.";
    fake.push(Reply::text(text).streamed_slowly(4, Duration::from_millis(250)));
    let messages_before = telegram.sent_to(ann.id).len();
    telegram.send(&ann.dm(), &ann, Say::text("tell me slowly"));
    let reply = telegram
        .wait_sent("the whole streamed reply", TURN, |sent| {
            sent.iter()
                .find(|s| s.chat_id == ann.id && s.text == text)
                .cloned()
        })
        .await
        .unwrap();
    assert!(reply.edits >= 1, "edited in place: {reply:?}");
    assert_eq!(count_containing(&telegram, ann.id, "The crab builds"), 1);
    assert_eq!(
        telegram.sent_to(ann.id).len(),
        messages_before + 1,
        "one sendMessage for the reply: {:#?}",
        telegram.sent_to(ann.id)
    );
    let edits = telegram
        .recorder()
        .calls_to("/editMessageText")
        .into_iter()
        .filter(|call| call.json()["message_id"] == json!(reply.message_id))
        .count();
    assert!(edits >= 1, "editMessageText calls: {edits}");
    assert!(
        !telegram.recorder().calls_to("/sendChatAction").is_empty(),
        "typing was shown"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn buttons_files_and_approvals() {
    if !require_docker("buttons_files_and_approvals").await {
        return;
    }
    let fake = FakeModel::start().unwrap();
    support::echo_or_tool_result(&fake);
    let telegram = FakeTelegram::start(TOKEN).unwrap();
    let host = start_host(&fake, &telegram, TOKEN).await;
    let ann = TgUser::new(5301, "Ann", None);
    wire(&host, &ann.dm(), &[]).await;

    // 3. A question as an inline keyboard, answered by a press.
    fake.push(Reply::tool_call(
        "ask_user_question",
        json!({"question": "Which colour for the pot?", "options": ["red", "green"], "timeout_seconds": 120}),
    ));
    telegram.send(&ann.dm(), &ann, Say::text("paint it"));
    let question = sent_containing(&telegram, ann.id, "Which colour").await;
    let data = question.callback_data();
    assert_eq!(data.len(), 2, "{question:?}");
    assert!(data.iter().all(|d| d.len() <= 64), "{data:?}");
    telegram.press(&ann, ann.id, question.message_id, &data[1]);
    let answered = sent_containing(&telegram, ann.id, "answered: green").await;
    assert!(answered.text.contains("tool said:"), "{answered:?}");
    assert!(
        !telegram
            .recorder()
            .calls_to("/answerCallbackQuery")
            .is_empty(),
        "the press was answered"
    );
    let keyboard = telegram
        .sent_to(ann.id)
        .into_iter()
        .find(|s| s.message_id == question.message_id)
        .unwrap();
    assert!(
        keyboard.callback_data().is_empty(),
        "keyboard removed: {keyboard:?}"
    );

    // 5a. A document sent by the person reaches the session's inbox and the model.
    telegram.send(
        &ann.dm(),
        &ann,
        Say::text("read this").with_document("notes.txt", b"crab pots: 3\n"),
    );
    sent_containing(&telegram, ann.id, "read this").await;
    let session = host.session_dir("main").unwrap();
    let copies = support::find_files(&session, "notes.txt");
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(std::fs::read(&copies[0]).unwrap(), b"crab pots: 3\n");
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.last_user_text().unwrap_or_default().contains("notes.txt")),
        "the model saw the attachment"
    );
    assert!(!telegram.recorder().calls_to("/getFile").is_empty());

    // 5b. send_file goes out as sendDocument with the bytes and the text as caption.
    fake.push(Reply::tool_call(
        "write_file",
        json!({"path": "report.txt", "content": "crab pots: 4\n"}),
    ));
    fake.push(Reply::tool_call(
        "send_file",
        json!({"path": "report.txt", "text": "here is the report"}),
    ));
    fake.push(Reply::text("done"));
    telegram.send(&ann.dm(), &ann, Say::text("send me the report"));
    let document = telegram
        .wait_sent("the document", TURN, |sent| {
            sent.iter().find(|s| s.method == "sendDocument").cloned()
        })
        .await
        .unwrap();
    let (name, bytes) = document.document.clone().unwrap();
    assert_eq!(name, "report.txt");
    assert_eq!(&bytes[..], b"crab pots: 4\n");
    assert!(document.text.contains("here is the report"), "{document:?}");

    // 9. An unknown sender in a request_approval group: the owner approves by button.
    let owner = format!("telegram:{}", ann.id);
    cli_ok(&host, &["roles", "grant", &owner, "owner"]).await;
    let room = TgChat::supergroup(-100_888, "Guarded room");
    wire(&host, &room, &["--unknown-senders", "request_approval"]).await;
    let sam = TgUser::new(5399, "Sam", None);
    telegram.send(&room, &sam, Say::text("hello from sam").mentioning());
    let request = telegram
        .wait_sent("the approval request", TURN, |sent| {
            sent.iter()
                .find(|s| s.chat_id == ann.id && s.text.contains("telegram:5399"))
                .cloned()
        })
        .await
        .unwrap();
    let buttons = request.callback_data();
    assert!(!buttons.is_empty(), "{request:?}");
    let approve = request
        .button_labels()
        .iter()
        .position(|label| label.to_lowercase().contains("approve"))
        .unwrap_or_else(|| panic!("an Approve button: {request:?}"));
    telegram.press(&ann, ann.id, request.message_id, &buttons[approve]);
    let answer = sent_containing(&telegram, room.id, "hello from sam").await;
    assert!(answer.text.starts_with("echo:"), "{answer:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_or_crashed_host_loses_and_repeats_nothing() {
    if !require_docker("a_stopped_or_crashed_host_loses_and_repeats_nothing").await {
        return;
    }
    let fake = FakeModel::start().unwrap();
    let telegram = FakeTelegram::start(TOKEN).unwrap();
    let mut host = start_host(&fake, &telegram, TOKEN).await;
    let ann = TgUser::new(6401, "Ann", None);
    wire(&host, &ann.dm(), &[]).await;
    telegram.send(&ann.dm(), &ann, Say::text("first words"));
    sent_containing(&telegram, ann.id, "first words").await;
    let first_update = telegram.last_update_id();
    confirmed(&telegram, first_update).await;

    host.stop().unwrap();
    let stored: String = central(&host)
        .query_row(
            "SELECT value FROM channel_state WHERE channel_type = 'telegram' AND key = 'offset'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, (first_update + 1).to_string());
    // Said while the host was down.
    telegram.send(&ann.dm(), &ann, Say::text("second words"));
    telegram.send(&ann.dm(), &ann, Say::text("third words"));
    host.restart().await.unwrap();
    sent_containing(&telegram, ann.id, "second words").await;
    sent_containing(&telegram, ann.id, "third words").await;
    let last = telegram.last_update_id();
    confirmed(&telegram, last).await;
    assert_eq!(telegram.unconfirmed(), 0);
    for words in ["first words", "second words", "third words"] {
        assert_eq!(count_containing(&telegram, ann.id, words), 1, "{words}");
    }
    // Each message was stored once in the session (none lost, none taken twice).
    let session = host.session_dir("main").unwrap();
    let inbound = support::read_only(&session.join("in/inbound.db"));
    for words in ["first words", "second words", "third words"] {
        let rows: i64 = inbound
            .query_row(
                "SELECT count(*) FROM messages_in WHERE kind = 'chat' AND content LIKE ?1",
                [format!("%{words}%")],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(rows, 1, "{words:?} was stored once");
    }
    // A crash (SIGKILL) between conversations: what is said meanwhile is taken once too.
    // (The Bot API has no idempotency key, so a reply cut off mid-send by a crash may show
    // twice; the crash comes once every reply is recorded delivered.)
    support::eventually("every reply recorded delivered", TURN, || {
        let (sending, delivered): (i64, i64) = inbound
            .query_row(
                "SELECT count(*) FILTER (WHERE status = 'sending'), \
                 count(*) FILTER (WHERE status = 'delivered') FROM delivered",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        (sending == 0 && delivered >= 2).then_some(())
    })
    .await;
    drop(inbound);
    host.kill().unwrap();
    telegram.send(&ann.dm(), &ann, Say::text("fourth words"));
    host.restart().await.unwrap();
    sent_containing(&telegram, ann.id, "fourth words").await;
    confirmed(&telegram, telegram.last_update_id()).await;
    for words in ["first words", "second words", "third words", "fourth words"] {
        assert_eq!(count_containing(&telegram, ann.id, words), 1, "{words}");
    }
    let rows: i64 = support::read_only(&session.join("in/inbound.db"))
        .query_row(
            "SELECT count(*) FROM messages_in WHERE kind = 'chat' AND content LIKE '%fourth words%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rows, 1, "stored once after the crash");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_mid_reply_still_ends_as_one_message() {
    if !require_docker("a_crash_mid_reply_still_ends_as_one_message").await {
        return;
    }
    let fake = FakeModel::start().unwrap();
    let telegram = FakeTelegram::start(TOKEN).unwrap();
    let mut host = start_host(&fake, &telegram, TOKEN).await;
    let ann = TgUser::new(6501, "Ann", None);
    wire(&host, &ann.dm(), &[]).await;
    telegram.send(&ann.dm(), &ann, Say::text("warm up"));
    sent_containing(&telegram, ann.id, "warm up").await;
    let before = telegram.sent_to(ann.id).len();

    // A reply streams slowly; once its draft shows (and is written down), the host is killed.
    let slow = "Stone by stone the crab builds its pot, and it does not hurry at all, not ever.";
    fake.push(Reply::text(slow).streamed_slowly(3, Duration::from_millis(300)));
    telegram.send(&ann.dm(), &ann, Say::text("tell me slowly"));
    let draft = telegram
        .wait_sent("the draft of the reply", TURN, |sent| {
            sent.iter()
                .find(|s| s.chat_id == ann.id && s.text.starts_with("Stone"))
                .cloned()
        })
        .await
        .unwrap();
    support::eventually("the draft written down", TURN, || {
        let n: i64 = central(&host)
            .query_row("SELECT count(*) FROM live_drafts", [], |r| r.get(0))
            .unwrap();
        (n == 1).then_some(())
    })
    .await;
    host.kill().unwrap();
    // The runner's model call broke with the host's proxy; it asks again once it is back.
    let whole = "The whole answer, after the restart.";
    fake.push(Reply::text(whole));
    host.restart().await.unwrap();

    // The draft's own message becomes the reply: nothing left behind, nothing twice.
    let reply = telegram
        .wait_sent("the reply in the draft's message", TURN, |sent| {
            sent.iter()
                .find(|s| s.chat_id == ann.id && s.text == whole)
                .cloned()
        })
        .await
        .unwrap();
    assert_eq!(reply.message_id, draft.message_id, "{reply:?}");
    let shown: Vec<_> = telegram
        .sent_to(ann.id)
        .into_iter()
        .skip(before)
        .filter(|s| !s.deleted)
        .collect();
    assert_eq!(shown.len(), 1, "one message for the turn: {shown:#?}");
    support::eventually("the draft forgotten", TURN, || {
        let n: i64 = central(&host)
            .query_row("SELECT count(*) FROM live_drafts", [], |r| r.get(0))
            .unwrap();
        (n == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_token_fails_only_the_telegram_adapter() {
    if !require_docker("a_refused_token_fails_only_the_telegram_adapter").await {
        return;
    }
    let fake = FakeModel::start().unwrap();
    let telegram = FakeTelegram::start(TOKEN).unwrap();
    let host = start_host(&fake, &telegram, "999:wrong-token").await;
    let health =
        support::wait_channel_health(&host, "telegram", "failing", Duration::from_secs(30)).await;
    let error = health["last_error"].as_str().unwrap();
    assert!(error.contains("CRABPOT_TELEGRAM_BOT_TOKEN"), "{error}");
    assert!(
        !error.contains("wrong-token"),
        "the token is never shown: {error}"
    );
    let output = host.chat("still there?", TURN).await.unwrap();
    assert!(output.success(), "{output:?}\n{}", host.log_tail(60));
    assert!(output.stdout.contains("echo:"), "{}", output.stdout);
    assert!(telegram.recorder().calls_to("/getUpdates").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_webhook_takes_updates_with_the_secret_once() {
    if !require_docker("the_webhook_takes_updates_with_the_secret_once").await {
        return;
    }
    let fake = FakeModel::start().unwrap();
    let telegram = FakeTelegram::start(TOKEN).unwrap();
    let secret = "hook-secret_1";
    let host = HostProcess::start(
        HostOptions::with_model(ModelConfig::openai(&fake))
            .env("CRABPOT_TELEGRAM_BOT_TOKEN", TOKEN)
            .env("CRABPOT_TELEGRAM_API_URL", telegram.url())
            .env("CRABPOT_TELEGRAM_MODE", "webhook")
            .env("CRABPOT_TELEGRAM_WEBHOOK_SECRET", secret),
    )
    .await
    .unwrap();
    let registered = telegram
        .recorder()
        .wait_for("setWebhook", TURN, |calls| {
            calls
                .iter()
                .find(|call| call.path.ends_with("/setWebhook"))
                .map(|call| call.json())
        })
        .await
        .unwrap();
    let web_url = host.web_url().unwrap();
    assert_eq!(
        registered["url"],
        json!(format!("{web_url}/hooks/telegram")),
        "{registered}"
    );
    assert_eq!(registered["secret_token"], json!(secret));
    let ann = TgUser::new(7501, "Ann", None);
    wire(&host, &ann.dm(), &[]).await;
    let addr: std::net::SocketAddr = web_url.trim_start_matches("http://").parse().unwrap();
    let update = telegram.message_update(&ann.dm(), &ann, Say::text("via the hook"));
    let post = |headers: &'static [(&'static str, &'static str)]| {
        let update = update.clone();
        async move {
            tests::http_client::post_json_tcp(addr, "/hooks/telegram", headers, &update)
                .await
                .unwrap()
                .status
        }
    };
    assert_eq!(post(&[]).await, 401, "no secret");
    assert_eq!(
        post(&[("X-Telegram-Bot-Api-Secret-Token", "hook-secret_2")]).await,
        401,
        "a wrong secret"
    );
    let right: &'static [(&'static str, &'static str)] =
        &[("X-Telegram-Bot-Api-Secret-Token", "hook-secret_1")];
    assert_eq!(post(right).await, 200);
    sent_containing(&telegram, ann.id, "via the hook").await;
    // Telegram posting the same update again is answered 200 and not taken twice.
    assert_eq!(post(right).await, 200);
    let session = host.session_dir("main").unwrap();
    let rows: i64 = support::read_only(&session.join("in/inbound.db"))
        .query_row(
            "SELECT count(*) FROM messages_in WHERE kind = 'chat' AND content LIKE '%via the hook%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rows, 1);
    assert!(telegram.recorder().calls_to("/getUpdates").is_empty());
}
