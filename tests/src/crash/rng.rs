//! [`Rng`]: the crash suite's seeded random numbers (SplitMix64). Small and dependency-free;
//! the same seed draws the same kill delays and message gaps, so a run can be replayed with
//! `--seed`.

use std::time::Duration;

/// A SplitMix64 generator.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// An independent stream for another purpose, derived from the same seed.
    pub fn fork(&self, purpose: u64) -> Self {
        Self::new(self.state ^ purpose.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `low..=high` (`low` when the range is empty).
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        if high <= low {
            return low;
        }
        low + self.next_u64() % (high - low + 1)
    }

    /// A duration in `low..=high`, to the millisecond.
    pub fn duration(&mut self, low: Duration, high: Duration) -> Duration {
        let low_ms = u64::try_from(low.as_millis()).unwrap_or(u64::MAX);
        let high_ms = u64::try_from(high.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(self.range(low_ms, high_ms))
    }
}

/// A seed from the clock, for runs that do not name one.
pub fn fresh_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or(0);
    Rng::new(nanos as u64 ^ u64::from(std::process::id())).next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_numbers() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let drawn: Vec<u64> = (0..5).map(|_| a.range(10, 20)).collect();
        assert_eq!(drawn, (0..5).map(|_| b.range(10, 20)).collect::<Vec<_>>());
        assert!(drawn.iter().all(|n| (10..=20).contains(n)), "{drawn:?}");
        assert_ne!(Rng::new(7).next_u64(), Rng::new(8).next_u64());
        assert_eq!(Rng::new(1).range(5, 5), 5);
        assert_eq!(Rng::new(1).range(6, 5), 6);
    }
}
