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
