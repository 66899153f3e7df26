//! A migration run under load: EXPLAIN ANALYZE of the workload's read
//! queries, the workload started, the migration's statements run on their
//! own connection while `pg_stat_progress_create_index` and lock waits are
//! sampled, every new index checked valid (an invalid one reported and
//! dropped), VACUUM (ANALYZE) of the tables that got one, and EXPLAIN again.
//!
//! The cell (copy, checker and watchdog, pools, sampler) is the same
//! [`CellHarness`] `contend run` uses: a server that goes away under the
//! migration stops the load and ends the run as [`RunError::ServerLost`].
//! Measures only; render formats [`MigrationRecord`] and results writes it.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio_postgres::{Client, SimpleQueryMessage};

use super::cell::{connect_spawned, CellClock, CellHarness};
use super::error::RunError;
use super::run::pool_connections;
use crate::driver::LiveCounts;
use crate::measure::{explain_analyze, CellMetrics, ExplainError, ExplainedQuery, PlanDiff, ServerSamples, SloContext};
use crate::provision::Servers;
use crate::record::{
    BuildProgressSample, ForegroundWindows, IndexCheck, MigrateSettings, MigrationRecord, PhaseSpan, PhaseWindow,
    StatementRun, MIGRATION_SCHEMA,
};
use crate::record::{BusinessSummary, Scorecard};
use crate::workload::{
    with_workload, InvariantCheck, Migration, MigrationError, StatementKind, Workload, WorkloadUser,
};

/// Time between two samples of the index build's progress.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// `application_name` of contend's own migration-side connections.
const APPLICATION: &str = "contend-migrate";

/// Why a migration run could not be carried out (a failed migration is not
/// an error: it is recorded and reported).
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// Servers, data, Redis, pools, a query of contend's own, or the server
    /// lost under the load.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The migration cannot run as written.
    #[error(transparent)]
    Migration(#[from] MigrationError),
    /// EXPLAIN failed.
    #[error(transparent)]
    Explain(#[from] ExplainError),
    /// The workload has no migration and none was given.
    #[error("workload {0} ships no migration: pass --migration FILE")]
    NoMigration(String),
    /// The task driving the load ended without an answer (it panicked).
    #[error("the load generator failed: {0}")]
    Load(tokio::task::JoinError),
}

fn db(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> MigrateError {
    move |error| RunError::Database { what, error }.into()
}

/// What running under load produced.
struct Measured {
    explain_before: Vec<ExplainedQuery>,
    explain_after: Vec<ExplainedQuery>,
    plan_diffs: Vec<PlanDiff>,
    statements: Vec<StatementRun>,
    build_progress: Vec<BuildProgressSample>,
    phases: Vec<PhaseSpan>,
    indexes: Vec<IndexCheck>,
    vacuumed: Vec<String>,
    foreground: ForegroundWindows,
    metrics: CellMetrics,
    server: ServerSamples,
    invariants: Vec<InvariantCheck>,
}

/// What the migration's steps did while the load ran.
struct Steps {
    statements: Vec<StatementRun>,
    build_progress: Vec<BuildProgressSample>,
    indexes: Vec<IndexCheck>,
    /// Tables vacuumed after a valid new index.
    tables: BTreeSet<String>,
    migration_started: Instant,
    migration_finished: Instant,
    vacuum_started: Instant,
    vacuum_finished: Instant,
}

/// Runs `settings` against `servers`.
pub async fn run_migrate(
    settings: &MigrateSettings,
    servers: &Servers,
    live: Arc<LiveCounts>,
) -> Result<MigrationRecord, MigrateError> {
    let user = MigrateRun {
        settings,
        servers,
        live,
    };
    super::run::caught(with_workload(&settings.cell.workload, &settings.cell.overrides, user))
        .await?
        .map_err(RunError::from)?
}

struct MigrateRun<'a> {
    settings: &'a MigrateSettings,
    servers: &'a Servers,
    live: Arc<LiveCounts>,
}

impl WorkloadUser for MigrateRun<'_> {
    type Output = Result<MigrationRecord, MigrateError>;

    async fn run<W: Workload>(self, workload: W) -> Self::Output {
        let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        let migration = match (&self.settings.migration, workload.migration()) {
            (Some(migration), _) => migration.clone(),
            (None, Some((source, text))) => Migration::parse(source, text)?,
            (None, None) => return Err(MigrateError::NoMigration(self.settings.cell.workload.clone())),
        };
        // Checked before anything runs: a typo must not cost a data load.
        let (admin, admin_connection) = connect_spawned(
            &self.servers.postgres.url,
            APPLICATION,
            "connecting to check the migration",
        )
        .await?;
        migration.check_syntax(&admin).await?;
        drop(admin);
        let _ = admin_connection.await;

        let database = format!("contend_migrate_{}", std::process::id());
        let data_plan = workload.data_plan();
        let (slo_spec, goodput_outcomes) = (workload.slo(), workload.goodput_outcomes());
        let clock = CellClock::new(self.settings.cell.driver.grace_s);
        let (template, m) = clock
            .bound(&self.live, async {
                let mut harness = CellHarness::open(
                    self.servers,
                    &data_plan,
                    database,
                    Arc::clone(&self.live),
                    Arc::clone(&clock),
                )
                .await?;
                let outcome = self.under_load(&mut harness, workload, &migration).await;
                let template = harness.template.clone();
                Ok::<_, MigrateError>((template, harness.finish(outcome).await?))
            })
            .await?;
        let succeeded = m.statements.iter().all(|s| s.error.is_none()) && m.indexes.iter().all(|i| i.valid);
        let goodput_per_s = BusinessSummary::of(&m.metrics, goodput_outcomes).goodput_per_s;
        let slo = Scorecard {
            results: slo_spec.evaluate(
                &m.metrics,
                &SloContext {
                    goodput_per_s,
                    pool_connections: pool_connections(&self.settings.cell),
                },
            ),
            spec: slo_spec,
        };
        Ok(MigrationRecord {
            schema: MIGRATION_SCHEMA.into(),
            contend_version: env!("CARGO_PKG_VERSION").into(),
            started_at,
            settings: self.settings.clone(),
            migration,
            backend: self.servers.backend,
            postgres: self.servers.postgres.clone(),
            template,
            explain_before: m.explain_before,
            explain_after: m.explain_after,
            plan_diffs: m.plan_diffs,
            statements: m.statements,
            build_progress: m.build_progress,
            phases: m.phases,
            indexes: m.indexes,
            vacuumed: m.vacuumed,
            foreground: m.foreground,
            metrics: m.metrics,
            server: m.server,
            invariants: m.invariants,
            succeeded,
            slo,
        })
    }
}

