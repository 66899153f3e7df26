//! One benchmark cell from start to record: a [`CellHarness`] (fresh copy,
//! checker and watchdog, pools, sampler), `--migrated`'s migration, the
//! driver, metrics, and the [`CellRecord`] it makes.
//!
//! Owns the order of those steps and the cell record's shape; it measures
//! nothing itself (the driver does), writes no file (results does) and
//! formats nothing (render does).

use std::sync::Arc;
use std::time::SystemTime;

use super::cell::{connect_spawned, CellClock, CellHarness};
use super::error::RunError;
use crate::driver::{panic_message, LiveCounts, Load};
use crate::measure::{CellMetrics, LatencySummary, ServerSamples, SloContext};
use crate::provision::tls::{SslMode, TlsSettings};
use crate::provision::Servers;
use crate::record::{
    BusinessSummary, CellRecord, CellSettings, CellTls, ClientCpu, NetworkMeasured, ScheduleReport, Scorecard,
    CELL_SCHEMA,
};
use crate::results::remove_if_empty;
use crate::workload::{with_workload, InvariantCheck, Migration, Workload, WorkloadUser};

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
    caught(with_workload(&settings.workload, &settings.overrides, cell)).await??
}

/// `cell`, with a panic in its own steps (not only in its clients, which
/// the driver catches) turned into [`RunError::Panicked`]: the cell fails,
/// the process and its servers carry on.
pub(super) async fn caught<T>(cell: impl std::future::Future<Output = T>) -> Result<T, RunError> {
    use futures_util::FutureExt;
    std::panic::AssertUnwindSafe(cell)
        .catch_unwind()
        .await
        .map_err(|payload| RunError::Panicked {
            message: panic_message(&*payload),
        })
}

struct CellRun<'a> {
    settings: &'a CellSettings,
    servers: &'a Servers,
    live: Arc<LiveCounts>,
}

impl WorkloadUser for CellRun<'_> {
    type Output = Result<CellRecord, RunError>;

    async fn run<W: Workload>(self, workload: W) -> Self::Output {
        let clock = CellClock::new(self.settings.driver.grace_s);
        let live = Arc::clone(&self.live);
        // Boxed: a cell's future is large in a debug build, and the callers'
        // futures hold it on a 2 MiB test thread's stack.
        clock
            .bound(&live, Box::pin(self.run_cell(workload, Arc::clone(&clock))))
            .await
    }
}

/// The `sslmode` the clients of `url` use (libpq's default when the URL
/// cannot be read, which the pools would have refused already).
fn client_sslmode(url: &str) -> SslMode {
    TlsSettings::from_url(url).map_or(SslMode::Prefer, |(_, settings)| settings.mode)
}

impl CellRun<'_> {
    async fn run_cell<W: Workload>(self, workload: W, clock: Arc<CellClock>) -> Result<CellRecord, RunError> {
        let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        let database = format!("contend_cell_{}", std::process::id());
        let mut harness = CellHarness::open(self.servers, &workload.data_plan(), database, self.live, clock).await?;
        let outcome = measure(&mut harness, workload, self.settings).await;
        let (template, copy) = (harness.template.clone(), harness.copy);
        let proxy_report = harness.proxy_report.take();
        let pooler = harness.take_pooler();
        let Measured {
            metrics,
            schedule,
            server,
            invariants,
            business,
            slo,
            strategy,
            client_cpu,
            mut network,
        } = harness.finish(outcome).await?;
        network.proxy = proxy_report;
        let mut record = CellRecord {
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
            tls: CellTls::of(client_sslmode(&self.servers.postgres.client_url), &server.tls_sessions),
            server,
            strategy,
            business,
            slo,
            invariants,
            network: Some(network),
            client_cpu,
            diagnosis: None,
            pooler,
        };
        record.diagnosis = Some(crate::analysis::diagnose(&record));
        Ok(record)
    }
}

/// Runs the workload's own migration on the cell's data, then VACUUM
/// (ANALYZE), so the cell measures the migrated schema.
async fn apply_migration<W: Workload>(workload: &W, cell_url: &str) -> Result<(), RunError> {
    let Some((file, text)) = workload.migration() else {
        return Err(RunError::NoMigration);
    };
    let migration = Migration::parse(file, text)?;
    let (client, connection_task) =
        connect_spawned(cell_url, "contend-migrate", "connecting to apply the migration").await?;
    for statement in &migration.statements {
        client
            .batch_execute(&statement.sql)
            .await
            .map_err(|error| RunError::MigratedStatement {
                file,
                line: statement.line,
                error,
            })?;
    }
    client
        .batch_execute("VACUUM (ANALYZE)")
        .await
        .map_err(|error| RunError::Database {
            what: "--migrated: VACUUM (ANALYZE)",
            error,
        })?;
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
    client_cpu: Option<ClientCpu>,
    network: NetworkMeasured,
}

async fn measure<W: Workload>(
    harness: &mut CellHarness,
    mut workload: W,
    settings: &CellSettings,
) -> Result<Measured, RunError> {
    if settings.overrides.migrated {
        apply_migration(&workload, harness.cell_url()).await?;
    }
    harness.prepare(&mut workload).await?;
    harness.start_load(settings).await?;
    let network = harness.measure_network(settings).await?;
    let workload = Arc::new(workload);
    let cpu_before = process_cpu_s();
    let wall_before = std::time::Instant::now();
    let output = harness.drive(Arc::clone(&workload), settings.driver).await;
    let client_cpu = cpu_before.zip(process_cpu_s()).map(|(before, after)| ClientCpu {
        cpu_s: after - before,
        wall_s: wall_before.elapsed().as_secs_f64(),
    });
    let server = harness.stop_load().await;
    let output = output?;
    let invariants = harness.check_invariants(&*workload).await;
    let mut metrics = output.recorder.summarize(output.measured_s);
    metrics.window_started_unix_ms = unix_ms(output.recorder.measure_from());
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
        results: spec.evaluate(
            &metrics,
            &SloContext {
                goodput_per_s: business.goodput_per_s,
                pool_connections: pool_connections(settings),
            },
        ),
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
        client_cpu,
        network,
    })
}

/// Connections the cell's pools could hold (`None` with `--pool none`).
pub(super) fn pool_connections(settings: &CellSettings) -> Option<u32> {
    match settings.pool.kind {
        crate::client::PoolKind::None => None,
        _ => Some(settings.instances * settings.pool.size),
    }
}

/// contend's CPU time so far (user + system, every thread), seconds.
fn process_cpu_s() -> Option<f64> {
    use nix::sys::resource::{getrusage, UsageWho};
    let usage = getrusage(UsageWho::RUSAGE_SELF).ok()?;
    let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Some(seconds(usage.user_time()) + seconds(usage.system_time()))
}

/// `instant` on the wall clock, Unix milliseconds (`None` before 1970 or
/// beyond what the clocks can say).
fn unix_ms(instant: std::time::Instant) -> Option<u64> {
    let ago = std::time::Instant::now().saturating_duration_since(instant);
    let at = SystemTime::now().checked_sub(ago)?;
    let since_epoch = at.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    u64::try_from(since_epoch.as_millis()).ok()
}

/// Starts the servers for a run whose directory [`crate::results::RunDir`] made;
/// when they cannot start, the directory goes again if nothing is in it.
pub async fn provision_for_run(
    dir: &std::path::Path,
    options: &crate::provision::ProvisionOptions,
) -> Result<Servers, crate::provision::ProvisionError> {
    crate::provision::provision(options)
        .await
        .inspect_err(|_| remove_if_empty(dir))
}
