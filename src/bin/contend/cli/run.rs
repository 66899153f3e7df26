//! `contend run`: one cell and its servers, checked into a [`RunPlan`].

use std::path::PathBuf;

use clap::Args;

use contend::provision::{BackendChoice, ExternalPooler, ProvisionOptions};
use contend::record::CellSettings;

use super::values::{parse_instances, parse_pool_size};
use super::{CellArgs, PoolerArgs, ServerArgs};

/// `contend run`.
#[derive(Debug, Args)]
#[command(after_help = super::cell::PGBENCH_LETTERS)]
pub struct RunCommand {
    /// What each cell runs.
    #[command(flatten)]
    pub cell: CellArgs,
    /// Connections per instance's pool (ignored with --pool none).
    #[arg(long, default_value_t = CellSettings::default().pool.size, value_parser = parse_pool_size)]
    pub pool_size: u32,
    /// Application instances, each with its own pool.
    #[arg(long, default_value_t = CellSettings::default().instances, value_parser = parse_instances)]
    pub instances: u32,
    /// A pooler between the app pools and the server.
    #[command(flatten)]
    pub pooler: PoolerArgs,
    /// PgBouncer's default_pool_size: server connections it opens for the cell's database [default: 20].
    #[arg(long, value_name = "N", requires = "pooler", value_parser = parse_pool_size)]
    pub pooler_pool_size: Option<u32>,
    /// Directory under which results/<run>/ is created.
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// Where the servers come from.
    #[command(flatten)]
    pub servers: ServerArgs,
    /// pgbench's aggregate log.
    #[command(flatten)]
    pub log: super::AggregateLogArgs,
    /// Exit 0, not 99, when an objective of the workload's `[slo]` FAILs.
    #[arg(long)]
    pub no_slo_exit: bool,
    /// What stdout gets: text, json (the cell record, as in cells.jsonl) or csv (one row).
    #[arg(long, value_enum, default_value_t = super::Format::Text)]
    pub format: super::Format,
}

/// A validated `contend run`.
#[derive(Debug, Clone)]
pub struct RunPlan {
    /// The cell.
    pub cell: CellSettings,
    /// The servers.
    pub provision: ProvisionOptions,
    /// Where results go.
    pub results_root: PathBuf,
    /// `--progress`: seconds between progress lines.
    pub progress: Option<f64>,
    /// `--aggregate-interval`: pgbench's aggregate log.
    pub aggregate_log: Option<super::AggregateLog>,
    /// The user's PgBouncer (`--pooler-url`), when the cell goes through it.
    pub external_pooler: Option<ExternalPooler>,
}

impl TryFrom<RunCommand> for RunPlan {
    type Error = anyhow::Error;