impl MigrateRun<'_> {
    async fn under_load<W: Workload>(
        &self,
        harness: &mut CellHarness,
        mut workload: W,
        migration: &Migration,
    ) -> Result<Measured, MigrateError> {
        let cell = &self.settings.cell;
        harness.prepare(&mut workload).await?;

        // 1. Plans before, with the load off (and the sampler not started,
        // so they are not in its deltas).
        let queries = workload.explain_queries();
        let mut explain_before = Vec::with_capacity(queries.len());
        for query in &queries {
            explain_before.push(explain_analyze(harness.checker(), query).await?);
        }
        let indexes_before = index_oids(harness.checker()).await?;

        // 2. The load, for before + the migration + after (stopped when done).
        harness.start_load(cell).await?;
        let window = Duration::from_secs_f64(cell.driver.duration_s);
        let mut driver_settings = cell.driver;
        // The load runs until stopped; this bounds it should the migration hang.
        driver_settings.duration_s =
            2.0 * cell.driver.duration_s + self.settings.max_statement_ms as f64 / 1000.0 * 2.0 + 60.0;
        let workload = Arc::new(workload);
        let measure_from = Instant::now() + Duration::from_secs_f64(cell.driver.warmup_s);
        let load = tokio::spawn(harness.drive(Arc::clone(&workload), driver_settings));
        let since = |at: Instant| at.saturating_duration_since(measure_from).as_secs_f64() * 1000.0;
        let steps = harness
            .unless_lost(self.steps(
                harness,
                migration,
                &indexes_before,
                &since,
                window,
                measure_from + window,
            ))
            .await;
        self.live.request_stop();
        // A lost server ends the load too, with what it counted until then.
        let output = load.await.map_err(MigrateError::Load)??;
        let Steps {
            statements,
            build_progress,
            indexes,
            tables,
            migration_started,
            migration_finished,
            vacuum_started,
            vacuum_finished,
        } = steps?;
        let server = harness.stop_load().await;
        let invariants = harness.check_invariants(&*workload).await;

        // 6. Plans after, load off again.
        let mut explain_after = Vec::with_capacity(queries.len());
        for query in &queries {
            explain_after.push(explain_analyze(harness.checker(), query).await?);
        }
        let plan_diffs = explain_before
            .iter()
            .zip(&explain_after)
            .map(|(before, after)| PlanDiff::between(before, after))
            .collect();

        let mut phases = vec![PhaseSpan {
            name: "before".into(),
            from_ms: 0.0,
            to_ms: since(migration_started),
        }];
        phases.extend(build_phases(
            &build_progress,
            since(migration_started),
            since(migration_finished),
        ));
        if !tables.is_empty() {
            phases.push(PhaseSpan {
                name: "vacuum".into(),
                from_ms: since(vacuum_started),
                to_ms: since(vacuum_finished),
            });
        }
        phases.push(PhaseSpan {
            name: "after".into(),
            from_ms: since(vacuum_finished),
            to_ms: output.measured_s * 1000.0,
        });
        let recorder = &output.recorder;
        let foreground = ForegroundWindows {
            before: recorder.window(whole_seconds(0.0, since(migration_started))),
            during: recorder.window(whole_seconds(since(migration_started), since(migration_finished))),
            after: recorder.window(whole_seconds(since(vacuum_finished), output.measured_s * 1000.0)),
            by_phase: phases
                .iter()
                .map(|p| (p, whole_seconds(p.from_ms, p.to_ms)))
                .filter(|(_, seconds)| !seconds.is_empty())
                .map(|(p, seconds)| PhaseWindow {
                    phase: p.name.clone(),
                    window: recorder.window(seconds),
                })
                .collect(),
        };
        let metrics = output.recorder.summarize(output.measured_s);
        Ok(Measured {
            explain_before,
            explain_after,
            plan_diffs,
            statements,
            build_progress,
            phases,
            indexes,
            vacuumed: tables.into_iter().collect(),
            foreground,
            metrics,
            server,
            invariants,
        })
    }

    /// Steps 3 to 5, while the load runs: after the window before (until
    /// `migrate_at`), the migration, its new indexes checked, VACUUM where
    /// one is valid, and the `window` after.
    async fn steps(
        &self,
        harness: &CellHarness,
        migration: &Migration,
        indexes_before: &BTreeSet<u32>,
        since: &impl Fn(Instant) -> f64,
        window: Duration,
        migrate_at: Instant,
    ) -> Result<Steps, MigrateError> {
        let control = harness.checker();
        tokio::time::sleep_until(migrate_at.into()).await;

        // 3. The migration on its own session, progress sampled meanwhile.
        let migration_started = Instant::now();
        let (statements, build_progress) = self
            .run_statements(migration, harness.cell_url(), control, since)
            .await?;
        let migration_finished = Instant::now();
        let failed = statements.iter().rev().find(|s| s.error.is_some());

        // 4. New indexes valid? An invalid one is reported and dropped.
        let (cleanup, _cleanup_task) =
            connect_spawned(harness.cell_url(), APPLICATION, "connecting to check the new indexes").await?;
        let mut indexes = new_indexes(control, indexes_before).await?;
        for index in indexes.iter_mut().filter(|i| !i.valid) {
            index.reason = Some(match failed {
                Some(run) => format!(
                    "line {}: {} ({})",
                    run.statement.line,
                    run.error.as_deref().unwrap_or_default(),
                    run.error_code.as_deref().unwrap_or_default()
                ),
                None => "the build did not complete".into(),
            });
            if !self.settings.keep_invalid {
                cleanup
                    // regclass text: already quoted where the name needs it.
                    .batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {}", index.name))
                    .await
                    .map_err(db("dropping the invalid index"))?;
                index.dropped = true;
            }
        }
        // 5. VACUUM (ANALYZE) where a new index is valid: an index-only scan
        // needs the visibility map, and the planner fresh statistics.
        let vacuum_started = Instant::now();
        let tables: BTreeSet<String> = indexes.iter().filter(|i| i.valid).map(|i| i.table.clone()).collect();
        for table in &tables {
            cleanup
                .batch_execute(&format!("VACUUM (ANALYZE) {table}"))
                .await
                .map_err(db("VACUUM (ANALYZE) after the build"))?;
        }
        let vacuum_finished = Instant::now();
        tokio::time::sleep(window).await;
        Ok(Steps {
            statements,
            build_progress,
            indexes,
            tables,
            migration_started,
            migration_finished,
            vacuum_started,
            vacuum_finished,
        })
    }

    /// Runs the statements in order on a session of their own, stopping at
    /// the first failure, while `control` samples the build's progress.
    async fn run_statements(
        &self,
        migration: &Migration,
        cell_url: &str,
        control: &Client,
        since: &impl Fn(Instant) -> f64,
    ) -> Result<(Vec<StatementRun>, Vec<BuildProgressSample>), MigrateError> {
        let (session, _task) =
            connect_spawned(cell_url, "contend-migration", "connecting the migration's session").await?;
        let mut setup = format!("SET statement_timeout = {}", self.settings.max_statement_ms);
        if let Some(ms) = self.settings.lock_timeout_ms {
            setup.push_str(&format!("; SET lock_timeout = {ms}"));
        }
        session
            .batch_execute(&setup)
            .await
            .map_err(db("setting up the migration session"))?;
        let pid: i64 = first_value(&session, "SELECT pg_backend_pid()")
            .await?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let done = AtomicBool::new(false);
        let statements = async {
            let mut runs = Vec::with_capacity(migration.statements.len());
            let mut in_block = false;
            for statement in &migration.statements {
                let started = Instant::now();
                let result = session.batch_execute(&statement.sql).await;
                match statement.kind {
                    StatementKind::Begin => in_block = true,
                    StatementKind::End => in_block = false,
                    _ => {}
                }
                let failed = result.err();
                runs.push(StatementRun {
                    statement: statement.clone(),
                    started_ms: since(started),
                    finished_ms: since(Instant::now()),
                    error_code: failed.as_ref().and_then(|e| e.code()).map(|c| c.code().to_string()),
                    error: failed.as_ref().map(|e| match e.as_db_error() {
                        Some(d) => match d.detail() {
                            Some(detail) => format!("{}: {detail}", d.message()),
                            None => d.message().to_string(),
                        },
                        None => e.to_string(),
                    }),
                });
                if failed.is_some() {
                    if in_block {
                        let _ = session.batch_execute("ROLLBACK").await;
                    }
                    break;
                }
            }
            done.store(true, Ordering::Relaxed);
            runs
        };
        let progress = async {
            let mut samples = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let at = Instant::now();
                if let Some(sample) = sample_progress(control, pid).await {
                    samples.push(BuildProgressSample {
                        t_ms: since(at),
                        ..sample
                    });
                }
                tokio::time::sleep(PROGRESS_INTERVAL).await;
            }
            samples
        };
        let (runs, samples) = tokio::join!(statements, progress);
        Ok((runs, samples))
    }
}

