//! pgbench's aggregate log (`--aggregate-interval`): read by a parser
//! written from PostgreSQL 15's pgbench documentation ("Aggregated
//! Logging"), which first reads a log pgbench 15 itself wrote, then
//! contend's, whose columns must add up to the cell's own totals.

use std::path::{Path, PathBuf};

use contend::record::CellRecord;

use crate::util::{local_servers, prepare_machine, text, IsolatedTmp};

/// One line of the log, by the names pgbench 15's documentation gives its
/// columns, in its order.
#[derive(Debug, Default, Clone, PartialEq)]
struct Interval {
    interval_start: u64,
    num_transactions: u64,
    sum_latency: u128,
    sum_latency_2: u128,
    min_latency: u64,
    max_latency: u64,
    sum_lag: u128,
    sum_lag_2: u128,
    min_lag: u64,
    max_lag: u64,
    skipped: u64,
    retried: u64,
    retries: u64,
    serialization_failures: u64,
    deadlock_failures: u64,
    /// Columns after pgbench's fifteen (contend's own, behind a flag).
    extra: Vec<u64>,
}

/// The reference parser: fifteen space-separated integers per line, then
/// whatever a tool appends.
fn parse_log(text: &str) -> Vec<Interval> {
    text.lines()
        .map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            assert!(fields.len() >= 15, "fewer than pgbench 15's 15 columns: {line:?}");
            let n = |i: usize| -> u128 {
                fields[i]
                    .parse()
                    .unwrap_or_else(|_| panic!("column {} of {line:?} is not an integer", i + 1))
            };
            Interval {
                interval_start: n(0) as u64,
                num_transactions: n(1) as u64,
                sum_latency: n(2),
                sum_latency_2: n(3),
                min_latency: n(4) as u64,
                max_latency: n(5) as u64,
                sum_lag: n(6),
                sum_lag_2: n(7),
                min_lag: n(8) as u64,
                max_lag: n(9) as u64,
                skipped: n(10) as u64,
                retried: n(11) as u64,
                retries: n(12) as u64,
                serialization_failures: n(13) as u64,
                deadlock_failures: n(14) as u64,
                extra: (15..fields.len()).map(|i| n(i) as u64).collect(),
            }
        })
        .collect()
}

/// The files in `dir` whose names start with `prefix.`.
fn logs_named(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with(&format!("{prefix}.")))
        })
        .collect();
    logs.sort();
    logs
}

fn pgbench() -> String {
    std::env::var("PGBENCH").unwrap_or_else(|_| "pgbench".to_string())
}

/// Consistency every line must have, whoever wrote it.
fn assert_sane(intervals: &[Interval], interval_s: u64) {
    assert!(!intervals.is_empty());
    for pair in intervals.windows(2) {
        assert_eq!(pair[1].interval_start, pair[0].interval_start + interval_s, "{pair:?}");
    }
    for interval in intervals {
        let n = u128::from(interval.num_transactions);
        if n == 0 {
            assert_eq!(
                (interval.sum_latency, interval.min_latency, interval.max_latency),
                (0, 0, 0)
            );
            continue;
        }
        assert!(interval.min_latency <= interval.max_latency, "{interval:?}");
        assert!(
            interval.sum_latency >= n * u128::from(interval.min_latency),
            "{interval:?}"
        );
        assert!(
            interval.sum_latency <= n * u128::from(interval.max_latency),
            "{interval:?}"
        );
        // Cauchy–Schwarz: n·Σx² ≥ (Σx)².
        assert!(
            n * interval.sum_latency_2 >= interval.sum_latency.pow(2),
            "{interval:?}"
        );
        assert!(interval.retried <= interval.retries, "{interval:?}");
    }
}

#[test]
fn the_reference_parser_reads_a_log_pgbench_15_wrote() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let servers = runtime.block_on(local_servers(None));
    let url = servers.postgres.url.clone();
    let tmp = IsolatedTmp::new();
    let init = std::process::Command::new(pgbench())
        .args(["-i", "-q", "-s", "1", &url])
        .output()
        .unwrap();
    assert!(init.status.success(), "{:?}", text(&init));
    let prefix = tmp.path().join("pg");
    let output = std::process::Command::new(pgbench())
        .args(["-c", "2", "-T", "3", "-R", "200", "-L", "50", "--max-tries", "2"])
        .args(["-l", "--aggregate-interval", "1", "--log-prefix"])
        .arg(&prefix)
        .arg(&url)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    runtime.block_on(servers.shutdown());
    let logs = logs_named(tmp.path(), "pg");
    assert_eq!(logs.len(), 1, "one thread, one file: {logs:?}");
    let intervals = parse_log(&std::fs::read_to_string(&logs[0]).unwrap());
    assert_sane(&intervals, 1);
    assert!(
        intervals.iter().all(|i| i.extra.is_empty()),
        "pgbench 15 writes exactly 15 columns"
    );
    let total: u64 = intervals.iter().map(|i| i.num_transactions).sum();
    let reported: u64 = stdout
        .lines()
        .find_map(|line| line.strip_prefix("number of transactions actually processed: "))
        .and_then(|rest| rest.split('/').next())
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or_else(|| panic!("no transaction count in {stdout}"));
    // pgbench 15 never writes its last interval (observed here: a 3 s run
    // at -R 200 logs its first three seconds, 421 of 575 transactions), so
    // its log holds at most what it reports; contend's holds everything.
    assert!(total <= reported && total > 0, "{total} logged of {reported}");
    assert!(
        intervals.iter().any(|i| i.sum_lag > 0),
        "lag columns under -R: {intervals:?}"
    );
}

