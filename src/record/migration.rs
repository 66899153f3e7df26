//! A migration run's record, as written to `migration.json` (schema
//! [`MIGRATION_SCHEMA`]): what was asked, the statements as they ran, the
//! index build's progress, the plans before and after, and the foreground
//! latency around it.
//!
//! Plain serde data; the runner (exec::migrate) fills it, render formats it.

use serde::{Deserialize, Serialize};

use super::{CellSettings, Scorecard, TemplateInfo};
use crate::measure::{CellMetrics, ExplainedQuery, PlanDiff, ServerSamples, WindowSummary};
use crate::provision::{Backend, PgServer};
use crate::workload::{InvariantCheck, Migration, MigrationStatement};

/// Version of the migration record's schema.
pub const MIGRATION_SCHEMA: &str = "contend.migration/1";

/// What `contend migrate` runs. The defaults
/// ([`MigrateSettings::default`]) are `contend migrate`'s.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MigrateSettings {
    /// The foreground load; its `driver.duration_s` is the length of the
    /// window measured before the migration and again after it. Default:
    /// [`CellSettings::default`].
    pub cell: CellSettings,
    /// The migration; `None`: the one the workload ships. Default `None`.
    pub migration: Option<Migration>,
    /// Keep an index a failed concurrent build left invalid, instead of
    /// dropping it. Default `false`.
    pub keep_invalid: bool,
    /// `lock_timeout` of the migration's session, milliseconds. Default
    /// `None`: the server's.
    pub lock_timeout_ms: Option<u64>,
    /// `statement_timeout` of the migration's session, milliseconds: a
    /// build running longer is cancelled (and reported). Default 600000
    /// (10 minutes).
    pub max_statement_ms: u64,
}

impl Default for MigrateSettings {
    fn default() -> Self {
        MigrateSettings {
            cell: CellSettings::default(),
            migration: None,
            keep_invalid: false,
            lock_timeout_ms: None,
            max_statement_ms: 10 * 60 * 1000,
        }
    }
}

/// One statement as it ran.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatementRun {
    /// The statement.
    pub statement: MigrationStatement,
    /// Milliseconds since measurement began when it was sent.
    pub started_ms: f64,
    /// When it finished (or failed).
    pub finished_ms: f64,
    /// SQLSTATE when it failed.
    pub error_code: Option<String>,
    /// The server's message when it failed.
    pub error: Option<String>,
}

/// One sample of a running CREATE INDEX and of the locks around it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildProgressSample {
    /// Milliseconds since measurement began.
    pub t_ms: f64,
    /// `pg_stat_progress_create_index.phase`, e.g. "building index: scanning table"; none when no build runs.
    pub phase: Option<String>,
    /// The index being built.
    pub index: Option<String>,
    /// Blocks done / total of the current phase.
    pub blocks: (i64, i64),
    /// Tuples done / total of the current phase.
    pub tuples: (i64, i64),
    /// Lockers waited for / to wait for (the waiting phases).
    pub lockers: (i64, i64),
    /// What the migration's session waits on ("Lock:virtualxid", …), if anything.
    pub migration_waits_on: Option<String>,
    /// Other sessions of the database waiting for a lock.
    pub foreground_lock_waiters: i64,
}

/// A stretch of the run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseSpan {
    /// "before", a build phase such as "building index: scanning table", "vacuum", "after".
    pub name: String,
    /// Milliseconds since measurement began.
    pub from_ms: f64,
    /// End, milliseconds since measurement began.
    pub to_ms: f64,
}

/// A new index after the migration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexCheck {
    /// Index name.
    pub name: String,
    /// Its table.
    pub table: String,
    /// `pg_get_indexdef`.
    pub definition: String,
    /// `pg_index.indisvalid`.
    pub valid: bool,
    /// Why it is invalid: the failed statement's error.
    pub reason: Option<String>,
    /// Whether contend dropped it (DROP INDEX CONCURRENTLY).
    pub dropped: bool,
}

/// Foreground latency around the migration. Each window holds the whole
/// timeline seconds inside its stretch; a second straddling a boundary
/// belongs to neither side.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForegroundWindows {
    /// Before the first statement.
    pub before: WindowSummary,
    /// While the migration's statements ran.
    pub during: WindowSummary,
    /// After the migration (and its VACUUM) finished.
    pub after: WindowSummary,
    /// Per phase of the run (before, each build phase, vacuum, after) that
    /// holds at least one whole second.
    pub by_phase: Vec<PhaseWindow>,
}

/// Foreground latency during one phase.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseWindow {
    /// The phase's name, as in [`MigrationRecord::phases`].
    pub phase: String,
    /// The whole seconds inside it.
    pub window: WindowSummary,
}

/// Everything a migration run produced, written to migration.json.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MigrationRecord {
    /// [`MIGRATION_SCHEMA`].
    pub schema: String,
    /// contend's version.
    pub contend_version: String,
    /// When it started, RFC 3339 UTC.
    pub started_at: String,
    /// What was asked.
    pub settings: MigrateSettings,
    /// The migration that ran.
    pub migration: Migration,
    /// Backend that served.
    pub backend: Backend,
    /// The PostgreSQL server.
    pub postgres: PgServer,
    /// The data's template.
    pub template: TemplateInfo,
    /// EXPLAIN (ANALYZE, BUFFERS) of the read queries before, load off.
    pub explain_before: Vec<ExplainedQuery>,
    /// The same after the migration and VACUUM, load off.
    pub explain_after: Vec<ExplainedQuery>,
    /// Per query, what changed.
    pub plan_diffs: Vec<PlanDiff>,
    /// The statements as they ran; the run stops at the first failure.
    pub statements: Vec<StatementRun>,
    /// Progress of index builds and lock waits, every 100 ms while the
    /// statements ran.
    pub build_progress: Vec<BuildProgressSample>,
    /// before, the build's phases, vacuum, after.
    pub phases: Vec<PhaseSpan>,
    /// Indexes the migration created.
    pub indexes: Vec<IndexCheck>,
    /// Tables vacuumed and analysed after their index was built.
    pub vacuumed: Vec<String>,
    /// Foreground latency before, during and after.
    pub foreground: ForegroundWindows,
    /// All client-side measurements, per-second timeline included.
    pub metrics: CellMetrics,
    /// What the server was doing (activity, waits, statements).
    pub server: ServerSamples,
    /// The workload's invariants after the run.
    pub invariants: Vec<InvariantCheck>,
    /// Every statement succeeded and every new index is valid.
    pub succeeded: bool,
    /// The workload's objectives judged over the whole foreground run
    /// (before, during and after the migration).
    #[serde(default)]
    pub slo: Scorecard,
}
