//! The run directory itself: created under its own name (never shared with
//! another run started in the same second), locked while a run writes in
//! it, checked writable before any server starts, removed when a run wrote
//! nothing, and the migration record written into it.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nix::fcntl::{Flock, FlockArg};

use super::{write_json, write_whole, ResultsError};
use crate::record::MigrationRecord;

/// The lock file in a run directory: held (flock) by the one contend
/// writing there, with its pid in it. The kernel releases the lock when the
/// process dies, however it dies, so a killed run leaves no stale lock.
pub const LOCK_FILE: &str = ".lock";

/// A run directory this process alone writes in, until it is dropped.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
    _lock: Flock<File>,
}

impl RunDir {
    /// Creates `results_root/<UTC timestamp>-<name>`, or `…-<name>-2`, `-3`…
    /// when a run started in the same second has that name: two runs never
    /// share a directory. Locks it and checks a file can be written in it,
    /// so an unwritable or full results directory is an error before any
    /// server starts, not after the first cell.
    pub fn create(results_root: &Path, name: &str) -> Result<RunDir, ResultsError> {
        std::fs::create_dir_all(results_root).map_err(ResultsError::writing(results_root))?;
        let stamp = humantime::format_rfc3339_seconds(SystemTime::now())
            .to_string()
            .replace([':', '-'], "")
            .trim_end_matches('Z')
            .to_string();
        let base = format!("{stamp}-{name}");
        let mut suffix = 1u32;
        let path = loop {
            let candidate = match suffix {
                1 => results_root.join(&base),
                n => results_root.join(format!("{base}-{n}")),
            };
            // create_dir, not create_dir_all: it fails when the name is
            // taken, which is what makes the name this run's own.
            match std::fs::create_dir(&candidate) {
                Ok(()) => break candidate,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => suffix += 1,
                Err(e) => return Err(ResultsError::writing(&candidate)(e)),
            }
        };
        let dir = RunDir::lock(path)?;
        dir.probe()?;
        Ok(dir)
    }

    /// Opens an existing run directory to write more in it (`--resume`),
    /// locked: refused when another contend holds it.
    pub fn open(path: &Path) -> Result<RunDir, ResultsError> {
        if !path.is_dir() {
            return Err(ResultsError::NotARunDir(path.to_path_buf()));
        }
        let dir = RunDir::lock(path.to_path_buf())?;
        dir.probe()?;
        Ok(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the directory's lock without waiting, and writes this
    /// process's pid into it for whoever is refused next.
    fn lock(path: PathBuf) -> Result<RunDir, ResultsError> {
        let lock_path = path.join(LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(ResultsError::writing(&lock_path))?;
        let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                let pid = std::fs::read_to_string(&lock_path)
                    .ok()
                    .and_then(|text| text.trim().parse().ok());
                return Err(ResultsError::InUse { dir: path, pid });
            }
            Err((_, errno)) => return Err(ResultsError::writing(&lock_path)(errno.into())),
        };
        let written = (|| {
            lock.set_len(0)?;
            let mut file: &File = &lock;
            file.write_all(format!("{}\n", std::process::id()).as_bytes())?;
            file.sync_all()
        })();
        written.map_err(ResultsError::writing(&lock_path))?;
        Ok(RunDir { path, _lock: lock })
    }

    fn probe(&self) -> Result<(), ResultsError> {
        let probe = self.path.join(".contend-write-probe");
        write_whole(&probe, b"contend")?;
        std::fs::remove_file(&probe).map_err(ResultsError::writing(&probe))
    }
}

/// Removes `dir` when nothing but its lock file was written in it (a run
/// that failed before its first result).
pub fn remove_if_empty(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let names: Vec<_> = entries.flatten().map(|e| e.file_name()).collect();
    if names.iter().all(|name| name == LOCK_FILE) {
        let _ = std::fs::remove_file(dir.join(LOCK_FILE));
        let _ = std::fs::remove_dir(dir);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_runs_of_one_name_get_two_directories() {
        let root = tempfile::tempdir().unwrap();
        let first = RunDir::create(root.path(), "sleep").unwrap();
        let second = RunDir::create(root.path(), "sleep").unwrap();
        assert_ne!(first.path(), second.path());
        let names: Vec<String> = [&first, &second]
            .iter()
            .map(|d| d.path().file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        // Within one second the second name is the first's with a suffix.
        if names[1].starts_with(&names[0]) {
            assert_eq!(names[1], format!("{}-2", names[0]));
        }
    }

    #[test]
    fn a_locked_directory_is_refused_naming_the_holder() {
        let root = tempfile::tempdir().unwrap();
        let held = RunDir::create(root.path(), "sweep-sleep").unwrap();
        // flock locks belong to an open file: a second open, even in this
        // process, is refused as another process would be.
        let err = RunDir::open(held.path()).unwrap_err();
        let expected = format!("is in use by contend pid {}", std::process::id());
        assert!(err.to_string().contains(&expected), "{err}");
        let path = held.path().to_path_buf();
        drop(held);
        RunDir::open(&path).expect("free again once the holder is gone");
    }

    #[test]
    fn a_directory_holding_only_its_lock_is_removed() {
        let root = tempfile::tempdir().unwrap();
        let dir = RunDir::create(root.path(), "sleep").unwrap();
        remove_if_empty(dir.path());
        assert!(!dir.path().exists());
        let kept = RunDir::create(root.path(), "sleep").unwrap();
        std::fs::write(kept.path().join("cells.jsonl"), "").unwrap();
        remove_if_empty(kept.path());
        assert!(kept.path().join("cells.jsonl").exists());
    }
}
