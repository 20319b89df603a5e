//! The shared harness of crabpot's end-to-end suite.
//!
//! The end-to-end tests run the real host binary ([`host_process::HostProcess`]), which starts
//! real containers running the real agent-runner, against a fake model server
//! ([`fake_model::FakeModel`]) that speaks the real OpenAI Chat Completions and Anthropic
//! Messages wire formats (JSON and SSE streaming, tool calls, error replies) and records every
//! request it receives. [`docker`] holds the Docker helpers those tests need (reachability with
//! the `CRABPOT_SKIP_DOCKER=1` escape hatch, listing and inspecting containers by label, `exec`
//! inside a container, a drop guard that removes containers), and [`http_client`] a small HTTP/1
//! client over TCP or a unix socket with an SSE parser, so tests can talk to servers directly.
//! [`process_usage`] reads what a process takes (RSS, peak RSS, file descriptors, CPU share) from
//! `/proc`, for the hostile-session suite's bounds and `make bench`. [`fake_platform`] is the
//! recording loopback server the fake chat platforms (Telegram, Slack, Discord) are built on,
//! and [`webhook_receiver`] a receiver of outbound webhooks built on it.
//!
//! Nothing here sleeps to wait for something: waits are notifications or polls with an
//! explicit deadline, and every server binds its port before it is spawned.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod bench;
pub mod browser;
pub mod crash;
pub mod docker;
pub mod fake_discord;
pub mod fake_model;
pub mod fake_platform;
pub mod fake_search;
pub mod fake_slack;
pub mod fake_telegram;
pub mod host_process;
pub mod http_client;
pub mod https_server;
pub mod mail_server;
pub mod mcp_server;
pub mod process_usage;
pub mod prometheus;
pub mod synapse;
pub mod webhook_receiver;

use std::path::PathBuf;

/// The agent image used when neither `CRABPOT_IMAGE` nor the test says otherwise.
pub const DEFAULT_IMAGE: &str = "crabpot-agent:latest";

/// The root of the repository (the workspace), derived from this crate's manifest dir.
pub fn repo_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(PathBuf::from)
        .unwrap_or(manifest_dir)
}

/// The agent image the tests run: env `CRABPOT_IMAGE` if set and non-empty, else
/// [`DEFAULT_IMAGE`].
pub fn image_name() -> String {
    match std::env::var("CRABPOT_IMAGE") {
        Ok(image) if !image.trim().is_empty() => image,
        Ok(_) | Err(_) => DEFAULT_IMAGE.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_root_is_the_workspace() {
        let root = repo_root();
        assert!(root.join("Cargo.toml").is_file(), "{}", root.display());
        assert!(root.join("tests").join("Cargo.toml").is_file());
        assert!(root.join("protocol").is_dir());
    }
}
