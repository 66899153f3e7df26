//! Faults in the results directory: a full disk stops a sweep with a clear
//! error and leaves the cells already written readable; an unwritable
//! directory is refused before any server starts. Faults of the server:
//! PostgreSQL killed in the middle of a cell (local and docker).

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::{
    containers_of_pid, prepare_machine, processes_mentioning, text, wait_until, IsolatedTmp, KillOnDrop,
};

/// A tmpfs mounted for the test's lifetime (tests run as root here).
struct TinyFilesystem(std::path::PathBuf);

impl TinyFilesystem {
    fn mount(path: &std::path::Path, size: &str) -> TinyFilesystem {
        std::fs::create_dir_all(path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success(), "mounting a tmpfs (the tests run as root)");
        TinyFilesystem(path.to_path_buf())
    }
}

impl Drop for TinyFilesystem {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_results_directory_stops_the_sweep_and_keeps_the_cells_written() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let results = tmp.path().join("results");
    let _tiny = TinyFilesystem::mount(&results, "32k");
    let output = tmp
        .contend()
        .args(["sweep", "--workload", "sleep", "--pool-sizes", "1,2,3,4,5,6,7,8"])
        .args([
            "--clients",
            "4",
            "--duration",
            "0.3s",
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
    assert_eq!(output.status.code(), Some(2), "{stdout}\n{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("contend: error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("No space left on device"), "{stderr}");
    assert!(
        errors[0].contains("choose another directory with --results"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let dir = std::fs::read_dir(&results).unwrap().flatten().next().unwrap().path();
    let cells = std::fs::read_to_string(dir.join("cells.jsonl")).unwrap();
    let lines: Vec<&str> = cells.lines().collect();
    assert!(!lines.is_empty() && lines.len() < 8, "{} cells", lines.len());
    for line in &lines {
        let _: serde_json::Value = serde_json::from_str(line).expect("every cell written is whole");
    }
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(tmp.run_dirs().is_empty(), "servers stopped: {:?}", tmp.run_dirs());
}

#[test]
fn an_unwritable_results_directory_is_refused_before_any_server_starts() {
    let tmp = IsolatedTmp::new();
    for results in ["/proc/contend-results", "/dev/null/results"] {
        let output = tmp
            .contend()
            .args(["run", "--workload", "sleep", "--backend", "local", "--results", results])
            .output()
            .unwrap();
        let (_, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(!stderr.contains("backend local"), "no server was started: {stderr}");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("contend: error:")).collect();
        assert_eq!(errors.len(), 1, "{stderr}");
        assert!(
            errors[0].contains(results) && errors[0].contains("--results"),
            "{stderr}"
        );
    }
    assert!(tmp.run_dirs().is_empty());
}

/// How the test kills PostgreSQL.
#[derive(Clone, Copy, PartialEq)]
enum Kill {
    /// SIGKILL to the local postmaster (found by its data directory under
    /// the test's TMPDIR).
    LocalPostmaster,
    /// SIGKILL to one backend of the local server: the postmaster ends
    /// every session and recovers by itself.
    LocalBackend,
    /// `docker kill` of the PostgreSQL container.
    DockerContainer,
}

impl Kill {
    fn backend(self) -> &'static str {
        match self {
            Kill::LocalPostmaster | Kill::LocalBackend => "local",
            Kill::DockerContainer => "docker",
        }
    }

    fn run(self, tmp: &IsolatedTmp, contend_pid: u32) {
        let sigkill = |pid: i32| {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap()
        };
        if self == Kill::DockerContainer {
            let output = Command::new("docker")
                .args(["ps", "-q", "--filter", &format!("label=contend.pid={contend_pid}")])
                .args(["--filter", "label=contend.role=postgres"])
                .output()
                .unwrap();
            let id = String::from_utf8_lossy(&output.stdout).trim().to_string();
            assert!(!id.is_empty(), "the PostgreSQL container of contend {contend_pid}");
            let killed = Command::new("docker").args(["kill", &id]).output().unwrap();
            assert!(killed.status.success(), "{killed:?}");
            return;
        }
        let postmasters: Vec<String> = processes_mentioning(&tmp.path().display().to_string())
            .into_iter()
            .filter(|p| p.contains("postgres -D"))
            .collect();
        assert_eq!(postmasters.len(), 1, "one postmaster: {postmasters:?}");
        let postmaster: i32 = postmasters[0].split(':').next().unwrap().parse().unwrap();
        if self == Kill::LocalPostmaster {
            sigkill(postmaster);
            return;
        }
        // A client backend: a child of the postmaster whose title names the
        // cell's database.
        let children = std::fs::read_to_string(format!("/proc/{postmaster}/task/{postmaster}/children")).unwrap();
        let backend = children
            .split_whitespace()
            .map(|pid| pid.parse::<i32>().unwrap())
            .find(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|title| title.contains("contend_cell_"))
            })
            .unwrap_or_else(|| panic!("a backend of the cell among {children}"));
        sigkill(backend);
    }
}

/// PostgreSQL killed in the middle of a cell: the cell goes to failed.jsonl
/// with the server's reason, the server comes back (a local postmaster
/// restarts on its data directory, a docker server gets a fresh container),
/// the sweep finishes the other cells, says which failed and exits 1; no
/// server is left behind; `--resume` measures the failed cell.
fn postgres_killed_mid_cell(kill: Kill) {
    let backend = kill.backend();
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let results = tmp.path().join("results");
    let sweep_args = |extra: &[&str]| {
        let mut command = tmp.contend();
        command
            .args(["sweep", "--workload", "sleep", "--pool-sizes", "1,2,3"])
            .args([
                "--clients",
                "4",
                "--duration",
                "4s",
                "--warmup",
                "0s",
                "--backend",
                backend,
            ])
            .arg("--results")
            .arg(&results)
            .args(extra);
        command
    };
    let mut sweep = KillOnDrop(
        sweep_args(&[])
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
    // The first cell finished: the second is starting. Kill the server a
    // second into it.
    let first_done = wait_until(Duration::from_secs(120), || log.lock().unwrap().contains("pool   1 ×"));
    assert!(first_done.is_some(), "the first cell finished: {}", log.lock().unwrap());
    std::thread::sleep(Duration::from_secs(1));
    let contend_pid = sweep.id();
    kill.run(&tmp, contend_pid);
    let status = sweep.wait().unwrap();
    reader.join().unwrap();
    let stderr = log.lock().unwrap().clone();
    assert_eq!(
        status.code(),
        Some(1),
        "a failed cell fails the sweep's exit status: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let failed_line = stderr
        .lines()
        .find(|l| l.starts_with("FAILED "))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        failed_line.contains("pool=deadpoolx2"),
        "the second cell failed: {failed_line}"
    );
    assert!(failed_line.contains("PostgreSQL went away"), "{failed_line}");
    assert!(
        stderr.contains("pool   3 ×"),
        "the sweep went on to the third cell: {stderr}"
    );
    assert!(stderr.contains("run them again with --resume"), "{stderr}");

    let dir = std::fs::read_dir(&results).unwrap().flatten().next().unwrap().path();
    let failed: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("failed.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    let record = &failed[0];
    eprintln!("{backend}: {record}");
    assert_eq!(record["schema"], "contend.failed-cell/1");
    assert_eq!(record["settings"]["pool"]["size"], 2);
    assert!(!record["loss"]["reason"].as_str().unwrap().is_empty(), "{record}");
    assert!(
        record["loss"]["after_s"].as_f64().unwrap() < 4.0,
        "stopped when the server went away: {record}"
    );
    let recovery = record["recovery"]
        .as_str()
        .unwrap_or_else(|| panic!("recovered: {record}"));
    let expected = match kill {
        Kill::LocalPostmaster => "started again on its data directory",
        Kill::LocalBackend => "survived and recovered by itself",
        Kill::DockerContainer => "fresh container",
    };
    assert!(recovery.contains(expected), "{recovery}");
    let cells = |dir: &std::path::Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(dir.join("cells.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let sizes: Vec<u64> = cells(&dir)
        .iter()
        .map(|c| c["settings"]["pool"]["size"].as_u64().unwrap())
        .collect();
    assert_eq!(sizes, vec![1, 3], "the measured cells, the failed one apart");
    let summary = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(summary.contains("Cells the server died under"), "{summary}");
    assert!(summary.contains("no: run again with --resume"), "{summary}");
    assert!(
        processes_mentioning(&tmp.path().display().to_string()).is_empty(),
        "no server left behind"
    );
    if backend == "docker" {
        assert!(containers_of_pid(contend_pid).is_empty(), "no container left behind");
    }

    let resumed = sweep_args(&["--resume"]).arg(&dir).output().unwrap();
    let (_, stderr) = text(&resumed);
    assert!(resumed.status.success(), "{stderr}");
    let sizes: Vec<u64> = cells(&dir)
        .iter()
        .map(|c| c["settings"]["pool"]["size"].as_u64().unwrap())
        .collect();
    assert_eq!(sizes, vec![1, 3, 2], "--resume measured the failed cell, and only it");
    let summary = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(summary.contains("yes, cell #3"), "{summary}");
}

#[test]
fn postgres_killed_mid_cell_fails_that_cell_and_the_sweep_goes_on_local() {
    postgres_killed_mid_cell(Kill::LocalPostmaster);
}

#[test]
fn a_backend_killed_mid_cell_fails_that_cell_and_the_postmaster_recovers() {
    postgres_killed_mid_cell(Kill::LocalBackend);
}

#[test]
fn postgres_killed_mid_cell_fails_that_cell_and_the_sweep_goes_on_docker() {
    postgres_killed_mid_cell(Kill::DockerContainer);
}

/// `contend run` whose server is killed mid-cell: exit 1, the cell in
/// failed.jsonl with the reason, no cells.jsonl (nothing was measured), no
/// server left behind.
#[test]
fn postgres_killed_during_a_single_run_records_the_failed_cell_and_exits_1() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let results = tmp.path().join("results");
    let mut run = KillOnDrop(
        tmp.contend()
            .args(["run", "--workload", "sleep", "--clients", "4", "--duration", "6s"])
            .args(["--warmup", "0s", "--backend", "local", "--results"])
            .arg(&results)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // The cell's database is named after the contend process.
    let cell_database = format!("contend_cell_{}", run.id());
    let cell_running = wait_until(Duration::from_secs(60), || {
        processes_mentioning(&cell_database)
            .iter()
            .any(|p| p.contains("postgres: "))
    });
    assert!(cell_running.is_some(), "the cell's sessions appear");
    std::thread::sleep(Duration::from_secs(1));
    Kill::LocalPostmaster.run(&tmp, run.id());
    let status = run.wait().unwrap();
    let (mut stdout, mut stderr) = (String::new(), String::new());
    run.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    run.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("the cell failed:") && stderr.contains("PostgreSQL went away"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let dir = std::fs::read_dir(&results).unwrap().flatten().next().unwrap().path();
    assert!(
        !dir.join("cells.jsonl").exists(),
        "nothing measured is recorded as a cell"
    );
    let failed = std::fs::read_to_string(dir.join("failed.jsonl")).unwrap();
    let record: serde_json::Value = serde_json::from_str(failed.lines().next().unwrap()).unwrap();
    assert!(record["loss"]["after_s"].as_f64().unwrap() < 6.0, "{record}");
    assert!(
        record["recovery"].is_null(),
        "a single run does not restart the server: {record}"
    );
    assert!(processes_mentioning(&tmp.path().display().to_string()).is_empty());
}
