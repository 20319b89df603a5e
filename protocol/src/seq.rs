//! Sequence numbers: [`Seq`] and the allocation rule of DESIGN §3.3.
//!
//! `seq` orders the whole conversation of a session and is the message id the agent sees.
//! The host writes even seqs, the container odd ones, and every new row's seq is greater than
//! every seq its writer has seen in either file, so the two writers never collide.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A position in a session's conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Seq(pub i64);

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Who writes a row, which fixes the parity of its seq.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writer {
    /// The host writes `inbound.db`: even seqs.
    Host,
    /// The container writes `outbound.db`: odd seqs.
    Container,
}

impl Writer {
    /// True when `seq` has this writer's parity (and is in range for it).
    pub fn owns(self, seq: Seq) -> bool {
        match self {
            Writer::Host => seq.0 >= 0 && seq.0 % 2 == 0,
            Writer::Container => seq.0 > 0 && seq.0 % 2 == 1,
        }
    }

    /// The smallest seq of this writer's parity that is greater than `max_seen`
    /// (the largest seq the writer has seen in either file; `None` when both are empty).
    pub fn next_seq(self, max_seen: Option<Seq>) -> Seq {
        let floor = max_seen.map_or(-1, |s| s.0.max(-1));
        let candidate = floor.saturating_add(1);
        if self.owns(Seq(candidate)) {
            Seq(candidate)
        } else {
            Seq(candidate.saturating_add(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn first_seqs() {
        assert_eq!(Writer::Host.next_seq(None), Seq(0));
        assert_eq!(Writer::Container.next_seq(None), Seq(1));
        assert_eq!(Writer::Host.next_seq(Some(Seq(0))), Seq(2));
        assert_eq!(Writer::Host.next_seq(Some(Seq(1))), Seq(2));
        assert_eq!(Writer::Container.next_seq(Some(Seq(2))), Seq(3));
        assert_eq!(Writer::Container.next_seq(Some(Seq(3))), Seq(5));
    }

    proptest! {
        /// Whatever each writer has seen, its next seq has its parity and exceeds what it saw.
        #[test]
        fn next_seq_has_parity_and_exceeds(max in proptest::option::of(0i64..1_000_000_000)) {
            for writer in [Writer::Host, Writer::Container] {
                let next = writer.next_seq(max.map(Seq));
                prop_assert!(writer.owns(next));
                if let Some(m) = max {
                    prop_assert!(next.0 > m);
                    prop_assert!(next.0 <= m + 2);
                }
            }
        }

        /// Two writers interleaving in any order, each seeing everything written so far,
        /// never produce the same seq and each produces a strictly increasing series.
        #[test]
        fn interleaved_writers_never_collide(order in proptest::collection::vec(any::<bool>(), 1..200)) {
            let mut all: Vec<Seq> = Vec::new();
            let mut last = [None::<Seq>, None::<Seq>];
            for host_turn in order {
                let writer = if host_turn { Writer::Host } else { Writer::Container };
                let seen = all.iter().copied().max();
                let next = writer.next_seq(seen);
                prop_assert!(!all.contains(&next));
                let slot = usize::from(!host_turn);
                if let Some(previous) = last[slot] { prop_assert!(next > previous); }
                last[slot] = Some(next);
                all.push(next);
            }
        }

        /// A writer that has seen only part of the other writer's rows still never collides,
        /// because parities differ.
        #[test]
        fn partial_views_never_collide(order in proptest::collection::vec((any::<bool>(), any::<bool>()), 1..200)) {
            let mut host_seen: Option<Seq> = None;
            let mut container_seen: Option<Seq> = None;
            let mut all = std::collections::HashSet::new();
            for (host_turn, other_sees) in order {
                let (writer, mine, other) = if host_turn {
                    (Writer::Host, &mut host_seen, &mut container_seen)
                } else {
                    (Writer::Container, &mut container_seen, &mut host_seen)
                };
                let next = writer.next_seq(*mine);
                prop_assert!(all.insert(next));
                *mine = Some(next);
                if other_sees { *other = Some(other.map_or(next, |o| o.max(next))); }
            }
        }
    }
}
