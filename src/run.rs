//! One benchmark cell from start to record: template, fresh copy, pools,
//! driver, metrics, and the line appended to `cells.jsonl`.
//!
//! Owns the order of those steps and the cell record's shape; it measures
//! nothing itself (the driver does) and formats nothing (report does).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::driver::Load;
use crate::driver::{drive, DriverSettings, LiveCounts};
use crate::failure::ServerLoss;
use crate::metrics::{CellMetrics, LatencySummary};
use crate::pool::{AppPool, PoolSettings};
use crate::provision::{Backend, PgServer, RedisServer, Servers};
use crate::sampler::{SamplerSettings, ServerSampler, ServerSamples};
use crate::template::{copy_for_cell, database_url, drop_database, ensure_template, grant_cell_to, TemplateInfo};
use crate::workload::{
    with_workload, CellContext, InvariantCheck, Workload, WorkloadError, WorkloadOverrides, WorkloadUser,
};

/// Version of the cell record's schema; bumped on any incompatible change.
pub const CELL_SCHEMA: &str = "contend.cell/1";

/// Everything that defines a cell, as run and as recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellSettings {
    /// Workload name.
    pub workload: String,
    /// Workload overrides (scale, think time).
    pub overrides: WorkloadOverrides,
    /// Pool of each application instance.
    pub pool: PoolSettings,
    /// Application instances, each with its own pool.
    pub instances: u32,
    /// Driver settings.
    pub driver: DriverSettings,
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
    fn of(metrics: &CellMetrics, outcomes: &[&'static str]) -> BusinessSummary {
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

/// Setup failures of a cell (what the cell measured is never an error).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Building the workload.
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    /// Loading or copying data.
    #[error(transparent)]
    Template(#[from] crate::template::TemplateError),
    /// Building pools or reading the cell's data.
    #[error("{0}")]
    Setup(String),
    /// Reading results.
    #[error("reading {path}: {error}")]
    ReadResults {
        /// File being read.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// The PostgreSQL server went away during the cell: its connections
    /// closed under it. Nothing of the cell is a measurement.
    #[error("PostgreSQL went away {:.1} s into the cell: {}", .0.after_s, .0.reason)]
    ServerLost(Box<crate::failure::ServerLoss>),
    /// Writing results (what was written before is intact).
    #[error("writing {path}: {error}; free space there or choose another directory with --results")]
    Results {
        /// File being written.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
}

/// Runs one cell against `servers`; `live` receives counts as it goes.
pub async fn run_cell(
    settings: &CellSettings,
    servers: &Servers,
    live: Arc<LiveCounts>,
) -> Result<CellRecord, RunError> {
    let cell = CellRun {
        settings,
        servers,
        live,
    };
    with_workload(&settings.workload, &settings.overrides, cell).await?
}

struct CellRun<'a> {
    settings: &'a CellSettings,
    servers: &'a Servers,
    live: Arc<LiveCounts>,
}

impl WorkloadUser for CellRun<'_> {
    type Output = Result<CellRecord, RunError>;

    async fn run<W: Workload>(self, workload: W) -> Self::Output {
        let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        let admin_url = &self.servers.postgres.url;
        let plan = workload.data_plan();
        let template = ensure_template(admin_url, &plan).await?;
        let cell_database = format!("contend_cell_{}", std::process::id());
        let copy = copy_for_cell(admin_url, &template, &cell_database, self.servers.postgres.version_num).await?;
        let cell_url = database_url(admin_url, &cell_database);
        if let Some(role) = &self.servers.postgres.client_role {
            grant_cell_to(&cell_url, role).await?;
        }
        let client_url = database_url(&self.servers.postgres.client_url, &cell_database);
        if self.settings.overrides.migrated {
            if let Err(e) = apply_migration(&workload, &cell_url).await {
                drop_database(admin_url, &cell_database).await?;
                return Err(e);
            }
        }
        let redis_url = self.servers.redis.as_ref().map(|redis| redis.url.as_str());
        let urls = CellUrls {
            admin: &cell_url,
            clients: &client_url,
        };
        let outcome = measure(workload, self.settings, urls, redis_url, self.live).await;
        if matches!(outcome, Err(RunError::ServerLost(_))) {
            // The server is gone, and the cell's copy with it (a restarted
            // local server still has it: the next cell's copy replaces it).
            return Err(outcome.err().expect("matched an error"));
        }
        drop_database(admin_url, &cell_database).await?;
        let Measured {
            metrics,
            schedule,
            server,
            invariants,
            business,
            slo,
            strategy,
        } = outcome?;
        Ok(CellRecord {
            schema: CELL_SCHEMA.to_string(),
            contend_version: env!("CARGO_PKG_VERSION").to_string(),
            started_at,
            settings: self.settings.clone(),
            backend: self.servers.backend,
            postgres: self.servers.postgres.clone(),
            redis: self.servers.redis.clone(),
            template,
            copy_ms: copy.as_secs_f64() * 1000.0,
            metrics,
            schedule,
            server,
            strategy,
            business,
            slo,
            invariants,
        })
    }
}

/// Runs the workload's own migration on the cell's data, then VACUUM
/// (ANALYZE), so the cell measures the migrated schema.
async fn apply_migration<W: Workload>(workload: &W, cell_url: &str) -> Result<(), RunError> {
    let Some((source, text)) = workload.migration() else {
        return Err(RunError::Setup(
            "--migrated: this workload ships no migration (goal-count and wallet-transfer do)".into(),
        ));
    };
    let migration = crate::migration::Migration::parse(source, text).map_err(|e| RunError::Setup(e.to_string()))?;
    let (client, connection) = tokio_postgres::connect(cell_url, tokio_postgres::NoTls)
        .await
        .map_err(|e| RunError::Setup(format!("connecting to apply the migration: {e}")))?;
    let connection_task = tokio::spawn(connection);
    for statement in &migration.statements {
        client
            .batch_execute(&statement.sql)
            .await
            .map_err(|e| RunError::Setup(format!("--migrated: {source} line {}: {e}", statement.line)))?;
    }
    client
        .batch_execute("VACUUM (ANALYZE)")
        .await
        .map_err(|e| RunError::Setup(format!("--migrated: VACUUM (ANALYZE): {e}")))?;
    drop(client);
    let _ = connection_task.await;
    Ok(())
}

/// A cell's SLO scorecard: the objectives declared and each judged.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Scorecard {
    /// The workload's `[slo]` table as run.
    pub spec: crate::slo::SloSpec,
    /// Each objective, PASS or FAIL, with the measured value.
    pub results: Vec<crate::slo::SloResult>,
}

impl Scorecard {
    /// Whether every objective passed (true when none is declared).
    pub fn all_pass(&self) -> bool {
        self.results.iter().all(|r| r.pass)
    }
}

/// What measuring a cell produced.
struct Measured {
    metrics: CellMetrics,
    schedule: Option<ScheduleReport>,
    server: ServerSamples,
    invariants: Vec<InvariantCheck>,
    business: BusinessSummary,
    slo: Scorecard,
    strategy: Option<String>,
}

/// The cell database's URLs: the admin's (checks, sampler) and the
/// clients' (pools).
#[derive(Clone, Copy)]
struct CellUrls<'a> {
    admin: &'a str,
    clients: &'a str,
}

