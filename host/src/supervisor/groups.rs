//! What the supervisor does for a whole agent group or on an operator's request: project
//! destination changes into every session of a group at once ([`Supervisor::reproject_group`]),
//! apply a group's container settings ([`Supervisor::container_settings_for`]: limits,
//! image, commit author), restart or stop a group's
//! containers, stop one session, and say where a session's container stands.

use super::{Slot, Supervisor};
use crate::db::central;
use crate::db::central::groups::{ContainerOverrides, ImageChoice};
use crate::metrics::ContainerExit;
use crate::runtime::ContainerLimits;
use crate::session::SessionRef;
use protocol::SessionId;
use std::sync::Arc;
use std::time::Duration;

/// Floors for toolbox containers (Chromium's processes and threads, its profile in `/tmp`).
const TOOLBOX_MIN_MEMORY_BYTES: i64 = 1536 * 1024 * 1024;
const TOOLBOX_MIN_PIDS: i64 = 1024;
const TOOLBOX_MIN_TMPFS_BYTES: u64 = 512 * 1024 * 1024;

/// A session's container settings that come from its agent group.
#[derive(Clone, Debug)]
pub(super) struct GroupContainer {
    pub limits: ContainerLimits,
    pub image: String,
    /// `Name <email>`.
    pub git_author: String,
}

