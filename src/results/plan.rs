//! `results/<run>/plan.json`: a sweep's plan, written whole when the sweep
//! starts and read back by `--resume`, and the digests of the files its
//! cells read at run time, taken then and checked again on resume.

use std::path::Path;

use super::{write_json, ResultsError};
use crate::record::{sha256_hex, InputFile, PlannedCell, SweepPlanRecord, PLAN_SCHEMA};

/// The plan file's name in a run directory.
pub const PLAN_FILE: &str = "plan.json";

/// Writes `dir/plan.json` whole.
pub fn write_plan(dir: &Path, plan: &SweepPlanRecord) -> Result<(), ResultsError> {
    write_json(&dir.join(PLAN_FILE), plan)
}

/// Reads `dir/plan.json`; `None` when the directory has none (a sweep
/// written before contend recorded plans, or no sweep at all).
pub fn read_plan(dir: &Path) -> Result<Option<SweepPlanRecord>, ResultsError> {
    let path = dir.join(PLAN_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ResultsError::reading(&path)(e)),
    };
    let plan: SweepPlanRecord = serde_json::from_slice(&bytes).map_err(|e| ResultsError::Format {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    if plan.schema != PLAN_SCHEMA {
        return Err(ResultsError::Format {
            path,
            reason: format!("schema {:?}; this contend reads {PLAN_SCHEMA:?}", plan.schema),
        });
    }
    Ok(Some(plan))
}

/// The files `cells` read when they run (`--script`, `--init-sql`), each
/// once, with the SHA-256 of its content now.
pub fn input_files(cells: &[PlannedCell]) -> Result<Vec<InputFile>, ResultsError> {
    let mut inputs: Vec<InputFile> = Vec::new();
    for cell in cells {
        let Some(script) = &cell.settings.overrides.script else {
            continue;
        };
        let mut named: Vec<(&str, &Path)> = script.scripts.iter().map(|s| ("--script", s.path.as_path())).collect();
        if let crate::workload::script::ScriptData::InitSql { path } = &script.data {
            named.push(("--init-sql", path.as_path()));
        }
        for (flag, path) in named {
            if inputs.iter().any(|i| i.path == path) {
                continue;
            }
            let bytes = std::fs::read(path).map_err(ResultsError::reading(path))?;
            inputs.push(InputFile {
                flag: flag.to_string(),
                path: path.to_path_buf(),
                sha256: sha256_hex(&bytes),
            });
        }
    }
    Ok(inputs)
}

/// How each of `inputs` differs from what it was: one sentence per file
/// that is gone or changed; none when all are as they were.
pub fn changed_inputs(inputs: &[InputFile]) -> Vec<String> {
    inputs
        .iter()
        .filter_map(|input| match std::fs::read(&input.path) {
            Err(e) => Some(format!("{} {}: {e}", input.flag, input.path.display())),
            Ok(bytes) if sha256_hex(&bytes) != input.sha256 => Some(format!(
                "{} {} has changed since the sweep started (sha256 then {}…)",
                input.flag,
                input.path.display(),
                &input.sha256[..12]
            )),
            Ok(_) => None,
        })
        .collect()
}
