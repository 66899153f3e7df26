//! pgbench's aggregate log (`--aggregate-interval N`), from a cell's
//! per-second transactions, in PostgreSQL 15's column order so that parsers
//! written for pgbench read it unchanged:
//!
//! `interval_start num_transactions sum_latency sum_latency_2 min_latency
//! max_latency sum_lag sum_lag_2 min_lag max_lag skipped retried retries
//! serialization_failures deadlock_failures`
//!
//! Times in microseconds, `interval_start` in Unix seconds; columns that do
//! not apply (lag without a rate, retries with none) are 0, as pgbench 15
//! writes them. Every interval from the window's start to its last
//! transaction has a line, empty ones included. With
//! [`LogColumns::WithContend`], contend's own columns follow: pool wait and
//! in-database time summed over the interval's successful transactions, and
//! the transactions that failed on any other error class.
//!
//! Transactions fall into the interval their first attempt was meant to
//! start in (pgbench uses the time each one ended); the counts are the
//! cell's. Nothing is measured here.

use std::fmt::Write;

use crate::measure::{CellMetrics, TransactionSecond};

/// Which columns a line has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogColumns {
    /// pgbench 15's fifteen.
    Pgbench,
    /// pgbench's, then `pool_wait_sum in_db_sum other_failures`.
    WithContend,
}

/// Why a cell cannot be written as an aggregate log.
#[derive(Debug, thiserror::Error)]
pub enum AggregateLogError {
    /// Recorded by a contend that did not keep per-second transactions.
    #[error(
        "this cell was recorded before contend kept per-second transactions: no aggregate log can be made from it"
    )]
    NoTransactions,
}

/// The aggregate log of `metrics` over intervals of `interval_s` seconds (≥ 1), one line each.
pub fn aggregate_log(metrics: &CellMetrics, interval_s: u32, columns: LogColumns) -> Result<String, AggregateLogError> {
    let start_ms = metrics
        .window_started_unix_ms
        .ok_or(AggregateLogError::NoTransactions)?;
    if metrics.transactions.is_empty() && metrics.ok > 0 {
        return Err(AggregateLogError::NoTransactions);
    }
    let interval_s = u64::from(interval_s.max(1));
    let start_s = start_ms / 1000;
    let mut text = String::new();
    for (index, seconds) in metrics.transactions.chunks(interval_s as usize).enumerate() {
        let mut interval = TransactionSecond::empty(index as u64 * interval_s);
        for second in seconds {
            interval.add(second);
        }
        let other_failures = interval.failed - interval.serialization_failures - interval.deadlock_failures;
        let _ = write!(
            text,
            "{} {} {} {} {} {} {} {} {} {} {} {} {} {} {}",
            start_s + index as u64 * interval_s,
            interval.ok,
            interval.latency_sum_us,
            interval.latency_sum_sq_us2,
            interval.latency_min_us,
            interval.latency_max_us,
            interval.lag_sum_us,
            interval.lag_sum_sq_us2,
            interval.lag_min_us,
            interval.lag_max_us,
            interval.skipped,
            interval.retried,
            interval.retries,
            interval.serialization_failures,
            interval.deadlock_failures,
        );
        if columns == LogColumns::WithContend {
            let _ = write!(
                text,
                " {} {} {}",
                interval.pool_wait_sum_us, interval.in_db_sum_us, other_failures
            );
        }
        text.push('\n');
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::client::ErrorClass;
    use crate::measure::{Recorder, TransactionEnd};

    fn metrics() -> CellMetrics {
        let origin = Instant::now();
        let mut recorder = Recorder::new(&["op"], origin);
        let at = |ms: u64| origin + Duration::from_millis(ms);
        let end = |latency_us, tries| TransactionEnd {
            failure: None,
            latency_us,
            lag_us: Some(latency_us / 100),
            tries,
            pool_wait_us: 7,
            in_db_us: 100,
        };
        recorder.record_transaction(at(100), &end(1_000, 1));
        recorder.record_transaction(at(1_500), &end(3_000, 2));
        recorder.record_transaction(at(4_200), &end(2_000, 1));
        let deadlock = ErrorClass::DeadlockDetected;
        let canceled = ErrorClass::QueryCanceled;
        for class in [&deadlock, &canceled] {
            recorder.record_transaction(
                at(4_300),
                &TransactionEnd {
                    failure: Some(class),
                    ..end(50_000, 1)
                },
            );
        }
        recorder.count_skipped(at(4_400));
        let mut metrics = recorder.summarize(5.0);
        metrics.window_started_unix_ms = Some(1_700_000_000_250);
        metrics
    }

    #[test]
    fn intervals_sum_their_seconds_in_pgbench_15s_column_order() {
        let text = aggregate_log(&metrics(), 2, LogColumns::Pgbench).unwrap();
        assert_eq!(
            text,
            "1700000000 2 4000 10000000 1000 3000 40 1000 10 30 0 1 1 0 0\n\
             1700000002 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n\
             1700000004 1 2000 4000000 2000 2000 20 400 20 20 1 0 0 0 1\n"
        );
    }

    #[test]
    fn contends_columns_come_after_pgbenchs() {
        let text = aggregate_log(&metrics(), 5, LogColumns::WithContend).unwrap();
        let fields: Vec<&str> = text.lines().next().unwrap().split(' ').collect();
        assert_eq!(text.lines().count(), 1);
        assert_eq!(fields.len(), 18);
        assert_eq!(fields[1], "3");
        assert_eq!(&fields[15..], ["21", "300", "1"]);
    }

    #[test]
    fn a_cell_without_per_second_transactions_is_refused() {
        let mut old = metrics();
        old.window_started_unix_ms = None;
        assert!(aggregate_log(&old, 1, LogColumns::Pgbench).is_err());
    }
}
