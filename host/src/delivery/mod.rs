//! Delivery (DESIGN §4): reads each running session's `outbound.db` read-only, as hostile
//! input, and hands valid replies to the channels.
//!
//! A pass over a session reads the rows after its cursor and the acks in one read
//! transaction. Every row is checked — odd seq, strictly increasing, known kind, well-formed
//! content within size caps — and a bad row is refused with a logged reason, recorded as
//! `dropped` in `delivered` and in `dropped_messages`, and never stops the loop. The
//! destination is re-validated against the central DB (the origin chat, or one of the agent
//! group's `agent_destinations`), never taken from what the container wrote. `sending` is
//! recorded before the platform call; failures are retried with backoff, and after the last
//! attempt the row is `failed` and the agent is told with a `system` row. Finished acks are
//! copied into `messages_in`, and the channel hears that the turn is complete.
//!
//! Where a row goes is decided in `route`; rows to another agent are written into its
//! session by [`a2a`], within its loop caps; the agent's `system` rows (tasks, new agents)
//! are carried out in `actions`; questions, progress lists, edits, reactions and files are
//! prepared in `operations` (files through [`outbox`], whose folder is removed once a row is
//! handled); host notices and turn completion are in `notices`, where a finished run of a
//! recurring task also gets its next run.
//!
//! Passes run one at a time in [`Delivery::run`], woken by `out/` file events, by notices,
//! by host messages, and by a periodic tick over running sessions.

pub mod a2a;
mod actions;
mod chat;
mod notices;
mod operations;
pub mod outbox;
mod route;

use crate::channels::{Channels, HostMessage};
use crate::db::central::{self, DropRecord};
use crate::db::{DbError, DbThread};
use crate::router::Router;
use crate::session::{SessionRef, SessionStore};
use crate::supervisor::{Notice, Supervisor};
use crate::tasks::Tasks;
use a2a::{A2aLimits, LoopGuard};
use protocol::rows::DeliveryStatus;
use protocol::{MessageId, OutboundContent, OutboundKind, OutboundRow, Seq, Writer};
use route::Route;
use rusqlite::Connection;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Most rows read in one pass.
const BATCH: usize = 256;
/// Platform calls per row before it is `failed`.
const MAX_ATTEMPTS: i64 = 5;

#[derive(Default)]
struct Cursor {
    /// Every row with seq <= this is handled for good.
    after: Option<Seq>,
    /// Rows waiting for a retry, and when.
    retry_at: HashMap<MessageId, Instant>,
}

/// What a pass read from `outbound.db`.
struct Snapshot {
    rows: Vec<Result<OutboundRow, protocol::outbound::BadRow>>,
    acks: Vec<protocol::Ack>,
}

pub struct Delivery {
    sessions: Arc<SessionStore>,
    central: Arc<DbThread<Connection>>,
    supervisor: Arc<Supervisor>,
    channels: Channels,
    cursors: Mutex<HashMap<protocol::SessionId, Cursor>>,
    interval: Duration,
    loop_guard: Mutex<LoopGuard>,
    router: Arc<Router>,
    tasks: Arc<Tasks>,
    /// `data/files/`: copies of the files agents send, for channel adapters to read.
    files_dir: PathBuf,
}

/// What delivery needs.
pub struct DeliveryParts {
    pub sessions: Arc<SessionStore>,
    pub central: Arc<DbThread<Connection>>,
    pub supervisor: Arc<Supervisor>,
    pub channels: Channels,
    /// How often running sessions are swept even without file events.
    pub interval: Duration,
    pub a2a_limits: A2aLimits,
    /// For `create_agent` (policy and approvals) and the host's notes to agents.
    pub router: Arc<Router>,
    /// For task actions, and the next run of recurring tasks.
    pub tasks: Arc<Tasks>,
    /// Where files sent to chats are copied (`data/files/`).
    pub files_dir: PathBuf,
}

/// What became of one row: delivered (or failed for good, which is final too), deferred to a
/// later pass, or refused (bad or unauthorised; `tell` = say so to the agent).
enum RowOutcome {
    Delivered,
    Deferred,
    Refused { reason: String, tell: bool },
}

impl RowOutcome {
    fn refused(reason: impl Into<String>) -> Self {
        RowOutcome::Refused {
            reason: reason.into(),
            tell: true,
        }
    }
}

impl Delivery {
    pub fn new(parts: DeliveryParts) -> Arc<Self> {
        Arc::new(Self {
            sessions: parts.sessions,
            central: parts.central,
            supervisor: parts.supervisor,
            channels: parts.channels,
            cursors: Default::default(),
            interval: parts.interval,
            loop_guard: Mutex::new(LoopGuard::new(parts.a2a_limits)),
            router: parts.router,
            tasks: parts.tasks,
            files_dir: parts.files_dir,
        })
    }

