//! What one cell's client side measured, as the serde structs a results
//! file carries: [`CellMetrics`] per cell, [`OperationMetrics`] per
//! operation, [`LatencySummary`] per histogram, [`TimelineSecond`] per
//! second, [`WindowSummary`] per span of seconds.
//!
//! This file owns these shapes and the field names (units in every name);
//! it must stay plain data: nothing here records, formats for people or
//! does I/O, and changing a field changes the `contend.cell/1` schema.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::transactions::TransactionSecond;

#[cfg(doc)]
use super::histogram::decode_histogram;
#[cfg(doc)]
use crate::client::ErrorClass;

/// Client-side measurements of one benchmark cell (measured window only, unless noted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellMetrics {
    /// Length of the measured window, seconds.
    pub measured_s: f64,
    /// Measured attempts (first attempts + retries), all operations.
    pub attempts: u64,
    /// Measured first attempts, all operations.
    pub first_attempts: u64,
    /// Measured retries of failed attempts, all operations.
    pub retries: u64,
    /// Measured attempts that succeeded, all operations.
    pub ok: u64,
    /// Measured attempts that failed, all operations.
    pub errors: u64,
    /// Attempts that started before the measured window (warmup), all operations; excluded from everything else.
    pub warmup_attempts: u64,
    /// Attempts per second: `attempts / measured_s`.
    pub throughput_per_s: f64,
    /// Successful attempts per second: `ok / measured_s`.
    pub goodput_per_s: f64,
    /// Fraction of attempts that failed, 0..=1: `errors / attempts` (0 with no attempts).
    pub error_rate: f64,
    /// Failed attempts per [`ErrorClass::key`], all operations.
    pub errors_by_class: BTreeMap<String, u64>,
    /// Per-operation measurements, in the order the operations were given to [`Recorder::new`](crate::measure::Recorder::new).
    pub operations: Vec<OperationMetrics>,
    /// One entry per whole second since the start of the measured window, all operations.
    pub timeline: Vec<TimelineSecond>,
    /// Whole transactions (a first attempt and its retries) per second of
    /// the measured window, with exact latency sums: what pgbench's
    /// aggregate log is made of. Empty in cells recorded before it existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transactions: Vec<TransactionSecond>,
    /// When the measured window started (second 0 of the timelines), Unix
    /// time in milliseconds; `None` in cells recorded before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_started_unix_ms: Option<u64>,
    /// With a latency limit: measured transactions (retries included in
    /// their latency) that finished later than it. 0 without a limit, and
    /// in cells recorded before the field existed.
    #[serde(default)]
    pub late: u64,
    /// With a latency limit and an open loop: measured arrivals never sent
    /// because they were already later than the limit when a worker could
    /// send them, as pgbench skips them. Not in `attempts`.
    #[serde(default)]
    pub skipped: u64,
}

impl CellMetrics {
    /// The highest end-to-end p99 of any operation, milliseconds: the
    /// cell's tail in one figure.
    pub fn worst_p99_ms(&self) -> f64 {
        self.operations.iter().map(|op| op.end_to_end.p99_us).max().unwrap_or(0) as f64 / 1000.0
    }
}

/// Measurements of one operation of the workload (measured window only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationMetrics {
    /// The operation's name from the workload.
    pub name: String,
    /// First attempts (count).
    pub first_attempts: u64,
    /// Retries of failed attempts (count).
    pub retries: u64,
    /// Successful attempts (count).
    pub ok: u64,
    /// Failed attempts per [`ErrorClass::key`] (count).
    pub errors_by_class: BTreeMap<String, u64>,
    /// Business-level results by name, e.g. `"assigned"` (count).
    pub counts: BTreeMap<String, u64>,
    /// End-to-end latency of all attempts, microseconds.
    pub end_to_end: LatencySummary,
    /// End-to-end latency of successful attempts only (goodput latency), microseconds.
    pub end_to_end_ok: LatencySummary,
    /// Pool wait of all attempts (0 where there was no pool wait), microseconds.
    pub pool_wait: LatencySummary,
    /// Connect time of attempts that opened a connection; `count` is the number of connects. Microseconds.
    pub connect: LatencySummary,
    /// In-database time of all attempts (0 where no statement was sent), microseconds.
    pub in_db: LatencySummary,
    /// Protocol round trips per attempt that reached the database, BEGIN
    /// and COMMIT included (the driver's count: see
    /// [`crate::client::count_round_trips`]); in-DB time is about server
    /// time + this × the round trip. 0 in cells recorded before it.
    #[serde(default)]
    pub round_trips_per_attempt: f64,
    /// Mergeable encodings of the five histograms above.
    pub histograms: EncodedHistograms,
}

/// Summary of one latency histogram, microseconds; all zero when `count` is 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Number of recorded values.
    pub count: u64,
    /// Mean, microseconds (bucket-precision).
    pub mean_us: f64,
    /// Median, microseconds (highest value equivalent to the bucket, as HdrHistogram reports).
    pub p50_us: u64,
    /// 90th percentile, microseconds.
    pub p90_us: u64,
    /// 95th percentile, microseconds.
    pub p95_us: u64,
    /// 99th percentile, microseconds.
    pub p99_us: u64,
    /// 99.9th percentile, microseconds.
    pub p999_us: u64,
    /// Maximum, microseconds (highest value equivalent to the largest recorded value).
    pub max_us: u64,
}

