//! [`Link`]: the sending side of one live adapter connection — its bounded queue to the
//! writer, the requests waiting for their results (at most `max_outstanding` at once), and
//! the farewell line the writer sends when the host closes it.

use super::ExternalLimits;
use super::wire::{HostLine, ResultLine};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// The sending side of one live connection: its queue to the writer, and the requests
/// waiting for their results.
pub struct Link {
    pub generation: u64,
    queue: mpsc::Sender<HostLine>,
    pending: Mutex<HashMap<String, oneshot::Sender<ResultLine>>>,
    /// Requests outstanding at once; past it a call waits for one to finish.
    slots: Semaphore,
    /// Cancelled when the connection ends (or must end).
    pub closed: CancellationToken,
    /// The last line to write before closing, if any (why the host closed it).
    farewell: Mutex<Option<String>>,
}

/// Why a request got no result.
#[derive(Debug, PartialEq, Eq)]
pub enum CallError {
    /// The connection ended before the result came.
    Dropped,
    /// The queue to the adapter is full: it is not reading.
    QueueFull,
    /// No result within the request timeout.
    TimedOut,
}

impl Link {
    /// A link for connection `generation` and the receiver its writer drains.
    pub fn new(
        generation: u64,
        limits: &ExternalLimits,
        closed: CancellationToken,
    ) -> (Arc<Link>, mpsc::Receiver<HostLine>) {
        let (queue, receiver) = mpsc::channel(limits.queue_lines.max(1));
        let link = Arc::new(Link {
            generation,
            queue,
            pending: Mutex::new(HashMap::new()),
            slots: Semaphore::new(limits.max_outstanding.max(1)),
            closed,
            farewell: Mutex::new(None),
        });
        (link, receiver)
    }

    /// Queues a line that needs no result (an ack, an error), waiting while the queue is
    /// full; false once the connection has ended.
    pub async fn send(&self, line: HostLine) -> bool {
        tokio::select! {
            () = self.closed.cancelled() => false,
            sent = self.queue.send(line) => sent.is_ok(),
        }
    }

    /// Queues a line without waiting; false when the queue is full or closed.
    pub fn try_send(&self, line: HostLine) -> bool {
        self.queue.try_send(line).is_ok()
    }

    /// Hands a result to the request waiting for it; false when none waits (an unknown id,
    /// or a request that needed no result).
    pub fn answered(&self, result: ResultLine) -> bool {
        let waiting = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&result.id);
        match waiting {
            Some(waiting) => {
                if waiting.send(result).is_err() {
                    // The caller gave up the same instant; the result is moot then.
                    tracing::debug!("a result came as its request gave up");
                }
                true
            }
            None => false,
        }
    }

    /// Ends the connection: its outstanding requests fail as dropped, and the writer writes
    /// `farewell` (if any) as an error line before it stops.
    pub fn close(&self, farewell: Option<String>) {
        if let Some(farewell) = farewell {
            self.farewell
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_or_insert(farewell);
        }
        self.closed.cancel();
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// The farewell line, once.
    pub fn take_farewell(&self) -> Option<String> {
        self.farewell
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Sends request `id` and waits for its result.
    pub async fn call(
        &self,
        id: String,
        line: HostLine,
        timeout: Duration,
    ) -> Result<ResultLine, CallError> {
        let _slot = tokio::select! {
            () = self.closed.cancelled() => return Err(CallError::Dropped),
            slot = self.slots.acquire() => slot.map_err(|_| CallError::Dropped)?,
        };
        let (tell, told) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone(), tell);
        // `close` cancels before it clears: a request inserted after the clear sees the
        // cancellation here.
        if self.closed.is_cancelled() {
            self.forget(&id);
            return Err(CallError::Dropped);
        }
        match self.queue.try_send(line) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.forget(&id);
                return Err(CallError::QueueFull);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.forget(&id);
                return Err(CallError::Dropped);
            }
        }
        tokio::select! {
            told = told => told.map_err(|_| CallError::Dropped),
            () = tokio::time::sleep(timeout) => {
                self.forget(&id);
                Err(CallError::TimedOut)
            }
        }
    }

    fn forget(&self, id: &str) {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }
}
