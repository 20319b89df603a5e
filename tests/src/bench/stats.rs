//! Sample statistics for the benchmark: a [`Distribution`] of timings in milliseconds with
//! nearest-rank percentiles, and [`percentile`] on a sorted slice.

use std::time::Duration;

use serde::Serialize;

/// A sorted set of samples in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Distribution {
    samples_ms: Vec<f64>,
}

impl Distribution {
    pub fn from_millis(mut samples_ms: Vec<f64>) -> Self {
        samples_ms.retain(|sample| sample.is_finite());
        samples_ms.sort_by(f64::total_cmp);
        Self { samples_ms }
    }

    pub fn from_durations(samples: &[Duration]) -> Self {
        Self::from_millis(samples.iter().map(|d| d.as_secs_f64() * 1e3).collect())
    }

    pub fn n(&self) -> usize {
        self.samples_ms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples_ms.is_empty()
    }

    /// The nearest-rank `p`-th percentile (0 < p <= 100); NaN when empty.
    pub fn percentile(&self, p: f64) -> f64 {
        percentile(&self.samples_ms, p)
    }

    pub fn p50(&self) -> f64 {
        self.percentile(50.0)
    }

    pub fn p99(&self) -> f64 {
        self.percentile(99.0)
    }

    pub fn max(&self) -> f64 {
        self.samples_ms.last().copied().unwrap_or(f64::NAN)
    }

    pub fn mean(&self) -> f64 {
        if self.samples_ms.is_empty() {
            return f64::NAN;
        }
        self.samples_ms.iter().sum::<f64>() / self.samples_ms.len() as f64
    }

    /// Every sample minus `offset_ms`, floored at zero.
    pub fn minus(&self, offset_ms: f64) -> Self {
        Self::from_millis(
            self.samples_ms
                .iter()
                .map(|sample| (sample - offset_ms).max(0.0))
                .collect(),
        )
    }
}

/// Nearest-rank percentile of an ascending slice: the smallest sample with at least `p` % of
/// the samples at or below it. NaN when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(samples: &[f64], p: f64, expected: f64) {
        let distribution = Distribution::from_millis(samples.to_vec());
        assert_eq!(distribution.percentile(p), expected, "p{p} of {samples:?}");
    }

    #[test]
    fn nearest_rank_percentiles() {
        check(&[3.0, 1.0, 2.0], 50.0, 2.0);
        check(&[1.0, 2.0, 3.0, 4.0], 50.0, 2.0);
        check(&[1.0, 2.0, 3.0, 4.0], 99.0, 4.0);
        check(&[5.0], 99.0, 5.0);
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        check(&hundred, 99.0, 99.0);
        check(&hundred, 50.0, 50.0);
        assert!(Distribution::default().p50().is_nan());
    }

    #[test]
    fn minus_floors_at_zero() {
        let shifted = Distribution::from_millis(vec![1.0, 5.0]).minus(2.0);
        assert_eq!(shifted.p50(), 0.0);
        assert_eq!(shifted.max(), 3.0);
    }
}
