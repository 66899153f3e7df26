//! A run directory on disk: `results/<run>/` and the files in it.
//!
//! Owns how records reach the disk and come back: every file written whole
//! (a temporary file beside it, synced, renamed over it, the directory
//! synced), `cells.jsonl` and `failed.jsonl` appended a line at a time and
//! read back with a torn last line tolerated, a sweep's plan.json, the run
//! directory's exclusive name and lock, and run.json. Every error
//! names the file. It never runs a cell and never computes or formats a
//! figure.

mod jsonl;
mod plan;
mod run_dir;
mod run_file;

use std::path::{Path, PathBuf};

pub use self::jsonl::{
    append_cell, append_failed, finished_cells, read_cells, read_cells_checked, read_failed, repair_cells, Finished,
    TornLine,
};
pub use self::plan::{changed_inputs, input_files, read_plan, write_plan, PLAN_FILE};
pub use self::run_dir::{read_migrations, remove_if_empty, write_migration, RunDir, LOCK_FILE};
pub use self::run_file::{Machine, RunFile, RUN_SCHEMA};

/// Why a results file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    /// Nothing to report on.
    #[error("{0} holds no run.json, cells.jsonl or migration.json: give a results/<run> directory")]
    Empty(PathBuf),
    /// A file could not be read.
    #[error("reading {path}: {error}")]
    Read {
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
    /// Another contend holds the run directory's lock (it is writing there).
    #[error("{} is in use by contend {}: wait for it to end or stop it, or choose another directory", dir.display(), pid.map_or("(pid unknown)".to_string(), |pid| format!("pid {pid}")))]
    InUse {
        /// The run directory.
        dir: PathBuf,
        /// The holder's pid, as it wrote it in the lock file.
        pid: Option<u32>,
    },
    /// Not a directory at all.
    #[error("{0} is not a directory: give the results/<run> directory to continue")]
    NotARunDir(PathBuf),
    /// A file is not what contend writes.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl ResultsError {
    /// An error reading `path`, for `map_err`.
    pub(crate) fn reading(path: &Path) -> impl FnOnce(std::io::Error) -> ResultsError + '_ {
        move |error| ResultsError::Read {
            path: path.to_path_buf(),
            error,
        }
    }

    /// An error writing `path`, for `map_err`.
    pub(crate) fn writing(path: &Path) -> impl FnOnce(std::io::Error) -> ResultsError + '_ {
        move |error| ResultsError::Write {
            path: path.to_path_buf(),
            error,
        }
    }
}

/// Writes `bytes` to `path` whole: to a temporary file beside it, synced,
/// then renamed over it, so a reader never sees half a file.
pub fn write_whole(path: &Path, bytes: &[u8]) -> Result<(), ResultsError> {
    use std::io::Write;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A name of this write's own: two processes (or threads) writing the
    // same file never share, truncate or rename each other's temporary.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let write = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let temporary = path.with_file_name(format!(".{name}.{}.{write}.tmp", std::process::id()));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(source) = written {
        // A full disk leaves no half file behind, and the old file as it was.
        let _ = std::fs::remove_file(&temporary);
        return Err(ResultsError::Write {
            path: path.to_path_buf(),
            error: source,
        });
    }
    std::fs::rename(&temporary, path).map_err(|error| ResultsError::Write {
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

/// Writes `value` as pretty JSON to `path` whole.
pub(crate) fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), ResultsError> {
    let json = serde_json::to_vec_pretty(value).map_err(|e| ResultsError::Format {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    write_whole(path, &json)
}

#[cfg(test)]
mod tests {
    use super::*;

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
