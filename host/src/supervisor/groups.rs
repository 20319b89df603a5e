//! What the supervisor does for a whole agent group or on an operator's request: project
//! destination changes into every session of a group at once ([`Supervisor::reproject_group`]),
//! apply a group's container limits ([`Supervisor::limits_for`]), restart or stop a group's
//! containers, stop one session, and say where a session's container stands.

use super::{Slot, Supervisor};
use crate::db::central;
use crate::metrics::ContainerExit;
use crate::runtime::ContainerLimits;
use crate::session::SessionRef;
use protocol::SessionId;
use std::sync::Arc;
use std::time::Duration;

impl Supervisor {
    /// The container limits of a session's agent group: the host's, with the group's
    /// overrides applied.
    pub(super) async fn limits_for(&self, session: &SessionRef) -> ContainerLimits {
        let group = session.agent_group.clone();
        let mut limits = self.config.limits;
        let overrides = self
            .central
            .call(move |conn| Ok(central::agent_group(conn, &group)?.overrides()))
            .await;
        match overrides {
            Ok(overrides) => {
                if let Some(mb) = overrides.memory_mb {
                    limits.memory_bytes = mb * 1024 * 1024;
                }
                if let Some(cpus) = overrides.cpus {
                    limits.nano_cpus = (cpus * 1e9) as i64;
                }
                if let Some(pids) = overrides.pids_limit {
                    limits.pids_limit = pids;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the group's limits failed; using the defaults")
            }
        }
        limits
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
