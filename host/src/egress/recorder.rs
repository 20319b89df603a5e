//! Recording egress attempts without ever blocking the proxy: [`EgressRecorder`] puts each
//! [`EgressAttempt`] on a bounded queue, and [`persist_attempts`] writes them to the central
//! DB on its thread, the way the proxy's usage records are written. When the queue is full
//! (the DB is stuck, or a container floods the proxy) attempts are dropped and counted, with
//! a warning, rather than held in memory without bound.

use crate::db::DbThread;
use crate::db::central::egress_log::{self, EgressAttempt};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How many attempts may wait for the DB before new ones are dropped.
pub const QUEUE_CAPACITY: usize = 4096;

/// Sends attempts to the DB writer. Cheap to clone; never blocks and never fails.
#[derive(Clone, Debug)]
pub struct EgressRecorder {
    queue: mpsc::Sender<EgressAttempt>,
    dropped: Arc<AtomicU64>,
}

impl EgressRecorder {
    /// A recorder and the receiving end for [`persist_attempts`] (or a test).
    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<EgressAttempt>) {
        let (queue, receiver) = mpsc::channel(capacity.max(1));
        (
            Self {
                queue,
                dropped: Arc::new(AtomicU64::new(0)),
            },
            receiver,
        )
    }

    /// Queues one attempt for the DB.
    pub fn record(&self, attempt: EgressAttempt) {
        match self.queue.try_send(attempt) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(attempt)) => {
                let n_dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                // Warn on the first drop and then on every thousandth, not once per attempt.
                if n_dropped == 1 || n_dropped.is_multiple_of(1000) {
                    tracing::warn!(
                        n_dropped,
                        session_id = %attempt.session_id,
                        "the egress log queue is full; attempts are not being recorded"
                    );
                }
            }
            Err(mpsc::error::TrySendError::Closed(attempt)) => {
                tracing::debug!(session_id = %attempt.session_id, host = %attempt.host, "egress log writer is gone; attempt not recorded");
            }
        }
    }

    /// Attempts dropped so far because the queue was full.
    pub fn n_dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Writes queued attempts to the central DB until shutdown or until every recorder is gone.
pub async fn persist_attempts(
    central: Arc<DbThread<rusqlite::Connection>>,
    mut attempts: mpsc::Receiver<EgressAttempt>,
    shutdown: CancellationToken,
) {
    loop {
        let attempt = tokio::select! {
            attempt = attempts.recv() => match attempt {
                Some(attempt) => attempt,
                None => return,
            },
            () = shutdown.cancelled() => return,
        };
        let host = attempt.host.clone();
        if let Err(error) = central
            .call(move |conn| egress_log::record_attempt(conn, &attempt))
            .await
        {
            tracing::warn!(%error, %host, "recording an egress attempt failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::central::egress_log::AttemptKind;
    use protocol::{AgentGroupId, SessionId};

    fn attempt(host: &str) -> EgressAttempt {
        EgressAttempt::new(
            SessionId::new("s"),
            AgentGroupId::new("g"),
            host,
            443,
            AttemptKind::Connect,
        )
    }

    #[tokio::test]
    async fn a_full_queue_drops_instead_of_blocking() {
        let (recorder, mut receiver) = EgressRecorder::channel(2);
        for host in ["a", "b", "c", "d"] {
            recorder.record(attempt(host));
        }
        assert_eq!(recorder.n_dropped(), 2);
        assert_eq!(receiver.recv().await.unwrap().host, "a");
        assert_eq!(receiver.recv().await.unwrap().host, "b");
        assert!(receiver.try_recv().is_err());
    }

    #[tokio::test]
    async fn attempts_reach_the_central_db() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crabpot.db");
        let central =
            Arc::new(DbThread::spawn("central", move || crate::db::central::open(&path)).unwrap());
        let (recorder, receiver) = EgressRecorder::channel(8);
        let shutdown = CancellationToken::new();
        let writer = tokio::spawn(persist_attempts(
            Arc::clone(&central),
            receiver,
            shutdown.clone(),
        ));
        recorder.record(attempt("recorded.example"));
        drop(recorder);
        // The writer ends once the last recorder is gone and the queue is drained.
        writer.await.unwrap();
        let listed = central
            .call(|conn| egress_log::list_attempts(conn, &Default::default()))
            .await
            .unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].attempt.host, "recorded.example");
    }
}
