//! The per-worker recorder: the hot path of client-side measurement.
//!
//! Each driver worker owns a [`Recorder`] and feeds it one call per attempt
//! (and per business-level result); recording takes no locks and allocates
//! nothing once the recorder is built, except when an error class or
//! business count name first appears for an operation or a new second of the
//! timeline starts. At the end of a cell the driver merges every worker's
//! recorder into one (exactly: HdrHistogram addition) and calls
//! [`Recorder::summarize`], which yields the serde structs of the summary
//! file ([`CellMetrics`] and friends) carrying mergeable histogram encodings.
//!
//! This file owns the split into warmup and measured attempts, the
//! operations by index, the timeline's seconds and the merge of workers; it
//! must not format text for humans, write files, print, or do any other
//! I/O. All durations are microseconds and every field name carries its
//! unit.

use std::collections::BTreeMap;
use std::time::Instant;

#[cfg(doc)]
use super::histogram::LATENCY_SIGNIFICANT_DIGITS;
use super::operation::AttemptOutcome;
use super::operation::AttemptTiming;
use super::summary::CellMetrics;
use super::summary::OperationMetrics;
use super::summary::WindowSummary;
use crate::measure::operation::{add_counts, OperationRecorder};
use crate::measure::timeline::{SecondEntry, Timeline};
use crate::measure::transactions::{TransactionEnd, TransactionSeconds};

