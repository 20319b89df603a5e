//! The label sets of the host's metric families and the bounded vocabularies their values
//! come from: [`DeliveryOutcome`], [`ContainerExit`], [`DropStage`], and the codes of the
//! router's drops ([`router_drop_code`]).
//!
//! Every label value is bounded: a code from this file, a channel type (the adapters that
//! registered), or an agent group id (rows of the central DB). Raw error text and anything a
//! container or a platform wrote never becomes a label value.

use prometheus_client::encoding::EncodeLabelSet;

/// A channel type (`cli`, `web`, `telegram`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabels {
    pub channel: String,
}

/// Why a message reached no agent or a row no chat.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    pub stage: &'static str,
    pub reason: &'static str,
}

/// One delivery attempt's channel and outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    pub channel: String,
    pub outcome: &'static str,
}

/// Why a container went away.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExitLabels {
    pub cause: &'static str,
}

/// An agent group id.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    pub agent_group: String,
}

/// Tokens of one agent group in one direction.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub agent_group: String,
    pub direction: &'static str,
}

/// An adapter's health state (one series per state, 1 for the current one).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdapterStateLabels {
    pub channel: String,
    pub state: &'static str,
}

/// The channel label of a row whose channel is not known (refused before it was routed).
pub const NO_CHANNEL: &str = "none";

/// Where a message was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropStage {
    /// Inbound: the router found no agent for it (or an approver denied it).
    Router,
    /// Outbound: delivery refused an agent's row ([`crate::delivery::refusal::Refusal`]).
    Delivery,
}

impl DropStage {
    pub fn code(self) -> &'static str {
        match self {
            DropStage::Router => "router",
            DropStage::Delivery => "delivery",
        }
    }
}

/// What became of one attempt to deliver a row to a chat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The platform took it.
    Delivered,
    /// It failed and will be tried again after a backoff.
    Retried,
    /// It failed for good (not retryable, or out of attempts).
    Failed,
    /// Delivery refused the row before any platform call.
    Refused,
}

impl DeliveryOutcome {
    pub fn code(self) -> &'static str {
        match self {
            DeliveryOutcome::Delivered => "delivered",
            DeliveryOutcome::Retried => "retried",
            DeliveryOutcome::Failed => "failed",
            DeliveryOutcome::Refused => "refused",
        }
    }
}

/// Why the supervisor took a session's container away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerExit {
    /// It exited by itself (crashed or finished unexpectedly).
    Crashed,
    /// Its heartbeat went stale and it was stopped.
    StaleHeartbeat,
    /// It was idle past the idle timeout.
    Idle,
    /// Its agent group was restarted (new config, mounts or image).
    Restarted,
    /// An operator stopped it, or its agent group was removed.
    Stopped,
    /// Its session was marked failed (a hostile or broken outbound.db).
    Failed,
    /// The host stopped its containers on exit.
    Shutdown,
}

impl ContainerExit {
    pub fn code(self) -> &'static str {
        match self {
            ContainerExit::Crashed => "crashed",
            ContainerExit::StaleHeartbeat => "stale_heartbeat",
            ContainerExit::Idle => "idle",
            ContainerExit::Restarted => "restarted",
            ContainerExit::Stopped => "stopped",
            ContainerExit::Failed => "failed",
            ContainerExit::Shutdown => "shutdown",
        }
    }
}

/// The reasons the router records for a drop (`router::plan`, `router::approvals`), each
/// with its code. The router's `dropped` entries are `<reason>` or `<agent group>: <reason>`.
const ROUTER_DROPS: [(&str, &str); 7] = [
    ("chat is not wired to any agent group", "unwired_chat"),
    ("did not engage", "not_engaged"),
    ("unknown sender (chat policy strict)", "unknown_sender"),
    (
        "unknown sender (wiring accepts known senders only)",
        "unknown_sender",
    ),
    (
        "unknown sender (did not engage, so no approval was asked)",
        "unknown_sender",
    ),
    ("sender was denied by an approver", "sender_denied"),
    ("too many messages await the same approval", "approval_full"),
];

/// The code of a router drop of an approver's denial of held messages.
pub const ROUTER_DENIED: &str = "denied";

/// The stable code of one of the router's drop reasons; `other` for a reason this table
/// does not know (a new one: add it here).
pub fn router_drop_code(dropped: &str) -> &'static str {
    ROUTER_DROPS
        .iter()
        .find(|(reason, _)| dropped == *reason || dropped.ends_with(&format!(": {reason}")))
        .map_or("other", |(_, code)| code)
}
