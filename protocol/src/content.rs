//! The JSON `content` of message rows: [`InboundContent`] and [`OutboundContent`].
//!
//! Outbound content is written by the container and is hostile input for the host:
//! [`OutboundContent::parse`] checks shape and sizes and names what is wrong.
//!
//! Inbound content carries, besides the text, what the runner needs for questions and
//! commands: [`InboundContent::question_id`] and [`InboundContent::answer`] on the answer to
//! an [`OutboundContent::Question`], and [`InboundContent::sender_role`] (`owner` / `admin`),
//! which authorises the `/clear` chat command ([`CLEAR_COMMAND`]). Outbound progress lists
//! ([`OutboundContent::Progress`]) name the row they update with `target_seq`.

use crate::rows::OutboundKind;
use crate::seq::Seq;
use serde::{Deserialize, Serialize};

/// Largest `content` JSON the host accepts from an outbound row, in bytes.
pub const MAX_OUTBOUND_CONTENT_BYTES: usize = 256 * 1024;
/// Largest text of one outbound message, in characters.
pub const MAX_TEXT_CHARS: usize = 64 * 1024;
/// Most files one outbound message may carry.
pub const MAX_FILES: usize = 16;
/// Most options one question may offer.
pub const MAX_QUESTION_OPTIONS: usize = 16;
/// Most items one progress list may hold.
pub const MAX_PROGRESS_ITEMS: usize = 100;

/// The statuses of a [`ProgressItem`], in the order a plan usually moves through them.
/// At most one item of a list is `in_progress`.
pub const PROGRESS_STATUSES: &[&str] = &["pending", "in_progress", "done", "failed", "cancelled"];

/// [`InboundContent::sender_role`] of the person who owns the install.
pub const ROLE_OWNER: &str = "owner";
/// [`InboundContent::sender_role`] of an admin (global or of this agent group).
pub const ROLE_ADMIN: &str = "admin";
/// The chat command that resets the agent's conversation: a `chat` row whose trimmed text is
/// exactly this, from a sender whose [`InboundContent::sender_role`] is owner or admin.
pub const CLEAR_COMMAND: &str = "/clear";

/// Why a row's content was refused. Never retryable: the row is bad as written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ContentError {
    #[error("content is {size} bytes, over the cap of {cap}")]
    TooLarge { size: usize, cap: usize },
    #[error("content is not valid JSON: {0}")]
    NotJson(String),
    #[error("content does not match the {shape} shape: {reason}")]
    BadShape { shape: &'static str, reason: String },
    #[error("text is {chars} characters, over the cap of {cap}")]
    TextTooLong { chars: usize, cap: usize },
    #[error("{count} files, over the cap of {cap}")]
    TooManyFiles { count: usize, cap: usize },
    #[error("file name {0:?} is not a plain file name inside the outbox")]
    BadFileName(String),
}

/// Who sent an inbound message, as the platform identifies them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sender {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The content of an inbound row (`messages_in.content`).
///
/// Kinds of rows and what they carry:
/// - `chat`: a person's message: `text`, `sender`, `attachments`, and `sender_role` when the
///   sender has a role for this agent group (the runner honours [`CLEAR_COMMAND`] only then).
/// - `task`: a scheduled task firing: `text` is the task's prompt; the row's `series_id`
///   column is the task id (see `crate::actions`).
/// - `system`: a note from the host (a refused action, a failed delivery, an agent created):
///   `text` only.
/// - The answer to a question, `chat` or `system`: `question_id` names the
///   [`OutboundContent::Question`] it answers, `answer` is the chosen option (or the typed
///   text) and `text` what the person wrote. An answer that arrives after the question's
///   `expires_at` is stored with `trigger = 0`, so it does not wake an idle container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct InboundContent {
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<Sender>,
    /// File names under `in/inbox/<message_id>/`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<String>,
    /// The `question_id` of the [`OutboundContent::Question`] this row answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question_id: Option<String>,
    /// The answer to the question named by `question_id`: the chosen option's text, or what
    /// the person typed. When absent, `text` is the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// The sender's role for this agent group as the host resolved it: [`ROLE_OWNER`],
    /// [`ROLE_ADMIN`], or absent for everyone else. Never taken from the message text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_role: Option<String>,
    /// The platform's id of this message, written by the host so it can react to the message
    /// later (`add_reaction` on an inbound seq). Not for the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_message_id: Option<String>,
}

