//! Unit tests of the Slack adapter's pure parts: request signatures (Slack's documented
//! example), event mapping, Block Kit buttons, Web API answers, emoji names, the file
//! host check and form decoding.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::api::{ApiError, answer_of};
use super::blocks::{MAX_VALUE_CHARS, Press, chosen_blocks, message_blocks};
use super::events::{Envelope, Ignored, envelope, map_event, mentions};
use super::signature::{SignatureError, sign, verify};
use crate::edge::{Button, ChannelError};
use serde_json::json;
use std::time::Duration;

/// The example of Slack's "Verifying requests from Slack".
const DOC_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const DOC_TIMESTAMP: &str = "1531420618";
const DOC_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
const DOC_SIGNATURE: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

#[test]
fn signatures_match_slacks_documented_example() {
    assert_eq!(
        sign(DOC_SECRET.as_bytes(), DOC_TIMESTAMP, DOC_BODY.as_bytes()),
        DOC_SIGNATURE
    );
    let now = 1_531_420_618 + 10;
    let check = |secret: &str, timestamp: Option<&str>, signature: Option<&str>, body: &str| {
        verify(
            secret.as_bytes(),
            timestamp,
            signature,
            body.as_bytes(),
            now,
        )
    };
    assert_eq!(
        check(
            DOC_SECRET,
            Some(DOC_TIMESTAMP),
            Some(DOC_SIGNATURE),
            DOC_BODY
        ),
        Ok(())
    );
    assert_eq!(
        check("other", Some(DOC_TIMESTAMP), Some(DOC_SIGNATURE), DOC_BODY),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        check(
            DOC_SECRET,
            Some(DOC_TIMESTAMP),
            Some(DOC_SIGNATURE),
            &format!("{DOC_BODY}x")
        ),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        check(DOC_SECRET, None, Some(DOC_SIGNATURE), DOC_BODY),
        Err(SignatureError::Missing)
    );
    assert_eq!(
        check(DOC_SECRET, Some("soon"), Some(DOC_SIGNATURE), DOC_BODY),
        Err(SignatureError::BadTimestamp)
    );
    assert_eq!(
        check(DOC_SECRET, Some(DOC_TIMESTAMP), Some("v1=abc"), DOC_BODY),
        Err(SignatureError::BadFormat)
    );
    assert_eq!(
        check(
            DOC_SECRET,
            Some(DOC_TIMESTAMP),
            Some(&DOC_SIGNATURE.to_uppercase().replacen("V0=", "v0=", 1)),
            DOC_BODY
        ),
        Ok(()),
        "hex digits in either case"
    );
}

#[test]
fn stale_and_future_timestamps_are_refused() {
    let body = b"{}";
    let signature = sign(b"s", "1000", body);
    let at = |now| verify(b"s", Some("1000"), Some(&signature), body, now);
    assert_eq!(at(1000 + 300), Ok(()));
    assert_eq!(at(1000 - 300), Ok(()));
    assert_eq!(at(1000 + 301), Err(SignatureError::Stale(301)));
    assert_eq!(at(1000 - 301), Err(SignatureError::Stale(301)));
}

