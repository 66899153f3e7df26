//! Workloads: what a client does in one transaction, and the data it needs.
//!
//! Each workload is one module here, its SQL under `sql/<name>/` and its
//! defaults in `workloads/<name>.toml`, both compiled in. Adding one is adding
//! those three and a line in [`WORKLOADS`] and [`with_workload`]. A workload
//! never times anything and never opens connections: the driver hands it an
//! [`Attempt`] that checks a connection out (and begins a transaction) when
//! the operation first needs the database.

pub mod goal_count;
pub mod sleep;

use std::future::Future;

use rand::rngs::SmallRng;
use serde::{Deserialize, Serialize};

use crate::attempt::Attempt;
use crate::metrics::ErrorClass;

/// Names of the registered workloads.
pub const WORKLOADS: &[&str] = &[goal_count::NAME, sleep::NAME];

/// What one operation achieved, when it succeeded.
#[derive(Debug, Clone, Copy, Default)]
pub struct OperationResult {
    /// Business-level results worth counting ("assigned", "cache_hit"…).
    pub counted: [Option<&'static str>; 3],
}

impl OperationResult {
    /// A result counting `what`.
    pub fn counting(what: &'static str) -> OperationResult {
        let mut result = OperationResult::default();
        result.count(what);
        result
    }

    /// Adds `what` to the counted results (beyond three, the rest are dropped).
    pub fn count(&mut self, what: &'static str) {
        if let Some(slot) = self.counted.iter_mut().find(|slot| slot.is_none()) {
            *slot = Some(what);
        }
    }
}

/// Data a workload loads into its template database.
#[derive(Debug, Clone)]
pub struct DataPlan {
    /// Template database name, unique per workload, scale and data settings.
    pub template_name: String,
    /// Statements creating the schema.
    pub schema_sql: String,
    /// Statements loading the data.
    pub seed_sql: String,
}

/// A workload the driver can run.
pub trait Workload: Send + Sync + 'static {
    /// Operation names, indexed by the numbers [`Workload::choose_operation`]
    /// returns.
    fn operations(&self) -> &'static [&'static str];
    /// The template database's name and the SQL that fills it.
    fn data_plan(&self) -> DataPlan;
    /// Reads what the workload needs to know about the loaded data (row
    /// counts, id ranges) from a cell database.
    fn inspect_data(&mut self, client: &tokio_postgres::Client) -> impl Future<Output = Result<(), String>> + Send;
    /// Picks the next operation by the configured mix.
    fn choose_operation(&self, rng: &mut SmallRng) -> usize;
    /// Client think time between transactions, milliseconds.
    fn think_time_ms(&self) -> u64;
    /// Runs operation `op`; `attempt.db()` checks a connection out and
    /// begins the transaction when the operation first needs it.
    fn run_operation(
        &self,
        op: usize,
        attempt: &mut Attempt<'_>,
        rng: &mut SmallRng,
    ) -> impl Future<Output = Result<OperationResult, ErrorClass>> + Send;
}

/// Overrides of a workload's defaults from the command line.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkloadOverrides {
    /// Data scale factor (1.0 = the defaults' size).
    pub scale: Option<f64>,
    /// Think time, milliseconds.
    pub think_time_ms: Option<u64>,
    /// Use the workload's Redis cache, where it has one.
    #[serde(default)]
    pub cache: bool,
}

/// Failures to set up a workload.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// Not in the registry.
    #[error("unknown workload `{name}`: choose one of {}", WORKLOADS.join(", "))]
    Unknown {
        /// The name given.
        name: String,
    },
    /// Its defaults file does not parse.
    #[error("workloads/{name}.toml: {reason}")]
    Defaults {
        /// Workload name.
        name: String,
        /// What is wrong, with line and column.
        reason: String,
    },
    /// An override is out of range.
    #[error("{0}")]
    Invalid(String),
}

/// Something that runs with any workload: [`with_workload`] builds the named
/// workload and calls [`WorkloadUser::run`] with it, statically typed.
pub trait WorkloadUser {
    /// What the use returns.
    type Output;
    /// Uses the workload.
    fn run<W: Workload>(self, workload: W) -> impl Future<Output = Self::Output>;
}

/// The registry: builds workload `name` with `overrides` and hands it to `user`.
pub async fn with_workload<U: WorkloadUser>(
    name: &str,
    overrides: &WorkloadOverrides,
    user: U,
) -> Result<U::Output, WorkloadError> {
    match name {
        goal_count::NAME => Ok(user.run(goal_count::GoalCount::new(overrides)?).await),
        sleep::NAME => Ok(user.run(sleep::Sleep::new(overrides)?).await),
        _ => Err(WorkloadError::Unknown { name: name.to_string() }),
    }
}

/// Parses a workload's compiled-in TOML defaults.
pub(crate) fn parse_defaults<T: serde::de::DeserializeOwned>(name: &str, text: &str) -> Result<T, WorkloadError> {
    toml::from_str(text).map_err(|e| WorkloadError::Defaults {
        name: name.to_string(),
        reason: e.to_string().lines().collect::<Vec<_>>().join(" "),
    })
}

/// Picks an index by relative weights.
pub(crate) fn weighted_choice(cumulative: &[u32], rng: &mut SmallRng) -> usize {
    use rand::Rng;
    let total = *cumulative.last().unwrap_or(&1);
    let draw = rng.random_range(0..total.max(1));
    cumulative.iter().position(|&edge| draw < edge).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn weighted_choice_follows_weights() {
        let cumulative = [40, 60, 85, 100];
        let mut rng = SmallRng::seed_from_u64(7);
        let mut counts = [0u32; 4];
        for _ in 0..100_000 {
            counts[weighted_choice(&cumulative, &mut rng)] += 1;
        }
        let shares: Vec<f64> = counts.iter().map(|&c| c as f64 / 100_000.0).collect();
        for (share, expected) in shares.iter().zip([0.40, 0.20, 0.25, 0.15]) {
            assert!((share - expected).abs() < 0.01, "{shares:?}");
        }
    }
}
