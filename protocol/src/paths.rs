//! The session folder layout of DESIGN §3: [`SessionPaths`] and the names inside it.
//!
//! The same relative layout holds on the host (`data/sessions/<group>/<session>/`) and inside
//! the container (`/session/`), so both sides build paths with one type.

use std::path::{Path, PathBuf};

pub const IN_DIR: &str = "in";
pub const OUT_DIR: &str = "out";
pub const WORK_DIR: &str = "work";
pub const INBOUND_DB: &str = "inbound.db";
pub const OUTBOUND_DB: &str = "outbound.db";
pub const HEARTBEAT: &str = "heartbeat";
pub const PROXY_SOCKET: &str = "proxy.sock";
pub const INBOX: &str = "inbox";
pub const OUTBOX: &str = "outbox";
/// The runner's model transcript, agent-private state under `out/`.
pub const TRANSCRIPT: &str = "transcript.jsonl";

/// Where the session folder is mounted inside the container.
pub const CONTAINER_SESSION_ROOT: &str = "/session";
/// Where the agent group folder is mounted (read-only) inside the container.
pub const CONTAINER_GROUP_DIR: &str = "/group";
/// The agent's instructions inside the group folder.
pub const AGENT_INSTRUCTIONS: &str = "AGENT.md";

/// Paths of one session folder, rooted on the host or inside the container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionPaths {
    root: PathBuf,
}

impl SessionPaths {
    /// The folder of a session on the host: `<sessions_root>/<agent_group>/<session>`.
    /// Callers check both names with [`crate::ids::is_safe_folder_name`] first.
    pub fn on_host(sessions_root: &Path, agent_group: &str, session: &str) -> Self {
        Self {
            root: sessions_root.join(agent_group).join(session),
        }
    }

    /// The session folder as the container sees it.
    pub fn in_container() -> Self {
        Self {
            root: PathBuf::from(CONTAINER_SESSION_ROOT),
        }
    }

    /// A session folder at an arbitrary root (tests, tools).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn in_dir(&self) -> PathBuf {
        self.root.join(IN_DIR)
    }
    pub fn out_dir(&self) -> PathBuf {
        self.root.join(OUT_DIR)
    }
    pub fn work_dir(&self) -> PathBuf {
        self.root.join(WORK_DIR)
    }
    pub fn inbound_db(&self) -> PathBuf {
        self.in_dir().join(INBOUND_DB)
    }
    pub fn outbound_db(&self) -> PathBuf {
        self.out_dir().join(OUTBOUND_DB)
    }
    pub fn heartbeat(&self) -> PathBuf {
        self.out_dir().join(HEARTBEAT)
    }
    pub fn proxy_socket(&self) -> PathBuf {
        self.in_dir().join(PROXY_SOCKET)
    }
    pub fn inbox(&self, message_id: &str) -> PathBuf {
        self.in_dir().join(INBOX).join(message_id)
    }
    pub fn outbox(&self, message_id: &str) -> PathBuf {
        self.out_dir().join(OUTBOX).join(message_id)
    }
    pub fn transcript(&self) -> PathBuf {
        self.out_dir().join(TRANSCRIPT)
    }
}
