//! Test support for the tools: [`Fixture`], a session folder in a tempdir where the test
//! plays the host (it writes `inbound.db`), an open store, and a [`ToolContext`] to call
//! tools with ([`Fixture::call`]).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::{Tool, ToolContext, ToolLimits, ToolOutcome, TurnEffects, workspace::Workspace};
use crate::config::Limits;
use crate::store::StoreThread;
use crate::tools::ToolRegistry;
use crate::transcript::ToolCall;
use protocol::schema::{create_outbound, open_inbound_writer, open_outbound_reader};
use protocol::{
    Destination, DestinationType, MessageId, OutboundRow, SessionConfig, SessionPaths,
    SessionRouting, inbound, outbound,
};
use rusqlite::Connection;

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub paths: SessionPaths,
    pub host: Connection,
    pub store: StoreThread,
    pub workspace: Workspace,
    pub limits: Limits,
    pub tool_limits: ToolLimits,
    pub effects: TurnEffects,
    pub destinations: Vec<Destination>,
    pub routing: SessionRouting,
    pub in_reply_to: MessageId,
}

impl Fixture {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let paths = SessionPaths::at(dir.path().join("session"));
        for folder in [paths.in_dir(), paths.out_dir(), paths.work_dir()] {
            std::fs::create_dir_all(folder).unwrap();
        }
        let host = open_inbound_writer(&paths.inbound_db()).unwrap();
        create_outbound(&paths.outbound_db()).unwrap();
        let config = SessionConfig {
            poll_interval_ms: 60_000,
            ..SessionConfig::default()
        };
        inbound::set_config(&host, &config).unwrap();
        let store = StoreThread::open(paths.clone()).await.unwrap();
        let destinations = vec![Destination {
            name: "family".into(),
            display_name: "Family chat".into(),
            destination_type: DestinationType::Channel,
            channel_type: Some("telegram".into()),
            platform_id: Some("-100".into()),
            thread_id: None,
            agent_group_id: None,
        }];
        Self {
            workspace: Workspace::new(paths.work_dir()),
            dir,
            paths,
            host,
            store,
            limits: Limits::new(config),
            tool_limits: ToolLimits {
                shell: "sh".into(),
                ..ToolLimits::default()
            },
            effects: TurnEffects::default(),
            destinations,
            routing: SessionRouting {
                channel_type: "cli".into(),
                platform_id: "local".into(),
                thread_id: None,
            },
            in_reply_to: MessageId::new("m-in"),
        }
    }

    pub fn context(&mut self) -> ToolContext<'_> {
        ToolContext {
            store: &self.store.handle,
            destinations: &self.destinations,
            routing: Some(&self.routing),
            in_reply_to: &self.in_reply_to,
            effects: &mut self.effects,
            paths: &self.paths,
            workspace: &self.workspace,
            limits: &self.limits,
            tool_limits: &self.tool_limits,
        }
    }

    /// Calls one tool through a registry holding only it, as the model would.
    pub async fn call(
        &mut self,
        tool: impl Tool + 'static,
        arguments: serde_json::Value,
    ) -> ToolOutcome {
        let name = tool.definition().name;
        let registry = ToolRegistry::new(vec![Box::new(tool)]);
        let call = ToolCall {
            id: "call_1".into(),
            name: name.into(),
            arguments: arguments.to_string(),
        };
        let mut context = self.context();
        registry.run(&mut context, &call).await
    }

    /// A call that must succeed; returns its text.
    pub async fn ok(&mut self, tool: impl Tool + 'static, arguments: serde_json::Value) -> String {
        let outcome = self.call(tool, arguments).await;
        assert!(!outcome.is_error, "unexpected error: {}", outcome.content);
        outcome.content
    }

    /// A call that must fail; returns its error text.
    pub async fn error(
        &mut self,
        tool: impl Tool + 'static,
        arguments: serde_json::Value,
    ) -> String {
        let outcome = self.call(tool, arguments).await;
        assert!(outcome.is_error, "unexpected success: {}", outcome.content);
        outcome.content
    }

    pub fn work(&self, relative: &str) -> std::path::PathBuf {
        self.paths.work_dir().join(relative)
    }

    pub fn outbound_rows(&self) -> Vec<OutboundRow> {
        let reader = open_outbound_reader(&self.paths.outbound_db()).unwrap();
        outbound::read_after(&reader, protocol::Seq(-1), 1000, 1 << 20)
            .unwrap()
            .into_iter()
            .map(|row| row.unwrap())
            .collect()
    }

    /// The `container_state` row: current tool and declared timeout.
    pub fn container_state(&self) -> (Option<String>, Option<i64>) {
        let reader = open_outbound_reader(&self.paths.outbound_db()).unwrap();
        reader
            .query_row(
                "SELECT current_tool, tool_timeout_ms FROM container_state WHERE id = 1",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap_or((None, None))
    }
}

/// Polls `condition` every few milliseconds until it holds, failing after 10 seconds.
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}
