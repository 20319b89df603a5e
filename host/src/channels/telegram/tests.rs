//! Unit tests of the Telegram adapter's pure parts: updates as events, mentions, callback
//! data, answers as errors, the webhook's secret check.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::api::{ApiError, outcome};
use super::buttons::{self, CallbackData, MAX_CALLBACK_DATA_BYTES, Press};
use super::mapping::{self, BotIdentity};
use super::webhook::secret_matches;
use super::wire::{Message, Update};
use crate::edge::{Button, ChannelError};
use serde_json::{Value, json};
use std::time::Duration;

fn bot() -> BotIdentity {
    BotIdentity {
        id: 999,
        username: Some("crab_bot".into()),
    }
}

fn message(value: Value) -> Message {
    serde_json::from_value(value).unwrap()
}

fn private(text: &str) -> Value {
    json!({
        "message_id": 7,
        "from": {"id": 42, "is_bot": false, "first_name": "Ann", "last_name": "Lee", "username": "ann"},
        "chat": {"id": 42, "type": "private", "first_name": "Ann"},
        "date": 1,
        "text": text,
    })
}

fn group(text: &str, entities: Value) -> Value {
    json!({
        "message_id": 8,
        "from": {"id": 43, "is_bot": false, "first_name": "", "username": "bob"},
        "chat": {"id": -1001, "type": "supergroup", "title": "Crab room"},
        "date": 1,
        "text": text,
        "entities": entities,
    })
}

#[test]
fn a_private_message_is_a_direct_event_from_its_sender() {
    let mapped = mapping::message_event(&message(private("hello")), &bot()).unwrap();
    let event = mapped.event;
    assert_eq!(event.channel_type, "telegram");
    assert_eq!(event.platform_id, "42");
    assert_eq!(event.platform_message_id, "42:7");
    assert_eq!(event.sender.id, "telegram:42");
    assert_eq!(event.sender.name.as_deref(), Some("Ann Lee"));
    assert_eq!(event.chat_name.as_deref(), Some("Ann Lee"));
    assert!(!event.is_group);
    assert!(!event.is_mention);
    assert_eq!(event.thread_id, None);
    assert_eq!(event.text, "hello");
    assert!(mapped.files.is_empty());
}

#[test]
fn a_group_message_names_its_group_and_the_username_when_no_name() {
    let event = mapping::message_event(&message(group("hi all", json!([]))), &bot())
        .unwrap()
        .event;
    assert!(event.is_group);
    assert!(!event.is_mention);
    assert_eq!(event.platform_id, "-1001");
    assert_eq!(event.sender.name.as_deref(), Some("bob"));
    assert_eq!(event.chat_name.as_deref(), Some("Crab room"));
}

#[test]
fn mentions_are_the_bots_username_its_id_or_a_reply_to_it() {
    let check = |value: Value, expected: bool| {
        let message = message(value);
        assert_eq!(
            mapping::is_mention(&message, &bot()),
            expected,
            "{:?}",
            message.text
        );
    };
    // "@crab_bot" after an emoji: offsets count UTF-16 units (🦀 is two).
    check(
        group(
            "🦀 @crab_bot hi",
            json!([{"type": "mention", "offset": 3, "length": 9}]),
        ),
        true,
    );
    check(
        group(
            "@Crab_Bot hi",
            json!([{"type": "mention", "offset": 0, "length": 9}]),
        ),
        true,
    );
    check(
        group(
            "@other_bot hi",
            json!([{"type": "mention", "offset": 0, "length": 10}]),
        ),
        false,
    );
    check(group("@crab_bot without an entity", json!([])), false);
    check(
        group(
            "crab hi",
            json!([{"type": "text_mention", "offset": 0, "length": 4, "user": {"id": 999, "is_bot": true, "first_name": "Crab"}}]),
        ),
        true,
    );
    check(
        group("x", json!([{"type": "mention", "offset": 5, "length": 90}])),
        false,
    );
    let mut reply = group("yes", json!([]));
    reply["reply_to_message"] = json!({
        "message_id": 3,
        "from": {"id": 999, "is_bot": true, "first_name": "Crab"},
        "chat": {"id": -1001, "type": "supergroup"},
        "date": 1,
        "text": "a question?",
    });
    check(reply.clone(), true);
    reply["reply_to_message"]["from"]["id"] = json!(5);
    check(reply, false);
}

