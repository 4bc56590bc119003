//! Latency samples of the benchmarks: sorted durations and the wall time they took, read as
//! percentiles (nearest rank, in per mille so that no float picks the index) and as a rate.

use std::time::Duration;

/// Durations of one kind of operation, sorted, and the wall time of the whole run.
#[derive(Clone, Debug)]
pub struct Samples {
    sorted: Vec<Duration>,
    total: Duration,
}

impl Samples {
    /// `samples` taken over `total` of wall time.
    pub fn new(mut samples: Vec<Duration>, total: Duration) -> Samples {
        samples.sort();
        Samples {
            sorted: samples,
            total,
        }
    }

    /// The sample at `per_mille` / 1000 of the way (500: the median, 990: p99, 1000: max).
    pub fn percentile(&self, per_mille: usize) -> Duration {
        assert!(per_mille <= 1000, "a percentile is at most 1000 per mille");
        let last = self
            .sorted
            .len()
            .checked_sub(1)
            .expect("at least one sample");
        self.sorted[(last * per_mille + 500) / 1000]
    }

    /// [`percentile`](Self::percentile) in microseconds.
    pub fn percentile_us(&self, per_mille: usize) -> f64 {
        self.percentile(per_mille).as_secs_f64() * 1e6
    }

    /// How many samples.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// The wall time of the run.
    pub fn total(&self) -> Duration {
        self.total
    }

    /// Operations per second over the wall time.
    pub fn rate(&self) -> f64 {
        // Sample counts stay far below 2^52: the conversion is exact.
        let n = u32::try_from(self.sorted.len()).map_or(f64::from(u32::MAX), f64::from);
        n / self.total.as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_ranks() {
        let ms = |n: u64| Duration::from_millis(n);
        let s = Samples::new((1..=101).rev().map(ms).collect(), Duration::from_secs(2));
        assert_eq!(s.percentile(0), ms(1));
        assert_eq!(s.percentile(500), ms(51));
        assert_eq!(s.percentile(990), ms(100));
        assert_eq!(s.percentile(1000), ms(101));
        assert!((s.rate() - 50.5).abs() < 1e-9);
    }
}
