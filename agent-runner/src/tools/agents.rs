//! The `create_agent` tool ([`CreateAgent`]): asks the host, with a `create_agent` system
//! row, for a new agent group that is a child of this one. The host creates it only if its
//! policy allows (by default after an admin approves), then adds the destinations (this agent
//! reaches the child by its name; the child reaches this agent as `parent`) and reports the
//! outcome as an inbound `system` message. The tool does not wait for that.

use super::{Tool, ToolContext, ToolDefinition, ToolError, ToolFuture, parse_arguments};
use protocol::actions::{Action, CreateAgent as CreateAction, is_valid_agent_name};
use serde::Deserialize;

pub const NAME: &str = "create_agent";

/// Asks the host for a new child agent.
pub struct CreateAgent;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Arguments {
    name: String,
    instructions: String,
}

impl Tool for CreateAgent {
    fn definition(&self) -> ToolDefinition {
        ToolDefinition {
            name: NAME.into(),
            description: "Ask for a new agent with its own instructions, to delegate work to. \
                It may need an admin's approval; a system message tells you when it exists, \
                and then you reach it with send_message(to: name). It reaches you back as \
                `parent`."
                .into(),
            parameters: serde_json::json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string", "description": "Its destination name: lowercase letters, digits and `-`, starting with a letter (e.g. `researcher`)."},
                    "instructions": {"type": "string", "description": "Its instructions (its AGENT.md): who it is and what it does."}
                },
                "required": ["name", "instructions"],
                "additionalProperties": false
            }),
        }
    }

    fn call<'a>(
        &'a self,
        context: &'a mut ToolContext<'_>,
        arguments: serde_json::Value,
    ) -> ToolFuture<'a> {
        Box::pin(async move {
            let Arguments { name, instructions } = parse_arguments(NAME, arguments)?;
            let name = name.trim().to_owned();
            if !is_valid_agent_name(&name) {
                return Err(ToolError::Refused(format!(
                    "{name:?} is not an agent name: use lowercase letters, digits and `-`, starting with a letter (not `parent`)"
                )));
            }
            if context.destinations.iter().any(|d| d.name == name) {
                return Err(ToolError::Refused(format!(
                    "you already have a destination named {name:?}; choose another name"
                )));
            }
            let action = Action::CreateAgent(CreateAction {
                name: name.clone(),
                instructions,
            });
            let seq = context.send_action(&action).await?;
            Ok(format!(
                "asked the host to create agent {name:?} (seq {seq}). It may need an admin's approval; a system message will tell you when you can send_message(to: {name:?})."
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::testing::Fixture;
    use serde_json::json;

    #[tokio::test]
    async fn writes_the_action_or_refuses() {
        let mut fixture = Fixture::new().await;
        let text = fixture
            .ok(
                CreateAgent,
                json!({"name": "researcher", "instructions": "Find sources."}),
            )
            .await;
        assert!(
            text.starts_with("asked the host to create agent \"researcher\""),
            "{text}"
        );
        let rows = fixture.outbound_rows();
        assert_eq!(rows[0].kind, "system");
        assert_eq!(
            rows[0].content,
            r#"{"action":"create_agent","instructions":"Find sources.","name":"researcher"}"#
        );
        for (arguments, fragment) in [
            (
                json!({"name": "Research Bot", "instructions": "x"}),
                "is not an agent name",
            ),
            (
                json!({"name": "parent", "instructions": "x"}),
                "is not an agent name",
            ),
            (
                json!({"name": "family", "instructions": "x"}),
                "already have a destination named",
            ),
            (
                json!({"name": "helper", "instructions": " "}),
                "`instructions` is empty",
            ),
        ] {
            let error = fixture.error(CreateAgent, arguments).await;
            assert!(error.contains(fragment), "{error} lacks {fragment}");
        }
        assert_eq!(fixture.outbound_rows().len(), 1);
    }
}
