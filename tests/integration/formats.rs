//! What scripts and CI read from contend: the exit status an objective
//! that FAILs gives (99, `--no-slo-exit` 0), `--format json|csv` on stdout
//! and nothing else there, and `compare --junit`.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::util::{prepare_machine, text, IsolatedTmp};

/// sleep.toml with an `[slo]` p95 limit: sleep's transaction is a 5 ms
/// pg_sleep, so 1 ms always FAILs and 10 s always PASSes.
fn sleep_with_p95_limit(dir: &Path, p95_ms: u32) -> PathBuf {
    let file = dir.join(format!("sleep-p95-{p95_ms}.toml"));
    let defaults = include_str!("../../workloads/sleep.toml");
    std::fs::write(&file, format!("{defaults}\n[slo]\np95_ms = {{ \"*\" = {p95_ms} }}\n")).unwrap();
    file
}

/// One short sleep cell on local servers with `extra` flags.
fn run_sleep(tmp: &IsolatedTmp, extra: &[&str]) -> Output {
    tmp.contend()
        .args(["run", "--workload", "sleep", "--duration", "1s", "--warmup", "0s"])
        .args(["--clients", "2", "--backend", "local", "--results"])
        .arg(tmp.path().join("results"))
        .args(extra)
        .output()
        .unwrap()
}

/// Issue 19: an SLO FAIL changed nothing in the exit status, so CI could
/// not gate on the objectives contend itself declares. A FAIL is 99, a
/// PASS 0, and `--no-slo-exit` turns a FAIL back into 0.
#[test]
fn an_slo_fail_exits_99_and_a_pass_exits_0() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let failing = sleep_with_p95_limit(tmp.path(), 1);
    let passing = sleep_with_p95_limit(tmp.path(), 10_000);
    let failing = failing.to_str().unwrap();

    let output = run_sleep(&tmp, &["--workload-file", failing]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(99), "{stdout}{stderr}");
    assert!(stdout.contains("FAIL  p95 sleep <= 1 ms"), "{stdout}");
    assert!(
        stderr.contains("1 objective(s) of the workload's [slo] FAILed"),
        "{stderr}"
    );

    let output = run_sleep(&tmp, &["--workload-file", passing.to_str().unwrap()]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("PASS  p95 sleep <= 10000 ms"), "{stdout}");

    let output = run_sleep(&tmp, &["--workload-file", failing, "--no-slo-exit"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("FAIL  p95 sleep <= 1 ms"), "{stdout}");
}

/// A sweep is judged over all its cells: one FAIL anywhere is 99.
#[test]
fn a_sweep_whose_cells_fail_an_slo_exits_99() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let failing = sleep_with_p95_limit(tmp.path(), 1);
    let output = tmp
        .contend()
        .args(["sweep", "--workload", "sleep", "--pool-sizes", "1,2", "--clients", "2"])
        .args([
            "--duration",
            "1s",
            "--warmup",
            "0s",
            "--backend",
            "local",
            "--workload-file",
        ])
        .arg(&failing)
        .arg("--results")
        .arg(tmp.path().join("results"))
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(99), "{stdout}{stderr}");
    assert!(
        stderr.contains("2 objective(s) of the workload's [slo] FAILed"),
        "{stderr}"
    );
}

