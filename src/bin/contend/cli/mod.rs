//! The command line: raw clap flags (stage one: parsed and checked, no
//! I/O), and their conversion (`TryFrom`, stage two) into the library's
//! checked options.
//!
//! The only module that knows clap. One file per subcommand holds its flags
//! and their conversion; flags several subcommands share are in `servers`
//! (where the servers come from, how a recommendation judges) and `cell`
//! (what a cell runs). Conversions do no I/O beyond reading the files a
//! workload is given (`--workload-file`, `--script`, `--migration`), so a
//! typo is refused before any server starts. They fail with `anyhow`
//! errors: the binary is the edge, and each message names the flag and
//! what to give instead.

mod cell;
mod compare;
mod completions;
mod format;
mod log;
pub mod man;
mod migrate;
mod pooler;
mod provision;
mod recommend;
mod report;
mod run;
mod servers;
mod sweep;
mod values;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

pub use self::cell::CellArgs;
pub use self::compare::CompareCommand;
pub use self::completions::CompletionsCommand;
pub use self::format::Format;
pub use self::log::{AggregateLog, AggregateLogArgs};
pub use self::man::ManCommand;
pub use self::migrate::{MigrateCommand, MigratePlan};
pub use self::pooler::PoolerArgs;
pub use self::provision::ProvisionCommand;
pub use self::recommend::RecommendCommand;
pub use self::report::ReportCommand;
pub use self::run::{RunCommand, RunPlan};
pub use self::servers::{RecommendArgs, ServerArgs};
pub use self::sweep::{SweepCommand, SweepPlanArgs};

/// contend measures connection pools and max_connections on real servers.
#[derive(Debug, Parser)]
#[command(name = "contend", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// contend's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start PostgreSQL and Redis, run COMMAND with DATABASE_URL and
    /// REDIS_URL set, tear everything down, and exit with COMMAND's status.
    /// Without a command, print the URLs and wait for Ctrl-C.
    Provision(Box<ProvisionCommand>),
    /// Run one benchmark cell: a workload through pools, measured on both
    /// sides of the pool; appended to results/<run>/cells.jsonl.
    Run(Box<RunCommand>),
    /// Run a cell for every pool size × instances × max_connections, appending
    /// each to results/<run>/cells.jsonl as it finishes; --resume continues one.
    Sweep(Box<SweepCommand>),
    /// Recommend pool sizes and max_connections from a sweep's results/<run>.
    Recommend(RecommendCommand),
    /// Run a migration (by default the workload's CREATE INDEX CONCURRENTLY)
    /// while the workload runs: EXPLAIN ANALYZE before and after, the
    /// build's phases, foreground latency before/during/after, and a check
    /// that every new index is valid. Writes results/<run>/migration.json.
    Migrate(Box<MigrateCommand>),
    /// Write run.json, summary.md, plots/*.svg and index.html for a
    /// results/<run> directory; from its run.json when there is one.
    Report(ReportCommand),
    /// Compare two runs' cells (goodput, p95/p99 per operation, mean time per
    /// query) and exit 1 on a regression beyond the threshold and the noise.
    Compare(CompareCommand),
    /// Print a completion script for bash, zsh, fish, elvish or powershell.
    Completions(CompletionsCommand),
    /// Print the manual page (roff), or write one per subcommand with --dir.
    Man(ManCommand),
}

/// Parses the command line. `sweep` also learns which of its flags were
/// given (not defaulted): beside `--resume` those must agree with the run.
pub fn parse() -> Result<Cli, clap::Error> {
    let matches = Cli::command()
        .after_long_help(crate::exit::help_text())
        .try_get_matches()?;
    let mut cli = Cli::from_arg_matches(&matches)?;
    if let (Command::Sweep(sweep), Some(("sweep", sub))) = (&mut cli.command, matches.subcommand()) {
        sweep.given = sub
            .ids()
            .filter(|id| sub.value_source(id.as_str()) == Some(clap::parser::ValueSource::CommandLine))
            .map(|id| id.as_str().to_string())
            .collect();
    }
    Ok(cli)
}
