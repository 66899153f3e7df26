//! `contend sweep`: the grid of pool sizes × instances × max_connections
//! (× repeats), checked into a [`SweepPlan`] in run order.

use std::path::PathBuf;

use clap::Args;

use contend::analysis::RecommendOptions;
use contend::exec::{PlannedCell, SweepPlan};
use contend::provision::ProvisionOptions;

use super::values::{parse_instances, parse_pool_size, parse_repeat};
use super::{CellArgs, RecommendArgs, ServerArgs};

/// `contend sweep`.
#[derive(Debug, Args)]
pub struct SweepCommand {
    /// What each cell runs.
    #[command(flatten)]
    pub cell: CellArgs,
    /// Pool sizes per instance, comma-separated, e.g. 1,2,4,8,16,32,64.
    #[arg(long, value_delimiter = ',', required = true, value_name = "N,N,...", value_parser = parse_pool_size)]
    pub pool_sizes: Vec<u32>,
    /// Application instance counts, comma-separated.
    #[arg(
        long = "instances",
        value_delimiter = ',',
        default_value = "1",
        value_name = "K,K,...",
        value_parser = parse_instances
    )]
    pub instances: Vec<u32>,
    /// Runs of each cell, each with its own seed (seed, seed + 1, …): the
    /// recommendation takes medians, and the spread shows the noise.
    #[arg(long, default_value_t = 1, value_parser = parse_repeat)]
    pub repeat: u32,
    /// Continue the sweep in this results/<run> directory, running only the cells it lacks.
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// Directory under which results/<run>/ is created.
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// Where the servers come from; --max-connections takes a list here.
    #[command(flatten)]
    pub servers: ServerArgs,
    /// How the recommendation printed at the end judges the cells.
    #[command(flatten)]
    pub judging: RecommendArgs,
}

/// A validated `contend sweep`.
#[derive(Debug, Clone)]
pub struct SweepPlanArgs {
    /// The cells, in run order.
    pub plan: SweepPlan,
    /// The servers (max_connections set per cell by the sweep).
    pub provision: ProvisionOptions,
    /// Where results go: a new run directory under this root, or the one resumed.
    pub results_root: PathBuf,
    /// A run directory to resume.
    pub resume: Option<PathBuf>,
    /// How the recommendation at the end judges the cells.
    pub recommend: RecommendOptions,
}

impl TryFrom<SweepCommand> for SweepPlanArgs {
    type Error = anyhow::Error;

    fn try_from(mut args: SweepCommand) -> Result<Self, Self::Error> {
        let recommend = RecommendOptions::try_from(&args.judging)?;
        let max_connections = std::mem::take(&mut args.servers.max_connections);
        let mut provision = ProvisionOptions::try_from(args.servers)?;
        for &value in &max_connections {
            contend::provision::validate_max_connections(value, &provision.pg_settings)?;
        }
        provision.max_connections = max_connections.first().copied();
        let mut cells = Vec::new();
        // max_connections outermost: the server restarts only when it changes.
        let budgets: Vec<Option<u32>> = if max_connections.is_empty() {
            vec![None]
        } else {
            max_connections.iter().copied().map(Some).collect()
        };
        for max_connections in budgets {
            for &instances in &args.instances {
                for &pool_size in &args.pool_sizes {
                    let settings = args.cell.cell_settings(pool_size, instances)?;
                    for run in 0..u64::from(args.repeat) {
                        let mut settings = settings.clone();
                        settings.driver.seed = settings.driver.seed.wrapping_add(run);
                        cells.push(PlannedCell {
                            max_connections,
                            settings,
                        });
                    }
                }
            }
        }
        Ok(SweepPlanArgs {
            plan: SweepPlan { cells },
            provision,
            results_root: args.results,
            resume: args.resume,
            recommend,
        })
    }
}
