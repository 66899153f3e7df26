//! What scripts and CI read from contend: the exit status an objective
//! that FAILs gives (99, `--no-slo-exit` 0), `--format json|csv` on stdout
//! and nothing else there, and `compare --junit`.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::util::{prepare_machine, text, IsolatedTmp};

/// sleep.toml with an `[slo]` p95 limit: sleep's transaction is a 5 ms
/// pg_sleep, so 1 ms always FAILs and 10 s always PASSes.
fn sleep_with_p95_limit(dir: &Path, p95_ms: u32) -> PathBuf {
    let file = dir.join(format!("sleep-p95-{p95_ms}.toml"));
    let defaults = include_str!("../../workloads/sleep.toml");
    std::fs::write(&file, format!("{defaults}\n[slo]\np95_ms = {{ \"*\" = {p95_ms} }}\n")).unwrap();
    file
}

/// One short sleep cell on local servers with `extra` flags.
fn run_sleep(tmp: &IsolatedTmp, extra: &[&str]) -> Output {
    tmp.contend()
        .args(["run", "--workload", "sleep", "--duration", "1s", "--warmup", "0s"])
        .args(["--clients", "2", "--backend", "local", "--results"])
        .arg(tmp.path().join("results"))
        .args(extra)
        .output()
        .unwrap()
}

/// Issue 19: an SLO FAIL changed nothing in the exit status, so CI could
/// not gate on the objectives contend itself declares. A FAIL is 99, a
/// PASS 0, and `--no-slo-exit` turns a FAIL back into 0.
#[test]
fn an_slo_fail_exits_99_and_a_pass_exits_0() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let failing = sleep_with_p95_limit(tmp.path(), 1);
    let passing = sleep_with_p95_limit(tmp.path(), 10_000);
    let failing = failing.to_str().unwrap();

    let output = run_sleep(&tmp, &["--workload-file", failing]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(99), "{stdout}{stderr}");
    assert!(stdout.contains("FAIL  p95 sleep <= 1 ms"), "{stdout}");
    assert!(
        stderr.contains("1 objective(s) of the workload's [slo] FAILed"),
        "{stderr}"
    );

    let output = run_sleep(&tmp, &["--workload-file", passing.to_str().unwrap()]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("PASS  p95 sleep <= 10000 ms"), "{stdout}");

    let output = run_sleep(&tmp, &["--workload-file", failing, "--no-slo-exit"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("FAIL  p95 sleep <= 1 ms"), "{stdout}");
}

/// A sweep is judged over all its cells: one FAIL anywhere is 99.
#[test]
fn a_sweep_whose_cells_fail_an_slo_exits_99() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let failing = sleep_with_p95_limit(tmp.path(), 1);
    let output = tmp
        .contend()
        .args(["sweep", "--workload", "sleep", "--pool-sizes", "1,2", "--clients", "2"])
        .args([
            "--duration",
            "1s",
            "--warmup",
            "0s",
            "--backend",
            "local",
            "--workload-file",
        ])
        .arg(&failing)
        .arg("--results")
        .arg(tmp.path().join("results"))
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(99), "{stdout}{stderr}");
    assert!(
        stderr.contains("2 objective(s) of the workload's [slo] FAILed"),
        "{stderr}"
    );
}
