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
