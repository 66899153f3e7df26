//! Every exit status contend ends with, in one table ([`EXIT_CODES`]) and
//! one enum ([`ExitStatus`]); README.md's "Exit codes" table is this one
//! (a test compares them). main alone turns outcomes and errors into these.
//!
//! When several apply, the first of the table's precedence wins: a signal
//! beats everything (nothing more was judged); bad input (2) ends a command
//! before anything is measured; then a failed migration (3), a failed check
//! or regression (1), and last an SLO that failed (99), since a violated
//! invariant or a lost server makes the objectives moot.

use crate::cmd::signals::Interruption;
use crate::cmd::Outcome;

/// How contend ended, as its exit code says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Done; every check held and every SLO passed.
    Success,
    /// Done, but a check failed: an invariant, a failed cell, a regression.
    CheckFailed,
    /// Bad input or setup: flags, files, servers.
    BadInput,
    /// `migrate`: the migration failed or left an invalid index.
    MigrationFailed,
    /// `run`, `sweep`, `migrate`: done, every check held, but an objective
    /// of the workload's `[slo]` failed (unless `--no-slo-exit`).
    SloFailed,
    /// Stopped by a signal: 128 + its number.
    Interrupted(Interruption),
    /// `provision -- COMMAND`: COMMAND's status.
    CommandExited(u8),
}

/// The SLO code, k6's for a failed threshold, so a CI script can tell an
/// objective missed from a broken run.
pub const SLO_FAILED: u8 = 99;

/// The table, code and meaning, in precedence order but for 0 and 2 (see
/// the module's doc); README.md shows exactly these rows.
pub const EXIT_CODES: &[(&str, &str)] = &[
    ("0", "done: every check held and every SLO passed (or `--help`, `--version`)"),
    (
        "1",
        "done, but a check failed: an invariant, a failed cell (the server lost, stopped answering, or a panic), a regression (`compare`)",
    ),
    ("2", "bad input or setup: flags, files, servers"),
    ("3", "`migrate`: the migration failed or left an invalid index"),
    (
        "99",
        "`run`, `sweep`, `migrate`: done and every check held, but an objective of the workload's `[slo]` FAILed (`--no-slo-exit`: 0); 1 and 3 beat it",
    ),
    (
        "130, 143, 129",
        "`run`, `sweep`, `migrate` stopped by SIGINT (Ctrl-C), SIGTERM or SIGHUP: 128 + the signal's number (servers down, finished cells kept); beats every other",
    ),
    ("N", "`provision -- COMMAND`: COMMAND's status"),
];

/// The table for `contend --help`: one line per code, meanings without
/// Markdown's backticks.
pub fn help_text() -> String {
    let mut out = String::from("Exit status:\n");
    for (code, meaning) in EXIT_CODES {
        out.push_str(&format!("  {code:<13}  {}\n", meaning.replace('`', "")));
    }
    out
}

impl ExitStatus {
    /// The process's exit code.
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::CheckFailed => 1,
            ExitStatus::BadInput => 2,
            ExitStatus::MigrationFailed => 3,
            ExitStatus::SloFailed => SLO_FAILED,
            ExitStatus::Interrupted(signal) => signal.exit_code(),
            ExitStatus::CommandExited(code) => code,
        }
    }
}

impl From<Outcome> for ExitStatus {
    fn from(outcome: Outcome) -> ExitStatus {
        match outcome {
            Outcome::Ok => ExitStatus::Success,
            Outcome::FailedCheck(_) | Outcome::Regression => ExitStatus::CheckFailed,
            Outcome::MigrationFailed => ExitStatus::MigrationFailed,
            Outcome::SloFailed => ExitStatus::SloFailed,
            Outcome::Interrupted(signal) => ExitStatus::Interrupted(signal),
            Outcome::CommandExited(code) => ExitStatus::CommandExited(code),
        }
    }
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(status: ExitStatus) -> std::process::ExitCode {
        std::process::ExitCode::from(status.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rows of README.md's table under "### Exit codes".
    fn readme_rows() -> Vec<(String, String)> {
        let readme = include_str!("../../../README.md");
        let section = readme
            .split("\n### Exit codes\n")
            .nth(1)
            .expect("README.md has an \"### Exit codes\" section");
        section
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .skip(2)
            .map(|row| {
                let row = row.trim().trim_start_matches('|').trim_end_matches('|');
                let (code, meaning) = row.split_once(" | ").expect("two columns");
                (code.trim().to_string(), meaning.trim().to_string())
            })
            .collect()
    }

    #[test]
    fn readme_table_is_the_code_table() {
        let code: Vec<(String, String)> = EXIT_CODES
            .iter()
            .map(|(c, m)| (c.to_string(), m.replace('|', "\\|")))
            .collect();
        assert_eq!(readme_rows(), code);
    }

    #[test]
    fn every_status_has_its_row() {
        let codes: Vec<&str> = EXIT_CODES.iter().map(|(c, _)| *c).collect();
        for status in [
            ExitStatus::Success,
            ExitStatus::CheckFailed,
            ExitStatus::BadInput,
            ExitStatus::MigrationFailed,
            ExitStatus::SloFailed,
        ] {
            assert!(codes.contains(&status.code().to_string().as_str()), "{status:?}");
        }
        let signals = [Interruption::Interrupt, Interruption::Terminate, Interruption::Hangup]
            .map(|s| ExitStatus::Interrupted(s).code().to_string())
            .join(", ");
        assert!(codes.contains(&signals.as_str()), "{signals}");
    }
}
