//! The per-second timeline of a cell: for each whole second since the start
//! of measurement, attempts, outcomes, pool-wait share and end-to-end
//! latencies, kept cheap enough to record on the hot path for hours.
//!
//! This file owns how seconds are stored (one hot histogram, sparse buckets
//! for the rest), merged and summarised into [`TimelineSecond`]s and
//! [`WindowSummary`]s. It must not know operations or error classes (the
//! recorder does), allocate per record except when a new second starts, or
//! do any I/O.

use hdrhistogram::Histogram;

use super::summary::LatencySummary;
use super::summary::TimelineSecond;
use super::summary::WindowSummary;
use crate::measure::histogram::{add_histogram, new_histogram};
use crate::measure::TIMELINE_SIGNIFICANT_DIGITS;

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

/// One attempt as the timeline sees it: its outcome and the times it sums, microseconds.
#[derive(Debug, Clone, Copy)]
pub(super) struct SecondEntry {
    /// Whether the attempt succeeded.
    pub ok: bool,
    /// Pool wait, microseconds.
    pub pool_wait_us: u64,
    /// In-database time, microseconds.
    pub in_db_us: u64,
    /// End-to-end latency, microseconds.
    pub end_to_end_us: u64,
}

/// Per-second timeline since `measure_from`. The second most recently recorded into keeps its
/// end-to-end latencies in a full histogram (`hot`, no allocation per record); when a record lands in
/// another second, `hot` is folded into its second's sparse buckets and reused.
#[derive(Clone)]
pub(super) struct Timeline {
    seconds: Vec<SecondRecorder>,
    hot: Histogram<u64>,
    hot_second: Option<usize>,
}

impl Timeline {
    pub(super) fn new() -> Timeline {
        Timeline {
            seconds: Vec::new(),
            hot: new_histogram(TIMELINE_SIGNIFICANT_DIGITS),
            hot_second: None,
        }
    }

    /// Seconds with an entry so far (the last one recorded into, and every one before it).
    pub(super) fn len(&self) -> usize {
        self.seconds.len()
    }

