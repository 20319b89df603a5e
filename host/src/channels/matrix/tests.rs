//! Unit tests of the Matrix adapter's pure parts: answers classified, events mapped,
//! mentions, threads, media URIs, keycaps, transaction ids, message contents.

use super::api::{ApiError, outcome};
use super::login::is_configured_user;
use super::mapping::{self, BotIdentity, RoomView};
use super::outbound::{content_type, text_content};
use super::wire::{RoomEvent, SyncAnswer};
use crate::edge::{ChannelError, OutgoingMessage};
use protocol::MessageId;
use serde_json::{Value, json};
use std::time::Duration;

fn bot() -> BotIdentity {
    BotIdentity {
        user_id: "@crabpot:crabpot.test".into(),
        display_name: Some("Crab Bot".into()),
    }
}

fn room(is_group: bool) -> RoomView {
    RoomView {
        room_id: "!room:crabpot.test".into(),
        is_group,
        name: Some("Pot room".into()),
        sender_name: Some("Alice".into()),
    }
}

fn event(value: Value) -> RoomEvent {
    RoomEvent::parse(&value).unwrap_or_else(|| panic!("not an event: {value}"))
}

fn message(content: Value) -> RoomEvent {
    event(json!({
        "type": "m.room.message",
        "event_id": "$ev1",
        "sender": "@alice:crabpot.test",
        "content": content,
    }))
}

#[test]
fn answers_are_classified() {
    let check = |status: u16, body: Value, wanted: Result<(), ApiError>| {
        let got = outcome("send", status, body.to_string().as_bytes()).map(|_| ());
        assert_eq!(got, wanted, "{status} {body}");
    };
    check(200, json!({"event_id": "$x"}), Ok(()));
    check(
        429,
        json!({"errcode": "M_LIMIT_EXCEEDED", "error": "Too many", "retry_after_ms": 2500}),
        Err(ChannelError::RateLimited {
            retry_after: Duration::from_millis(2500),
        }
        .into()),
    );
    check(
        400,
        json!({"errcode": "M_LIMIT_EXCEEDED"}),
        Err(ChannelError::RateLimited {
            retry_after: Duration::from_secs(1),
        }
        .into()),
    );
    check(
        502,
        json!({}),
        Err(ChannelError::Unavailable("matrix send: HTTP 502".into()).into()),
    );
    check(
        401,
        json!({"errcode": "M_UNKNOWN_TOKEN", "error": "Invalid access token passed."}),
        Err(ApiError::Unauthorized(
            "M_UNKNOWN_TOKEN: Invalid access token passed.".into(),
        )),
    );
    check(
        403,
        json!({"errcode": "M_FORBIDDEN", "error": "not\u{7}in room"}),
        Err(ChannelError::Rejected("matrix send: M_FORBIDDEN: notin room".into()).into()),
    );
    assert!(matches!(
        outcome("sync", 200, b"not json"),
        Err(ApiError::Channel(ChannelError::Unavailable(_)))
    ));
    let long = "x".repeat(5000);
    let Err(ApiError::Channel(ChannelError::Rejected(why))) = outcome(
        "send",
        400,
        json!({"errcode": "M_BAD_JSON", "error": long})
            .to_string()
            .as_bytes(),
    ) else {
        panic!("a refusal");
    };
    assert!(why.len() < 400, "{why}");
}

#[test]
fn a_dm_message_is_an_inbound_event() {
    let mapped = mapping::message_event(
        &message(json!({"msgtype": "m.text", "body": "hello crab"})),
        &room(false),
        &bot(),
    )
    .unwrap();
    let event = mapped.event;
    assert_eq!(event.channel_type, "matrix");
    assert_eq!(event.platform_id, "!room:crabpot.test");
    assert_eq!(event.platform_message_id, "$ev1");
    assert_eq!(event.sender.id, "matrix:@alice:crabpot.test");
    assert_eq!(event.sender.name.as_deref(), Some("Alice"));
    assert_eq!(event.text, "hello crab");
    assert!(!event.is_group && !event.is_mention);
    assert_eq!(event.chat_name.as_deref(), Some("Alice"));
    assert_eq!(event.thread_id, None);
    assert!(mapped.files.is_empty());
}

