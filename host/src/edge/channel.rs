//! The [`Channel`] trait every platform adapter implements, how it fails ([`ChannelError`]),
//! how it is doing ([`Health`]), and what it gets at start ([`ChannelContext`]).

use super::inbound::{
    AnswerError, Answered, InboundEvent, QuestionAnswer, RouteError, RouteOutcome,
};
use super::outgoing::{Capabilities, ChatAddress, Draft, OutgoingMessage};
use protocol::MessageId;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a platform call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// The platform is unreachable or failed. Retryable.
    #[error("platform unavailable: {0}")]
    Unavailable(String),
    /// The platform asked to wait (HTTP 429 and its like). Retryable after `retry_after`.
    #[error("rate-limited by the platform for {}ms", retry_after.as_millis())]
    RateLimited { retry_after: Duration },
    /// The platform refused this message. Not retryable.
    #[error("platform refused the message: {0}")]
    Rejected(String),
    /// Nobody is there to receive it now (no terminal of that chat is connected, an
    /// out-of-process adapter is away). Not an attempt: delivery keeps the row waiting and
    /// tries again once the adapter reports, through [`ChannelContext::recipient_arrived`] or
    /// [`ChannelContext::channel_arrived`], that a recipient is there.
    #[error("no recipient is connected: {0}")]
    NoRecipient(String),
    /// The platform cannot do this at all; the bridge degrades instead of calling it.
    #[error("the platform cannot {0}")]
    Unsupported(&'static str),
}

impl ChannelError {
    pub fn is_retryable(&self) -> bool {
        match self {
            ChannelError::Unavailable(_)
            | ChannelError::RateLimited { .. }
            | ChannelError::NoRecipient(_) => true,
            ChannelError::Rejected(_) | ChannelError::Unsupported(_) => false,
        }
    }
}

/// How an adapter is doing, as `crabpot status` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    /// Not connected yet.
    Starting,
    Connected,
    /// Working, with trouble (retries, rate limits, a recipient away).
    Degraded,
    /// Not working; `last_error` says why.
    Failing,
    Stopped,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Health {
    pub state: HealthState,
    pub last_error: Option<String>,
}

impl Health {
    pub fn connected() -> Self {
        Self {
            state: HealthState::Connected,
            last_error: None,
        }
    }

    pub fn failing(error: impl Into<String>) -> Self {
        Self {
            state: HealthState::Failing,
            last_error: Some(error.into()),
        }
    }
}

