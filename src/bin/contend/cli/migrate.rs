//! `contend migrate`: the foreground load, the migration and its session's
//! limits, checked into [`MigrateSettings`].

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use contend::provision::ProvisionOptions;
use contend::record::{CellSettings, MigrateSettings};
use contend::workload::Migration;

use super::values::{check_schedule, parse_duration, parse_instances, parse_pool_size};
use super::{CellArgs, ServerArgs};

/// `contend migrate`.
#[derive(Debug, Args)]
#[command(after_help = super::cell::PGBENCH_LETTERS)]
pub struct MigrateCommand {
    /// The foreground load; --duration is the window measured before the
    /// migration and again after it.
    #[command(flatten)]
    pub cell: CellArgs,
    /// SQL file to run; default: the workload's own (sql/<workload>/migration.sql).
    #[arg(long, value_name = "FILE")]
    pub migration: Option<PathBuf>,
    /// Keep an index a failed concurrent build left INVALID (default: drop it).
    #[arg(long)]
    pub keep_invalid: bool,
    /// lock_timeout of the migration's session, e.g. 2s.
    #[arg(long, value_parser = parse_duration)]
    pub lock_timeout: Option<Duration>,
    /// statement_timeout of the migration's session: a longer build is cancelled.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub max_statement_time: Duration,
    /// Connections per instance's pool.
    #[arg(long, default_value_t = CellSettings::default().pool.size, value_parser = parse_pool_size)]
    pub pool_size: u32,
    /// Application instances, each with its own pool.
    #[arg(long, default_value_t = CellSettings::default().instances, value_parser = parse_instances)]
    pub instances: u32,
    /// Directory under which results/<run>/ is created.
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// Where the servers come from.
    #[command(flatten)]
    pub servers: ServerArgs,
    /// Exit 0, not 99, when an objective of the workload's `[slo]` FAILs.
    #[arg(long)]
    pub no_slo_exit: bool,
}

/// A validated `contend migrate`.
#[derive(Debug, Clone)]
pub struct MigratePlan {
    /// What runs.
    pub settings: MigrateSettings,
    /// The servers.
    pub provision: ProvisionOptions,
    /// Where results go.
    pub results_root: PathBuf,
    /// `--progress`: seconds between progress lines.
    pub progress: Option<f64>,
}

impl TryFrom<MigrateCommand> for MigratePlan {
    type Error = anyhow::Error;

    fn try_from(args: MigrateCommand) -> Result<Self, Self::Error> {
        let cell = args.cell.cell_settings(args.pool_size, args.instances)?;
        let migration = match &args.migration {
            // Its message only: it already names the file and the OS error.
            Some(path) => Some(Migration::from_file(path).map_err(|e| anyhow::anyhow!("{e}"))?),
            None => None,
        };
        if args.max_statement_time.is_zero() {
            anyhow::bail!("--max-statement-time 0s: give the build some time, e.g. 10m");
        }
        if let Some(rate) = args.cell.rate {
            // The foreground load runs a window before, the build (up to
            // twice its statement time, with its wait) and a window after.
            let span =
                args.cell.warmup + 2 * args.cell.duration + 2 * args.max_statement_time + Duration::from_secs(60);
            check_schedule(rate, span).map_err(anyhow::Error::msg)?;
        }
        let mut provision = ProvisionOptions::try_from(args.servers)?;
        provision.with_redis = contend::exec::cells_need_redis([&cell])?;
        Ok(MigratePlan {
            settings: MigrateSettings {
                cell,
                migration,
                keep_invalid: args.keep_invalid,
                lock_timeout_ms: args.lock_timeout.map(|d| d.as_millis().max(1) as u64),
                max_statement_ms: args.max_statement_time.as_millis().max(1) as u64,
            },
            provision,
            results_root: args.results,
            progress: args.cell.progress,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    #[test]
    fn flag_defaults_are_the_library_defaults() {
        let cli = Cli::try_parse_from([
            "contend",
            "migrate",
            "--workload",
            "goal-count",
            "--backend",
            "external",
            "--database-url",
            "postgres://contend@127.0.0.1/contend",
        ])
        .unwrap();
        let Command::Migrate(migrate) = cli.command else {
            panic!("not migrate")
        };
        let plan = MigratePlan::try_from(*migrate).unwrap();
        let json = |settings: &MigrateSettings| serde_json::to_value(settings).unwrap();
        assert_eq!(json(&plan.settings), json(&MigrateSettings::default()));
    }
}
