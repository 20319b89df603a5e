//! The admin API's wire types, shared by the server and the CLI: one request body per verb,
//! plus [`ApiError`], the body of every failed call.
//!
//! Every call is `POST /v1/<resource>/<verb>` on `data/crabpot.sock` with a JSON body and a
//! JSON answer (`GET /v1/status` also works). Failures carry an HTTP status and an
//! [`ErrorKind`]: `not_found` (404), `invalid` (400), `conflict` (409), `refused` (403) or
//! `internal` (500); the CLI maps each to its documented exit code.

use crate::db::central::chats::{ChatChanges, NewChat};
use crate::db::central::wirings::WiringSettings;
use serde::{Deserialize, Serialize};

/// What kind of failure an API call met.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    NotFound,
    Invalid,
    Conflict,
    Refused,
    Internal,
}

impl ErrorKind {
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::NotFound => 404,
            ErrorKind::Invalid => 400,
            ErrorKind::Conflict => 409,
            ErrorKind::Refused => 403,
            ErrorKind::Internal => 500,
        }
    }

    /// The CLI's exit code for this failure (see `crabpot --help`).
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::NotFound => 5,
            ErrorKind::Invalid => 6,
            ErrorKind::Conflict => 7,
            ErrorKind::Refused => 8,
            ErrorKind::Internal => 1,
        }
    }
}

/// The body of a failed call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub error: String,
}

/// A call naming one thing by id (or by a chat address, for chats).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Id {
    pub id: String,
}

/// Filters of the list verbs; each one only where it makes sense.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ListFilter {
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub chat: Option<String>,
    /// Approvals: include decided and expired ones.
    #[serde(default)]
    pub all: bool,
    /// Dropped: most rows.
    #[serde(default)]
    pub limit: Option<i64>,
}

