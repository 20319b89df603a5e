//! The tools the model may call. A tool is a [`Tool`]: its [`ToolDefinition`] (name,
//! description, JSON Schema of the arguments — written once here and rendered for both
//! providers by `model::tool_schema`) and an async `call`. [`ToolRegistry`] (in [`registry`])
//! holds the tools of a session, looks calls up by name, parses their arguments, records
//! long tools in `container_state`, and turns every failure into a [`ToolOutcome`] marked as
//! an error for the model: a bad call never ends a turn.
//!
//! The families, one module each: the workspace under `/session/work` ([`workspace`] confines
//! paths; [`bash`], [`files`] for `read_file` / `write_file` / `edit_file`, [`search`] for
//! `list_files` / `grep`), messaging ([`send_message`], [`messaging`] for `send_file` /
//! `edit_message` / `add_reaction`), [`question`] (`ask_user_question`), [`mod@todo`]
//! (`todo_write`), [`tasks`] (the schedule tools) and [`agents`] (`create_agent`).
//!
//! To add a tool: write a type implementing [`Tool`], deserialize its arguments with
//! `#[serde(deny_unknown_fields)]` via [`parse_arguments`], and register it in
//! [`ToolRegistry::standard`].

pub mod agents;
pub mod bash;
pub mod files;
pub mod messaging;
pub mod preview;
pub mod question;
pub mod registry;
pub mod search;
pub mod send_message;
pub mod tasks;
pub mod todo;
pub mod web;
pub mod workspace;

use crate::config::{Limits, ToolLimits};
use crate::store::{StoreError, StoreHandle};
use protocol::actions::Action;
use protocol::{
    Destination, MessageId, NewOutboundRow, OutboundKind, Seq, SessionPaths, SessionRouting,
};
use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use workspace::{Workspace, WorkspaceError};

pub use registry::ToolRegistry;

/// The future a tool call returns. The runner is single-threaded, so it need not be `Send`.
pub type ToolFuture<'a> = Pin<Box<dyn Future<Output = Result<String, ToolError>> + 'a>>;

/// What the model is told about a tool. Built-in tools name themselves with literals; tools
/// found at run time (an MCP server's) bring their own strings.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolDefinition {
    pub name: Cow<'static, str>,
    pub description: Cow<'static, str>,
    /// JSON Schema of the arguments object, as written; each provider gets a normalised copy.
    pub parameters: serde_json::Value,
}

/// Why a tool call failed. All are reported to the model as an error result; none is retried
/// by the runner (the model may call again).
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("unknown tool {name:?}; available tools: {}", available.join(", "))]
    UnknownTool {
        name: String,
        available: Vec<String>,
    },
    #[error("invalid arguments for {tool}: {reason}")]
    BadArguments { tool: String, reason: String },
    #[error("{}", unknown_destination_message(name, valid))]
    UnknownDestination { name: String, valid: Vec<String> },
    /// The call was understood and refused; the text says why and what to do instead.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    /// A file or process operation failed.
    #[error("{0}")]
    Io(String),
    #[error("could not write to the session: {0}")]
    Store(#[from] StoreError),
}

fn unknown_destination_message(name: &str, valid: &[String]) -> String {
    if valid.is_empty() {
        format!(
            "unknown destination {name:?}: there are no named destinations; omit `to` to send to the chat this conversation came from"
        )
    } else {
        format!(
            "unknown destination {name:?}; valid destinations: {}; omit `to` to send to the chat this conversation came from",
            valid.join(", ")
        )
    }
}

/// What the turn's tools have done so far, for the final-reply rule and the turn's commit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TurnEffects {
    /// A tool already sent a message to the origin chat: the final text is not sent as well.
    pub sent_to_origin: bool,
    /// Outbound rows the tools wrote.
    pub n_messages_sent: usize,
    /// The first progress row of this turn: later `todo_write` calls update it in place.
    pub progress_seq: Option<Seq>,
    /// Inbound rows a tool consumed (answers to questions): completed with the turn, never
    /// shown to the model as new messages.
    pub consumed_rows: Vec<MessageId>,
    /// Images the tool call in progress returned (a screenshot); the turn moves them onto
    /// that call's result.
    pub images: Vec<crate::image::ImageRef>,
}

/// What a tool can see and touch during one turn.
pub struct ToolContext<'a> {
    pub store: &'a StoreHandle,
    pub destinations: &'a [Destination],
    pub routing: Option<&'a SessionRouting>,
    /// The last inbound row of the turn: what the tool's messages reply to.
    pub in_reply_to: &'a MessageId,
    pub effects: &'a mut TurnEffects,
    pub paths: &'a SessionPaths,
    /// The agent's working directory, `/session/work`.
    pub workspace: &'a Workspace,
    /// The session's configuration (poll interval and file watching for tools that wait).
    pub limits: &'a Limits,
    pub tool_limits: &'a ToolLimits,
}