    fn try_from(args: RunCommand) -> Result<Self, Self::Error> {
        let mut cell = args.cell.cell_settings(args.pool_size, args.instances)?;
        let progress = args.cell.progress;
        let mut provision = ProvisionOptions::try_from(args.servers)?;
        provision.with_redis = contend::exec::cells_need_redis([&cell])?;
        let server_known = provision.backend != BackendChoice::External && provision.database_url.is_none();
        cell.pooler = args.pooler.cell_pooler(
            args.pooler_pool_size,
            &cell,
            provision.max_connections,
            server_known,
            super::pooler::reserved_slots(&provision.pg_settings),
        )?;
        Ok(RunPlan {
            cell,
            provision,
            results_root: args.results,
            progress,
            aggregate_log: args.log.chosen(),
            external_pooler: args.pooler.external(),
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn run_plan(args: &[&str]) -> Result<RunPlan, String> {
        let cli = Cli::try_parse_from(args).map_err(|e| e.to_string())?;
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        RunPlan::try_from(*run).map_err(|e| e.to_string())
    }

    #[test]
    fn driver_threads_are_at_most_the_instances_and_default_to_the_cores() {
        let base = [
            "contend",
            "run",
            "--workload",
            "sleep",
            "--backend",
            "external",
            "--database-url",
            "postgres://contend@127.0.0.1/contend",
        ];
        let threads = |extra: &[&str]| run_plan(&[&base[..], extra].concat()).map(|plan| plan.cell.driver.threads);
        assert_eq!(threads(&["--instances", "4", "--driver-threads", "2"]), Ok(2));
        assert_eq!(threads(&["--instances", "2", "--driver-threads", "8"]), Ok(2));
        assert_eq!(threads(&["--driver-threads", "8"]), Ok(1), "one instance, one thread");
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        assert_eq!(threads(&["--instances", "64"]), Ok(cores.min(64)));
        assert!(threads(&["--driver-threads", "0"])
            .unwrap_err()
            .contains("'0' for '--driver-threads <N>': at least one thread must drive the clients"));
    }

    const EXTERNAL: [&str; 4] = [
        "--backend",
        "external",
        "--database-url",
        "postgres://contend@127.0.0.1/contend",
    ];

    /// pgbench's letters give the same cell as the long flags they stand
    /// for; `--max-tries N` is `--max-retries N-1`.
    #[test]
    fn pgbench_letters_are_the_long_flags() {
        let cell = |flags: &[&str]| {
            let plan = run_plan(&[&["contend", "run", "--workload", "script"][..], &EXTERNAL, flags].concat())
                .unwrap_or_else(|e| panic!("{flags:?}: {e}"));
            serde_json::to_value(&plan.cell).unwrap()
        };
        let short = cell(&[
            "-c",
            "64",
            "-j",
            "2",
            "-T",
            "60s",
            "-L",
            "50",
            "-s",
            "3",
            "-C",
            "--max-tries",
            "4",
            "-f",
            "sql/script/tpcb-like.sql@2",
        ]);
        let long = cell(&[
            "--clients",
            "64",
            "--driver-threads",
            "2",
            "--duration",
            "60s",
            "--latency-limit",
            "50ms",
            "--pgbench-scale",
            "3",
            "--pool",
            "none",
            "--max-retries",
            "3",
            "--script",
            "sql/script/tpcb-like.sql@2",
        ]);
        assert_eq!(short, long);
        assert_eq!(short["driver"]["latency_limit_ms"], 50.0);
        assert_eq!(short["pool"]["kind"], "none");
        let script = ["-f", "sql/script/tpcb-like.sql"];
        assert_eq!(
            cell(&[&["-R", "500"][..], &script].concat()),
            cell(&[&["--rate", "500"][..], &script].concat())
        );
        let plan = run_plan(&[&["contend", "run", "--workload", "sleep", "-P", "5"][..], &EXTERNAL].concat()).unwrap();
        assert_eq!(plan.progress, Some(5.0));
        let refused =
            |flags: &[&str]| run_plan(&[&["contend", "run", "--workload", "sleep"][..], &EXTERNAL, flags].concat());
        assert!(refused(&["-C", "--pool", "sqlx"])
            .unwrap_err()
            .contains("cannot be used with"));
        assert!(refused(&["--max-tries", "2", "--max-retries", "1"])
            .unwrap_err()
            .contains("cannot be used with"));
        assert!(refused(&["--max-tries", "0"])
            .unwrap_err()
            .contains("tried at least once"));
        assert!(refused(&["-L", "0"]).unwrap_err().contains("more than 0"));
        assert!(refused(&["-P", "0"])
            .unwrap_err()
            .contains("seconds between progress lines"));
    }

    /// The flags' defaults are the library's: a cell from no flags but the
    /// workload is `CellSettings::default()` (one instance: one thread).
    #[test]
    fn flag_defaults_are_the_library_defaults() {
        let plan = run_plan(&[&["contend", "run", "--workload", "goal-count"][..], &EXTERNAL].concat()).unwrap();
        let json = |cell: &CellSettings| serde_json::to_value(cell).unwrap();
        assert_eq!(json(&plan.cell), json(&CellSettings::default()));
        let defaults = ProvisionOptions::default();
        assert_eq!(plan.provision.startup_timeout, defaults.startup_timeout);
        assert_eq!(plan.provision.pg_image, defaults.pg_image);
    }
}
