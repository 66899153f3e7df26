//! Whole transactions per second of the measured window, as pgbench counts
//! them: a transaction is a first attempt and its retries; its latency runs
//! from its first start (its intended start in an open loop) to its last
//! attempt's end. Sums, sums of squares, minimum and maximum are exact, so
//! any interval's figures (pgbench's `--aggregate-interval` log) are sums of
//! these seconds, not estimates.
//!
//! This file owns the per-second [`TransactionSecond`] and how seconds
//! merge; which error classes count as pgbench's serialization and deadlock
//! failures is decided here too. It must not know operations, time the
//! attempts (the driver does) or write the log (results does).

use serde::{Deserialize, Serialize};

use crate::client::ErrorClass;

/// How one transaction ended, as the driver saw it.
#[derive(Debug, Clone, Copy)]
pub struct TransactionEnd<'a> {
    /// `None` when it succeeded (after its retries), else the last attempt's class.
    pub failure: Option<&'a ErrorClass>,
    /// From the first attempt's (intended) start to the last attempt's end, microseconds.
    pub latency_us: u64,
    /// Open loop: how late the first attempt started after its intended start, microseconds.
    pub lag_us: Option<u64>,
    /// Attempts made (1 with no retry).
    pub tries: u32,
    /// Pool wait summed over its attempts, microseconds.
    pub pool_wait_us: u64,
    /// In-database time summed over its attempts, microseconds.
    pub in_db_us: u64,
}

/// The transactions whose first attempt was meant to start in one second of
/// the measured window. Latency and lag figures are of the successful ones
/// only (pgbench's `num_transactions`); failures count the others.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TransactionSecond {
    /// Seconds since the start of the measured window (0-based).
    pub second: u64,
    /// Transactions that succeeded.
    pub ok: u64,
    /// Sum of their latencies, microseconds.
    pub latency_sum_us: u64,
    /// Sum of their latencies' squares, µs² (exact).
    pub latency_sum_sq_us2: u128,
    /// Their smallest latency, microseconds (0 with none).
    pub latency_min_us: u64,
    /// Their largest latency, microseconds (0 with none).
    pub latency_max_us: u64,
    /// Open loop: sum of their schedule lags, microseconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lag_sum_us: u64,
    /// Open loop: sum of their lags' squares, µs².
    #[serde(default, skip_serializing_if = "is_zero_u128")]
    pub lag_sum_sq_us2: u128,
    /// Open loop: their smallest lag, microseconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lag_min_us: u64,
    /// Open loop: their largest lag, microseconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lag_max_us: u64,
    /// Arrivals meant for this second never sent: already later than the latency limit.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped: u64,
    /// Transactions (successful or not) that needed more than one attempt.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retried: u64,
    /// Retries made by them (attempts beyond each one's first).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u64,
    /// Transactions that failed, every error class.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failed: u64,
    /// Of those, failed on a serialization failure (40001).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub serialization_failures: u64,
    /// Of those, failed on a deadlock (40P01).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub deadlock_failures: u64,
    /// Pool wait of the successful transactions, summed, microseconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pool_wait_sum_us: u64,
    /// In-database time of the successful transactions, summed, microseconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub in_db_sum_us: u64,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

fn is_zero_u128(value: &u128) -> bool {
    *value == 0
}

impl TransactionSecond {
    /// An empty second numbered `second`.
    pub fn empty(second: u64) -> TransactionSecond {
        TransactionSecond {
            second,
            ..TransactionSecond::default()
        }
    }

