//! `contend sweep` for real: a sweep killed midway and resumed completes
//! with every cell exactly once, and cells whose pools exceed
//! max_connections show the refusals.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use crate::util::{prepare_machine, text, wait_until, IsolatedTmp, KillOnDrop};

fn cells(dir: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("cells.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("every line of cells.jsonl is a whole record"))
        .collect()
}

fn run_dir(results: &std::path::Path) -> Option<std::path::PathBuf> {
    std::fs::read_dir(results).ok()?.flatten().map(|e| e.path()).next()
}

const SWEEP: &[&str] = &[
    "sweep",
    "--workload",
    "sleep",
    "--pool-sizes",
    "1,2,3,4",
    "--max-connections",
    "20,24",
    "--clients",
    "4",
    "--duration",
    "1s",
    "--warmup",
    "0s",
    "--backend",
    "local",
];

#[test]
fn a_sweep_killed_midway_and_resumed_has_every_cell_exactly_once() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let results = tmp.path().join("results");
    let mut sweep = KillOnDrop(
        tmp.contend()
            .args(SWEEP)
            .arg("--results")
            .arg(&results)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let two_done = wait_until(Duration::from_secs(60), || {
        run_dir(&results).is_some_and(|dir| cells(&dir).len() >= 2)
    });
    assert!(two_done.is_some(), "two cells finished");
    sweep.kill().unwrap();
    sweep.wait().unwrap();
    let dir = run_dir(&results).unwrap();
    let before = cells(&dir).len();
    assert!((2..8).contains(&before), "killed midway: {before} cells");

    let output = tmp.contend().args(SWEEP).arg("--resume").arg(&dir).output().unwrap();
    let (_, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("removed"),
        "the killed sweep's run dir is cleaned up and said: {stderr}"
    );
    let records = cells(&dir);
    assert_eq!(records.len(), 8, "4 pool sizes × 2 max_connections");
    let keys: BTreeSet<(u64, u64)> = records
        .iter()
        .map(|r| {
            (
                r["settings"]["pool"]["size"].as_u64().unwrap(),
                r["postgres"]["max_connections"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(keys.len(), 8, "no cell twice: {keys:?}");
    let ran_now = stderr.lines().filter(|l| l.starts_with("pool ")).count();
    assert_eq!(ran_now, 8 - before, "the resume ran only the missing cells: {stderr}");
}

/// Two instances on two driver threads: Ctrl-C abandons a cell whose clients
/// run on threads of their own.
const ON_TWO_THREADS: &[&str] = &["--instances", "2", "--driver-threads", "2"];

#[test]
fn ctrl_c_stops_a_sweep_keeps_its_cells_and_leaves_no_server() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let results = tmp.path().join("results");
    let mut sweep = KillOnDrop(
        tmp.contend()
            .args(SWEEP)
            .args(ON_TWO_THREADS)
            .arg("--results")
            .arg(&results)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let two_done = wait_until(Duration::from_secs(60), || {
        run_dir(&results).is_some_and(|dir| cells(&dir).len() >= 2)
    });
    assert!(two_done.is_some(), "two cells finished");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sweep.0.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = sweep.0.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut sweep.0.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("interrupted") && stderr.contains("--resume"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(tmp.run_dirs().is_empty(), "servers gone at once: {:?}", tmp.run_dirs());
    let dir = run_dir(&results).unwrap();
    let before = cells(&dir).len();
    assert!((2..8).contains(&before), "{before} cells kept, each whole");

    let output = tmp
        .contend()
        .args(SWEEP)
        .args(ON_TWO_THREADS)
        .arg("--resume")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "{:?}", text(&output));
    assert_eq!(cells(&dir).len(), 8, "the resume completed the sweep");
}

#[test]
fn cells_whose_pools_exceed_max_connections_meet_too_many_clients() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let results = tmp.path().join("results");
    let output = tmp
        .contend()
        .args([
            "sweep",
            "--workload",
            "sleep",
            "--pool-sizes",
            "5",
            "--instances",
            "1,3",
            "--max-connections",
            "10",
        ])
        .args([
            "--clients",
            "24",
            "--ramp",
            "herd",
            "--duration",
            "1s",
            "--warmup",
            "0s",
            "--backend",
            "local",
        ])
        .arg("--results")
        .arg(&results)
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    let records = cells(&run_dir(&results).unwrap());
    assert_eq!(records.len(), 2);
    for record in records {
        let instances = record["settings"]["instances"].as_u64().unwrap();
        let refused = record["metrics"]["errors_by_class"]["53300"].as_u64().unwrap_or(0);
        // The clients' role is not a superuser: of 10 slots, 3 are reserved
        // and 2 hold contend's own sessions (the sampler, the checker).
        if instances == 1 {
            assert_eq!(refused, 0, "5 connections fit in 10 - 3 - 2");
        } else {
            assert!(
                refused > 0,
                "3 × 5 = 15 connections do not fit in 10: {}",
                record["metrics"]["errors_by_class"]
            );
        }
    }
}

#[test]
fn run_takes_one_max_connections_and_sweep_needs_pool_sizes() {
    let tmp = IsolatedTmp::new();
    let output = tmp
        .contend()
        .args(["run", "--workload", "sleep", "--max-connections", "10,20"])
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("takes one value here; `contend sweep` takes a list"),
        "{stderr}"
    );
    let output = tmp.contend().args(["sweep", "--workload", "sleep"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output).1.contains("--pool-sizes"));
}

#[test]
fn a_small_real_sweep_ends_with_a_recommendation_naming_its_cells() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let results = tmp.path().join("results");
    let output = tmp
        .contend()
        .args([
            "sweep",
            "--workload",
            "sleep",
            "--pool-sizes",
            "1,2,4,8",
            "--max-connections",
            "40",
        ])
        .args([
            // 20 ms per transaction: throughput stays far below what the
            // CPU allows even on a loaded machine, so the curve is the pool's.
            "--set",
            "traffic.delay_us=20000",
            "--repeat",
            "2",
            "--clients",
            "8",
            "--duration",
            "1s",
            "--warmup",
            "0s",
            "--backend",
            "local",
            "--results",
        ])
        .arg(&results)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("- knee: total pool"), "{stdout}");
    assert!(stdout.contains("- USL fit: σ ="), "{stdout}");
    assert!(stdout.contains("- max_connections:"), "{stdout}");
    assert!(
        stdout.contains("formula pool = 2 * cores + spindles with cores = "),
        "{stdout}"
    );

    let dir = run_dir(&results).unwrap();
    let output = tmp
        .contend()
        .args(["recommend", "--json", "--formula", "pool = cores * 4", "--cores", "2"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "{:?}", text(&output));
    let recommendation: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let knee = &recommendation["knee"];
    let knee_pool = knee["total_pool"].as_u64().unwrap();
    assert!([1, 2, 4, 8].contains(&knee_pool), "{knee}");
    // sleep's service time is fixed: 8 clients over a pool of 1 cannot reach
    // 95% of what 4 or 8 connections do.
    assert!(knee_pool >= 2, "{knee}");
    let knee_cells = knee["cells"].as_array().unwrap();
    assert!(!knee_cells.is_empty());
    let usl = &recommendation["usl"]["fit"];
    assert!(usl["r_squared"].as_f64().unwrap() > 0.5, "{usl}");
    assert_eq!(
        recommendation["cells"].as_array().unwrap().len(),
        8,
        "4 pool sizes × 2 repeats"
    );
    assert_eq!(knee_cells.len(), 2, "the knee's median is over both repeats: {knee}");
    // The user's formula is judged like the built-in ones: 2 cores × 4 = 8,
    // measured at total pool 8.
    let verdicts = recommendation["formulas"].as_array().unwrap();
    assert_eq!(verdicts.len(), 3, "{verdicts:?}");
    let mine = &verdicts[2];
    assert_eq!(mine["formula"], "pool = cores * 4 with cores = 2");
    assert_eq!(mine["value"], 8.0);
    let nearest = mine["nearest_cell"].as_u64().unwrap() as usize;
    assert_eq!(recommendation["cells"][nearest - 1]["total_pool"], 8, "{mine}");
    assert_eq!(
        mine["distance_from_recommended"].as_f64().unwrap(),
        8.0 - knee_pool as f64
    );

    let bad_formula = tmp
        .contend()
        .args(["recommend", "--formula", "pool = 2 * disks"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(bad_formula.status.code(), Some(2));
    let stderr = text(&bad_formula).1;
    assert!(stderr.contains("unknown variable \"disks\""), "{stderr}");

    let missing = tmp
        .contend()
        .args(["recommend"])
        .arg(tmp.path().join("nothing"))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert_eq!(text(&missing).1.lines().filter(|l| l.contains("error")).count(), 1);
}