async fn measure<W: Workload>(
    mut workload: W,
    settings: &CellSettings,
    urls: CellUrls<'_>,
    redis_url: Option<&str>,
    live: Arc<LiveCounts>,
) -> Result<Measured, RunError> {
    let cell_url = urls.admin;
    let database = cell_database_name(cell_url);
    let (client, connection) = tokio_postgres::connect(cell_url, tokio_postgres::NoTls)
        .await
        .map_err(|e| RunError::Setup(format!("connecting to the cell database: {e}")))?;
    // The checker's connection doubles as a watchdog: it sits idle through
    // the run, so it ends only when the server ends it (killed, crashed,
    // restarted). Then the clients are stopped at once instead of spinning
    // through connection errors for the rest of the cell.
    let watchdog = Arc::new(ServerWatchdog::default());
    let connection_task = {
        let watchdog = Arc::clone(&watchdog);
        let live = Arc::clone(&live);
        tokio::spawn(async move {
            let ended = connection.await;
            if watchdog.armed.load(Ordering::Acquire) {
                let reason = match &ended {
                    Err(e) => server_message(e),
                    Ok(()) => "the server closed the connection".to_string(),
                };
                *watchdog.lost.lock().expect("watchdog lock poisoned") = Some(reason);
                live.request_stop();
            }
            ended
        })
    };
    let mut checker_redis = match (workload.uses_redis(), redis_url) {
        (false, _) => None,
        (true, Some(url)) => cache_connections(url, 1).await?.pop(),
        (true, None) => {
            return Err(RunError::Setup(
                "this workload needs Redis (a cache or a gate): use a local or docker backend, or pass --redis-url"
                    .into(),
            ))
        }
    };
    workload
        .prepare_cell(CellContext {
            client: &client,
            database: &database,
            redis: checker_redis.as_mut(),
        })
        .await
        .map_err(RunError::Setup)?;
    let pools = (0..settings.instances)
        .map(|_| AppPool::new(urls.clients, &settings.pool))
        .collect::<Result<Vec<_>, _>>()
        .map_err(RunError::Setup)?;
    let pools = Arc::new(pools);
    // Each instance's cache connection is opened by the thread that drives it.
    let cache_client = match (workload.uses_redis(), redis_url) {
        (true, Some(url)) => Some(redis_client(url)?),
        _ => None,
    };
    let sampler = ServerSampler::start(cell_url, redis_url, SamplerSettings::new(database.clone()))
        .await
        .map_err(|e| RunError::Setup(e.to_string()))?;
    let workload = Arc::new(workload);
    watchdog.armed.store(true, Ordering::Release);
    let load_started = std::time::Instant::now();
    let output = drive(
        Arc::clone(&workload),
        Arc::clone(&pools),
        cache_client,
        settings.driver,
        live,
    )
    .await;
    watchdog.armed.store(false, Ordering::Release);
    let server = sampler.stop().await;
    for pool in pools.iter() {
        pool.close().await;
    }
    let lost = watchdog.lost.lock().expect("watchdog lock poisoned").take();
    if let Some(reason) = lost {
        let (ok, errors_by_class) = match &output {
            Ok(output) => {
                let metrics = output.recorder.summarize(output.measured_s);
                (metrics.ok, metrics.errors_by_class)
            }
            Err(_) => (0, Default::default()),
        };
        let _ = connection_task.await;
        return Err(RunError::ServerLost(Box::new(ServerLoss {
            reason,
            after_s: load_started.elapsed().as_secs_f64(),
            ok,
            errors_by_class,
        })));
    }
    let output = output.map_err(|e| RunError::Setup(e.to_string()))?;
    let invariants = workload
        .check_invariants(CellContext {
            client: &client,
            database: &database,
            redis: checker_redis.as_mut(),
        })
        .await;
    drop(client);
    let _ = connection_task.await;
    let metrics = output.recorder.summarize(output.measured_s);
    let schedule = match (settings.driver.load, &output.schedule_lag) {
        (Load::Open { rate_per_s, .. }, Some(lag)) => Some(ScheduleReport {
            target_rate_per_s: rate_per_s,
            scheduled: output.scheduled,
            achieved_rate_per_s: metrics.first_attempts as f64 / output.measured_s,
            lag: LatencySummary::of(lag),
        }),
        _ => None,
    };
    let business = BusinessSummary::of(&metrics, workload.goodput_outcomes());
    let spec = workload.slo();
    let slo = Scorecard {
        results: spec.evaluate(&metrics, business.goodput_per_s),
        spec,
    };
    Ok(Measured {
        metrics,
        schedule,
        server,
        invariants,
        business,
        slo,
        strategy: workload.strategy().map(str::to_string),
    })
}

