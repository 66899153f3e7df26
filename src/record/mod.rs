//! Records: the serde schemas of what contend writes, and nothing else.
//!
//! A cell ([`CellRecord`], `contend.cell/1`), a cell the server died under
//! ([`FailedCell`], `contend.failed-cell/1`), a migration run
//! ([`MigrationRecord`], `contend.migration/1`) and the key naming a cell in
//! its sweep. No I/O: results/ reads and writes these; analysis and render
//! read them; exec fills them.

mod cell;
mod diagnosis;
mod failed;
mod migration;
mod plan;

pub use self::cell::{
    cell_key, record_key, BusinessSummary, CellRecord, CellSettings, CellTls, ClientCpu, NetworkMeasured, PoolerCell,
    ScheduleReport, Scorecard, TemplateInfo, CELL_SCHEMA,
};
pub use self::diagnosis::{Bottleneck, Diagnosis, TimeShares};
pub use self::failed::{FailedCell, FailureCause, ServerLoss, FAILED_CELL_SCHEMA};
pub use self::migration::{
    BuildProgressSample, ForegroundWindows, IndexCheck, MigrateSettings, MigrationRecord, PhaseSpan, PhaseWindow,
    StatementRun, MIGRATION_SCHEMA,
};
pub use self::plan::{sha256_hex, InputFile, PlannedCell, SweepPlanRecord, PLAN_SCHEMA};
