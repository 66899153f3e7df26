//! Client-side measurement of one benchmark cell, kept as plain data.
//!
//! Each driver worker owns a [`Recorder`] and feeds it one call per attempt
//! (and per business-level result); recording takes no locks and allocates
//! nothing once the recorder is built, except when an error class or business
//! count name first appears for an operation or a new second of the timeline
//! starts. At the end of a cell the driver merges every worker's recorder into
//! one (exactly: HdrHistogram addition) and calls [`Recorder::summarize`],
//! which yields serde structs ([`CellMetrics`] and friends) carrying mergeable
//! histogram encodings. This module measures; it must not format text for
//! humans, write files, print, or do any other I/O. All
//! durations are microseconds and every field name carries its unit.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::time::Instant;

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::client::ErrorClass;

/// Highest latency the histograms track, in microseconds (one hour); larger values are clamped to it.
pub const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Significant decimal digits of the per-operation latency histograms (values in microseconds).
pub const LATENCY_SIGNIFICANT_DIGITS: u8 = 3;

/// Significant decimal digits of the per-second timeline histograms (values in microseconds).
pub const TIMELINE_SIGNIFICANT_DIGITS: u8 = 2;

/// Errors of this module: only decoding (or encoding) a histogram can fail.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The encoded histogram was not valid standard-alphabet base64.
    #[error("histogram is not valid base64: {0}")]
    Base64(#[from] base64::DecodeError),
    /// The bytes were not an HdrHistogram V2 (deflate) serialization of a `u64`-count histogram.
    #[error("histogram could not be deserialized: {0}")]
    Deserialize(#[from] hdrhistogram::serialization::DeserializeError),
    /// The histogram could not be serialized (a bucket count above `i64::MAX`).
    #[error("histogram could not be serialized: {0}")]
    Serialize(#[from] hdrhistogram::serialization::V2DeflateSerializeError),
}

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

/// A latency histogram (values in microseconds) with the given precision over 1 µs ..= [`MAX_LATENCY_US`].
fn new_histogram(significant_digits: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, significant_digits)
        .expect("constant histogram bounds (1 us ..= 1 h, 2-3 significant digits) are valid")
}

/// Adds `source` into `target` exactly; falls back to re-recording bucket by bucket (clamped)
/// should the two ever differ in configuration (never between this module's own histograms).
fn add_histogram(target: &mut Histogram<u64>, source: &Histogram<u64>) {
    if target.add(source).is_err() {
        for bucket in source.iter_recorded() {
            target.saturating_record_n(bucket.value_iterated_to(), bucket.count_at_value());
        }
    }
}

/// Adds every count of `source` into `target`, allocating only for keys new to `target`.
fn add_counts<K: Ord + Clone>(target: &mut BTreeMap<K, u64>, source: &BTreeMap<K, u64>) {
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
struct OperationRecorder {
    name: &'static str,
    first_attempts: u64,
    retries: u64,
    ok: u64,
    errors: BTreeMap<ErrorClass, u64>,
    counts: BTreeMap<&'static str, u64>,
    end_to_end: Histogram<u64>,
    end_to_end_ok: Histogram<u64>,
    pool_wait: Histogram<u64>,
    connect: Histogram<u64>,
    in_db: Histogram<u64>,
}

impl OperationRecorder {
    fn new(name: &'static str) -> OperationRecorder {
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
        }
    }

    fn errors_total(&self) -> u64 {
        self.errors.values().sum()
    }

    fn merge(&mut self, other: &OperationRecorder) {
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
    }

    fn summarize(&self) -> OperationMetrics {
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

/// Counters of one timeline second (all operations). Its end-to-end latencies are kept sparse:
/// `(highest equivalent value in µs, count)` per non-empty bucket of a
/// [`TIMELINE_SIGNIFICANT_DIGITS`] histogram, sorted by value, so a long run costs a few hundred
/// bytes per second instead of a full histogram's counts array per second per worker.
#[derive(Clone, Default)]
struct SecondRecorder {
    attempts: u64,
    ok: u64,
    errors: u64,
    pool_wait_sum_us: u64,
    in_db_sum_us: u64,
    end_to_end_buckets: Vec<(u64, u64)>,
}

/// Per-second timeline since `measure_from`. The second most recently recorded into keeps its
/// end-to-end latencies in a full histogram (`hot`, no allocation per record); when a record lands in
/// another second, `hot` is folded into its second's sparse buckets and reused.
#[derive(Clone)]
struct Timeline {
    seconds: Vec<SecondRecorder>,
    hot: Histogram<u64>,
    hot_second: Option<usize>,
}

impl Timeline {
    fn new() -> Timeline {
        Timeline {
            seconds: Vec::new(),
            hot: new_histogram(TIMELINE_SIGNIFICANT_DIGITS),
            hot_second: None,
        }
    }

    fn record(&mut self, second: usize, timing: &AttemptTiming, ok: bool) {
        if second >= self.seconds.len() {
            self.seconds.resize_with(second + 1, SecondRecorder::default);
        }
        let entry = &mut self.seconds[second];
        entry.attempts += 1;
        if ok {
            entry.ok += 1;
        } else {
            entry.errors += 1;
        }
        entry.pool_wait_sum_us = entry.pool_wait_sum_us.saturating_add(timing.pool_wait_us);
        entry.in_db_sum_us = entry.in_db_sum_us.saturating_add(timing.in_db_us);
        if self.hot_second != Some(second) {
            self.fold_hot();
            self.hot_second = Some(second);
        }
        self.hot.saturating_record(timing.end_to_end_us);
    }

    /// Moves the hot histogram's contents into its second's sparse buckets.
    fn fold_hot(&mut self) {
        if let Some(second) = self.hot_second.take() {
            if !self.hot.is_empty() {
                let buckets = &mut self.seconds[second].end_to_end_buckets;
                add_sparse(buckets, sparse_buckets(&self.hot));
            }
            self.hot.reset();
        }
    }

    fn merge(&mut self, other: &Timeline) {
        self.fold_hot();
        if other.seconds.len() > self.seconds.len() {
            self.seconds.resize_with(other.seconds.len(), SecondRecorder::default);
        }
        for (second, (mine, theirs)) in self.seconds.iter_mut().zip(&other.seconds).enumerate() {
            mine.attempts += theirs.attempts;
            mine.ok += theirs.ok;
            mine.errors += theirs.errors;
            mine.pool_wait_sum_us = mine.pool_wait_sum_us.saturating_add(theirs.pool_wait_sum_us);
            mine.in_db_sum_us = mine.in_db_sum_us.saturating_add(theirs.in_db_sum_us);
            add_sparse(&mut mine.end_to_end_buckets, theirs.end_to_end_buckets.iter().copied());
            if other.hot_second == Some(second) {
                add_sparse(&mut mine.end_to_end_buckets, sparse_buckets(&other.hot));
            }
        }
    }

    fn summarize(&self) -> Vec<TimelineSecond> {
        let mut scratch = new_histogram(TIMELINE_SIGNIFICANT_DIGITS);
        self.seconds
            .iter()
            .enumerate()
            .map(|(second, entry)| {
                scratch.reset();
                for &(value_us, count) in &entry.end_to_end_buckets {
                    scratch.saturating_record_n(value_us, count);
                }
                if self.hot_second == Some(second) {
                    add_histogram(&mut scratch, &self.hot);
                }
                let (p50_us, p99_us) = if scratch.is_empty() {
                    (0, 0)
                } else {
                    (scratch.value_at_quantile(0.50), scratch.value_at_quantile(0.99))
                };
                let waited_us = entry.pool_wait_sum_us as f64;
                let busy_us = waited_us + entry.in_db_sum_us as f64;
                TimelineSecond {
                    second: second as u64,
                    attempts: entry.attempts,
                    ok: entry.ok,
                    errors: entry.errors,
                    p50_us,
                    p99_us,
                    pool_wait_share: if busy_us > 0.0 { waited_us / busy_us } else { 0.0 },
                }
            })
            .collect()
    }
}

/// The non-empty buckets of `histogram` as `(highest equivalent value in µs, count)`, ascending.
/// Re-recording these values into a histogram of the same configuration restores it exactly.
fn sparse_buckets(histogram: &Histogram<u64>) -> impl Iterator<Item = (u64, u64)> + '_ {
    histogram
        .iter_recorded()
        .map(|bucket| (bucket.value_iterated_to(), bucket.count_at_value()))
}

/// Adds `(value, count)` pairs into sorted sparse buckets, keeping them sorted and one per value.
fn add_sparse(buckets: &mut Vec<(u64, u64)>, extra: impl Iterator<Item = (u64, u64)>) {
    buckets.extend(extra);
    buckets.sort_unstable_by_key(|&(value, _)| value);
    buckets.dedup_by(|later, kept| {
        if later.0 == kept.0 {
            kept.1 = kept.1.saturating_add(later.1);
            true
        } else {
            false
        }
    });
}

/// Measurements of one worker (or, after [`Recorder::merge`], of many) for one benchmark cell.
///
/// Per operation it keeps HdrHistograms of end-to-end latency (all attempts and successful ones
/// only), pool wait, connect and in-database time, in microseconds (1 µs ..= [`MAX_LATENCY_US`],
/// [`LATENCY_SIGNIFICANT_DIGITS`] significant digits), plus outcome and business counters; for all
/// operations together it keeps a per-second timeline. Memory: about 190 KB per histogram, so
/// roughly 1 MB per operation, plus one 27 KB timeline histogram and a few hundred bytes per second.
#[derive(Clone)]
pub struct Recorder {
    measure_from: Instant,
    warmup_attempts: u64,
    operations: Vec<OperationRecorder>,
    timeline: Timeline,
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
            .field("timeline_seconds", &self.timeline.seconds.len())
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
        }
    }

    /// Records one attempt of operation `op` that started at `started`, with its phase timings in
    /// microseconds (clamped to [`MAX_LATENCY_US`]). `retry` is false for a first attempt, true for a
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
        let operation = self.operation_mut(op);
        if retry {
            operation.retries += 1;
        } else {
            operation.first_attempts += 1;
        }
        operation.end_to_end.saturating_record(timing.end_to_end_us);
        if timing.checked_out {
            operation.pool_wait.saturating_record(timing.pool_wait_us);
        }
        // Zero only when no session was had (a refused or timed-out checkout).
        if timing.in_db_us > 0 {
            operation.in_db.saturating_record(timing.in_db_us);
        }
        if timing.connect_us > 0 {
            operation.connect.saturating_record(timing.connect_us);
        }
        let ok = match outcome {
            AttemptOutcome::Ok => {
                operation.ok += 1;
                operation.end_to_end_ok.saturating_record(timing.end_to_end_us);
                true
            }
            AttemptOutcome::Failed(class) => {
                match operation.errors.get_mut(class) {
                    Some(count) => *count += 1,
                    None => {
                        operation.errors.insert(class.clone(), 1);
                    }
                }
                false
            }
        };
        let second = since_start.as_secs() as usize;
        self.timeline.record(second, &timing, ok);
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
        let counts = &mut self.operation_mut(op).counts;
        match counts.get_mut(what) {
            Some(count) => *count += 1,
            None => {
                counts.insert(what, 1);
            }
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
        for (mine, theirs) in self.operations.iter_mut().zip(&other.operations) {
            mine.merge(theirs);
        }
        self.timeline.merge(&other.timeline);
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
        }
    }

    /// All operations' end-to-end latency over timeline seconds `seconds`
    /// (attempts that started in them), at the timeline's precision
    /// ([`TIMELINE_SIGNIFICANT_DIGITS`] significant digits).
    pub fn window(&self, seconds: std::ops::Range<u64>) -> WindowSummary {
        let timeline = &self.timeline;
        let mut histogram = new_histogram(TIMELINE_SIGNIFICANT_DIGITS);
        let (mut attempts, mut ok, mut errors) = (0, 0, 0);
        for (second, entry) in timeline.seconds.iter().enumerate() {
            if !seconds.contains(&(second as u64)) {
                continue;
            }
            attempts += entry.attempts;
            ok += entry.ok;
            errors += entry.errors;
            for &(value_us, count) in &entry.end_to_end_buckets {
                histogram.saturating_record_n(value_us, count);
            }
            if timeline.hot_second == Some(second) {
                add_histogram(&mut histogram, &timeline.hot);
            }
        }
        WindowSummary {
            from_second: seconds.start,
            to_second: seconds.end,
            attempts,
            ok,
            errors,
            end_to_end: LatencySummary::of(&histogram),
        }
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
    /// Per-operation measurements, in the order the operations were given to [`Recorder::new`].
    pub operations: Vec<OperationMetrics>,
    /// One entry per whole second since the start of the measured window, all operations.
    pub timeline: Vec<TimelineSecond>,
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
    /// End-to-end latency, microseconds ([`TIMELINE_SIGNIFICANT_DIGITS`] significant digits).
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
    /// Median end-to-end latency, microseconds ([`TIMELINE_SIGNIFICANT_DIGITS`] significant digits; 0 with no attempts).
    pub p50_us: u64,
    /// 99th-percentile end-to-end latency, microseconds ([`TIMELINE_SIGNIFICANT_DIGITS`] significant digits; 0 with no attempts).
    pub p99_us: u64,
    /// Fraction 0..=1 of pool wait in pool wait + in-database time, summed over the second's
    /// attempts (0 when both sums are 0).
    pub pool_wait_share: f64,
}

