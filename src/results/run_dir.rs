//! The run directory itself: its name, a check that it can be written
//! before any server starts, its removal when a run wrote nothing, and the
//! migration record written into it.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{write_json, write_whole, ResultsError};
use crate::record::MigrationRecord;

/// `results/<UTC timestamp>-<name>`.
pub fn new_run_dir(results_root: &Path, name: &str) -> PathBuf {
    let stamp = humantime::format_rfc3339_seconds(SystemTime::now())
        .to_string()
        .replace([':', '-'], "")
        .trim_end_matches('Z')
        .to_string();
    results_root.join(format!("{stamp}-{name}"))
}

/// Creates a run directory and checks a file can be written in it, so an
/// unwritable or full results directory is an error before any server
/// starts, not after the first cell.
pub fn prepare_run_dir(dir: &Path) -> Result<(), ResultsError> {
    std::fs::create_dir_all(dir).map_err(ResultsError::writing(dir))?;
    let probe = dir.join(".contend-write-probe");
    write_whole(&probe, b"contend")?;
    std::fs::remove_file(&probe).map_err(ResultsError::writing(&probe))
}

/// Removes `dir` when nothing was written in it (a run that failed before
/// its first result).
pub fn remove_if_empty(dir: &Path) {
    let _ = std::fs::remove_dir(dir);
}

/// Writes `record` to `dir/<file>` (migration.json, or
/// `migration-<name>.json` when a run holds several) whole.
pub fn write_migration(dir: &Path, file: &str, record: &MigrationRecord) -> Result<PathBuf, ResultsError> {
    let path = dir.join(file);
    std::fs::create_dir_all(dir).map_err(ResultsError::writing(&path))?;
    write_json(&path, record)?;
    Ok(path)
}

/// Every migration record of `dir`: migration.json, or `migration-<name>.json`
/// when a run holds several, in file-name order.
pub fn read_migrations(dir: &Path) -> Result<Vec<MigrationRecord>, ResultsError> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(ResultsError::reading(dir))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("migration") && n.ends_with(".json"))
        })
        .collect();
    paths.sort();
    let mut migrations = Vec::with_capacity(paths.len());
    for path in &paths {
        let bytes = std::fs::read(path).map_err(ResultsError::reading(path))?;
        migrations.push(serde_json::from_slice(&bytes).map_err(|e| ResultsError::Format {
            path: path.clone(),
            reason: e.to_string(),
        })?);
    }
    Ok(migrations)
}
