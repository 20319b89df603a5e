//! Row types of the two session files, and the session's configuration.
//!
//! Key types: [`InboundRow`] / [`NewInboundRow`] (`messages_in`), [`OutboundRow`] /
//! [`NewOutboundRow`] (`messages_out`), [`Ack`] (`processing_ack`), [`Destination`],
//! [`SessionRouting`], [`SessionConfig`]. Enums map to the TEXT values the schemas CHECK.

use crate::ids::{AgentGroupId, MessageId, SessionId};
use crate::seq::Seq;
use serde::{Deserialize, Serialize};

macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name { $(#[serde(rename = $text)] $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses the stored TEXT value; `None` for anything else.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl rusqlite::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(rusqlite::types::ToSqlOutput::from(self.as_str()))
            }
        }

        impl rusqlite::types::FromSql for $name {
            fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                let text = value.as_str()?;
                Self::parse(text).ok_or_else(|| {
                    rusqlite::types::FromSqlError::Other(
                        format!("{text:?} is not a valid {}", stringify!($name)).into(),
                    )
                })
            }
        }
    };
}

text_enum!(
    /// `messages_in.kind`.
    InboundKind { Chat => "chat", Task => "task", Webhook => "webhook", System => "system" }
);
text_enum!(
    /// `messages_in.status`.
    InboundStatus {
        Pending => "pending", Completed => "completed", Failed => "failed",
        Paused => "paused", Cancelled => "cancelled",
    }
);
text_enum!(
    /// `messages_out.kind`.
    OutboundKind { Chat => "chat", System => "system" }
);
text_enum!(
    /// `processing_ack.status`.
    AckStatus { Processing => "processing", Completed => "completed", Failed => "failed" }
);
text_enum!(
    /// `delivered.status`.
    DeliveryStatus { Sending => "sending", Delivered => "delivered", Failed => "failed", Dropped => "dropped" }
);
text_enum!(
    /// `destinations.type`.
    DestinationType { Channel => "channel", Agent => "agent" }
);
text_enum!(
    /// Which wire format the session's model speaks through the proxy.
    ProviderKind { OpenAi => "openai", Anthropic => "anthropic" }
);

/// A row of `messages_in` as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboundRow {
    pub id: MessageId,
    pub seq: Seq,
    pub kind: InboundKind,
    pub created_at: i64,
    pub status: InboundStatus,
    pub process_after: Option<i64>,
    pub recurrence: Option<String>,
    pub series_id: Option<String>,
    pub tries: i64,
    pub trigger: bool,
    pub on_wake: bool,
    pub channel_type: Option<String>,
    pub platform_id: Option<String>,
    pub thread_id: Option<String>,
    pub source_session_id: Option<SessionId>,
    /// Raw JSON; parse with `serde_json` into [`crate::InboundContent`].
    pub content: String,
}

/// What the host supplies to insert a `messages_in` row; the seq is allocated at insert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewInboundRow {
    pub id: MessageId,
    pub kind: InboundKind,
    pub process_after: Option<i64>,
    pub recurrence: Option<String>,
    pub series_id: Option<String>,
    pub trigger: bool,
    pub on_wake: bool,
    pub channel_type: Option<String>,
    pub platform_id: Option<String>,
    pub thread_id: Option<String>,
    pub source_session_id: Option<SessionId>,
    pub content: String,
}

impl NewInboundRow {
    /// A plain message that wakes the agent now.
    pub fn chat(content: &crate::InboundContent) -> Self {
        Self {
            id: MessageId::generate(),
            kind: InboundKind::Chat,
            process_after: None,
            recurrence: None,
            series_id: None,
            trigger: true,
            on_wake: false,
            channel_type: None,
            platform_id: None,
            thread_id: None,
            source_session_id: None,
            content: serde_json::to_string(content).unwrap_or_else(|_| "{}".into()),
        }
    }
}

/// A row of `messages_out` as read back (content still raw: the host validates it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboundRow {
    pub id: MessageId,
    pub seq: Seq,
    pub in_reply_to: Option<MessageId>,
    pub created_at: i64,
    pub deliver_after: Option<i64>,
    pub kind: String,
    pub destination: Option<String>,
    pub thread_id: Option<String>,
    pub content: String,
}

/// What the runner supplies to insert a `messages_out` row; the seq is allocated at insert.
#[derive(Clone, Debug, PartialEq)]
pub struct NewOutboundRow {
    pub id: MessageId,
    pub in_reply_to: Option<MessageId>,
    pub deliver_after: Option<i64>,
    pub kind: OutboundKind,
    pub destination: Option<String>,
    pub thread_id: Option<String>,
    pub content: crate::OutboundContent,
}

