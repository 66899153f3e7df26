//! A cell's record: what was run ([`CellSettings`]), what it measured
//! ([`CellRecord`]), and the key that names it within a sweep.
//!
//! Plain serde data, as written to `cells.jsonl` (schema
//! [`CELL_SCHEMA`]); nothing here reads a file, runs a cell or formats.

use serde::{Deserialize, Serialize};

use crate::client::PoolSettings;
use crate::driver::{DriverSettings, Load};
use crate::measure::{CellMetrics, LatencySummary, PoolerSamples, ServerSamples, SloResult, SloSpec, TlsSessions};
use crate::network::{NetworkSettings, ProxyReport};
use crate::provision::tls::SslMode;
use crate::provision::{Backend, CellPooler, PgServer, PoolerInfo, RedisServer};
use crate::workload::{goal_count, InvariantCheck, WorkloadOverrides};

use super::diagnosis::Diagnosis;

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
    /// The network between the app pools and the server. Default direct
    /// (no proxy); left out of the record when direct, so that a cell
    /// recorded before it existed keeps its key.
    #[serde(default, skip_serializing_if = "NetworkSettings::is_direct")]
    pub network: NetworkSettings,
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
            network: NetworkSettings::default(),
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
    /// TLS of the pools' connections; absent for a plain cell (and in
    /// records written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<CellTls>,
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
    /// The round trips the clients saw, and the proxy's report when one
    /// was in the path. `None` in cells recorded before it existed.
    #[serde(default)]
    pub network: Option<NetworkMeasured>,
    /// contend's own CPU while it drove the cell; `None` in cells recorded
    /// before it was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cpu: Option<ClientCpu>,
    /// Where the time went; `None` in cells recorded before diagnoses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnosis: Option<Diagnosis>,
}

/// contend's process CPU time (user + system) over the drive of a cell:
/// warmup, window and drain.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClientCpu {
    /// CPU seconds used.
    pub cpu_s: f64,
    /// Wall seconds they were used in.
    pub wall_s: f64,
}

/// How the cell's application pools talked to the server: the `sslmode`
/// they were given, and the TLS version and cipher the server reports for
/// their sessions (`pg_stat_ssl`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CellTls {
    /// The clients' `sslmode`.
    pub mode: SslMode,
    /// TLS version of most of their sessions, e.g. "TLSv1.3".
    pub version: String,
    /// Cipher of those sessions, e.g. "TLS_AES_256_GCM_SHA384".
    pub cipher: String,
    /// Most sessions seen at once without TLS beside them (0 unless
    /// `allow` or `prefer` fell back to plain for some).
    #[serde(default)]
    pub plain_sessions: u32,
}

impl CellTls {
    /// From what the sampler saw: `None` when no session used TLS (a plain
    /// cell, or one whose sessions the sampler never caught).
    pub fn of(mode: SslMode, sessions: &[TlsSessions]) -> Option<CellTls> {
        let most = sessions.iter().filter(|s| s.ssl).max_by_key(|s| s.sessions)?;
        Some(CellTls {
            mode,
            version: most.version.clone().unwrap_or_default(),
            cipher: most.cipher.clone().unwrap_or_default(),
            plain_sessions: sessions
                .iter()
                .filter(|s| !s.ssl)
                .map(|s| s.sessions)
                .max()
                .unwrap_or(0),
        })
    }
}

/// The network a cell's clients saw, measured before the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkMeasured {
    /// The round trip asked for (`--network-rtt`), milliseconds.
    pub rtt_set_ms: f64,
    /// `SELECT 1` timed on a connection of its own over the pools' path
    /// (through the proxy when there is one, after its delay was trimmed by
    /// what its own path adds: `proxy.trimmed_ms`), median, milliseconds:
    /// the round trip the clients saw, server included.
    pub rtt_pooled_ms: f64,
    /// The same on a direct connection, median, milliseconds.
    pub rtt_direct_ms: f64,
    /// `SELECT 1`s timed on each connection.
    pub samples: u32,
    /// `host:port` the pools connected to: the server's when direct, the
    /// proxy's otherwise.
    pub pools_connect_to: String,
    /// The proxy in the path, when there was one.
    pub proxy: Option<ProxyReport>,
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
    // Only a delayed network is named: keys of direct cells stay as they were.
    let network = if settings.network.is_direct() {
        String::new()
    } else {
        format!(" rtt={}ms", settings.network.rtt_ms)
    };
    format!(
        "{}{} strategy={} pool={}x{} instances={} {load}{network} max_connections={max_connections} seed={} settings={}",
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
        let mut far = planned.clone();
        far.network.rtt_ms = 2.0;
        assert!(cell_key(&far, 100).contains(" rtt=2ms "), "{}", cell_key(&far, 100));
        assert!(!key.contains("rtt"), "a direct cell's key is as it was: {key}");
        let mut patient = planned.clone();
        patient.driver.grace_s = 300.0;
        assert_eq!(cell_key(&patient, 100), key, "the grace is not a measured setting");
    }
}
