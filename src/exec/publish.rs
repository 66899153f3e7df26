//! A run directory made whole: its records read back, recommended on,
//! assembled into run.json with the machine they ran on, and the report
//! rendered from it.

use std::path::Path;

use crate::analysis::{recommend_each, RecommendOptions};
use crate::record::MigrationRecord;
use crate::render::{write_report, SiteError, Written};
use crate::results::{read_cells, read_failed, read_migrations, Machine, ResultsError, RunFile, RUN_SCHEMA};

/// Builds the run file from what a run directory holds: cells.jsonl
/// (recommended with `options`), failed.jsonl and migration*.json.
pub fn assemble_run_file(dir: &Path, options: &RecommendOptions) -> Result<RunFile, ResultsError> {
    if !dir.is_dir() {
        return Err(ResultsError::Empty(dir.to_path_buf()));
    }
    let cells = if dir.join("cells.jsonl").exists() {
        read_cells(dir)?
    } else {
        Vec::new()
    };
    let migrations = read_migrations(dir)?;
    let failed_cells = read_failed(dir);
    if cells.is_empty() && migrations.is_empty() && failed_cells.is_empty() {
        return Err(ResultsError::Empty(dir.to_path_buf()));
    }
    let postgres = cells
        .first()
        .map(|c| c.postgres.clone())
        .or_else(|| migrations.first().map(|m: &MigrationRecord| m.postgres.clone()));
    Ok(RunFile {
        schema: RUN_SCHEMA.into(),
        contend_version: env!("CARGO_PKG_VERSION").into(),
        written_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        // A rebuilt run.json keeps the machine that measured, not the one
        // rebuilding it.
        machine: RunFile::read(dir).map_or_else(|_| this_machine(), |old| old.machine),
        postgres,
        recommendations: recommend_each(&cells, options),
        cells,
        failed_cells,
        migrations,
    })
}

/// Assembles run.json from what `dir` holds, writes it, and renders the
/// report from it.
pub fn publish(dir: &Path, options: &RecommendOptions) -> Result<(RunFile, Written), SiteError> {
    let run = assemble_run_file(dir, options)?;
    run.write(dir)?;
    let written = write_report(dir, &run)?;
    Ok((run, written))
}

/// This machine, as far as /proc and /etc/os-release tell.
pub fn this_machine() -> Machine {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_is_described() {
        let machine = this_machine();
        assert!(machine.cores >= 1);
        assert!(machine.memory_bytes > 0);
        assert!(!machine.kernel.is_empty());
    }

    #[test]
    fn an_empty_directory_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let err = assemble_run_file(dir.path(), &RecommendOptions::default()).unwrap_err();
        assert!(err.to_string().contains("give a results/<run> directory"), "{err}");
        assert!(RunFile::read(dir.path()).is_err());
    }
}