/// Measurements of one worker (or, after [`Recorder::merge`], of many) for one benchmark cell.
///
/// Per operation it keeps HdrHistograms of end-to-end latency (all attempts and successful ones
/// only), pool wait, connect and in-database time, in microseconds (1 µs ..= [`MAX_LATENCY_US`](crate::measure::MAX_LATENCY_US),
/// [`LATENCY_SIGNIFICANT_DIGITS`] significant digits), plus outcome and business counters; for all
/// operations together it keeps a per-second timeline. Memory: about 190 KB per histogram, so
/// roughly 1 MB per operation, plus one 27 KB timeline histogram and a few hundred bytes per second.
#[derive(Clone)]
pub struct Recorder {
    measure_from: Instant,
    warmup_attempts: u64,
    operations: Vec<OperationRecorder>,
    timeline: Timeline,
    transactions: TransactionSeconds,
    late: u64,
    skipped: u64,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("measure_from", &self.measure_from)
            .field("warmup_attempts", &self.warmup_attempts)
            .field(
                "operations",
                &self.operations.iter().map(|op| op.name).collect::<Vec<_>>(),
            )
            .field("timeline_seconds", &self.timeline.len())
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// A recorder for the workload's operations, whose names are indexed by the `op` argument of
    /// [`Recorder::record`] and [`Recorder::count`].
    ///
    /// Attempts that *started* before `measure_from` are warmup: counted in `warmup_attempts` only.
    /// `measure_from` is also second 0 of the per-second timeline.
    pub fn new(operations: &[&'static str], measure_from: Instant) -> Recorder {
        Recorder {
            measure_from,
            warmup_attempts: 0,
            operations: operations.iter().map(|&name| OperationRecorder::new(name)).collect(),
            timeline: Timeline::new(),
            transactions: TransactionSeconds::default(),
            late: 0,
            skipped: 0,
        }
    }

    /// Records one attempt of operation `op` that started at `started`, with its phase timings in
    /// microseconds (clamped to [`MAX_LATENCY_US`](crate::measure::MAX_LATENCY_US)). `retry` is false for a first attempt, true for a
    /// retry of a failed attempt. End-to-end, pool wait and in-database time are recorded for every
    /// measured attempt (zeros included), connect time only when non-zero (so its count is the
    /// number of connects), and end-to-end again into the success-only histogram when the attempt
    /// succeeded.
    ///
    /// # Panics
    /// If `op` is not an index into the operations given to [`Recorder::new`].
    pub fn record(
        &mut self,
        op: usize,
        started: Instant,
        timing: AttemptTiming,
        outcome: &AttemptOutcome,
        retry: bool,
    ) {
        let Some(since_start) = started.checked_duration_since(self.measure_from) else {
            self.check_op(op);
            self.warmup_attempts += 1;
            return;
        };
        let ok = self.operation_mut(op).record(&timing, outcome, retry);
        let second = since_start.as_secs() as usize;
        self.timeline.record(
            second,
            SecondEntry {
                ok,
                pool_wait_us: timing.pool_wait_us,
                in_db_us: timing.in_db_us,
                end_to_end_us: timing.end_to_end_us,
            },
        );
    }

    /// Counts one whole transaction (a first attempt and its retries, each
    /// already given to [`Recorder::record`]) whose first attempt was meant to
    /// start at `first_started`, into its second of the per-second
    /// transaction figures (pgbench's aggregate log); ignored in warmup.
    pub fn record_transaction(&mut self, first_started: Instant, end: &TransactionEnd<'_>) {
        if let Some(since_start) = first_started.checked_duration_since(self.measure_from) {
            self.transactions.record(since_start.as_secs() as usize, end);
        }
    }

    /// The start of measurement: second 0 of the timelines.
    pub fn measure_from(&self) -> Instant {
        self.measure_from
    }

    /// Counts one business-level result `what` of operation `op` (e.g. `"assigned"`,
    /// `"already_full"`, `"cache_hit"`); ignored when `started` is before `measure_from` (warmup).
    ///
    /// # Panics
    /// If `op` is not an index into the operations given to [`Recorder::new`].
    pub fn count(&mut self, op: usize, started: Instant, what: &'static str) {
        if started < self.measure_from {
            self.check_op(op);
            return;
        }
        self.operation_mut(op).count(what);
    }

    /// Counts a transaction that started at `started` and finished later
    /// than the latency limit (pgbench's "late"); ignored in warmup.
    pub fn count_late(&mut self, started: Instant) {
        if started >= self.measure_from {
            self.late += 1;
        }
    }

    /// Counts an arrival intended at `intended` that was never sent: it was
    /// already later than the latency limit when a worker could send it
    /// (pgbench's "skipped" under `--rate` and `--latency-limit`); ignored
    /// in warmup.
    pub fn count_skipped(&mut self, intended: Instant) {
        if let Some(since_start) = intended.checked_duration_since(self.measure_from) {
            self.skipped += 1;
            self.transactions.record_skipped(since_start.as_secs() as usize);
        }
    }

    /// Adds another recorder's data to this one, exactly (HdrHistogram addition, counters summed).
    ///
    /// # Panics
    /// If `other` was built with different operation names or a different `measure_from`: merging
    /// them would silently mix up operations or shift the timeline.
    pub fn merge(&mut self, other: &Recorder) {
        assert!(
            self.operations
                .iter()
                .map(|op| op.name)
                .eq(other.operations.iter().map(|op| op.name)),
            "Recorder::merge: recorders have different operations"
        );
        assert!(
            self.measure_from == other.measure_from,
            "Recorder::merge: recorders have different measure_from"
        );
        self.warmup_attempts += other.warmup_attempts;
        self.late += other.late;
        self.skipped += other.skipped;
        for (mine, theirs) in self.operations.iter_mut().zip(&other.operations) {
            mine.merge(theirs);
        }
        self.timeline.merge(&other.timeline);
        self.transactions.merge(&other.transactions);
    }

    /// Summarises everything recorded over a measured window of `measured_s` seconds (rates are 0
    /// when `measured_s` is not a positive finite number).
    pub fn summarize(&self, measured_s: f64) -> CellMetrics {
        let operations: Vec<OperationMetrics> = self.operations.iter().map(OperationRecorder::summarize).collect();
        let first_attempts: u64 = self.operations.iter().map(|op| op.first_attempts).sum();
        let retries: u64 = self.operations.iter().map(|op| op.retries).sum();
        let ok: u64 = self.operations.iter().map(|op| op.ok).sum();
        let errors: u64 = self.operations.iter().map(OperationRecorder::errors_total).sum();
        let attempts = first_attempts + retries;
        let mut errors_by_class = BTreeMap::new();
        for operation in &operations {
            add_counts(&mut errors_by_class, &operation.errors_by_class);
        }
        let per_s = |count: u64| {
            if measured_s.is_finite() && measured_s > 0.0 {
                count as f64 / measured_s
            } else {
                0.0
            }
        };
        CellMetrics {
            measured_s,
            attempts,
            first_attempts,
            retries,
            ok,
            errors,
            warmup_attempts: self.warmup_attempts,
            throughput_per_s: per_s(attempts),
            goodput_per_s: per_s(ok),
            error_rate: if attempts > 0 {
                errors as f64 / attempts as f64
            } else {
                0.0
            },
            errors_by_class,
            operations,
            timeline: self.timeline.summarize(),
            transactions: self.transactions.seconds(),
            window_started_unix_ms: None,
            late: self.late,
            skipped: self.skipped,
        }
    }

    /// All operations' end-to-end latency over timeline seconds `seconds`
    /// (attempts that started in them), at the timeline's precision
    /// ([`TIMELINE_SIGNIFICANT_DIGITS`](crate::measure::TIMELINE_SIGNIFICANT_DIGITS) significant digits).
    pub fn window(&self, seconds: std::ops::Range<u64>) -> WindowSummary {
        self.timeline.window(seconds)
    }

    fn check_op(&self, op: usize) {
        assert!(
            op < self.operations.len(),
            "Recorder: operation index {op} out of range"
        );
    }

    fn operation_mut(&mut self, op: usize) -> &mut OperationRecorder {
        self.check_op(op);
        &mut self.operations[op]
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::client::ErrorClass;
    use crate::measure::decode_histogram;
    use crate::measure::LatencySummary;
    use crate::measure::MAX_LATENCY_US;

    const OPS: &[&str] = &["assign", "lookup"];

    #[test]
    fn attempts_that_skip_the_pool_stay_out_of_pool_and_db_histograms() {
        let origin = Instant::now();
        let mut recorder = Recorder::new(OPS, origin);
        let cache_hit = AttemptTiming {
            end_to_end_us: 300,
            ..AttemptTiming::default()
        };
        recorder.record(0, at(origin, 1), cache_hit, &AttemptOutcome::Ok, false);
        recorder.record(
            0,
            at(origin, 2),
            timing(5_000, 2_000, 0, 2_500),
            &AttemptOutcome::Ok,
            false,
        );
        let summary = recorder.summarize(1.0);
        let op = &summary.operations[0];
        assert_eq!(op.end_to_end.count, 2);
        assert_eq!(op.pool_wait.count, 1);
        assert_eq!(op.in_db.count, 1);
        assert_eq!(
            op.round_trips_per_attempt, 3.0,
            "the cache hit made none and is not averaged in"
        );
        assert!(op.pool_wait.p50_us >= 1_990, "{:?}", op.pool_wait);
    }

    fn timing(end_to_end_us: u64, pool_wait_us: u64, connect_us: u64, in_db_us: u64) -> AttemptTiming {
        AttemptTiming {
            pool_wait_us,
            connect_us,
            in_db_us,
            end_to_end_us,
            checked_out: true,
            round_trips: 3,
        }
    }

    fn at(origin: Instant, ms: u64) -> Instant {
        origin + Duration::from_millis(ms)
    }

    /// Within HdrHistogram precision at 3 significant digits (relative error below 0.1 %).
    fn close(actual: u64, expected: u64) -> bool {
        actual.abs_diff(expected) as f64 <= expected as f64 * 0.001 + 1.0
    }

    #[test]
    fn record_and_summarize() {
        let origin = Instant::now();
        let mut recorder = Recorder::new(OPS, origin);
        // 100 successful first attempts of op 0 with end-to-end 1..=100 ms, pool wait 1 ms, in-db 2 ms.
        for i in 1..=100u64 {
            let t = timing(i * 1000, 1000, 0, 2000);
            recorder.record(0, at(origin, i), t, &AttemptOutcome::Ok, false);
        }
        // Op 0: 3 deadlocks on first attempts, retried: 2 retries succeed, 1 fails again.
        for _ in 0..3 {
            let failed = AttemptOutcome::Failed(ErrorClass::DeadlockDetected);
            recorder.record(0, at(origin, 500), timing(50_000, 0, 0, 40_000), &failed, false);
        }
        recorder.record(
            0,
            at(origin, 600),
            timing(7_000, 0, 0, 5_000),
            &AttemptOutcome::Ok,
            true,
        );
        recorder.record(
            0,
            at(origin, 600),
            timing(7_000, 0, 0, 5_000),
            &AttemptOutcome::Ok,
            true,
        );
        let failed = AttemptOutcome::Failed(ErrorClass::DeadlockDetected);
        recorder.record(0, at(origin, 600), timing(9_000, 0, 0, 5_000), &failed, true);
        // Op 1: one pool timeout, one connect + success.
        let timeout = AttemptOutcome::Failed(ErrorClass::PoolTimeout);
        recorder.record(1, at(origin, 700), timing(30_000, 30_000, 0, 0), &timeout, false);
        recorder.record(
            1,
            at(origin, 800),
            timing(4_000, 0, 3_000, 1_000),
            &AttemptOutcome::Ok,
            false,
        );
        recorder.count(1, at(origin, 800), "cache_miss");
        recorder.count(1, at(origin, 900), "cache_miss");
        recorder.count(1, at(origin, 900), "cache_hit");

        let cell = recorder.summarize(2.0);
        assert_eq!(cell.attempts, 100 + 3 + 3 + 2);
        assert_eq!(cell.first_attempts, 100 + 3 + 2);
        assert_eq!(cell.retries, 3);
        assert_eq!(cell.ok, 100 + 2 + 1);
        assert_eq!(cell.errors, 5);
        assert_eq!(cell.ok + cell.errors, cell.attempts);
        assert_eq!(cell.warmup_attempts, 0);
        assert!((cell.throughput_per_s - 108.0 / 2.0).abs() < 1e-9);
        assert!((cell.goodput_per_s - 103.0 / 2.0).abs() < 1e-9);
        assert!((cell.error_rate - 5.0 / 108.0).abs() < 1e-12);
        assert_eq!(cell.errors_by_class.get("40P01"), Some(&4));
        assert_eq!(cell.errors_by_class.get("pool_timeout"), Some(&1));
        assert_eq!(cell.errors_by_class.len(), 2);

        let op0 = &cell.operations[0];
        assert_eq!(op0.name, "assign");
        assert_eq!((op0.first_attempts, op0.retries, op0.ok), (103, 3, 102));
        assert_eq!(op0.errors_by_class.get("40P01"), Some(&4));
        assert_eq!(op0.end_to_end.count, 106);
        assert_eq!(op0.end_to_end_ok.count, 102);
        assert_eq!(op0.pool_wait.count, 106);
        assert_eq!(op0.in_db.count, 106);
        assert_eq!(op0.connect.count, 0);
        assert_eq!(op0.connect, LatencySummary::default());
        // Successful op-0 latencies: 7 ms, 7 ms, then 1..=100 ms.
        let ok = &op0.end_to_end_ok;
        assert!(close(ok.p50_us, 49_000), "p50 {}", ok.p50_us);
        assert!(close(ok.p90_us, 90_000), "p90 {}", ok.p90_us);
        assert!(close(ok.p99_us, 99_000), "p99 {}", ok.p99_us);
        assert!(close(ok.max_us, 100_000), "max {}", ok.max_us);
        let expected_mean = (5050.0 + 14.0) * 1000.0 / 102.0;
        assert!(
            (ok.mean_us - expected_mean).abs() < expected_mean * 0.001,
            "mean {}",
            ok.mean_us
        );
        assert!(close(op0.end_to_end.max_us, 100_000));
        assert!(close(op0.in_db.max_us, 40_000));

        let op1 = &cell.operations[1];
        assert_eq!(op1.name, "lookup");
        assert_eq!((op1.first_attempts, op1.retries, op1.ok), (2, 0, 1));
        assert_eq!(op1.connect.count, 1);
        assert!(close(op1.connect.p50_us, 3_000));
        assert!(close(op1.pool_wait.max_us, 30_000));
        assert_eq!(op1.pool_wait.p50_us, 0);
        assert_eq!(op1.counts.get("cache_miss"), Some(&2));
        assert_eq!(op1.counts.get("cache_hit"), Some(&1));
        assert!(op0.counts.is_empty());

        // Rates are zero rather than infinite for an empty window; empty cells are all zeros.
        assert_eq!(recorder.summarize(0.0).throughput_per_s, 0.0);
        let empty = Recorder::new(OPS, origin).summarize(10.0);
        assert_eq!((empty.attempts, empty.error_rate, empty.goodput_per_s), (0, 0.0, 0.0));
        assert!(empty.timeline.is_empty());
        assert_eq!(empty.operations[0].end_to_end, LatencySummary::default());
    }

    #[test]
    fn values_beyond_an_hour_saturate() {
        let origin = Instant::now();
        let mut recorder = Recorder::new(OPS, origin);
        recorder.record(0, origin, timing(u64::MAX, 0, 0, 0), &AttemptOutcome::Ok, false);
        let cell = recorder.summarize(1.0);
        assert_eq!(cell.operations[0].end_to_end.count, 1);
        assert!(close(cell.operations[0].end_to_end.max_us, MAX_LATENCY_US));
    }

    #[test]
    fn warmup_is_excluded() {
        let measure_from = Instant::now() + Duration::from_secs(5);
        let mut recorder = Recorder::new(OPS, measure_from);
        let before = measure_from - Duration::from_millis(1);
        let failed = AttemptOutcome::Failed(ErrorClass::SerializationFailure);
        recorder.record(0, before, timing(1_000, 10, 20, 30), &AttemptOutcome::Ok, false);
        recorder.record(1, before, timing(1_000, 10, 20, 30), &failed, true);
        recorder.count(0, before, "assigned");
        // Exactly at measure_from counts as measured.
        recorder.record(0, measure_from, timing(2_000, 0, 0, 1_500), &AttemptOutcome::Ok, false);
        recorder.count(0, measure_from, "assigned");

        let cell = recorder.summarize(1.0);
        assert_eq!(cell.warmup_attempts, 2);
        assert_eq!(
            (cell.attempts, cell.first_attempts, cell.retries, cell.ok, cell.errors),
            (1, 1, 0, 1, 0)
        );
        assert!(cell.errors_by_class.is_empty());
        assert_eq!(cell.operations[0].end_to_end.count, 1);
        assert_eq!(cell.operations[0].connect.count, 0);
        assert_eq!(cell.operations[0].counts.get("assigned"), Some(&1));
        assert_eq!(cell.operations[1].end_to_end.count, 0);
        assert_eq!(cell.operations[1].first_attempts + cell.operations[1].retries, 0);
        assert_eq!(cell.timeline.len(), 1);
        assert_eq!(cell.timeline[0].attempts, 1);
    }

    /// A deterministic mixed workload: attempt `i` goes to recorder `i % parts`.
    fn feed(recorders: &mut [Recorder], origin: Instant) {
        let parts = recorders.len();
        for i in 0..600u64 {
            let recorder = &mut recorders[(i as usize) % parts];
            // Warmup, then attempts spread over 0..~4 s, deliberately not in time order.
            let started = if i % 50 == 0 {
                origin - Duration::from_millis(i + 1)
            } else {
                at(origin, (i * 7919) % 4000)
            };
            let outcome = match i % 13 {
                0 => AttemptOutcome::Failed(ErrorClass::SerializationFailure),
                5 => AttemptOutcome::Failed(ErrorClass::OtherSqlState("XX000".into())),
                _ => AttemptOutcome::Ok,
            };
            let t = timing(
                100 + (i * 37) % 90_000,
                (i * 11) % 500,
                if i % 9 == 0 { 2_000 + i } else { 0 },
                50 + i,
            );
            recorder.record((i % 2) as usize, started, t, &outcome, i % 7 == 0);
            if i % 3 == 0 {
                recorder.count(
                    (i % 2) as usize,
                    started,
                    if i % 2 == 0 { "assigned" } else { "cache_hit" },
                );
            }
        }
    }

    #[test]
    fn merge_equals_single_recorder() {
        let origin = Instant::now();
        let mut single = [Recorder::new(OPS, origin)];
        feed(&mut single, origin);
        let mut parts = [
            Recorder::new(OPS, origin),
            Recorder::new(OPS, origin),
            Recorder::new(OPS, origin),
        ];
        feed(&mut parts, origin);
        let mut merged = Recorder::new(OPS, origin);
        for part in &parts {
            merged.merge(part);
        }
        let expected = single[0].summarize(4.0);
        let actual = merged.summarize(4.0);
        assert!(expected.attempts > 500 && expected.warmup_attempts == 12);
        assert_eq!(expected.timeline.len(), 4);
        assert_eq!(actual, expected);

        // Merging into a recorder that already has data (including a hot timeline second) is exact too.
        let mut merged = parts[0].clone();
        merged.merge(&parts[1]);
        merged.merge(&parts[2]);
        assert_eq!(merged.summarize(4.0), expected);
    }

    #[test]
    #[should_panic(expected = "different operations")]
    fn merge_rejects_other_operations() {
        let origin = Instant::now();
        let mut a = Recorder::new(&["a"], origin);
        a.merge(&Recorder::new(&["b"], origin));
    }

    #[test]
    fn encodings_decode_to_their_summaries() {
        let origin = Instant::now();
        let mut recorders = [Recorder::new(OPS, origin)];
        feed(&mut recorders, origin);
        let cell = recorders[0].summarize(4.0);
        let op = &cell.operations[0];
        let encoded = &op.histograms;
        for (encoding, summary) in [
            (&encoded.end_to_end, &op.end_to_end),
            (&encoded.end_to_end_ok, &op.end_to_end_ok),
            (&encoded.pool_wait, &op.pool_wait),
            (&encoded.connect, &op.connect),
            (&encoded.in_db, &op.in_db),
        ] {
            let decoded = decode_histogram(encoding).expect("decodes");
            assert_eq!(&LatencySummary::of(&decoded), summary);
        }
        let empty = Recorder::new(OPS, origin).summarize(1.0);
        assert!(decode_histogram(&empty.operations[1].histograms.end_to_end_ok)
            .expect("decodes")
            .is_empty());
    }

    #[test]
    fn attempts_land_in_the_second_they_started() {
        let origin = Instant::now();
        let mut recorder = Recorder::new(OPS, origin);
        let failed = AttemptOutcome::Failed(ErrorClass::LockNotAvailable);
        recorder.record(
            0,
            at(origin, 999),
            timing(1_000, 100, 0, 300),
            &AttemptOutcome::Ok,
            false,
        );
        recorder.record(1, at(origin, 1_000), timing(2_000, 0, 0, 300), &failed, false);
        recorder.record(
            0,
            at(origin, 2_500),
            timing(3_000, 0, 0, 300),
            &AttemptOutcome::Ok,
            true,
        );
        let timeline = recorder.summarize(3.0).timeline;
        let outcomes: Vec<_> = timeline
            .iter()
            .map(|s| (s.second, s.attempts, s.ok, s.errors))
            .collect();
        assert_eq!(outcomes, [(0, 1, 1, 0), (1, 1, 0, 1), (2, 1, 1, 0)]);
        assert_eq!(recorder.window(1..3).attempts, 2);
    }
}
