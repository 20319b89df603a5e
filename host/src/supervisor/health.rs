//! Container health, called from the sweep: [`Supervisor::check`] notices exited containers,
//! stale heartbeats and idle sessions; after a container goes away its unfinished rows count
//! a try, rows out of tries are `failed` (and the person is told once), and a session with
//! rows still due is woken again.

use super::{LABEL_INSTALL, LABEL_SESSION, MAX_TRIES, Notice, Slot, Supervisor};
use crate::runtime::ContainerState;
use crate::session::SessionRef;
use protocol::InboundStatus;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

impl Supervisor {
    /// Called by the sweep: notices exited containers, stale heartbeats and idle sessions. A
    /// panic in here (a bug, an engine client gone wrong) is logged and the next sweep runs
    /// again: it never ends the sweep.
    pub async fn check(self: &Arc<Self>) {
        use futures_util::FutureExt;
        let checked = std::panic::AssertUnwindSafe(self.check_containers())
            .catch_unwind()
            .await;
        if checked.is_err() && self.log_gate.should_log("supervisor.check panic") {
            tracing::error!("checking the containers panicked; the next sweep tries again");
        }
    }

    async fn check_containers(self: &Arc<Self>) {
        let listed = match self
            .runtime
            .list_by_label(LABEL_INSTALL, &self.config.install_id)
            .await
        {
            Ok(listed) => listed,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list containers");
                return;
            }
        };
        let alive: HashMap<String, ContainerState> = listed
            .iter()
            .map(|c| (c.id.as_str().to_owned(), c.state))
            .collect();
        let now = Instant::now();
        let mut exited = Vec::new();
        let mut stale = Vec::new();
        let mut idle = Vec::new();
        for slot in self.state().slots.values() {
            let Slot::Running(running) = slot else {
                continue;
            };
            let state = alive.get(running.container.as_str()).copied();
            if state != Some(ContainerState::Running) {
                exited.push(running.session.clone());
            } else if now.duration_since(running.started_at) > self.config.heartbeat_stale
                && heartbeat_age(&self.sessions.paths(&running.session).heartbeat())
                    .is_none_or(|age| age > self.config.heartbeat_stale)
            {
                stale.push(running.session.clone());
            } else if now.duration_since(running.last_activity) > self.config.idle_timeout {
                idle.push(running.session.clone());
            }
        }
        for session in stale {
            if self
                .log_gate
                .should_log(&format!("supervisor.stale {}", session.id))
            {
                tracing::warn!(session_id = %session.id, "heartbeat is stale; stopping the container");
            }
            self.stop_session(&session, Duration::ZERO).await;
            crate::metrics::global()
                .container_exited(crate::metrics::ContainerExit::StaleHeartbeat);
            self.after_exit(&session, true).await;
        }
        for session in exited {
            if self
                .log_gate
                .should_log(&format!("supervisor.exit {}", session.id))
            {
                tracing::info!(session_id = %session.id, "container exited");
            }
            self.stop_session(&session, Duration::ZERO).await;
            crate::metrics::global().container_exited(crate::metrics::ContainerExit::Crashed);
            self.after_exit(&session, true).await;
        }
        for session in idle {
            if self.has_due_rows(&session).await {
                self.touch(&session.id);
                continue;
            }
            tracing::info!(session_id = %session.id, "idle; stopping the container");
            self.stop_session(&session, Duration::from_secs(5)).await;
            crate::metrics::global().container_exited(crate::metrics::ContainerExit::Idle);
            // An idle session gives back its loop device and mount until its next start;
            // one that crashed or failed keeps its out/ in view for the operator.
            self.release_disk_if_stopped(&session).await;
            self.after_exit(&session, false).await;
        }
        // Containers of this install that no slot knows of and that are not running: reap.
        let known: Vec<String> = self
            .state()
            .slots
            .values()
            .filter_map(|slot| match slot {
                Slot::Running(r) => Some(r.container.as_str().to_owned()),
                Slot::Starting => None,
            })
            .collect();
        let starting: Vec<String> = self
            .state()
            .slots
            .iter()
            .filter(|(_, slot)| matches!(slot, Slot::Starting))
            .map(|(id, _)| id.to_string())
            .collect();
        for container in listed {
            let session = container
                .labels
                .get(LABEL_SESSION)
                .cloned()
                .unwrap_or_default();
            if !known.contains(&container.id.as_str().to_owned())
                && !starting.contains(&session)
                && container.state != ContainerState::Running
            {
                let _ = self.runtime.remove(&container.id).await;
            }
        }
    }

    /// Stops and removes a session's container and frees its slot.
    pub async fn stop_session(self: &Arc<Self>, session: &SessionRef, grace: Duration) {
        let slot = self.state().slots.remove(&session.id);
        if let Some(Slot::Running(running)) = slot {
            running.cancel.cancel();
            if let Err(e) = self.runtime.stop(&running.container, grace).await {
                tracing::warn!(error = %e, "stopping the container failed");
            }
            if let Err(e) = self.runtime.remove(&running.container).await {
                tracing::warn!(error = %e, "removing the container failed");
            }
        }
        self.fill_from_queue();
    }

    /// After a container went away: count a try for rows it left unfinished, fail those out
    /// of tries, and wake the session again if rows are still due.
    pub(super) async fn after_exit(self: &Arc<Self>, session: &SessionRef, crashed: bool) {
        if crashed {
            let result = self
                .sessions
                .with_inbound(session, |tx, _| {
                    let mut failed = Vec::new();
                    let now = protocol::time::now_ms();
                    for row in protocol::inbound::due_pending(tx, now)? {
                        protocol::inbound::add_try(tx, &row.id)?;
                        if row.tries + 1 >= MAX_TRIES {
                            protocol::inbound::set_status(tx, &row.id, InboundStatus::Failed)?;
                            // A recurring task keeps its schedule even when one run fails.
                            crate::schedule::follow_up(tx, &row, now)?;
                            failed.push((row.seq, row.id));
                        }
                    }
                    Ok(failed)
                })
                .await;
            match result {
                Ok(failed) if !failed.is_empty() => {
                    let _ = self.notices.send(Notice {
                        session: session.clone(),
                        text: format!(
                            "the agent stopped {MAX_TRIES} times while working on this; giving up on message(s) {}",
                            failed.iter().map(|(seq, _)| seq.to_string()).collect::<Vec<_>>().join(", ")
                        ),
                        finished: failed.into_iter().map(|(_, id)| id).collect(),
                    });
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "counting tries failed"),
            }
            self.refresh_due(session).await;
        }
        if self.has_due_rows(session).await {
            self.wake(session);
        }
    }

    pub(super) async fn has_due_rows(&self, session: &SessionRef) -> bool {
        self.sessions
            .with_inbound(session, |tx, _| {
                Ok(protocol::inbound::count_due_triggers(
                    tx,
                    protocol::time::now_ms(),
                )?)
            })
            .await
            .is_ok_and(|n| n > 0)
    }

    /// Marks a session's due rows failed after its container could not start, so they are
    /// not retried forever.
    pub(super) async fn fail_pending(
        &self,
        session: &SessionRef,
        reason: &str,
    ) -> Vec<protocol::MessageId> {
        let result = self
            .sessions
            .with_inbound(session, move |tx, _| {
                let mut failed = Vec::new();
                let now = protocol::time::now_ms();
                for row in protocol::inbound::due_pending(tx, now)? {
                    protocol::inbound::set_status(tx, &row.id, InboundStatus::Failed)?;
                    crate::schedule::follow_up(tx, &row, now)?;
                    failed.push(row.id);
                }
                Ok(failed)
            })
            .await;
        self.refresh_due(session).await;
        result.unwrap_or_else(|e| {
            tracing::warn!(error = %e, %reason, "marking rows failed");
            Vec::new()
        })
    }
}

/// The heartbeat's age. It lies in `out/`, so it is never followed if it is a link (a link's
/// own time counts, which only the session's own container can fake for itself).
pub fn heartbeat_age(path: &std::path::Path) -> Option<Duration> {
    let modified = std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()?;
    SystemTime::now()
        .duration_since(modified)
        .ok()
        .or(Some(Duration::ZERO))
}
