//! Delivery bookkeeping that survives a restart (inbound migration 002): a session's [`Book`]
//! (the persisted cursor and the rows that wait) and a pass's [`Records`], written in one
//! transaction at the end of the pass ([`Records::commit`]) instead of one per row.
//!
//! The cursor: every row with seq <= `after` is handled for good; `high_water` is the largest
//! seq handled or parked. A row at or below the high-water mark that is neither in
//! `delivered` nor waiting was slipped in behind the host's back and is refused. Both values
//! only move forward, in the same transaction as the records that justify them.

use super::Delivery;
use crate::db::central::{self, DropRecord};
use crate::session::SessionRef;
use protocol::inbound::{DeliveryCursor, WaitReason, Waiting};
use protocol::rows::DeliveryStatus;
use protocol::{InboundContent, MessageId, NewInboundRow, Seq};
use std::collections::HashMap;

/// A session's persisted delivery state, as its task holds it.
#[derive(Debug, Default)]
pub struct Book {
    pub cursor: DeliveryCursor,
    pub waiting: HashMap<MessageId, Waiting>,
}

impl Book {
    /// Loads the book from the session's `inbound.db`.
    pub async fn load(
        delivery: &Delivery,
        session: &SessionRef,
    ) -> Result<Self, crate::db::DbError> {
        delivery
            .sessions
            .with_inbound(session, |tx, _| {
                let cursor = protocol::inbound::delivery_cursor(tx)?;
                let waiting = protocol::inbound::waiting(tx)?
                    .into_iter()
                    .map(|w| (w.message_out_id.clone(), w))
                    .collect();
                Ok(Book { cursor, waiting })
            })
            .await
    }

    /// Whether a waiting row may go now (`arrived`: a recipient connected since the last pass).
    pub fn is_due(waiting: &Waiting, now_ms: i64, arrived: bool) -> bool {
        match (waiting.reason, waiting.until) {
            (WaitReason::NoRecipient, _) => arrived,
            (_, Some(until)) => until <= now_ms,
            (_, None) => true,
        }
    }

    /// The earliest time a waiting row comes due by itself (unix ms).
    pub fn next_due_ms(&self) -> Option<i64> {
        self.waiting
            .values()
            .filter(|w| w.reason != WaitReason::NoRecipient)
            .filter_map(|w| w.until)
            .min()
    }

    /// The cursor once this book's waiting rows are taken into account: everything below the
    /// first waiting row is handled for good.
    fn settled(&self) -> DeliveryCursor {
        let after = match self.waiting.values().map(|w| w.seq).min() {
            Some(first) => Some(Seq(first.0 - 1)).filter(|s| s.0 >= 0),
            None => self.cursor.high_water,
        };
        DeliveryCursor {
            after: after.max(self.cursor.after),
            high_water: self.cursor.high_water,
        }
    }
}

/// A final state to record for one row.
#[derive(Debug)]
pub struct Final {
    pub id: MessageId,
    pub seq: Seq,
    pub status: DeliveryStatus,
    pub platform_message_id: Option<String>,
    pub error: Option<String>,
}

/// What a pass found, to be written at its end in one transaction.
#[derive(Debug, Default)]
pub struct Records {
    pub finals: Vec<Final>,
    pub waiting: Vec<Waiting>,
    /// Rows handled for good by their own handler (recorded there): they wait no more.
    pub cleared: Vec<MessageId>,
    /// Rows whose recorded attempt reached nobody (see `undo_attempt`).
    pub undo_attempts: Vec<MessageId>,
    /// The chat (`channel_type`, `platform_id`) each such row waits for a recipient in.
    pub chats: HashMap<MessageId, (String, String)>,
    pub drops: Vec<DropRecord>,
    /// Notes for the agent, one `system` row each.
    pub tells: Vec<String>,
    /// The largest seq handled or parked in this pass.
    pub high_water: Option<Seq>,
    /// Rows handled in this pass (refused ones included): progress.
    pub handled: usize,
}

impl Records {
    pub fn saw(&mut self, seq: Option<Seq>) {
        self.handled += 1;
        if let Some(seq) = seq {
            self.high_water = self.high_water.max(Some(seq));
        }
    }

    pub fn finish(&mut self, final_state: Final) {
        self.saw(Some(final_state.seq).filter(|s| s.0 >= 0));
        self.finals.push(final_state);
    }

    pub fn wait(&mut self, waiting: Waiting) {
        self.saw(Some(waiting.seq));
        self.waiting.push(waiting);
    }

    pub fn is_empty(&self) -> bool {
        self.handled == 0 && self.tells.is_empty()
    }

    /// Writes everything in one `inbound.db` transaction (the cursor with it), then the
    /// central drops, then wakes the agent if it was told something. Updates `book`.
    pub async fn commit(
        self,
        delivery: &Delivery,
        session: &SessionRef,
        book: &mut Book,
    ) -> Result<(), crate::db::DbError> {
        if self.is_empty() {
            return Ok(());
        }
        // The book as it will be once this commit is in.
        for id in self.finals.iter().map(|f| &f.id).chain(&self.cleared) {
            book.waiting.remove(id);
        }
        for waiting in &self.waiting {
            book.waiting
                .insert(waiting.message_out_id.clone(), waiting.clone());
        }
        book.cursor.high_water = book.cursor.high_water.max(self.high_water);
        let cursor = book.settled();
        book.cursor = cursor;
        let Records {
            finals,
            waiting,
            cleared,
            undo_attempts,
            drops,
            tells,
            ..
        } = self;
        let told = !tells.is_empty();
        delivery
            .sessions
            .with_inbound(session, move |tx, _| {
                for f in &finals {
                    protocol::inbound::record_delivery(
                        tx,
                        &f.id,
                        f.seq,
                        f.status,
                        f.platform_message_id.as_deref(),
                        f.error.as_deref(),
                    )?;
                    protocol::inbound::clear_waiting(tx, &f.id)?;
                }
                for id in &cleared {
                    protocol::inbound::clear_waiting(tx, id)?;
                }
                for w in &waiting {
                    protocol::inbound::set_waiting(tx, w)?;
                }
                for id in &undo_attempts {
                    protocol::inbound::undo_attempt(tx, id)?;
                }
                protocol::inbound::advance_delivery_cursor(tx, cursor)?;
                for text in tells {
                    let mut row = NewInboundRow::chat(&InboundContent {
                        text,
                        ..InboundContent::default()
                    });
                    row.kind = protocol::InboundKind::System;
                    protocol::inbound::insert(tx, &row, None)?;
                }
                Ok(())
            })
            .await?;
        if !drops.is_empty() {
            let recorded = delivery
                .central
                .call(move |conn| {
                    let tx = conn.transaction()?;
                    for drop in &drops {
                        central::record_drop(&tx, drop)?;
                    }
                    tx.commit()?;
                    Ok(())
                })
                .await;
            if let Err(e) = recorded {
                tracing::warn!(session_id = %session.id, error = %e, "recording dropped rows centrally failed");
            }
        }
        if told {
            delivery.supervisor.wake(session);
        }
        Ok(())
    }
}
