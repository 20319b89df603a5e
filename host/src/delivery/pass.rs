//! One delivery pass over the rows of one read ([`Pass`]): what each row is (handled
//! before, waiting and due or not, slipped in below the high-water mark, over a cap, or new),
//! what becomes of it, and the bookkeeping of it all, written once at the end of the pass.
//!
//! The session-store work of a pass is batched: one transaction reads the delivery states,
//! the turns and the answered chats of the whole batch; each run of chat rows costs one
//! transaction for `sending` before its platform calls; one transaction at the end records
//! the results, the waiting rows and the cursor ([`Records::commit`]).

use super::bookkeeping::{Book, Final, Records};
use super::chat::ChatSend;
use super::limits::RowBudget;
use super::reader::Read;
use super::refusal::Refusal;
use super::route::{self, RouteCache, RowChat};
use super::{Delivery, RowOutcome};
use crate::db::central::DropRecord;
use crate::session::SessionRef;
use protocol::outbound::BadRow;
use protocol::rows::DeliveryStatus;
use protocol::{MessageId, OutboundRow, Seq};
use std::collections::HashMap;
use std::time::Instant;

/// How a pass ended, for the session's task.
#[derive(Debug, PartialEq, Eq)]
pub enum PassEnd {
    /// Rows were handled or parked, or acks copied; `full` = the read was a full batch.
    Progress { full: bool },
    /// Nothing new.
    Nothing,
    /// The file is hostile or broken: fail the session with this reason.
    Failed(String),
}

/// What a pass did.
#[derive(Debug, Default)]
pub struct PassOutcome {
    pub handled: usize,
    /// Rows that wait for a recipient, and the chat (`channel_type`, `platform_id`).
    pub no_recipient: Vec<(MessageId, (String, String))>,
}

/// What the batch's one lookup transaction returns.
#[derive(Default)]
struct Lookups {
    states: HashMap<MessageId, (DeliveryStatus, i64)>,
    /// Rows left `sending` that were already resent once after a crash.
    resent: std::collections::HashSet<MessageId>,
    turns: HashMap<Seq, Option<Seq>>,
    answered: HashMap<MessageId, RowChat>,
}

/// One pass over a read.
pub struct Pass<'a> {
    delivery: &'a Delivery,
    session: &'a SessionRef,
    /// A recipient connected since the last pass: rows waiting for one are due.
    arrived: bool,
    records: Records,
    routes: RouteCache,
    /// Chat rows prepared and not yet sent, in seq order.
    run: Vec<ChatSend>,
    platform_ids: HashMap<Seq, String>,
    no_recipient: Vec<(MessageId, (String, String))>,
}

/// The id a row is recorded under: its own, or its rowid when its id was unreadable.
fn record_id(row: &Result<OutboundRow, BadRow>) -> MessageId {
    match row {
        Ok(row) => row.id.clone(),
        Err(bad) => MessageId::new(
            bad.id
                .clone()
                .unwrap_or_else(|| format!("rowid:{}", bad.rowid)),
        ),
    }
}

fn row_seq(row: &Result<OutboundRow, BadRow>) -> Option<Seq> {
    match row {
        Ok(row) => Some(row.seq),
        Err(bad) => bad.seq.map(Seq),
    }
}

fn is_final(state: Option<&(DeliveryStatus, i64)>) -> bool {
    state.is_some_and(|(status, _)| match status {
        DeliveryStatus::Delivered | DeliveryStatus::Failed | DeliveryStatus::Dropped => true,
        DeliveryStatus::Sending => false,
    })
}

impl<'a> Pass<'a> {
    pub fn new(delivery: &'a Delivery, session: &'a SessionRef, arrived: bool) -> Self {
        Self {
            delivery,
            session,
            arrived,
            records: Records::default(),
            routes: RouteCache::default(),
            run: Vec::new(),
            platform_ids: HashMap::new(),
            no_recipient: Vec::new(),
        }
    }

