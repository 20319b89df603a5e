//! Live drafts of a reply: the JSON bodies the runner posts to [`LIVE_PATH`] on the session's
//! proxy socket while the model is still writing, so the person sees the reply grow.
//!
//! Drafts are fast and not durable: they go over the socket, never into `outbound.db`, and
//! the final reply is still the normal outbound row, which replaces the draft. One
//! [`LiveEvent`] per request:
//! - [`LiveEvent::TurnStarted`] when a turn begins (the host may show a typing indicator);
//! - [`LiveEvent::Draft`] appends `text` to the draft of the reply to `in_reply_to`; `offset`
//!   is how many characters (Unicode scalar values) the runner had already sent for it, so the
//!   host can tell a lost or repeated append from the next one;
//! - [`LiveEvent::DraftReset`]: the text streamed so far was not the reply (a tool call
//!   followed it); the draft is empty again and offsets restart at 0.
//!
//! The body comes from a possibly hostile container: the host reads it with [`parse`] only,
//! which caps its size ([`MAX_LIVE_BODY_BYTES`]), checks the id, and caps the appended text
//! ([`MAX_DRAFT_APPEND_CHARS`]) and the whole draft ([`MAX_DRAFT_CHARS`]). A draft carries no
//! routing: it can only ever show in the chat the session's final reply goes to.
//!
//! [`STOP_COMMAND`] is the chat command that cancels a running turn (the runner honours it).

use crate::content::MAX_TEXT_CHARS;
use crate::ids::{MessageId, is_safe_folder_name};
use serde::{Deserialize, Serialize};

/// The path of the live endpoint on the proxy socket (`POST`, JSON body).
pub const LIVE_PATH: &str = "/crabpot/v1/live";
/// Largest body of one live request, in bytes.
pub const MAX_LIVE_BODY_BYTES: usize = 64 * 1024;
/// Most characters one [`LiveEvent::Draft`] may append. Small enough that an append of any
/// characters, each escaped by JSON to at most six bytes, fits in [`MAX_LIVE_BODY_BYTES`].
pub const MAX_DRAFT_APPEND_CHARS: usize = 8 * 1024;
/// Longest draft, in characters: the longest text of one outbound message. A longer reply is
/// only shown once it is final (split over several messages).
pub const MAX_DRAFT_CHARS: usize = MAX_TEXT_CHARS;
/// The chat command that cancels the running turn: a `chat` row whose trimmed text is exactly
/// this, from the person who started the turn or an owner or admin.
pub const STOP_COMMAND: &str = "/stop";

/// One live request from the runner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case", deny_unknown_fields)]
pub enum LiveEvent {
    /// A turn began whose final reply will answer `in_reply_to`.
    TurnStarted { in_reply_to: MessageId },
    /// Appends `text` to the draft; `offset` is the number of characters sent before it.
    Draft {
        in_reply_to: MessageId,
        offset: u32,
        text: String,
    },
    /// The draft so far was not the reply: it is empty again.
    DraftReset { in_reply_to: MessageId },
}

impl LiveEvent {
    /// The inbound row whose reply this event is about.
    pub fn in_reply_to(&self) -> &MessageId {
        match self {
            LiveEvent::TurnStarted { in_reply_to }
            | LiveEvent::Draft { in_reply_to, .. }
            | LiveEvent::DraftReset { in_reply_to } => in_reply_to,
        }
    }

    /// The JSON body, as posted.
    pub fn to_body(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }
}

/// Why a live body was refused. Never retryable: the body is bad as sent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LiveError {
    #[error("the live body is {size} bytes, over the cap of {cap}")]
    TooLarge { size: usize, cap: usize },
    #[error("the live body is not a live event: {0}")]
    BadShape(String),
    #[error("in_reply_to is not a plain message id")]
    BadReplyId,
    #[error("the draft text is empty")]
    EmptyText,
    #[error("the draft text is {chars} characters, over the cap of {cap} per event")]
    TextTooLong { chars: usize, cap: usize },
    #[error("the draft would reach {chars} characters, over the cap of {cap}")]
    DraftTooLong { chars: usize, cap: usize },
}

