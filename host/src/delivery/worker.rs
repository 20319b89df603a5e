//! One session's delivery task ([`SessionWorker`]) and the dispatcher's handle on it
//! ([`WorkerHandle`]). The task sleeps until it is signalled (a coalesced "dirty" bit per
//! cause, [`Signals`]) or until a waiting row comes due, then makes one pass ([`Pass`]) over
//! the session's `outbound.db`.
//!
//! Bounds, so that a session costs the host what it sends and no more:
//! - after a pass that found nothing new (no rows, no new acks), the task backs off
//!   before it honours the next signal, doubling from [`MIN_BACKOFF`] to [`MAX_BACKOFF`], and
//!   resets on progress: a container touching `out/` in a loop gets a few passes a second;
//! - the periodic tick costs one `lstat` ([`FileStamp`]) and skips the pass when the file has
//!   not changed since well before the last pass began;
//! - a full batch is followed by the next pass at once, so a backlog drains without waiting
//!   for events;
//! - a read that times out or finds a hostile file fails the session (once) and ends the
//!   task: nothing of that session is read again.

use super::Delivery;
use super::acks::AckCursor;
use super::bookkeeping::Book;
use super::limits::RowBudget;
use super::pass::{Pass, PassEnd};
use super::reader::{FileStamp, OutboundSource, ReadFailure};
use crate::session::SessionRef;
use protocol::{MessageId, Seq};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The first back-off after a pass that found nothing.
pub const MIN_BACKOFF: Duration = Duration::from_millis(5);
/// The longest back-off.
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// A tick skips the pass only when the file's last write is at least this much older than
/// the last pass's start (file times are coarse: a write just after a read can keep the
/// stamp).
const QUIET_MS: i64 = 1_000;
/// How long to wait before loading the book again when `inbound.db` could not be read.
const LOAD_RETRY: Duration = Duration::from_secs(1);

/// Why a session's task should look at its file, each bit set by the dispatcher and taken
/// by the task (so a burst of events is one pass).
#[derive(Debug, Default)]
pub struct Signals {
    notify: Notify,
    changed: AtomicBool,
    tick: AtomicBool,
    arrived: AtomicBool,
}

/// One cause of a signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// A file event in `out/`: the file may have new rows.
    Changed,
    /// The periodic tick.
    Tick,
    /// A recipient of a chat the session's waiting rows go to connected.
    Arrived,
}

impl Signals {
    pub fn raise(&self, cause: Cause) {
        let bit = match cause {
            Cause::Changed => &self.changed,
            Cause::Tick => &self.tick,
            Cause::Arrived => &self.arrived,
        };
        bit.store(true, Ordering::SeqCst);
        self.notify.notify_one();
    }

    /// True when an event or an arrival is raised and not yet taken.
    fn pending(&self) -> bool {
        self.changed.load(Ordering::SeqCst) || self.arrived.load(Ordering::SeqCst)
    }
}

/// The dispatcher's side of one session's task.
pub struct WorkerHandle {
    pub signals: Arc<Signals>,
    pub cancel: CancellationToken,
    /// Set by the task when nothing of it waits; with no signal pending it may be retired.
    idle: Arc<AtomicBool>,
    /// Set when the task has ended (its session failed).
    done: Arc<AtomicBool>,
    /// The chats (`channel_type`, `platform_id`) its rows wait for a recipient in.
    waits_for: Arc<Mutex<HashSet<(String, String)>>>,
}

impl WorkerHandle {
    /// True when the task can be ended without losing anything: it waits for nothing and
    /// has no signal to take.
    pub fn is_idle(&self) -> bool {
        self.idle.load(Ordering::SeqCst) && !self.signals.pending()
    }

    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::SeqCst)
    }

    pub fn waits_for(&self, channel_type: &str, platform_id: &str) -> bool {
        self.waits_for
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&(channel_type.to_owned(), platform_id.to_owned()))
    }

    /// Whether rows of this session wait for a recipient of any chat of `channel_type`.
    pub fn waits_for_channel(&self, channel_type: &str) -> bool {
        self.waits_for
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|(waiting_type, _)| waiting_type == channel_type)
    }
}

