//! Channels: the [`Channel`] trait every chat-platform adapter implements (DESIGN §8), the
//! addresses and messages that cross it, and [`Channels`], the registry delivery uses.
//!
//! Adapters push [`crate::router::InboundEvent`]s into the router (through a
//! [`ChannelContext`]) and take replies back through [`Channel::deliver`], which returns the
//! platform's message id. The first adapter is [`cli`], the local terminal. The host's own
//! messages to chats (approval requests) are [`HostMessage`]s, delivered the same way.

pub mod cli;

use crate::router::{
    AnswerError, Answered, InboundEvent, QuestionAnswer, RouteError, RouteOutcome, Router,
};
use crate::runtime::BoxFuture;
use protocol::{MessageId, OutboundContent, Seq};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Where a message goes on a platform.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ChatAddress {
    pub channel_type: String,
    pub platform_id: String,
    pub thread_id: Option<String>,
}

/// One message for a platform, already validated and authorised.
#[derive(Clone, Debug)]
pub struct OutgoingMessage {
    /// The outbound row's id: the idempotency key for the platform call.
    pub id: MessageId,
    pub seq: Seq,
    pub content: OutboundContent,
    /// Files to attach, as paths on the host: copies the host made of the agent's outbox
    /// files (under `data/files/`), which the adapter may read and keep.
    pub files: Vec<PathBuf>,
    /// For edits, reactions and progress updates: the platform id of the message they
    /// target (only given to a progress update when the platform can edit).
    pub target_platform_message_id: Option<String>,
}

/// A message from the host itself (an approval request, the answer to a decision) to a chat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostMessage {
    pub to: ChatAddress,
    pub text: String,
}

/// What a platform can do; the bridge degrades around what it cannot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    pub threads: bool,
    pub edits: bool,
    pub reactions: bool,
    pub buttons: bool,
    pub files: bool,
    pub max_text_chars: usize,
}

/// Why a platform call failed.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The platform is unreachable or rate-limited. Retryable.
    #[error("platform unavailable: {0}")]
    Unavailable(String),
    /// The platform refused this message. Not retryable.
    #[error("platform refused the message: {0}")]
    Rejected(String),
    /// Nobody is there to receive it now (no terminal of that chat is connected). Not an
    /// attempt: delivery keeps the row waiting and tries again once the adapter reports,
    /// through [`ChannelContext::recipient_arrived`], that a recipient for the chat is there.
    #[error("no recipient is connected: {0}")]
    NoRecipient(String),
}

impl ChannelError {
    pub fn is_retryable(&self) -> bool {
        match self {
            ChannelError::Unavailable(_) | ChannelError::NoRecipient(_) => true,
            ChannelError::Rejected(_) => false,
        }
    }
}

/// A chat-platform adapter.
pub trait Channel: Send + Sync {
    /// The `channel_type` of the chats this adapter serves (e.g. `cli`).
    fn channel_type(&self) -> &'static str;
    fn capabilities(&self) -> Capabilities;
    /// Sends one message; returns the platform's id for it.
    fn deliver<'a>(
        &'a self,
        to: &'a ChatAddress,
        message: &'a OutgoingMessage,
    ) -> BoxFuture<'a, Result<String, ChannelError>>;
    /// The agent has finished its turn on `message_id` (every reply to it was delivered).
    /// Platforms with a typing indicator clear it here.
    fn turn_complete<'a>(
        &'a self,
        to: &'a ChatAddress,
        message_id: &'a MessageId,
    ) -> BoxFuture<'a, ()>;
}

/// What an adapter gets at start: the way into the router, and the way to tell delivery
/// that someone can receive a chat's messages again.
#[derive(Clone)]
pub struct ChannelContext {
    router: Arc<Router>,
    arrivals: mpsc::UnboundedSender<ChatAddress>,
}

impl ChannelContext {
    pub fn new(router: Arc<Router>, arrivals: mpsc::UnboundedSender<ChatAddress>) -> Self {
        Self { router, arrivals }
    }

    /// A recipient for `address` is there now (a terminal of that chat connected): rows that
    /// waited with [`ChannelError::NoRecipient`] are delivered.
    pub fn recipient_arrived(&self, address: ChatAddress) {
        // Delivery holds the receiver for as long as the host serves; after shutdown nobody
        // is waiting for the news.
        let _ = self.arrivals.send(address);
    }

    /// Routes an event; when this returns `Ok`, the message is durable and the platform may
    /// be told so.
    pub async fn push(&self, event: InboundEvent) -> Result<RouteOutcome, RouteError> {
        self.router.route_event(event).await
    }

    /// Hands an answer to an agent's question to the asking session.
    pub async fn answer(&self, answer: QuestionAnswer) -> Result<Answered, AnswerError> {
        self.router.answer_question(answer).await
    }
}

/// The adapters by channel type.
#[derive(Clone, Default)]
pub struct Channels {
    by_type: HashMap<String, Arc<dyn Channel>>,
}

impl Channels {
    pub fn register(&mut self, channel: Arc<dyn Channel>) {
        self.by_type
            .insert(channel.channel_type().to_owned(), channel);
    }

    pub fn get(&self, channel_type: &str) -> Option<&Arc<dyn Channel>> {
        self.by_type.get(channel_type)
    }
}

/// Splits text into pieces of at most `max_chars` characters, preferring line breaks.
pub fn split_text(text: &str, max_chars: usize) -> Vec<String> {
    let max_chars = max_chars.max(1);
    if text.chars().count() <= max_chars {
        return vec![text.to_owned()];
    }
    let mut pieces = Vec::new();
    let mut current = String::new();
    let mut count = 0;
    for line in text.split_inclusive('\n') {
        for ch in line.chars() {
            if count == max_chars {
                pieces.push(std::mem::take(&mut current));
                count = 0;
            }
            current.push(ch);
            count += 1;
        }
        // Break at a line end when the next line would not fit.
        if count > max_chars / 2 {
            pieces.push(std::mem::take(&mut current));
            count = 0;
        }
    }
    if !current.is_empty() {
        pieces.push(current);
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_text_keeps_everything_within_the_cap() {
        for (text, max) in [
            ("short", 10),
            ("a\nb\nc", 2),
            (&"x".repeat(25) as &str, 10),
            ("héllo wörld\n", 3),
        ] {
            let pieces = split_text(text, max);
            assert_eq!(pieces.concat(), text);
            assert!(
                pieces.iter().all(|p| p.chars().count() <= max),
                "{pieces:?}"
            );
        }
    }
}
