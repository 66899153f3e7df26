//! Bad input: each gets a one-line error naming the problem and the fix,
//! exit status 2, no panic text, and no server left behind.

use crate::util::{text, IsolatedTmp};

/// Runs contend with `args`, expects exit 2 with one line of error that
/// contains `expected`, and no run directory left.
pub(crate) fn refused(args: &[&str], expected: &str) {
    let tmp = IsolatedTmp::new();
    let output = tmp.contend().args(args).output().unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(
        output.status.code(),
        Some(2),
        "{args:?}: stdout {stdout} stderr {stderr}"
    );
    assert!(
        stderr.contains(expected),
        "{args:?}: expected {expected:?} in: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let error_lines = stderr.lines().filter(|l| l.contains("error")).count();
    assert_eq!(error_lines, 1, "{args:?}: one error line: {stderr}");
    assert!(tmp.run_dirs().is_empty(), "{args:?} left {:?}", tmp.run_dirs());
}

#[test]
fn unknown_backend() {
    refused(
        &["provision", "--backend", "kubernetes"],
        "invalid value 'kubernetes' for '--backend",
    );
}

#[test]
fn max_connections_zero() {
    refused(
        &["provision", "--backend", "local", "--max-connections", "0"],
        "max_connections 0 is not usable",
    );
}

#[test]
fn max_connections_beyond_postgresql() {
    refused(
        &["provision", "--backend", "local", "--max-connections", "500000"],
        "PostgreSQL allows at most 262143",
    );
}

#[test]
fn max_connections_within_the_superuser_reservation() {
    refused(
        &["provision", "--backend", "local", "--max-connections", "3"],
        "must exceed the 3 connections reserved for superusers",
    );
}

#[test]
fn pg_bin_without_server_binaries() {
    refused(
        &[
            "provision",
            "--backend",
            "local",
            "--pg-bin",
            "/nonexistent",
            "--",
            "true",
        ],
        "--pg-bin /nonexistent: no initdb there",
    );
}

#[test]
fn pg_setting_that_is_not_key_value() {
    refused(&["provision", "--pg-setting", "fsync"], "is not KEY=VALUE");
}

#[test]
fn external_backend_without_a_url() {
    refused(
        &["provision", "--backend", "external"],
        "pass --database-url URL or set DATABASE_URL",
    );
}

/// Every row: a one-line `contend: error:` naming the problem and the fix,
/// exit 2, no panic text, nothing left behind.
#[test]
fn each_bad_input_gets_one_line_naming_the_fix() {
    let missing_dir = "/nonexistent-contend-dir";
    for (args, expected) in [
        (
            vec!["run", "--workload", "nope"],
            "invalid value 'nope' for '--workload <WORKLOAD>'",
        ),
        (
            vec!["run", "--workload", "wallet-transfer", "--strategy", "yolo"],
            "yolo",
        ),
        (
            vec!["run", "--workload", "goal-count", "--pool", "bb8"],
            "invalid value 'bb8' for '--pool <POOL>' [possible values: deadpool, sqlx, none]; see contend --help",
        ),
        (
            vec!["run", "--workload", "goal-count", "--pool-size", "0"],
            "--pool-size 0: a pool needs at least one connection",
        ),
        (
            vec!["sweep", "--workload", "goal-count", "--pool-sizes", "4,0"],
            "--pool-size 0",
        ),
        (
            vec!["run", "--workload", "goal-count", "--clients", "0"],
            "--clients 0: at least one client is needed",
        ),
        (
            vec!["run", "--workload", "goal-count", "--duration", "-1s"],
            "--duration",
        ),
        (
            vec!["run", "--workload", "goal-count", "--duration", "soon"],
            "is not a duration",
        ),
        (
            vec!["run", "--workload", "goal-count", "--rate", "100", "--clients", "4"],
            "cannot be used with",
        ),
        (vec!["run", "--workload", "goal-count", "--rate", "-5"], "--rate"),
        (
            vec!["run", "--workload", "goal-count", "--set", "traffic.zipf_exponent=fast"],
            "zipf_exponent",
        ),
        (
            vec!["run", "--workload", "goal-count", "--set", "nosuch.key=1"],
            "nosuch",
        ),
        (
            vec!["sweep", "--workload", "sleep", "--pool-sizes", "1", "--repeat", "0"],
            "--repeat 0",
        ),
        (
            vec!["recommend", missing_dir, "--formula", "pool = 2 * disks"],
            "unknown variable \"disks\"",
        ),
        (
            vec!["recommend", missing_dir, "--goodput-share", "1.5"],
            "--goodput-share 1.5",
        ),
        (
            vec!["compare", missing_dir, missing_dir, "--threshold", "lots"],
            "is not a share: write 10% or 0.1",
        ),
        (vec!["report", missing_dir], "give a results/<run> directory"),
        (
            vec!["migrate", "--workload", "goal-count", "--migration", "/nonexistent.sql"],
            "cannot read migration /nonexistent.sql",
        ),
        (
            vec!["migrate", "--workload", "goal-count", "--max-statement-time", "0s"],
            "--max-statement-time 0s",
        ),
        (vec!["frobnicate"], "unrecognized subcommand 'frobnicate'"),
    ] {
        refused(&args, expected);
    }
}

#[test]
fn a_malformed_workload_file_is_refused_with_its_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("goal-count.toml");
    std::fs::write(&file, "[data]\nusers_per_scale = = 3\n").unwrap();
    let file = file.display().to_string();
    refused(
        &["run", "--workload", "goal-count", "--workload-file", &file],
        &format!("--workload-file {file}: TOML parse error at line 2, column"),
    );
    refused(
        &[
            "run",
            "--workload",
            "goal-count",
            "--workload-file",
            "/nonexistent.toml",
        ],
        "cannot read --workload-file /nonexistent.toml",
    );
}
