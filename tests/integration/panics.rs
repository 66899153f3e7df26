//! A panic in a client task fails its cell, never records it as whole: the
//! cell goes to failed.jsonl with the panic's message, the other clients
//! stop, a sweep goes on to its next cell, and the exit status is 1. The
//! panic is injected through `CONTEND_TEST_PANIC=client:N` (debug builds
//! only): the first client of the N-th cell panics in its third
//! transaction.

use std::time::{Duration, Instant};

use crate::util::{prepare_machine, processes_mentioning, text, IsolatedTmp};

fn jsonl(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn assert_panic_record(record: &serde_json::Value) {
    assert_eq!(record["cause"], "panic", "{record}");
    let reason = record["loss"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("panicked") && reason.contains("CONTEND_TEST_PANIC: client 0 panics in transaction 3"),
        "the panic's message: {reason}"
    );
    assert!(record["recovery"].is_null(), "no server recovery for a panic: {record}");
}

#[test]
fn a_client_panic_fails_its_cell_and_the_sweep_goes_on_and_exits_1() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let results = tmp.path().join("results");
    let output = tmp
        .contend()
        .env("CONTEND_TEST_PANIC", "client:2")
        .args(["sweep", "--workload", "sleep", "--pool-sizes", "1,2,3"])
        .args(["--clients", "2", "--duration", "1s", "--warmup", "0s"])
        .args(["--backend", "local", "--results"])
        .arg(&results)
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("FAILED ") && l.contains("contend panicked")),
        "{stderr}"
    );
    let dir = std::fs::read_dir(&results).unwrap().flatten().next().unwrap().path();
    let failed = jsonl(&dir.join("failed.jsonl"));
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["settings"]["pool"]["size"], 2);
    assert_panic_record(&failed[0]);
    let sizes: Vec<u64> = jsonl(&dir.join("cells.jsonl"))
        .iter()
        .map(|c| c["settings"]["pool"]["size"].as_u64().unwrap())
        .collect();
    assert_eq!(sizes, vec![1, 3], "the panicked cell is not among the measured ones");
    assert!(processes_mentioning(&tmp.path().display().to_string()).is_empty());
}

#[test]
fn a_client_panic_on_a_driver_thread_stops_the_run_at_once_and_exits_1() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let results = tmp.path().join("results");
    let started = Instant::now();
    let output = tmp
        .contend()
        .env("CONTEND_TEST_PANIC", "client:1")
        .args(["run", "--workload", "sleep", "--clients", "4", "--duration", "30s"])
        .args(["--warmup", "0s", "--instances", "2", "--driver-threads", "2"])
        .args(["--backend", "local", "--results"])
        .arg(&results)
        .output()
        .unwrap();
    let took = started.elapsed();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        took < Duration::from_secs(20),
        "the other clients stopped with the panic, not at the window's end: {took:?}"
    );
    assert!(
        stderr.contains("the cell failed:") && stderr.contains("contend panicked"),
        "{stderr}"
    );
    let dir = std::fs::read_dir(&results).unwrap().flatten().next().unwrap().path();
    assert!(
        !dir.join("cells.jsonl").exists(),
        "a cell cut short is not recorded as one"
    );
    let failed = jsonl(&dir.join("failed.jsonl"));
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_panic_record(&failed[0]);
    assert!(tmp.run_dirs().is_empty(), "servers stopped: {:?}", tmp.run_dirs());
}