/// How long a session's task waits before honouring its next signal: nothing after a pass
/// that made progress, else doubling from [`MIN_BACKOFF`] up to [`MAX_BACKOFF`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backoff(Duration);

impl Backoff {
    pub fn current(self) -> Duration {
        self.0
    }

    pub fn after_pass(&mut self, progress: bool) {
        self.0 = if progress {
            Duration::ZERO
        } else {
            (self.0 * 2).clamp(MIN_BACKOFF, MAX_BACKOFF)
        };
    }
}

/// One session's delivery task.
pub struct SessionWorker {
    delivery: Arc<Delivery>,
    session: SessionRef,
    source: OutboundSource,
    budget: RowBudget,
    /// Where the next pass reads `processing_ack`.
    acks: AckCursor,
    /// The chats its waiting rows wait for a recipient in, by row.
    waiting_chats: HashMap<MessageId, (String, String)>,
    backoff: Backoff,
    /// The file as it was when the last pass began, and when that was (unix ms).
    stamp: Option<FileStamp>,
    last_pass_ms: i64,
    signals: Arc<Signals>,
    idle: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
    waits_for: Arc<Mutex<HashSet<(String, String)>>>,
}

impl SessionWorker {
    /// A task for `session`, not started, and its handle.
    pub fn new(
        delivery: Arc<Delivery>,
        session: SessionRef,
        cancel: CancellationToken,
    ) -> (Self, WorkerHandle) {
        let handle = WorkerHandle {
            signals: Arc::default(),
            cancel,
            idle: Arc::new(AtomicBool::new(false)),
            done: Arc::new(AtomicBool::new(false)),
            waits_for: Arc::default(),
        };
        #[allow(unused_mut)]
        let mut source = OutboundSource::new(delivery.sessions.paths(&session).outbound_db());
        #[cfg(test)]
        {
            source.gate = delivery
                .read_gate
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
        }
        let worker = Self {
            budget: RowBudget::new(delivery.limits),
            delivery,
            session,
            source,
            acks: AckCursor::default(),
            waiting_chats: HashMap::new(),
            backoff: Backoff::default(),
            stamp: None,
            last_pass_ms: 0,
            signals: Arc::clone(&handle.signals),
            idle: Arc::clone(&handle.idle),
            done: Arc::clone(&handle.done),
            waits_for: Arc::clone(&handle.waits_for),
        };
        (worker, handle)
    }