/// Per-group container limits as the CLI passes them.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Limits {
    #[serde(default)]
    pub memory_mb: Option<i64>,
    #[serde(default)]
    pub cpus: Option<f64>,
    #[serde(default)]
    pub pids_limit: Option<i64>,
    #[serde(default)]
    pub disk_quota_mb: Option<u64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct GroupCreate {
    /// The folder under `groups/`, and the group's id.
    pub folder: String,
    #[serde(default)]
    pub name: Option<String>,
    /// Written to `groups/<folder>/AGENT.md` (which must not exist yet).
    #[serde(default)]
    pub instructions: Option<String>,
    #[serde(default, flatten)]
    pub limits: Limits,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct GroupUpdate {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// Whether the group's agents may create agents: approval, allow, deny.
    #[serde(default)]
    pub create_agents: Option<crate::db::central::groups::CreateAgentPolicy>,
    #[serde(default, flatten)]
    pub limits: Limits,
    /// The agent image: `default` or `toolbox`.
    #[serde(default)]
    pub image: Option<String>,
    /// The author of the agents' commits, `Name <email>`.
    #[serde(default)]
    pub git_author: Option<String>,
    /// Egress rules (`host[:ports]`) to allow.
    #[serde(default)]
    pub allow_egress: Vec<String>,
    /// Egress rules to take off the allowlist (or deny under a broader rule).
    #[serde(default)]
    pub deny_egress: Vec<String>,
}

pub type ChatCreate = NewChat;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ChatUpdate {
    pub id: String,
    #[serde(default, flatten)]
    pub changes: ChatChanges,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WiringCreate {
    /// The chat: id or `<channel_type>/<platform_id>`.
    pub chat: String,
    pub group: String,
    /// The destination name the group uses for the chat (default: from the chat's name).
    #[serde(default)]
    pub destination: Option<String>,
    #[serde(default, flatten)]
    pub settings: WiringSettings,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WiringUpdate {
    pub id: String,
    #[serde(default, flatten)]
    pub settings: WiringSettings,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DestinationAdd {
    pub group: String,
    pub name: String,
    #[serde(default)]
    pub display_name: Option<String>,
    /// A chat (id or address): a channel destination.
    #[serde(default)]
    pub chat: Option<String>,
    #[serde(default)]
    pub thread: Option<String>,
    /// Another agent group: an agent destination.
    #[serde(default)]
    pub agent: Option<String>,
    /// An outbound webhook (`crabpot webhooks create NAME --url`): a channel destination to
    /// the chat `webhook/<name>`.
    #[serde(default)]
    pub webhook: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DestinationRemove {
    pub group: String,
    pub name: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct UserCreate {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// The user's DM chat, `<channel_type>/<platform_id>`.
    #[serde(default)]
    pub dm: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RoleChange {
    pub user: String,
    pub role: String,
    #[serde(default)]
    pub group: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MemberChange {
    pub group: String,
    pub user: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ApprovalDecide {
    pub id: String,
    /// Decide as this user (checked against the approvers); default: the operator.
    #[serde(default)]
    pub as_user: Option<String>,
    /// For a channel approval: the agent group to wire the chat to.
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// What `crabpot status` shows.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    pub install_id: String,
    pub docker: String,
    pub model: String,
    pub running: Vec<String>,
    pub starting: usize,
    pub queued: Vec<String>,
    pub max_containers: usize,
    #[serde(default)]
    pub pending_approvals: usize,
    /// Disk quotas, free disk and the reserve, and the uid scheme.
    #[serde(default)]
    pub disk: crate::supervisor::DiskStatus,
    /// Every channel adapter and its health.
    #[serde(default)]
    pub channels: Vec<crate::channels::ChannelStatus>,
}

/// `adapters add`: an out-of-process channel adapter (docs/adapter-protocol.md).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AdapterAdd {
    pub name: String,
    /// The channel type it serves (default: its name).
    #[serde(default)]
    pub channel_type: Option<String>,
}

/// `adapters remove`: the adapter by name.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AdapterRemove {
    pub name: String,
}

/// The answer to `adapters add`: the token, shown this once (the host keeps only its hash).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AdapterCreated {
    pub adapter: crate::db::central::adapters::Adapter,
    pub token: String,
    /// The socket the adapter connects to.
    pub socket: String,
}

/// One adapter as `adapters list` shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AdapterListing {
    #[serde(flatten)]
    pub adapter: crate::db::central::adapters::Adapter,
    /// `created_at` and `last_seen_at` in RFC 3339, for people.
    pub created: String,
    #[serde(default)]
    pub last_seen: Option<String>,
    /// From the running host: starting (never connected), connected, degraded, failing
    /// (disconnected, with why) or stopped (removed).
    pub health: crate::edge::Health,
}

/// `users passwd`: the password of `web:<user>` (created if missing).
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct PasswordSet {
    /// `alice` or `web:alice`.
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for PasswordSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password: requests may be logged.
        f.debug_struct("PasswordSet")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// `tokens create`: an API token for a user, with a scope.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenCreate {
    /// `alice` (= `web:alice`) or a full user id such as `cli:alice`.
    pub user: String,
    pub scope: crate::db::central::web::Scope,
}

/// The answer to `tokens create`: the token, shown this once (the host keeps only its hash).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenCreated {
    #[serde(flatten)]
    pub token: crate::db::central::web::ApiToken,
    pub secret: String,
}

/// `web login-link`: a one-time login link for `web:<user>` (created if missing).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LoginLinkCreate {
    /// `alice` or `web:alice`.
    pub user: String,
    /// How long the link works, in minutes (default 15, at most a week).
    #[serde(default)]
    pub ttl_minutes: Option<u32>,
}

/// The answer to `web login-link`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoginLinkCreated {
    pub user_id: String,
    pub url: String,
    /// Unix ms.
    pub expires_at: i64,
}

/// `webhooks create`: an inbound hook of `group`, or an outbound hook to `url`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WebhookCreate {
    /// 1-64 of `[A-Za-z0-9._-]`.
    pub name: String,
    /// Inbound: the agent group its requests start turns of.
    #[serde(default)]
    pub group: Option<String>,
    /// Outbound: the `http(s)` URL messages are POSTed to.
    #[serde(default)]
    pub url: Option<String>,
}

/// `webhooks remove`: the hook by name.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WebhookRemove {
    pub name: String,
}

/// The answer to `webhooks create`: the secret, shown this once.
#[derive(Clone, Serialize, Deserialize)]
pub struct WebhookCreated {
    pub webhook: crate::db::central::webhooks::Webhook,
    /// The HMAC-SHA256 key: inbound requests are signed with it, outbound ones are signed by
    /// crabpot with it.
    pub secret: String,
    /// Inbound: where to POST (`None` when the web server is off).
    #[serde(default)]
    pub endpoint: Option<String>,
}

impl std::fmt::Debug for WebhookCreated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret: answers may be logged.
        f.debug_struct("WebhookCreated")
            .field("webhook", &self.webhook)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}
