//! MCP tools as the registry sees them: [`McpTool`] (one allowed tool of one server, named
//! `<server>__<tool>`, with the server's description and input schema) and [`McpStatus`]
//! (`mcp_status`: what was declared, what started, what failed and why — the note the agent
//! can see when a server is misconfigured or refused).
//!
//! A call goes through the registry like a built-in tool's: arguments parsed as a JSON
//! object, the entry's timeout declared (and recorded in `container_state`), failures turned
//! into error results. The result's text content is joined; embedded text resources are
//! shown with their URI; an `isError` result is an error result; the text is capped like
//! `bash`'s output (head and tail kept). Images, audio and binary resources are named, not
//! shown: TODO(vision): attach MCP image content as image input once the turn can carry
//! tool images (H4's `TurnEffects` image attachment).

use super::server::Server;
use crate::config::ToolLimits;
use crate::tools::bash::OutputCollector;
use crate::tools::{Tool, ToolContext, ToolDefinition, ToolError, ToolFuture};
use rmcp::model::{CallToolResult, ContentBlock, ResourceContents};
use std::sync::Arc;
use std::time::Duration;

/// Longest description passed on from a server.
pub const MAX_DESCRIPTION: usize = 2000;
/// Largest input schema (as JSON text) passed on; a tool with a larger one is left out.
pub const MAX_SCHEMA_BYTES: usize = 16 * 1024;

/// One allowed tool of one server.
pub struct McpTool {
    pub server: Arc<Server>,
    /// The server's own name for the tool (what `tools/call` sends).
    pub remote_name: String,
    pub definition: ToolDefinition,
}

impl McpTool {
    /// The tool `remote` of `server`, offered to the model as `name`.
    pub fn new(server: Arc<Server>, name: String, remote: &rmcp::model::Tool) -> Self {
        let description = remote
            .description
            .as_deref()
            .filter(|text| !text.trim().is_empty())
            .unwrap_or("(no description)");
        let description = format!(
            "[MCP server {}] {}",
            server.config.name,
            cut_chars(description, MAX_DESCRIPTION)
        );
        let definition = ToolDefinition {
            name: name.into(),
            description: description.into(),
            parameters: serde_json::Value::Object((*remote.input_schema).clone()),
        };
        Self {
            server,
            remote_name: remote.name.to_string(),
            definition,
        }
    }
}

impl Tool for McpTool {
    fn definition(&self) -> ToolDefinition {
        self.definition.clone()
    }

    fn declared_timeout(
        &self,
        _arguments: &serde_json::Value,
        _limits: &ToolLimits,
    ) -> Option<Duration> {
        Some(self.server.config.timeout)
    }

    fn call<'a>(
        &'a self,
        context: &'a mut ToolContext<'_>,
        arguments: serde_json::Value,
    ) -> ToolFuture<'a> {
        Box::pin(async move {
            let serde_json::Value::Object(arguments) = arguments else {
                return Err(ToolError::BadArguments {
                    tool: self.definition.name.to_string(),
                    reason: "arguments must be a JSON object".into(),
                });
            };
            let result = self
                .server
                .call(&self.remote_name, arguments)
                .await
                .map_err(ToolError::Io)?;
            let is_error = result.is_error == Some(true);
            let text = render(&result, context.tool_limits.bash_output_bytes);
            if is_error {
                Err(ToolError::Refused(text))
            } else {
                Ok(text)
            }
        })
    }
}

/// A call's result as the model reads it, capped at `cap` bytes.
pub fn render(result: &CallToolResult, cap: usize) -> String {
    let mut parts: Vec<String> = Vec::new();
    for block in &result.content {
        parts.push(match block {
            ContentBlock::Text(text) => text.text.clone(),
            ContentBlock::Image(image) => format!(
                "[image ({}, {} base64 characters) returned by the tool; images from MCP tools are not shown to the model yet]",
                image.mime_type,
                image.data.len()
            ),
            ContentBlock::Audio(audio) => format!(
                "[audio ({}) returned by the tool; not shown to the model]",
                audio.mime_type
            ),
            ContentBlock::Resource(embedded) => match &embedded.resource {
                ResourceContents::TextResourceContents { uri, text, .. } => {
                    format!("[resource {uri}]\n{text}")
                }
                ResourceContents::BlobResourceContents { uri, mime_type, .. } => format!(
                    "[binary resource {uri} ({}); not shown to the model]",
                    mime_type.as_deref().unwrap_or("unknown type")
                ),
                // rmcp's enum is non-exhaustive.
                _ => "[a resource of a kind this runner does not show]".to_owned(),
            },
            ContentBlock::ResourceLink(link) => format!("[resource link: {} ({})]", link.uri, link.name),
            // rmcp's enum is non-exhaustive.
            _ => "[content of a kind this runner does not show]".to_owned(),
        });
    }
    if parts.is_empty()
        && let Some(structured) = &result.structured_content
    {
        parts.push(structured.to_string());
    }
    if parts.is_empty() {
        parts.push("(the tool returned no content)".into());
    }
    let mut collector = OutputCollector::new(cap);
    collector.push(parts.join("\n").as_bytes());
    collector.finish()
}

