//! What one attempt reports ([`AttemptTiming`], [`AttemptOutcome`]) and
//! what one operation of one recorder accumulates from them: outcome and
//! business counters and five latency histograms.
//!
//! This file owns which histogram an attempt's phases go to (and which they
//! skip); it must not know about seconds, workers or warmup (the recorder
//! and timeline do), allocate on the hot path except for a first-seen
//! error class or count name, or do any I/O.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use super::summary::EncodedHistograms;
use super::summary::LatencySummary;
use super::summary::OperationMetrics;
use crate::client::ErrorClass;
use crate::measure::histogram::{add_histogram, encode_or_empty, new_histogram};
use crate::measure::LATENCY_SIGNIFICANT_DIGITS;

/// Timing of one attempt, in microseconds. Zero where a phase did not happen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttemptTiming {
    /// Microseconds spent waiting for a pooled connection (0 with no pool).
    pub pool_wait_us: u64,
    /// Microseconds spent opening a new connection (pool growth, or per-transaction connect with no pool).
    pub connect_us: u64,
    /// Microseconds from the first statement sent to the commit/rollback answered.
    pub in_db_us: u64,
    /// Microseconds from the attempt's intended start (open loop) or actual start (closed loop) to done.
    pub end_to_end_us: u64,
    /// Protocol round trips the attempt made (see
    /// [`crate::client::count_round_trips`]).
    pub round_trips: u32,
    /// Whether the attempt went to the pool at all. An attempt that did not
    /// (a cache hit) is left out of the pool-wait and in-database
    /// histograms, whose percentiles would otherwise be pulled to zero.
    pub checked_out: bool,
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The attempt committed (or otherwise completed as intended).
    Ok,
    /// The attempt failed for the given reason.
    Failed(ErrorClass),
}

/// Adds every count of `source` into `target`, allocating only for keys new to `target`.
pub(super) fn add_counts<K: Ord + Clone>(target: &mut BTreeMap<K, u64>, source: &BTreeMap<K, u64>) {
    for (key, count) in source {
        match target.get_mut(key) {
            Some(existing) => *existing = existing.saturating_add(*count),
            None => {
                target.insert(key.clone(), *count);
            }
        }
    }
}

/// Everything one operation accumulated in one recorder (measured attempts only).
#[derive(Clone)]
pub(super) struct OperationRecorder {
    pub(super) name: &'static str,
    pub(super) first_attempts: u64,
    pub(super) retries: u64,
    pub(super) ok: u64,
    errors: BTreeMap<ErrorClass, u64>,
    counts: BTreeMap<&'static str, u64>,
    end_to_end: Histogram<u64>,
    end_to_end_ok: Histogram<u64>,
    pool_wait: Histogram<u64>,
    connect: Histogram<u64>,
    in_db: Histogram<u64>,
    /// Round trips of the attempts that reached the database, and how many
    /// attempts those were.
    round_trips: u64,
    attempts_in_db: u64,
}

impl OperationRecorder {
    pub(super) fn new(name: &'static str) -> OperationRecorder {
        OperationRecorder {
            name,
            first_attempts: 0,
            retries: 0,
            ok: 0,
            errors: BTreeMap::new(),
            counts: BTreeMap::new(),
            end_to_end: new_histogram(LATENCY_SIGNIFICANT_DIGITS),
            end_to_end_ok: new_histogram(LATENCY_SIGNIFICANT_DIGITS),
            pool_wait: new_histogram(LATENCY_SIGNIFICANT_DIGITS),
            connect: new_histogram(LATENCY_SIGNIFICANT_DIGITS),
            in_db: new_histogram(LATENCY_SIGNIFICANT_DIGITS),
            round_trips: 0,
            attempts_in_db: 0,
        }
    }

    /// Records one measured attempt (see [`Recorder::record`](crate::measure::Recorder::record)
    /// for which histogram gets what); returns whether it succeeded.
    pub(super) fn record(&mut self, timing: &AttemptTiming, outcome: &AttemptOutcome, retry: bool) -> bool {
        if retry {
            self.retries += 1;
        } else {
            self.first_attempts += 1;
        }
        self.end_to_end.saturating_record(timing.end_to_end_us);
        if timing.checked_out {
            self.pool_wait.saturating_record(timing.pool_wait_us);
        }
        // Zero only when no session was had (a refused or timed-out checkout).
        if timing.in_db_us > 0 {
            self.in_db.saturating_record(timing.in_db_us);
            self.round_trips += u64::from(timing.round_trips);
            self.attempts_in_db += 1;
        }
        if timing.connect_us > 0 {
            self.connect.saturating_record(timing.connect_us);
        }
        match outcome {
            AttemptOutcome::Ok => {
                self.ok += 1;
                self.end_to_end_ok.saturating_record(timing.end_to_end_us);
                true
            }
            AttemptOutcome::Failed(class) => {
                match self.errors.get_mut(class) {
                    Some(count) => *count += 1,
                    None => {
                        self.errors.insert(class.clone(), 1);
                    }
                }
                false
            }
        }
    }

    /// Counts one business-level result `what`.
    pub(super) fn count(&mut self, what: &'static str) {
        match self.counts.get_mut(what) {
            Some(count) => *count += 1,
            None => {
                self.counts.insert(what, 1);
            }
        }
    }

    pub(super) fn errors_total(&self) -> u64 {
        self.errors.values().sum()
    }

    pub(super) fn merge(&mut self, other: &OperationRecorder) {
        self.first_attempts += other.first_attempts;
        self.retries += other.retries;
        self.ok += other.ok;
        add_counts(&mut self.errors, &other.errors);
        add_counts(&mut self.counts, &other.counts);
        add_histogram(&mut self.end_to_end, &other.end_to_end);
        add_histogram(&mut self.end_to_end_ok, &other.end_to_end_ok);
        add_histogram(&mut self.pool_wait, &other.pool_wait);
        add_histogram(&mut self.connect, &other.connect);
        add_histogram(&mut self.in_db, &other.in_db);
        self.round_trips += other.round_trips;
        self.attempts_in_db += other.attempts_in_db;
    }

    pub(super) fn summarize(&self) -> OperationMetrics {
        let mut errors_by_class = BTreeMap::new();
        for (class, count) in &self.errors {
            *errors_by_class.entry(class.key()).or_insert(0) += count;
        }
        OperationMetrics {
            name: self.name.to_string(),
            first_attempts: self.first_attempts,
            retries: self.retries,
            ok: self.ok,
            errors_by_class,
            counts: self
                .counts
                .iter()
                .map(|(name, count)| (name.to_string(), *count))
                .collect(),
            end_to_end: LatencySummary::of(&self.end_to_end),
            end_to_end_ok: LatencySummary::of(&self.end_to_end_ok),
            pool_wait: LatencySummary::of(&self.pool_wait),
            connect: LatencySummary::of(&self.connect),
            in_db: LatencySummary::of(&self.in_db),
            round_trips_per_attempt: if self.attempts_in_db > 0 {
                self.round_trips as f64 / self.attempts_in_db as f64
            } else {
                0.0
            },
            histograms: EncodedHistograms {
                end_to_end: encode_or_empty(&self.end_to_end),
                end_to_end_ok: encode_or_empty(&self.end_to_end_ok),
                pool_wait: encode_or_empty(&self.pool_wait),
                connect: encode_or_empty(&self.connect),
                in_db: encode_or_empty(&self.in_db),
            },
        }
    }
}