#[test]
fn events_map_to_messages_or_say_why_not() {
    let bot = "UBOT";
    let dm = json!({"type": "message", "channel": "D1", "user": "U1", "text": "hi",
        "ts": "1.1", "channel_type": "im"});
    let message = map_event(&dm, bot).unwrap();
    assert!(!message.is_group);
    assert!(!message.is_mention);
    assert_eq!(
        (
            message.channel.as_str(),
            message.user.as_str(),
            message.ts.as_str()
        ),
        ("D1", "U1", "1.1")
    );
    assert_eq!(message.thread_ts, None);

    let chatter = json!({"type": "message", "channel": "C1", "user": "U1", "text": "hey all",
        "ts": "1.2", "channel_type": "channel"});
    let message = map_event(&chatter, bot).unwrap();
    assert!(message.is_group && !message.is_mention);

    let named = json!({"type": "message", "channel": "C1", "user": "U1",
        "text": "<@UBOT> help", "ts": "1.3", "channel_type": "channel", "thread_ts": "1.0"});
    let message = map_event(&named, bot).unwrap();
    assert!(message.is_mention);
    assert_eq!(message.thread_ts.as_deref(), Some("1.0"));

    let mention = json!({"type": "app_mention", "channel": "C1", "user": "U1",
        "text": "<@UBOT> help", "ts": "1.3"});
    let as_mention = map_event(&mention, bot).unwrap();
    assert!(as_mention.is_mention && as_mention.is_group);
    assert_eq!(as_mention.ts, message.ts, "the same message, stored once");

    let parent = json!({"type": "message", "channel": "C1", "user": "U1", "text": "x",
        "ts": "2.0", "thread_ts": "2.0"});
    assert_eq!(map_event(&parent, bot).unwrap().thread_ts, None);

    let with_file = json!({"type": "message", "subtype": "file_share", "channel": "D1",
    "user": "U1", "text": "", "ts": "1.4", "channel_type": "im",
    "files": [
        {"id": "F1", "name": "a.txt", "size": 3, "url_private_download": "https://files.slack.com/a"},
        {"id": "F2", "mode": "tombstone"},
        {"id": "F3", "name": "no-url.txt"},
    ]});
    let files = map_event(&with_file, bot).unwrap().files;
    assert_eq!(files.len(), 1);
    assert_eq!(
        (files[0].id.as_str(), files[0].name.as_str(), files[0].size),
        ("F1", "a.txt", Some(3))
    );

    for (event, why) in [
        (
            json!({"type": "reaction_added", "user": "U1"}),
            Ignored::NotAMessage,
        ),
        (
            json!({"type": "message", "subtype": "message_changed", "channel": "C1", "ts": "1"}),
            Ignored::Subtype,
        ),
        (
            json!({"type": "message", "subtype": "bot_message", "channel": "C1", "ts": "1"}),
            Ignored::Subtype,
        ),
        (
            json!({"type": "message", "channel": "C1", "user": "U1", "bot_id": "B1", "ts": "1"}),
            Ignored::OwnMessage,
        ),
        (
            json!({"type": "message", "channel": "C1", "user": "UBOT", "ts": "1"}),
            Ignored::OwnMessage,
        ),
        (
            json!({"type": "message", "channel": "C1", "ts": "1"}),
            Ignored::Incomplete,
        ),
        (json!("not an object"), Ignored::NotAMessage),
    ] {
        assert_eq!(map_event(&event, bot), Err(why), "{event}");
    }
}

#[test]
fn mentions_name_the_bot_exactly() {
    assert!(mentions("<@UBOT> hi", "UBOT"));
    assert!(mentions("hi <@UBOT|crab>", "UBOT"));
    assert!(!mentions("hi <@UBOTX>", "UBOT"));
    assert!(!mentions("hi @UBOT", "UBOT"));
    assert!(!mentions("<@", "UBOT"));
    assert!(!mentions("<@UBOT>", ""));
}

#[test]
fn envelopes_are_read_defensively() {
    assert_eq!(
        envelope(&json!({"type": "url_verification", "challenge": "c1"})),
        Envelope::UrlVerification {
            challenge: "c1".into()
        }
    );
    assert_eq!(
        envelope(
            &json!({"type": "event_callback", "event_id": "Ev1", "event": {"type": "message"}})
        ),
        Envelope::Callback {
            event_id: "Ev1".into(),
            event: json!({"type": "message"})
        }
    );
    assert_eq!(
        envelope(&json!({"type": "event_callback", "event": {}})),
        Envelope::Other
    );
    assert_eq!(
        envelope(&json!({"type": "event_callback", "event_id": "Ev1", "event": 3})),
        Envelope::Other
    );
    assert_eq!(envelope(&json!([])), Envelope::Other);
}