impl Supervisor {
    /// What a session's container is made with from its agent group's settings: the host's
    /// limits with the group's overrides applied, the image it chose, and its commit author.
    pub(super) async fn container_settings_for(&self, session: &SessionRef) -> GroupContainer {
        let group = session.agent_group.clone();
        let found = self
            .central
            .call(move |conn| {
                let group = central::agent_group(conn, &group)?;
                Ok((group.name.clone(), group.overrides()))
            })
            .await;
        let (name, overrides) = match found {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "reading the group's settings failed; using the defaults");
                (
                    session.agent_group.to_string(),
                    ContainerOverrides::default(),
                )
            }
        };
        let toolbox = overrides.image == Some(ImageChoice::Toolbox);
        let mut limits = self.config.limits;
        if toolbox {
            // Chromium and language toolchains need more room than busybox; these are floors
            // under the host's defaults, and a group's own values still win.
            limits.memory_bytes = limits.memory_bytes.max(TOOLBOX_MIN_MEMORY_BYTES);
            limits.pids_limit = limits.pids_limit.max(TOOLBOX_MIN_PIDS);
            limits.tmpfs_tmp_bytes = limits.tmpfs_tmp_bytes.max(TOOLBOX_MIN_TMPFS_BYTES);
        }
        if let Some(mb) = overrides.memory_mb {
            limits.memory_bytes = mb * 1024 * 1024;
        }
        if let Some(cpus) = overrides.cpus {
            limits.nano_cpus = (cpus * 1e9) as i64;
        }
        if let Some(pids) = overrides.pids_limit {
            limits.pids_limit = pids;
        }
        let image = if toolbox {
            self.config.toolbox_image.clone()
        } else {
            self.config.image.clone()
        };
        let git_author = overrides
            .git_author
            .clone()
            .unwrap_or_else(|| format!("{name} <{}@agents.crabpot.invalid>", session.agent_group));
        GroupContainer {
            limits,
            image,
            git_author,
        }
    }

    /// The disk quota of a session's agent group in MiB: the host's, unless the group sets
    /// its own.
    pub(super) async fn quota_for(&self, session: &SessionRef) -> u64 {
        let group = session.agent_group.clone();
        let overrides = self
            .central
            .call(move |conn| Ok(central::agent_group(conn, &group)?.overrides()))
            .await;
        match overrides {
            Ok(overrides) => overrides.disk_quota_mb.unwrap_or(self.config.disk.quota_mb),
            Err(e) => {
                tracing::warn!(error = %e, "reading the group's quota failed; using the default");
                self.config.disk.quota_mb
            }
        }
    }

    /// The sessions of an agent group, as references; `None` (logged, naming what they were
    /// wanted `for_what`) when the central DB cannot list them.
    async fn group_sessions(
        &self,
        group: &protocol::AgentGroupId,
        for_what: &str,
    ) -> Option<Vec<SessionRef>> {
        let group_id = group.clone();
        let found = self
            .central
            .call(move |conn| {
                let group = central::agent_group(conn, &group_id)?;
                let sessions = central::sessions::list_sessions(conn, Some(&group_id))?;
                Ok((group, sessions))
            })
            .await;
        match found {
            Ok((group, sessions)) => Some(
                sessions
                    .into_iter()
                    .map(|stored| SessionRef {
                        id: stored.id,
                        agent_group: group.id.clone(),
                        group_folder: group.folder.clone(),
                    })
                    .collect(),
            ),
            Err(e) => {
                tracing::warn!(%group, error = %e, "cannot list the group's sessions to {for_what}");
                None
            }
        }
    }

    /// Projects the destinations (and config) into every session of an agent group that has
    /// its files already: called after every change to the group's destinations.
    pub async fn reproject_group(&self, group: &protocol::AgentGroupId) {
        let Some(sessions) = self.group_sessions(group, "project").await else {
            return;
        };
        for session in sessions {
            if !self.sessions.paths(&session).inbound_db().exists() {
                continue;
            }
            if let Err(e) = self.project(&session).await {
                tracing::warn!(session_id = %session.id, error = %e, "projecting destinations failed");
            }
        }
    }

    /// Projects into the sessions of every agent group (after a change that may touch many).
    pub async fn reproject_all(&self) {
        let groups = self
            .central
            .call(|conn| central::groups::list_agent_groups(conn))
            .await
            .unwrap_or_default();
        for group in groups {
            self.reproject_group(&group.id).await;
        }
    }

    /// Stops the running containers of an agent group; sessions with due rows get a fresh
    /// container at once, the others on their next message. Returns how many were stopped.
    pub async fn restart_group(self: &Arc<Self>, group: &protocol::AgentGroupId) -> usize {
        let sessions: Vec<SessionRef> = self
            .running_sessions()
            .into_iter()
            .filter(|s| &s.agent_group == group)
            .collect();
        for session in &sessions {
            self.stop_session(session, Duration::from_secs(5)).await;
            crate::metrics::global().container_exited(ContainerExit::Restarted);
            self.after_exit(session, false).await;
        }
        sessions.len()
    }

    /// Stops the containers of an agent group and takes its sessions out of the queue (before
    /// the group is deleted). Returns how many containers were stopped.
    pub async fn stop_group(self: &Arc<Self>, group: &protocol::AgentGroupId) -> usize {
        self.state().queue.retain(|q| &q.agent_group != group);
        let sessions: Vec<SessionRef> = self
            .running_sessions()
            .into_iter()
            .filter(|s| &s.agent_group == group)
            .collect();
        for session in &sessions {
            self.stop_session(session, Duration::from_secs(5)).await;
            crate::metrics::global().container_exited(ContainerExit::Stopped);
        }
        self.release_group_disks(group).await;
        sessions.len()
    }

    /// Unmounts the quota disks of every session of a group (it is being deleted).
    async fn release_group_disks(&self, group: &protocol::AgentGroupId) {
        let Some(sessions) = self.group_sessions(group, "unmount their disks").await else {
            return;
        };
        for session in sessions {
            if let Err(e) = self.release_disk(&session).await {
                tracing::warn!(session_id = %session.id, error = %e, "unmounting the session's disk failed");
            }
        }
    }

    /// Whether a session has a container (running or starting) or waits in the queue.
    pub fn container_state(&self, session: &SessionId) -> &'static str {
        let state = self.state();
        match state.slots.get(session) {
            Some(Slot::Running(_)) => "running",
            Some(Slot::Starting) => "starting",
            None if state.queue.iter().any(|q| &q.id == session) => "queued",
            None => "none",
        }
    }

    /// Stops a session's container (if any) and takes it out of the queue.
    pub async fn stop_by_id(self: &Arc<Self>, session: &SessionRef) {
        self.state().queue.retain(|q| q.id != session.id);
        if self.container_state(&session.id) == "running" {
            crate::metrics::global().container_exited(ContainerExit::Stopped);
        }
        self.stop_session(session, Duration::from_secs(5)).await;
    }
}