#[test]
fn what_is_not_taken() {
    let check = |content: Value| {
        assert_eq!(
            mapping::message_event(&message(content.clone()), &room(true), &bot()),
            None,
            "{content}"
        );
    };
    check(json!({"msgtype": "m.notice", "body": "from another bot"}));
    check(json!({"msgtype": "m.text", "body": "   "}));
    check(json!({"msgtype": "m.text"}));
    check(json!({"msgtype": "m.text", "body": "* fixed",
        "m.relates_to": {"rel_type": "m.replace", "event_id": "$old"}}));
    check(json!({"msgtype": "m.file", "body": "x", "url": "https://evil.example/x"}));
    let own = event(json!({
        "type": "m.room.message", "event_id": "$me", "sender": "@crabpot:crabpot.test",
        "content": {"msgtype": "m.text", "body": "my own words"},
    }));
    assert_eq!(mapping::message_event(&own, &room(false), &bot()), None);
    assert_eq!(RoomEvent::parse(&json!({"type": "m.room.message"})), None);
    let stripped = RoomEvent::parse(&json!({"type": "m.room.member", "sender": "@a:x",
        "state_key": "@crabpot:crabpot.test", "content": {"membership": "invite", "is_direct": true}}));
    assert_eq!(stripped.map(|event| event.event_id), Some(String::new()));
}

#[test]
fn threads_mentions_and_reply_fallbacks() {
    let threaded = message(json!({
        "msgtype": "m.text", "body": "in the thread",
        "m.relates_to": {"rel_type": "m.thread", "event_id": "$root", "is_falling_back": true,
            "m.in_reply_to": {"event_id": "$root"}},
    }));
    let mapped = mapping::message_event(&threaded, &room(true), &bot()).unwrap();
    assert_eq!(mapped.event.thread_id.as_deref(), Some("$root"));
    assert_eq!(mapped.event.chat_name.as_deref(), Some("Pot room"));
    assert!(!mapped.event.is_mention);

    let mentions = |content: Value| {
        mapping::message_event(&message(content), &room(true), &bot())
            .unwrap()
            .event
            .is_mention
    };
    assert!(mentions(json!({"msgtype": "m.text", "body": "hey",
        "m.mentions": {"user_ids": ["@crabpot:crabpot.test"]}})));
    assert!(!mentions(json!({"msgtype": "m.text", "body": "hey",
        "m.mentions": {"user_ids": ["@bob:crabpot.test"]}})));
    assert!(mentions(
        json!({"msgtype": "m.text", "body": "ask @crabpot:crabpot.test"})
    ));
    assert!(mentions(
        json!({"msgtype": "m.text", "body": "crab bot, are you there?"})
    ));
    assert!(!mentions(
        json!({"msgtype": "m.text", "body": "just chatting"})
    ));

    assert_eq!(mapping::reply_target(&threaded), None);
    let in_thread_reply = message(json!({
        "msgtype": "m.text", "body": "to you",
        "m.relates_to": {"rel_type": "m.thread", "event_id": "$root", "is_falling_back": false,
            "m.in_reply_to": {"event_id": "$bots"}},
    }));
    assert_eq!(mapping::reply_target(&in_thread_reply), Some("$bots"));
    let reply = message(json!({
        "msgtype": "m.text", "body": "> <@bob:crabpot.test> earlier words\n> more\n\nmy answer",
        "m.relates_to": {"m.in_reply_to": {"event_id": "$earlier"}},
    }));
    assert_eq!(mapping::reply_target(&reply), Some("$earlier"));
    let mapped = mapping::message_event(&reply, &room(false), &bot()).unwrap();
    assert_eq!(mapped.event.text, "my answer");
    // A client that leaves out the empty line after the quote loses no words.
    let tight = message(json!({
        "msgtype": "m.text", "body": "> <@bob:crabpot.test> earlier words\nmy answer\nand more",
        "m.relates_to": {"m.in_reply_to": {"event_id": "$earlier"}},
    }));
    assert_eq!(
        mapping::without_reply_fallback(&tight, tight.text("body").unwrap()),
        "my answer\nand more"
    );
}

#[test]
fn files_are_wanted_from_plain_mxc_uris() {
    let file = message(json!({
        "msgtype": "m.file", "body": "notes.txt", "url": "mxc://crabpot.test/AbC_12-x",
        "info": {"size": 13, "mimetype": "text/plain"},
    }));
    let mapped = mapping::message_event(&file, &room(false), &bot()).unwrap();
    assert_eq!(mapped.event.text, "");
    assert_eq!(
        mapped.files,
        vec![mapping::WantedFile {
            server: "crabpot.test".into(),
            media_id: "AbC_12-x".into(),
            name: "notes.txt".into(),
            size: Some(13),
        }]
    );
    let captioned = message(json!({
        "msgtype": "m.image", "body": "look at this", "filename": "pot.png",
        "url": "mxc://crabpot.test:8448/img1",
    }));
    let mapped = mapping::message_event(&captioned, &room(false), &bot()).unwrap();
    assert_eq!(mapped.event.text, "look at this");
    assert_eq!(mapped.files[0].name, "pot.png");
    assert_eq!(mapped.files[0].server, "crabpot.test:8448");

    for bad in [
        "mxc://crabpot.test/../x",
        "mxc://crabpot.test/a/b",
        "mxc:///x",
        "mxc://crabpot.test/",
        "mxc://host?x/y",
        "http://crabpot.test/x",
    ] {
        assert_eq!(mapping::parse_mxc(bad), None, "{bad}");
    }
}

