//! Results directories written by the build of 7f0d7fe, before the re-layout
//! of issue 15, are still read: `report --rebuild` rebuilds run.json from
//! their `contend.cell/1` cells.jsonl, `contend.failed-cell/1` failed.jsonl
//! and migration.json and reproduces the summary.md that build wrote;
//! `report` renders their `contend.run/1` run.json into the same summary;
//! `recommend` reads a sweep's cells into the same recommendation. The
//! fixtures (tests/fixtures/results-7f0d7fe/README.md says how they were
//! made) need no server, so neither does this.

use std::path::{Path, PathBuf};

use crate::util::{text, IsolatedTmp};

/// Each results directory of the fixture: two sweeps (one with a cell the
/// server died under) and a migration.
const RUNS: &[&str] = &["sweep-sleep", "sweep-sleep-failed", "migrate-goal-count"];

fn fixture(run: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/results-7f0d7fe")
        .join(run)
}

/// A copy of a fixture directory in the temp dir, so what contend writes
/// never lands in the repository.
fn copy_of(tmp: &IsolatedTmp, run: &str) -> PathBuf {
    let copy = tmp.path().join(run);
    std::fs::create_dir(&copy).unwrap();
    for entry in std::fs::read_dir(fixture(run)).unwrap().flatten() {
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    copy
}

/// The cores of the machine the fixture was measured on, from its run.json:
/// the recommendation judges `2 × cores + spindles` on this machine's cores
/// unless told, and the test must not depend on the machine it runs on.
fn recorded_cores(run: &str) -> String {
    let bytes = std::fs::read(fixture(run).join("run.json")).unwrap();
    let run_file: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    run_file["machine"]["cores"]
        .as_u64()
        .expect("machine.cores in run.json")
        .to_string()
}

/// The summary with the lines that change by design when run.json is
/// rebuilt, and only those, replaced by placeholders. `RunFile::assemble`
/// stamps the run file it builds with the machine it runs on
/// (`Machine::this()`), the contend version that builds it and the time it
/// does so, so these lines of summary.md read:
///
/// `- machine: vm · 2 cores · 23.5 GiB · Debian GNU/Linux 12 (bookworm) · kernel …`
/// `- contend 0.1.0 · written 2026-12-02T18:15:41Z · 4 cell(s) · 0 migration(s)`
///
/// The machine line is replaced whole; of the contend line only the version
/// and the time, so the counts of cells and migrations are still compared.
/// Every other line (server, recommendation, scorecard, failed cells, plans,
/// plot links) must match byte for byte.
fn normalised(summary: &str) -> String {
    summary
        .lines()
        .map(|line| {
            if line.starts_with("- machine: ") {
                "- machine: <the machine that built run.json>".to_string()
            } else if let Some(rest) = line.strip_prefix("- contend ") {
                let mut parts: Vec<&str> = rest.split(" · ").collect();
                if parts.len() >= 2 && parts[1].starts_with("written ") {
                    parts[0] = "<version>";
                    parts[1] = "written <time>";
                }
                format!("- contend {}", parts.join(" · "))
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Line by line, for a failure message that shows what changed.
fn differences(old: &str, new: &str) -> String {
    let old: Vec<&str> = old.lines().collect();
    let new: Vec<&str> = new.lines().collect();
    let mut text = String::new();
    for n in 0..old.len().max(new.len()) {
        let (was, is) = (old.get(n).copied(), new.get(n).copied());
        if was != is {
            text.push_str(&format!(
                "line {}:\n  old: {}\n  new: {}\n",
                n + 1,
                was.unwrap_or("(none)"),
                is.unwrap_or("(none)")
            ));
        }
    }
    text
}

#[test]
fn report_rebuild_reproduces_the_old_builds_summary() {
    let tmp = IsolatedTmp::new();
    for run in RUNS {
        let dir = copy_of(&tmp, run);
        std::fs::remove_file(dir.join("run.json")).unwrap();
        std::fs::remove_file(dir.join("summary.md")).unwrap();
        let output = tmp
            .contend()
            .args(["report", "--rebuild", "--cores", &recorded_cores(run)])
            .arg(&dir)
            .output()
            .unwrap();
        let (stdout, stderr) = text(&output);
        assert!(output.status.success(), "{run}: report --rebuild\n{stdout}\n{stderr}");
        let old = normalised(&read(&fixture(run).join("summary.md")));
        let new = normalised(&read(&dir.join("summary.md")));
        assert!(
            old == new,
            "{run}: summary.md rebuilt from the old build's files differs from the one it wrote:\n{}",
            differences(&old, &new)
        );
    }
}

#[test]
fn report_renders_the_old_builds_run_json_into_the_same_summary() {
    let tmp = IsolatedTmp::new();
    for run in RUNS {
        let dir = copy_of(&tmp, run);
        let output = tmp.contend().arg("report").arg(&dir).output().unwrap();
        let (stdout, stderr) = text(&output);
        assert!(output.status.success(), "{run}: report\n{stdout}\n{stderr}");
        // Rendered from run.json as it is, machine, version and time
        // included: nothing may differ.
        let old = read(&fixture(run).join("summary.md"));
        let new = read(&dir.join("summary.md"));
        assert!(
            old == new,
            "{run}: summary.md rendered from the old build's run.json differs from the one it wrote:\n{}",
            differences(&old, &new)
        );
        assert!(dir.join("index.html").is_file(), "{run}: no index.html\n{stderr}");
    }
}

#[test]
fn recommend_reads_the_old_builds_sweep() {
    let tmp = IsolatedTmp::new();
    let run = "sweep-sleep";
    // The summary's recommendation block is what `recommend` prints.
    let summary = read(&fixture(run).join("summary.md"));
    let expected: String = summary
        .split("```text\n")
        .nth(1)
        .and_then(|block| block.split("```").next())
        .expect("a recommendation block in summary.md")
        .to_string();
    let with_run_json = copy_of(&tmp, run);
    let from_cells = tmp.path().join("cells-only");
    std::fs::create_dir(&from_cells).unwrap();
    std::fs::copy(with_run_json.join("cells.jsonl"), from_cells.join("cells.jsonl")).unwrap();
    // From run.json when there is one, else from cells.jsonl: both readers.
    for dir in [&with_run_json, &from_cells] {
        let output = tmp
            .contend()
            .args(["recommend", "--cores", &recorded_cores(run)])
            .arg(dir)
            .output()
            .unwrap();
        let (stdout, stderr) = text(&output);
        assert!(
            output.status.success(),
            "{}: recommend\n{stdout}\n{stderr}",
            dir.display()
        );
        assert!(
            stdout == expected,
            "{}: recommend prints another recommendation than the old build's summary:\n{}",
            dir.display(),
            differences(&expected, &stdout)
        );
    }
}
