//! Figures of the interval since the last look, for progress lines while a
//! cell runs: [`IntervalStats`] is fed by the driver's workers (atomics
//! only, no lock, nothing allocated) and read and zeroed by whoever prints
//! progress, as an [`IntervalSnapshot`].
//!
//! Approximate by design: latencies fall into log-linear buckets (16 per
//! octave, within about 6 %), and a snapshot taken while workers record may
//! put an attempt in this interval's count and the next one's buckets. The
//! cell's record never reads these; its figures come from the recorder's
//! exact histograms. Nothing here formats text.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::client::ErrorClass;

/// Sub-buckets per octave (a power of two).
const SUB_BUCKETS: u64 = 16;
const SUB_BITS: u32 = SUB_BUCKETS.trailing_zeros();
/// Values below this have a bucket each.
const LINEAR: u64 = 2 * SUB_BUCKETS;
/// Buckets: enough for any u64 microseconds.
const BUCKETS: usize = (LINEAR + (64 - SUB_BITS as u64 - 1) * SUB_BUCKETS) as usize;

/// Error classes as progress counts them, SQLSTATEs other than the named
/// ones together.
const CLASSES: usize = 12;

fn class_index(class: &ErrorClass) -> usize {
    match class {
        ErrorClass::TooManyConnections => 0,
        ErrorClass::DeadlockDetected => 1,
        ErrorClass::SerializationFailure => 2,
        ErrorClass::LockNotAvailable => 3,
        ErrorClass::QueryCanceled => 4,
        ErrorClass::UniqueViolation => 5,
        ErrorClass::OtherSqlState(_) | ErrorClass::PreparedStatement(_) => 6,
        ErrorClass::PoolTimeout => 7,
        ErrorClass::ConnectionFailed => 8,
        ErrorClass::ConnectionLost => 9,
        ErrorClass::ClientOutOfFiles => 10,
        ErrorClass::Other => 11,
    }
}

/// Short names of the classes, by [`class_index`], as a progress line
/// shows them.
const CLASS_NAMES: [&str; CLASSES] = [
    "53300",
    "deadlock",
    "serialization",
    "lock_not_available",
    "canceled",
    "unique_violation",
    "other_sqlstate",
    "pool_timeout",
    "connection_failed",
    "connection_lost",
    "too_many_open_files",
    "other",
];

fn bucket_of(value: u64) -> usize {
    if value < LINEAR {
        return value as usize;
    }
    let exponent = 63 - value.leading_zeros(); // >= SUB_BITS + 1
    let sub = (value >> (exponent - SUB_BITS)) & (SUB_BUCKETS - 1);
    (LINEAR + u64::from(exponent - SUB_BITS - 1) * SUB_BUCKETS + sub) as usize
}

/// The middle of bucket `index`'s range, microseconds.
fn bucket_value(index: usize) -> u64 {
    let index = index as u64;
    if index < LINEAR {
        return index;
    }
    let exponent = (index - LINEAR) / SUB_BUCKETS + u64::from(SUB_BITS) + 1;
    let sub = (index - LINEAR) % SUB_BUCKETS;
    let width = 1u64 << (exponent - u64::from(SUB_BITS));
    (1u64 << exponent) + sub * width + width / 2
}

/// A histogram of atomics: recording is one `fetch_add`.
struct AtomicHistogram {
    buckets: Box<[AtomicU64]>,
}