    /// Runs until `cancel`, or until the session fails.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut book = loop {
            match Book::load(&self.delivery, &self.session).await {
                Ok(book) => break book,
                Err(e) => {
                    if self
                        .delivery
                        .log_gate
                        .should_log(&format!("delivery.book {}", self.session.id))
                    {
                        tracing::warn!(session_id = %self.session.id, error = %e, "cannot load the delivery cursor; will retry");
                    }
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(LOAD_RETRY) => {}
                    }
                }
            }
        };
        // After a restart, rows that waited for a recipient are tried once: one may be there.
        let mut first = true;
        loop {
            let now = protocol::time::now_ms();
            let until_due = book
                .next_due_ms()
                .map(|at| Duration::from_millis(u64::try_from(at - now).unwrap_or(0)));
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.signals.notify.notified(), if !first => {}
                _ = sleep_or_never(until_due), if !first => {}
                _ = std::future::ready(()), if first => {}
            }
            self.idle.store(false, Ordering::SeqCst);
            if !self.backoff.current().is_zero() {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(self.backoff.current()) => {}
                }
            }
            let changed = self.signals.changed.swap(false, Ordering::SeqCst);
            let ticked = self.signals.tick.swap(false, Ordering::SeqCst);
            let arrived = self.signals.arrived.swap(false, Ordering::SeqCst) || first;
            first = false;
            let now = protocol::time::now_ms();
            let due = book.waiting.values().any(|w| Book::is_due(w, now, arrived));
            let stamp = FileStamp::of(self.source.path());
            if ticked && !changed && !due && self.unchanged(stamp) {
                self.idle.store(book.waiting.is_empty(), Ordering::SeqCst);
                continue;
            }
            self.stamp = stamp;
            self.last_pass_ms = now;
            match self.pass(&mut book, now, arrived).await {
                PassEnd::Progress { full } => {
                    self.backoff.after_pass(true);
                    if full {
                        // More rows are there: drain without waiting for an event.
                        self.signals.raise(Cause::Changed);
                    }
                }
                PassEnd::Nothing => self.backoff.after_pass(false),
                PassEnd::Failed(reason) => {
                    self.done.store(true, Ordering::SeqCst);
                    self.delivery
                        .supervisor
                        .quarantine(&self.session, &reason)
                        .await;
                    return;
                }
            }
            self.publish_waits(&book);
        }
    }

    /// True when the file looks as it did at the last pass, and was last written well before.
    fn unchanged(&self, stamp: Option<FileStamp>) -> bool {
        match (stamp, self.stamp) {
            (Some(now), Some(before)) => {
                now == before && now.modified_ms() + QUIET_MS < self.last_pass_ms
            }
            _ => false,
        }
    }

    async fn pass(&mut self, book: &mut Book, now_ms: i64, arrived: bool) -> PassEnd {
        // The recheck starts just below the first waiting row that is due, so that a run of
        // handled rows between waiting ones cannot keep it from the due one.
        let recheck_from = book
            .waiting
            .values()
            .filter(|w| Book::is_due(w, now_ms, arrived))
            .map(|w| w.seq)
            .min()
            .map(|first| Some(Seq(first.0 - 1)).filter(|s| s.0 >= 0));
        let read = self
            .source
            .read(
                recheck_from,
                book.cursor.high_water,
                &self.acks.window(),
                self.delivery.limits.read_timeout,
            )
            .await;
        let mut read = match read {
            Ok(read) => read,
            Err(ReadFailure::NotYet(reason)) => {
                if self
                    .delivery
                    .log_gate
                    .should_log(&format!("delivery.read {}", self.session.id))
                {
                    tracing::debug!(session_id = %self.session.id, %reason, "outbound.db not readable yet");
                }
                return PassEnd::Nothing;
            }
            Err(ReadFailure::Hostile(reason)) => return PassEnd::Failed(reason),
        };
        let acks = std::mem::take(&mut read.fresh.acks);
        let acks_through = read.fresh.acks_through;
        let full = read.fresh.rows.len() >= super::reader::BATCH;
        let pass = Pass::new(&self.delivery, &self.session, arrived);
        let outcome = pass.run(book, &mut self.budget, read).await;
        for (id, chat) in outcome.no_recipient {
            self.waiting_chats.insert(id, chat);
        }
        self.waiting_chats
            .retain(|id, _| book.waiting.contains_key(id));
        let finished = AckCursor::finished(&acks);
        let had_new_acks = !finished.is_empty();
        let copied = if had_new_acks {
            match self.delivery.sync_acks(&self.session, finished).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(session_id = %self.session.id, error = %e, "copying acks failed; will retry");
                    false
                }
            }
        } else {
            true
        };
        // A full batch of acks means more may be there; a window that did not move (a
        // failed copy, or every ack still open) waits for the next event instead.
        let acks_full = acks.len() >= protocol::outbound::MAX_ACKS;
        let before = self.acks.window().from;
        if copied {
            self.acks.advance(&acks, acks_through);
        }
        let acks_moved = self.acks.window().from > before;
        // A new ack (the runner's claim, say) is progress too: the reply usually follows
        // within milliseconds, and must not wait out a back-off. Only a pass that saw
        // nothing new at all (a touch, an unchanged file) backs off.
        if outcome.handled > 0 || had_new_acks || acks_moved {
            PassEnd::Progress {
                full: full || (acks_full && acks_moved),
            }
        } else {
            PassEnd::Nothing
        }
    }

    fn publish_waits(&self, book: &Book) {
        self.idle.store(book.waiting.is_empty(), Ordering::SeqCst);
        let chats: HashSet<(String, String)> = self.waiting_chats.values().cloned().collect();
        *self
            .waits_for
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = chats;
    }
}

async fn sleep_or_never(duration: Option<Duration>) {
    match duration {
        Some(duration) => tokio::time::sleep(duration).await,
        None => std::future::pending().await,
    }
}