    /// Counts one transaction that ended as `end`.
    fn record(&mut self, end: &TransactionEnd<'_>) {
        if end.tries > 1 {
            self.retried += 1;
            self.retries += u64::from(end.tries - 1);
        }
        match end.failure {
            Some(class) => {
                self.failed += 1;
                match class {
                    ErrorClass::SerializationFailure => self.serialization_failures += 1,
                    ErrorClass::DeadlockDetected => self.deadlock_failures += 1,
                    _ => {}
                }
            }
            None => {
                let first = self.ok == 0;
                self.ok += 1;
                add_value(
                    first,
                    end.latency_us,
                    (&mut self.latency_sum_us, &mut self.latency_sum_sq_us2),
                    (&mut self.latency_min_us, &mut self.latency_max_us),
                );
                if let Some(lag_us) = end.lag_us {
                    add_value(
                        first,
                        lag_us,
                        (&mut self.lag_sum_us, &mut self.lag_sum_sq_us2),
                        (&mut self.lag_min_us, &mut self.lag_max_us),
                    );
                }
                self.pool_wait_sum_us = self.pool_wait_sum_us.saturating_add(end.pool_wait_us);
                self.in_db_sum_us = self.in_db_sum_us.saturating_add(end.in_db_us);
            }
        }
    }

    /// Adds `other`'s transactions to these, exactly (its second number is ignored).
    pub fn add(&mut self, other: &TransactionSecond) {
        if other.ok > 0 {
            let first = self.ok == 0;
            for (mine, theirs) in [
                (&mut self.latency_min_us, other.latency_min_us),
                (&mut self.lag_min_us, other.lag_min_us),
            ] {
                *mine = if first { theirs } else { (*mine).min(theirs) };
            }
            self.latency_max_us = self.latency_max_us.max(other.latency_max_us);
            self.lag_max_us = self.lag_max_us.max(other.lag_max_us);
        }
        self.ok += other.ok;
        self.latency_sum_us = self.latency_sum_us.saturating_add(other.latency_sum_us);
        self.latency_sum_sq_us2 = self.latency_sum_sq_us2.saturating_add(other.latency_sum_sq_us2);
        self.lag_sum_us = self.lag_sum_us.saturating_add(other.lag_sum_us);
        self.lag_sum_sq_us2 = self.lag_sum_sq_us2.saturating_add(other.lag_sum_sq_us2);
        self.skipped += other.skipped;
        self.retried += other.retried;
        self.retries += other.retries;
        self.failed += other.failed;
        self.serialization_failures += other.serialization_failures;
        self.deadlock_failures += other.deadlock_failures;
        self.pool_wait_sum_us = self.pool_wait_sum_us.saturating_add(other.pool_wait_sum_us);
        self.in_db_sum_us = self.in_db_sum_us.saturating_add(other.in_db_sum_us);
    }
}

/// Adds one value to a sum, a sum of squares and a min/max pair (`first`:
/// the pair holds nothing yet).
fn add_value(first: bool, value: u64, (sum, sum_sq): (&mut u64, &mut u128), (min, max): (&mut u64, &mut u64)) {
    *sum = sum.saturating_add(value);
    *sum_sq = sum_sq.saturating_add(u128::from(value) * u128::from(value));
    *min = if first { value } else { (*min).min(value) };
    *max = (*max).max(value);
}

/// Per-second transactions of one worker (or, merged, of a cell).
#[derive(Debug, Clone, Default)]
pub(super) struct TransactionSeconds {
    seconds: Vec<TransactionSecond>,
}

impl TransactionSeconds {
    fn second_mut(&mut self, second: usize) -> &mut TransactionSecond {
        if second >= self.seconds.len() {
            let from = self.seconds.len();
            self.seconds
                .extend((from..=second).map(|s| TransactionSecond::empty(s as u64)));
        }
        &mut self.seconds[second]
    }

    /// Counts a transaction meant to start in `second`.
    pub(super) fn record(&mut self, second: usize, end: &TransactionEnd<'_>) {
        self.second_mut(second).record(end);
    }

    /// Counts an arrival meant for `second` that was skipped.
    pub(super) fn record_skipped(&mut self, second: usize) {
        self.second_mut(second).skipped += 1;
    }

    /// Adds another worker's seconds, exactly.
    pub(super) fn merge(&mut self, other: &TransactionSeconds) {
        for theirs in &other.seconds {
            self.second_mut(theirs.second as usize).add(theirs);
        }
    }

