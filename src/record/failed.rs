//! Cells the PostgreSQL server died under: what was lost, why, and how the
//! server came back, kept in `failed.jsonl` beside `cells.jsonl`.
//!
//! A failed cell is not a finished one: `--resume` runs it again, and
//! reports list it apart from the measured cells (its few seconds of
//! connection errors say nothing about pool sizing). Plain serde data:
//! results/ writes and reads the file.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::{cell_key, CellSettings};
use crate::provision::Recovery;

/// Version of the failed-cell record's schema.
pub const FAILED_CELL_SCHEMA: &str = "contend.failed-cell/1";

/// What a cell had done when its server went away.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServerLoss {
    /// Why the cell stopped, as the server's connection said it (e.g.
    /// "terminating connection due to unexpected postmaster exit").
    pub reason: String,
    /// Seconds from the start of the load until the loss was noticed.
    pub after_s: f64,
    /// Attempts that succeeded before.
    pub ok: u64,
    /// Failed attempts by class (connection_lost, connection_failed, …).
    pub errors_by_class: BTreeMap<String, u64>,
}

/// Why a cell failed. Records written before the field existed were all
/// [`FailureCause::ServerLost`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureCause {
    /// The server went away: its connections closed under the cell.
    #[default]
    ServerLost,
    /// The server stopped answering: the cell passed its deadline
    /// (warmup + duration + grace, while nothing finished).
    Unresponsive,
    /// A task of contend panicked (a bug): the server may be fine.
    Panic,
}

/// One cell the server died under, as written to `failed.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailedCell {
    /// [`FAILED_CELL_SCHEMA`].
    pub schema: String,
    /// contend's version.
    pub contend_version: String,
    /// When the cell started, RFC 3339 UTC.
    pub started_at: String,
    /// The cell's identity in its sweep ([`cell_key`]).
    pub key: String,
    /// What was being run.
    pub settings: CellSettings,
    /// max_connections the server had.
    pub max_connections: u32,
    /// What the cell had done and why it stopped.
    pub loss: ServerLoss,
    /// How the server was brought back, when it was.
    pub recovery: Option<String>,
    /// Seconds the recovery took, until the server answered.
    pub recovered_in_s: Option<f64>,
    /// Why the cell failed; `loss.reason` says it in words.
    #[serde(default)]
    pub cause: FailureCause,
}

impl FailedCell {
    /// The record of `settings` run at `max_connections` from `started_at`
    /// (RFC 3339), lost as `loss` says, and brought back as `recovery` says
    /// (`None`: not brought back).
    pub fn new(
        settings: &CellSettings,
        max_connections: u32,
        started_at: String,
        loss: ServerLoss,
        recovery: Option<&Recovery>,
    ) -> FailedCell {
        FailedCell {
            schema: FAILED_CELL_SCHEMA.to_string(),
            contend_version: env!("CARGO_PKG_VERSION").to_string(),
            started_at,
            key: cell_key(settings, max_connections),
            settings: settings.clone(),
            max_connections,
            loss,
            recovery: recovery.map(|r| r.how.clone()),
            recovered_in_s: recovery.map(|r| r.took.as_secs_f64()),
            cause: FailureCause::ServerLost,
        }
    }

    /// The same record failed for `cause`.
    pub fn because(self, cause: FailureCause) -> FailedCell {
        FailedCell { cause, ..self }
    }
}
