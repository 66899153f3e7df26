//! pgbench's aggregate log flags, shared by `run` and `sweep`:
//! `--aggregate-interval N`, `--log-prefix P`, `-l`, and contend's own
//! extra columns.

use std::path::PathBuf;

use clap::Args;

use contend::render::LogColumns;

use super::values::parse_aggregate_interval;

/// The aggregate log's flags.
#[derive(Debug, Args)]
pub struct AggregateLogArgs {
    /// Write pgbench's aggregate log: one line per N seconds, in pgbench 15's columns (interval start, count, sum, sum², min, max of latency µs, the same of lag under -R, skipped, retried, retries, serialization and deadlock failures).
    #[arg(long, value_name = "SECONDS", value_parser = parse_aggregate_interval)]
    pub aggregate_interval: Option<u32>,
    /// The log is PREFIX.<pid> (a sweep: PREFIX.<pid>.<cell>), as pgbench's --log-prefix; default pgbench_log in the run's directory.
    #[arg(long, value_name = "PREFIX", requires = "aggregate_interval")]
    pub log_prefix: Option<PathBuf>,
    /// pgbench's -l, taken with --aggregate-interval (contend writes no per-transaction log).
    #[arg(short = 'l', long = "log", requires = "aggregate_interval")]
    pub log: bool,
    /// After pgbench's columns, contend's own: pool wait and in-database time summed over the interval's successful transactions (µs), and the transactions failed on any other error class.
    #[arg(long, requires = "aggregate_interval")]
    pub log_contend_columns: bool,
}

/// A checked `--aggregate-interval`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateLog {
    /// Seconds per line.
    pub interval_s: u32,
    /// `--log-prefix`, as given; `None`: pgbench_log in the run directory.
    pub prefix: Option<PathBuf>,
    /// pgbench's columns, or pgbench's and contend's.
    pub columns: LogColumns,
}

impl AggregateLogArgs {
    /// The log asked for, if any.
    pub fn chosen(&self) -> Option<AggregateLog> {
        self.aggregate_interval.map(|interval_s| AggregateLog {
            interval_s,
            prefix: self.log_prefix.clone(),
            columns: if self.log_contend_columns {
                LogColumns::WithContend
            } else {
                LogColumns::Pgbench
            },
        })
    }
}