    /// Every second from 0 to the last with a transaction, in order.
    pub(super) fn seconds(&self) -> Vec<TransactionSecond> {
        self.seconds.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(latency_us: u64, lag_us: Option<u64>, tries: u32) -> TransactionEnd<'static> {
        TransactionEnd {
            failure: None,
            latency_us,
            lag_us,
            tries,
            pool_wait_us: 10,
            in_db_us: latency_us / 2,
        }
    }

    #[test]
    fn sums_squares_and_extremes_are_exact_and_failures_are_by_class() {
        let mut seconds = TransactionSeconds::default();
        seconds.record(0, &ok(1_000, Some(5), 1));
        seconds.record(0, &ok(3_000, Some(1), 3));
        let deadlock = ErrorClass::DeadlockDetected;
        let serialization = ErrorClass::SerializationFailure;
        let too_many = ErrorClass::TooManyConnections;
        for class in [&deadlock, &serialization, &serialization, &too_many] {
            seconds.record(
                2,
                &TransactionEnd {
                    failure: Some(class),
                    tries: 2,
                    ..ok(9_999, None, 1)
                },
            );
        }
        seconds.record_skipped(2);
        let all = seconds.seconds();
        assert_eq!(all.len(), 3);
        let s0 = &all[0];
        assert_eq!(
            (s0.ok, s0.latency_sum_us, s0.latency_sum_sq_us2),
            (2, 4_000, 10_000_000)
        );
        assert_eq!((s0.latency_min_us, s0.latency_max_us), (1_000, 3_000));
        assert_eq!(
            (s0.lag_sum_us, s0.lag_sum_sq_us2, s0.lag_min_us, s0.lag_max_us),
            (6, 26, 1, 5)
        );
        assert_eq!((s0.retried, s0.retries, s0.failed), (1, 2, 0));
        assert_eq!((s0.pool_wait_sum_us, s0.in_db_sum_us), (20, 2_000));
        assert_eq!(all[1], TransactionSecond::empty(1));
        let s2 = &all[2];
        assert_eq!((s2.ok, s2.latency_sum_us, s2.latency_min_us), (0, 0, 0));
        assert_eq!((s2.failed, s2.serialization_failures, s2.deadlock_failures), (4, 2, 1));
        assert_eq!((s2.retried, s2.retries, s2.skipped), (4, 4, 1));
    }

    #[test]
    fn merged_workers_equal_one_worker_that_saw_everything() {
        let ends = [(0, 700), (0, 300), (1, 4_000), (3, 20), (3, 90_000)];
        let mut single = TransactionSeconds::default();
        let (mut a, mut b) = (TransactionSeconds::default(), TransactionSeconds::default());
        for (i, &(second, latency_us)) in ends.iter().enumerate() {
            let end = ok(latency_us, Some(latency_us / 10), 1);
            single.record(second, &end);
            if i % 2 == 0 { &mut a } else { &mut b }.record(second, &end);
        }
        b.record_skipped(4);
        single.record_skipped(4);
        a.merge(&b);
        assert_eq!(a.seconds(), single.seconds());
        let s3 = &a.seconds()[3];
        assert_eq!((s3.latency_min_us, s3.latency_max_us, s3.lag_min_us), (20, 90_000, 2));
    }

    #[test]
    fn a_second_round_trips_through_json_with_its_u128_sums() {
        let mut second = TransactionSecond::empty(7);
        second.record(&ok(u64::MAX / 2, None, 1));
        second.record(&ok(u64::MAX / 2, None, 1));
        assert!(second.latency_sum_sq_us2 > u128::from(u64::MAX));
        let text = serde_json::to_string(&second).unwrap();
        assert!(!text.contains("lag_"), "zero open-loop fields are left out: {text}");
        let back: TransactionSecond = serde_json::from_str(&text).unwrap();
        assert_eq!(back, second);
    }
}
