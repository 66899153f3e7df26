//! noop: one `SELECT 1` per transaction and no data (a registry test).

use rand::rngs::SmallRng;
use serde::Deserialize;

use super::{
    parse_defaults, CellContext, DataPlan, OperationResult, Workload, WorkloadDef, WorkloadError, WorkloadOverrides,
};
use crate::client::{Attempt, ErrorClass};

/// Registry name.
pub const NAME: &str = "noop";

const DEFAULTS: &str = include_str!("../../workloads/noop.toml");
const SELECT_1: &str = include_str!("../../sql/noop/select_1.sql");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoopDefaults {
    traffic: NoopTraffic,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoopTraffic {
    think_time_ms: u64,
}

/// The noop workload, configured.
pub struct Noop {
    think_time_ms: u64,
}

impl WorkloadDef for Noop {
    const NAME: &'static str = NAME;

    fn build(overrides: &WorkloadOverrides) -> Result<Noop, WorkloadError> {
        let defaults: NoopDefaults = parse_defaults(NAME, DEFAULTS, overrides)?;
        Ok(Noop {
            think_time_ms: overrides.think_time_ms.unwrap_or(defaults.traffic.think_time_ms),
        })
    }
}

impl Workload for Noop {
    fn operations(&self) -> &'static [&'static str] {
        &["select_1"]
    }

    fn data_plan(&self) -> DataPlan {
        DataPlan {
            template_name: "contend_tmpl_noop".into(),
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
        attempt.db().await?.query(SELECT_1, &[]).await?;
        Ok(OperationResult::default())
    }
}
