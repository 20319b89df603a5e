//! A session's cursor over its `processing_ack` table ([`AckCursor`]): each pass reads only
//! the acks it has not seen finished, so a pass costs the same at turn 10 and at turn 500.
//!
//! The runner inserts one ack per inbound row as it claims it (`processing`) and updates that
//! same row (same rowid) when it finishes (`completed` or `failed`). The cursor reads every
//! ack from `from` on; an ack still in progress is remembered by rowid and read again by a
//! seek until it finishes ([`AckWindow::again`]). At most [`MAX_OPEN`] are remembered: a
//! session that leaves more open (a crash mid-turn, or a hostile runner) loses the oldest,
//! whose inbound rows the sweep retries or fails as it does any unfinished claim.
//!
//! The acks come from the container and are hostile: a rowid out of order or an ack
//! rewritten after it finished costs only that session its own bookkeeping.

use protocol::outbound::AckWindow;
use protocol::{Ack, AckStatus};
use std::collections::BTreeSet;

/// Most acks in progress read again.
pub const MAX_OPEN: usize = 64;

#[derive(Debug, Default)]
pub struct AckCursor {
    /// The first rowid not read yet.
    from: i64,
    /// Acks seen in progress, by rowid.
    open: BTreeSet<i64>,
}

impl AckCursor {
    /// What the next read takes.
    pub fn window(&self) -> AckWindow {
        AckWindow {
            from: self.from,
            again: self.open.iter().copied().collect(),
        }
    }

    /// The finished acks of a read, to copy into `messages_in`.
    pub fn finished(acks: &[Ack]) -> Vec<Ack> {
        acks.iter()
            .filter(|ack| ack.status != AckStatus::Processing)
            .cloned()
            .collect()
    }

    /// After the finished acks of a read were copied: moves past what the read covered, and
    /// remembers the acks still in progress. Not called when copying failed, so the next
    /// read takes the same window again.
    pub fn advance(&mut self, acks: &[Ack], through: Option<i64>) {
        for ack in acks {
            if ack.status == AckStatus::Processing {
                self.open.insert(ack.rowid);
            } else {
                self.open.remove(&ack.rowid);
            }
        }
        if let Some(through) = through {
            self.from = self.from.max(through.saturating_add(1));
        }
        // An open ack at or past `from` would be read twice; none is, but a hostile file
        // can hold anything.
        let from = self.from;
        self.open.retain(|rowid| *rowid < from);
        while self.open.len() > MAX_OPEN {
            self.open.pop_first();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::MessageId;

    fn ack(rowid: i64, status: AckStatus) -> Ack {
        Ack {
            rowid,
            message_id: MessageId::new(format!("m{rowid}")),
            status,
            changed_at: 0,
        }
    }

    #[test]
    fn the_window_moves_past_finished_acks_and_rereads_open_ones() {
        let mut cursor = AckCursor::default();
        assert_eq!(cursor.window(), AckWindow::all());
        let first = [ack(1, AckStatus::Completed), ack(2, AckStatus::Processing)];
        assert_eq!(AckCursor::finished(&first).len(), 1);
        cursor.advance(&first, Some(2));
        assert_eq!(
            cursor.window(),
            AckWindow {
                from: 3,
                again: vec![2]
            }
        );
        // Ack 2 finishes, ack 3 starts: only 3 stays open.
        let second = [ack(2, AckStatus::Failed), ack(3, AckStatus::Processing)];
        cursor.advance(&second, Some(3));
        assert_eq!(
            cursor.window(),
            AckWindow {
                from: 4,
                again: vec![3]
            }
        );
        // A read that saw nothing keeps the window.
        cursor.advance(&[], None);
        assert_eq!(cursor.window().from, 4);
    }

    #[test]
    fn skipped_bad_acks_are_passed_and_open_ones_are_capped() {
        let mut cursor = AckCursor::default();
        // The read covered up to rowid 9, but only returned well-formed acks.
        cursor.advance(&[ack(1, AckStatus::Completed)], Some(9));
        assert_eq!(cursor.window().from, 10);
        let open: Vec<Ack> = (10..10 + MAX_OPEN as i64 + 5)
            .map(|rowid| ack(rowid, AckStatus::Processing))
            .collect();
        let through = open.last().map(|a| a.rowid);
        cursor.advance(&open, through);
        let window = cursor.window();
        assert_eq!(window.again.len(), MAX_OPEN);
        // The oldest went first.
        assert_eq!(window.again.first(), Some(&15));
    }

    #[test]
    fn a_rowid_behind_the_cursor_never_moves_it_back() {
        let mut cursor = AckCursor::default();
        cursor.advance(&[ack(5, AckStatus::Completed)], Some(5));
        cursor.advance(&[ack(2, AckStatus::Processing)], Some(2));
        let window = cursor.window();
        assert_eq!(window.from, 6);
        assert_eq!(window.again, vec![2]);
    }
}