/// Whether the server ended the checker's connection while the load ran,
/// and what it said.
#[derive(Default)]
struct ServerWatchdog {
    /// Set while the driver runs; the connection ending after is the cell's
    /// own close.
    armed: AtomicBool,
    /// The reason, once the server went away.
    lost: Mutex<Option<String>>,
}

/// The server's own words when it ended a connection (e.g. "terminating
/// connection due to unexpected postmaster exit"), else the client's.
fn server_message(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => db.message().to_string(),
        None => format!("the server ended the connection ({error})"),
    }
}

fn cell_database_name(cell_url: &str) -> String {
    url::Url::parse(cell_url)
        .ok()
        .map(|url| url.path().trim_start_matches('/').to_string())
        .unwrap_or_default()
}

/// A Redis client for `url`; opens nothing.
pub(crate) fn redis_client(url: &str) -> Result<redis::Client, RunError> {
    redis::Client::open(url).map_err(|e| RunError::Setup(format!("Redis URL: {e}")))
}

/// `instances` multiplexed Redis connections, opened on the caller's
/// runtime (the workload's own checks use one).
pub(crate) async fn cache_connections(
    url: &str,
    instances: u32,
) -> Result<Vec<redis::aio::MultiplexedConnection>, RunError> {
    let client = redis_client(url)?;
    let mut connections = Vec::with_capacity(instances as usize);
    for _ in 0..instances {
        connections.push(
            client
                .get_multiplexed_async_connection()
                .await
                .map_err(|e| RunError::Setup(format!("connecting to Redis for the cache: {e}")))?,
        );
    }
    Ok(connections)
}