/// Issue 19: nothing on stdout was for a script. `--format json` is one
/// parseable document there (the cell record, as cells.jsonl has it) and
/// nothing else; `--format csv` a header and one row.
#[test]
fn run_format_json_is_one_document_on_stdout_and_csv_one_row() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let output = run_sleep(&tmp, &["--format", "json"]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    let record: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(record["settings"]["workload"], "sleep", "{stdout}");
    let results = tmp.path().join("results");
    let run_dir = std::fs::read_dir(&results).unwrap().flatten().next().unwrap().path();
    let line = std::fs::read_to_string(run_dir.join("cells.jsonl")).unwrap();
    let on_disk: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(record, on_disk, "the same schema and values as the file");
    assert!(stderr.contains("cell appended to"), "notices stay on stderr: {stderr}");

    let output = run_sleep(&tmp, &["--format", "csv"]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(lines[0], contend::render::CELL_COLUMNS.join(","));
    assert!(lines[1].starts_with("1,sleep,,deadpool,"), "{stdout}");
}

/// The fixture sweep's cells, each twice (so Welch's interval exists),
/// goodput scaled by `goodput`, as a run directory under `tmp`.
fn sweep_copy(tmp: &IsolatedTmp, name: &str, goodput: f64) -> PathBuf {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/results-7f0d7fe/sweep-sleep/cells.jsonl");
    let dir = tmp.path().join(name);
    std::fs::create_dir(&dir).unwrap();
    let mut lines = String::new();
    for line in std::fs::read_to_string(fixture).unwrap().lines() {
        for jitter in [1.0, 1.02] {
            let mut cell: serde_json::Value = serde_json::from_str(line).unwrap();
            let g = cell["business"]["goodput_per_s"].as_f64().unwrap();
            cell["business"]["goodput_per_s"] = (g * goodput * jitter).into();
            lines.push_str(&format!("{cell}\n"));
        }
    }
    std::fs::write(dir.join("cells.jsonl"), lines).unwrap();
    dir
}

/// `compare --junit FILE`: a JUnit document with the schema's required
/// elements and attributes (testsuites; testsuite name, tests, failures;
/// testcase name, classname; failure message), a failure per regression,
/// and `--format json` the comparison alone on stdout.
#[test]
fn compare_junit_has_the_schemas_required_parts_and_a_failure_per_regression() {
    use quick_xml::events::Event;

    let tmp = IsolatedTmp::new();
    let baseline = sweep_copy(&tmp, "baseline", 1.0);
    let current = sweep_copy(&tmp, "current", 0.5);
    let junit = tmp.path().join("report.xml");
    let output = tmp
        .contend()
        .arg("compare")
        .args([&baseline, &current])
        .arg("--junit")
        .arg(&junit)
        .args(["--format", "json"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "a regression: {stdout}{stderr}");
    let comparison: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let regressions = comparison["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["verdict"] == "regression")
        .count();
    assert!(regressions >= 1, "{stdout}");

    let xml = std::fs::read_to_string(&junit).unwrap();
    let mut reader = quick_xml::Reader::from_str(&xml);
    let attr = |e: &quick_xml::events::BytesStart, name: &str| {
        e.try_get_attribute(name).unwrap().map(|a| {
            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .unwrap()
                .to_string()
        })
    };
    let (mut roots, mut cases, mut failures, mut suite_tests, mut suite_failures) = (0, 0, 0, 0, 0);
    let mut stack: Vec<String> = Vec::new();
    loop {
        let (e, opens) = match reader.read_event().unwrap() {
            Event::Eof => break,
            Event::Start(e) => (e, true),
            Event::Empty(e) => (e, false),
            Event::End(_) => {
                stack.pop();
                continue;
            }
            _ => continue,
        };
        {
            {
                let name = e.name().into_inner().to_string();
                match name.as_str() {
                    "testsuites" => {
                        assert!(stack.is_empty(), "testsuites is the root");
                        roots += 1;
                    }
                    "testsuite" => {
                        assert_eq!(stack.last().map(String::as_str), Some("testsuites"));
                        assert!(attr(&e, "name").is_some_and(|n| !n.is_empty()), "{xml}");
                        suite_tests += attr(&e, "tests").unwrap().parse::<usize>().unwrap();
                        suite_failures += attr(&e, "failures").unwrap().parse::<usize>().unwrap();
                    }
                    "testcase" => {
                        assert_eq!(stack.last().map(String::as_str), Some("testsuite"));
                        assert!(attr(&e, "name").is_some() && attr(&e, "classname").is_some(), "{xml}");
                        cases += 1;
                    }
                    "failure" => {
                        assert_eq!(stack.last().map(String::as_str), Some("testcase"));
                        assert!(attr(&e, "message").unwrap().contains("regressed"), "{xml}");
                        failures += 1;
                    }
                    _ => {}
                }
                if opens {
                    stack.push(name);
                }
            }
        }
    }
    assert_eq!(roots, 1, "{xml}");
    assert_eq!(
        cases,
        comparison["metrics"].as_array().unwrap().len(),
        "a case per metric"
    );
    assert_eq!((suite_tests, suite_failures), (cases, failures), "{xml}");
    assert_eq!(failures, regressions, "a failure per regression: {xml}");
}

/// `migrate` is judged over its whole foreground run: its scorecard is in
/// migration.json, and a FAIL there is 99 too.
#[test]
fn a_migration_whose_foreground_fails_an_slo_exits_99() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let results = tmp.path().join("results");
    let output = tmp
        .contend()
        .args([
            "migrate",
            "--workload",
            "goal-count",
            "--scale",
            "0.05",
            "--clients",
            "2",
        ])
        .args(["--duration", "1s", "--warmup", "0s", "--backend", "local"])
        .args(["--set", "slo.p95_ms={\"*\"=0.001}", "--results"])
        .arg(&results)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(99), "{stdout}{stderr}");
    let run_dir = std::fs::read_dir(&results).unwrap().flatten().next().unwrap().path();
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("migration.json")).unwrap()).unwrap();
    let slo = record["slo"]["results"].as_array().unwrap();
    assert!(slo.iter().any(|r| r["pass"] == false), "{slo:?}");
}
