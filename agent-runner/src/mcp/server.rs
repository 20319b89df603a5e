//! One MCP server of the group: [`Server`] connects to it (a child process for stdio, rmcp's
//! streamable-HTTP transport through the egress proxy for a URL), lists its tools, calls
//! them with the entry's timeout, and reconnects lazily: a call that finds the connection
//! gone (the child exited, the HTTP session ended) starts it again first. A call that fails
//! mid-way is not retried — the server may have acted on it — but the broken connection is
//! dropped, so the next call starts afresh.
//!
//! A stdio server runs in the workspace (`/session/work`) with the runner's environment plus
//! the entry's `env` (so the egress proxy variables reach it too); its stderr goes to the
//! runner's log, a chunk at a time; it is killed when its connection is dropped, and so when
//! the runner exits.

use super::config::{ServerConfig, Transport};
use super::http;
use rmcp::model::{CallToolRequestParams, CallToolResult, JsonObject};
use rmcp::service::{RunningService, ServiceError};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{RoleClient, ServiceExt};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex as StdMutex;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::process::Child;

/// How long starting a server (process or HTTP session, `initialize` and `tools/list`) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// The most of one stderr chunk logged.
const STDERR_CHUNK: usize = 2048;

/// A live connection: the rmcp client and, for stdio, the child it talks to.
struct Connection {
    service: RunningService<RoleClient, ()>,
    /// Killed on drop.
    child: Option<Child>,
}

impl Connection {
    fn is_alive(&mut self) -> bool {
        let exited = self
            .child
            .as_mut()
            .is_some_and(|child| !matches!(child.try_wait(), Ok(None)));
        !exited && !self.service.is_closed() && !self.service.peer().is_transport_closed()
    }
}

/// One declared server and its connection, if any.
pub struct Server {
    pub config: ServerConfig,
    work_dir: PathBuf,
    http: Option<reqwest_mcp::Client>,
    connection: tokio::sync::Mutex<Option<Connection>>,
    /// What went wrong last, for `mcp_status`.
    last_error: StdMutex<Option<String>>,
}

impl Server {
    pub fn new(config: ServerConfig, work_dir: PathBuf, http: Option<reqwest_mcp::Client>) -> Self {
        Self {
            config,
            work_dir,
            http,
            connection: tokio::sync::Mutex::new(None),
            last_error: StdMutex::new(None),
        }
    }

    /// Connects and lists the server's tools.
    pub async fn start(&self) -> Result<Vec<rmcp::model::Tool>, String> {
        let result = tokio::time::timeout(CONNECT_TIMEOUT, async {
            let connection = self.connect().await?;
            let tools = connection
                .service
                .peer()
                .list_all_tools()
                .await
                .map_err(|error| format!("listing its tools failed: {error}"))?;
            *self.connection.lock().await = Some(connection);
            Ok(tools)
        })
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "it did not start and list its tools within {} s",
                CONNECT_TIMEOUT.as_secs()
            ))
        });
        self.note(&result);
        result
    }

    /// Calls `tool` (the server's own name for it).
    pub async fn call(&self, tool: &str, arguments: JsonObject) -> Result<CallToolResult, String> {
        let result = self.try_call(tool, arguments).await;
        self.note(&result);
        result
    }

    async fn try_call(&self, tool: &str, arguments: JsonObject) -> Result<CallToolResult, String> {
        let peer = {
            let mut connection = self.connection.lock().await;
            if !connection.as_mut().is_some_and(Connection::is_alive) {
                // Dropping the old connection kills its child, if any.
                *connection = None;
                tracing::info!(mcp_server = %self.config.name, "(re)connecting to the MCP server");
                let fresh = tokio::time::timeout(CONNECT_TIMEOUT, self.connect())
                    .await
                    .unwrap_or_else(|_| Err("it did not start in time".into()))
                    .map_err(|error| {
                        format!(
                            "the MCP server {} is not running: {error}",
                            self.config.name
                        )
                    })?;
                *connection = Some(fresh);
            }
            match connection.as_ref() {
                Some(connection) => connection.service.peer().clone(),
                None => return Err("the MCP server connection is gone".into()),
            }
        };
        let mut params = CallToolRequestParams::new(tool.to_owned());
        params.arguments = Some(arguments);
        match tokio::time::timeout(self.config.timeout, peer.call_tool(params)).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(ServiceError::McpError(error))) => Err(format!(
                "the MCP server {} answered with an error: {}",
                self.config.name, error.message
            )),
            Ok(Err(error)) => {
                self.connection.lock().await.take();
                Err(format!(
                    "the call to the MCP server {} failed: {error}; it will be restarted on the next call",
                    self.config.name
                ))
            }
            Err(_) => Err(format!(
                "the MCP server {} did not answer within {} s",
                self.config.name,
                self.config.timeout.as_secs()
            )),
        }
    }

    /// The last problem, if the last start or call failed.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .map(|last| last.clone())
            .unwrap_or_default()
    }

    fn note<T>(&self, result: &Result<T, String>) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = result.as_ref().err().cloned();
        }
    }

    async fn connect(&self) -> Result<Connection, String> {
        match &self.config.transport {
            Transport::Stdio { command, args, env } => self.connect_stdio(command, args, env).await,
            Transport::Http { url } => self.connect_http(url).await,
        }
    }

    async fn connect_stdio(
        &self,
        command: &str,
        args: &[String],
        env: &std::collections::BTreeMap<String, String>,
    ) -> Result<Connection, String> {
        let mut child = tokio::process::Command::new(command)
            .args(args)
            .envs(env)
            .current_dir(&self.work_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| format!("cannot start {command:?}: {error}"))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("the child process has no stdin or stdout".into());
        };
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(log_stderr(self.config.name.clone(), stderr));
        }
        let service = ()
            .serve((stdout, stdin))
            .await
            .map_err(|error| format!("the MCP handshake failed: {error}"))?;
        Ok(Connection {
            service,
            child: Some(child),
        })
    }

    async fn connect_http(&self, url: &str) -> Result<Connection, String> {
        let Some(client) = self.http.clone() else {
            return Err("no HTTP client (it could not be set up; see the log)".into());
        };
        let transport = StreamableHttpClientTransport::with_client(
            client,
            StreamableHttpClientTransportConfig::with_uri(url),
        );
        match ().serve(transport).await {
            Ok(service) => Ok(Connection {
                service,
                child: None,
            }),
            Err(error) => Err(match http::egress_refusal(url).await {
                Some(refusal) => format!("egress refused: {refusal}"),
                None => format!("cannot reach {url}: {error}"),
            }),
        }
    }
}

/// Copies a stdio server's stderr into the log until it closes, a bounded chunk at a time.
async fn log_stderr(server: String, mut stderr: tokio::process::ChildStderr) {
    let mut chunk = vec![0u8; STDERR_CHUNK];
    loop {
        match stderr.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let text = String::from_utf8_lossy(&chunk[..n]);
                tracing::info!(mcp_server = %server, stderr = %text.trim_end(), "MCP server output");
            }
        }
    }
}