    /// Runs passes until `shutdown`.
    pub async fn run(
        self: Arc<Self>,
        mut out_changed: mpsc::UnboundedReceiver<SessionRef>,
        mut notices: mpsc::UnboundedReceiver<Notice>,
        mut host_messages: mpsc::UnboundedReceiver<HostMessage>,
        shutdown: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                Some(session) = out_changed.recv() => {
                    // Coalesce a burst of file events into one pass per session.
                    let mut batch = vec![session];
                    while let Ok(more) = out_changed.try_recv() {
                        if !batch.contains(&more) { batch.push(more); }
                    }
                    for session in batch { self.pass(&session).await; }
                }
                Some(notice) = notices.recv() => self.notify(notice).await,
                Some(message) = host_messages.recv() => self.send_host_message(message).await,
                _ = tick.tick() => {
                    for session in self.supervisor.running_sessions() { self.pass(&session).await; }
                }
            }
        }
    }

    /// One delivery pass over a session.
    pub async fn pass(&self, session: &SessionRef) {
        let after = self.cursor_after(session);
        let path = self.sessions.paths(session).outbound_db();
        let read = tokio::task::spawn_blocking(move || -> Result<Snapshot, DbError> {
            let mut conn = protocol::schema::open_outbound_reader(&path)?;
            let tx = conn.transaction()?;
            let rows = protocol::outbound::read_after(
                &tx,
                after.unwrap_or(Seq(-1)),
                BATCH,
                protocol::content::MAX_OUTBOUND_CONTENT_BYTES,
            )?;
            let acks = protocol::outbound::acks(&tx)?;
            Ok(Snapshot { rows, acks })
        })
        .await;
        let snapshot = match read {
            Ok(Ok(snapshot)) => snapshot,
            Ok(Err(DbError::Schema(e))) if e.is_retryable() => return,
            Ok(Err(e)) => {
                tracing::warn!(session_id = %session.id, error = %e, "cannot read outbound.db");
                return;
            }
            Err(e) => {
                tracing::error!(session_id = %session.id, error = %e, "outbound read task failed");
                return;
            }
        };
        self.handle_rows(session, after, snapshot.rows).await;
        self.sync_acks(session, snapshot.acks).await;
    }

    fn cursor_after(&self, session: &SessionRef) -> Option<Seq> {
        let cursors = self
            .cursors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cursors.get(&session.id).and_then(|c| c.after)
    }

    async fn handle_rows(
        &self,
        session: &SessionRef,
        after: Option<Seq>,
        rows: Vec<Result<OutboundRow, protocol::outbound::BadRow>>,
    ) {
        if rows.is_empty() {
            return;
        }
        let ids: Vec<MessageId> = rows
            .iter()
            .filter_map(|r| r.as_ref().ok().map(|row| row.id.clone()))
            .collect();
        let states = self
            .sessions
            .with_inbound(session, move |tx, _| {
                let mut states = HashMap::new();
                for id in ids {
                    if let Some(state) = protocol::inbound::delivery(tx, &id)? {
                        states.insert(id, state);
                    }
                }
                Ok(states)
            })
            .await
            .unwrap_or_default();
        let mut last_seq = after;
        let mut contiguous = true;
        let mut new_after = after;
        for row in rows {
            let (seq, handled) = match row {
                Err(bad) => {
                    let id = bad
                        .id
                        .clone()
                        .unwrap_or_else(|| format!("rowid:{}", bad.rowid));
                    self.refuse(
                        session,
                        &MessageId::new(id),
                        bad.seq.map(Seq),
                        &bad.reason,
                        true,
                    )
                    .await;
                    (bad.seq.map(Seq), true)
                }
                Ok(row) => {
                    let seq = row.seq;
                    let final_state = states.get(&row.id).is_some_and(|(status, _)| {
                        matches!(
                            status,
                            DeliveryStatus::Delivered
                                | DeliveryStatus::Failed
                                | DeliveryStatus::Dropped
                        )
                    });
                    if final_state {
                        (Some(seq), true)
                    } else if let Some(reason) = invalid_order(&row, last_seq) {
                        self.refuse(session, &row.id, Some(seq), &reason, true)
                            .await;
                        (Some(seq), true)
                    } else {
                        let attempts = states.get(&row.id).map_or(0, |(_, attempts)| *attempts);
                        match self.handle_row(session, &row, attempts).await {
                            RowOutcome::Delivered => (Some(seq), true),
                            RowOutcome::Deferred => (Some(seq), false),
                            RowOutcome::Refused { reason, tell } => {
                                self.refuse(session, &row.id, Some(seq), &reason, tell)
                                    .await;
                                (Some(seq), true)
                            }
                        }
                    }
                }
            };
            if let Some(seq) = seq {
                if last_seq.is_none_or(|last| seq > last) {
                    last_seq = Some(seq);
                }
                if contiguous && handled {
                    new_after = Some(new_after.map_or(seq, |a| a.max(seq)));
                }
            }
            if !handled {
                contiguous = false;
            }
        }
        let mut cursors = self
            .cursors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cursors.entry(session.id.clone()).or_default().after = new_after;
    }

    /// Handles one row; once it is handled for good, its outbox folder goes.
    async fn handle_row(
        &self,
        session: &SessionRef,
        row: &OutboundRow,
        attempts: i64,
    ) -> RowOutcome {
        let outcome = self.handle_row_once(session, row, attempts).await;
        match outcome {
            RowOutcome::Delivered | RowOutcome::Refused { .. } => {
                self.clean_outbox(session, row.id.as_str()).await;
            }
            RowOutcome::Deferred => {}
        }
        outcome
    }

    async fn handle_row_once(
        &self,
        session: &SessionRef,
        row: &OutboundRow,
        attempts: i64,
    ) -> RowOutcome {
        let Some(kind) = OutboundKind::parse(&row.kind) else {
            return RowOutcome::refused(format!("unknown kind {:?}", row.kind));
        };
        let content = match OutboundContent::parse(kind, &row.content) {
            Ok(content) => content,
            Err(e) => return RowOutcome::refused(e.to_string()),
        };
        let now = protocol::time::now_ms();
        if row.deliver_after.is_some_and(|at| at > now) {
            return RowOutcome::Deferred;
        }
        if self
            .retry_at(session, &row.id)
            .is_some_and(|at| at > Instant::now())
        {
            return RowOutcome::Deferred;
        }
        if let OutboundContent::System { .. } = &content {
            return self.run_action(session, row, &content).await;
        }
        let route = match self
            .route(
                session,
                row.destination.as_deref(),
                row.in_reply_to.as_ref(),
            )
            .await
        {
            Ok(route) => route,
            Err(reason) => return RowOutcome::refused(reason),
        };
        let address = match (route, &content) {
            (Route::Chat(address), _) => address,
            (Route::Agent { agent_group }, OutboundContent::Message(message)) => {
                return self
                    .send_to_agent(session, row, message, Some(agent_group), None)
                    .await;
            }
            (Route::Return { session: asking }, OutboundContent::Message(message)) => {
                return self
                    .send_to_agent(session, row, message, None, Some(asking))
                    .await;
            }
            (Route::Agent { .. } | Route::Return { .. }, _) => {
                return RowOutcome::refused(
                    "only plain messages (text and files) can be sent to another agent",
                );
            }
        };
        self.deliver_to_chat(session, row, &content, address, attempts)
            .await
    }

    fn retry_at(&self, session: &SessionRef, id: &MessageId) -> Option<Instant> {
        let cursors = self
            .cursors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cursors
            .get(&session.id)
            .and_then(|c| c.retry_at.get(id).copied())
    }

    /// Refuses a row: logs the reason, records it as dropped, and (when `tell`) tells the
    /// agent with a `system` row.
    async fn refuse(
        &self,
        session: &SessionRef,
        id: &MessageId,
        seq: Option<Seq>,
        reason: &str,
        tell: bool,
    ) {
        tracing::warn!(session_id = %session.id, message_id = %id, seq = ?seq.map(|s| s.0), %reason, "refused outbound row");
        let (row_id, row_reason) = (id.clone(), reason.to_owned());
        let _ = self
            .sessions
            .with_inbound(session, move |tx, _| {
                protocol::inbound::record_delivery(
                    tx,
                    &row_id,
                    seq.unwrap_or(Seq(-1)),
                    DeliveryStatus::Dropped,
                    None,
                    Some(&row_reason),
                )?;
                Ok(())
            })
            .await;
        let drop = DropRecord {
            outbound: true,
            reason: reason.to_owned(),
            session_id: Some(session.id.clone()),
            agent_group_id: Some(session.agent_group.clone()),
            message_id: Some(id.to_string()),
            ..Default::default()
        };
        let _ = self
            .central
            .call(move |conn| central::record_drop(conn, &drop))
            .await;
        if tell {
            let seq_text = seq.map_or_else(|| "?".to_owned(), |s| s.to_string());
            self.tell_agent(
                session,
                format!("your message seq {seq_text} was not delivered: {reason}"),
            )
            .await;
        }
    }
}

/// Order and parity checks that need no database.
fn invalid_order(row: &OutboundRow, last: Option<Seq>) -> Option<String> {
    if !Writer::Container.owns(row.seq) {
        return Some(format!(
            "seq {} is not odd: the container writes odd seqs only",
            row.seq
        ));
    }
    if let Some(last) = last
        && row.seq <= last
    {
        return Some(format!("seq {} does not increase (after {last})", row.seq));
    }
    None
}
