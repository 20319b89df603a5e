//! Matrix end to end: a real `crabpot serve` with the Matrix adapter on, against a real,
//! private Synapse per test (`tests::synapse`), real containers and the fake model.
//!
//! - a person invites the bot to a direct chat, it joins, and their message is answered
//!   (plain `body` and HTML `formatted_body`); a message in an `m.thread` is answered in that
//!   thread; in a group room a message without a mention is ignored and one naming the bot
//!   (by display name, or in `m.mentions`) or replying to it is answered;
//! - a reply streamed slowly is one event edited in place (`m.replace`), the final text in
//!   its last edit, and no second message;
//! - files travel both ways: an `m.file` reaches the session's inbox, and `send_file` goes out
//!   as an `m.file` whose media downloads with the same bytes;
//! - a host stopped, or killed, loses and repeats nothing (`since` is stored only after each
//!   batch is durable), and a restart reuses the bot's device; a host killed while a reply
//!   streams edits the draft's event into the reply after its restart;
//! - a token logged out while the bot syncs is replaced by a new password login;
//! - a homeserver outage makes the adapter degraded (sync retried with back-off), and it
//!   carries on once the homeserver is back;
//! - an end-to-end encrypted room gets one notice that the bot cannot read it; a question
//!   gets keycap reactions, and a person's keycap reaction answers it;
//! - the bot logs in with an access token as well as with a password; a refused password
//!   or token fails only the Matrix adapter, naming the variable, never the secret.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::{TURN, central, cli_json, cli_ok};
use tests::docker::require_docker;
use tests::fake_model::{FakeModel, Reply};
use tests::host_process::{HostOptions, HostProcess, ModelConfig};
use tests::synapse::{MatrixUser, Synapse};

const BOT_PASSWORD: &str = "bot-pass word_1";

/// A homeserver with the bot and one person registered.
struct World {
    synapse: Synapse,
    bot_id: String,
    /// The access token the bot's registration got (for the access-token login).
    bot_token: String,
    alice: MatrixUser,
}

impl World {
    async fn start() -> World {
        let synapse = Synapse::start().await.unwrap();
        let bot = synapse.register("crabpot", BOT_PASSWORD).await.unwrap();
        let alice = synapse.register("alice", "alice-pass").await.unwrap();
        World {
            bot_id: bot.user_id.clone(),
            bot_token: bot.token.clone(),
            synapse,
            alice,
        }
    }

    fn options(&self, fake: &FakeModel, password: &str) -> HostOptions {
        HostOptions::with_model(ModelConfig::openai(fake))
            .env("CRABPOT_MATRIX_HOMESERVER", self.synapse.url())
            .env("CRABPOT_MATRIX_USER", self.bot_id.clone())
            .env("CRABPOT_MATRIX_PASSWORD", password)
            .env("CRABPOT_MATRIX_INVITES", "all")
    }

    async fn host(&self, fake: &FakeModel) -> HostProcess {
        let host = HostProcess::start(self.options(fake, BOT_PASSWORD))
            .await
            .unwrap();
        support::wait_channel_health(&host, "matrix", "connected", TURN).await;
        host
    }

    /// A room of `person` with the bot in it (invited, and joined by the bot itself), as a
    /// crabpot chat wired to `main`.
    async fn room(&self, host: &HostProcess, person: &MatrixUser, direct: bool) -> String {
        let room = person.create_room(&[&self.bot_id], direct).await.unwrap();
        person.wait_joined(&room, &self.bot_id, TURN).await.unwrap();
        let mut args = vec!["chats", "create"];
        if !direct {
            args.push("--group-chat");
        }
        args.extend_from_slice(&["matrix", "--", &room]);
        cli_ok(host, &args).await;
        cli_ok(
            host,
            &["wirings", "create", &format!("matrix/{room}"), "main"],
        )
        .await;
        room
    }