#[test]
fn keycaps_and_numbered_options() {
    assert_eq!(mapping::keycap_number("1\u{fe0f}\u{20e3}"), Some(1));
    assert_eq!(mapping::keycap_number("2\u{20e3}"), Some(2));
    assert_eq!(mapping::keycap_number("\u{1f51f}"), Some(10));
    assert_eq!(mapping::keycap_number("👍"), None);
    let question = "**Colour**\nWhich colour?\n\n1. red\n2. green\n3. blue\n\n(answer with a number or your own words)";
    assert_eq!(mapping::numbered_options(question), 3);
    assert_eq!(mapping::numbered_options("no options here"), 0);
    assert_eq!(mapping::numbered_options("2. not first"), 0);

    let reaction = event(json!({
        "type": "m.reaction", "event_id": "$r1", "sender": "@alice:crabpot.test",
        "content": {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$q", "key": "2\u{fe0f}\u{20e3}"}},
    }));
    let taken = mapping::reaction(&reaction, &room(false), &bot()).unwrap();
    assert_eq!(taken.target_event_id, "$q");
    assert_eq!(mapping::keycap_number(&taken.key), Some(2));
    assert_eq!(taken.sender.id, "matrix:@alice:crabpot.test");
}

#[test]
fn direct_chats_and_users() {
    assert!(!mapping::is_group(true, 2));
    assert!(mapping::is_group(true, 3));
    assert!(mapping::is_group(false, 2));
    assert_eq!(mapping::localpart("@alice:crabpot.test"), "alice");
    assert_eq!(mapping::localpart("alice"), "alice");
    assert!(is_configured_user("@bot:x.org", "@bot:x.org"));
    assert!(is_configured_user("bot", "@bot:x.org"));
    assert!(!is_configured_user("@bot:y.org", "@bot:x.org"));
    assert!(!is_configured_user("other", "@bot:x.org"));
}

#[test]
fn transaction_ids_repeat_for_a_resend_only() {
    let message = OutgoingMessage {
        id: MessageId::new("0190-abc/def".to_owned()),
        piece: 1,
        ..OutgoingMessage::default()
    };
    let first = mapping::txn_id(&message, "text");
    assert_eq!(first, "cp-0190-abcdef-1-text");
    assert_eq!(mapping::txn_id(&message, "text"), first);
    assert_ne!(mapping::txn_id(&message, "file0"), first);
    let host = OutgoingMessage::default();
    assert_ne!(
        mapping::txn_id(&host, "text"),
        mapping::txn_id(&host, "text")
    );
    assert_eq!(mapping::digest("a"), mapping::digest("a"));
    assert_ne!(mapping::digest("a"), mapping::digest("b"));
}

#[test]
fn messages_carry_plain_and_safe_html() {
    let content = text_content(
        "**bold** <script>x</script> [link](javascript:alert(1))",
        "m.text",
    );
    let body = content["body"].as_str().unwrap();
    let html = content["formatted_body"].as_str().unwrap();
    assert!(body.contains("bold") && !body.contains("**"), "{body}");
    assert!(html.contains("<strong>bold</strong>"), "{html}");
    assert!(
        !html.contains("<script>") && !html.contains("javascript:"),
        "{html}"
    );
    assert_eq!(content["format"], json!("org.matrix.custom.html"));
    assert_eq!(content["m.mentions"], json!({}));
    assert_eq!(content_type("pot.PNG"), "image/png");
    assert_eq!(content_type("report.txt"), "text/plain");
    assert_eq!(content_type("blob"), "application/octet-stream");
}

#[test]
fn a_sync_answer_reads_with_missing_parts() {
    let answer: SyncAnswer = serde_json::from_value(json!({
        "next_batch": "s1_2",
        "rooms": {
            "join": {"!a:x": {"timeline": {"events": [{"type": "m.room.message"}], "limited": true, "prev_batch": "t1"}}},
            "invite": {"!b:x": {}},
        },
    }))
    .unwrap();
    assert_eq!(answer.next_batch, "s1_2");
    let joined = &answer.rooms.join["!a:x"];
    assert!(joined.timeline.limited);
    assert_eq!(RoomEvent::parse(&joined.timeline.events[0]), None);
    assert!(answer.rooms.invite["!b:x"].invite_state.events.is_empty());
    let empty: SyncAnswer = serde_json::from_value(json!({"next_batch": "s2"})).unwrap();
    assert!(empty.rooms.join.is_empty());
}
