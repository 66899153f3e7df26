//! One module per subcommand: each turns checked options into library
//! calls and shows progress, and says how it ended as an [`Outcome`];
//! main alone maps outcomes and errors to exit codes.

pub mod aggregate_log;
pub mod compare;
pub mod completions;
pub mod man;
pub mod migrate;
pub mod progress;
pub mod provision;
pub mod recommend;
pub mod report;
pub mod run;
pub mod signals;
pub mod sweep;

/// How a subcommand that ran to its end ended. Errors (bad input, setup
/// that failed) are `Err`, not outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything asked was done and every check held.
    Ok,
    /// Done, but a check failed; the results are written and say which.
    FailedCheck(FailedCheck),
    /// `compare`: the current run regressed beyond the threshold and the
    /// noise.
    Regression,
    /// `migrate`: the migration failed or left an invalid index.
    MigrationFailed,
    /// `run`, `sweep`, `migrate`: every check held, but an objective of
    /// the workload's `[slo]` failed (and `--no-slo-exit` was not given).
    SloFailed,
    /// `run`, `sweep`, `migrate`: stopped by SIGINT, SIGTERM or SIGHUP;
    /// the servers are down and finished cells are kept.
    Interrupted(signals::Interruption),
    /// `provision`: the command run against the servers exited with this
    /// status (128 + N for a signal N).
    CommandExited(u8),
}

/// Which check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailedCheck {
    /// A workload invariant was violated (money made, a seat sold twice).
    Invariant,
    /// The server was lost under a cell; it is recorded as failed.
    ServerLost,
    /// A task of contend panicked during a cell; it is recorded as failed.
    Panicked,
}

/// How a run whose checks held ends when `failed` objectives of its
/// workload's `[slo]` FAILed: [`Outcome::SloFailed`] when any did and
/// `slo_exit` (no `--no-slo-exit`), said on stderr either way.
pub fn slo_outcome(failed: usize, slo_exit: bool) -> Outcome {
    if failed == 0 {
        return Outcome::Ok;
    }
    if slo_exit {
        eprintln!(
            "contend: {failed} objective(s) of the workload's [slo] FAILed (see the scorecard); exit status {} (--no-slo-exit: 0)",
            crate::exit::SLO_FAILED
        );
        Outcome::SloFailed
    } else {
        eprintln!("contend: {failed} objective(s) of the workload's [slo] FAILed (see the scorecard); --no-slo-exit: exit status 0");
        Outcome::Ok
    }
}

/// Prints `value` on stdout as one pretty JSON document.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