    /// The bot's messages in `room` (edits left out), oldest first.
    async fn bot_messages(&self, room: &str) -> Vec<Value> {
        let events = self.alice.events(room).await.unwrap();
        bot_messages(&events, &self.bot_id)
    }

    /// Waits for the bot's message in `room` whose text contains `needle`.
    async fn reply_containing(&self, room: &str, needle: &str) -> Value {
        let bot = self.bot_id.clone();
        self.alice
            .wait_events(
                room,
                &format!("a reply containing {needle:?}"),
                TURN,
                |events| {
                    bot_messages(events, &bot)
                        .into_iter()
                        .find(|event| text_of(events, event).contains(needle))
                },
            )
            .await
            .unwrap()
    }

    async fn count_containing(&self, room: &str, needle: &str) -> usize {
        let events = self.alice.events(room).await.unwrap();
        bot_messages(&events, &self.bot_id)
            .iter()
            .filter(|event| text_of(&events, event).contains(needle))
            .count()
    }
}

/// The bot's `m.room.message` events that are not edits.
fn bot_messages(events: &[Value], bot: &str) -> Vec<Value> {
    events
        .iter()
        .filter(|event| event["type"] == "m.room.message" && event["sender"] == bot)
        .filter(|event| event["content"]["m.relates_to"]["rel_type"] != "m.replace")
        .cloned()
        .collect()
}

/// The edits of `event_id`, oldest first.
fn edits_of<'a>(events: &'a [Value], event_id: &Value) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|event| {
            event["content"]["m.relates_to"]["rel_type"] == "m.replace"
                && event["content"]["m.relates_to"]["event_id"] == *event_id
        })
        .collect()
}

/// A message's text as a reader sees it: its last edit's, or its own.
fn text_of(events: &[Value], event: &Value) -> String {
    let edits = edits_of(events, &event["event_id"]);
    let content = match edits.last() {
        Some(edit) => &edit["content"]["m.new_content"],
        None => &event["content"],
    };
    content["body"].as_str().unwrap_or_default().to_owned()
}

/// How many times `words` was stored, over every session of `main`.
fn stored_once(host: &HostProcess, words: &str) -> i64 {
    host.group_session_dirs("main")
        .unwrap()
        .iter()
        .map(|session| -> i64 {
            support::read_only(&session.join("in/inbound.db"))
                .query_row(
                    "SELECT count(*) FROM messages_in WHERE kind = 'chat' AND content LIKE ?1",
                    [format!("%{words}%")],
                    |r| r.get(0),
                )
                .unwrap()
        })
        .sum()
}

