//! The lines of `data/adapters.sock`, version [`PROTOCOL_VERSION`] (docs/adapter-protocol.md):
//! [`AdapterLine`] (adapter to host) and [`HostLine`] (host to adapter), one JSON object per
//! line, and the checks that turn what an adapter sends (hostile input: a buggy or
//! compromised adapter) into the edge's types: [`DeclaredCapabilities::effective`]
//! (`capabilities`) caps what it claims, [`InboundWire::into_event`] pins events to its own channel type, and
//! [`ResultLine::outcome`] maps an answer to a [`ChannelError`].
//!
//! Unknown fields are ignored, so a newer adapter can talk to an older host of the same
//! version; an unknown `type` is an error line.

pub use super::capabilities::DeclaredCapabilities;
use crate::edge::{
    Capabilities, ChannelError, ChatAddress, Draft, InboundEvent, OutgoingMessage, QuestionAnswer,
};
use protocol::Sender;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The protocol version this host speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// The longest platform id, thread id, platform message id or sender id an adapter may send
/// (the central DB's limit for chat ids).
pub const MAX_ID_CHARS: usize = 256;

/// The most attachments one inbound event may name, and the longest name.
const MAX_ATTACHMENTS: usize = 32;
const MAX_ATTACHMENT_CHARS: usize = 2048;

/// The longest retry-after an adapter may ask for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3_600);

/// A token as it travels: never printed by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// A line from an adapter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AdapterLine {
    /// The first line of a connection: who the adapter is and what its platform can do.
    Hello {
        version: u32,
        token: Secret,
        channel_type: String,
        #[serde(default)]
        capabilities: DeclaredCapabilities,
    },
    /// A message from the platform; answered by an `ack` with the same `id` once durable.
    Inbound { id: String, event: InboundWire },
    /// An answer to an agent's question; answered by an `ack`.
    Answer { id: String, answer: AnswerWire },
    /// The answer to a host request with this `id`.
    Result(ResultLine),
    /// How the platform is doing, as `crabpot status` shows it. Not answered.
    Health {
        state: AdapterHealth,
        #[serde(default)]
        error: Option<String>,
    },
}

/// What an adapter may say of its platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdapterHealth {
    Connected,
    Degraded,
    Failing,
}

/// An inbound event as an adapter sends it: [`InboundEvent`] with defaults, and without
/// the channel type (it is the adapter's own; when given it must be that).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundWire {
    #[serde(default)]
    pub channel_type: Option<String>,
    pub platform_id: String,
    #[serde(default)]
    pub thread_id: Option<String>,
    /// The platform's id of the message: a repeat is stored once, so an adapter may push an
    /// event again when it never got the ack.
    pub platform_message_id: String,
    pub sender: Sender,
    #[serde(default)]
    pub text: String,
    /// Shown to the agent as they are (URLs or names); the host copies no file.
    #[serde(default)]
    pub attachments: Vec<String>,
    #[serde(default)]
    pub is_mention: bool,
    #[serde(default)]
    pub is_group: bool,
    #[serde(default)]
    pub chat_name: Option<String>,
}

/// Why an adapter's event, answer or result was refused. Not retryable as sent.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A blank line: skipped without an answer.
    #[error("the line is empty")]
    Empty,
    #[error("the line is longer than the limit of {max} bytes")]
    TooLong { max: usize },
    #[error("not a valid adapter line: {0}")]
    Invalid(String),
    #[error("this adapter serves channel type {ours:?}, not {theirs:?}")]
    WrongChannel { ours: String, theirs: String },
    #[error("{field} must be 1-{MAX_ID_CHARS} characters without control characters")]
    BadId { field: &'static str },
    #[error(
        "at most {MAX_ATTACHMENTS} attachments of at most {MAX_ATTACHMENT_CHARS} characters each"
    )]
    BadAttachments,
}

/// Parses one line from an adapter (without its newline). The server calls exactly this.
pub fn parse_adapter_line(line: &[u8], max: usize) -> Result<AdapterLine, WireError> {
    if line.len() > max {
        return Err(WireError::TooLong { max });
    }
    if line.iter().all(u8::is_ascii_whitespace) {
        return Err(WireError::Empty);
    }
    serde_json::from_slice(line).map_err(|e| WireError::Invalid(e.to_string()))
}

