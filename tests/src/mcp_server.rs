//! A real MCP server for the MCP client's end-to-end test: [`McpServer::start`] runs
//! `tests/deps/mcp_server.py`, written with the official MCP Python SDK (FastMCP), over
//! streamable HTTP on `127.0.0.1:<port 0>`. The SDK lives in its own venv, `CRABPOT_MCP_VENV`
//! (by default `/var/tmp/crabpot-mcp-venv`), which `tests/deps/install.sh` prepares. Dropping
//! the server kills it.

use crate::https_server::spawn_printing_port;
use anyhow::bail;
use std::path::PathBuf;
use std::process::{Child, Command};

/// The venv the MCP SDK is installed in.
pub fn venv() -> PathBuf {
    match std::env::var("CRABPOT_MCP_VENV") {
        Ok(path) if !path.trim().is_empty() => PathBuf::from(path),
        Ok(_) | Err(_) => PathBuf::from("/var/tmp/crabpot-mcp-venv"),
    }
}

/// A running SDK server.
pub struct McpServer {
    child: Child,
    port: u16,
}

impl McpServer {
    pub fn start() -> anyhow::Result<Self> {
        let python = venv().join("bin/python");
        if !python.exists() {
            bail!(
                "{} is missing: run tests/deps/install.sh (or set CRABPOT_MCP_VENV to a venv with the `mcp` package)",
                python.display()
            );
        }
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deps/mcp_server.py");
        let what = format!("{} {}", python.display(), script.display());
        let (child, port) = spawn_printing_port(Command::new(&python).arg(&script), &what)?;
        Ok(Self { child, port })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's streamable-HTTP endpoint.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }
}

impl Drop for McpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
