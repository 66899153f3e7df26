//! SIGTERM and SIGHUP stop `run`, `sweep` and `migrate` as Ctrl-C does:
//! servers down, finished cells kept, the `--resume` line, and 128 + the
//! signal's number as the exit status.

use std::io::Read;
use std::process::{Child, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::util::{prepare_machine, processes_mentioning, wait_until, IsolatedTmp, KillOnDrop};

/// Sends `signal` to `child`, waits (bounded) for it to exit and returns its
/// exit code and stderr.
fn signal_and_wait(child: &mut KillOnDrop, signal: Signal) -> (Option<i32>, String) {
    kill(Pid::from_raw(child.id() as i32), signal).unwrap();
    let exited = wait_until(Duration::from_secs(30), || matches!(child.try_wait(), Ok(Some(_))));
    assert!(exited.is_some(), "contend exits within 30 s of {signal}");
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    (status.code(), stderr)
}

/// Waits until contend's cell (its database `<prefix><contend's pid>`) has
/// sessions on the server.
fn wait_for_cell(child: &Child, prefix: &str) {
    let cell_database = format!("{prefix}{}", child.id());
    let running = wait_until(Duration::from_secs(60), || {
        processes_mentioning(&cell_database)
            .iter()
            .any(|p| p.contains("postgres: "))
    });
    assert!(running.is_some(), "the cell's sessions appear");
}

fn assert_no_server_left(tmp: &IsolatedTmp) {
    assert!(tmp.run_dirs().is_empty(), "servers stopped: {:?}", tmp.run_dirs());
    assert!(
        processes_mentioning(&tmp.path().display().to_string()).is_empty(),
        "no server process left"
    );
}

#[test]
fn sigterm_stops_a_sweep_keeps_its_cells_says_how_to_resume_and_exits_143() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let results = tmp.path().join("results");
    let mut sweep = KillOnDrop(
        tmp.contend()
            .args(["sweep", "--workload", "sleep", "--pool-sizes", "1,2,3,4,5,6"])
            .args(["--clients", "2", "--duration", "1s", "--warmup", "0s"])
            .args(["--backend", "local", "--results"])
            .arg(&results)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let cells = || -> usize {
        std::fs::read_dir(&results)
            .ok()
            .and_then(|mut dirs| dirs.next())
            .and_then(|dir| std::fs::read_to_string(dir.ok()?.path().join("cells.jsonl")).ok())
            .map_or(0, |text| text.lines().count())
    };
    assert!(
        wait_until(Duration::from_secs(90), || cells() >= 1).is_some(),
        "a cell finished"
    );
    let (code, stderr) = signal_and_wait(&mut sweep, Signal::SIGTERM);
    assert_eq!(code, Some(143), "{stderr}");
    assert!(
        stderr.contains("interrupted by SIGTERM") && stderr.contains("--resume"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let kept = cells();
    assert!((1..6).contains(&kept), "{kept} finished cells kept");
    assert_no_server_left(&tmp);
}

#[test]
fn sighup_stops_a_run_mid_cell_records_nothing_and_exits_129() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let results = tmp.path().join("results");
    let mut run = KillOnDrop(
        tmp.contend()
            .args(["run", "--workload", "sleep", "--clients", "2", "--duration", "60s"])
            .args(["--warmup", "0s", "--backend", "local", "--results"])
            .arg(&results)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_for_cell(&run, "contend_cell_");
    let (code, stderr) = signal_and_wait(&mut run, Signal::SIGHUP);
    assert_eq!(code, Some(129), "{stderr}");
    assert!(stderr.contains("interrupted by SIGHUP"), "{stderr}");
    let recorded: Vec<_> = std::fs::read_dir(&results)
        .map(|dirs| dirs.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(
        recorded.is_empty(),
        "an abandoned cell leaves no run directory: {recorded:?}"
    );
    assert_no_server_left(&tmp);
}

#[test]
fn sigterm_stops_a_migration_under_load_and_exits_143() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let mut migrate = KillOnDrop(
        tmp.contend()
            .args([
                "migrate",
                "--workload",
                "goal-count",
                "--scale",
                "0.05",
                "--clients",
                "2",
            ])
            .args(["--duration", "60s", "--warmup", "0s", "--backend", "local", "--results"])
            .arg(tmp.path().join("results"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_for_cell(&migrate, "contend_migrate_");
    let (code, stderr) = signal_and_wait(&mut migrate, Signal::SIGTERM);
    assert_eq!(code, Some(143), "{stderr}");
    assert!(stderr.contains("interrupted by SIGTERM"), "{stderr}");
    assert_no_server_left(&tmp);
}
