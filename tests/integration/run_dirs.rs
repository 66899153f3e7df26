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
