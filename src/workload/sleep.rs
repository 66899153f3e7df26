//! sleep: one `pg_sleep` per transaction and no data.
//!
//! A fixed, known service time on the server: what the driver measures can
//! be checked against it (open-loop accuracy, coordinated omission), and a
//! pool's queueing shows without any contention inside the database.

use rand::rngs::SmallRng;
use serde::{Deserialize, Serialize};

use super::{
    parse_defaults, CellContext, DataPlan, OperationResult, Workload, WorkloadDef, WorkloadError, WorkloadOverrides,
};
use crate::client::Attempt;
use crate::client::ErrorClass;
use crate::client::Param;

/// Registry name.
pub const NAME: &str = "sleep";

const DEFAULTS: &str = include_str!("../../workloads/sleep.toml");
const SLEEP: &str = include_str!("../../sql/sleep/sleep.sql");
const OPERATIONS: &[&str] = &["sleep"];

/// workloads/sleep.toml.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SleepDefaults {
    /// Client behaviour.
    pub traffic: SleepTraffic,
    /// `[slo]`: objectives every run is scored against.
    #[serde(default)]
    pub slo: crate::measure::SloSpec,
}

/// `[traffic]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SleepTraffic {
    /// Server-side delay of each transaction, microseconds.
    pub delay_us: u32,
    /// Pause between a client's transactions, milliseconds.
    pub think_time_ms: u64,
}

/// The sleep workload, configured.
pub struct Sleep {
    slo: crate::measure::SloSpec,
    delay_us: i32,
    think_time_ms: u64,
}

impl Sleep {
    /// The workload with its compiled-in defaults and `overrides` (scale has
    /// no meaning here and is ignored).
    pub fn new(overrides: &WorkloadOverrides) -> Result<Sleep, WorkloadError> {
        let defaults: SleepDefaults = parse_defaults(NAME, DEFAULTS, overrides)?;
        defaults.slo.validate().map_err(|e| WorkloadError::Defaults {
            name: NAME.into(),
            reason: e.to_string(),
        })?;
        super::in_range("traffic.think_time_ms", defaults.traffic.think_time_ms, 0, super::MAX_THINK_TIME_MS, "ms")?;
        Ok(Sleep {
            slo: defaults.slo.clone(),
            delay_us: i32::try_from(defaults.traffic.delay_us).map_err(|_| WorkloadError::Defaults {
                name: NAME.into(),
                reason: "[traffic] delay_us is too large".into(),
            })?,
            think_time_ms: overrides.think_time_ms.unwrap_or(defaults.traffic.think_time_ms),
        })
    }
}

impl WorkloadDef for Sleep {
    const NAME: &'static str = NAME;

    fn build(overrides: &WorkloadOverrides) -> Result<Sleep, WorkloadError> {
        Sleep::new(overrides)
    }
}

impl Workload for Sleep {
    fn slo(&self) -> crate::measure::SloSpec {
        self.slo.clone()
    }

    fn operations(&self) -> &'static [&'static str] {
        OPERATIONS
    }

    fn data_plan(&self) -> DataPlan {
        DataPlan {
            template_name: "contend_tmpl_sleep".into(),
            schema_sql: String::new(),
            seed_sql: String::new(),
        }
    }

    async fn prepare_cell(&mut self, _cell: CellContext<'_>) -> Result<(), WorkloadError> {
        Ok(())
    }

    fn choose_operation(&self, _rng: &mut SmallRng) -> usize {
        0
    }

    fn think_time_ms(&self) -> u64 {
        self.think_time_ms
    }

    async fn run_operation(
        &self,
        _op: usize,
        attempt: &mut Attempt<'_>,
        _rng: &mut SmallRng,
    ) -> Result<OperationResult, ErrorClass> {
        attempt.db().await?.query(SLEEP, &[Param::Int(self.delay_us)]).await?;
        Ok(OperationResult::default())
    }
}
