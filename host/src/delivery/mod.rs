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
//! Passes run one at a time in [`Delivery::run`], woken by `out/` file events, by notices,
//! and by a periodic tick over running sessions.

use crate::channels::{Channels, ChatAddress, OutgoingMessage};
use crate::db::central::{self, DropRecord};
use crate::db::{DbError, DbThread};
use crate::session::{SessionRef, SessionStore};
use crate::supervisor::{Notice, Supervisor};
use protocol::rows::DeliveryStatus;
use protocol::{
    AckStatus, DestinationType, InboundContent, InboundStatus, MessageId, NewInboundRow,
    OutboundContent, OutboundKind, OutboundRow, Seq, Writer,
};
use rusqlite::Connection;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
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
    cursors: std::sync::Mutex<HashMap<protocol::SessionId, Cursor>>,
    interval: Duration,
}

/// Why one row was not delivered: refused (bad or unauthorised) or failed at the platform.
enum RowOutcome {
    Delivered,
    Deferred,
    Refused(String),
}

impl Delivery {
    pub fn new(
        sessions: Arc<SessionStore>,
        central: Arc<DbThread<Connection>>,
        supervisor: Arc<Supervisor>,
        channels: Channels,
        interval: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            sessions,
            central,
            supervisor,
            channels,
            cursors: Default::default(),
            interval,
        })
    }

    /// Runs passes until `shutdown`.
    pub async fn run(
        self: Arc<Self>,
        mut out_changed: mpsc::UnboundedReceiver<SessionRef>,
        mut notices: mpsc::UnboundedReceiver<Notice>,
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
                    self.refuse(session, &MessageId::new(id), bad.seq.map(Seq), &bad.reason)
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
                        self.refuse(session, &row.id, Some(seq), &reason).await;
                        (Some(seq), true)
                    } else {
                        let attempts = states.get(&row.id).map_or(0, |(_, attempts)| *attempts);
                        match self.handle_row(session, &row, attempts).await {
                            RowOutcome::Delivered => (Some(seq), true),
                            RowOutcome::Deferred => (Some(seq), false),
                            RowOutcome::Refused(reason) => {
                                self.refuse(session, &row.id, Some(seq), &reason).await;
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

    async fn handle_row(
        &self,
        session: &SessionRef,
        row: &OutboundRow,
        attempts: i64,
    ) -> RowOutcome {
        let Some(kind) = OutboundKind::parse(&row.kind) else {
            return RowOutcome::Refused(format!("unknown kind {:?}", row.kind));
        };
        let content = match OutboundContent::parse(kind, &row.content) {
            Ok(content) => content,
            Err(e) => return RowOutcome::Refused(e.to_string()),
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
        if let OutboundContent::System { action, .. } = &content {
            return RowOutcome::Refused(format!("unknown system action {action:?}"));
        }
        let address = match self
            .resolve_destination(session, row.destination.as_deref())
            .await
        {
            Ok(address) => address,
            Err(reason) => return RowOutcome::Refused(reason),
        };
        let Some(channel) = self.channels.get(&address.channel_type).cloned() else {
            return RowOutcome::Refused(format!(
                "no channel adapter for {:?}",
                address.channel_type
            ));
        };
        let files = match &content {
            OutboundContent::Message(m) => {
                let outbox = self.sessions.paths(session).outbox(row.id.as_str());
                m.files.iter().map(|f| outbox.join(f)).collect()
            }
            _ => Vec::new(),
        };
        let target_seq = match &content {
            OutboundContent::Edit { target_seq, .. }
            | OutboundContent::Reaction { target_seq, .. } => Some(*target_seq),
            _ => None,
        };
        let (id, seq) = (row.id.clone(), row.seq);
        let target_platform_message_id = self
            .sessions
            .with_inbound(session, move |tx, _| {
                protocol::inbound::record_delivery(
                    tx,
                    &id,
                    seq,
                    DeliveryStatus::Sending,
                    None,
                    None,
                )?;
                Ok(match target_seq {
                    Some(target) => protocol::inbound::platform_message_id_of(tx, target)?,
                    None => None,
                })
            })
            .await;
        let target_platform_message_id = match target_platform_message_id {
            Ok(value) => value,
            Err(e) => {
                tracing::warn!(error = %e, "recording sending failed");
                return RowOutcome::Deferred;
            }
        };
        let pieces = match &content {
            OutboundContent::Message(m) => {
                crate::channels::split_text(&m.text, channel.capabilities().max_text_chars)
            }
            _ => vec![String::new()],
        };
        let mut result = Ok(String::new());
        for (index, piece) in pieces.iter().enumerate() {
            let piece_content = match &content {
                OutboundContent::Message(m) => OutboundContent::Message(protocol::MessageContent {
                    text: piece.clone(),
                    files: if index == 0 {
                        m.files.clone()
                    } else {
                        Vec::new()
                    },
                }),
                other => other.clone(),
            };
            let message = OutgoingMessage {
                id: row.id.clone(),
                seq: row.seq,
                content: piece_content,
                files: if index == 0 {
                    files.clone()
                } else {
                    Vec::new()
                },
                target_platform_message_id: target_platform_message_id.clone(),
            };
            result = channel.deliver(&address, &message).await;
            if result.is_err() {
                break;
            }
        }
        let attempts = attempts + 1;
        let (id, seq) = (row.id.clone(), row.seq);
        match result {
            Ok(platform_id) => {
                let _ = self
                    .sessions
                    .with_inbound(session, move |tx, _| {
                        Ok(protocol::inbound::record_delivery(
                            tx,
                            &id,
                            seq,
                            DeliveryStatus::Delivered,
                            Some(&platform_id),
                            None,
                        )?)
                    })
                    .await;
                self.supervisor.touch(&session.id);
                RowOutcome::Delivered
            }
            Err(e) if e.is_retryable() && attempts < MAX_ATTEMPTS => {
                let backoff = Duration::from_millis(500 * (1 << attempts.min(6)));
                tracing::warn!(session_id = %session.id, %seq, error = %e, ?backoff, "delivery failed; will retry");
                let mut cursors = self
                    .cursors
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                cursors
                    .entry(session.id.clone())
                    .or_default()
                    .retry_at
                    .insert(row.id.clone(), Instant::now() + backoff);
                RowOutcome::Deferred
            }
            Err(e) => {
                let error = e.to_string();
                tracing::warn!(session_id = %session.id, %seq, %error, "delivery failed for good");
                let text = format!(
                    "delivery of your message seq {seq} failed after {attempts} attempt(s): {error}"
                );
                let _ = self
                    .sessions
                    .with_inbound(session, move |tx, _| {
                        protocol::inbound::record_delivery(
                            tx,
                            &id,
                            seq,
                            DeliveryStatus::Failed,
                            None,
                            Some(&error),
                        )?;
                        Ok(())
                    })
                    .await;
                self.tell_agent(session, text).await;
                RowOutcome::Delivered
            }
        }
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

    /// The chat a row goes to, decided from the central DB alone.
    async fn resolve_destination(
        &self,
        session: &SessionRef,
        name: Option<&str>,
    ) -> Result<ChatAddress, String> {
        let session_id = session.id.clone();
        let group = session.agent_group.clone();
        let name = name.map(str::to_owned);
        let resolved = self
            .central
            .call(move |conn| -> Result<Result<ChatAddress, String>, DbError> {
                let Some(name) = name else {
                    let stored = central::session(conn, &session_id)?;
                    let Some(chat_id) = stored.messaging_group_id else {
                        return Ok(Err("the session has no origin chat".into()));
                    };
                    let chat = central::messaging_group(conn, &chat_id)?;
                    return Ok(Ok(ChatAddress {
                        channel_type: chat.channel_type,
                        platform_id: chat.platform_id,
                        thread_id: stored.thread_id,
                    }));
                };
                let destinations = central::destinations_for(conn, &group)?;
                let Some(destination) = destinations.into_iter().find(|d| d.name == name) else {
                    return Ok(Err(format!("destination {name:?} is not one of this agent group's destinations")));
                };
                match destination.destination_type {
                    DestinationType::Channel => match (destination.channel_type, destination.platform_id) {
                        (Some(channel_type), Some(platform_id)) => {
                            Ok(Ok(ChatAddress { channel_type, platform_id, thread_id: destination.thread_id }))
                        }
                        _ => Ok(Err(format!("destination {name:?} has no chat"))),
                    },
                    DestinationType::Agent => Ok(Err(format!("destination {name:?} is an agent; agent-to-agent delivery is not enabled"))),
                }
            })
            .await;
        match resolved {
            Ok(result) => result,
            Err(e) => Err(format!("checking the destination failed: {e}")),
        }
    }

    /// Refuses a row: logs the reason, records it as dropped, and tells the agent.
    async fn refuse(&self, session: &SessionRef, id: &MessageId, seq: Option<Seq>, reason: &str) {
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
        let seq_text = seq.map_or_else(|| "?".to_owned(), |s| s.to_string());
        self.tell_agent(
            session,
            format!("your message seq {seq_text} was not delivered: {reason}"),
        )
        .await;
    }

    /// Writes a `system` row into the session, which wakes the agent.
    async fn tell_agent(&self, session: &SessionRef, text: String) {
        let mut row = NewInboundRow::chat(&InboundContent {
            text,
            sender: None,
            attachments: Vec::new(),
        });
        row.kind = protocol::InboundKind::System;
        let written = self
            .sessions
            .with_inbound(session, move |tx, _| {
                Ok(protocol::inbound::insert(tx, &row, None)?)
            })
            .await;
        match written {
            Ok(_) => self.supervisor.wake(session),
            Err(e) => tracing::warn!(error = %e, "cannot tell the agent"),
        }
    }

    /// Copies finished acks into `messages_in` and tells the channel the turn is complete.
    async fn sync_acks(&self, session: &SessionRef, acks: Vec<protocol::Ack>) {
        let finished: Vec<(MessageId, InboundStatus)> = acks
            .into_iter()
            .filter_map(|ack| match ack.status {
                AckStatus::Completed => Some((ack.message_id, InboundStatus::Completed)),
                AckStatus::Failed => Some((ack.message_id, InboundStatus::Failed)),
                AckStatus::Processing => None,
            })
            .collect();
        if finished.is_empty() {
            return;
        }
        let changed = self
            .sessions
            .with_inbound(session, move |tx, _| {
                let mut changed = Vec::new();
                for (id, status) in finished {
                    let Some(row) = protocol::inbound::get(tx, &id)? else {
                        continue;
                    };
                    if row.status == InboundStatus::Pending {
                        protocol::inbound::set_status(tx, &id, status)?;
                        changed.push(row);
                    }
                }
                Ok(changed)
            })
            .await
            .unwrap_or_default();
        self.complete_turns(changed).await;
    }

    async fn complete_turns(&self, rows: Vec<protocol::InboundRow>) {
        let mut seen = HashSet::new();
        for row in rows {
            let (Some(channel_type), Some(platform_id)) =
                (row.channel_type.clone(), row.platform_id.clone())
            else {
                continue;
            };
            if !seen.insert(row.id.clone()) {
                continue;
            }
            if let Some(channel) = self.channels.get(&channel_type) {
                let address = ChatAddress {
                    channel_type,
                    platform_id,
                    thread_id: row.thread_id.clone(),
                };
                channel.turn_complete(&address, &row.id).await;
            }
        }
    }

    /// Delivers a host notice to the session's origin chat, then completes the turns of any
    /// rows the notice finished.
    async fn notify(&self, notice: Notice) {
        match self.resolve_destination(&notice.session, None).await {
            Ok(address) => {
                if let Some(channel) = self.channels.get(&address.channel_type) {
                    let message = OutgoingMessage {
                        id: MessageId::generate(),
                        seq: Seq(-1),
                        content: OutboundContent::Message(protocol::MessageContent {
                            text: notice.text.clone(),
                            files: Vec::new(),
                        }),
                        files: Vec::new(),
                        target_platform_message_id: None,
                    };
                    if let Err(e) = channel.deliver(&address, &message).await {
                        tracing::warn!(error = %e, "notice not delivered");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "notice has no chat"),
        }
        let ids = notice.finished;
        let rows = self
            .sessions
            .with_inbound(&notice.session, move |tx, _| {
                let mut rows = Vec::new();
                for id in ids {
                    if let Some(row) = protocol::inbound::get(tx, &id)? {
                        rows.push(row);
                    }
                }
                Ok(rows)
            })
            .await
            .unwrap_or_default();
        self.complete_turns(rows).await;
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
