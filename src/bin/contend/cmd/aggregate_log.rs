//! Writing pgbench's aggregate log of a cell where `--log-prefix` (or the
//! run directory) says, named as pgbench names it.

use std::path::{Path, PathBuf};

use crate::cli::AggregateLog;
use contend::measure::CellMetrics;

/// Writes the log of `metrics` as `PREFIX.<pid>` (`.<cell>` after it in a
/// sweep, numbered from 1); returns its path.
pub fn write(
    log: &AggregateLog,
    run_dir: &Path,
    cell: Option<usize>,
    metrics: &CellMetrics,
) -> anyhow::Result<PathBuf> {
    let text = contend::render::aggregate_log(metrics, log.interval_s, log.columns)?;
    let mut name = match &log.prefix {
        Some(prefix) => prefix.clone().into_os_string(),
        None => run_dir.join("pgbench_log").into_os_string(),
    };
    name.push(format!(".{}", std::process::id()));
    if let Some(cell) = cell {
        name.push(format!(".{cell}"));
    }
    let path = PathBuf::from(name);
    contend::results::write_whole(&path, text.as_bytes())?;
    Ok(path)
}
