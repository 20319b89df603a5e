//! The tools the model may call. A tool is a [`Tool`]: its [`ToolDefinition`] (name,
//! description, JSON Schema of the arguments — written once and rendered for both providers
//! by `model::openai` and `model::anthropic`) and an async `call`. [`ToolRegistry`] holds the
//! tools of a session, looks calls up by name, parses their arguments and turns every failure
//! into a [`ToolOutcome`] marked as an error for the model: a bad call never ends a turn.
//!
//! To add a tool: write a module with a type implementing [`Tool`] (see [`send_message`]),
//! deserialize its arguments with `#[serde(deny_unknown_fields)]` via [`parse_arguments`],
//! and register it in [`ToolRegistry::standard`].

pub mod send_message;

use crate::store::{StoreError, StoreHandle};
use crate::transcript::ToolCall;
use protocol::{Destination, MessageId, SessionRouting};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// The future a tool call returns. The runner is single-threaded, so it need not be `Send`.
pub type ToolFuture<'a> = Pin<Box<dyn Future<Output = Result<String, ToolError>> + 'a>>;

/// What the model is told about a tool.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolDefinition {
    pub name: &'static str,
    pub description: &'static str,
    /// JSON Schema of the arguments object.
    pub parameters: serde_json::Value,
}

/// Why a tool call failed. All are reported to the model as an error result; none is retried
/// by the runner (the model may call again).
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("unknown tool {name:?}; available tools: {}", available.join(", "))]
    UnknownTool {
        name: String,
        available: Vec<&'static str>,
    },
    #[error("invalid arguments for {tool}: {reason}")]
    BadArguments { tool: &'static str, reason: String },
    #[error("{}", unknown_destination_message(name, valid))]
    UnknownDestination { name: String, valid: Vec<String> },
    #[error("{0}")]
    Refused(String),
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

/// What the turn's tools have done so far, for the final-reply rule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TurnEffects {
    /// A tool already sent a message to the origin chat: the final text is not sent as well.
    pub sent_to_origin: bool,
    /// Outbound rows the tools wrote.
    pub n_messages_sent: usize,
}

/// What a tool can see and touch during one turn.
pub struct ToolContext<'a> {
    pub store: &'a StoreHandle,
    pub destinations: &'a [Destination],
    pub routing: Option<&'a SessionRouting>,
    /// The last inbound row of the turn: what the tool's messages reply to.
    pub in_reply_to: &'a MessageId,
    pub effects: &'a mut TurnEffects,
}

/// A tool the model can call.
pub trait Tool {
    fn definition(&self) -> ToolDefinition;

    /// How long the tool may run, recorded in `container_state` while it does, so the host's
    /// sweep can tell a long tool from a stuck runner. `None` for instant tools.
    fn timeout(&self) -> Option<Duration> {
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
    tool: &'static str,
    arguments: serde_json::Value,
) -> Result<T, ToolError> {
    serde_json::from_value(arguments).map_err(|error| ToolError::BadArguments {
        tool,
        reason: error.to_string(),
    })
}

/// The tools of a session.
pub struct ToolRegistry {
    tools: Vec<Box<dyn Tool>>,
    definitions: Vec<ToolDefinition>,
}

impl ToolRegistry {
    pub fn new(tools: Vec<Box<dyn Tool>>) -> Self {
        let definitions = tools.iter().map(|tool| tool.definition()).collect();
        Self { tools, definitions }
    }

    /// The tools every session has.
    pub fn standard() -> Self {
        Self::new(vec![Box::new(send_message::SendMessage)])
    }

    pub fn definitions(&self) -> &[ToolDefinition] {
        &self.definitions
    }

    /// Runs one call. Never fails: problems become an error result for the model.
    pub async fn run(&self, context: &mut ToolContext<'_>, call: &ToolCall) -> ToolOutcome {
        let outcome = self.try_run(context, call).await;
        match outcome {
            Ok(content) => ToolOutcome {
                content,
                is_error: false,
            },
            Err(error) => {
                // The error can quote the arguments, so its text stays at DEBUG.
                tracing::info!(tool = %call.name, "tool call failed");
                tracing::debug!(tool = %call.name, %error, "tool error");
                ToolOutcome {
                    content: error.to_string(),
                    is_error: true,
                }
            }
        }
    }

    async fn try_run(
        &self,
        context: &mut ToolContext<'_>,
        call: &ToolCall,
    ) -> Result<String, ToolError> {
        let Some((tool, definition)) = self
            .tools
            .iter()
            .zip(&self.definitions)
            .find(|(_, definition)| definition.name == call.name)
        else {
            return Err(ToolError::UnknownTool {
                name: call.name.clone(),
                available: self.definitions.iter().map(|d| d.name).collect(),
            });
        };
        let tool_name = definition.name;
        let arguments = parse_json_object(tool_name, &call.arguments)?;
        tracing::debug!(tool = tool_name, arguments = %call.arguments, "calling tool");
        let timeout = tool.timeout();
        if let Some(timeout) = timeout {
            let millis = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
            let name = tool_name.to_owned();
            context
                .store
                .call(move |store| store.set_current_tool(Some((&name, millis))))
                .await?;
        }
        let result = tool.call(context, arguments).await;
        if timeout.is_some() {
            context
                .store
                .call(|store| store.set_current_tool(None))
                .await?;
        }
        result
    }
}

/// Parses the model's argument text into a JSON object. Some models send an empty string
/// for a call without arguments: that is `{}`.
fn parse_json_object(tool: &'static str, text: &str) -> Result<serde_json::Value, ToolError> {
    if text.trim().is_empty() {
        return Ok(serde_json::Value::Object(serde_json::Map::new()));
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(value @ serde_json::Value::Object(_)) => Ok(value),
        Ok(_) => Err(ToolError::BadArguments {
            tool,
            reason: "arguments must be a JSON object".into(),
        }),
        Err(error) => Err(ToolError::BadArguments {
            tool,
            reason: format!("arguments are not valid JSON: {error}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_text_table() {
        let check = |text: &str, expected: Result<&str, &str>| {
            let got = parse_json_object("t", text);
            match (got, expected) {
                (Ok(value), Ok(want)) => assert_eq!(value.to_string(), want, "{text:?}"),
                (Err(error), Err(fragment)) => {
                    assert!(error.to_string().contains(fragment), "{text:?}: {error}")
                }
                (got, want) => panic!("{text:?}: got {got:?}, want {want:?}"),
            }
        };
        check("", Ok("{}"));
        check("  ", Ok("{}"));
        check(r#"{"text":"a"}"#, Ok(r#"{"text":"a"}"#));
        check(r#"{"text":"a""#, Err("not valid JSON"));
        check("[1]", Err("must be a JSON object"));
        check("null", Err("must be a JSON object"));
    }

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
}