fn unsupported<'a, T: Send + 'a>(what: &'static str) -> BoxFuture<'a, Result<T, ChannelError>> {
    Box::pin(async move { Err(ChannelError::Unsupported(what)) })
}

/// A chat-platform adapter. Only [`Channel::deliver`] is required; everything else has the
/// answer of a platform that cannot do it, and [`Channel::capabilities`] tells the bridge
/// which calls to make at all.
pub trait Channel: Send + Sync {
    /// The `channel_type` of the chats this adapter serves (e.g. `cli`, `telegram`).
    fn channel_type(&self) -> &str;
    fn capabilities(&self) -> Capabilities;

    /// Runs the adapter (connect, listen, poll) until `shutdown` is cancelled: the start/stop
    /// lifecycle. An `Err` is a start that failed for good (a bad token): the host logs it,
    /// shows it in the adapter's health, and runs on without this adapter.
    fn start(
        self: Arc<Self>,
        context: ChannelContext,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, Result<(), ChannelError>> {
        let _ = context;
        Box::pin(async move {
            shutdown.cancelled().await;
            Ok(())
        })
    }

    fn health(&self) -> Health {
        Health::connected()
    }

    /// Sends one message; returns the platform's id for it.
    fn deliver<'a>(
        &'a self,
        to: &'a ChatAddress,
        message: &'a OutgoingMessage,
    ) -> BoxFuture<'a, Result<String, ChannelError>>;

    /// Replaces the text (and buttons) of a message sent before.
    fn edit<'a>(
        &'a self,
        to: &'a ChatAddress,
        platform_message_id: &'a str,
        message: &'a OutgoingMessage,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        let _ = (to, platform_message_id, message);
        unsupported("edit a message")
    }

    fn react<'a>(
        &'a self,
        to: &'a ChatAddress,
        platform_message_id: &'a str,
        emoji: &'a str,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        let _ = (to, platform_message_id, emoji);
        unsupported("react to a message")
    }

    fn delete<'a>(
        &'a self,
        to: &'a ChatAddress,
        platform_message_id: &'a str,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        let _ = (to, platform_message_id);
        unsupported("delete a message")
    }

    /// Shows (or, with `false`, clears) the typing indicator in a chat. Where the platform's
    /// indicator times out, the bridge calls this again every `Capabilities::typing_renew`.
    fn set_typing<'a>(
        &'a self,
        to: &'a ChatAddress,
        on: bool,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        let _ = (to, on);
        Box::pin(async { Ok(()) })
    }

    /// Shows the text so far of a reply being written (`Capabilities::live_drafts`).
    fn draft<'a>(
        &'a self,
        to: &'a ChatAddress,
        draft: &'a Draft,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        let _ = (to, draft);
        unsupported("show drafts")
    }

    /// The direct chat with a platform user (`<channel>:<id>`), opened if needed.
    fn open_dm<'a>(&'a self, user_id: &'a str) -> BoxFuture<'a, Result<ChatAddress, ChannelError>> {
        let _ = user_id;
        unsupported("open a direct chat")
    }

    /// The agent has finished its turn on `message_id` (every reply to it was delivered).
    fn turn_complete<'a>(
        &'a self,
        to: &'a ChatAddress,
        message_id: &'a MessageId,
    ) -> BoxFuture<'a, ()> {
        let _ = (to, message_id);
        Box::pin(async {})
    }
}

/// Where adapters push what arrives: the router, in the daemon.
pub trait InboundSink: Send + Sync {
    /// Routes an event; when this returns `Ok`, the message is durable and the platform may
    /// be told so.
    fn push(&self, event: InboundEvent) -> BoxFuture<'_, Result<RouteOutcome, RouteError>>;
    /// Hands an answer to an agent's question to the asking session.
    fn answer(&self, answer: QuestionAnswer) -> BoxFuture<'_, Result<Answered, AnswerError>>;
}

/// Someone can receive messages again: delivery retries what waited for them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// A recipient of this chat is there (a terminal of the chat connected).
    Chat(ChatAddress),
    /// The whole adapter of this channel type is back (an out-of-process adapter
    /// reconnected).
    Channel(String),
}

/// What an adapter gets at start: the way into the router, and the way to tell delivery
/// that someone can receive a chat's messages again.
#[derive(Clone)]
pub struct ChannelContext {
    sink: Arc<dyn InboundSink>,
    arrivals: mpsc::UnboundedSender<Arrival>,
}

impl ChannelContext {
    pub fn new(sink: Arc<dyn InboundSink>, arrivals: mpsc::UnboundedSender<Arrival>) -> Self {
        Self { sink, arrivals }
    }

    /// A recipient for `address` is there now: rows that waited with
    /// [`ChannelError::NoRecipient`] are delivered.
    pub fn recipient_arrived(&self, address: ChatAddress) {
        // Delivery holds the receiver for as long as the host serves; after shutdown nobody
        // is waiting for the news.
        let _ = self.arrivals.send(Arrival::Chat(address));
    }

    /// Every chat of `channel_type` can receive again.
    pub fn channel_arrived(&self, channel_type: &str) {
        let _ = self
            .arrivals
            .send(Arrival::Channel(channel_type.to_owned()));
    }

    pub async fn push(&self, event: InboundEvent) -> Result<RouteOutcome, RouteError> {
        self.sink.push(event).await
    }

    pub async fn answer(&self, answer: QuestionAnswer) -> Result<Answered, AnswerError> {
        self.sink.answer(answer).await
    }
}
