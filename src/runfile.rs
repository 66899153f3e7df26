//! results/<run>/run.json: everything one run measured, in one versioned
//! file — the machine, the server, every cell (histograms included, in
//! HdrHistogram's mergeable V2 encoding), the recommendation, and any
//! migration with its plans. Reports are rendered from it alone.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::migrate::MigrationRecord;
use crate::provision::PgServer;
use crate::recommend::{recommend_each, RecommendOptions, Recommendation};
use crate::run::CellRecord;

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

impl Machine {
    /// This machine, as far as /proc and /etc/os-release tell.
    pub fn this() -> Machine {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let memory_kb: u64 = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        let os = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default();
        Machine {
            hostname: read("/proc/sys/kernel/hostname").trim().to_string(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            memory_bytes: memory_kb * 1024,
            os,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        }
    }
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
    pub failed_cells: Vec<crate::failure::FailedCell>,
    /// Migrations run under load, with their plans.
    pub migrations: Vec<MigrationRecord>,
}

/// Why a run file could not be built, read or written.
#[derive(Debug, thiserror::Error)]
pub enum RunFileError {
    /// Nothing to report on.
    #[error("{0} holds no run.json, cells.jsonl or migration.json: give a results/<run> directory")]
    Empty(PathBuf),
    /// A file could not be read.
    #[error("reading {path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A file could not be written (the old one, if any, is intact).
    #[error("writing {path}: {error}; free space there or choose another directory with --results")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A file is not what contend writes.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl RunFileError {
    /// The OS error behind it (a format problem as an "other" error), for
    /// callers that report files their own way.
    pub fn into_io(self) -> std::io::Error {
        match self {
            RunFileError::Io { error, .. } | RunFileError::Write { error, .. } => error,
            other => std::io::Error::other(other.to_string()),
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RunFileError + '_ {
    move |error| RunFileError::Io {
        path: path.to_path_buf(),
        error,
    }
}

impl RunFile {
    /// Builds the run file from what a run directory holds: cells.jsonl
    /// (recommended with `options`) and migration.json.
    pub fn assemble(dir: &Path, options: &RecommendOptions) -> Result<RunFile, RunFileError> {
        if !dir.is_dir() {
            return Err(RunFileError::Empty(dir.to_path_buf()));
        }
        let cells_path = dir.join("cells.jsonl");
        let cells = if cells_path.exists() {
            crate::sweep::read_cells(dir).map_err(|e| RunFileError::Format {
                path: cells_path.clone(),
                reason: e.to_string(),
            })?
        } else {
            Vec::new()
        };
        // migration.json, or migration-<name>.json when a run holds several.
        let mut migration_paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("migration") && n.ends_with(".json"))
            })
            .collect();
        migration_paths.sort();
        let mut migrations = Vec::new();
        for path in &migration_paths {
            let bytes = std::fs::read(path).map_err(io(path))?;
            migrations.push(serde_json::from_slice(&bytes).map_err(|e| RunFileError::Format {
                path: path.clone(),
                reason: e.to_string(),
            })?);
        }
        let failed_cells = crate::failure::read_failed(dir);
        if cells.is_empty() && migrations.is_empty() && failed_cells.is_empty() {
            return Err(RunFileError::Empty(dir.to_path_buf()));
        }
        let postgres = cells
            .first()
            .map(|c| c.postgres.clone())
            .or_else(|| migrations.first().map(|m: &MigrationRecord| m.postgres.clone()));
        Ok(RunFile {
            schema: RUN_SCHEMA.into(),
            contend_version: env!("CARGO_PKG_VERSION").into(),
            written_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            machine: Machine::this(),
            postgres,
            recommendations: recommend_each(&cells, options),
            cells,
            failed_cells,
            migrations,
        })
    }

    /// Reads `dir/run.json`.
    pub fn read(dir: &Path) -> Result<RunFile, RunFileError> {
        let path = dir.join("run.json");
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        let run: RunFile = serde_json::from_slice(&bytes).map_err(|e| RunFileError::Format {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if run.schema != RUN_SCHEMA {
            return Err(RunFileError::Format {
                path,
                reason: format!("schema {:?}; this contend reads {RUN_SCHEMA:?}", run.schema),
            });
        }
        Ok(run)
    }

    /// Writes `dir/run.json` whole: a temporary file, then a rename.
    pub fn write(&self, dir: &Path) -> Result<PathBuf, RunFileError> {
        let path = dir.join("run.json");
        let json = serde_json::to_vec_pretty(self).map_err(|e| RunFileError::Format {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_whole(&path, &json)?;
        Ok(path)
    }
}

/// Writes `bytes` to `path` whole: to a temporary file beside it, synced,
/// then renamed over it, so a reader never sees half a file.
pub fn write_whole(path: &Path, bytes: &[u8]) -> Result<(), RunFileError> {
    use std::io::Write;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = path.with_file_name(format!(".{name}.tmp"));
    let written = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(source) = written {
        // A full disk leaves no half file behind, and the old file as it was.
        let _ = std::fs::remove_file(&temporary);
        return Err(RunFileError::Write {
            path: path.to_path_buf(),
            error: source,
        });
    }
    std::fs::rename(&temporary, path).map_err(|error| RunFileError::Write {
        path: path.to_path_buf(),
        error,
    })?;
    // The rename itself is durable once the directory is synced.
    if let Some(parent) = path.parent() {
        if let Ok(dir) = std::fs::File::open(parent) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_is_described() {
        let machine = Machine::this();
        assert!(machine.cores >= 1);
        assert!(machine.memory_bytes > 0);
        assert!(!machine.kernel.is_empty());
    }

    #[test]
    fn an_empty_directory_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let err = RunFile::assemble(dir.path(), &RecommendOptions::default()).unwrap_err();
        assert!(err.to_string().contains("give a results/<run> directory"), "{err}");
        assert!(RunFile::read(dir.path()).is_err());
    }

    #[test]
    fn write_whole_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        write_whole(&path, b"{}").unwrap();
        write_whole(&path, b"{\"a\":1}").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"a\":1}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