impl InboundContent {
    /// True when the host marked the sender as an owner or admin of this agent group.
    pub fn sender_is_owner_or_admin(&self) -> bool {
        matches!(self.sender_role.as_deref(), Some(ROLE_OWNER | ROLE_ADMIN))
    }

    /// True when the text is the [`CLEAR_COMMAND`] (whoever sent it).
    pub fn is_clear_command(&self) -> bool {
        self.text.trim() == CLEAR_COMMAND
    }

    /// The answer this row gives to a question, when it answers one.
    pub fn answer_text(&self) -> Option<&str> {
        self.question_id.as_ref()?;
        Some(self.answer.as_deref().unwrap_or(&self.text))
    }
}

/// A plain message: text and optional files from `out/outbox/<message_id>/`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageContent {
    pub text: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
}

/// One entry of a progress list; `status` is one of [`PROGRESS_STATUSES`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressItem {
    pub text: String,
    pub status: String,
}

/// The operations an outbound chat row may carry besides a plain message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "operation", rename_all = "lowercase", deny_unknown_fields)]
enum Operation {
    Edit {
        target_seq: Seq,
        text: String,
    },
    Reaction {
        target_seq: Seq,
        emoji: String,
    },
    Question {
        question_id: String,
        title: String,
        question: String,
        options: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<i64>,
    },
    Progress {
        items: Vec<ProgressItem>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target_seq: Option<Seq>,
    },
}

/// The content of an outbound row (`messages_out.content`), by kind and shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutboundContent {
    Message(MessageContent),
    Edit {
        target_seq: Seq,
        text: String,
    },
    Reaction {
        target_seq: Seq,
        emoji: String,
    },
    /// A question for the person in the origin chat. The answer comes back as an inbound row
    /// whose content has this `question_id` (see [`InboundContent`]). An empty `options`
    /// list asks for free text.
    Question {
        question_id: String,
        title: String,
        question: String,
        options: Vec<String>,
        /// When the runner stops waiting (unix ms); a later answer is stored with
        /// `trigger = 0`. `None`: no deadline known.
        expires_at: Option<i64>,
    },
    /// The agent's plan. With `target_seq: None` this starts a new progress message; with
    /// `Some(seq)` it replaces the list of the progress row with that seq (the first of the
    /// series), edited in place where the channel can edit and sent anew otherwise.
    Progress {
        items: Vec<ProgressItem>,
        target_seq: Option<Seq>,
    },
    /// A `system` row: an action for the host, with its arguments.
    System {
        action: String,
        args: serde_json::Map<String, serde_json::Value>,
    },
}

/// An object key of serde_json's own private tokens (`$serde_json::private::RawValue`, ...),
/// anywhere in `value`. Such a key is never honest content, and it does not survive a write
/// and a read: an object whose first key is the raw-value token reads back as raw JSON.
fn reserved_key(value: &serde_json::Value) -> Option<&str> {
    match value {
        serde_json::Value::Object(map) => map.iter().find_map(|(key, value)| {
            key.starts_with("$serde_json::")
                .then_some(key.as_str())
                .or_else(|| reserved_key(value))
        }),
        serde_json::Value::Array(items) => items.iter().find_map(reserved_key),
        _ => None,
    }
}

