//! contend compare for real: goal-count without its index against with it
//! is a regression; the same build against itself is not.

use std::path::{Path, PathBuf};

use crate::util::{prepare_machine, text, IsolatedTmp};

fn sweep(tmp: &IsolatedTmp, results: &Path, extra: &[&str], repeat: &str, duration: &str) -> PathBuf {
    let output = tmp
        .contend()
        .args([
            "sweep",
            "--workload",
            "goal-count",
            "--scale",
            "0.05",
            "--pool-sizes",
            "4",
        ])
        .args([
            "--clients",
            "8",
            "--duration",
            duration,
            "--warmup",
            "0s",
            "--repeat",
            repeat,
        ])
        // Not about SLOs: a seq scan under 8 clients may miss goal-count's.
        .args(["--backend", "local", "--no-slo-exit", "--results"])
        .arg(results)
        .args(extra)
        .output()
        .unwrap();
    assert!(output.status.success(), "{:?}", text(&output));
    std::fs::read_dir(results).unwrap().flatten().next().unwrap().path()
}

fn compare(tmp: &IsolatedTmp, baseline: &Path, current: &Path) -> (Option<i32>, String) {
    let summary = tmp.path().join("summary.md");
    let output = tmp
        .contend()
        .arg("compare")
        .arg(baseline)
        .arg(current)
        .arg("--markdown")
        .arg(&summary)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&summary).unwrap(),
        stdout,
        "--markdown gets the same table"
    );
    std::fs::remove_file(&summary).unwrap();
    (output.status.code(), stdout)
}

#[test]
fn dropping_goal_counts_index_is_a_regression_and_the_same_build_is_not() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    // 3 s cells: without the index, initialize still gets the 200 attempts
    // a p95 needs to be compared.
    let with_index = sweep(&tmp, &tmp.path().join("indexed"), &["--migrated"], "4", "3s");
    let without = sweep(&tmp, &tmp.path().join("dropped"), &[], "4", "3s");

    let (code, table) = compare(&tmp, &with_index, &without);
    assert_eq!(code, Some(1), "{table}");
    let row = |metric: &str| {
        table
            .lines()
            .find(|l| l.contains(&format!("| {metric} |")))
            .unwrap_or_else(|| panic!("no {metric} row:\n{table}"))
            .to_string()
    };
    // The count's server-side mean time is the steadiest witness; goodput and
    // the client-side p95 fall with it (their verdicts depend on how noisy
    // the machine is, their direction does not).
    assert!(row("goodput").contains("| -"), "{table}");
    assert!(row("p95 initialize").contains("| +"), "{table}");
    let count_query = table
        .lines()
        .find(|l| l.contains("mean time: SELECT count(*) FROM user_goals"))
        .unwrap_or_else(|| panic!("no pg_stat_statements row for the count:\n{table}"));
    assert!(count_query.contains("**REGRESSION**"), "{table}");
    assert!(
        table.contains("interval (Welch's t over the repeated cells"),
        "the output says how noise was judged"
    );

    // The way back is an improvement, not a regression.
    let (code, table) = compare(&tmp, &without, &with_index);
    assert_eq!(code, Some(0), "{table}");
    assert!(table.contains("improved") && !table.contains("REGRESSION"), "{table}");

    // The same build twice: one sweep of 6 repeats, alternate cells on each
    // side, so both sides meet the same machine noise.
    let same = sweep(&tmp, &tmp.path().join("same"), &[], "6", "1s");
    let lines: Vec<String> = std::fs::read_to_string(same.join("cells.jsonl"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), 6);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for (dir, parity) in [(&a, 0), (&b, 1)] {
        std::fs::create_dir_all(dir).unwrap();
        let half: Vec<&str> = lines.iter().skip(parity).step_by(2).map(String::as_str).collect();
        std::fs::write(dir.join("cells.jsonl"), half.join("\n") + "\n").unwrap();
    }
    let (code, table) = compare(&tmp, &a, &b);
    assert_eq!(code, Some(0), "{table}");
    assert!(!table.contains("REGRESSION"), "{table}");

    let (code, _) = compare_refused(&tmp, &a, &tmp.path().join("nothing"));
    assert_eq!(code, Some(2));
}

fn compare_refused(tmp: &IsolatedTmp, baseline: &Path, current: &Path) -> (Option<i32>, String) {
    let output = tmp
        .contend()
        .arg("compare")
        .arg(baseline)
        .arg(current)
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with("contend: error:")).count(),
        1,
        "{stderr}"
    );
    (output.status.code(), stderr)
}
