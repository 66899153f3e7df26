//! Cells provoked on purpose get the bottleneck class they were built to
//! show, with the evidence in the record and the sentence in the summary.

use contend::record::{Bottleneck, CellRecord};

use crate::util::{prepare_machine, text, IsolatedTmp};

/// `contend run` with `flags` on a local server; the record from stdout
/// (`--format json`).
fn diagnosed(flags: &[&str]) -> CellRecord {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let output = tmp
        .contend()
        .args([
            "run",
            "--backend",
            "local",
            "--warmup",
            "0s",
            "--no-slo-exit",
            "--format",
            "json",
        ])
        .args(flags)
        .arg("--results")
        .arg(tmp.path().join("results"))
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    serde_json::from_str(&stdout).expect("--format json: the record")
}

#[test]
fn twenty_four_clients_on_two_connections_wait_for_the_pool() {
    let record = diagnosed(&[
        "--workload",
        "sleep",
        "--pool-size",
        "2",
        "-c",
        "24",
        "-T",
        "2s",
        "--set",
        "traffic.delay_us=10000",
    ]);
    let d = record.diagnosis.expect("a diagnosis");
    assert_eq!(d.bottleneck, Bottleneck::Pool, "{d:?}");
    // 24 clients on 2 connections of 10 ms each: ~11 of 12 parts waiting.
    assert!(d.time_shares.pool_wait > 0.6, "{d:?}");
    assert_eq!(d.pool_connections, Some(2));
    assert!(
        d.busy_in_db > 1.0 && d.busy_in_db <= 2.2,
        "both connections busy: {d:?}"
    );
    let sentence = contend::render::diagnosis_text(&d);
    assert!(sentence.starts_with("the pool — "), "{sentence}");
    assert!(
        sentence.contains("waiting for one of 2 pooled connection(s)"),
        "{sentence}"
    );
}

#[test]
fn a_herd_without_a_pool_beyond_max_connections_is_refused_connections() {
    let record = diagnosed(&[
        "--workload",
        "sleep",
        "-C",
        "-c",
        "150",
        "--ramp",
        "herd",
        "--max-connections",
        "100",
        "-T",
        "2s",
    ]);
    let d = record.diagnosis.expect("a diagnosis");
    assert_eq!(d.bottleneck, Bottleneck::Connections, "{d:?}");
    assert!(d.refused_share > 0.01, "{d:?} {:?}", record.metrics.errors_by_class);
    assert_eq!(d.pool_connections, None);
}

#[test]
fn naive_transfers_through_a_big_pool_wait_on_the_servers_locks() {
    let record = diagnosed(&[
        "--workload",
        "wallet-transfer",
        "--strategy",
        "naive",
        "--pool-size",
        "64",
        "-c",
        "64",
        "-T",
        "3s",
    ]);
    let d = record.diagnosis.expect("a diagnosis");
    assert_eq!(d.bottleneck, Bottleneck::ServerLocks, "{d:?}");
    assert!(d.wait_shares.get("Lock").copied().unwrap_or(0.0) > 0.3, "{d:?}");
    assert!(d.time_shares.pool_wait < 0.1, "a pool as big as the clients: {d:?}");
    assert!(record
        .client_cpu
        .is_some_and(|cpu| cpu.cpu_s > 0.0 && cpu.wall_s >= 3.0));
}

/// Eight clients of 10 ms transactions over total pools 1 to 12: below
/// the knee they wait for the pool, from it on nothing saturates; the
/// recommendation says so, and each sweep line names its cell's class.
#[test]
fn a_sweep_says_why_the_knee_is_where_it_is() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let output = tmp
        .contend()
        .args([
            "sweep",
            "--workload",
            "sleep",
            "--backend",
            "local",
            "--pool-sizes",
            "1,2,4,8,12",
        ])
        .args(["-c", "8", "-T", "1s", "--warmup", "0s", "--no-slo-exit"])
        .args(["--set", "traffic.delay_us=10000"])
        .arg("--results")
        .arg(tmp.path().join("results"))
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains(" · goodput ")).collect();
    assert_eq!(lines.len(), 5, "{stderr}");
    assert!(lines[0].ends_with("bottleneck: the pool"), "{}", lines[0]);
    assert!(lines[4].ends_with("bottleneck: none"), "{}", lines[4]);
    let why = stdout
        .lines()
        .find(|l| l.starts_with("- why the knee is there: "))
        .unwrap_or_else(|| panic!("no verdict in {stdout}"));
    assert!(why.contains("below it cells #1 #2"), "{why}");
    assert!(why.contains(": the pool (lock waits"), "{why}");
    // Where the knee lands (pool 8 or 12) moves with the machine's load;
    // from it on nothing saturates.
    assert!(why.contains(": none ("), "{why}");
    assert!(
        !why.contains("above it") || why.contains("above it cells #5: none"),
        "{why}"
    );
}
