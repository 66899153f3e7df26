//! Results that are never mixed, lost or torn: runs started together get a
//! directory each, a run directory in use refuses a second writer, a cut
//! last line of cells.jsonl is skipped and repaired, and `--resume` reads
//! its plan from the directory and refuses flags that differ from it.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::util::{prepare_machine, text, IsolatedTmp};

fn run_dirs_under(results: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(results)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs
}

fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Issue 18, item 12: two `contend run`s started together against one
/// results root used to share `<stamp>-sleep` and a fixed temporary file
/// name, and one died writing there, its measurement lost.
#[test]
fn two_runs_started_together_each_keep_their_cell() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let results = tmp.path().join("results");
    let start = || {
        tmp.contend()
            .args(["run", "--workload", "sleep", "--duration", "1s", "--warmup", "0s"])
            .args(["--clients", "2", "--backend", "local", "--results"])
            .arg(&results)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let runs = [start(), start()];
    for run in runs {
        let output = run.wait_with_output().unwrap();
        let (_, stderr) = text(&output);
        assert!(output.status.success(), "{stderr}");
    }
    let dirs = run_dirs_under(&results);
    assert_eq!(dirs.len(), 2, "a directory each: {dirs:?}");
    for dir in &dirs {
        assert_eq!(lines_of(&dir.join("cells.jsonl")).len(), 1, "{}", dir.display());
        assert!(dir.join("run.json").is_file(), "{}", dir.display());
        let leftovers: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "no temporary file left: {leftovers:?}");
    }
}

const SWEEP: &[&str] = &[
    "sweep",
    "--workload",
    "sleep",
    "--pool-sizes",
    "1,2,3",
    "--clients",
    "2",
    "--duration",
    "1s",
    "--warmup",
    "0s",
    "--backend",
    "local",
];

