//! pgbench's vocabulary on the command line: its letters, `-P` progress
//! lines in a pipe (a CI log), `-L` late and skipped transactions, and a
//! summary header that names the pool as run and splits window from drain.

use std::path::Path;

use crate::util::{prepare_machine, text, IsolatedTmp};

/// The one cell a run wrote under `results`.
fn only_cell(results: &Path) -> serde_json::Value {
    let run = std::fs::read_dir(results).unwrap().flatten().next().unwrap().path();
    let cells = std::fs::read_to_string(run.join("cells.jsonl")).unwrap();
    let mut lines = cells.lines();
    let cell = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert!(lines.next().is_none(), "one cell");
    cell
}

/// `contend run` of the sleep workload on a local server with `flags`.
fn run_sleep(tmp: &IsolatedTmp, flags: &[&str]) -> (std::process::Output, serde_json::Value) {
    let results = tmp.path().join("results");
    let output = tmp
        .contend()
        .args(["run", "--workload", "sleep", "--backend", "local", "--warmup", "0s"])
        .args(flags)
        .arg("--results")
        .arg(&results)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    let cell = only_cell(&results);
    (output, cell)
}

#[test]
fn progress_lines_reach_a_pipe_every_second_and_the_header_splits_the_drain() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let (output, cell) = run_sleep(&tmp, &["-c", "8", "-T", "3s", "-P", "1"]);
    let (stdout, stderr) = text(&output);
    let progress: Vec<&str> = stderr.lines().filter(|l| l.starts_with("progress: ")).collect();
    assert!(progress.len() >= 2, "{stderr}");
    for line in &progress {
        assert!(
            line.contains(" s, ")
                && line.contains(" tps, lat ")
                && line.contains(" ms stddev ")
                && line.ends_with(" failed"),
            "{line}"
        );
    }
    assert!(progress[0].starts_with("progress: 1.0 s, "), "{}", progress[0]);
    assert!(
        !progress.iter().any(|l| l.contains("late")),
        "no -L, no late count: {stderr}"
    );
    assert_eq!(cell["settings"]["driver"]["load"]["clients"], 8);
    assert_eq!(cell["settings"]["driver"]["duration_s"], 3.0);
    let measured_s = cell["metrics"]["measured_s"].as_f64().unwrap();
    let header = stdout.lines().next().unwrap();
    assert!(header.contains("pool deadpool × 1 instance(s) of size 10"), "{header}");
    let drain = format!("3.0 s measured + {:.1} s drain", measured_s - 3.0);
    assert!(header.contains(&drain), "{header} lacks {drain}");
}

/// Closed loop, 20 ms transactions against a 10 ms limit: every measured
/// transaction is late; `-C` is `--pool none`, and the header says so.
#[test]
fn latency_limit_counts_late_transactions_and_no_pool_is_named() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let (output, cell) = run_sleep(
        &tmp,
        &[
            "-C",
            "-c",
            "2",
            "-T",
            "1s",
            "-L",
            "10",
            "-P",
            "0.5",
            "--set",
            "traffic.delay_us=20000",
        ],
    );
    let (stdout, stderr) = text(&output);
    assert_eq!(cell["settings"]["pool"]["kind"], "none");
    assert_eq!(cell["settings"]["driver"]["latency_limit_ms"], 10.0);
    let ok = cell["metrics"]["ok"].as_u64().unwrap();
    let late = cell["metrics"]["late"].as_u64().unwrap();
    assert!(ok > 10, "{stdout}");
    assert_eq!(late, cell["metrics"]["first_attempts"].as_u64().unwrap(), "{stdout}");
    assert_eq!(cell["metrics"]["skipped"], 0, "a closed loop skips nothing");
    let header = stdout.lines().next().unwrap();
    assert!(
        header.contains("no pool: a connection per transaction × 1 instance(s)"),
        "{header}"
    );
    assert!(!header.contains("size 10"), "{header}");
    assert!(
        stdout.contains(&format!("latency limit 10 ms · late {late} (took longer)")),
        "{stdout}"
    );
    let progress: Vec<&str> = stderr.lines().filter(|l| l.starts_with("progress: ")).collect();
    assert!(
        progress
            .iter()
            .any(|l| !l.ends_with(", 0 late") && l.ends_with(" late")),
        "{stderr}"
    );
}

/// Open loop at 200/s with one worker and 20 ms transactions (50/s at
/// most): arrivals fall behind, and those already 30 ms late when the
/// worker is free are skipped, not sent.
#[test]
fn rate_with_latency_limit_skips_arrivals_already_late() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let (output, cell) = run_sleep(
        &tmp,
        &[
            "-R",
            "200",
            "--max-in-flight",
            "1",
            "-T",
            "2s",
            "-L",
            "30",
            "-P",
            "1",
            "--set",
            "traffic.delay_us=20000",
        ],
    );
    let (stdout, stderr) = text(&output);
    let metrics = &cell["metrics"];
    let skipped = metrics["skipped"].as_u64().unwrap();
    let first_attempts = metrics["first_attempts"].as_u64().unwrap();
    let scheduled = cell["schedule"]["scheduled"].as_u64().unwrap();
    assert_eq!(scheduled, 400);
    // At most 50/s can be sent; the rest of the 400 are skipped.
    assert!(first_attempts <= 2 * 60, "{stdout}");
    assert!(skipped >= 250, "{stdout}");
    assert!(
        skipped + first_attempts <= scheduled,
        "skipped arrivals are no attempts: {stdout}"
    );
    assert!(
        stdout.contains(&format!("skipped {skipped} (already 30 ms behind schedule")),
        "{stdout}"
    );
    let progress: Vec<&str> = stderr.lines().filter(|l| l.starts_with("progress: ")).collect();
    assert!(
        progress
            .iter()
            .any(|l| l.ends_with(" skipped") && !l.ends_with(", 0 skipped")),
        "{stderr}"
    );
    // Under -R, pgbench's lag after the stddev; an overloaded schedule
    // shows a lag of at least some milliseconds.
    let lags: Vec<f64> = progress
        .iter()
        .map(|l| {
            let after = l.split(", lag ").nth(1).unwrap_or_else(|| panic!("no lag in {l}"));
            after.split(" ms").next().unwrap().parse().unwrap()
        })
        .collect();
    assert!(lags.iter().any(|&lag| lag >= 1.0), "{lags:?}\n{stderr}");
}