/// A row of `processing_ack`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    /// Its place in `processing_ack` (an update keeps it): the host reads acks from a
    /// cursor over it, so a pass costs the same at turn 10 and at turn 500.
    pub rowid: i64,
    pub message_id: MessageId,
    pub status: AckStatus,
    pub changed_at: i64,
}

/// A named target of the agent (`destinations`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    pub name: String,
    pub display_name: String,
    pub destination_type: DestinationType,
    pub channel_type: Option<String>,
    pub platform_id: Option<String>,
    pub thread_id: Option<String>,
    pub agent_group_id: Option<AgentGroupId>,
}

/// The session's origin chat (`session_routing`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRouting {
    pub channel_type: String,
    pub platform_id: String,
    pub thread_id: Option<String>,
}

/// What the runner needs to know (`session_config`). Never holds a secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionConfig {
    pub provider: ProviderKind,
    pub model: String,
    /// Most tokens the model may write in one response.
    pub max_output_tokens: u32,
    /// Most model calls in one turn (tool rounds included) before the runner stops the turn.
    pub max_tool_rounds: u32,
    /// How often the runner touches `out/heartbeat`, in milliseconds.
    pub heartbeat_interval_ms: u64,
    /// Fallback poll interval for new inbound rows when file events are missing, in milliseconds.
    pub poll_interval_ms: u64,
    /// Whether the runner watches `in/` for file events; false = poll only (the measured
    /// NanoClaw-style baseline of `make bench`).
    #[serde(default = "watch_files_default")]
    pub watch_files: bool,
    /// The model's context window in tokens; 0 = unknown, and the runner assumes
    /// [`DEFAULT_CONTEXT_WINDOW_TOKENS`].
    #[serde(default)]
    pub context_window_tokens: u32,
    /// The runner compacts the conversation (summarises older turns) when a request would
    /// take more than this percentage of the context window; 0 = the default,
    /// [`DEFAULT_COMPACT_AT_PERCENT`]. Values above 100 count as 100.
    #[serde(default)]
    pub compact_at_percent: u8,
    /// The hard cap on this session's `out/` and `work/` together, in MiB; 0 = none. The runner
    /// names it when a write fails for lack of space.
    #[serde(default)]
    pub disk_quota_mb: u64,
    /// Whether the model can see images: true sends screenshots and images people send as
    /// image input; false describes each as text (`[image: name, WxH]`).
    #[serde(default = "vision_default")]
    pub vision: bool,
}

/// The context window assumed when [`SessionConfig::context_window_tokens`] is 0.
pub const DEFAULT_CONTEXT_WINDOW_TOKENS: u32 = 128_000;
/// The compaction threshold used when [`SessionConfig::compact_at_percent`] is 0.
pub const DEFAULT_COMPACT_AT_PERCENT: u8 = 80;

fn watch_files_default() -> bool {
    true
}

fn vision_default() -> bool {
    true
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            provider: ProviderKind::OpenAi,
            model: String::new(),
            max_output_tokens: 4096,
            max_tool_rounds: 16,
            heartbeat_interval_ms: 5_000,
            poll_interval_ms: 5_000,
            watch_files: true,
            context_window_tokens: 0,
            compact_at_percent: 0,
            disk_quota_mb: 0,
            vision: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_enums_round_trip() {
        for kind in InboundKind::ALL {
            assert_eq!(InboundKind::parse(kind.as_str()), Some(*kind));
        }
        for status in InboundStatus::ALL {
            assert_eq!(InboundStatus::parse(status.as_str()), Some(*status));
        }
        assert_eq!(OutboundKind::parse("bogus"), None);
        assert_eq!(ProviderKind::parse("openai"), Some(ProviderKind::OpenAi));
        assert_eq!(
            serde_json::to_string(&ProviderKind::OpenAi).ok().as_deref(),
            Some("\"openai\"")
        );
    }

    #[test]
    fn session_config_of_an_older_host_still_parses() {
        let json = r#"{"provider":"anthropic","model":"m","max_output_tokens":1,"max_tool_rounds":2,"heartbeat_interval_ms":3,"poll_interval_ms":4}"#;
        let config: SessionConfig = serde_json::from_str(json).unwrap();
        assert!(config.watch_files);
        assert_eq!(config.context_window_tokens, 0);
        assert_eq!(config.compact_at_percent, 0);
        assert!(config.vision);
    }
}