impl OutboundContent {
    /// Parses and checks the content of an outbound row of the given kind.
    pub fn parse(kind: OutboundKind, json: &str) -> Result<Self, ContentError> {
        if json.len() > MAX_OUTBOUND_CONTENT_BYTES {
            return Err(ContentError::TooLarge {
                size: json.len(),
                cap: MAX_OUTBOUND_CONTENT_BYTES,
            });
        }
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|e| ContentError::NotJson(e.to_string()))?;
        if let Some(key) = reserved_key(&value) {
            return Err(bad(
                "content",
                &format!("the key {key:?} is reserved (serde_json's private tokens)"),
            ));
        }
        let content = match kind {
            OutboundKind::System => {
                let serde_json::Value::Object(mut map) = value else {
                    return Err(bad("system", "not a JSON object"));
                };
                let action = match map.remove("action") {
                    Some(serde_json::Value::String(action)) if !action.is_empty() => action,
                    _ => return Err(bad("system", "missing string field `action`")),
                };
                OutboundContent::System { action, args: map }
            }
            OutboundKind::Chat if value.get("operation").is_some() => {
                let operation: Operation =
                    serde_json::from_value(value).map_err(|e| bad("operation", &e.to_string()))?;
                match operation {
                    Operation::Edit { target_seq, text } => {
                        OutboundContent::Edit { target_seq, text }
                    }
                    Operation::Reaction { target_seq, emoji } => {
                        OutboundContent::Reaction { target_seq, emoji }
                    }
                    Operation::Question {
                        question_id,
                        title,
                        question,
                        options,
                        expires_at,
                    } => OutboundContent::Question {
                        question_id,
                        title,
                        question,
                        options,
                        expires_at,
                    },
                    Operation::Progress { items, target_seq } => {
                        OutboundContent::Progress { items, target_seq }
                    }
                }
            }
            OutboundKind::Chat => OutboundContent::Message(
                serde_json::from_value(value).map_err(|e| bad("message", &e.to_string()))?,
            ),
        };
        content.check_limits()?;
        Ok(content)
    }

    /// The JSON written to `messages_out.content`.
    pub fn to_json(&self) -> String {
        let value = match self {
            OutboundContent::Message(message) => serde_json::to_value(message),
            OutboundContent::Edit { target_seq, text } => serde_json::to_value(Operation::Edit {
                target_seq: *target_seq,
                text: text.clone(),
            }),
            OutboundContent::Reaction { target_seq, emoji } => {
                serde_json::to_value(Operation::Reaction {
                    target_seq: *target_seq,
                    emoji: emoji.clone(),
                })
            }
            OutboundContent::Question {
                question_id,
                title,
                question,
                options,
                expires_at,
            } => serde_json::to_value(Operation::Question {
                question_id: question_id.clone(),
                title: title.clone(),
                question: question.clone(),
                options: options.clone(),
                expires_at: *expires_at,
            }),
            OutboundContent::Progress { items, target_seq } => {
                serde_json::to_value(Operation::Progress {
                    items: items.clone(),
                    target_seq: *target_seq,
                })
            }
            OutboundContent::System { action, args } => {
                let mut map = args.clone();
                map.insert("action".into(), serde_json::Value::String(action.clone()));
                Ok(serde_json::Value::Object(map))
            }
        };
        // Serialising these plain structs into a Value cannot fail (string keys only).
        value.map(|v| v.to_string()).unwrap_or_else(|_| "{}".into())
    }

    /// The text a person would read, where the content has one.
    pub fn text(&self) -> Option<&str> {
        match self {
            OutboundContent::Message(m) => Some(&m.text),
            OutboundContent::Edit { text, .. } => Some(text),
            OutboundContent::Question { question, .. } => Some(question),
            OutboundContent::Reaction { .. }
            | OutboundContent::Progress { .. }
            | OutboundContent::System { .. } => None,
        }
    }

    fn check_limits(&self) -> Result<(), ContentError> {
        if let Some(text) = self.text() {
            let chars = text.chars().count();
            if chars > MAX_TEXT_CHARS {
                return Err(ContentError::TextTooLong {
                    chars,
                    cap: MAX_TEXT_CHARS,
                });
            }
        }
        if let OutboundContent::Question { options, .. } = self
            && options.len() > MAX_QUESTION_OPTIONS
        {
            return Err(bad(
                "question",
                &format!(
                    "{} options, over the cap of {MAX_QUESTION_OPTIONS}",
                    options.len()
                ),
            ));
        }
        if let OutboundContent::Progress { items, .. } = self
            && items.len() > MAX_PROGRESS_ITEMS
        {
            return Err(bad(
                "progress",
                &format!(
                    "{} items, over the cap of {MAX_PROGRESS_ITEMS}",
                    items.len()
                ),
            ));
        }
        if let OutboundContent::Message(message) = self {
            if message.files.len() > MAX_FILES {
                return Err(ContentError::TooManyFiles {
                    count: message.files.len(),
                    cap: MAX_FILES,
                });
            }
            if let Some(name) = message
                .files
                .iter()
                .find(|f| !crate::ids::is_safe_folder_name(f))
            {
                return Err(ContentError::BadFileName(name.clone()));
            }
        }
        Ok(())
    }
}