#[test]
fn forum_topics_are_threads_and_other_replies_are_not() {
    let mut topic = group("hi", json!([]));
    topic["message_thread_id"] = json!(77);
    topic["is_topic_message"] = json!(true);
    assert_eq!(
        mapping::thread_id(&message(topic.clone())).as_deref(),
        Some("77")
    );
    topic["is_topic_message"] = json!(false);
    assert_eq!(mapping::thread_id(&message(topic)), None);
}

#[test]
fn files_are_the_document_or_the_largest_photo() {
    let mut with_document = private("");
    with_document.as_object_mut().unwrap().remove("text");
    with_document["caption"] = json!("see this");
    with_document["document"] =
        json!({"file_id": "D1", "file_unique_id": "u1", "file_name": "notes.txt", "file_size": 12});
    let mapped = mapping::message_event(&message(with_document), &bot()).unwrap();
    assert_eq!(mapped.event.text, "see this");
    assert_eq!(
        mapped.files,
        vec![mapping::WantedFile {
            file_id: "D1".into(),
            name: "notes.txt".into(),
            size: Some(12)
        }]
    );
    let mut with_photo = private("");
    with_photo.as_object_mut().unwrap().remove("text");
    with_photo["photo"] = json!([
        {"file_id": "small", "file_unique_id": "s", "width": 90, "height": 90},
        {"file_id": "big", "file_unique_id": "b", "width": 1280, "height": 960, "file_size": 5000},
    ]);
    let mapped = mapping::message_event(&message(with_photo), &bot()).unwrap();
    assert_eq!(mapped.files.len(), 1);
    assert_eq!(mapped.files[0].file_id, "big");
    assert_eq!(mapped.files[0].name, "photo-b.jpg");
}

#[test]
fn messages_without_a_person_or_content_are_not_taken() {
    let mut from_bot = private("hi");
    from_bot["from"]["is_bot"] = json!(true);
    assert!(mapping::message_event(&message(from_bot), &bot()).is_none());
    let mut no_sender = private("hi");
    no_sender.as_object_mut().unwrap().remove("from");
    assert!(mapping::message_event(&message(no_sender), &bot()).is_none());
    assert!(mapping::message_event(&message(private("  ")), &bot()).is_none());
}

#[test]
fn updates_with_unknown_fields_and_kinds_are_read() {
    let update: Update = serde_json::from_value(json!({
        "update_id": 5,
        "edited_message": {"message_id": 1},
        "something_new": {"x": 1},
    }))
    .unwrap();
    assert_eq!(update.update_id, 5);
    assert!(update.message.is_none() && update.callback_query.is_none());
}

#[test]
fn platform_message_ids_carry_the_chat() {
    assert_eq!(mapping::platform_message_id(-100, 5), "-100:5");
    assert_eq!(mapping::message_id_of("-100:5"), Some(5));
    assert_eq!(mapping::message_id_of("12"), Some(12));
    assert_eq!(mapping::message_id_of("x:y"), None);
}

