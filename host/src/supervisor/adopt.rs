//! After a host restart: [`Supervisor::adopt`] takes over this install's running containers
//! (found by label), serving their model proxies again and watching their `out/`; containers
//! that are not running, or whose session is gone, are removed. [`Supervisor::stop_all`] is
//! the opposite, for `serve --stop-containers-on-exit`.

use super::{LABEL_INSTALL, LABEL_SESSION, Running, Slot, Supervisor};
use crate::db::central;
use crate::metrics::ContainerExit;
use crate::runtime::ContainerState;
use crate::session::SessionRef;
use crate::session::owner::Owner;
use protocol::SessionId;
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Supervisor {
    /// Adopts this install's running containers after a host restart (by label), serving
    /// their proxies again; removes the ones that are not running.
    pub async fn adopt(self: &Arc<Self>) -> Result<usize, String> {
        let listed = self
            .runtime
            .list_by_label(LABEL_INSTALL, &self.config.install_id)
            .await
            .map_err(|e| e.to_string())?;
        let mut adopted = 0;
        for container in listed {
            let session_id = container
                .labels
                .get(LABEL_SESSION)
                .cloned()
                .unwrap_or_default();
            let found = {
                let id = SessionId::new(session_id.clone());
                self.central
                    .call(move |conn| central::session(conn, &id))
                    .await
                    .ok()
            };
            let group = match &found {
                Some(session) => {
                    let group_id = session.agent_group_id.clone();
                    self.central
                        .call(move |conn| central::agent_group(conn, &group_id))
                        .await
                        .ok()
                }
                None => None,
            };
            match (container.state, found, group) {
                (ContainerState::Running, Some(session), Some(group)) => {
                    let session = SessionRef {
                        id: session.id,
                        agent_group: group.id,
                        group_folder: group.folder,
                    };
                    // An adopted container keeps the uid it runs as (it may predate one uid
                    // per session): its proxy socket must belong to that uid.
                    let owner = match self.adopted_owner(&container.id, &session).await {
                        Ok(owner) => owner,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot adopt; removing");
                            let _ = self.runtime.remove(&container.id).await;
                            continue;
                        }
                    };
                    let cancel = self.shutdown.child_token();
                    if let Err(e) = self.serve_proxy(&session, owner, cancel.clone()) {
                        tracing::warn!(error = %e, "cannot adopt; removing");
                        let _ = self.runtime.remove(&container.id).await;
                        continue;
                    }
                    let running = Running {
                        session: session.clone(),
                        container: container.id.clone(),
                        started_at: Instant::now(),
                        last_activity: Instant::now(),
                        cancel,
                        _watcher: self.watch_out(&session),
                    };
                    self.state()
                        .slots
                        .insert(session.id.clone(), Slot::Running(running));
                    let _ = self.out_changed.send(session);
                    adopted += 1;
                }
                _ => {
                    let _ = self.runtime.remove(&container.id).await;
                }
            }
        }
        Ok(adopted)
    }

    /// The uid:gid an adopted container runs as, as the engine reports it.
    async fn adopted_owner(
        &self,
        container: &crate::runtime::ContainerId,
        session: &SessionRef,
    ) -> Result<Owner, String> {
        let info = self
            .runtime
            .inspect(container)
            .await
            .map_err(|e| e.to_string())?;
        let parsed = info
            .policy
            .user
            .split_once(':')
            .and_then(|(uid, gid)| Some((uid.parse().ok()?, gid.parse().ok()?)));
        match parsed {
            Some((uid, gid)) => Ok(Owner {
                uid,
                gid,
                chown: rustix::process::getuid().is_root(),
            }),
            // Not numeric (policy refuses that on create): the session's own owner.
            None => self
                .sessions
                .owner(session)
                .await
                .map_err(|e| e.to_string()),
        }
    }

    /// Stops every container of this install (used by `serve --stop-containers-on-exit`).
    pub async fn stop_all(self: &Arc<Self>) {
        let sessions = self.running_sessions();
        for session in sessions {
            self.stop_session(&session, Duration::from_secs(3)).await;
            crate::metrics::global().container_exited(ContainerExit::Shutdown);
        }
    }
}