    /// Handles the rows of `read` and writes the bookkeeping.
    pub async fn run(mut self, book: &mut Book, budget: &mut RowBudget, read: Read) -> PassOutcome {
        let high_water = book.cursor.high_water;
        let rows: Vec<Result<OutboundRow, BadRow>> = read
            .recheck
            .rows
            .into_iter()
            .chain(read.fresh.rows)
            .collect();
        self.forget_vanished(book, &rows, read.recheck_through);
        if rows.is_empty() {
            let handled = self.records.handled;
            if let Err(e) = self.records.commit(self.delivery, self.session, book).await {
                tracing::error!(session_id = %self.session.id, error = %e, "recording the pass failed");
            }
            return PassOutcome {
                handled,
                no_recipient: Vec::new(),
            };
        }
        let lookups = match self.lookups(&rows, high_water).await {
            Ok(lookups) => lookups,
            Err(e) => {
                tracing::warn!(session_id = %self.session.id, error = %e, "reading delivery states failed; will retry");
                return PassOutcome::default();
            }
        };
        self.routes.answered = lookups.answered;
        let (now_ms, now) = (protocol::time::now_ms(), Instant::now());
        let mut last_seq: Option<Seq> = None;
        for row in rows {
            let id = record_id(&row);
            let seq = row_seq(&row);
            let state = lookups.states.get(&id);
            if is_final(state) {
                // Handled before; only the high-water mark may learn from it.
                if book.waiting.contains_key(&id) {
                    self.records.cleared.push(id);
                    self.records.saw(seq);
                } else if seq > high_water {
                    // Handled before the cursor was kept (an older session file).
                    self.records.saw(seq);
                }
                // Else not progress: a recheck passes over such rows every time.
                continue;
            }
            let row = match row {
                Err(bad) => {
                    let fresh = seq.is_none_or(|s| Some(s) > high_water);
                    if fresh
                        && let Err(hit) = budget.admit(
                            seq.and_then(|s| lookups.turns.get(&s).copied().flatten()),
                            now,
                        )
                    {
                        self.refuse(&id, seq, &Refusal::OverLimit(hit.reason), hit.tell);
                    } else {
                        self.refuse(&id, seq, &Refusal::BadRow(bad.reason), true);
                    }
                    continue;
                }
                Ok(row) => row,
            };
            let order = super::invalid_order(&row, last_seq);
            last_seq = last_seq.max(Some(row.seq));
            if let Some(reason) = order {
                self.refuse(&id, seq, &Refusal::OutOfOrder(reason), true);
                continue;
            }
            let mut resend = false;
            match book.waiting.get(&id) {
                Some(waiting) if !Book::is_due(waiting, now_ms, self.arrived) => continue,
                Some(_) => {}
                // Left `sending` by a crash between the platform call and its record, and
                // resent once already: the platform may have it twice; never a third time.
                None if lookups.resent.contains(&id) => {
                    self.give_up_resend(&row);
                    continue;
                }
                // Left `sending` by a crash: sent again once, flagged, with the same
                // idempotency key.
                None if state.is_some() => resend = true,
                None if Some(row.seq) <= high_water => {
                    let reason = format!(
                        "seq {} is not above the last delivered seq {}",
                        row.seq,
                        high_water.map_or(-1, |s| s.0)
                    );
                    self.refuse(&id, seq, &Refusal::OutOfOrder(reason), true);
                    continue;
                }
                None => {
                    let turn = lookups.turns.get(&row.seq).copied().flatten();
                    if let Err(hit) = budget.admit(turn, now) {
                        self.refuse(&id, seq, &Refusal::OverLimit(hit.reason), hit.tell);
                        continue;
                    }
                }
            }
            let attempts = state.map_or(0, |(_, attempts)| *attempts);
            self.handle(&row, attempts, resend).await;
        }
        self.flush().await;
        let handled = self.records.handled;
        let no_recipient = std::mem::take(&mut self.no_recipient);
        if let Err(e) = self.records.commit(self.delivery, self.session, book).await {
            tracing::error!(session_id = %self.session.id, error = %e, "recording the pass failed");
        }
        PassOutcome {
            handled,
            no_recipient,
        }
    }

    /// Waiting rows the recheck read should have seen and did not are gone from the file
    /// (the container deleted them): they wait no more, or the cursor would never pass them.
    fn forget_vanished(
        &mut self,
        book: &Book,
        rows: &[Result<OutboundRow, BadRow>],
        through: Option<Seq>,
    ) {
        let Some(through) = through else { return };
        let seen: std::collections::HashSet<MessageId> = rows.iter().map(record_id).collect();
        for waiting in book.waiting.values() {
            if waiting.seq <= through && !seen.contains(&waiting.message_out_id) {
                self.records.cleared.push(waiting.message_out_id.clone());
                self.records.saw(Some(waiting.seq));
            }
        }
    }