#[test]
fn callback_data_fits_64_bytes_or_uses_a_stored_key() {
    let button = |answer: &str| Button {
        label: "One".into(),
        answer: answer.into(),
    };
    let question = Press::of(&button("1"), Some("q-0123456789abcdef"));
    let data = question.inline_data().unwrap();
    assert_eq!(data, "q:1|q-0123456789abcdef");
    assert_eq!(buttons::parse(&data), Some(CallbackData::Inline(question)));
    let approve = Press::of(&button("approve ap-1234"), None);
    let data = approve.inline_data().unwrap();
    assert_eq!(buttons::parse(&data), Some(CallbackData::Inline(approve)));
    let long = Press::of(&button(&"x".repeat(80)), None);
    assert_eq!(long.inline_data(), None);
    let piped = Press::of(&button("a|b"), Some("q-1"));
    assert_eq!(piped.inline_data(), None);
    let key = buttons::new_key();
    let data = buttons::stored_data(&key);
    assert!(data.len() <= MAX_CALLBACK_DATA_BYTES);
    assert_eq!(buttons::parse(&data), Some(CallbackData::Stored(key)));
    for hostile in [
        "",
        "q:",
        "q:1",
        "q:|q-1",
        "t:",
        "k:zz",
        "k:../../x",
        "other",
        &"t:x".repeat(30),
    ] {
        assert_eq!(buttons::parse(hostile), None, "{hostile:?}");
    }
}

#[test]
fn answers_become_results_or_classified_errors() {
    let check = |status: u16, body: &str, expected: Result<Value, ApiError>| {
        assert_eq!(
            outcome("sendMessage", status, body.as_bytes()),
            expected,
            "{body}"
        );
    };
    check(
        200,
        r#"{"ok":true,"result":{"message_id":1}}"#,
        Ok(json!({"message_id": 1})),
    );
    check(200, r#"{"ok":true}"#, Ok(json!(true)));
    check(
        429,
        r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 3","parameters":{"retry_after":3}}"#,
        Err(ChannelError::RateLimited {
            retry_after: Duration::from_secs(3),
        }
        .into()),
    );
    check(
        429,
        r#"{"ok":false,"error_code":429}"#,
        Err(ChannelError::RateLimited {
            retry_after: Duration::from_secs(1),
        }
        .into()),
    );
    check(
        502,
        "<html>bad gateway</html>",
        Err(ChannelError::Unavailable("telegram sendMessage: HTTP 502".into()).into()),
    );
    check(
        401,
        r#"{"ok":false,"error_code":401,"description":"Unauthorized"}"#,
        Err(ApiError::Unauthorized("Unauthorized".into())),
    );
    check(
        400,
        r#"{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}"#,
        Err(
            ChannelError::Rejected("telegram sendMessage: Bad Request: chat not found".into())
                .into(),
        ),
    );
    check(
        200,
        "not json",
        Err(ChannelError::Unavailable(
            "telegram sendMessage: the answer is not a Bot API envelope".into(),
        )
        .into()),
    );
    let long = format!(
        r#"{{"ok":false,"error_code":400,"description":"{}"}}"#,
        "x".repeat(5000)
    );
    match outcome("sendMessage", 400, long.as_bytes()) {
        Err(ApiError::Channel(ChannelError::Rejected(why))) => assert!(why.len() < 400, "{why}"),
        other => panic!("{other:?}"),
    }
    let refused = ChannelError::from(ApiError::Unauthorized("Unauthorized".into())).to_string();
    assert!(refused.contains("CRABPOT_TELEGRAM_BOT_TOKEN"), "{refused}");
}

#[test]
fn the_webhook_secret_must_match_exactly() {
    assert!(secret_matches(b"s3cret", b"s3cret"));
    assert!(!secret_matches(b"s3cret", b"s3cre"));
    assert!(!secret_matches(b"s3cret", b"s3creT"));
    assert!(!secret_matches(b"s3cret", b""));
}

#[test]
fn capabilities_follow_telegrams_limits() {
    let capabilities = super::capabilities();
    assert_eq!(capabilities.max_text_chars, 4096);
    assert_eq!(capabilities.markup, crate::edge::Markup::TelegramHtml);
    assert!(capabilities.edits && capabilities.buttons && capabilities.files);
    assert!(!capabilities.live_drafts);
    assert_eq!(capabilities.typing_renew, Some(Duration::from_secs(4)));
}