/// Issue 18, item 5: nothing locked a run directory, so a `--resume`
/// racing a live sweep appended to the same cells.jsonl.
#[test]
fn a_resume_while_the_sweep_runs_is_refused_with_its_pid() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let results = tmp.path().join("results");
    let sweep = crate::util::KillOnDrop(
        tmp.contend()
            .args(SWEEP)
            .arg("--results")
            .arg(&results)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let dir = crate::util::wait_until(std::time::Duration::from_secs(30), || {
        run_dirs_under(&results).len() == 1
    })
    .map(|_| run_dirs_under(&results).remove(0))
    .expect("the sweep made its directory");
    let output = tmp.contend().args(SWEEP).arg("--resume").arg(&dir).output().unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let expected = format!("{} is in use by contend pid {}", dir.display(), sweep.id());
    assert!(stderr.contains(&expected), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
}

/// A copy of the fixture sweep of an earlier build (4 cells), for tests
/// that need a real cells.jsonl but no server.
fn fixture_sweep(tmp: &IsolatedTmp) -> PathBuf {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/results-7f0d7fe/sweep-sleep");
    let copy = tmp.path().join("sweep-sleep");
    std::fs::create_dir(&copy).unwrap();
    std::fs::copy(from.join("cells.jsonl"), copy.join("cells.jsonl")).unwrap();
    copy
}

/// Issue 18, item 9: a cells.jsonl whose last line was cut by a crash.
#[test]
fn report_skips_a_torn_last_line_naming_the_file_and_byte() {
    let tmp = IsolatedTmp::new();
    let dir = fixture_sweep(&tmp);
    let cells = dir.join("cells.jsonl");
    let whole = std::fs::read_to_string(&cells).unwrap();
    let last_start = whole.trim_end().rfind('\n').unwrap() + 1;
    std::fs::write(&cells, &whole[..last_start + 100]).unwrap();

    let output = tmp.contend().args(["report", "--rebuild"]).arg(&dir).output().unwrap();
    let (_, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    let warning = format!("{}: the last line (byte {last_start}, 100 bytes", cells.display());
    assert!(stderr.contains(&warning), "{stderr}");
    let run: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["cells"].as_array().unwrap().len(), 3, "the three whole cells");
}

/// A line in the middle that does not parse is no crash's doing: refused,
/// naming the line, rather than dropped.
#[test]
fn report_refuses_a_corrupt_middle_line_naming_it() {
    let tmp = IsolatedTmp::new();
    let dir = fixture_sweep(&tmp);
    let cells = dir.join("cells.jsonl");
    let whole = std::fs::read_to_string(&cells).unwrap();
    let mut lines: Vec<&str> = whole.lines().collect();
    let cut = &lines[1][..200].to_string();
    lines[1] = cut;
    std::fs::write(&cells, lines.join("\n") + "\n").unwrap();

    let output = tmp.contend().args(["report", "--rebuild"]).arg(&dir).output().unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cells.jsonl: line 2: not a cell record"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(!dir.join("run.json").exists());
}

/// Two cells, quickly.
const TWO_CELLS: &[&str] = &[
    "sweep",
    "--workload",
    "sleep",
    "--pool-sizes",
    "1,2",
    "--clients",
    "2",
    "--duration",
    "1s",
    "--warmup",
    "0s",
    "--backend",
    "local",
];

fn finished_sweep(tmp: &IsolatedTmp) -> PathBuf {
    let results = tmp.path().join("results");
    let output = tmp
        .contend()
        .args(TWO_CELLS)
        .arg("--results")
        .arg(&results)
        .output()
        .unwrap();
    assert!(output.status.success(), "{:?}", text(&output));
    run_dirs_under(&results).remove(0)
}

/// A resume over a torn last line cuts it away before appending (the next
/// record used to be glued onto it, turning it into a corrupt middle line)
/// and measures that cell again.
#[test]
fn resume_cuts_a_torn_last_line_and_measures_that_cell_again() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let dir = finished_sweep(&tmp);
    let cells = dir.join("cells.jsonl");
    let text_before = std::fs::read_to_string(&cells).unwrap();
    let last_start = text_before.trim_end().rfind('\n').unwrap() + 1;
    std::fs::write(&cells, &text_before[..last_start + 50]).unwrap();

    let output = tmp
        .contend()
        .args(TWO_CELLS)
        .arg("--resume")
        .arg(&dir)
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: the last line (byte {last_start}, 50 bytes",
            cells.display()
        )),
        "{stderr}"
    );
    let lines = lines_of(&cells);
    assert_eq!(lines.len(), 2, "{stderr}");
    let sizes: Vec<u64> = lines
        .iter()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).expect("every line whole");
            record["settings"]["pool"]["size"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(sizes, vec![1, 2], "the cut cell measured again, once");
}

/// Issue 18, item 6: what an interrupted sweep tells the user to type,
/// `contend sweep --resume DIR`, used to fail wanting --workload and
/// --pool-sizes; retyped from memory, other settings got mixed in. Now the
/// plan comes from the directory: the resumed cells have the run's
/// duration and clients, not the defaults.
#[test]
fn resume_dir_alone_continues_with_the_runs_settings() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let results = tmp.path().join("results");
    let mut sweep = crate::util::KillOnDrop(
        tmp.contend()
            .args(SWEEP)
            .arg("--results")
            .arg(&results)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let one_done = crate::util::wait_until(std::time::Duration::from_secs(60), || {
        run_dirs_under(&results)
            .first()
            .is_some_and(|dir| !lines_of(&dir.join("cells.jsonl")).is_empty())
    });
    assert!(one_done.is_some(), "a cell finished");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sweep.0.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    sweep.0.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut sweep.0.stderr.take().unwrap(), &mut stderr).unwrap();
    let dir = run_dirs_under(&results).remove(0);
    let told = format!("continue with --resume {}", dir.display());
    assert!(stderr.contains(&told), "{stderr}");
    let before = lines_of(&dir.join("cells.jsonl")).len();
    assert!(before < 3, "interrupted midway: {before} cells");

    let output = tmp.contend().arg("sweep").arg("--resume").arg(&dir).output().unwrap();
    let (_, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    let records: Vec<serde_json::Value> = lines_of(&dir.join("cells.jsonl"))
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let sizes: Vec<u64> = records
        .iter()
        .map(|r| r["settings"]["pool"]["size"].as_u64().unwrap())
        .collect();
    assert_eq!(sizes, vec![1, 2, 3], "every cell once: {stderr}");
    for record in &records {
        assert_eq!(record["settings"]["driver"]["duration_s"], 1.0);
        assert_eq!(record["settings"]["driver"]["warmup_s"], 0.0);
        assert_eq!(
            record["settings"]["driver"]["load"]["clients"], 2,
            "{}",
            record["settings"]["driver"]
        );
        assert_eq!(record["backend"], "local");
    }
}

