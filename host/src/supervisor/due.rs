//! Waking sessions for their scheduled rows ([`Supervisor::wake_due`]). A running container's
//! runner wakes itself when a scheduled row comes due; a session without one is found here,
//! through the central DB's copy of each session's earliest scheduled row
//! (`sessions.next_due_at`, kept by `crate::tasks`), and given a container.

use super::{Slot, Supervisor};
use crate::db::central::tasks as task_db;
use crate::session::SessionRef;
use std::sync::Arc;

impl Supervisor {
    /// Copies a session's earliest scheduled row into the central DB again (after rows were
    /// failed, which may have written a recurring task's next run).
    pub(super) async fn refresh_due(&self, session: &SessionRef) {
        let earliest = self
            .sessions
            .with_inbound(session, |tx, _| {
                Ok(protocol::series::earliest_scheduled(tx)?)
            })
            .await;
        if let Ok(earliest) = earliest {
            let id = session.id.clone();
            let _ = self
                .central
                .call(move |conn| task_db::set_next_due(conn, &id, earliest))
                .await;
        }
    }

    /// Starts containers for sessions whose scheduled rows are due and that have none; for a
    /// session with nothing due after all (a task cancelled meanwhile), corrects the copy. A
    /// panic in here is logged and never ends the sweep.
    pub async fn wake_due(self: &Arc<Self>) {
        use futures_util::FutureExt;
        let woken = std::panic::AssertUnwindSafe(self.wake_due_sessions())
            .catch_unwind()
            .await;
        if woken.is_err() && self.log_gate.should_log("supervisor.wake_due panic") {
            tracing::error!("waking due sessions panicked; the next sweep tries again");
        }
    }

    async fn wake_due_sessions(self: &Arc<Self>) {
        let now = protocol::time::now_ms();
        let due = match self
            .central
            .call(move |conn| task_db::due_sessions(conn, now))
            .await
        {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the sessions that are due");
                return;
            }
        };
        for (id, agent_group, group_folder) in due {
            let busy = {
                let state = self.state();
                matches!(
                    state.slots.get(&id),
                    Some(Slot::Running(_) | Slot::Starting)
                ) || state.queue.iter().any(|queued| queued.id == id)
            };
            if busy {
                continue;
            }
            let session = SessionRef {
                id,
                agent_group,
                group_folder,
            };
            let found = if self.sessions.paths(&session).inbound_db().exists() {
                self.sessions
                    .with_inbound(&session, move |tx, _| {
                        Ok((
                            protocol::inbound::count_due_triggers(tx, now)?,
                            protocol::series::earliest_scheduled(tx)?,
                        ))
                    })
                    .await
            } else {
                Ok((0, None))
            };
            match found {
                Ok((n_due, _)) if n_due > 0 => {
                    tracing::info!(session_id = %session.id, n_due, "a scheduled row is due; waking the session");
                    self.wake(&session);
                }
                Ok((_, earliest)) => {
                    let id = session.id.clone();
                    let _ = self
                        .central
                        .call(move |conn| task_db::set_next_due(conn, &id, earliest))
                        .await;
                }
                Err(e) => {
                    tracing::warn!(session_id = %session.id, error = %e, "cannot check the session's due rows")
                }
            }
        }
    }
}
