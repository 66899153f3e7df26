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
            "'0' for '--pool-size <POOL_SIZE>': a pool needs at least one connection",
        ),
        (
            vec!["sweep", "--workload", "goal-count", "--pool-sizes", "4,0"],
            "'0' for '--pool-sizes <N,N,...>': a pool needs at least one connection",
        ),
        (
            vec!["run", "--workload", "goal-count", "--clients", "0"],
            "'0' for '--clients <CLIENTS>': at least one client is needed",
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
            "'0' for '--repeat <REPEAT>': run each cell at least once",
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

/// Numbers that would hang a run, overflow or allocate without bound:
/// refused at parse time with one line and exit 2, before any server
/// starts (no backend is reachable from these flags: `--backend local`
/// would start one only after the flags passed).
#[test]
fn numbers_that_would_hang_or_overflow_are_refused_before_anything_starts() {
    let run = |extra: &[&'static str]| [&["run", "--workload", "goal-count", "--backend", "local"][..], extra].concat();
    for (args, expected) in [
        // The sweep that hung: an infinite Zipf exponent loops rand_distr's sampler.
        (
            vec![
                "sweep",
                "--workload",
                "goal-count",
                "--pool-sizes",
                "1,2",
                "--set",
                "traffic.zipf_exponent=inf",
            ],
            "traffic.zipf_exponent inf: give a finite exponent from 0 (uniform) to 100",
        ),
        (
            run(&["--set", "traffic.zipf_exponent=nan"]),
            "traffic.zipf_exponent NaN: give a finite exponent",
        ),
        (
            run(&["--set", "traffic.zipf_exponent=1e300"]),
            "traffic.zipf_exponent 1e300: give a finite exponent",
        ),
        (
            vec![
                "run",
                "--workload",
                "wallet-transfer",
                "--set",
                "traffic.zipf_exponent=-inf",
            ],
            "traffic.zipf_exponent -inf",
        ),
        (
            vec![
                "run",
                "--workload",
                "seat-reservation",
                "--set",
                "data.students_per_scale=4000000000",
            ],
            "data.students_per_scale 4000000000 at --scale 1.0 is 4.000e9 rows: at most 2147483647",
        ),
        (
            vec![
                "run",
                "--workload",
                "wallet-transfer",
                "--set",
                "mix.transfer=4294967295",
                "--set",
                "mix.history=1",
            ],
            "[mix] weights add up to more than 4294967295",
        ),
        (
            run(&["--set", "data.challenges=0"]),
            "data.challenges 0: give 1 to 2147483647",
        ),
        (
            run(&["--scale", "inf"]),
            "'inf' for '--scale <SCALE>': `inf` is not a finite number",
        ),
        (
            run(&["--scale", "1e300"]),
            "data.users_per_scale 200000 at --scale 1e300",
        ),
        (
            run(&["--rate", "1e9"]),
            "'1e9' for '--rate <PER_SECOND>': 1000000000 is more than 1000000 transactions per second",
        ),
        (run(&["--rate", "NaN"]), "`NaN` is not a finite number"),
        (
            run(&["--rate", "1000000", "--duration", "1h"]),
            "--rate 1000000 for 1h 2s schedules 3.6e9 transactions; the most is 1e7: lower --rate or --duration",
        ),
        (
            run(&["--pool-size", "2000000000"]),
            "'2000000000' for '--pool-size <POOL_SIZE>': `2000000000` is more than 10000 connections per pool",
        ),
        (
            run(&["--instances", "99999999999999999999"]),
            "is more than 1000 application instances",
        ),
        (
            run(&["--duration", "100000days"]),
            "'100000days' for '--duration <DURATION>': `100000days` is longer than 7 days",
        ),
        (run(&["--warmup", "9999999999999999999999s"]), "is not a duration"),
        (run(&["--think-time", "30days"]), "is longer than 7 days"),
        (
            run(&["--startup-timeout", "18446744073709551615"]),
            "is more than 604800 seconds, 7 days",
        ),
        (
            vec!["recommend", "/nonexistent-contend-dir", "--p99-slo-ms", "inf"],
            "is not a finite number",
        ),
        (
            vec![
                "sweep",
                "--workload",
                "sleep",
                "--pool-sizes",
                "1",
                "--set",
                "traffic.think_time_ms=9223372036854775807",
            ],
            "traffic.think_time_ms 9223372036854775807: give 0 to 604800000 ms",
        ),
    ] {
        refused(&args, expected);
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("goal-count.toml");
    let defaults =
        include_str!("../../workloads/goal-count.toml").replace("zipf_exponent = 1.0", "zipf_exponent = inf");
    std::fs::write(&file, defaults).unwrap();
    refused(
        &[
            "run",
            "--workload",
            "goal-count",
            "--workload-file",
            file.to_str().unwrap(),
        ],
        "traffic.zipf_exponent inf: give a finite exponent",
    );
}

/// `--pg-setting` cannot open the server beyond loopback, move its files
/// out of the run directory or run commands: refused before any server
/// starts, naming why.
#[test]
fn pg_settings_contend_owns_are_refused_before_any_server_starts() {
    for (setting, why) in [
        ("listen_addresses=*", "listen on 127.0.0.1 only"),
        ("port=5432", "use --pg-port"),
        ("unix_socket_directories=/tmp", "teardown removes"),
        ("hba_file=/etc/postgresql/pg_hba.conf", "password-only"),
        ("ident_file=/tmp/x", "password-only"),
        ("data_directory=/var/lib/postgresql", "teardown removes"),
        ("config_file=/tmp/postgresql.conf", "initdb wrote"),
        ("external_pid_file=/tmp/pid", "outlive teardown"),
        ("ssl_key_file=/etc/ssl/private/key.pem", "no TLS settings"),
        ("archive_command=touch /tmp/pwned", "shell command"),
        ("Listen_Addresses=0.0.0.0", "listen on 127.0.0.1 only"),
    ] {
        let key = setting.split_once('=').unwrap().0;
        for backend in ["local", "docker"] {
            refused(
                &["provision", "--backend", backend, "--pg-setting", setting, "--", "true"],
                &format!("--pg-setting {key}: "),
            );
            refused(
                &["provision", "--backend", backend, "--pg-setting", setting, "--", "true"],
                why,
            );
        }
    }
}
