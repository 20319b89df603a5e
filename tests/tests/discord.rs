//! The Discord adapter end to end: a real `crabpot serve`, real containers, the fake model,
//! and the fake Discord (`tests::fake_discord`: REST under `/api/v10` and the Gateway over
//! WebSocket). Two hosts carry the scenarios:
//! - a conversation: a DM answered; a guild message without a mention ignored and one with
//!   `<@bot>` answered, and in a thread of that channel too; a slow stream edited in place into exactly one message; the gateway
//!   asking to reconnect (op 7) and dropping the connection, each resumed (op 6) with the
//!   session, the message sent meanwhile replayed and answered once; the host killed and
//!   started again, resuming the stored session, and what was said while it was down
//!   answered once, with nothing answered twice; and the same after a graceful restart;
//! - buttons, files and rate limits: a question answered by pressing a button, an approval
//!   request in the owner's DM approved by pressing its button, a file in
//!   each direction, and a 429 plus an exhausted bucket honoured (nothing early, nothing
//!   twice).
//!
//! Two more hosts have a refused token, once by the REST API (401) and once by the gateway
//! (close 4004): the adapter is failing in `crabpot channels list` with a message naming
//! `CRABPOT_DISCORD_BOT_TOKEN`, and the rest of the host answers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use support::{TURN, cli_json, cli_ok, eventually, read_only};
use tests::docker::require_docker;
use tests::fake_discord::{FakeDiscord, FakeMessage, Person};
use tests::fake_model::{FakeModel, Reply};
use tests::host_process::{HostOptions, HostProcess, ModelConfig};

const DM: &str = "300000000000000001";
const GUILD: &str = "400000000000000001";
const GUILD_CHANNEL: &str = "300000000000000002";
const OWNER_DM: &str = "300000000000000003";
/// How long the adapter may take to connect to the gateway.
const CONNECT: Duration = Duration::from_secs(30);

fn ann() -> Person {
    Person::new("500000000000000001", "ann", Some("Ann Crab"))
}

async fn start_host(model: &FakeModel, discord: &FakeDiscord) -> HostProcess {
    let host = HostProcess::start(
        HostOptions::with_model(ModelConfig::openai(model))
            .env("CRABPOT_DISCORD_BOT_TOKEN", &discord.token)
            .env("CRABPOT_DISCORD_API_URL", discord.api_url()),
    )
    .await
    .unwrap();
    cli_ok(
        &host,
        &["chats", "create", "discord", DM, "--name", "ann's DM"],
    )
    .await;
    cli_ok(
        &host,
        &[
            "wirings",
            "create",
            &format!("discord/{DM}"),
            "main",
            "--engage",
            "pattern",
            "--pattern",
            ".*",
        ],
    )
    .await;
    host
}

/// The bot's messages in `channel` whose text contains `fragment` (not deleted).
fn containing(discord: &FakeDiscord, channel: &str, fragment: &str) -> Vec<FakeMessage> {
    discord
        .messages(channel)
        .into_iter()
        .filter(|message| !message.deleted && message.content.contains(fragment))
        .collect()
}

async fn answered(discord: &FakeDiscord, channel: &str, fragment: &str) -> FakeMessage {
    discord
        .wait_for_message(
            &format!("the answer to {fragment:?}"),
            channel,
            TURN,
            |message| !message.deleted && message.content.contains(fragment),
        )
        .await
        .unwrap()
}

/// The `d` of every gateway frame with opcode `op` the adapter sent.
fn sent_ops(discord: &FakeDiscord, op: u64) -> Vec<Value> {
    discord
        .frames()
        .into_iter()
        .filter(|frame| frame["op"] == op)
        .map(|frame| frame["d"].clone())
        .collect()
}

fn discord_health(listed: &Value) -> Value {
    listed
        .as_array()
        .unwrap()
        .iter()
        .find(|channel| channel["channel_type"] == "discord")
        .unwrap_or_else(|| panic!("discord is listed: {listed}"))["health"]
        .clone()
}

/// Whether every row the session's agent wrote is recorded delivered.
fn all_delivered(session: &Path) -> bool {
    let written: i64 = read_only(&session.join("out/outbound.db"))
        .query_row("SELECT COUNT(*) FROM messages_out", [], |r| r.get(0))
        .unwrap_or(-1);
    let delivered: i64 = read_only(&session.join("in/inbound.db"))
        .query_row(
            "SELECT COUNT(*) FROM delivered WHERE status = 'delivered'",
            [],
            |r| r.get(0),
        )
        .unwrap_or(-2);
    written == delivered
}