    /// Records one attempt that started in `second` (0 = the start of measurement).
    pub(super) fn record(&mut self, second: usize, attempt: SecondEntry) {
        if second >= self.seconds.len() {
            self.seconds.resize_with(second + 1, SecondRecorder::default);
        }
        let entry = &mut self.seconds[second];
        entry.attempts += 1;
        if attempt.ok {
            entry.ok += 1;
        } else {
            entry.errors += 1;
        }
        entry.pool_wait_sum_us = entry.pool_wait_sum_us.saturating_add(attempt.pool_wait_us);
        entry.in_db_sum_us = entry.in_db_sum_us.saturating_add(attempt.in_db_us);
        if self.hot_second != Some(second) {
            self.fold_hot();
            self.hot_second = Some(second);
        }
        self.hot.saturating_record(attempt.end_to_end_us);
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

    /// Adds another timeline's seconds to this one, exactly.
    pub(super) fn merge(&mut self, other: &Timeline) {
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

    /// One [`TimelineSecond`] per second, in order.
    pub(super) fn summarize(&self) -> Vec<TimelineSecond> {
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

    /// End-to-end latency and outcomes over timeline seconds `seconds`.
    pub(super) fn window(&self, seconds: std::ops::Range<u64>) -> WindowSummary {
        let mut histogram = new_histogram(TIMELINE_SIGNIFICANT_DIGITS);
        let (mut attempts, mut ok, mut errors) = (0, 0, 0);
        for (second, entry) in self.seconds.iter().enumerate() {
            if !seconds.contains(&(second as u64)) {
                continue;
            }
            attempts += entry.attempts;
            ok += entry.ok;
            errors += entry.errors;
            for &(value_us, count) in &entry.end_to_end_buckets {
                histogram.saturating_record_n(value_us, count);
            }
            if self.hot_second == Some(second) {
                add_histogram(&mut histogram, &self.hot);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ok: bool, end_to_end_us: u64, pool_wait_us: u64, in_db_us: u64) -> SecondEntry {
        SecondEntry {
            ok,
            pool_wait_us,
            in_db_us,
            end_to_end_us,
        }
    }

    #[test]
    fn timeline_seconds() {
        let mut timeline = Timeline::new();
        // Second 0: three attempts, one failed; pool wait 300 us vs in-db 900 us in total.
        timeline.record(0, entry(true, 1_000, 100, 300));
        timeline.record(0, entry(true, 2_000, 100, 300));
        timeline.record(0, entry(false, 100_000, 100, 300));
        // Second 2: two attempts, no pool wait.
        timeline.record(2, entry(true, 5_000, 0, 4_000));
        timeline.record(2, entry(true, 5_000, 0, 4_000));
        // A late record for second 0 after second 2 became current.
        timeline.record(0, entry(true, 1_500, 0, 0));

        let seconds = timeline.summarize();
        assert_eq!(seconds.len(), 3);
        assert_eq!(seconds.iter().map(|s| s.second).collect::<Vec<_>>(), [0, 1, 2]);

        let s0 = &seconds[0];
        assert_eq!((s0.attempts, s0.ok, s0.errors), (4, 3, 1));
        assert!((s0.pool_wait_share - 300.0 / 1_200.0).abs() < 1e-12);
        // Values 1000, 1500, 2000, 100000: median is 1500 and p99 is 100000, at 2 significant digits.
        assert!(s0.p50_us.abs_diff(1_500) <= 15, "p50 {}", s0.p50_us);
        assert!(s0.p99_us.abs_diff(100_000) <= 1_000, "p99 {}", s0.p99_us);

        let s1 = &seconds[1];
        assert_eq!((s1.attempts, s1.ok, s1.errors, s1.p50_us, s1.p99_us), (0, 0, 0, 0, 0));
        assert_eq!(s1.pool_wait_share, 0.0);

        let s2 = &seconds[2];
        assert_eq!((s2.attempts, s2.ok, s2.errors), (2, 2, 0));
        assert_eq!(s2.pool_wait_share, 0.0);
        assert!(s2.p50_us.abs_diff(5_000) <= 50, "p50 {}", s2.p50_us);
    }

    #[test]
    fn window_sums_the_seconds_it_covers() {
        let mut timeline = Timeline::new();
        for (second, latency_us) in [(0usize, 1_000u64), (1, 2_000), (1, 2_000), (2, 50_000)] {
            timeline.record(second, entry(true, latency_us, 0, 0));
        }
        let middle = timeline.window(1..2);
        assert_eq!((middle.attempts, middle.ok, middle.errors), (2, 2, 0));
        assert_eq!(middle.end_to_end.count, 2);
        assert!((1_990..=2_010).contains(&middle.end_to_end.p99_us), "{middle:?}");
        let all = timeline.window(0..10);
        assert_eq!(all.attempts, 4);
        assert!(all.end_to_end.max_us >= 49_000, "{all:?}");
        assert_eq!(timeline.window(5..9).attempts, 0);
    }

    #[test]
    fn merge_keeps_hot_and_sparse_seconds() {
        let mut a = Timeline::new();
        a.record(0, entry(true, 1_000, 0, 0));
        a.record(1, entry(true, 3_000, 0, 0));
        let mut b = Timeline::new();
        b.record(1, entry(false, 3_000, 0, 0));
        b.record(3, entry(true, 7_000, 0, 0));
        let mut single = Timeline::new();
        for (second, e) in [
            (0, entry(true, 1_000, 0, 0)),
            (1, entry(true, 3_000, 0, 0)),
            (1, entry(false, 3_000, 0, 0)),
            (3, entry(true, 7_000, 0, 0)),
        ] {
            single.record(second, e);
        }
        a.merge(&b);
        assert_eq!(a.len(), 4);
        assert_eq!(a.summarize(), single.summarize());
        assert_eq!(a.window(0..4), single.window(0..4));
    }

    #[test]
    fn sparse_buckets_stay_sorted_and_unique() {
        let mut buckets = vec![(10, 1), (30, 2)];
        add_sparse(&mut buckets, [(20, 1), (10, 4), (30, 1)].into_iter());
        assert_eq!(buckets, [(10, 5), (20, 1), (30, 3)]);
    }
}
