//! A real MCP server for the MCP client's end-to-end test: [`McpServer::start`] runs
//! `tests/deps/mcp_server.py`, written with the official MCP Python SDK (FastMCP), over
//! streamable HTTP on `127.0.0.1:<port 0>`. The SDK lives in its own venv, `CRABPOT_MCP_VENV`
//! (by default `/var/tmp/crabpot-mcp-venv`), which `tests/deps/install.sh` prepares. Dropping
//! the server kills it.

use anyhow::{Context, bail};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

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
        let mut child = Command::new(&python)
            .arg(&script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {} {}", python.display(), script.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        // The script prints its port once it listens (or exits on an error).
        BufReader::new(stdout).read_line(&mut line)?;
        match line.trim().parse::<u16>() {
            Ok(port) => Ok(Self { child, port }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("mcp_server.py did not print its port (got {line:?})")
            }
        }
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
