//! Failed sessions ("quarantine", DESIGN §3 "the host's edge"): a session whose `outbound.db`
//! is hostile or broken is marked failed once, with its reason ([`Supervisor::quarantine`]):
//! logged once, recorded in the central DB (`sessions.failed_reason`, `failed_at`), its
//! container stopped, and its origin told. From then on [`Supervisor::wake`] starts no
//! container for it ([`Supervisor::refuse_failed`]): whoever writes to it is told that the
//! conversation's agent failed and that `crabpot sessions reset <id>` brings it back. A reset
//! deletes the session row and with it the failure; [`Supervisor::clear_failure`] forgets
//! the in-memory mark. Failures survive a host restart ([`Supervisor::load_failures`]).
//!
//! Key type: [`Failures`], the in-memory set the supervisor checks on every wake.

use super::{Notice, Supervisor};
use crate::db::central::sessions as session_db;
use crate::metrics::ContainerExit;
use crate::session::SessionRef;
use protocol::SessionId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Longest failure reason kept, in characters (it can quote what a container wrote).
const MAX_REASON_CHARS: usize = 500;

/// The failed sessions and why.
#[derive(Debug, Default)]
pub struct Failures(Mutex<HashMap<SessionId, String>>);

impl Failures {
    fn lock(&self) -> MutexGuard<'_, HashMap<SessionId, String>> {
        // Only inserts and lookups happen under this lock; a panic cannot leave it torn.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn reset_hint(session: &SessionId) -> String {
    format!(
        "an admin can bring it back with `crabpot sessions reset {session}` (this forgets the conversation)"
    )
}

impl Supervisor {
    /// True when the session is marked failed.
    pub fn is_failed(&self, session: &SessionId) -> bool {
        self.failures.lock().contains_key(session)
    }

    /// Marks a session failed because of `reason`: once. Logs it, records it centrally, stops
    /// the container, fails the rows it would have answered and tells its origin. Returns
    /// false when the session was failed already (nothing is done again).
    pub async fn quarantine(self: &Arc<Self>, session: &SessionRef, reason: &str) -> bool {
        let reason: String = reason.chars().take(MAX_REASON_CHARS).collect();
        {
            let mut failures = self.failures.lock();
            if failures.contains_key(&session.id) {
                return false;
            }
            failures.insert(session.id.clone(), reason.clone());
        }
        tracing::error!(session_id = %session.id, group = %session.agent_group, %reason,
            "session failed: its outbound.db is hostile or broken; it gets no container until it is reset");
        let (id, stored_reason) = (session.id.clone(), reason.clone());
        if let Err(e) = self
            .central
            .call(move |conn| session_db::set_session_failed(conn, &id, &stored_reason))
            .await
        {
            tracing::warn!(session_id = %session.id, error = %e, "recording the session's failure failed");
        }
        self.state().queue.retain(|queued| queued.id != session.id);
        if self.container_state(&session.id) == "running" {
            crate::metrics::global().container_exited(ContainerExit::Failed);
        }
        self.stop_session(session, Duration::ZERO).await;
        let finished = self.fail_pending(session, &reason).await;
        let _ = self.notices.send(Notice {
            session: session.clone(),
            text: format!(
                "this conversation's agent failed and was stopped: {reason}; {}",
                reset_hint(&session.id)
            ),
            finished,
        });
        true
    }

    /// Called by `wake`: for a failed session, starts nothing; the rows waiting for it are
    /// failed and their sender told. Returns true when the session is failed.
    pub(super) fn refuse_failed(self: &Arc<Self>, session: &SessionRef) -> bool {
        let Some(reason) = self.failures.lock().get(&session.id).cloned() else {
            return false;
        };
        let this = Arc::clone(self);
        let session = session.clone();
        self.tasks.spawn(async move {
            let finished = this.fail_pending(&session, &reason).await;
            // Only a new message is answered: other wakes (the host's own notes) stay quiet.
            if !finished.is_empty() {
                let _ = this.notices.send(Notice {
                    text: format!(
                        "this conversation's agent failed ({reason}) and takes no messages; {}",
                        reset_hint(&session.id)
                    ),
                    session,
                    finished,
                });
            }
        });
        true
    }

    /// Loads the failures recorded centrally (at start) and stops any container of a failed
    /// session that was adopted meanwhile.
    pub async fn load_failures(self: &Arc<Self>) {
        let failed = match self
            .central
            .call(|conn| session_db::failed_sessions(conn))
            .await
        {
            Ok(failed) => failed,
            Err(e) => {
                tracing::warn!(error = %e, "cannot load the failed sessions");
                return;
            }
        };
        if failed.is_empty() {
            return;
        }
        tracing::info!(
            failed = failed.len(),
            "sessions marked failed get no container until reset"
        );
        self.failures.lock().extend(failed);
        for running in self.running_sessions() {
            if self.is_failed(&running.id) {
                self.stop_session(&running, Duration::ZERO).await;
                crate::metrics::global().container_exited(ContainerExit::Failed);
            }
        }
    }

    /// Forgets a session's failure (after a reset).
    pub fn clear_failure(&self, session: &SessionId) {
        self.failures.lock().remove(session);
    }
}