impl LiveError {
    /// A short machine-readable name for the refusal (the host's error `type`).
    pub fn kind(&self) -> &'static str {
        match self {
            LiveError::TooLarge { .. } => "live_body_too_large",
            LiveError::BadShape(_) => "live_bad_shape",
            LiveError::BadReplyId => "live_bad_reply_id",
            LiveError::EmptyText => "live_empty_text",
            LiveError::TextTooLong { .. } => "live_text_too_long",
            LiveError::DraftTooLong { .. } => "live_draft_too_long",
        }
    }
}

/// Parses and checks one live body from the container. The one parser the host uses on this
/// hostile input.
pub fn parse(body: &[u8]) -> Result<LiveEvent, LiveError> {
    if body.len() > MAX_LIVE_BODY_BYTES {
        return Err(LiveError::TooLarge {
            size: body.len(),
            cap: MAX_LIVE_BODY_BYTES,
        });
    }
    let event: LiveEvent =
        serde_json::from_slice(body).map_err(|error| LiveError::BadShape(error.to_string()))?;
    if !is_safe_folder_name(event.in_reply_to().as_str()) {
        return Err(LiveError::BadReplyId);
    }
    if let LiveEvent::Draft { offset, text, .. } = &event {
        let chars = text.chars().count();
        if chars == 0 {
            return Err(LiveError::EmptyText);
        }
        if chars > MAX_DRAFT_APPEND_CHARS {
            return Err(LiveError::TextTooLong {
                chars,
                cap: MAX_DRAFT_APPEND_CHARS,
            });
        }
        // Both fit in u64, so the sum cannot overflow.
        let total = u64::from(*offset) + chars as u64;
        if total > MAX_DRAFT_CHARS as u64 {
            return Err(LiveError::DraftTooLong {
                chars: usize::try_from(total).unwrap_or(usize::MAX),
                cap: MAX_DRAFT_CHARS,
            });
        }
    }
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: &str, expected: Result<LiveEvent, &str>) {
        match (parse(body.as_bytes()), expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{body:.200}"),
            (Err(error), Err(kind)) => assert_eq!(error.kind(), kind, "{body:.200}: {error}"),
            (got, want) => panic!("{body:.200}: got {got:?}, want {want:?}"),
        }
    }

    fn draft(offset: u32, text: &str) -> LiveEvent {
        LiveEvent::Draft {
            in_reply_to: MessageId::new("m-1"),
            offset,
            text: text.into(),
        }
    }

    #[test]
    fn parse_table() {
        check(
            r#"{"event":"turn_started","in_reply_to":"m-1"}"#,
            Ok(LiveEvent::TurnStarted {
                in_reply_to: MessageId::new("m-1"),
            }),
        );
        check(
            r#"{"event":"draft","in_reply_to":"m-1","offset":0,"text":"Hel"}"#,
            Ok(draft(0, "Hel")),
        );
        check(
            r#"{"in_reply_to":"m-1","text":"lo é","offset":3,"event":"draft"}"#,
            Ok(draft(3, "lo é")),
        );
        check(
            r#"{"event":"draft_reset","in_reply_to":"m-1"}"#,
            Ok(LiveEvent::DraftReset {
                in_reply_to: MessageId::new("m-1"),
            }),
        );
        // Hostile or broken bodies.
        for body in [
            "",
            "null",
            "[]",
            "{}",
            "not json",
            r#"{"event":"draft"}"#,
            r#"{"event":"explode","in_reply_to":"m-1"}"#,
            r#"{"event":"TurnStarted","in_reply_to":"m-1"}"#,
            r#"{"event":"turn_started","in_reply_to":"m-1","destination":"family"}"#,
            r#"{"event":"turn_started","in_reply_to":7}"#,
            r#"{"event":"draft","in_reply_to":"m-1","offset":-1,"text":"x"}"#,
            r#"{"event":"draft","in_reply_to":"m-1","offset":4294967296,"text":"x"}"#,
            r#"{"event":"draft","in_reply_to":"m-1","offset":1.5,"text":"x"}"#,
            r#"{"event":"draft","in_reply_to":"m-1","offset":0,"text":null}"#,
            "{\"event\":\"draft\",\"in_reply_to\":\"m-1\",\"offset\":0,\"text\":\"\\ud800\"}",
        ] {
            check(body, Err("live_bad_shape"));
        }
        for id in ["", "..", "../x", "a/b", ".m", "m 1", "é", &"m".repeat(129)] {
            let body = serde_json::json!({"event": "draft_reset", "in_reply_to": id});
            check(&body.to_string(), Err("live_bad_reply_id"));
        }
        check(
            r#"{"event":"draft","in_reply_to":"m-1","offset":0,"text":""}"#,
            Err("live_empty_text"),
        );
        let at_cap = "é".repeat(MAX_DRAFT_APPEND_CHARS);
        let body = serde_json::json!({"event": "draft", "in_reply_to": "m-1", "offset": 0, "text": at_cap});
        check(&body.to_string(), Ok(draft(0, &at_cap)));
        let over = "a".repeat(MAX_DRAFT_APPEND_CHARS + 1);
        let body =
            serde_json::json!({"event": "draft", "in_reply_to": "m-1", "offset": 0, "text": over});
        check(&body.to_string(), Err("live_text_too_long"));
        let last = (MAX_DRAFT_CHARS - 2) as u32;
        let body = serde_json::json!({"event": "draft", "in_reply_to": "m-1", "offset": last, "text": "ab"});
        check(&body.to_string(), Ok(draft(last, "ab")));
        let body = serde_json::json!({"event": "draft", "in_reply_to": "m-1", "offset": last, "text": "abc"});
        check(&body.to_string(), Err("live_draft_too_long"));
        let body = serde_json::json!({"event": "draft", "in_reply_to": "m-1", "offset": u32::MAX, "text": "a"});
        check(&body.to_string(), Err("live_draft_too_long"));
        let huge = format!(
            r#"{{"event":"draft","in_reply_to":"m-1","offset":0,"text":"{}"}}"#,
            "a".repeat(MAX_LIVE_BODY_BYTES)
        );
        check(&huge, Err("live_body_too_large"));
    }

    /// Whatever the runner sends within the caps parses back to itself: a full-size append
    /// of the characters JSON escapes the longest still fits in the body cap.
    #[test]
    fn what_the_runner_sends_round_trips() {
        let worst = "\u{1}".repeat(MAX_DRAFT_APPEND_CHARS);
        let events = [
            LiveEvent::TurnStarted {
                in_reply_to: MessageId::generate(),
            },
            LiveEvent::Draft {
                in_reply_to: MessageId::generate(),
                offset: (MAX_DRAFT_CHARS - MAX_DRAFT_APPEND_CHARS) as u32,
                text: worst,
            },
            LiveEvent::Draft {
                in_reply_to: MessageId::generate(),
                offset: 0,
                text: "\"quoted\" \\ line\nnext 🦀".into(),
            },
            LiveEvent::DraftReset {
                in_reply_to: MessageId::generate(),
            },
        ];
        for event in events {
            let body = event.to_body().unwrap();
            assert!(body.len() <= MAX_LIVE_BODY_BYTES, "{} bytes", body.len());
            assert_eq!(parse(&body).unwrap(), event);
        }
        let body = LiveEvent::DraftReset {
            in_reply_to: MessageId::new("m-1"),
        }
        .to_body()
        .unwrap();
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"event":"draft_reset","in_reply_to":"m-1"}"#
        );
    }
}
