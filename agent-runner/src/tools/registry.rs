//! [`ToolRegistry`]: the tools of a session, in the order the model sees them. It looks a
//! call up by name, parses its argument text, records a long tool and its declared timeout
//! in `container_state` while it runs, and turns every failure into an error result.

use super::{
    Tool, ToolContext, ToolDefinition, ToolError, ToolOutcome, agents, bash, files, messaging,
    preview, question, search, send_message, tasks, todo, web,
};
use crate::transcript::ToolCall;

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

    /// The tools every session has: messaging first, then questions and plans, schedules,
    /// agents, and the workspace.
    pub fn standard() -> Self {
        Self::new(vec![
            Box::new(send_message::SendMessage),
            Box::new(messaging::SendFile),
            Box::new(messaging::EditMessage),
            Box::new(messaging::AddReaction),
            Box::new(question::AskUserQuestion),
            Box::new(todo::TodoWrite),
            Box::new(tasks::ScheduleTask),
            Box::new(tasks::ListTasks),
            Box::new(tasks::UpdateTask),
            Box::new(tasks::ChangeTask::Pause),
            Box::new(tasks::ChangeTask::Resume),
            Box::new(tasks::ChangeTask::Cancel),
            Box::new(agents::CreateAgent),
            Box::new(bash::Bash),
            Box::new(files::ReadFile),
            Box::new(files::WriteFile),
            Box::new(files::EditFile),
            Box::new(search::ListFiles),
            Box::new(search::Grep),
            Box::new(preview::PreviewScreenshot),
            Box::new(web::WebFetch),
            Box::new(web::WebSearch),
        ])
    }

    /// Adds tools found at run time (the group's MCP tools) after these. A tool whose name is
    /// already taken is left out with a warning: the first tool of a name always wins.
    pub fn with_extra(mut self, extra: Vec<Box<dyn Tool>>) -> Self {
        for tool in extra {
            let definition = tool.definition();
            if self.definitions.iter().any(|d| d.name == definition.name) {
                tracing::warn!(tool = %definition.name, "a tool of this name exists; left out");
                continue;
            }
            self.tools.push(tool);
            self.definitions.push(definition);
        }
        self
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
                available: self
                    .definitions
                    .iter()
                    .map(|d| d.name.to_string())
                    .collect(),
            });
        };
        let tool_name: &str = &definition.name;
        let arguments = parse_json_object(tool_name, &call.arguments)?;
        tracing::debug!(tool = tool_name, arguments = %call.arguments, "calling tool");
        let timeout = tool.declared_timeout(&arguments, context.tool_limits);
        if let Some(timeout) = timeout {
            let millis = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
            context
                .store
                .call({
                    let tool_name = tool_name.to_owned();
                    move |store| store.set_current_tool(Some((&tool_name, millis)))
                })
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
fn parse_json_object(tool: &str, text: &str) -> Result<serde_json::Value, ToolError> {
    if text.trim().is_empty() {
        return Ok(serde_json::Value::Object(serde_json::Map::new()));
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(value @ serde_json::Value::Object(_)) => Ok(value),
        Ok(_) => Err(ToolError::BadArguments {
            tool: tool.to_owned(),
            reason: "arguments must be a JSON object".into(),
        }),
        Err(error) => Err(ToolError::BadArguments {
            tool: tool.to_owned(),
            reason: format!("arguments are not valid JSON: {error}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

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

    /// Every standard tool has a unique name, a description, and an object schema whose
    /// `required` names exist and that refuses unknown properties.
    #[test]
    fn standard_definitions_are_well_formed() {
        let registry = ToolRegistry::standard();
        let mut names = HashSet::new();
        for definition in registry.definitions() {
            assert!(
                names.insert(definition.name.clone()),
                "{} twice",
                definition.name
            );
            assert!(definition.description.len() > 40, "{}", definition.name);
            let schema = &definition.parameters;
            assert_eq!(schema["type"], "object", "{}", definition.name);
            assert_eq!(schema["additionalProperties"], false, "{}", definition.name);
            let properties = schema["properties"].as_object().unwrap();
            for required in schema["required"].as_array().into_iter().flatten() {
                assert!(
                    properties.contains_key(required.as_str().unwrap()),
                    "{}: required {required} is not a property",
                    definition.name
                );
            }
        }
        assert_eq!(names.len(), 22);
    }
}
