//! `results/<run>/run.json`: everything one run measured, in one versioned
//! file — the machine, the server, every cell (histograms included, in
//! HdrHistogram's mergeable V2 encoding), the recommendation, and any
//! migration with its plans. Reports are rendered from it alone.
//!
//! It lives here, above analysis, because it carries the recommendations
//! beside the records: exec assembles it (records plus analysis), this
//! module only reads and writes it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{write_json, ResultsError};
use crate::analysis::Recommendation;
use crate::provision::PgServer;
use crate::record::{CellRecord, FailedCell, MigrationRecord};

/// Version of run.json's schema; bumped on any incompatible change.
pub const RUN_SCHEMA: &str = "contend.run/1";

/// The machine the run was measured on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// Host name.
    pub hostname: String,
    /// CPU cores available to contend.
    pub cores: u32,
    /// Memory, bytes (MemTotal).
    pub memory_bytes: u64,
    /// Operating system (os-release PRETTY_NAME).
    pub os: String,
    /// Kernel release.
    pub kernel: String,
}

/// Everything one run produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunFile {
    /// [`RUN_SCHEMA`].
    pub schema: String,
    /// contend's version that wrote it.
    pub contend_version: String,
    /// When it was written, RFC 3339 UTC.
    pub written_at: String,
    /// Where it was measured.
    pub machine: Machine,
    /// The PostgreSQL server (of the first cell or migration); passwords
    /// are never recorded.
    pub postgres: Option<PgServer>,
    /// Every cell, in cells.jsonl order (cell #n is `cells[n - 1]`).
    pub cells: Vec<CellRecord>,
    /// A recommendation per workload of the cells.
    pub recommendations: Vec<Recommendation>,
    /// Cells the server died under (failed.jsonl), apart from the measured
    /// ones; a later `--resume` measures them.
    #[serde(default)]
    pub failed_cells: Vec<FailedCell>,
    /// Migrations run under load, with their plans.
    pub migrations: Vec<MigrationRecord>,
}

impl RunFile {
    /// Reads `dir/run.json`.
    pub fn read(dir: &Path) -> Result<RunFile, ResultsError> {
        let path = dir.join("run.json");
        let bytes = std::fs::read(&path).map_err(ResultsError::reading(&path))?;
        let run: RunFile = serde_json::from_slice(&bytes).map_err(|e| ResultsError::Format {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if run.schema != RUN_SCHEMA {
            return Err(ResultsError::Format {
                path,
                reason: format!("schema {:?}; this contend reads {RUN_SCHEMA:?}", run.schema),
            });
        }
        Ok(run)
    }

    /// Writes `dir/run.json` whole: a temporary file, then a rename.
    pub fn write(&self, dir: &Path) -> Result<PathBuf, ResultsError> {
        let path = dir.join("run.json");
        write_json(&path, self)?;
        Ok(path)
    }
}