async fn first_value(client: &Client, sql: &str) -> Result<Option<String>, MigrateError> {
    let messages = client.simple_query(sql).await.map_err(db("querying the server"))?;
    Ok(messages.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
        _ => None,
    }))
}

/// The build's progress and the lock waits now; `None` when the query
/// fails (a sample missed is no reason to stop the migration).
async fn sample_progress(control: &Client, migration_pid: i64) -> Option<BuildProgressSample> {
    let sql = format!(
        "SELECT p.phase, p.index_relid::regclass::text, p.blocks_done, p.blocks_total, p.tuples_done, \
                p.tuples_total, p.lockers_done, p.lockers_total, \
                (SELECT a.wait_event_type || ':' || a.wait_event FROM pg_stat_activity a WHERE a.pid = {pid}), \
                (SELECT count(*) FROM pg_stat_activity a WHERE a.datname = current_database() \
                   AND a.wait_event_type = 'Lock' AND a.pid <> {pid}) \
         FROM (SELECT 1) one LEFT JOIN pg_stat_progress_create_index p ON p.pid = {pid}",
        pid = migration_pid
    );
    let messages = control.simple_query(&sql).await.ok()?;
    let row = messages.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => Some(row),
        _ => None,
    })?;
    let text = |i: usize| row.get(i).map(str::to_string);
    let int = |i: usize| row.get(i).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
    Some(BuildProgressSample {
        t_ms: 0.0,
        phase: text(0),
        index: text(1),
        blocks: (int(2), int(3)),
        tuples: (int(4), int(5)),
        lockers: (int(6), int(7)),
        migration_waits_on: text(8),
        foreground_lock_waiters: int(9),
    })
}

