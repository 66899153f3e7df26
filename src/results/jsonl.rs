//! `cells.jsonl` and `failed.jsonl`: one JSON record a line, appended as
//! each cell ends, so a sweep killed later keeps every finished cell.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{write_whole, ResultsError};
use crate::record::{record_key, CellRecord, FailedCell};

/// Appends `record` as one line to `dir/cells.jsonl`, creating both, and
/// syncs it: a sweep killed later keeps every finished cell.
pub fn append_cell(dir: &Path, record: &CellRecord) -> Result<PathBuf, ResultsError> {
    append_json_line(dir, "cells.jsonl", record)
}

/// Appends `failed` to `dir/failed.jsonl`, writing the file whole.
pub fn append_failed(dir: &Path, failed: &FailedCell) -> Result<PathBuf, ResultsError> {
    append_json_line(dir, "failed.jsonl", failed)
}

/// Appends `value` as one JSON line to `dir/file`, creating both; the file
/// is written whole.
fn append_json_line(dir: &Path, file: &str, value: &impl Serialize) -> Result<PathBuf, ResultsError> {
    let path = dir.join(file);
    std::fs::create_dir_all(dir).map_err(ResultsError::writing(&path))?;
    // The file is written whole: the cells so far and the new one into a
    // temporary file, synced, renamed over it. A full disk or a crash
    // leaves the previous cells.jsonl as it was.
    let mut content = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(ResultsError::reading(&path)(e)),
    };
    if !content.is_empty() && !content.ends_with(b"\n") {
        content.push(b'\n');
    }
    serde_json::to_writer(&mut content, value).map_err(|e| ResultsError::writing(&path)(std::io::Error::other(e)))?;
    content.push(b'\n');
    write_whole(&path, &content)?;
    Ok(path)
}

/// The records of a JSON-lines file, in order. Only a last line can be cut
/// short by a crash: it is skipped and counted; any other unreadable line is
/// an error naming it, with `hint` for what to do.
fn parse_lines<T: DeserializeOwned>(path: &Path, text: &str, hint: &str) -> Result<(Vec<T>, usize), ResultsError> {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut records = Vec::with_capacity(lines.len());
    let mut cut = 0;
    for (number, line) in lines.iter().enumerate() {
        match serde_json::from_str::<T>(line) {
            Ok(record) => records.push(record),
            Err(_) if number + 1 == lines.len() => cut += 1,
            Err(e) => {
                return Err(ResultsError::Format {
                    path: path.to_path_buf(),
                    reason: format!(
                        "line {}: not a cell record this contend can read ({e}){hint}",
                        number + 1
                    ),
                })
            }
        }
    }
    Ok((records, cut))
}

/// Every record in `dir/cells.jsonl`, in order (a cut last line skipped).
pub fn read_cells(dir: &Path) -> Result<Vec<CellRecord>, ResultsError> {
    let path = dir.join("cells.jsonl");
    let text = std::fs::read_to_string(&path).map_err(ResultsError::reading(&path))?;
    Ok(parse_lines(&path, &text, "")?.0)
}

/// What a run directory already holds.
#[derive(Debug, Default)]
pub struct Finished {
    /// Keys of the cells recorded whole.
    pub keys: HashSet<String>,
    /// Lines that did not parse (a line cut by a crash is the only way to get one).
    pub unreadable_lines: usize,
}

/// The cells `dir/cells.jsonl` holds, by key; a missing file is an empty
/// sweep.
pub fn finished_cells(dir: &Path) -> Result<Finished, ResultsError> {
    let path = dir.join("cells.jsonl");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Finished::default()),
        Err(error) => return Err(ResultsError::Read { path, error }),
    };
    let (records, unreadable_lines) = parse_lines::<CellRecord>(&path, &text, "; resume into a new directory instead")?;
    Ok(Finished {
        keys: records.iter().map(record_key).collect(),
        unreadable_lines,
    })
}

/// Every record in `dir/failed.jsonl`; none when there is no such file.
/// Lines this contend cannot read are skipped: a failed cell is evidence,
/// never a reason to refuse a report.
pub fn read_failed(dir: &Path) -> Vec<FailedCell> {
    std::fs::read_to_string(dir.join("failed.jsonl"))
        .map(|text| {
            text.lines()
                .filter_map(|line| serde_json::from_str(line).ok())
                .collect()
        })
        .unwrap_or_default()
}