#[test]
fn buttons_carry_their_meaning_within_slacks_caps() {
    let buttons = vec![
        Button {
            label: "red".into(),
            answer: "1".into(),
        },
        Button {
            label: "green".into(),
            answer: "2".into(),
        },
    ];
    let blocks = message_blocks("Which colour?", &buttons, Some("q-7")).unwrap();
    assert_eq!(blocks[0]["type"], "section");
    assert_eq!(blocks[0]["text"]["text"], "Which colour?");
    let elements = blocks[1]["elements"].as_array().unwrap();
    assert_eq!(elements.len(), 2);
    assert_eq!(elements[1]["text"]["text"], "green");
    assert_eq!(
        Press::parse(elements[1]["value"].as_str().unwrap()),
        Some(Press::Answer {
            question_id: "q-7".into(),
            answer: "2".into()
        })
    );
    let shortcut = message_blocks(
        "Approve?",
        &[Button {
            label: "Approve".into(),
            answer: "approve ap-1".into(),
        }],
        None,
    )
    .unwrap();
    assert_eq!(
        Press::parse(shortcut[1]["elements"][0]["value"].as_str().unwrap()),
        Some(Press::Say {
            text: "approve ap-1".into()
        })
    );
    assert_eq!(message_blocks("no buttons", &[], None), None);
    let huge = Button {
        label: "x".into(),
        answer: "y".repeat(MAX_VALUE_CHARS),
    };
    assert_eq!(
        message_blocks("too big", &[huge], None),
        None,
        "a value past 2000 characters is not sent"
    );
    assert_eq!(Press::parse("not json"), None);
    assert_eq!(Press::parse(r#"{"q": "a"}"#), None);
    let chosen = chosen_blocks("Which colour?", "green", "U1");
    assert!(chosen.to_string().contains("green"));
    assert!(!chosen.to_string().contains("actions"));
}

#[test]
fn web_api_answers_map_to_channel_errors() {
    assert!(answer_of("m", json!({"ok": true, "ts": "1"}), None).is_ok());
    let limited = answer_of("m", json!({"ok": false, "error": "ratelimited"}), None);
    assert_eq!(
        ChannelError::from(limited.unwrap_err()),
        ChannelError::RateLimited {
            retry_after: Duration::from_secs(1)
        }
    );
    let refused = answer_of(
        "chat.postMessage",
        json!({"ok": false, "error": "channel_not_found"}),
        None,
    )
    .unwrap_err();
    assert_eq!(refused.code(), Some("channel_not_found"));
    assert!(!refused.is_auth());
    assert!(matches!(
        ChannelError::from(refused),
        ChannelError::Rejected(message) if message.contains("channel_not_found")
    ));
    let auth = answer_of(
        "auth.test",
        json!({"ok": false, "error": "invalid_auth"}),
        None,
    );
    assert!(auth.unwrap_err().is_auth());
    let garbage = answer_of("m", json!({"what": 1}), None).unwrap_err();
    assert_eq!(garbage.code(), Some("unknown_error"));
    let unavailable = ApiError::Unavailable {
        method: "m".into(),
        reason: "HTTP 502".into(),
    };
    assert!(ChannelError::from(unavailable).is_retryable());
}

#[test]
fn emoji_become_slack_names() {
    for (emoji, name) in [
        ("👍", Some("thumbsup")),
        ("❤️", Some("heart")),
        (":tada:", Some("tada")),
        ("white_check_mark", Some("white_check_mark")),
        ("🫠", None),
        ("", None),
        ("Not A Name", None),
    ] {
        assert_eq!(super::emoji::slack_name(emoji).as_deref(), name, "{emoji}");
    }
}

#[test]
fn the_token_goes_only_to_slacks_file_hosts() {
    let client = reqwest::Client::new();
    let api = super::api::SlackApi::new(
        client,
        "http://127.0.0.1:4000/api",
        crate::config::ApiKey::new("xoxb-1"),
    );
    let dir = tempfile::tempdir().unwrap();
    let files = super::files::SlackFiles::new(
        api,
        crate::channels::staging::Staging::new(dir.path(), "slack"),
    );
    assert!(files.may_send_token("http://127.0.0.1:4000/files-pri/T-F/a.txt"));
    assert!(files.may_send_token("https://files.slack.com/files-pri/T-F/a.txt"));
    assert!(!files.may_send_token("http://files.slack.com/files-pri/T-F/a.txt"));
    assert!(!files.may_send_token("http://127.0.0.1:4001/a.txt"));
    assert!(!files.may_send_token("https://evil.example/files.slack.com"));
    assert!(!files.may_send_token("not a url"));
}

#[test]
fn form_bodies_decode() {
    let pairs = super::hooks::form_pairs(b"payload=%7B%22a%22%3A+1%7D&x=%zz&&y");
    assert_eq!(
        pairs,
        vec![
            ("payload".to_owned(), r#"{"a": 1}"#.to_owned()),
            ("x".to_owned(), "%zz".to_owned()),
            ("y".to_owned(), String::new()),
        ]
    );
}

/// A Slack Web API on loopback that answers `conversations.history` with `history` and
/// counts `chat.postMessage` calls.
async fn serve_api(
    history: serde_json::Value,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let posts = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&posts);
    let app = axum::Router::new()
        .route(
            "/api/conversations.history",
            axum::routing::post(move || {
                let history = history.clone();
                async move { axum::Json(history) }
            }),
        )
        .route(
            "/api/chat.postMessage",
            axum::routing::post(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                async { axum::Json(json!({"ok": true, "ts": "9.9"})) }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, posts)
}

fn replies_for(url: &str, dir: &std::path::Path) -> super::replies::Replies {
    let api = super::api::SlackApi::new(
        reqwest::Client::new(),
        url,
        crate::config::ApiKey::new("xoxb-1"),
    );
    let files = super::files::SlackFiles::new(
        api.clone(),
        crate::channels::staging::Staging::new(dir, "slack"),
    );
    super::replies::Replies::new(api, files)
}

#[tokio::test]
async fn a_resend_finds_the_message_slack_already_has() {
    let history = json!({"ok": true, "messages": [
        {"type": "message", "ts": "1.5", "text": "other",
         "metadata": {"event_type": "crabpot_message", "event_payload": {"id": "m-other", "piece": 0}}},
        {"type": "message", "ts": "1.7", "text": "hello",
         "metadata": {"event_type": "crabpot_message", "event_payload": {"id": "m-1", "piece": 0}}},
    ]});
    let (url, posts) = serve_api(history).await;
    let dir = tempfile::tempdir().unwrap();
    let replies = replies_for(&url, dir.path());
    let to = crate::edge::ChatAddress {
        channel_type: "slack".into(),
        platform_id: "D1".into(),
        thread_id: None,
    };
    let mut message = crate::edge::OutgoingMessage {
        id: protocol::MessageId::new("m-1".to_owned()),
        text: "hello".into(),
        resend: true,
        ..crate::edge::OutgoingMessage::default()
    };
    assert_eq!(replies.send(&to, &message).await.unwrap(), "1.7");
    assert_eq!(posts.load(std::sync::atomic::Ordering::SeqCst), 0);
    // Another piece, or a row Slack does not have, is posted.
    message.piece = 1;
    assert_eq!(replies.send(&to, &message).await.unwrap(), "9.9");
    message.piece = 0;
    message.id = protocol::MessageId::new("m-2".to_owned());
    assert_eq!(replies.send(&to, &message).await.unwrap(), "9.9");
    assert_eq!(posts.load(std::sync::atomic::Ordering::SeqCst), 2);
}
