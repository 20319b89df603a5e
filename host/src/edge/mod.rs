//! The edge vocabulary: every type that crosses between a chat platform and the core
//! (DESIGN §8). The router, delivery, the bridge and every channel adapter import this module,
//! and none of them imports another for these types, so there is no cycle between the router
//! and the channels.
//!
//! - Inbound: an adapter turns a platform event into an [`InboundEvent`] and pushes it through
//!   its [`ChannelContext`] into an [`InboundSink`] (the router, in the daemon), which answers
//!   with a [`RouteOutcome`] once the message is durable.
//! - Outbound: the bridge (`crate::bridge`) turns an agent's row into [`OutgoingMessage`]s the
//!   adapter can send as they are (text already in the platform's [`Markup`], split to its
//!   length, buttons only where it has them) and calls the [`Channel`] methods.
//! - A platform says what it can do in [`Capabilities`] and how it is doing in [`Health`].

mod channel;
mod inbound;
mod outgoing;

pub use channel::{
    Arrival, BoxFuture, Channel, ChannelContext, ChannelError, Health, HealthState, InboundSink,
};
pub use inbound::{
    AnswerError, Answered, InboundEvent, QuestionAnswer, RouteError, RouteOutcome, RoutedMessage,
    Upload, WEBHOOK_CHANNEL_TYPE,
};
pub use outgoing::{
    Button, Capabilities, ChatAddress, Draft, HostMessage, MAX_ATTACHMENT_BYTES, Markup,
    OutgoingMessage, Rate, RateLimits,
};
