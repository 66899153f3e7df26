//! One benchmark cell from start to record: template, fresh copy, pools,
//! driver, metrics, and the [`CellRecord`] it makes.
//!
//! Owns the order of those steps and the cell record's shape; it measures
//! nothing itself (the driver does), writes no file (results does) and
//! formats nothing (render does).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::template::{copy_for_cell, drop_database, ensure_template, grant_cell_to, TemplateError};
use crate::client::{cache_connections, redis_client, AppPool, RedisError};
use crate::driver::{drive, LiveCounts, Load};
use crate::measure::{CellMetrics, LatencySummary, SamplerSettings, ServerSampler, ServerSamples};
use crate::provision::{database_url, Servers};
use crate::record::{BusinessSummary, CellRecord, CellSettings, ScheduleReport, Scorecard, ServerLoss, CELL_SCHEMA};
use crate::results::{remove_if_empty, ResultsError};
use crate::workload::{with_workload, CellContext, InvariantCheck, Migration, Workload, WorkloadError, WorkloadUser};

/// Setup failures of a cell (what the cell measured is never an error).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Building the workload.
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    /// Loading or copying data.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// Building pools or reading the cell's data.
    #[error("{0}")]
    Setup(String),
    /// Redis could not be reached.
    #[error(transparent)]
    Redis(#[from] RedisError),
    /// The PostgreSQL server went away during the cell: its connections
    /// closed under it. Nothing of the cell is a measurement.
    #[error("PostgreSQL went away {:.1} s into the cell: {}", .0.after_s, .0.reason)]
    ServerLost(Box<ServerLoss>),
    /// Reading or writing the run directory (what was written before is
    /// intact).
    #[error(transparent)]
    Results(#[from] ResultsError),
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
    let migration = Migration::parse(source, text).map_err(|e| RunError::Setup(e.to_string()))?;
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
        .await?;
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