#[tokio::test(flavor = "multi_thread")]
async fn a_discord_conversation_survives_drops_and_restarts() {
    if !require_docker("a_discord_conversation_survives_drops_and_restarts").await {
        return;
    }
    let model = FakeModel::start().unwrap();
    let discord = FakeDiscord::start().unwrap();
    let mut host = start_host(&model, &discord).await;
    cli_ok(
        &host,
        &["chats", "create", "discord", GUILD_CHANNEL, "--group-chat"],
    )
    .await;
    cli_ok(
        &host,
        &[
            "wirings",
            "create",
            &format!("discord/{GUILD_CHANNEL}"),
            "main",
            "--engage",
            "mention",
        ],
    )
    .await;
    discord.wait_connected(true, CONNECT).await.unwrap();
    let identify = sent_ops(&discord, 2);
    assert_eq!(identify.len(), 1, "{identify:?}");
    assert_eq!(identify[0]["token"], discord.token.as_str());
    assert_eq!(identify[0]["intents"], 1 + 512 + 4096 + 32768);
    assert_eq!(
        discord_health(&cli_json(&host, &["channels", "list"]).await)["state"],
        "connected"
    );
    // Every REST call carried the bot token.
    for call in discord.recorder().calls() {
        if call.method != "WS" {
            assert_eq!(
                call.header("authorization"),
                Some(format!("Bot {}", discord.token).as_str()),
                "{} {}",
                call.method,
                call.path
            );
        }
    }
    let ann = ann();

    // 1. A DM gets an answer, with the typing indicator while the agent works.
    discord.say(DM, None, &ann, "hello discord", &[]);
    let reply = answered(&discord, DM, "hello discord").await;
    assert!(reply.content.starts_with("echo:"), "{reply:?}");
    assert!(reply.nonce.as_ref().is_some_and(|nonce| nonce.len() <= 25));
    assert!(
        !discord
            .recorder()
            .calls_to(&format!("/channels/{DM}/typing"))
            .is_empty(),
        "the bot typed"
    );

    // 2. In a guild channel wired for mentions, chatter is ignored and a mention engages.
    discord.say(GUILD_CHANNEL, Some(GUILD), &ann, "just chatting", &[]);
    let mention = format!("<@{}> ping with mention", discord.bot_id);
    discord.say(GUILD_CHANNEL, Some(GUILD), &ann, &mention, &[]);
    answered(&discord, GUILD_CHANNEL, "ping with mention").await;
    let guild_messages = discord.messages(GUILD_CHANNEL);
    assert_eq!(guild_messages.len(), 1, "{guild_messages:#?}");
    assert!(!guild_messages[0].content.contains("just chatting"));
    // A thread of that channel is a thread of its chat: the channel's wiring covers it, and
    // the answer goes into the thread.
    let thread = discord.create_thread(GUILD_CHANNEL, GUILD, "pots");
    let in_thread = format!("<@{}> inside the thread", discord.bot_id);
    discord.say(&thread, Some(GUILD), &ann, &in_thread, &[]);
    answered(&discord, &thread, "inside the thread").await;
    assert_eq!(discord.messages(GUILD_CHANNEL).len(), 1);
    let chats = cli_ok(&host, &["chats", "list"]).await;
    assert!(
        chats.contains(GUILD_CHANNEL) && !chats.contains(&thread),
        "no chat of its own for the thread: {chats}"
    );

    // 4. A slow stream is edited in place and ends as exactly one message.
    let slow = "The crab builds its pot one stone at a time, and it never, ever hurries.";
    model.push(Reply::text(slow).streamed_slowly(8, Duration::from_millis(400)));
    discord.say(DM, None, &ann, "tell me slowly", &[]);
    let streamed = discord
        .wait_for_message("the streamed reply", DM, TURN, |message| {
            message.content == slow
        })
        .await
        .unwrap();
    assert!(
        !streamed.edits.is_empty(),
        "the draft was edited in place: {streamed:?}"
    );
    let patches = discord
        .recorder()
        .calls_to(&format!("/channels/{DM}/messages/{}", streamed.id));
    assert!(patches.iter().all(|call| call.method == "PATCH"));
    assert!(!patches.is_empty());
    assert_eq!(containing(&discord, DM, "never, ever hurries").len(), 1);

    // 8. The gateway asks to reconnect, then drops the connection, then stops acknowledging
    // heartbeats: each time the adapter resumes its session, and what was said meanwhile is
    // replayed and answered once.
    discord.request_reconnect();
    discord.wait_for_op(6, 1, CONNECT).await.unwrap();
    discord.wait_connected(true, CONNECT).await.unwrap();
    discord.drop_connection();
    discord.say(DM, None, &ann, "said during the drop", &[]);
    discord.wait_for_op(6, 2, CONNECT).await.unwrap();
    answered(&discord, DM, "said during the drop").await;
    discord.set_acks(false);
    discord.wait_for_op(6, 3, CONNECT).await.unwrap();
    discord.set_acks(true);
    discord.say(DM, None, &ann, "after the zombie", &[]);
    answered(&discord, DM, "after the zombie").await;
    let resumes = sent_ops(&discord, 6);
    assert!(
        resumes
            .iter()
            .all(|resume| resume["token"] == discord.token.as_str()
                && resume["session_id"].is_string()
                && resume["seq"].is_u64())
    );
    assert_eq!(sent_ops(&discord, 2).len(), 1, "no new session was started");

    // 7. The host is killed mid-conversation and started again: it resumes the stored
    // session, and the message sent while it was down is answered once.
    // Killed once every reply so far is recorded delivered (a live draft is the bridge's
    // memory, gone with the process: a kill in the middle of one would post the reply anew).
    eventually("every reply recorded delivered", TURN, || {
        host.group_session_dirs("main")
            .unwrap()
            .iter()
            .all(|session| all_delivered(session))
            .then_some(())
    })
    .await;
    let resumes_before = sent_ops(&discord, 6).len();
    host.kill().unwrap();
    discord.wait_connected(false, CONNECT).await.unwrap();
    discord.say(DM, None, &ann, "said while the host was down", &[]);
    host.restart().await.unwrap();
    discord
        .wait_for_op(6, resumes_before + 1, CONNECT)
        .await
        .unwrap();
    answered(&discord, DM, "said while the host was down").await;
    discord.say(DM, None, &ann, "after the restart", &[]);
    answered(&discord, DM, "after the restart").await;
    // A graceful restart too: the adapter leaves the session resumable (close 4000), and
    // the message sent while it was stopped is replayed.
    eventually("every reply recorded delivered", TURN, || {
        host.group_session_dirs("main")
            .unwrap()
            .iter()
            .all(|session| all_delivered(session))
            .then_some(())
    })
    .await;
    host.stop().unwrap();
    discord.wait_connected(false, CONNECT).await.unwrap();
    discord.say(DM, None, &ann, "said during the graceful restart", &[]);
    host.restart().await.unwrap();
    answered(&discord, DM, "said during the graceful restart").await;
    assert_eq!(
        sent_ops(&discord, 2).len(),
        1,
        "the stored session was resumed"
    );
    let resumed = sent_ops(&discord, 6);
    assert_eq!(
        resumed[resumes_before]["session_id"],
        resumed[0]["session_id"]
    );
    for said in [
        "hello discord",
        "said during the drop",
        "after the zombie",
        "said while the host was down",
        "after the restart",
        "said during the graceful restart",
    ] {
        assert_eq!(
            containing(&discord, DM, said).len(),
            1,
            "{said:?} answered once: {:#?}",
            discord.messages(DM)
        );
    }
    assert_eq!(discord.messages(GUILD_CHANNEL).len(), 1);
    let requests = model.requests();
    let asked = |text: &str| {
        requests
            .iter()
            .filter(|request| {
                request
                    .last_user_text()
                    .is_some_and(|user| user.contains(text))
            })
            .count()
    };
    assert_eq!(
        asked("said while the host was down"),
        1,
        "the model saw it once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn discord_buttons_files_and_rate_limits() {
    if !require_docker("discord_buttons_files_and_rate_limits").await {
        return;
    }
    let model = FakeModel::start().unwrap();
    support::echo_or_tool_result(&model);
    let discord = FakeDiscord::start().unwrap();
    let host = start_host(&model, &discord).await;
    discord.wait_connected(true, CONNECT).await.unwrap();
    let ann = ann();

    // 3. A question is answered by pressing its button.
    model.push(Reply::tool_call(
        "ask_user_question",
        json!({"question": "Which colour for the pot?", "options": ["red", "green"], "timeout_seconds": 120}),
    ));
    discord.say(DM, None, &ann, "paint it", &[]);
    let question = discord
        .wait_for_message("the question with buttons", DM, TURN, |message| {
            message.content.contains("Which colour")
                && message
                    .components
                    .as_array()
                    .is_some_and(|rows| !rows.is_empty())
        })
        .await
        .unwrap();
    let green = question.components[0]["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|button| {
            button["label"]
                .as_str()
                .is_some_and(|l| l.contains("green"))
        })
        .unwrap_or_else(|| panic!("a green button: {}", question.components))
        .clone();
    assert_eq!(green["type"], 2);
    let custom_id = green["custom_id"].as_str().unwrap();
    assert!(custom_id.len() <= 100);
    let interaction = discord.press(DM, None, &ann, &question.id, custom_id);
    // The reply streams as a draft first; wait for its final text.
    let told = answered(&discord, DM, "answered: green").await;
    assert_eq!(told.content, "tool said: Ann Crab answered: green");
    let callbacks = discord.callbacks();
    let callback = callbacks
        .iter()
        .find(|(id, _)| *id == interaction)
        .unwrap_or_else(|| panic!("the press was acknowledged: {callbacks:?}"));
    assert_eq!(callback.1["type"], 7);

    // Approval requests reach the owner's DM with buttons; pressing Approve is the owner
    // typing `approve <id>` there, and the held message goes through.
    let owner = Person::new("500000000000000009", "olivia", None);
    let sam = Person::new("500000000000000007", "sam", Some("Sam"));
    cli_ok(
        &host,
        &[
            "users",
            "create",
            &format!("discord:{}", owner.id),
            "--dm",
            &format!("discord/{OWNER_DM}"),
        ],
    )
    .await;
    cli_ok(
        &host,
        &["roles", "grant", &format!("discord:{}", owner.id), "owner"],
    )
    .await;
    cli_ok(
        &host,
        &[
            "chats",
            "create",
            "discord",
            GUILD_CHANNEL,
            "--group-chat",
            "--unknown-senders",
            "request_approval",
        ],
    )
    .await;
    cli_ok(
        &host,
        &[
            "wirings",
            "create",
            &format!("discord/{GUILD_CHANNEL}"),
            "main",
        ],
    )
    .await;
    let hello = format!("<@{}> hello from sam", discord.bot_id);
    discord.say(GUILD_CHANNEL, Some(GUILD), &sam, &hello, &[]);
    let request = discord
        .wait_for_message("the approval request", OWNER_DM, TURN, |message| {
            message
                .components
                .as_array()
                .is_some_and(|rows| !rows.is_empty())
        })
        .await
        .unwrap();
    assert!(
        request.content.contains("discord:500000000000000007"),
        "{request:?}"
    );
    let approve = request.components[0]["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|button| {
            button["custom_id"]
                .as_str()
                .is_some_and(|id| id.contains("approve"))
        })
        .unwrap_or_else(|| panic!("an approve button: {}", request.components))
        .clone();
    discord.press(
        OWNER_DM,
        None,
        &owner,
        &request.id,
        approve["custom_id"].as_str().unwrap(),
    );
    let replayed = answered(&discord, GUILD_CHANNEL, "hello from sam").await;
    assert!(replayed.content.starts_with("echo:"), "{replayed:?}");

    // 5. Files both ways: Ann's attachment reaches the session's inbox, and the agent's
    // send_file arrives as a multipart upload with its bytes.
    discord.say(
        DM,
        None,
        &ann,
        "see my notes",
        &[("pot-notes.txt", b"three stones\n")],
    );
    answered(&discord, DM, "see my notes").await;
    let found = host
        .group_session_dirs("main")
        .unwrap()
        .iter()
        .find_map(|session| support::find_file(&session.join("in/inbox"), "pot-notes.txt"))
        .expect("the file is in the DM session's inbox");
    assert_eq!(std::fs::read(found).unwrap(), b"three stones\n");
    assert!(
        model.requests().iter().any(|request| request
            .last_user_text()
            .is_some_and(|text| text.contains("pot-notes.txt"))),
        "the model was told of the file"
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
    discord.say(DM, None, &ann, "send me a report", &[]);
    let uploaded = discord
        .wait_for_message("the uploaded report", DM, TURN, |message| {
            !message.files.is_empty()
        })
        .await
        .unwrap();
    assert_eq!(
        uploaded.files,
        vec![("report.txt".to_owned(), b"crab pots: 3\n".to_vec())]
    );
    let upload_call = discord
        .recorder()
        .calls_to(&format!("/channels/{DM}/messages"))
        .into_iter()
        .find(|call| {
            call.header("content-type")
                .is_some_and(|kind| kind.starts_with("multipart/form-data"))
        })
        .expect("a multipart upload");
    assert!(upload_call.text().contains("name=\"payload_json\""));
    assert!(upload_call.text().contains("name=\"files[0]\""));

    // 6. Rate limits: a 429 (retry_after 1) on the messages route, then a bucket with
    // Remaining 0 and Reset-After 1.5: nothing goes early, and each piece arrives once.
    let before = discord
        .recorder()
        .calls_to(&format!("/channels/{DM}/messages"))
        .len();
    discord.limit_next_post(DM, 1.0);
    discord.exhaust_bucket_on_next_post(DM, 1.5);
    let long = format!("RL-START {} RL-END", "crab stones and pots. ".repeat(110));
    model.push(Reply::text(long.clone()));
    discord.say(DM, None, &ann, "a long one please", &[]);
    answered(&discord, DM, "RL-END").await;
    answered(&discord, DM, "RL-START").await;
    assert_eq!(
        discord.violations(),
        Vec::<String>::new(),
        "no call came early"
    );
    let posts = discord
        .recorder()
        .calls_to(&format!("/channels/{DM}/messages"))
        .len()
        - before;
    assert!(
        posts >= 3,
        "the 429, its retry, and the next piece: {posts}"
    );
    assert_eq!(containing(&discord, DM, "RL-START").len(), 1);
    assert_eq!(containing(&discord, DM, "RL-END").len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_discord_token_fails_only_the_adapter() {
    if !require_docker("a_refused_discord_token_fails_only_the_adapter").await {
        return;
    }
    let model = FakeModel::start().unwrap();
    let discord = FakeDiscord::start().unwrap();
    let host = HostProcess::start(
        HostOptions::with_model(ModelConfig::openai(&model))
            .env("CRABPOT_DISCORD_BOT_TOKEN", "not-the-token")
            .env("CRABPOT_DISCORD_API_URL", discord.api_url()),
    )
    .await
    .unwrap();
    let health = support::wait_channel_health(&host, "discord", "failing", CONNECT).await;
    let error = health["last_error"].as_str().unwrap();
    assert!(error.contains("CRABPOT_DISCORD_BOT_TOKEN"), "{error}");
    assert!(
        !error.contains("not-the-token"),
        "the token never shows: {error}"
    );
    // The rest of the host runs on.
    let output = host.chat("still there?", TURN).await.unwrap();
    assert!(output.success(), "{output:?}");
    assert!(output.stdout.contains("still there?"), "{}", output.stdout);
    assert!(
        discord.frames().is_empty(),
        "no gateway connection was tried"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_the_gateway_refuses_fails_the_adapter() {
    if !require_docker("a_token_the_gateway_refuses_fails_the_adapter").await {
        return;
    }
    let model = FakeModel::start().unwrap();
    let discord = FakeDiscord::start().unwrap();
    discord.refuse_at_gateway();
    let host = HostProcess::start(
        HostOptions::with_model(ModelConfig::openai(&model))
            .env("CRABPOT_DISCORD_BOT_TOKEN", &discord.token)
            .env("CRABPOT_DISCORD_API_URL", discord.api_url()),
    )
    .await
    .unwrap();
    let health = support::wait_channel_health(&host, "discord", "failing", CONNECT).await;
    let error = health["last_error"].as_str().unwrap();
    assert!(
        error.contains("4004") && error.contains("CRABPOT_DISCORD_BOT_TOKEN"),
        "{error}"
    );
    // It identified once and gave up: a refused token is not retried.
    assert_eq!(sent_ops(&discord, 2).len(), 1);
}
