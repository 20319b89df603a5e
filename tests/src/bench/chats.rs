//! Hosts with many chats: [`start_host_with_chats`] starts a host, stops it, wires the given
//! `cli` chats to `main` in its central DB (each in `shared` mode, so each chat is its own
//! session), and starts it again. Messages then reach a chat through the `chat` field of the
//! cli protocol.

use anyhow::Context;
use host::db::central::{self, NewWiring, SessionMode};

use super::cleanup::register_install;
use crate::host_process::{HostOptions, HostProcess};

/// The chat's channel: the cli protocol can name any `cli` chat.
const CHANNEL: &str = "cli";

pub async fn start_host_with_chats(
    options: HostOptions,
    chats: &[String],
) -> anyhow::Result<HostProcess> {
    let mut host = HostProcess::start(options).await?;
    register_install(host.install_id());
    host.stop()?;
    wire_chats(&host, chats)?;
    host.restart().await?;
    Ok(host)
}

/// Wires each chat to `main` in the stopped host's central DB.
fn wire_chats(host: &HostProcess, chats: &[String]) -> anyhow::Result<()> {
    let path = host.data_dir().join("crabpot.db");
    let mut conn = central::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let tx = conn.transaction()?;
    let group = central::ensure_agent_group(&tx, "main", "Main")?;
    for name in chats {
        let (chat, _) = central::ensure_messaging_group(&tx, CHANNEL, name, name, false)?;
        central::ensure_wiring(
            &tx,
            &chat,
            &group.id,
            &NewWiring {
                session_mode: SessionMode::Shared,
                engage_mode: "pattern".into(),
                engage_pattern: Some(".*".into()),
                priority: 0,
                destination_name: name.clone(),
            },
        )?;
    }
    tx.commit()?;
    Ok(())
}