fn check_id(field: &'static str, value: &str) -> Result<(), WireError> {
    if value.is_empty()
        || value.chars().count() > MAX_ID_CHARS
        || value.chars().any(char::is_control)
    {
        return Err(WireError::BadId { field });
    }
    Ok(())
}

/// The sender id as the host stores it: `<channel_type>:<id>`, so an adapter can only speak
/// for people of its own platform (never as `cli:owner`).
fn scoped_sender(channel_type: &str, sender: Sender) -> Result<Sender, WireError> {
    check_id("sender.id", &sender.id)?;
    let prefix = format!("{channel_type}:");
    let id = if sender.id.starts_with(&prefix) {
        sender.id
    } else {
        format!("{prefix}{}", sender.id)
    };
    Ok(Sender { id, ..sender })
}

impl InboundWire {
    /// The event for the router, for the adapter serving `channel_type`.
    pub fn into_event(self, channel_type: &str) -> Result<InboundEvent, WireError> {
        if let Some(theirs) = self.channel_type
            && theirs != channel_type
        {
            return Err(WireError::WrongChannel {
                ours: channel_type.to_owned(),
                theirs,
            });
        }
        check_id("platform_id", &self.platform_id)?;
        check_id("platform_message_id", &self.platform_message_id)?;
        if let Some(thread) = &self.thread_id {
            check_id("thread_id", thread)?;
        }
        if self.attachments.len() > MAX_ATTACHMENTS
            || self
                .attachments
                .iter()
                .any(|a| a.chars().count() > MAX_ATTACHMENT_CHARS)
        {
            return Err(WireError::BadAttachments);
        }
        Ok(InboundEvent {
            channel_type: channel_type.to_owned(),
            platform_id: self.platform_id,
            thread_id: self.thread_id,
            platform_message_id: self.platform_message_id,
            sender: scoped_sender(channel_type, self.sender)?,
            text: self.text,
            attachments: self.attachments,
            is_mention: self.is_mention,
            is_group: self.is_group,
            chat_name: self.chat_name,
            uploads: Vec::new(),
        })
    }
}

/// An answer to an agent's question, as an adapter sends it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerWire {
    pub platform_id: String,
    #[serde(default)]
    pub thread_id: Option<String>,
    /// The question answered (from the `deliver` that asked it); absent = the chat's newest
    /// open question.
    #[serde(default)]
    pub question_id: Option<String>,
    /// An option's number, an option's text, or a free answer.
    pub answer: String,
    pub sender: Sender,
    #[serde(default)]
    pub platform_message_id: Option<String>,
}

impl AnswerWire {
    /// The answer for the router; `fresh_id` names it when the adapter gave no message id.
    pub fn into_answer(
        self,
        channel_type: &str,
        fresh_id: impl FnOnce() -> String,
    ) -> Result<QuestionAnswer, WireError> {
        check_id("platform_id", &self.platform_id)?;
        if let Some(thread) = &self.thread_id {
            check_id("thread_id", thread)?;
        }
        let platform_message_id = match self.platform_message_id {
            Some(id) => {
                check_id("platform_message_id", &id)?;
                id
            }
            None => fresh_id(),
        };
        Ok(QuestionAnswer {
            channel_type: channel_type.to_owned(),
            platform_id: self.platform_id,
            thread_id: self.thread_id,
            question_id: self.question_id,
            answer: self.answer,
            sender: scoped_sender(channel_type, self.sender)?,
            platform_message_id,
        })
    }
}

/// An adapter's answer to a host request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultLine {
    pub id: String,
    pub ok: bool,
    /// On a `deliver`: the platform's id of the message, passed back in later `edit`,
    /// `react` and `delete` requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_message_id: Option<String>,
    /// On an `open_dm`: the direct chat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<ChatAddress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// On a failure: whether trying again may work (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    /// On a failure: the platform asked to wait this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// On a failure: the platform cannot do this at all.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unsupported: bool,
}