/// `mcp_status`: the group's MCP servers and their state.
pub struct McpStatus {
    pub servers: Vec<Arc<Server>>,
    /// What was found at start: config problems, servers that failed, tools left out.
    pub notes: Vec<String>,
    /// One line per server as it started (`notes: 2 tools (notes__add, notes__list)`).
    pub summary: Vec<String>,
}

impl McpStatus {
    fn report(&self) -> String {
        let mut lines = vec!["MCP servers of this agent group (from /group/mcp.json):".to_owned()];
        lines.extend(self.summary.iter().map(|line| format!("- {line}")));
        if !self.notes.is_empty() {
            lines.push("Problems found at start:".into());
            lines.extend(self.notes.iter().map(|note| format!("- {note}")));
        }
        for server in &self.servers {
            if let Some(error) = server.last_error() {
                lines.push(format!("Last error of {}: {error}", server.config.name));
            }
        }
        lines.join("\n")
    }
}

impl Tool for McpStatus {
    fn definition(&self) -> ToolDefinition {
        let mut description = "Shows this agent group's MCP servers (declared in /group/mcp.json by the operator): which started, which tools they offer here, and what went wrong. Only the operator can change the servers or which tools are allowed.".to_owned();
        if !self.notes.is_empty() {
            description.push_str(&format!(
                " {} problem(s) were found at start: call this tool to see them.",
                self.notes.len()
            ));
        }
        ToolDefinition {
            name: "mcp_status".into(),
            description: description.into(),
            parameters: serde_json::json!({
                "type": "object",
                "properties": {},
                "additionalProperties": false,
            }),
        }
    }

    fn call<'a>(
        &'a self,
        _context: &'a mut ToolContext<'_>,
        _arguments: serde_json::Value,
    ) -> ToolFuture<'a> {
        Box::pin(async move { Ok(self.report()) })
    }
}

/// The first `max` characters of `text`, with `…` when cut.
pub fn cut_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((index, _)) => format!("{}…", &text[..index]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::ContentBlock as Content;

    #[test]
    fn results_are_rendered_and_capped() {
        let result = CallToolResult::success(vec![
            Content::text("first"),
            Content::text("second"),
            Content::image("aGVsbG8=", "image/png"),
            Content::embedded_text("file:///x.txt", "inside"),
        ]);
        let text = render(&result, 10_000);
        assert_eq!(
            text,
            "first\nsecond\n[image (image/png, 8 base64 characters) returned by the tool; images from MCP tools are not shown to the model yet]\n[resource file:///x.txt]\ninside"
        );
        let long = CallToolResult::success(vec![Content::text("a".repeat(500) + &"z".repeat(500))]);
        let cut = render(&long, 100);
        assert!(cut.starts_with(&"a".repeat(50)), "{cut}");
        assert!(cut.ends_with(&"z".repeat(50)), "{cut}");
        assert!(cut.contains("900 bytes of output omitted"), "{cut}");
        let empty = CallToolResult::success(vec![]);
        assert_eq!(render(&empty, 100), "(the tool returned no content)");
        let mut structured = CallToolResult::success(vec![]);
        structured.structured_content = Some(serde_json::json!({"sum": 5}));
        assert_eq!(render(&structured, 100), r#"{"sum":5}"#);
    }

    #[test]
    fn descriptions_are_cut_on_characters() {
        assert_eq!(cut_chars("héllo", 2), "hé…");
        assert_eq!(cut_chars("hi", 2), "hi");
    }
}
