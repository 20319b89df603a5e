//! What crosses the edge inbound: the events adapters push, and what became of them.

use crate::db::DbError;
use crate::session::SessionRef;
use protocol::{MessageId, Sender, Seq};
use serde::{Deserialize, Serialize};

/// The channel type of inbound webhooks (`crabpot webhooks create`): the router writes what
/// they bring as `webhook` rows, not `chat` rows.
pub const WEBHOOK_CHANNEL_TYPE: &str = "webhook";

/// A message as a channel adapter reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundEvent {
    pub channel_type: String,
    pub platform_id: String,
    pub thread_id: Option<String>,
    pub platform_message_id: String,
    pub sender: Sender,
    pub text: String,
    pub attachments: Vec<String>,
    pub is_mention: bool,
    pub is_group: bool,
    /// A human name for the chat, used when the chat is seen for the first time.
    pub chat_name: Option<String>,
    /// Files the person sent, staged on the host by the channel itself; the router copies
    /// them into the session's inbox and names them in `attachments`. Never read from or
    /// written to any wire (`serde(skip)`): no payload can name a host path.
    #[serde(skip)]
    pub uploads: Vec<Upload>,
}

/// A file a channel received and staged on the host for one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upload {
    /// Its name in the inbox: a plain file name (see [`Upload::is_valid_name`]).
    pub name: String,
    /// Where the channel staged it.
    pub path: std::path::PathBuf,
}

impl Upload {
    /// A name that is one path component: 1-200 characters, no `/`, no control character,
    /// not `.` or `..`, not hidden.
    pub fn is_valid_name(name: &str) -> bool {
        !name.is_empty()
            && name.chars().count() <= 200
            && !name.starts_with('.')
            && !name.contains('/')
            && !name.chars().any(char::is_control)
    }
}

/// One row the router wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutedMessage {
    pub session: SessionRef,
    pub message_id: MessageId,
    pub seq: Seq,
    /// Whether the row wakes the agent (false: stored as context for the next turn).
    pub trigger: bool,
}

/// What became of an event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteOutcome {
    /// Rows written; every one is durable.
    pub routed: Vec<RoutedMessage>,
    /// Approvals that hold the message until someone decides.
    pub held: Vec<String>,
    /// Why the message reached no agent group, one reason per drop.
    pub dropped: Vec<String>,
    /// The event was an approval decision typed in a DM; this is the answer sent back.
    pub decision: Option<String>,
}

/// Why routing failed. Retryable when the database was busy; the channel may ask the
/// platform to redeliver.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("storing the message failed: {0}")]
    Db(#[from] DbError),
    /// An upload could not be copied into the session's inbox. Not retryable as is.
    #[error("the file {name:?} could not be put in the session's inbox: {reason}")]
    Upload { name: String, reason: String },
}

impl RouteError {
    pub fn is_retryable(&self) -> bool {
        match self {
            RouteError::Db(e) => e.is_retryable(),
            RouteError::Upload { .. } => false,
        }
    }
}

/// An answer typed in a chat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuestionAnswer {
    pub channel_type: String,
    pub platform_id: String,
    pub thread_id: Option<String>,
    /// The question answered; `None` = the chat's newest open question.
    pub question_id: Option<String>,
    /// What the person typed: an option's number, an option's text, or a free answer.
    pub answer: String,
    pub sender: Sender,
    pub platform_message_id: String,
}

/// Where an answer went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answered {
    pub message_id: MessageId,
    pub question_id: String,
    /// The answer as the agent gets it (an option number resolved to its text).
    pub answer: String,
    /// False when the agent had stopped waiting: the row does not wake it.
    pub trigger: bool,
}

/// Why an answer was not taken.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    /// Not retryable.
    #[error("{0}")]
    NoQuestion(String),
    /// Not retryable.
    #[error("question {0} was answered already")]
    AlreadyAnswered(String),
    /// An empty answer. Not retryable.
    #[error("the answer is empty")]
    Empty,
    /// Retryable when the database was busy.
    #[error("storing the answer failed: {0}")]
    Db(#[from] DbError),
}