impl ResultLine {
    /// The failure of a call that `what` names ("edit a message"), or `Ok(self)`.
    pub fn outcome(self, what: &'static str) -> Result<ResultLine, ChannelError> {
        if self.ok {
            return Ok(self);
        }
        let error = self
            .error
            .clone()
            .unwrap_or_else(|| "the adapter gave no reason".to_owned());
        Err(if self.unsupported {
            ChannelError::Unsupported(what)
        } else if let Some(ms) = self.retry_after_ms {
            ChannelError::RateLimited {
                retry_after: Duration::from_millis(ms).min(MAX_RETRY_AFTER),
            }
        } else if self.retryable.unwrap_or(true) {
            ChannelError::Unavailable(error)
        } else {
            ChannelError::Rejected(error)
        })
    }
}

/// A line to an adapter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HostLine {
    /// The answer to a good `hello`: the capabilities the host will use (the declared ones,
    /// capped).
    Welcome {
        version: u32,
        adapter: String,
        capabilities: Capabilities,
    },
    /// Something the adapter sent was wrong (`id` when it was a request); after a hello that
    /// failed, or a line over the cap, the connection is closed.
    Error {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        message: String,
    },
    /// The answer to an `inbound` or `answer`.
    Ack(Ack),
    Deliver {
        id: String,
        to: ChatAddress,
        message: MessageWire,
    },
    Edit {
        id: String,
        to: ChatAddress,
        platform_message_id: String,
        message: MessageWire,
    },
    React {
        id: String,
        to: ChatAddress,
        platform_message_id: String,
        emoji: String,
    },
    Delete {
        id: String,
        to: ChatAddress,
        platform_message_id: String,
    },
    Typing {
        id: String,
        to: ChatAddress,
        on: bool,
    },
    Draft {
        id: String,
        to: ChatAddress,
        draft: DraftWire,
    },
    OpenDm {
        id: String,
        user_id: String,
    },
    TurnComplete {
        id: String,
        to: ChatAddress,
        message_id: String,
    },
}

/// The host's answer to an adapter's `inbound` or `answer`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub id: String,
    /// True once the message is durable (or was handled for good: dropped, a repeat): the
    /// platform may be told it arrived. False: see `retryable`.
    pub ok: bool,
    /// Rows that wake an agent.
    #[serde(default)]
    pub message_ids: Vec<String>,
    /// Rows stored as context only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub context_ids: Vec<String>,
    /// Approvals holding the message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<String>,
    /// Why the message reached no agent group, one reason per drop.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dropped: Vec<String>,
    /// The platform message id was stored before: nothing new was written.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub repeat: bool,
    /// The message was an approval decision typed in a DM: show this to the sender.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// On a failure: whether sending the same line again may work.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retryable: bool,
}

impl Ack {
    pub fn failed(id: String, error: impl std::fmt::Display, retryable: bool) -> Self {
        Self {
            id,
            ok: false,
            error: Some(error.to_string()),
            retryable,
            ..Self::default()
        }
    }
}

/// One message to send, as [`OutgoingMessage`] has it. `id` + `piece` is the idempotency
/// key: the same pair can come again (a retry after a lost result, or `resend` after a host
/// crash), and an adapter should send it to the platform once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageWire {
    pub id: String,
    pub seq: i64,
    pub piece: u32,
    pub text: String,
    /// Host paths of files to attach (under `data/files/`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buttons: Vec<ButtonWire>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces_draft: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resend: bool,
}

impl From<&OutgoingMessage> for MessageWire {
    fn from(message: &OutgoingMessage) -> Self {
        Self {
            id: message.id.to_string(),
            seq: message.seq.0,
            piece: message.piece,
            text: message.text.clone(),
            files: message
                .files
                .iter()
                .map(|path| path.display().to_string())
                .collect(),
            buttons: message
                .buttons
                .iter()
                .map(|button| ButtonWire {
                    label: button.label.clone(),
                    answer: button.answer.clone(),
                })
                .collect(),
            question_id: message.question_id.clone(),
            replaces_draft: message.replaces_draft.clone(),
            resend: message.resend,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ButtonWire {
    pub label: String,
    /// What pressing it answers: send it back as the `answer` of an `answer` line.
    pub answer: String,
}

/// The text so far of a reply being written ([`Draft`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DraftWire {
    pub key: String,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appended: Option<String>,
}

impl From<&Draft> for DraftWire {
    fn from(draft: &Draft) -> Self {
        Self {
            key: draft.key.clone(),
            text: draft.text.clone(),
            appended: draft.appended.clone(),
        }
    }
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