/// Encodes a histogram (values in microseconds) as HdrHistogram V2 (deflate) serialization in
/// standard-alphabet base64, the format of [`EncodedHistograms`].
pub fn encode_histogram(h: &Histogram<u64>) -> Result<String, MetricsError> {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new().serialize(h, &mut bytes)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// Encoding for [`EncodedHistograms`]; the empty string (rejected by [`decode_histogram`]) stands
/// for a failure, which needs a bucket count above `i64::MAX` and so cannot happen in practice.
fn encode_or_empty(h: &Histogram<u64>) -> String {
    encode_histogram(h).unwrap_or_default()
}

/// Decodes one of the [`EncodedHistograms`] strings (base64 of an HdrHistogram V2 (deflate)
/// serialization) back into a histogram of microseconds, ready for `Histogram::add`.
pub fn decode_histogram(encoded: &str) -> Result<Histogram<u64>, MetricsError> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded.trim())?;
    Ok(Deserializer::new().deserialize(&mut Cursor::new(bytes))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
        assert!(op.pool_wait.p50_us >= 1_990, "{:?}", op.pool_wait);
    }

    fn timing(end_to_end_us: u64, pool_wait_us: u64, connect_us: u64, in_db_us: u64) -> AttemptTiming {
        AttemptTiming {
            pool_wait_us,
            connect_us,
            in_db_us,
            end_to_end_us,
            checked_out: true,
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
    fn encode_decode_round_trip() {
        let origin = Instant::now();
        let mut recorders = [Recorder::new(OPS, origin)];
        feed(&mut recorders, origin);
        let cell = recorders[0].summarize(4.0);
        let op = &cell.operations[0];
        let decoded = decode_histogram(&op.histograms.end_to_end).expect("decodes");
        assert_eq!(decoded.len(), op.end_to_end.count);
        assert_eq!(decoded.value_at_quantile(0.99), op.end_to_end.p99_us);
        assert_eq!(LatencySummary::of(&decoded), op.end_to_end);
        let decoded_connect = decode_histogram(&op.histograms.connect).expect("decodes");
        assert_eq!(LatencySummary::of(&decoded_connect), op.connect);

        // Decoded histograms merge: two copies double every count and keep the percentiles.
        let mut doubled = decode_histogram(&op.histograms.in_db).expect("decodes");
        doubled
            .add(decode_histogram(&op.histograms.in_db).expect("decodes"))
            .expect("same configuration");
        assert_eq!(doubled.len(), 2 * op.in_db.count);
        assert_eq!(doubled.value_at_quantile(0.99), op.in_db.p99_us);

        // An empty histogram round-trips too.
        let empty = Recorder::new(OPS, origin).summarize(1.0);
        assert!(decode_histogram(&empty.operations[1].histograms.end_to_end_ok)
            .expect("decodes")
            .is_empty());

        assert!(matches!(decode_histogram("not base64!"), Err(MetricsError::Base64(_))));
        assert!(matches!(
            decode_histogram("AAAAAAAA"),
            Err(MetricsError::Deserialize(_))
        ));
    }

    #[test]
    fn window_sums_the_seconds_it_covers() {
        let t0 = Instant::now();
        let mut recorder = Recorder::new(&["op"], t0);
        for (second, latency_us) in [(0u64, 1_000u64), (1, 2_000), (1, 2_000), (2, 50_000)] {
            let started = t0 + Duration::from_millis(second * 1000 + 10);
            let timing = AttemptTiming {
                end_to_end_us: latency_us,
                ..AttemptTiming::default()
            };
            recorder.record(0, started, timing, &AttemptOutcome::Ok, false);
        }
        let middle = recorder.window(1..2);
        assert_eq!((middle.attempts, middle.ok, middle.errors), (2, 2, 0));
        assert_eq!(middle.end_to_end.count, 2);
        assert!((1_990..=2_010).contains(&middle.end_to_end.p99_us), "{middle:?}");
        let all = recorder.window(0..10);
        assert_eq!(all.attempts, 4);
        assert!(all.end_to_end.max_us >= 49_000, "{all:?}");
        assert_eq!(recorder.window(5..9).attempts, 0);
    }

    #[test]
    fn timeline_seconds() {
        let origin = Instant::now();
        let mut recorder = Recorder::new(OPS, origin);
        let failed = AttemptOutcome::Failed(ErrorClass::LockNotAvailable);
        // Second 0: three attempts, one failed; pool wait 300 us vs in-db 900 us in total.
        recorder.record(0, at(origin, 0), timing(1_000, 100, 0, 300), &AttemptOutcome::Ok, false);
        recorder.record(
            1,
            at(origin, 400),
            timing(2_000, 100, 0, 300),
            &AttemptOutcome::Ok,
            false,
        );
        recorder.record(0, at(origin, 999), timing(100_000, 100, 0, 300), &failed, false);
        // Second 2: two attempts, no pool wait.
        recorder.record(
            0,
            at(origin, 2_000),
            timing(5_000, 0, 0, 4_000),
            &AttemptOutcome::Ok,
            false,
        );
        recorder.record(
            1,
            at(origin, 2_500),
            timing(5_000, 0, 0, 4_000),
            &AttemptOutcome::Ok,
            true,
        );
        // A late record for second 0 after second 2 became current.
        recorder.record(0, at(origin, 10), timing(1_500, 0, 0, 0), &AttemptOutcome::Ok, false);

        let timeline = recorder.summarize(3.0).timeline;
        assert_eq!(timeline.len(), 3);
        assert_eq!(timeline.iter().map(|s| s.second).collect::<Vec<_>>(), [0, 1, 2]);

        let s0 = &timeline[0];
        assert_eq!((s0.attempts, s0.ok, s0.errors), (4, 3, 1));
        assert!((s0.pool_wait_share - 300.0 / 1_200.0).abs() < 1e-12);
        // Values 1000, 1500, 2000, 100000: median is 1500 and p99 is 100000, at 2 significant digits.
        assert!(s0.p50_us.abs_diff(1_500) <= 15, "p50 {}", s0.p50_us);
        assert!(s0.p99_us.abs_diff(100_000) <= 1_000, "p99 {}", s0.p99_us);

        let s1 = &timeline[1];
        assert_eq!((s1.attempts, s1.ok, s1.errors, s1.p50_us, s1.p99_us), (0, 0, 0, 0, 0));
        assert_eq!(s1.pool_wait_share, 0.0);

        let s2 = &timeline[2];
        assert_eq!((s2.attempts, s2.ok, s2.errors), (2, 2, 0));
        assert_eq!(s2.pool_wait_share, 0.0);
        assert!(s2.p50_us.abs_diff(5_000) <= 50, "p50 {}", s2.p50_us);
    }

    #[test]
    fn cell_metrics_json_round_trip() {
        let origin = Instant::now();
        let mut recorders = [Recorder::new(OPS, origin)];
        feed(&mut recorders, origin);
        let cell = recorders[0].summarize(4.0);
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
}