/// Flags beside `--resume` that differ from the run's are refused, each
/// named with both values, in one line, before any server starts; the
/// directory is left as it was.
#[test]
fn resume_with_differing_flags_is_refused_naming_each() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let dir = finished_sweep(&tmp);
    let cells = std::fs::read(dir.join("cells.jsonl")).unwrap();
    let output = tmp
        .contend()
        .args([
            "sweep",
            "--duration",
            "5s",
            "--set",
            "traffic.delay_us=5",
            "--pool-sizes",
            "1,2",
        ])
        .arg("--resume")
        .arg(&dir)
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("--duration 5s differs from the run's 1s"), "{stderr}");
    assert!(
        stderr.contains("--set traffic.delay_us=5 differs from the run's (none)"),
        "{stderr}"
    );
    assert!(!stderr.contains("--pool-sizes"), "the same pool sizes agree: {stderr}");
    assert!(tmp.run_dirs().is_empty(), "no server started");
    assert_eq!(std::fs::read(dir.join("cells.jsonl")).unwrap(), cells);

    // The run's own flags, retyped, agree: nothing is left to measure.
    let output = tmp
        .contend()
        .args(TWO_CELLS)
        .arg("--resume")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "{:?}", text(&output));
    assert_eq!(lines_of(&dir.join("cells.jsonl")).len(), 2);
}

/// A directory an earlier contend wrote has no plan.json: resuming it is
/// refused, saying why, while `report` still reads it.
#[test]
fn resume_of_a_directory_without_a_plan_is_refused_but_it_still_reports() {
    let tmp = IsolatedTmp::new();
    let dir = fixture_sweep(&tmp);
    let output = tmp.contend().arg("sweep").arg("--resume").arg(&dir).output().unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("it has no plan.json"), "{stderr}");
    let report = tmp.contend().args(["report", "--rebuild"]).arg(&dir).output().unwrap();
    assert!(report.status.success(), "{:?}", text(&report));
}

/// A script changed since the sweep started would make the resumed cells
/// measure other SQL under the same settings: refused.
#[test]
fn resume_after_a_script_changed_is_refused() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let script = tmp.path().join("one.sql");
    std::fs::write(&script, "SELECT 1;\n").unwrap();
    let results = tmp.path().join("results");
    let output = tmp
        .contend()
        .args(["sweep", "--workload", "script", "--script"])
        .arg(&script)
        .args([
            "--pool-sizes",
            "1",
            "--clients",
            "1",
            "--duration",
            "1s",
            "--warmup",
            "0s",
        ])
        .args(["--backend", "local", "--results"])
        .arg(&results)
        .output()
        .unwrap();
    assert!(output.status.success(), "{:?}", text(&output));
    let dir = run_dirs_under(&results).remove(0);
    std::fs::write(&script, "SELECT 2;\n").unwrap();
    let output = tmp.contend().arg("sweep").arg("--resume").arg(&dir).output().unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let expected = format!("--script {} has changed since the sweep started", script.display());
    assert!(stderr.contains(&expected), "{stderr}");
}
