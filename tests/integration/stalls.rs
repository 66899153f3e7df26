//! A server that stops answering without closing anything: the local
//! postmaster and its backends stopped with SIGSTOP mid-cell. The cell
//! passes its deadline (warmup + duration + `--cell-grace`) and is failed
//! with "the server stopped answering", the server is restarted, and the
//! sweep goes on to its next cell; nothing hangs and no server is left.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::util::{prepare_machine, processes_mentioning, wait_until, IsolatedTmp, KillOnDrop};

/// SIGSTOPs the postmaster under `tmp` and every process it forked, as a
/// frozen machine or `docker pause` would stop them all.
fn stop_local_server(tmp: &IsolatedTmp) {
    let postmasters: Vec<i32> = processes_mentioning(&tmp.path().display().to_string())
        .into_iter()
        .filter(|p| p.contains("postgres -D"))
        .map(|p| p.split(':').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(postmasters.len(), 1, "one postmaster: {postmasters:?}");
    let postmaster = postmasters[0];
    kill(Pid::from_raw(postmaster), Signal::SIGSTOP).unwrap();
    let children = std::fs::read_to_string(format!("/proc/{postmaster}/task/{postmaster}/children")).unwrap();
    for child in children.split_whitespace() {
        let _ = kill(Pid::from_raw(child.parse().unwrap()), Signal::SIGSTOP);
    }
}

#[test]
fn a_stopped_server_fails_the_cell_at_its_deadline_and_the_sweep_goes_on() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let results = tmp.path().join("results");
    let mut sweep = KillOnDrop(
        tmp.contend()
            .args(["sweep", "--workload", "sleep", "--pool-sizes", "1,2,3"])
            .args([
                "--clients",
                "2",
                "--duration",
                "2s",
                "--warmup",
                "0s",
                "--cell-grace",
                "3s",
            ])
            .args(["--backend", "local", "--results"])
            .arg(&results)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = sweep.stderr.take().unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let log = std::sync::Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log.lock().unwrap().push_str(&(line + "\n"));
            }
        })
    };
    let first_done = wait_until(Duration::from_secs(120), || log.lock().unwrap().contains("pool   1 ×"));
    assert!(first_done.is_some(), "the first cell finished: {}", log.lock().unwrap());
    std::thread::sleep(Duration::from_millis(1000));
    stop_local_server(&tmp);
    let stopped = Instant::now();
    let exited = wait_until(Duration::from_secs(120), || matches!(sweep.try_wait(), Ok(Some(_))));
    assert!(
        exited.is_some(),
        "the sweep ends instead of hanging: {}",
        log.lock().unwrap()
    );
    let status = sweep.wait().unwrap();
    reader.join().unwrap();
    let stderr = log.lock().unwrap().clone();
    eprintln!("the sweep ended {:?} after the server stopped", stopped.elapsed());
    assert_eq!(status.code(), Some(1), "a failed cell fails the sweep: {stderr}");
    let failed_line = stderr
        .lines()
        .find(|l| l.starts_with("FAILED "))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        failed_line.contains("pool=deadpoolx2") && failed_line.contains("the server stopped answering after"),
        "{failed_line}"
    );
    assert!(
        stderr.contains("pool   3 ×"),
        "the sweep went on to the third cell: {stderr}"
    );

    let dir = std::fs::read_dir(&results).unwrap().flatten().next().unwrap().path();
    let failed: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("failed.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["cause"], "unresponsive", "{}", failed[0]);
    assert_eq!(failed[0]["settings"]["pool"]["size"], 2);
    assert!(
        failed[0]["recovery"]
            .as_str()
            .is_some_and(|how| how.contains("stopped and started again")),
        "{}",
        failed[0]
    );
    let sizes: Vec<u64> = std::fs::read_to_string(dir.join("cells.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["settings"]["pool"]["size"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(sizes, vec![1, 3], "every finished cell kept, the stalled one apart");
    assert!(tmp.run_dirs().is_empty(), "servers stopped: {:?}", tmp.run_dirs());
    assert!(processes_mentioning(&tmp.path().display().to_string()).is_empty());
}

/// `contend run` whose server stops: the cell fails at its deadline, the
/// stopped server is still torn down (continued, then shut down), exit 1.
#[test]
fn a_stopped_server_under_a_single_run_fails_it_and_is_torn_down() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let results = tmp.path().join("results");
    let mut run = KillOnDrop(
        tmp.contend()
            .args(["run", "--workload", "sleep", "--clients", "2", "--duration", "3s"])
            .args([
                "--warmup",
                "0s",
                "--cell-grace",
                "2s",
                "--backend",
                "local",
                "--results",
            ])
            .arg(&results)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let cell_database = format!("contend_cell_{}", run.id());
    let running = wait_until(Duration::from_secs(60), || {
        processes_mentioning(&cell_database)
            .iter()
            .any(|p| p.contains("postgres: "))
    });
    assert!(running.is_some(), "the cell's sessions appear");
    std::thread::sleep(Duration::from_millis(500));
    stop_local_server(&tmp);
    let exited = wait_until(Duration::from_secs(60), || matches!(run.try_wait(), Ok(Some(_))));
    assert!(exited.is_some(), "the run ends instead of hanging");
    let status = run.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut run.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the server stopped answering after"), "{stderr}");
    let dir = std::fs::read_dir(&results).unwrap().flatten().next().unwrap().path();
    assert!(!dir.join("cells.jsonl").exists(), "nothing of it recorded as measured");
    assert!(dir.join("failed.jsonl").exists());
    assert!(tmp.run_dirs().is_empty(), "servers stopped: {:?}", tmp.run_dirs());
    assert!(processes_mentioning(&tmp.path().display().to_string()).is_empty());
}

/// A think time longer than the window is cut at the window's end: the
/// cell ends with its window, not a think time later.
#[test]
fn a_long_think_time_is_cut_at_the_windows_end() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let started = Instant::now();
    let output = tmp
        .contend()
        .args(["run", "--workload", "sleep", "--clients", "2", "--duration", "1s"])
        .args([
            "--warmup",
            "0s",
            "--think-time",
            "60s",
            "--backend",
            "local",
            "--results",
        ])
        .arg(tmp.path().join("results"))
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(output.status.success(), "{:?}", crate::util::text(&output));
    assert!(
        took < Duration::from_secs(40),
        "the clients' 60 s think time did not hold the cell: {took:?}"
    );
}

/// `docker pause` of the PostgreSQL container mid-cell: the cell fails at
/// its deadline as unresponsive, the container is replaced, the sweep goes
/// on, and no container is left.
#[test]
fn a_paused_container_fails_the_cell_at_its_deadline_and_is_replaced() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let results = tmp.path().join("results");
    let mut sweep = KillOnDrop(
        tmp.contend()
            .args(["sweep", "--workload", "sleep", "--pool-sizes", "1,2,3"])
            .args([
                "--clients",
                "2",
                "--duration",
                "2s",
                "--warmup",
                "0s",
                "--cell-grace",
                "3s",
            ])
            .args(["--backend", "docker", "--results"])
            .arg(&results)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = sweep.stderr.take().unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let log = std::sync::Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log.lock().unwrap().push_str(&(line + "\n"));
            }
        })
    };
    let first_done = wait_until(Duration::from_secs(120), || log.lock().unwrap().contains("pool   1 ×"));
    assert!(first_done.is_some(), "the first cell finished: {}", log.lock().unwrap());
    std::thread::sleep(Duration::from_millis(1000));
    let contend_pid = sweep.id();
    let container = std::process::Command::new("docker")
        .args(["ps", "-q", "--filter", &format!("label=contend.pid={contend_pid}")])
        .args(["--filter", "label=contend.role=postgres"])
        .output()
        .unwrap();
    let id = String::from_utf8_lossy(&container.stdout).trim().to_string();
    assert!(!id.is_empty(), "the PostgreSQL container of contend {contend_pid}");
    let paused = std::process::Command::new("docker")
        .args(["pause", &id])
        .output()
        .unwrap();
    assert!(paused.status.success(), "{paused:?}");
    let exited = wait_until(Duration::from_secs(150), || matches!(sweep.try_wait(), Ok(Some(_))));
    assert!(
        exited.is_some(),
        "the sweep ends instead of hanging: {}",
        log.lock().unwrap()
    );
    let status = sweep.wait().unwrap();
    reader.join().unwrap();
    let stderr = log.lock().unwrap().clone();
    assert_eq!(status.code(), Some(1), "{stderr}");
    let failed_line = stderr
        .lines()
        .find(|l| l.starts_with("FAILED "))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        failed_line.contains("the server stopped answering after") && failed_line.contains("fresh container"),
        "{failed_line}"
    );
    assert!(stderr.contains("pool   3 ×"), "the sweep went on: {stderr}");
    assert!(
        crate::util::containers_of_pid(contend_pid).is_empty(),
        "no container left behind"
    );
}

#[test]
fn a_zero_cell_grace_is_refused_before_any_server_starts() {
    let tmp = IsolatedTmp::new();
    let output = tmp
        .contend()
        .args(["run", "--workload", "sleep", "--cell-grace", "0s", "--backend", "local"])
        .output()
        .unwrap();
    let (_, stderr) = crate::util::text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--cell-grace 0s"), "{stderr}");
    assert!(!stderr.contains("backend local"), "no server was started: {stderr}");
}