/// Appends `record` as one line to `dir/cells.jsonl`, creating both, and
/// syncs it: a sweep killed later keeps every finished cell.
pub fn append_cell(dir: &std::path::Path, record: &CellRecord) -> Result<PathBuf, RunError> {
    append_json_line(dir, "cells.jsonl", record)
}

/// Appends `value` as one JSON line to `dir/file`, creating both; the file
/// is written whole.
pub(crate) fn append_json_line(dir: &std::path::Path, file: &str, value: &impl Serialize) -> Result<PathBuf, RunError> {
    let path = dir.join(file);
    let fail = |error| RunError::Results {
        path: path.clone(),
        error,
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    // The file is written whole: the cells so far and the new one into a
    // temporary file, synced, renamed over it. A full disk or a crash
    // leaves the previous cells.jsonl as it was.
    let mut content = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(fail(e)),
    };
    if !content.is_empty() && !content.ends_with(b"\n") {
        content.push(b'\n');
    }
    serde_json::to_writer(&mut content, value).map_err(|e| fail(std::io::Error::other(e)))?;
    content.push(b'\n');
    crate::runfile::write_whole(&path, &content).map_err(|e| fail(e.into_io()))?;
    Ok(path)
}

/// Creates a run directory and checks a file can be written in it, so an
/// unwritable or full results directory is an error before any server
/// starts, not after the first cell.
pub fn prepare_run_dir(dir: &std::path::Path) -> Result<(), RunError> {
    let fail = |error: std::io::Error| RunError::Results {
        path: dir.to_path_buf(),
        error,
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    let probe = dir.join(".contend-write-probe");
    crate::runfile::write_whole(&probe, b"contend").map_err(|e| fail(e.into_io()))?;
    std::fs::remove_file(&probe).map_err(fail)
}

/// Starts the servers for a run whose directory [`prepare_run_dir`] made;
/// when they cannot start, the directory goes again if nothing is in it.
pub async fn provision_for_run(
    dir: &std::path::Path,
    options: &crate::provision::ProvisionOptions,
) -> Result<Servers, crate::provision::ProvisionError> {
    crate::provision::provision(options)
        .await
        .inspect_err(|_| remove_if_empty(dir))
}

/// Removes `dir` when nothing was written in it (a run that failed before
/// its first result).
pub fn remove_if_empty(dir: &std::path::Path) {
    let _ = std::fs::remove_dir(dir);
}

/// `results/<UTC timestamp>-<workload>`.
pub fn new_run_dir(results_root: &std::path::Path, workload: &str) -> PathBuf {
    let stamp = humantime::format_rfc3339_seconds(SystemTime::now())
        .to_string()
        .replace([':', '-'], "")
        .trim_end_matches('Z')
        .to_string();
    results_root.join(format!("{stamp}-{workload}"))
}