/// The timeline seconds wholly inside `[from_ms, to_ms)`.
fn whole_seconds(from_ms: f64, to_ms: f64) -> std::ops::Range<u64> {
    let from = (from_ms / 1000.0).ceil().max(0.0) as u64;
    let to = (to_ms / 1000.0).floor().max(0.0) as u64;
    from..to.max(from)
}

/// Consecutive samples with the same build phase, as spans; the time the
/// statements ran without a build phase shows as "migration".
fn build_phases(samples: &[BuildProgressSample], from_ms: f64, to_ms: f64) -> Vec<PhaseSpan> {
    let mut spans: Vec<PhaseSpan> = Vec::new();
    for (i, sample) in samples.iter().enumerate() {
        let name = sample.phase.clone().unwrap_or_else(|| "migration".into());
        let end = samples.get(i + 1).map_or(to_ms, |next| next.t_ms);
        match spans.last_mut() {
            Some(last) if last.name == name => last.to_ms = end,
            _ => spans.push(PhaseSpan {
                name,
                from_ms: if spans.is_empty() { from_ms } else { sample.t_ms },
                to_ms: end,
            }),
        }
    }
    if spans.is_empty() {
        spans.push(PhaseSpan {
            name: "migration".into(),
            from_ms,
            to_ms,
        });
    }
    spans
}

