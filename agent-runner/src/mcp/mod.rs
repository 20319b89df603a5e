//! The MCP client: an agent group's MCP servers, declared in `/group/mcp.json`, whose allowed
//! tools join the session's toolset. [`start`] runs when the runner opens the session: it
//! reads the file ([`config`]), starts every server at once ([`server`]: stdio servers as
//! child processes in the workspace, remote ones over streamable HTTP through the egress proxy
//! ([`http`])), lists their tools, and returns one [`tool::McpTool`] per allowed tool, named
//! `<server>__<tool>` ([`names`]), plus `mcp_status` ([`tool::McpStatus`]) for the agent to
//! see what started and what did not.
//!
//! Nothing here can stop the runner: a missing file means no MCP at all, a bad file or entry,
//! a server that will not start, or egress that refuses it is logged, reported by
//! `mcp_status`, and leaves the other servers and the built-in tools working. The tool list is
//! fixed when the runner starts (the container is restarted for a changed `mcp.json`); a
//! server that dies later is restarted by its next call.

pub mod config;
pub mod http;
pub mod names;
pub mod server;
pub mod tool;

use crate::tools::{Tool, ToolDefinition};
use names::NameTable;
use server::Server;
use std::path::Path;
use std::sync::Arc;
use tool::{MAX_SCHEMA_BYTES, McpStatus, McpTool};

/// The most tools one server adds; the rest are reported and left out.
pub const MAX_TOOLS_PER_SERVER: usize = 64;

/// Starts the group's MCP servers and returns their allowed tools and `mcp_status`, or
/// nothing when the group has no `mcp.json`. `reserved` are the tools already in the
/// registry: an MCP tool never takes one of their names.
pub async fn start(
    group_dir: &Path,
    work_dir: &Path,
    reserved: &[ToolDefinition],
) -> Vec<Box<dyn Tool>> {
    let Some(config) = config::load(group_dir) else {
        return Vec::new();
    };
    let mut notes: Vec<String> = Vec::new();
    for problem in &config.problems {
        tracing::warn!(%problem, "MCP configuration problem");
        notes.push(problem.to_string());
    }
    let needs_http = config
        .servers
        .iter()
        .any(|server| matches!(server.transport, config::Transport::Http { .. }));
    let http = if needs_http {
        match http::client() {
            Ok(client) => Some(client),
            Err(error) => {
                tracing::warn!(%error, "cannot set up HTTP for remote MCP servers");
                notes.push(format!("remote MCP servers cannot be used: {error}"));
                None
            }
        }
    } else {
        None
    };
    let servers: Vec<Arc<Server>> = config
        .servers
        .into_iter()
        .map(|server| Arc::new(Server::new(server, work_dir.to_owned(), http.clone())))
        .collect();
    let started = futures_util::future::join_all(servers.iter().map(|server| server.start())).await;

    let mut table = NameTable::new(
        reserved
            .iter()
            .map(|definition| &*definition.name)
            .chain(["mcp_status"]),
    );
    let mut tools: Vec<Box<dyn Tool>> = Vec::new();
    let mut summary = Vec::new();
    let mut kept = Vec::new();
    for (server, result) in servers.into_iter().zip(started) {
        let name = server.config.name.clone();
        let offered = match result {
            Ok(offered) => offered,
            Err(error) => {
                tracing::warn!(mcp_server = %name, %error, "MCP server not started");
                summary.push(format!("{name}: not started: {error}"));
                notes.push(format!("MCP server {name} did not start: {error}"));
                continue;
            }
        };
        let offered_names: Vec<&str> = offered.iter().map(|tool| &*tool.name).collect();
        if let config::AllowList::Named(allowed) = &server.config.allow {
            for missing in allowed
                .iter()
                .filter(|name| !offered_names.contains(&name.as_str()))
            {
                notes.push(format!(
                    "MCP server {name}: allow_tools names {missing:?}, which it does not offer (it offers: {})",
                    offered_names.join(", ")
                ));
            }
        }
        let mut added = Vec::new();
        for remote in offered
            .iter()
            .filter(|tool| server.config.allow.allows(&tool.name))
        {
            if added.len() == MAX_TOOLS_PER_SERVER {
                notes.push(format!(
                    "MCP server {name}: only its first {MAX_TOOLS_PER_SERVER} allowed tools are used"
                ));
                break;
            }
            let schema_bytes =
                serde_json::to_string(&*remote.input_schema).map_or(usize::MAX, |text| text.len());
            if schema_bytes > MAX_SCHEMA_BYTES {
                notes.push(format!(
                    "MCP server {name}: tool {:?} left out: its input schema is larger than {MAX_SCHEMA_BYTES} bytes",
                    remote.name
                ));
                continue;
            }
            match table.claim(&name, &remote.name) {
                Ok(tool_name) => {
                    added.push(tool_name.clone());
                    tools.push(Box::new(McpTool::new(server.clone(), tool_name, remote)));
                }
                Err(taken) => notes.push(format!(
                    "MCP server {name}: tool {:?} left out: its name {taken} is already taken by another tool",
                    remote.name
                )),
            }
        }
        tracing::info!(
            mcp_server = %name,
            offered = %offered_names.join(", "),
            added = %added.join(", "),
            "MCP server started"
        );
        if added.is_empty() {
            // Nothing to call: drop it now (a stdio server's process is killed).
            summary.push(format!(
                "{name}: started, but none of its {} tools is allowed (allow_tools in mcp.json)",
                offered.len()
            ));
        } else {
            summary.push(format!(
                "{name}: {} tool(s): {}",
                added.len(),
                added.join(", ")
            ));
            kept.push(server);
        }
    }
    let servers = kept;
    let mut all: Vec<Box<dyn Tool>> = Vec::with_capacity(tools.len() + 1);
    all.extend(tools);
    all.push(Box::new(McpStatus {
        servers,
        notes,
        summary,
    }));
    all
}

#[cfg(test)]
mod tests;
