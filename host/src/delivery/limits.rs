//! Caps on what one session may send (DESIGN §3 "the host's edge"): [`OutboundLimits`]
//! (rows per turn, rows per minute, and how long one read of `outbound.db` may take), and
//! [`RowBudget`], one session's counters against them.
//!
//! A turn is named by the host's own inbound row just below an outbound row's seq (the
//! container allocates every seq above all it has seen, and only the host writes inbound
//! rows, so a container cannot make turns up to reset its count). The minute is a sliding
//! window. A row over a cap is refused; the agent is told once per window (and once per new
//! turn), not once per row, so the refusals cannot become a flood of their own.

use protocol::Seq;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The per-minute window, and how long one "you are over the cap" note lasts.
const WINDOW: Duration = Duration::from_secs(60);

/// The outbound caps of one session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutboundLimits {
    /// Most rows the host takes from one turn of the agent.
    pub max_rows_per_turn: usize,
    /// Most rows the host takes from one session in any 60 s.
    pub max_rows_per_minute: usize,
    /// Longest one read of `outbound.db` may take before the session is marked failed (the
    /// reader's own budget normally ends a read much sooner; this catches a thread that
    /// never comes back, such as one blocked opening a FIFO).
    pub read_timeout: Duration,
}

impl Default for OutboundLimits {
    fn default() -> Self {
        Self {
            max_rows_per_turn: 200,
            max_rows_per_minute: 600,
            read_timeout: Duration::from_secs(10),
        }
    }
}

/// A row refused for a cap: why, and whether to tell the agent (once per window and turn).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverCap {
    pub reason: String,
    pub tell: bool,
}

/// One session's counts against its [`OutboundLimits`].
#[derive(Debug)]
pub struct RowBudget {
    limits: OutboundLimits,
    /// When each row of the last minute was taken (at most `max_rows_per_minute` entries).
    minute: VecDeque<Instant>,
    /// The current turn (the inbound seq that names it) and the rows taken from it.
    turn: Option<(Option<Seq>, usize)>,
    /// When the agent was last told, and in which turn.
    told: Option<(Instant, Option<Seq>)>,
}

impl RowBudget {
    pub fn new(limits: OutboundLimits) -> Self {
        Self {
            limits,
            minute: VecDeque::new(),
            turn: None,
            told: None,
        }
    }

    /// Counts one new row of `turn` taken at `now`, or refuses it over a cap.
    pub fn admit(&mut self, turn: Option<Seq>, now: Instant) -> Result<(), OverCap> {
        while self
            .minute
            .front()
            .is_some_and(|at| now.duration_since(*at) >= WINDOW)
        {
            self.minute.pop_front();
        }
        let in_turn = match self.turn {
            Some((current, count)) if current == turn => count,
            _ => 0,
        };
        let reason = if in_turn >= self.limits.max_rows_per_turn {
            format!(
                "over the cap of {} messages per turn; the rest of this turn is not delivered",
                self.limits.max_rows_per_turn
            )
        } else if self.minute.len() >= self.limits.max_rows_per_minute {
            format!(
                "over the cap of {} messages per minute; wait before sending more",
                self.limits.max_rows_per_minute
            )
        } else {
            self.turn = Some((turn, in_turn + 1));
            self.minute.push_back(now);
            return Ok(());
        };
        let tell = self
            .told
            .is_none_or(|(at, told_turn)| now.duration_since(at) >= WINDOW || told_turn != turn);
        if tell {
            self.told = Some((now, turn));
        }
        Err(OverCap { reason, tell })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(per_turn: usize, per_minute: usize) -> RowBudget {
        RowBudget::new(OutboundLimits {
            max_rows_per_turn: per_turn,
            max_rows_per_minute: per_minute,
            ..OutboundLimits::default()
        })
    }

    #[test]
    fn the_turn_cap_refuses_the_rest_of_a_turn_and_tells_once() {
        let mut budget = budget(2, 100);
        let t0 = Instant::now();
        let turn = Some(Seq(4));
        assert!(budget.admit(turn, t0).is_ok());
        assert!(budget.admit(turn, t0).is_ok());
        let hit = budget.admit(turn, t0).unwrap_err();
        assert!(hit.tell && hit.reason.contains("per turn"), "{hit:?}");
        assert!(!budget.admit(turn, t0).unwrap_err().tell, "told once");
        // A new turn has its own count.
        let next = Some(Seq(10));
        assert!(budget.admit(next, t0).is_ok());
        assert!(budget.admit(next, t0).is_ok());
        assert!(
            budget.admit(next, t0).unwrap_err().tell,
            "a new turn is told"
        );
    }

    #[test]
    fn the_minute_cap_slides_and_tells_once_per_window() {
        let mut budget = budget(100, 3);
        let t0 = Instant::now();
        for turn in [Some(Seq(0)), Some(Seq(2)), Some(Seq(4))] {
            assert!(budget.admit(turn, t0).is_ok());
        }
        let hit = budget.admit(Some(Seq(4)), t0).unwrap_err();
        assert!(hit.tell && hit.reason.contains("per minute"), "{hit:?}");
        let again = budget.admit(Some(Seq(4)), t0 + Duration::from_secs(30));
        assert!(!again.unwrap_err().tell, "told once per window");
        let later = t0 + WINDOW;
        assert!(budget.admit(Some(Seq(4)), later).is_ok(), "the window slid");
    }
}
