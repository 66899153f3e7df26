//! A cell's record: what was run ([`CellSettings`]), what it measured
//! ([`CellRecord`]), and the key that names it within a sweep.
//!
//! Plain serde data, as written to `cells.jsonl` (schema
//! [`CELL_SCHEMA`]); nothing here reads a file, runs a cell or formats.

use serde::{Deserialize, Serialize};

use crate::client::PoolSettings;
use crate::driver::{DriverSettings, Load};
use crate::measure::{CellMetrics, LatencySummary, PoolerSamples, ServerSamples, SloResult, SloSpec};
use crate::provision::{Backend, CellPooler, PgServer, PoolerInfo, RedisServer};
use crate::workload::{goal_count, InvariantCheck, WorkloadOverrides};

/// Version of the cell record's schema; bumped on any incompatible change.
pub const CELL_SCHEMA: &str = "contend.cell/1";

/// Everything that defines a cell, as run and as recorded. The defaults
/// ([`CellSettings::default`]) are `contend run`'s; tests and benches
/// write `CellSettings { workload, .., ..Default::default() }`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellSettings {
    /// Workload name. Default `goal-count` (`contend run` requires
    /// `--workload`).
    pub workload: String,
    /// Workload overrides (scale, think time). Default: none, the
    /// workload's own settings.
    pub overrides: WorkloadOverrides,
    /// Pool of each application instance. Default: deadpool, 10
    /// connections, 5 s acquire timeout, 10 s connect timeout, the
    /// server's statement_timeout ([`PoolSettings`]' defaults).
    pub pool: PoolSettings,
    /// Application instances, each with its own pool. Default 1.
    pub instances: u32,
    /// Driver settings. Default: [`DriverSettings::default`].
    pub driver: DriverSettings,
    /// A pooler between the app pools and the server (`--pooler`).
    /// Default: none, the pools connect to the server. Left out of the
    /// record when none, so cells (and their keys) from before it read and
    /// match as they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooler: Option<CellPooler>,
}

impl Default for CellSettings {
    fn default() -> Self {
        CellSettings {
            workload: goal_count::NAME.to_string(),
            overrides: WorkloadOverrides::default(),
            pool: PoolSettings::default(),
            instances: 1,
            driver: DriverSettings::default(),
            pooler: None,
        }
    }
}

/// One finished cell, as written to `cells.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellRecord {
    /// [`CELL_SCHEMA`].
    pub schema: String,
    /// contend's version.
    pub contend_version: String,
    /// When the cell started, RFC 3339 UTC.
    pub started_at: String,
    /// What was run.
    pub settings: CellSettings,
    /// Backend that served.
    pub backend: Backend,
    /// The PostgreSQL server (password never recorded).
    pub postgres: PgServer,
    /// The Redis server, when there was one.
    pub redis: Option<RedisServer>,
    /// The template the cell's data was copied from.
    pub template: TemplateInfo,
    /// Milliseconds to copy the template for this cell.
    pub copy_ms: f64,
    /// Client-side measurements.
    pub metrics: CellMetrics,
    /// Open loop: how well the arrival schedule was kept.
    pub schedule: Option<ScheduleReport>,
    /// What the server was doing meanwhile (sampled outside the pools).
    pub server: ServerSamples,
    /// The workload's strategy, where it has several.
    pub strategy: Option<String>,
    /// Business successes (goodput in the workload's own terms).
    pub business: BusinessSummary,
    /// The workload's objectives and how the cell did against them.
    #[serde(default)]
    pub slo: Scorecard,
    /// Invariants checked on the data after the run.
    pub invariants: Vec<InvariantCheck>,
    /// The pooler the cell went through and what it did, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooler: Option<PoolerCell>,
}

/// The pooler side of a cell: what it was and what its admin console
/// showed each second (sampled outside the pools).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PoolerCell {
    /// Version, origin, address and settings.
    pub info: PoolerInfo,
    /// `SHOW POOLS` and `SHOW STATS` deltas over the cell.
    pub samples: PoolerSamples,
    /// CPU seconds the pgbouncer process used over the cell (it shares the
    /// machine's cores with the server and the clients); `None` for an
    /// external pooler.
    #[serde(default)]
    pub cpu_s: Option<f64>,
}

impl CellRecord {
    /// Whether every invariant held.
    pub fn invariants_hold(&self) -> bool {
        !self.invariants.iter().any(|check| check.violated())
    }
}

/// Goodput in the workload's own terms: successes per second, where a
/// success is one of the workload's goodput outcomes (every successful
/// attempt when it names none).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BusinessSummary {
    /// Outcomes counted as successes; empty = every successful attempt.
    pub outcomes: Vec<String>,
    /// Successes in the measured window.
    pub successes: u64,
    /// Successes per second of measured time.
    pub goodput_per_s: f64,
}

