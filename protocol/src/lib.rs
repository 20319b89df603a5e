//! The contract between the crabpot host and the agent-runner inside each session's container.
//!
//! The only channel between the two is a pair of SQLite files per session, each with exactly
//! one writer: `in/inbound.db` (host writes, container reads) and `out/outbound.db` (container
//! writes, host reads as hostile input). This crate holds everything both sides must agree on:
//! the schemas and their migrations ([`schema`]), the open helpers that set the right pragmas
//! ([`schema::open_inbound_writer`] and friends), the row and content types ([`rows`],
//! [`content`]), the id newtypes ([`ids`]), the seq rules ([`seq`]), the folder layout
//! ([`paths`]), the queries each side runs ([`inbound`], [`outbound`], where the host's
//! hostile-input reader of `outbound.db` is [`OutboundReader`]) and the typed `system`
//! actions the agent asks the host for ([`actions`]), the task schedules they carry
//! ([`schedule`]) and the host's queries on task series ([`series`]), and the live drafts of
//! a reply the runner posts on the proxy socket ([`live`]).
//!
//! It has no tokio and no HTTP so that it stays cheap to build into the agent image.

pub mod actions;
pub mod content;
pub mod ids;
pub mod inbound;
pub mod live;
pub mod outbound;
pub mod paths;
pub mod rows;
pub mod schedule;
pub mod schema;
pub mod seq;
pub mod series;
pub mod time;
pub mod web;

pub use actions::{Action, ActionError};
pub use content::{
    ContentError, InboundContent, MessageContent, OutboundContent, ProgressItem, Sender,
};
pub use ids::{AgentGroupId, MessageId, SessionId};
pub use outbound::OutboundReader;
pub use paths::SessionPaths;
pub use rows::{
    Ack, AckStatus, Destination, DestinationType, InboundKind, InboundRow, InboundStatus,
    NewInboundRow, NewOutboundRow, OutboundKind, OutboundRow, ProviderKind, SessionConfig,
    SessionRouting,
};
pub use schema::SchemaError;
pub use seq::{Seq, Writer};
