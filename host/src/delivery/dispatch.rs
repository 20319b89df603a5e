//! The dispatcher ([`Delivery::run`]): routes what happens to the session it concerns, and
//! does no delivery work itself, so no session can hold it up.
//!
//! - `out/` file events raise "changed" on the session's task ([`SessionWorker`]), creating
//!   it on first use; a burst of events for one session is one signal.
//! - The periodic tick raises "tick" on the task of every running session and every task
//!   that has rows waiting, and retires the idle tasks of sessions no longer running.
//! - A terminal that connects (`arrivals`) raises "arrived" on the tasks whose rows wait for
//!   a recipient of that chat, and starts a task for each session whose origin is that chat
//!   (after a restart, rows may wait where no task runs yet).
//! - Notices and the host's own messages go to a task of their own, so a slow channel holds
//!   up neither the dispatcher nor any session's replies.
//!
//! Session tasks run on delivery's own tracker with a child of the shutdown token; a task
//! that panics fails its session (once), like a hostile file would.

use super::Delivery;
use super::worker::{Cause, SessionWorker, WorkerHandle};
use crate::edge::{Arrival, HostMessage};
use crate::session::SessionRef;
use crate::supervisor::Notice;
use protocol::SessionId;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long shutdown waits for session tasks (they stop at once unless a platform call is
/// under way; a read blocked on its thread is not waited for).
const SHUTDOWN_WAIT: Duration = Duration::from_secs(3);

struct Dispatcher {
    delivery: Arc<Delivery>,
    workers: HashMap<SessionId, WorkerHandle>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Delivery {
    /// Dispatches until `shutdown`, then stops every session task.
    pub async fn run(
        self: Arc<Self>,
        mut out_changed: mpsc::UnboundedReceiver<SessionRef>,
        notices: mpsc::UnboundedReceiver<Notice>,
        host_messages: mpsc::UnboundedReceiver<HostMessage>,
        mut arrivals: mpsc::UnboundedReceiver<Arrival>,
        shutdown: CancellationToken,
    ) {
        self.supervisor.load_failures().await;
        let tracker = TaskTracker::new();
        tracker.spawn(Arc::clone(&self).run_notices(notices, host_messages, shutdown.clone()));
        let mut dispatcher = Dispatcher {
            delivery: Arc::clone(&self),
            workers: HashMap::new(),
            tracker: tracker.clone(),
            shutdown: shutdown.clone(),
        };
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(session) = out_changed.recv() => {
                    dispatcher.signal(&session, Cause::Changed);
                    while let Ok(more) = out_changed.try_recv() {
                        dispatcher.signal(&more, Cause::Changed);
                    }
                }
                Some(arrival) = arrivals.recv() => dispatcher.arrived(arrival).await,
                _ = tick.tick() => dispatcher.tick(),
            }
        }
        tracker.close();
        if tokio::time::timeout(SHUTDOWN_WAIT, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some delivery tasks did not stop in time");
        }
    }

    /// Notices and host messages, one at a time, apart from every session's task.
    async fn run_notices(
        self: Arc<Self>,
        mut notices: mpsc::UnboundedReceiver<Notice>,
        mut host_messages: mpsc::UnboundedReceiver<HostMessage>,
        shutdown: CancellationToken,
    ) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                Some(notice) = notices.recv() => self.notify(notice).await,
                Some(message) = host_messages.recv() => self.send_host_message(message).await,
                else => return,
            }
        }
    }
}

impl Dispatcher {
    /// Raises `cause` on the session's task, starting one if needed. A failed session gets
    /// none: nothing of it is read again.
    fn signal(&mut self, session: &SessionRef, cause: Cause) {
        if self.delivery.supervisor.is_failed(&session.id) {
            if let Some(handle) = self.workers.remove(&session.id) {
                handle.cancel.cancel();
            }
            return;
        }
        if self
            .workers
            .get(&session.id)
            .is_none_or(WorkerHandle::is_done)
        {
            let handle = self.start(session);
            self.workers.insert(session.id.clone(), handle);
        }
        if let Some(handle) = self.workers.get(&session.id) {
            handle.signals.raise(cause);
        }
    }

    fn start(&self, session: &SessionRef) -> WorkerHandle {
        let cancel = self.shutdown.child_token();
        let (worker, handle) =
            SessionWorker::new(Arc::clone(&self.delivery), session.clone(), cancel.clone());
        let task = self.tracker.spawn(worker.run(cancel));
        let delivery = Arc::clone(&self.delivery);
        let session = session.clone();
        self.tracker.spawn(async move {
            if let Err(e) = task.await
                && e.is_panic()
            {
                let reason = format!("delivering this session's messages panicked: {e}");
                delivery.supervisor.quarantine(&session, &reason).await;
            }
        });
        handle
    }

    fn tick(&mut self) {
        let running: HashMap<SessionId, SessionRef> = self
            .delivery
            .supervisor
            .running_sessions()
            .into_iter()
            .map(|session| (session.id.clone(), session))
            .collect();
        self.workers.retain(|id, handle| {
            let retire = handle.is_done() || (!running.contains_key(id) && handle.is_idle());
            if retire {
                handle.cancel.cancel();
            }
            !retire
        });
        for handle in self.workers.values() {
            handle.signals.raise(Cause::Tick);
        }
        for (id, session) in &running {
            if !self.workers.contains_key(id) {
                self.signal(session, Cause::Tick);
            }
        }
    }

    async fn arrived(&mut self, arrival: Arrival) {
        for handle in self.workers.values() {
            let waits = match &arrival {
                Arrival::Chat(address) => {
                    handle.waits_for(&address.channel_type, &address.platform_id)
                }
                Arrival::Channel(channel_type) => handle.waits_for_channel(channel_type),
            };
            if waits {
                handle.signals.raise(Cause::Arrived);
            }
        }
        let sessions = self
            .delivery
            .central
            .call(move |conn| match arrival {
                Arrival::Chat(address) => crate::db::central::sessions::sessions_of_chat(
                    conn,
                    &address.channel_type,
                    &address.platform_id,
                ),
                Arrival::Channel(channel_type) => {
                    crate::db::central::sessions::sessions_of_channel(conn, &channel_type)
                }
            })
            .await;
        let sessions = match sessions {
            Ok(sessions) => sessions,
            Err(e) => {
                tracing::warn!(error = %e, "cannot look up the sessions of a chat");
                return;
            }
        };
        for (session, folder) in sessions {
            if !self.workers.contains_key(&session.id) {
                let session = SessionRef {
                    id: session.id,
                    agent_group: session.agent_group_id,
                    group_folder: folder,
                };
                self.signal(&session, Cause::Arrived);
            }
        }
    }
}