fn channel_state(host: &HostProcess, key: &str) -> Option<String> {
    central(host)
        .query_row(
            "SELECT value FROM channel_state WHERE channel_type = 'matrix' AND key = ?1",
            [key],
            |r| r.get(0),
        )
        .ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn dms_threads_and_mentions() {
    if !require_docker("dms_threads_and_mentions").await {
        return;
    }
    let fake = FakeModel::start().unwrap();
    let world = World::start().await;
    let host = world.host(&fake).await;
    let alice = &world.alice;
    let dm = world.room(&host, alice, true).await;

    // 1. A DM is answered, with a plain body and HTML.
    alice.say(&dm, "hello crab").await.unwrap();
    let answer = world.reply_containing(&dm, "hello crab").await;
    assert!(
        answer["content"]["body"]
            .as_str()
            .unwrap()
            .starts_with("echo:"),
        "{answer}"
    );
    assert_eq!(answer["content"]["format"], "org.matrix.custom.html");
    assert!(answer["content"]["formatted_body"].is_string(), "{answer}");
    let users = cli_json(&host, &["users", "list"]).await.to_string();
    assert!(users.contains("matrix:@alice:crabpot.test"), "{users}");

    // 2. A message in a thread is answered in that thread.
    let root = alice.say(&dm, "a thread starts here").await.unwrap();
    world.reply_containing(&dm, "a thread starts here").await;
    alice
        .say_in_thread(&dm, &root, "and goes on in it")
        .await
        .unwrap();
    let threaded = world.reply_containing(&dm, "and goes on in it").await;
    let relation = &threaded["content"]["m.relates_to"];
    assert_eq!(relation["rel_type"], "m.thread", "{threaded}");
    assert_eq!(relation["event_id"], json!(root), "{threaded}");

    // 3. In a group room: no mention, no answer; the display name or m.mentions engage.
    let group = world.room(&host, alice, false).await;
    alice.say(&group, "just chatting").await.unwrap();
    alice.say(&group, "crabpot, are you there").await.unwrap();
    world.reply_containing(&group, "are you there").await;
    alice
        .send(
            &group,
            "m.room.message",
            &json!({"msgtype": "m.text", "body": "pinged you",
                "m.mentions": {"user_ids": [world.bot_id]}}),
        )
        .await
        .unwrap();
    let pinged = world.reply_containing(&group, "pinged you").await;
    // A reply to one of the bot's messages is a mention too.
    alice
        .send(
            &group,
            "m.room.message",
            &json!({"msgtype": "m.text", "body": "and another thing",
                "m.relates_to": {"m.in_reply_to": {"event_id": pinged["event_id"]}}}),
        )
        .await
        .unwrap();
    world.reply_containing(&group, "and another thing").await;
    assert_eq!(world.count_containing(&group, "just chatting").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_stream_is_one_event_edited_in_place() {
    if !require_docker("a_slow_stream_is_one_event_edited_in_place").await {
        return;
    }
    let fake = FakeModel::start().unwrap();
    let world = World::start().await;
    let host = world.host(&fake).await;
    let dm = world.room(&host, &world.alice, true).await;
    world.alice.say(&dm, "warm up").await.unwrap();
    world.reply_containing(&dm, "warm up").await;
    let before = world.bot_messages(&dm).await.len();

    let text = "The crab builds its pot one stone at a time, and it never hurries, not even once.";
    fake.push(Reply::text(text).streamed_slowly(4, Duration::from_millis(300)));
    world.alice.say(&dm, "tell me slowly").await.unwrap();
    let reply = world
        .reply_containing(&dm, "never hurries, not even once.")
        .await;
    let events = world.alice.events(&dm).await.unwrap();
    assert_eq!(text_of(&events, &reply), text);
    let edits = edits_of(&events, &reply["event_id"]);
    assert!(!edits.is_empty(), "edited in place: {reply}");
    let last = edits.last().unwrap();
    assert_eq!(last["content"]["m.new_content"]["body"], text);
    assert!(last["content"]["m.new_content"]["formatted_body"].is_string());
    // Synapse's access log shows the typing notification, answered 200.
    let typing = world
        .synapse
        .log()
        .lines()
        .any(|line| line.contains("/typing/") && line.contains(" 200 \"PUT "));
    assert!(typing, "typing was shown:\n{}", world.synapse.log_tail(40));
    assert_eq!(
        world.bot_messages(&dm).await.len(),
        before + 1,
        "one message for the reply: {:#?}",
        world.bot_messages(&dm).await
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn files_go_both_ways() {
    if !require_docker("files_go_both_ways").await {
        return;
    }
    let fake = FakeModel::start().unwrap();
    support::echo_or_tool_result(&fake);
    let world = World::start().await;
    let host = world.host(&fake).await;
    let alice = &world.alice;
    let dm = world.room(&host, alice, true).await;

    // In: an m.file reaches the session's inbox and the model.
    alice
        .send_file(&dm, "notes.txt", b"crab pots: 3\n")
        .await
        .unwrap();
    world.reply_containing(&dm, "notes.txt").await;
    let session = host.session_dir("main").unwrap();
    let copies = support::find_files(&session, "notes.txt");
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(std::fs::read(&copies[0]).unwrap(), b"crab pots: 3\n");

    // Out: send_file goes out as an m.file whose media has the same bytes.
    fake.push(Reply::tool_call(
        "write_file",
        json!({"path": "report.txt", "content": "crab pots: 4\n"}),
    ));
    fake.push(Reply::tool_call(
        "send_file",
        json!({"path": "report.txt", "text": "here is the report"}),
    ));
    fake.push(Reply::text("done"));
    alice.say(&dm, "send me the report").await.unwrap();
    let bot = world.bot_id.clone();
    let file = alice
        .wait_events(&dm, "the bot's m.file", TURN, |events| {
            bot_messages(events, &bot)
                .into_iter()
                .find(|event| event["content"]["msgtype"] == "m.file")
        })
        .await
        .unwrap();
    assert_eq!(file["content"]["body"], "report.txt", "{file}");
    let bytes = alice
        .download(file["content"]["url"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(&bytes[..], b"crab pots: 4\n");
    world.reply_containing(&dm, "here is the report").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_or_killed_host_loses_and_repeats_nothing() {
    if !require_docker("a_stopped_or_killed_host_loses_and_repeats_nothing").await {
        return;
    }
    let fake = FakeModel::start().unwrap();
    let world = World::start().await;
    let mut host = world.host(&fake).await;
    let dm = world.room(&host, &world.alice, true).await;
    // A group room whose unmentioned messages are kept as context.
    let group = world
        .alice
        .create_room(&[&world.bot_id], false)
        .await
        .unwrap();
    world
        .alice
        .wait_joined(&group, &world.bot_id, TURN)
        .await
        .unwrap();
    cli_ok(
        &host,
        &["chats", "create", "--group-chat", "matrix", "--", &group],
    )
    .await;
    cli_ok(
        &host,
        &[
            "wirings",
            "create",
            &format!("matrix/{group}"),
            "main",
            "--ignored",
            "accumulate",
        ],
    )
    .await;
    world.alice.say(&dm, "first words").await.unwrap();
    world.reply_containing(&dm, "first words").await;
    let login = channel_state(&host, "login").unwrap();
    let device = serde_json::from_str::<Value>(&login).unwrap()["device_id"].clone();
    assert!(device.is_string(), "{device}");
    assert!(
        !host.log().contains(BOT_PASSWORD),
        "the password is never logged"
    );

    host.stop().unwrap();
    assert!(channel_state(&host, "since").is_some());
    // Said while the host was down.
    world.alice.say(&dm, "second words").await.unwrap();
    world.alice.say(&dm, "third words").await.unwrap();
    // More than one sync's timeline holds (50): the adapter pages the gap back.
    for n in 1..=60 {
        world
            .alice
            .say(&group, &format!("backlog-{n:03}"))
            .await
            .unwrap();
    }
    world
        .alice
        .say(&group, "crabpot, what did I say")
        .await
        .unwrap();
    host.restart().await.unwrap();
    world.reply_containing(&group, "what did I say").await;
    assert!(
        host.log().contains("gap paged back"),
        "the sync was limited and its gap paged back"
    );
    for n in [1, 2, 30, 59, 60] {
        let words = format!("backlog-{n:03}");
        assert_eq!(stored_once(&host, &words), 1, "{words} was stored once");
    }
    world.reply_containing(&dm, "second words").await;
    world.reply_containing(&dm, "third words").await;
    let login = channel_state(&host, "login").unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&login).unwrap()["device_id"],
        device,
        "the restart reused the device"
    );
    for words in ["first words", "second words", "third words"] {
        assert_eq!(world.count_containing(&dm, words).await, 1, "{words}");
        assert_eq!(stored_once(&host, words), 1, "{words:?} was stored once");
    }

    // A crash (SIGKILL) once every reply is recorded delivered: what is said meanwhile is
    // taken once too.
    support::eventually("every reply recorded delivered", TURN, || {
        let mut sending = 0;
        let mut delivered = 0;
        for session in host.group_session_dirs("main").unwrap() {
            let (s, d): (i64, i64) = support::read_only(&session.join("in/inbound.db"))
                .query_row(
                    "SELECT count(*) FILTER (WHERE status = 'sending'), \
                     count(*) FILTER (WHERE status = 'delivered') FROM delivered",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .unwrap();
            sending += s;
            delivered += d;
        }
        // First words, the group's answer, and one or two replies: second and third words
        // may be answered in one turn.
        (sending == 0 && delivered >= 3).then_some(())
    })
    .await;
    host.kill().unwrap();
    world.alice.say(&dm, "fourth words").await.unwrap();
    host.restart().await.unwrap();
    world.reply_containing(&dm, "fourth words").await;
    for words in ["first words", "second words", "third words", "fourth words"] {
        assert_eq!(world.count_containing(&dm, words).await, 1, "{words}");
        assert_eq!(stored_once(&host, words), 1, "{words:?} was stored once");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_mid_reply_still_ends_as_one_message() {
    if !require_docker("a_crash_mid_reply_still_ends_as_one_message").await {
        return;
    }
    let fake = FakeModel::start().unwrap();
    let world = World::start().await;
    let mut host = world.host(&fake).await;
    let dm = world.room(&host, &world.alice, true).await;
    world.alice.say(&dm, "warm up").await.unwrap();
    world.reply_containing(&dm, "warm up").await;
    let before = world.bot_messages(&dm).await.len();

    // A reply streams slowly; once its draft shows (and is written down), the host is killed.
    let slow = "Stone by stone the crab builds its pot, and it does not hurry at all, not ever.";
    fake.push(Reply::text(slow).streamed_slowly(3, Duration::from_millis(300)));
    world.alice.say(&dm, "tell me slowly").await.unwrap();
    let draft = world.reply_containing(&dm, "Stone").await;
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

    // The draft's own event becomes the reply: one message for the turn, edited.
    let reply = world.reply_containing(&dm, whole).await;
    assert_eq!(reply["event_id"], draft["event_id"], "{reply}");
    let events = world.alice.events(&dm).await.unwrap();
    assert_eq!(text_of(&events, &reply), whole);
    let shown = world.bot_messages(&dm).await;
    assert_eq!(
        shown.len(),
        before + 1,
        "one message for the turn: {shown:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_encrypted_room_is_told_and_a_reaction_answers_a_question() {
    if !require_docker("an_encrypted_room_is_told_and_a_reaction_answers_a_question").await {
        return;
    }
    let fake = FakeModel::start().unwrap();
    support::echo_or_tool_result(&fake);
    let world = World::start().await;
    let host = world.host(&fake).await;
    let alice = &world.alice;

    // An encrypted room: the bot joins and says, once, that it cannot read it.
    let secret = alice.create_encrypted_room(&[&world.bot_id]).await.unwrap();
    alice
        .wait_joined(&secret, &world.bot_id, TURN)
        .await
        .unwrap();
    let encrypted = json!({
        "algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgAEnAC", "device_id": "ALICEDEV",
        "sender_key": "c2VuZGVyLWtleQ", "session_id": "c2Vzc2lvbg",
    });
    alice
        .send(&secret, "m.room.encrypted", &encrypted)
        .await
        .unwrap();
    let bot = world.bot_id.clone();
    let notice = alice
        .wait_events(&secret, "the encrypted-room notice", TURN, |events| {
            bot_messages(events, &bot)
                .into_iter()
                .find(|event| event["content"]["msgtype"] == "m.notice")
        })
        .await
        .unwrap();
    let body = notice["content"]["body"].as_str().unwrap();
    assert!(body.contains("end-to-end encrypted"), "{body}");
    alice
        .send(&secret, "m.room.encrypted", &encrypted)
        .await
        .unwrap();

    // A question in a DM: numbered options, keycaps on it, and a keycap reaction answers.
    let dm = world.room(&host, alice, true).await;
    fake.push(Reply::tool_call(
        "ask_user_question",
        json!({"question": "Which colour for the pot?", "options": ["red", "green"], "timeout_seconds": 120}),
    ));
    alice.say(&dm, "paint it").await.unwrap();
    let question = world.reply_containing(&dm, "Which colour").await;
    let body = question["content"]["body"].as_str().unwrap();
    assert!(
        body.contains("1. red") && body.contains("2. green"),
        "{body}"
    );
    let question_id = question["event_id"].clone();
    let keycaps = alice
        .wait_events(&dm, "the keycaps on the question", TURN, |events| {
            let keys: Vec<String> = events
                .iter()
                .filter(|event| event["type"] == "m.reaction" && event["sender"] == bot)
                .filter(|event| event["content"]["m.relates_to"]["event_id"] == question_id)
                .filter_map(|event| event["content"]["m.relates_to"]["key"].as_str())
                .map(str::to_owned)
                .collect();
            (keys.len() == 2).then_some(keys)
        })
        .await
        .unwrap();
    alice
        .react(&dm, question_id.as_str().unwrap(), &keycaps[1])
        .await
        .unwrap();
    let answered = world.reply_containing(&dm, "answered: green").await;
    assert!(text_of(&alice.events(&dm).await.unwrap(), &answered).contains("tool said:"));

    // Still one notice in the encrypted room, and nothing else from the bot there.
    let said = world.bot_messages(&secret).await;
    assert_eq!(said.len(), 1, "{said:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn invites_follow_the_known_policy() {
    if !require_docker("invites_follow_the_known_policy").await {
        return;
    }
    let fake = FakeModel::start().unwrap();
    let world = World::start().await;
    // Logged in with an access token this time (it wins over the password).
    let host = HostProcess::start(
        world
            .options(&fake, BOT_PASSWORD)
            .env("CRABPOT_MATRIX_ACCESS_TOKEN", world.bot_token.clone())
            .env("CRABPOT_MATRIX_INVITES", "known"),
    )
    .await
    .unwrap();
    support::wait_channel_health(&host, "matrix", "connected", TURN).await;
    assert_eq!(channel_state(&host, "login"), None, "no password login");
    let bob = world.synapse.register("bob", "bob-pass").await.unwrap();
    let carol = world.synapse.register("carol", "carol-pass").await.unwrap();

    // Bob is nobody crabpot knows: his invite is declined.
    let bobs = bob.create_room(&[&world.bot_id], true).await.unwrap();
    let asked = std::time::Instant::now();
    while bob.membership(&bobs, &world.bot_id).await.unwrap() != "leave" {
        assert!(
            asked.elapsed() < TURN,
            "the bot never declined bob's invite"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Alice is a crabpot user: her invite is taken, and her DM answered.
    cli_ok(&host, &["users", "create", "matrix:@alice:crabpot.test"]).await;
    let dm = world.room(&host, &world.alice, true).await;
    world.alice.say(&dm, "known now").await.unwrap();
    world.reply_containing(&dm, "known now").await;

    // Carol is unknown, but her room is already a chat: taken.
    let carols = carol.create_room(&[], false).await.unwrap();
    cli_ok(
        &host,
        &["chats", "create", "--group-chat", "matrix", "--", &carols],
    )
    .await;
    carol
        .json(
            http::Method::POST,
            &format!(
                "/_matrix/client/v3/rooms/{}/invite",
                tests::synapse::encode(&carols)
            ),
            &json!({"user_id": world.bot_id}),
        )
        .await
        .unwrap();
    carol
        .wait_joined(&carols, &world.bot_id, TURN)
        .await
        .unwrap();
    assert_eq!(bob.membership(&bobs, &world.bot_id).await.unwrap(), "leave");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_homeserver_outage_degrades_and_recovers() {
    if !require_docker("a_homeserver_outage_degrades_and_recovers").await {
        return;
    }
    let fake = FakeModel::start().unwrap();
    let mut world = World::start().await;
    let host = world.host(&fake).await;
    let dm = world.room(&host, &world.alice, true).await;
    world.alice.say(&dm, "before the outage").await.unwrap();
    world.reply_containing(&dm, "before the outage").await;

    world.synapse.kill().unwrap();
    let health =
        support::wait_channel_health(&host, "matrix", "degraded", Duration::from_secs(60)).await;
    let error = health["last_error"].as_str().unwrap();
    assert!(error.contains("sync failed"), "{error}");
    world.synapse.restart().await.unwrap();
    support::wait_channel_health(&host, "matrix", "connected", TURN).await;
    world.alice.say(&dm, "after the outage").await.unwrap();
    world.reply_containing(&dm, "after the outage").await;
    for words in ["before the outage", "after the outage"] {
        assert_eq!(world.count_containing(&dm, words).await, 1, "{words}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_token_is_replaced_by_a_new_login() {
    if !require_docker("a_revoked_token_is_replaced_by_a_new_login").await {
        return;
    }
    let fake = FakeModel::start().unwrap();
    let world = World::start().await;
    let host = world.host(&fake).await;
    let dm = world.room(&host, &world.alice, true).await;
    world.alice.say(&dm, "before the logout").await.unwrap();
    world.reply_containing(&dm, "before the logout").await;

    // The bot's session is logged out on the homeserver (as a person would from another
    // client): its next sync is refused, and it logs in again with the password.
    let login: Value = serde_json::from_str(&channel_state(&host, "login").unwrap()).unwrap();
    let old_token = login["access_token"].as_str().unwrap().to_owned();
    let answer = world
        .synapse
        .request(
            http::Method::POST,
            "/_matrix/client/v3/logout",
            Some(&old_token),
            Some(("application/json", bytes::Bytes::from_static(b"{}"))),
        )
        .await
        .unwrap();
    assert!(answer.status.is_success(), "{}", answer.text());
    support::eventually("a new login", TURN, || {
        let login: Value = serde_json::from_str(&channel_state(&host, "login")?).ok()?;
        (login["access_token"].as_str()? != old_token).then_some(())
    })
    .await;
    world.alice.say(&dm, "after the logout").await.unwrap();
    world.reply_containing(&dm, "after the logout").await;
    support::wait_channel_health(&host, "matrix", "connected", TURN).await;
    for words in ["before the logout", "after the logout"] {
        assert_eq!(world.count_containing(&dm, words).await, 1, "{words}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_password_fails_only_the_matrix_adapter() {
    if !require_docker("a_refused_password_fails_only_the_matrix_adapter").await {
        return;
    }
    let fake = FakeModel::start().unwrap();
    let world = World::start().await;
    let wrong = "wrong-secret_pw";
    let host = HostProcess::start(world.options(&fake, wrong))
        .await
        .unwrap();
    let health =
        support::wait_channel_health(&host, "matrix", "failing", Duration::from_secs(60)).await;
    let error = health["last_error"].as_str().unwrap();
    assert!(error.contains("CRABPOT_MATRIX_PASSWORD"), "{error}");
    assert!(
        !error.contains(wrong),
        "the password is never shown: {error}"
    );
    assert!(!host.log().contains(wrong), "nor logged");
    let output = host.chat("still there?", TURN).await.unwrap();
    assert!(output.success(), "{output:?}\n{}", host.log_tail(60));
    assert!(output.stdout.contains("echo:"), "{}", output.stdout);

    // A refused access token names its variable too.
    let token = "syt_not-a-real_token";
    let host = HostProcess::start(
        world
            .options(&fake, BOT_PASSWORD)
            .env("CRABPOT_MATRIX_ACCESS_TOKEN", token),
    )
    .await
    .unwrap();
    let health =
        support::wait_channel_health(&host, "matrix", "failing", Duration::from_secs(60)).await;
    let error = health["last_error"].as_str().unwrap();
    assert!(error.contains("CRABPOT_MATRIX_ACCESS_TOKEN"), "{error}");
    assert!(!error.contains(token), "the token is never shown: {error}");
    assert!(!host.log().contains(token), "nor logged");
}