impl LatencySummary {
    /// Summarises a histogram whose values are microseconds.
    pub fn of(h: &Histogram<u64>) -> LatencySummary {
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: h.len(),
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p95_us: h.value_at_quantile(0.95),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// Mergeable encodings of one operation's histograms (values in microseconds): each is the
/// HdrHistogram V2 (deflate) serialization in standard-alphabet base64; see [`decode_histogram`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncodedHistograms {
    /// End-to-end latency of all attempts, microseconds.
    pub end_to_end: String,
    /// End-to-end latency of successful attempts, microseconds.
    pub end_to_end_ok: String,
    /// Pool wait, microseconds.
    pub pool_wait: String,
    /// Connect time (connects only), microseconds.
    pub connect: String,
    /// In-database time, microseconds.
    pub in_db: String,
}

/// All operations over a span of timeline seconds (e.g. before, during and
/// after an index build).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowSummary {
    /// First second included (timeline seconds, from the start of measurement).
    pub from_second: u64,
    /// First second past the window.
    pub to_second: u64,
    /// Attempts that started in the window.
    pub attempts: u64,
    /// Of those, successful.
    pub ok: u64,
    /// Of those, failed.
    pub errors: u64,
    /// End-to-end latency, microseconds ([`TIMELINE_SIGNIFICANT_DIGITS`](crate::measure::TIMELINE_SIGNIFICANT_DIGITS) significant digits).
    pub end_to_end: LatencySummary,
}

/// One whole second of the measured window, all operations; attempts belong to the second they started in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineSecond {
    /// Seconds since the start of the measured window (0-based).
    pub second: u64,
    /// Attempts that started in this second.
    pub attempts: u64,
    /// Of those, successful.
    pub ok: u64,
    /// Of those, failed.
    pub errors: u64,
    /// Median end-to-end latency, microseconds ([`TIMELINE_SIGNIFICANT_DIGITS`](crate::measure::TIMELINE_SIGNIFICANT_DIGITS) significant digits; 0 with no attempts).
    pub p50_us: u64,
    /// 99th-percentile end-to-end latency, microseconds ([`TIMELINE_SIGNIFICANT_DIGITS`](crate::measure::TIMELINE_SIGNIFICANT_DIGITS) significant digits; 0 with no attempts).
    pub p99_us: u64,
    /// Fraction 0..=1 of pool wait in pool wait + in-database time, summed over the second's
    /// attempts (0 when both sums are 0).
    pub pool_wait_share: f64,
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::client::ErrorClass;
    use crate::measure::AttemptOutcome;
    use crate::measure::AttemptTiming;
    use crate::measure::Recorder;

    /// A cell with two operations, errors, business counts and three timeline seconds.
    fn cell() -> CellMetrics {
        let origin = Instant::now();
        let mut recorder = Recorder::new(&["assign", "lookup"], origin);
        for i in 0..300u64 {
            let started = origin + Duration::from_millis((i * 7919) % 3000);
            let outcome = match i % 13 {
                0 => AttemptOutcome::Failed(ErrorClass::SerializationFailure),
                5 => AttemptOutcome::Failed(ErrorClass::OtherSqlState("XX000".into())),
                _ => AttemptOutcome::Ok,
            };
            let timing = AttemptTiming {
                pool_wait_us: (i * 11) % 500,
                connect_us: if i % 9 == 0 { 2_000 + i } else { 0 },
                in_db_us: 50 + i,
                end_to_end_us: 100 + (i * 37) % 90_000,
                checked_out: true,
                round_trips: 2,
            };
            recorder.record((i % 2) as usize, started, timing, &outcome, i % 7 == 0);
            if i % 3 == 0 {
                recorder.count((i % 2) as usize, started, "cache_hit");
            }
        }
        recorder.summarize(3.0)
    }

    #[test]
    fn cell_metrics_json_round_trip() {
        let cell = cell();
        let json = serde_json::to_string(&cell).expect("serializes");
        let back: CellMetrics = serde_json::from_str(&json).expect("deserializes");
        // Integers, strings and maps survive exactly; floats to within parsing precision.
        assert_eq!(
            (back.attempts, back.ok, back.errors),
            (cell.attempts, cell.ok, cell.errors)
        );
        assert_eq!(back.errors_by_class, cell.errors_by_class);
        assert_eq!(back.operations[1].histograms, cell.operations[1].histograms);
        assert_eq!(back.operations[1].counts, cell.operations[1].counts);
        assert_eq!(
            back.operations[0].end_to_end.p99_us,
            cell.operations[0].end_to_end.p99_us
        );
        assert!((back.operations[0].end_to_end.mean_us - cell.operations[0].end_to_end.mean_us).abs() < 1e-6);
        assert_eq!(back.timeline.len(), cell.timeline.len());
        assert!((back.error_rate - cell.error_rate).abs() < 1e-12);
        let class: ErrorClass =
            serde_json::from_str(&serde_json::to_string(&ErrorClass::PoolTimeout).unwrap()).unwrap();
        assert_eq!(class, ErrorClass::PoolTimeout);
    }

    #[test]
    fn an_empty_histogram_summarizes_to_zeros() {
        let empty = Histogram::<u64>::new_with_bounds(1, 1_000, 2).unwrap();
        assert_eq!(LatencySummary::of(&empty), LatencySummary::default());
        let mut one = empty.clone();
        one.record(500).unwrap();
        let summary = LatencySummary::of(&one);
        assert_eq!(summary.count, 1);
        assert!(
            summary.p50_us.abs_diff(500) <= 5 && summary.max_us == summary.p50_us,
            "{summary:?}"
        );
    }

    #[test]
    fn worst_p99_is_the_highest_operation_tail_in_ms() {
        let mut cell = cell();
        cell.operations[0].end_to_end.p99_us = 12_000;
        cell.operations[1].end_to_end.p99_us = 3_500;
        assert_eq!(cell.worst_p99_ms(), 12.0);
        cell.operations.clear();
        assert_eq!(cell.worst_p99_ms(), 0.0);
    }
}