impl Default for AtomicHistogram {
    fn default() -> Self {
        AtomicHistogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl AtomicHistogram {
    fn record(&self, value_us: u64) {
        self.buckets[bucket_of(value_us).min(BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
    }

    /// The buckets' counts, zeroing them.
    fn take(&self) -> Vec<u64> {
        self.buckets.iter().map(|b| b.swap(0, Ordering::Relaxed)).collect()
    }
}

/// The value at quantile `q` of `counts` (bucket middles), 0 when empty.
fn quantile(counts: &[u64], q: f64) -> u64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0;
    }
    let rank = ((q * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (index, &count) in counts.iter().enumerate() {
        seen += count;
        if seen >= rank {
            return bucket_value(index);
        }
    }
    0
}

/// What workers record for progress, since the last [`IntervalStats::take`].
#[derive(Default)]
pub struct IntervalStats {
    ok: AtomicU64,
    latency_sum_us: AtomicU64,
    latency_sum_sq_us2: AtomicU64,
    latency: AtomicHistogram,
    pool_wait: AtomicHistogram,
    failed: [AtomicU64; CLASSES],
    late: AtomicU64,
    skipped: AtomicU64,
    lag_sum_us: AtomicU64,
    lagged: AtomicU64,
}

impl std::fmt::Debug for IntervalStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntervalStats")
            .field("ok", &self.ok.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl IntervalStats {
    /// A successful attempt: its end-to-end latency and its pool wait.
    pub fn record_ok(&self, end_to_end_us: u64, pool_wait_us: u64) {
        self.ok.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(end_to_end_us, Ordering::Relaxed);
        self.latency_sum_sq_us2
            .fetch_add(end_to_end_us.saturating_mul(end_to_end_us), Ordering::Relaxed);
        self.latency.record(end_to_end_us);
        self.pool_wait.record(pool_wait_us);
    }

    /// A failed attempt, by class, and its pool wait.
    pub fn record_failed(&self, class: &ErrorClass, pool_wait_us: u64) {
        self.failed[class_index(class)].fetch_add(1, Ordering::Relaxed);
        self.pool_wait.record(pool_wait_us);
    }

    /// A transaction that finished later than the latency limit.
    pub fn record_late(&self) {
        self.late.fetch_add(1, Ordering::Relaxed);
    }

    /// An arrival skipped: already later than the latency limit when a
    /// worker could send it.
    pub fn record_skipped(&self) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
    }

    /// An open loop's arrival was sent `lag_us` after its intended start.
    pub fn record_lag(&self, lag_us: u64) {
        self.lag_sum_us.fetch_add(lag_us, Ordering::Relaxed);
        self.lagged.fetch_add(1, Ordering::Relaxed);
    }

    /// The interval's figures, zeroing them for the next interval.
    pub fn take(&self) -> IntervalSnapshot {
        let ok = self.ok.swap(0, Ordering::Relaxed);
        let sum = self.latency_sum_us.swap(0, Ordering::Relaxed) as f64;
        let sum_sq = self.latency_sum_sq_us2.swap(0, Ordering::Relaxed) as f64;
        let latency = self.latency.take();
        let pool_wait = self.pool_wait.take();
        let (mean_us, stddev_us) = if ok > 0 {
            let mean = sum / ok as f64;
            (mean, (sum_sq / ok as f64 - mean * mean).max(0.0).sqrt())
        } else {
            (0.0, 0.0)
        };
        IntervalSnapshot {
            ok,
            latency_mean_us: mean_us,
            latency_stddev_us: stddev_us,
            latency_p99_us: quantile(&latency, 0.99),
            pool_wait_p99_us: quantile(&pool_wait, 0.99),
            failed_by_class: CLASS_NAMES
                .iter()
                .zip(&self.failed)
                .map(|(name, count)| (*name, count.swap(0, Ordering::Relaxed)))
                .filter(|(_, count)| *count > 0)
                .collect(),
            late: self.late.swap(0, Ordering::Relaxed),
            skipped: self.skipped.swap(0, Ordering::Relaxed),
            lag_mean_us: {
                let lagged = self.lagged.swap(0, Ordering::Relaxed);
                let sum = self.lag_sum_us.swap(0, Ordering::Relaxed);
                if lagged > 0 {
                    sum as f64 / lagged as f64
                } else {
                    0.0
                }
            },
        }
    }
}

/// One interval's figures (approximate quantiles; see the module's notes).
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalSnapshot {
    /// Successful attempts.
    pub ok: u64,
    /// Mean end-to-end latency of the successful attempts, microseconds.
    pub latency_mean_us: f64,
    /// Its standard deviation, microseconds.
    pub latency_stddev_us: f64,
    /// 99th percentile of the successful attempts' latency, microseconds.
    pub latency_p99_us: u64,
    /// 99th percentile of every attempt's pool wait, microseconds.
    pub pool_wait_p99_us: u64,
    /// Failed attempts by class (short names), only classes seen.
    pub failed_by_class: Vec<(&'static str, u64)>,
    /// Transactions later than the latency limit.
    pub late: u64,
    /// Arrivals skipped for being later than the limit already.
    pub skipped: u64,
    /// Open loop: mean schedule lag of the arrivals sent, microseconds.
    pub lag_mean_us: f64,
}

impl IntervalSnapshot {
    /// Failed attempts, every class.
    pub fn failed(&self) -> u64 {
        self.failed_by_class.iter().map(|(_, n)| n).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_within_a_sixteenth_and_cover_u64() {
        for value in [0, 1, 31, 32, 33, 100, 999, 1_000, 12_345, 1_000_000, u64::MAX / 3] {
            let middle = bucket_value(bucket_of(value));
            let error = (middle as f64 - value as f64).abs() / (value.max(1) as f64);
            assert!(error <= 1.0 / 16.0, "{value} -> {middle}");
        }
        assert!(bucket_of(u64::MAX) < BUCKETS);
    }

    #[test]
    fn an_interval_is_its_own_and_zeroed_after() {
        let stats = IntervalStats::default();
        for latency in 1..=100u64 {
            stats.record_ok(latency * 1000, 10);
        }
        stats.record_failed(&ErrorClass::PoolTimeout, 5_000_000);
        stats.record_failed(&ErrorClass::PoolTimeout, 5_000_000);
        stats.record_late();
        let taken = stats.take();
        assert_eq!(taken.ok, 100);
        assert!((taken.latency_mean_us - 50_500.0).abs() < 1.0);
        assert!(
            (taken.latency_stddev_us - 28_866.0).abs() < 10.0,
            "{}",
            taken.latency_stddev_us
        );
        let p99 = taken.latency_p99_us as f64;
        assert!((p99 - 99_000.0).abs() / 99_000.0 < 0.07, "{p99}");
        assert_eq!(taken.failed_by_class, [("pool_timeout", 2)]);
        assert_eq!(taken.late, 1);
        let next = stats.take();
        assert_eq!((next.ok, next.failed(), next.late, next.latency_p99_us), (0, 0, 0, 0));
    }
}