async fn index_oids(client: &Client) -> Result<BTreeSet<u32>, MigrateError> {
    let rows = client
        .query("SELECT indexrelid FROM pg_index", &[])
        .await
        .map_err(db("listing indexes"))?;
    Ok(rows.iter().map(|r| r.get::<_, u32>(0)).collect())
}

async fn new_indexes(client: &Client, before: &BTreeSet<u32>) -> Result<Vec<IndexCheck>, MigrateError> {
    let rows = client
        .query(
            "SELECT i.indexrelid, i.indexrelid::regclass::text, i.indrelid::regclass::text, \
                    pg_get_indexdef(i.indexrelid), i.indisvalid \
             FROM pg_index i ORDER BY 2",
            &[],
        )
        .await
        .map_err(db("checking the new indexes"))?;
    Ok(rows
        .iter()
        .filter(|r| !before.contains(&r.get::<_, u32>(0)))
        .map(|r| IndexCheck {
            name: r.get(1),
            table: r.get(2),
            definition: r.get(3),
            valid: r.get(4),
            reason: None,
            dropped: false,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t_ms: f64, phase: Option<&str>) -> BuildProgressSample {
        BuildProgressSample {
            t_ms,
            phase: phase.map(str::to_string),
            index: None,
            blocks: (0, 0),
            tuples: (0, 0),
            lockers: (0, 0),
            migration_waits_on: None,
            foreground_lock_waiters: 0,
        }
    }

    #[test]
    fn windows_hold_whole_seconds_only() {
        assert_eq!(whole_seconds(0.0, 5000.0), 0..5);
        assert_eq!(whole_seconds(5000.4, 17030.0), 6..17);
        assert_eq!(whole_seconds(16_100.0, 16_900.0), 17..17);
        assert!(whole_seconds(16_100.0, 16_900.0).is_empty());
    }

    #[test]
    fn build_phases_merge_consecutive_samples() {
        let samples = [
            sample(1000.0, Some("waiting for writers before build")),
            sample(1100.0, Some("building index: scanning table")),
            sample(1200.0, Some("building index: scanning table")),
            sample(1300.0, Some("index validation: scanning table")),
            sample(1400.0, None),
        ];
        let spans = build_phases(&samples, 990.0, 1450.0);
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "waiting for writers before build",
                "building index: scanning table",
                "index validation: scanning table",
                "migration"
            ]
        );
        assert_eq!((spans[0].from_ms, spans[0].to_ms), (990.0, 1100.0));
        assert_eq!((spans[1].from_ms, spans[1].to_ms), (1100.0, 1300.0));
        assert_eq!(spans[3].to_ms, 1450.0);
        assert_eq!(build_phases(&[], 5.0, 6.0)[0].name, "migration");
    }
}