/// `contend run` of wallet-transfer with `flags`, the log written under
/// `tmp/agg`; returns the record and the parsed log.
fn run_with_log(tmp: &IsolatedTmp, flags: &[&str]) -> (CellRecord, Vec<Interval>) {
    let results = tmp.path().join("results");
    let prefix = tmp.path().join("agg");
    let output = tmp
        .contend()
        .args([
            "run",
            "--workload",
            "wallet-transfer",
            "--backend",
            "local",
            "--warmup",
            "0s",
        ])
        .args([
            "--no-slo-exit",
            "--format",
            "json",
            "--aggregate-interval",
            "1",
            "-l",
            "--log-prefix",
        ])
        .arg(&prefix)
        .args(flags)
        .arg("--results")
        .arg(&results)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    let record: CellRecord = serde_json::from_str(&stdout).expect("--format json: the record");
    let logs = logs_named(tmp.path(), "agg");
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert!(
        stderr.contains(&format!("aggregate log: {}", logs[0].display())),
        "{stderr}"
    );
    let intervals = parse_log(&std::fs::read_to_string(&logs[0]).unwrap());
    (record, intervals)
}

#[test]
fn an_open_loop_cells_log_adds_up_to_its_record() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let (record, intervals) = run_with_log(&tmp, &["--max-in-flight", "8", "-T", "3s", "-R", "300", "-L", "20"]);
    assert_sane(&intervals, 1);
    assert!(intervals.len() >= 3, "{intervals:?}");
    let started_s = record.metrics.window_started_unix_ms.unwrap() / 1000;
    assert_eq!(intervals[0].interval_start, started_s);
    let sum = |f: fn(&Interval) -> u64| intervals.iter().map(f).sum::<u64>();
    let metrics = &record.metrics;
    assert_eq!(sum(|i| i.num_transactions), metrics.ok, "every successful transaction");
    assert_eq!(sum(|i| i.skipped), metrics.skipped);
    assert_eq!(sum(|i| i.retries), metrics.retries);
    assert!(intervals.iter().any(|i| i.sum_lag > 0), "lag under -R");
    assert!(intervals.iter().all(|i| i.extra.is_empty()), "pgbench's columns only");
    // Means: the log's exact sums against the record's HdrHistograms (3
    // significant digits) of the same successful transactions.
    let latency_sum: u128 = intervals.iter().map(|i| i.sum_latency).sum();
    let mean_us = latency_sum as f64 / metrics.ok as f64;
    let recorded: f64 = metrics
        .operations
        .iter()
        .map(|op| op.end_to_end_ok.mean_us * op.end_to_end_ok.count as f64)
        .sum::<f64>()
        / metrics.ok as f64;
    assert!(
        (mean_us - recorded).abs() <= 0.02 * recorded + 5.0,
        "log mean {mean_us} µs vs record {recorded} µs"
    );
}

#[test]
fn retries_and_serialization_failures_are_in_their_columns_and_contends_after() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let (record, intervals) = run_with_log(
        &tmp,
        &[
            "--strategy",
            "serializable",
            "-c",
            "8",
            "-T",
            "3s",
            "--max-tries",
            "2",
            "--set",
            "data.wallets_per_scale=20",
            "--log-contend-columns",
        ],
    );
    assert_sane(&intervals, 1);
    let metrics = &record.metrics;
    let sum = |f: fn(&Interval) -> u64| intervals.iter().map(f).sum::<u64>();
    assert_eq!(sum(|i| i.num_transactions), metrics.ok);
    assert_eq!(sum(|i| i.retries), metrics.retries, "{:?}", metrics.errors_by_class);
    assert!(sum(|i| i.retries) > 0, "20 hot wallets, 8 clients: retries expected");
    // Failed transactions: their last attempt failed; with two tries each
    // failure counts once here and once or twice among the attempts.
    let serialization_attempts = metrics.errors_by_class.get("40001").copied().unwrap_or(0);
    let failed_transactions = sum(|i| i.serialization_failures);
    assert!(
        failed_transactions <= serialization_attempts,
        "{failed_transactions} vs {serialization_attempts}"
    );
    assert!(
        intervals.iter().all(|i| i.extra.len() == 3),
        "pool wait, in-DB, other failures"
    );
    let in_db: u64 = intervals.iter().map(|i| i.extra[1]).sum();
    assert!(in_db > 0 && u128::from(in_db) <= intervals.iter().map(|i| i.sum_latency).sum::<u128>());
}

#[test]
fn a_sweep_writes_a_log_per_cell_numbered_as_its_plan() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let results = tmp.path().join("results");
    let prefix = tmp.path().join("agg");
    let output = tmp
        .contend()
        .args([
            "sweep",
            "--workload",
            "sleep",
            "--backend",
            "local",
            "--pool-sizes",
            "1,2",
        ])
        .args([
            "-c",
            "2",
            "-T",
            "1s",
            "--warmup",
            "0s",
            "--no-slo-exit",
            "--aggregate-interval",
            "1",
        ])
        .arg("--log-prefix")
        .arg(&prefix)
        .arg("--results")
        .arg(&results)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    let logs = logs_named(tmp.path(), "agg");
    let names: Vec<String> = logs
        .iter()
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names[0].ends_with(".1") && names[1].ends_with(".2"), "{names:?}");
    let run = std::fs::read_dir(&results).unwrap().flatten().next().unwrap().path();
    let cells = contend::results::read_cells(&run).unwrap();
    for (log, cell) in logs.iter().zip(&cells) {
        let intervals = parse_log(&std::fs::read_to_string(log).unwrap());
        assert_sane(&intervals, 1);
        let total: u64 = intervals.iter().map(|i| i.num_transactions).sum();
        assert_eq!(total, cell.metrics.ok, "{}", log.display());
    }
}