fn bad(shape: &'static str, reason: &str) -> ContentError {
    ContentError::BadShape {
        shape,
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_json_private_keys_are_refused_at_any_depth() {
        // Found by the `outbound_content` fuzz target: written back, an object whose first
        // key is the raw-value token reads as raw JSON, so the row would not read back.
        for (kind, json) in [
            (
                OutboundKind::System,
                r#"{"action":"pause_task","$serde_json::private::RawValue":"daily-report"}"#,
            ),
            (
                OutboundKind::System,
                r#"{"action":"x","a":[{"$serde_json::private::Number":"1"}]}"#,
            ),
            (
                OutboundKind::Chat,
                r#"{"text":"hi","$serde_json::private::RawValue":"1"}"#,
            ),
        ] {
            let refused = OutboundContent::parse(kind, json);
            assert!(
                matches!(&refused, Err(e) if e.to_string().contains("reserved")),
                "{json}: {refused:?}"
            );
        }
    }
    use proptest::prelude::*;

    fn check(kind: OutboundKind, json: &str, expected: Result<OutboundContent, &str>) {
        let got = OutboundContent::parse(kind, json);
        match (got, expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{json}"),
            (Err(got), Err(fragment)) => {
                assert!(
                    got.to_string().contains(fragment),
                    "{json}: {got} lacks {fragment:?}"
                )
            }
            (got, want) => panic!("{json}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn parse_table() {
        use OutboundKind::{Chat, System};
        let message = |text: &str| {
            OutboundContent::Message(MessageContent {
                text: text.into(),
                files: vec![],
            })
        };
        check(Chat, r#"{"text":"hi"}"#, Ok(message("hi")));
        check(Chat, r#"{"text":"hi","extra":1}"#, Err("unknown field"));
        check(Chat, r#"{}"#, Err("missing field `text`"));
        check(Chat, "not json", Err("not valid JSON"));
        check(
            Chat,
            r#"{"operation":"edit","target_seq":3,"text":"x"}"#,
            Ok(OutboundContent::Edit {
                target_seq: Seq(3),
                text: "x".into(),
            }),
        );
        check(Chat, r#"{"operation":"explode"}"#, Err("unknown variant"));
        check(
            Chat,
            r#"{"text":"a","files":["../etc/passwd"]}"#,
            Err("not a plain file name"),
        );
        check(
            System,
            r#"{"action":"noop","x":1}"#,
            Ok(OutboundContent::System {
                action: "noop".into(),
                args: serde_json::from_str(r#"{"x":1}"#).unwrap_or_default(),
            }),
        );
        check(System, r#"{"x":1}"#, Err("missing string field `action`"));
        check(
            Chat,
            r#"{"operation":"progress","items":[{"text":"a","status":"done"}],"target_seq":5}"#,
            Ok(OutboundContent::Progress {
                items: vec![ProgressItem {
                    text: "a".into(),
                    status: "done".into(),
                }],
                target_seq: Some(Seq(5)),
            }),
        );
        check(
            Chat,
            r#"{"operation":"progress","items":[]}"#,
            Ok(OutboundContent::Progress {
                items: vec![],
                target_seq: None,
            }),
        );
        check(
            Chat,
            r#"{"operation":"question","question_id":"q-1","title":"t","question":"q?","options":["a"]}"#,
            Ok(OutboundContent::Question {
                question_id: "q-1".into(),
                title: "t".into(),
                question: "q?".into(),
                options: vec!["a".into()],
                expires_at: None,
            }),
        );
        check(
            Chat,
            &format!(
                r#"{{"operation":"question","question_id":"q","title":"t","question":"q","options":{:?}}}"#,
                vec!["o"; MAX_QUESTION_OPTIONS + 1]
            ),
            Err("options, over the cap"),
        );
        check(
            Chat,
            &format!(r#"{{"text":"{}"}}"#, "a".repeat(MAX_OUTBOUND_CONTENT_BYTES)),
            Err("over the cap"),
        );
        check(
            Chat,
            &format!(r#"{{"text":"{}"}}"#, "a".repeat(MAX_TEXT_CHARS + 1)),
            Err("characters, over the cap"),
        );
    }

    #[test]
    fn inbound_answers_and_roles() {
        let answer: InboundContent =
            serde_json::from_str(r#"{"text":"the blue one","question_id":"q-1","answer":"Blue"}"#)
                .unwrap_or_default();
        assert_eq!(answer.answer_text(), Some("Blue"));
        let typed: InboundContent =
            serde_json::from_str(r#"{"text":"green","question_id":"q-1"}"#).unwrap_or_default();
        assert_eq!(typed.answer_text(), Some("green"));
        let plain: InboundContent =
            serde_json::from_str(r#"{"text":" /clear ","sender_role":"admin"}"#)
                .unwrap_or_default();
        assert_eq!(plain.answer_text(), None);
        assert!(plain.is_clear_command() && plain.sender_is_owner_or_admin());
        let member = InboundContent {
            text: "/clear".into(),
            sender_role: Some("member".into()),
            ..InboundContent::default()
        };
        assert!(!member.sender_is_owner_or_admin());
        assert_eq!(
            serde_json::to_string(&InboundContent::default()).unwrap_or_default(),
            r#"{"text":""}"#,
            "absent fields are not written"
        );
    }

    fn arb_text() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9 \"\\\\\n\u{e9}\u{1F600}]{0,40}"
    }

    fn arb_content() -> impl Strategy<Value = OutboundContent> {
        prop_oneof![
            (
                arb_text(),
                proptest::collection::vec("[a-z]{1,8}\\.txt", 0..3)
            )
                .prop_map(|(text, files)| OutboundContent::Message(MessageContent { text, files })),
            (0i64..1000, arb_text()).prop_map(|(s, text)| OutboundContent::Edit {
                target_seq: Seq(s),
                text
            }),
            (0i64..1000, arb_text()).prop_map(|(s, emoji)| OutboundContent::Reaction {
                target_seq: Seq(s),
                emoji
            }),
            (
                arb_text(),
                arb_text(),
                proptest::collection::vec(arb_text(), 0..4),
                proptest::option::of(0i64..i64::MAX),
            )
                .prop_map(|(t, q, options, expires_at)| {
                    OutboundContent::Question {
                        question_id: "q1".into(),
                        title: t,
                        question: q,
                        options,
                        expires_at,
                    }
                }),
            (
                proptest::collection::vec((arb_text(), arb_text()), 0..4),
                proptest::option::of(1i64..1000),
            )
                .prop_map(|(items, target_seq)| OutboundContent::Progress {
                    items: items
                        .into_iter()
                        .map(|(text, status)| ProgressItem { text, status })
                        .collect(),
                    target_seq: target_seq.map(Seq),
                }),
        ]
    }

    proptest! {
        #[test]
        fn outbound_round_trip(content in arb_content()) {
            let json = content.to_json();
            prop_assert_eq!(OutboundContent::parse(OutboundKind::Chat, &json), Ok(content));
        }

        #[test]
        fn inbound_round_trip(
            text in arb_text(),
            id in "[a-z]{1,10}",
            attachments in proptest::collection::vec("[a-z]{1,8}", 0..3),
            question_id in proptest::option::of("q-[a-z0-9]{1,10}"),
            answer in proptest::option::of(arb_text()),
            sender_role in proptest::option::of(prop_oneof![Just(ROLE_OWNER.to_owned()), Just(ROLE_ADMIN.to_owned())]),
        ) {
            let content = InboundContent {
                text,
                sender: Some(Sender { id, name: None }),
                attachments,
                question_id,
                answer,
                sender_role,
                platform_message_id: None,
            };
            let json = serde_json::to_string(&content).unwrap_or_default();
            let back: InboundContent = serde_json::from_str(&json).unwrap_or_default();
            prop_assert_eq!(back, content);
        }

        /// Arbitrary bytes never panic the parser.
        #[test]
        fn parse_never_panics(json in ".{0,200}") {
            let _ = OutboundContent::parse(OutboundKind::Chat, &json);
            let _ = OutboundContent::parse(OutboundKind::System, &json);
        }
    }
}