impl ToolContext<'_> {
    /// Writes one outbound row now (replying to the turn's last row) and counts it.
    pub async fn send(&mut self, mut row: NewOutboundRow) -> Result<Seq, ToolError> {
        row.in_reply_to = Some(self.in_reply_to.clone());
        let seq = self.store.call(move |store| store.send(&row)).await?;
        self.effects.n_messages_sent += 1;
        Ok(seq)
    }

    /// Writes a `system` row carrying `action`, after checking it as the host will.
    pub async fn send_action(&mut self, action: &Action) -> Result<Seq, ToolError> {
        let content = action.to_content();
        Action::from_content(&content).map_err(|error| ToolError::Refused(error.to_string()))?;
        self.send(NewOutboundRow {
            id: MessageId::generate(),
            in_reply_to: None,
            deliver_after: None,
            kind: OutboundKind::System,
            destination: None,
            thread_id: None,
            content,
        })
        .await
    }
}

/// A tool the model can call.
pub trait Tool {
    fn definition(&self) -> ToolDefinition;

    /// How long this call may run, recorded in `container_state` while it does, so the
    /// host's sweep can tell a long tool from a stuck runner. `None` for instant tools.
    /// `arguments` are the call's (unchecked) arguments: a timeout may depend on them.
    fn declared_timeout(
        &self,
        _arguments: &serde_json::Value,
        _limits: &ToolLimits,
    ) -> Option<Duration> {
        None
    }

    /// Runs the tool with its arguments (a JSON object, not yet checked against the schema)
    /// and returns the text the model sees.
    fn call<'a>(
        &'a self,
        context: &'a mut ToolContext<'_>,
        arguments: serde_json::Value,
    ) -> ToolFuture<'a>;
}

/// The result of one call as the model sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolOutcome {
    pub content: String,
    pub is_error: bool,
}

/// Deserializes a tool's arguments, naming what is wrong when they do not fit.
pub fn parse_arguments<T: serde::de::DeserializeOwned>(
    tool: &str,
    arguments: serde_json::Value,
) -> Result<T, ToolError> {
    serde_json::from_value(arguments).map_err(|error| ToolError::BadArguments {
        tool: tool.to_owned(),
        reason: error.to_string(),
    })
}

/// A seconds argument the model may give: clamped to `1 s ..= max`, `default` when absent.
/// Returns the duration and whether it was capped.
pub fn clamp_timeout(seconds: Option<f64>, default: Duration, max: Duration) -> (Duration, bool) {
    match seconds {
        None => (default.min(max), false),
        Some(seconds) if !seconds.is_finite() || seconds <= 0.0 => (default.min(max), false),
        Some(seconds) if seconds > max.as_secs_f64() => (max, true),
        Some(seconds) => (Duration::from_secs_f64(seconds.max(1.0)), false),
    }
}

/// `60 s`, or `0.3 s` below a second's precision, for telling the model about a duration.
pub fn seconds_text(duration: Duration) -> String {
    let seconds = duration.as_secs_f64();
    if seconds.fract() == 0.0 {
        format!("{seconds:.0} s")
    } else {
        format!("{seconds:.1} s")
    }
}

/// Runs blocking file work on the blocking pool, so the runner's one thread (which also
/// drives the heartbeat) never waits on the disk.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ToolError> + Send + 'static,
) -> Result<T, ToolError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| ToolError::Io(format!("the tool's worker failed: {error}")))?
}

/// A short random id with a prefix (`q-3f9a0c1d2e`), for questions and tasks the model
/// has to name again.
pub fn short_id(prefix: &str) -> String {
    let uuid = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &uuid[..10])
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_destination_lists_valid_names() {
        let error = ToolError::UnknownDestination {
            name: "nope".into(),
            valid: vec!["family".into(), "ops-agent".into()],
        };
        assert_eq!(
            error.to_string(),
            "unknown destination \"nope\"; valid destinations: family, ops-agent; omit `to` to send to the chat this conversation came from"
        );
        let none = ToolError::UnknownDestination {
            name: "x".into(),
            valid: vec![],
        };
        assert!(none.to_string().contains("there are no named destinations"));
    }

    #[test]
    fn timeouts_are_clamped() {
        let (default, max) = (Duration::from_secs(60), Duration::from_secs(600));
        let check = |seconds: Option<f64>, want: (u64, bool)| {
            let (got, capped) = clamp_timeout(seconds, default, max);
            assert_eq!((got.as_secs(), capped), want, "{seconds:?}");
        };
        check(None, (60, false));
        check(Some(5.0), (5, false));
        check(Some(0.2), (1, false));
        check(Some(-3.0), (60, false));
        check(Some(f64::NAN), (60, false));
        check(Some(9999.0), (600, true));
        assert!(short_id("q").starts_with("q-"));
        assert_eq!(short_id("t").len(), 12);
    }
}