impl BusinessSummary {
    pub fn of(metrics: &CellMetrics, outcomes: &[&'static str]) -> BusinessSummary {
        let successes = if outcomes.is_empty() {
            metrics.ok
        } else {
            metrics
                .operations
                .iter()
                .flat_map(|op| op.counts.iter())
                .filter(|(what, _)| outcomes.contains(&what.as_str()))
                .map(|(_, n)| n)
                .sum()
        };
        BusinessSummary {
            outcomes: outcomes.iter().map(|o| o.to_string()).collect(),
            successes,
            goodput_per_s: if metrics.measured_s > 0.0 {
                successes as f64 / metrics.measured_s
            } else {
                0.0
            },
        }
    }
}

/// How well an open-loop cell kept its arrival schedule.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScheduleReport {
    /// Rate asked for, per second.
    pub target_rate_per_s: f64,
    /// Arrivals scheduled in the measured window.
    pub scheduled: u64,
    /// First attempts of measured arrivals per second of measured time
    /// (window plus drain): below the target when the server fell behind.
    pub achieved_rate_per_s: f64,
    /// How late arrivals started after their intended time.
    pub lag: LatencySummary,
}

/// What loading found or did.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TemplateInfo {
    /// Template database name.
    pub name: String,
    /// Whether an existing, complete template was reused.
    pub reused: bool,
    /// Seconds spent loading (0 when reused).
    pub load_s: f64,
    /// Size of the template database, bytes.
    pub size_bytes: i64,
}

/// A cell's SLO scorecard: the objectives declared and each judged.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Scorecard {
    /// The workload's `[slo]` table as run.
    pub spec: SloSpec,
    /// Each objective, PASS or FAIL, with the measured value.
    pub results: Vec<SloResult>,
}

impl Scorecard {
    /// Whether every objective passed (true when none is declared).
    pub fn all_pass(&self) -> bool {
        self.results.iter().all(|r| r.pass)
    }
}

/// The identity of a cell within a sweep: what a resumed sweep matches on.
/// Readable for what tells cells of one sweep apart, and a digest of every
/// setting (duration, warmup, scale, overrides, the workload file…), so a
/// cell measured with other settings never stands in for this one.
/// The deadline's grace is left out: how long a stalled cell is waited for
/// does not change what a finished one measured.
pub fn cell_key(settings: &CellSettings, max_connections: u32) -> String {
    let mut measured = settings.clone();
    measured.driver.grace_s = 0.0;
    let digest = serde_json::to_vec(&measured).map_or_else(|_| String::new(), |json| super::sha256_hex(&json));
    let load = match settings.driver.load {
        Load::Closed { clients } => format!("clients={clients}"),
        Load::Open { rate_per_s, .. } => format!("rate={rate_per_s}"),
    };
    format!(
        "{}{} strategy={} pool={}x{} instances={} {load} max_connections={max_connections} seed={} settings={}",
        settings.workload,
        if settings.overrides.migrated { " migrated" } else { "" },
        settings.overrides.strategy.as_deref().unwrap_or("default"),
        settings.pool.kind,
        settings.pool.size,
        settings.instances,
        settings.driver.seed,
        &digest[..digest.len().min(12)],
    )
}

/// The key of a finished cell, from its record: the settings it was
/// planned with, as recorded. (The strategy a workload chose by default is
/// not one of them: the planned cell did not name it either, and a key
/// filled from it never matched the planned cell's.)
pub fn record_key(record: &CellRecord) -> String {
    cell_key(&record.settings, record.postgres.max_connections)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_covers_every_setting_that_changes_what_is_measured() {
        let planned = CellSettings::default();
        let key = cell_key(&planned, 100);
        assert_eq!(key, cell_key(&planned.clone(), 100));
        let mut longer = planned.clone();
        longer.driver.duration_s = 5.0;
        let mut warmer = planned.clone();
        warmer.driver.warmup_s = 0.0;
        let mut bigger = planned.clone();
        bigger.overrides.scale = Some(2.0);
        let mut set = planned.clone();
        set.overrides.settings.push(("traffic.delay_us".into(), "5".into()));
        for other in [longer, warmer, bigger, set] {
            assert_ne!(cell_key(&other, 100), key, "{other:?}");
        }
        assert_ne!(cell_key(&planned, 101), key);
        let mut patient = planned.clone();
        patient.driver.grace_s = 300.0;
        assert_eq!(cell_key(&patient, 100), key, "the grace is not a measured setting");
    }
}