    /// One transaction for the batch: delivery states, the turns of new rows, and the chats
    /// of the rows that replies answer.
    async fn lookups(
        &self,
        rows: &[Result<OutboundRow, BadRow>],
        high_water: Option<Seq>,
    ) -> Result<Lookups, crate::db::DbError> {
        let ids: Vec<MessageId> = rows.iter().map(record_id).collect();
        let new_seqs: Vec<Seq> = rows
            .iter()
            .filter_map(row_seq)
            .filter(|seq| Some(*seq) > high_water)
            .collect();
        let answered: Vec<MessageId> = rows
            .iter()
            .filter_map(|row| row.as_ref().ok())
            .filter(|row| row.destination.is_none())
            .filter_map(|row| row.in_reply_to.clone())
            .collect();
        self.delivery
            .sessions
            .with_inbound(self.session, move |tx, _| {
                let mut lookups = Lookups::default();
                for id in ids {
                    if let Some(state) = protocol::inbound::delivery(tx, &id)? {
                        if state.0 == DeliveryStatus::Sending
                            && protocol::inbound::delivery_error(tx, &id)?.as_deref()
                                == Some(super::chat::RESENT_AFTER_CRASH)
                        {
                            lookups.resent.insert(id.clone());
                        }
                        lookups.states.insert(id, state);
                    }
                }
                for seq in new_seqs {
                    let turn = protocol::inbound::inbound_seq_below(tx, seq)?;
                    lookups.turns.insert(seq, turn);
                }
                for id in answered {
                    if let std::collections::hash_map::Entry::Vacant(entry) =
                        lookups.answered.entry(id)
                    {
                        let chat = route::answered_chat(tx, entry.key())?;
                        entry.insert(chat);
                    }
                }
                Ok(lookups)
            })
            .await
    }

    /// A row a crash left `sending` twice: `failed`, recorded, and the agent told.
    fn give_up_resend(&mut self, row: &OutboundRow) {
        let error = "the host crashed twice while sending it; it may have arrived".to_owned();
        tracing::warn!(session_id = %self.session.id, seq = %row.seq, %error, "not sending a row a third time");
        self.records.tells.push(format!(
            "delivery of your message seq {} is uncertain: {error}",
            row.seq
        ));
        self.records.finish(Final {
            id: row.id.clone(),
            seq: row.seq,
            status: DeliveryStatus::Failed,
            platform_message_id: None,
            error: Some(error),
        });
    }

    async fn handle(&mut self, row: &OutboundRow, attempts: i64, resend: bool) {
        // A row that may go to another agent or carry out an action is handled after the
        // chat rows before it are sent, to keep their order.
        if row.kind != "chat" || row.destination.is_some() {
            self.flush().await;
        }
        let outcome = self
            .delivery
            .handle_row(self.session, row, attempts, resend, &mut self.routes)
            .await;
        match outcome {
            RowOutcome::Delivered => {
                self.records.cleared.push(row.id.clone());
                self.records.saw(Some(row.seq));
            }
            RowOutcome::Send(send) => self.run.push(*send),
            RowOutcome::Deferred(wait) => self.records.wait(wait.of(&row.id, row.seq)),
            RowOutcome::Refused { refusal, tell } => {
                self.refuse(&row.id, Some(row.seq), &refusal, tell);
            }
        }
    }

    /// Sends the chat rows prepared so far.
    async fn flush(&mut self) {
        let run = std::mem::take(&mut self.run);
        let waiting_before = self.records.waiting.len();
        self.delivery
            .send_run(self.session, run, &mut self.platform_ids, &mut self.records)
            .await;
        for waiting in &self.records.waiting[waiting_before..] {
            if waiting.reason == protocol::inbound::WaitReason::NoRecipient
                && let Some(chat) = self.records.chats.get(&waiting.message_out_id)
            {
                self.no_recipient
                    .push((waiting.message_out_id.clone(), chat.clone()));
            }
        }
    }

    /// Refuses a row: logs the reason (repeats coalesced), records it as dropped here
    /// and in `dropped_messages`, and (when `tell`) tells the agent with a `system` row.
    fn refuse(&mut self, id: &MessageId, seq: Option<Seq>, refusal: &Refusal, tell: bool) {
        let reason = refusal.detail();
        crate::metrics::global().row_refused(refusal.code());
        // Identical refusals (the same reason, whatever seq or size it names) are one line
        // per window: a flood over a cap logs once, distinct problems each once.
        let kind: String = reason
            .chars()
            .filter(|c| !c.is_ascii_digit())
            .take(80)
            .collect();
        if self
            .delivery
            .log_gate
            .should_log(&format!("delivery.refused {} {kind}", self.session.id))
        {
            tracing::warn!(session_id = %self.session.id, message_id = %id, seq = ?seq.map(|s| s.0), code = refusal.code(), %reason, "refused outbound row");
        }
        self.records.drops.push(DropRecord {
            outbound: true,
            reason: refusal.to_string(),
            session_id: Some(self.session.id.clone()),
            agent_group_id: Some(self.session.agent_group.clone()),
            message_id: Some(id.to_string()),
            ..Default::default()
        });
        if tell {
            let seq_text = seq.map_or_else(|| "?".to_owned(), |s| s.to_string());
            self.records.tells.push(format!(
                "your message seq {seq_text} was not delivered: {reason}"
            ));
        }
        self.records.finish(Final {
            id: id.clone(),
            seq: seq.unwrap_or(Seq(-1)),
            status: DeliveryStatus::Dropped,
            platform_message_id: None,
            error: Some(reason.to_owned()),
        });
    }
}
