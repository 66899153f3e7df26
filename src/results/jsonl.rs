//! `cells.jsonl` and `failed.jsonl`: one JSON record a line, appended as
//! each cell ends, so a sweep killed later keeps every finished cell.
//!
//! Only a last line can be cut short (power lost mid-write, a file copied
//! half): a last line with no newline that ends before its record does is
//! a [`TornLine`], skipped with a warning, and dropped before the next
//! append so nothing is glued onto it. Any other unreadable line is an
//! error naming its line number: a record is never dropped silently.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{write_whole, ResultsError};
use crate::record::{record_key, CellRecord, FailedCell};

/// A last line cut short, as a crash mid-write leaves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornLine {
    /// The file.
    pub path: PathBuf,
    /// Where the cut line starts, bytes from the start of the file.
    pub offset: u64,
    /// Bytes of it there are.
    pub len: u64,
}

impl std::fmt::Display for TornLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: the last line (byte {}, {} bytes, no newline) is cut short, as a crash mid-write leaves it; skipped",
            self.path.display(),
            self.offset,
            self.len
        )
    }
}

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
/// is written whole, without a torn last line it had.
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
    if let Some(start) = torn_tail(&content) {
        content.truncate(start);
    }
    if !content.is_empty() && !content.ends_with(b"\n") {
        content.push(b'\n');
    }
    serde_json::to_writer(&mut content, value).map_err(|e| ResultsError::writing(&path)(std::io::Error::other(e)))?;
    content.push(b'\n');
    write_whole(&path, &content)?;
    Ok(path)
}

/// Where the torn last line of `bytes` starts: a last line with no newline
/// that is not whole JSON. Every append ends with a newline, so such a line
/// is a write that did not finish, wherever it was cut (inside a string, a
/// number such as `7980.`, a `\u` escape or a UTF-8 sequence: serde_json
/// calls only some of those end-of-file). A whole record that only lacks
/// its newline is not torn.
fn torn_tail(bytes: &[u8]) -> Option<usize> {
    let start = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let tail = &bytes[start..];
    if tail.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    match serde_json::from_slice::<serde::de::IgnoredAny>(tail) {
        Err(_) => Some(start),
        Ok(_) => None,
    }
}

/// The records of a JSON-lines file's bytes, in order, and its torn last
/// line if it has one; any other unreadable line is an error naming it,
/// with `hint` for what to do.
pub(crate) fn parse_lines<T: DeserializeOwned>(
    path: &Path,
    bytes: &[u8],
    hint: &str,
) -> Result<(Vec<T>, Option<TornLine>), ResultsError> {
    let torn_at = torn_tail(bytes);
    let whole = &bytes[..torn_at.unwrap_or(bytes.len())];
    let mut records = Vec::new();
    for (index, line) in whole.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let record = serde_json::from_slice::<T>(line).map_err(|e| ResultsError::Format {
            path: path.to_path_buf(),
            reason: format!(
                "line {}: not a cell record this contend can read ({e}){hint}",
                index + 1
            ),
        })?;
        records.push(record);
    }
    let torn = torn_at.map(|offset| TornLine {
        path: path.to_path_buf(),
        offset: offset as u64,
        len: (bytes.len() - offset) as u64,
    });
    Ok((records, torn))
}

/// Every record in `dir/cells.jsonl`, in order, and its torn last line if
/// it has one (skipped).
pub fn read_cells_checked(dir: &Path) -> Result<(Vec<CellRecord>, Option<TornLine>), ResultsError> {
    let path = dir.join("cells.jsonl");
    let bytes = std::fs::read(&path).map_err(ResultsError::reading(&path))?;
    parse_lines(&path, &bytes, "")
}

/// Every record in `dir/cells.jsonl`, in order; a torn last line is
/// skipped with a warning on stderr naming the file and the byte it starts at.
pub fn read_cells(dir: &Path) -> Result<Vec<CellRecord>, ResultsError> {
    let (records, torn) = read_cells_checked(dir)?;
    if let Some(torn) = torn {
        eprintln!("contend: warning: {torn}");
    }
    Ok(records)
}

/// Cuts a torn last line off `dir/cells.jsonl` (the file written whole
/// without it), so that the next append starts on a line of its own; says
/// what it cut. Nothing to do without the file or a torn line.
pub fn repair_cells(dir: &Path) -> Result<Option<TornLine>, ResultsError> {
    let path = dir.join("cells.jsonl");
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ResultsError::reading(&path)(e)),
    };
    let (_, torn) = parse_lines::<CellRecord>(&path, &bytes, "; resume into a new directory instead")?;
    if let Some(torn) = &torn {
        write_whole(&path, &bytes[..torn.offset as usize])?;
    }
    Ok(torn)
}

/// What a run directory already holds.
#[derive(Debug, Default)]
pub struct Finished {
    /// Keys of the cells recorded whole.
    pub keys: HashSet<String>,
    /// The torn last line, skipped.
    pub torn: Option<TornLine>,
}

/// The cells `dir/cells.jsonl` holds, by key; a missing file is an empty
/// sweep.
pub fn finished_cells(dir: &Path) -> Result<Finished, ResultsError> {
    let path = dir.join("cells.jsonl");
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Finished::default()),
        Err(error) => return Err(ResultsError::Read { path, error }),
    };
    let (records, torn) = parse_lines::<CellRecord>(&path, &bytes, "; resume into a new directory instead")?;
    Ok(Finished {
        keys: records.iter().map(record_key).collect(),
        torn,
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Real records: the cells a sweep of an earlier build wrote.
    const CELLS: &str = include_str!("../../tests/fixtures/results-7f0d7fe/sweep-sleep/cells.jsonl");

    fn parse(bytes: &[u8]) -> Result<(Vec<CellRecord>, Option<TornLine>), ResultsError> {
        parse_lines(Path::new("cells.jsonl"), bytes, "")
    }

    /// Byte offsets where each line of CELLS starts, and its end.
    fn line_starts() -> Vec<usize> {
        let mut starts = vec![0];
        starts.extend(CELLS.match_indices('\n').map(|(i, _)| i + 1));
        starts
    }

    #[test]
    fn a_corrupt_middle_line_is_an_error_naming_it() {
        let mut lines: Vec<&str> = CELLS.lines().collect();
        lines[1] = "{\"schema\": \"contend.cell/1\", oops";
        let text = lines.join("\n") + "\n";
        let err = parse(text.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("line 2:"), "{err}");
    }

    #[test]
    fn a_whole_last_record_without_its_newline_is_kept_and_appended_after() {
        let dir = tempfile::tempdir().unwrap();
        let trimmed = CELLS.trim_end();
        std::fs::write(dir.path().join("cells.jsonl"), trimmed).unwrap();
        let (records, torn) = read_cells_checked(dir.path()).unwrap();
        assert_eq!((records.len(), torn), (4, None));
        append_cell(dir.path(), &records[0]).unwrap();
        assert_eq!(read_cells_checked(dir.path()).unwrap().0.len(), 5);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any bytes at all: records, a torn line or an error naming a
        /// line, never a panic.
        #[test]
        fn any_bytes_read_or_fail_with_a_line_number(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            match parse(&bytes) {
                Ok((_, Some(torn))) => {
                    prop_assert!(torn.offset as usize <= bytes.len());
                    prop_assert!(!bytes[torn.offset as usize..].contains(&b'\n'));
                }
                Ok(_) => {}
                Err(ResultsError::Format { reason, .. }) => prop_assert!(reason.starts_with("line "), "{}", reason),
                Err(other) => prop_assert!(false, "{}", other),
            }
        }

        /// A file cut anywhere (power lost mid-write) reads as every line
        /// before the cut, the cut line reported torn from its first byte;
        /// an append after it starts on a line of its own.
        #[test]
        fn a_file_cut_anywhere_keeps_every_whole_record(cut in 0..CELLS.len()) {
            let starts = line_starts();
            let line = starts.iter().rposition(|&s| s <= cut).unwrap();
            let (records, torn) = parse(&CELLS.as_bytes()[..cut]).unwrap();
            // A cut that takes only a line's newline leaves that record
            // whole: it is kept (as a_whole_last_record_without_its_newline_…).
            let only_newline_lost = starts.get(line + 1) == Some(&(cut + 1));
            prop_assert_eq!(records.len(), line + usize::from(only_newline_lost));
            if cut == starts[line] || only_newline_lost {
                prop_assert!(torn.is_none());
            } else {
                let torn = torn.expect("a line cut short is torn");
                prop_assert_eq!(torn.offset as usize, starts[line]);
                prop_assert_eq!(torn.len as usize, cut - starts[line]);
            }
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("cells.jsonl"), &CELLS.as_bytes()[..cut]).unwrap();
            let all = parse(CELLS.as_bytes()).unwrap().0;
            append_cell(dir.path(), &all[3]).unwrap();
            let (after, torn) = read_cells_checked(dir.path()).unwrap();
            prop_assert_eq!(after.len(), line + 1 + usize::from(only_newline_lost));
            prop_assert!(torn.is_none());
        }

        /// A byte changed in a whole line never drops that record silently:
        /// the file reads whole or fails naming a line.
        #[test]
        fn a_changed_byte_never_loses_a_record_silently(at in 0..CELLS.len(), byte in any::<u8>()) {
            let mut bytes = CELLS.as_bytes().to_vec();
            bytes[at] = byte;
            // The file's last newline changed: its last line is a record
            // kept whole or a line reported torn, never one dropped unsaid.
            let last_newline_lost = at == CELLS.len() - 1 && byte != b'\n';
            match parse(&bytes) {
                Ok((records, torn)) if last_newline_lost => {
                    prop_assert!(records.len() + usize::from(torn.is_some()) >= 4, "{} records, torn {:?}", records.len(), torn);
                }
                Ok((records, torn)) => {
                    prop_assert!(torn.is_none(), "the file still ends with a newline");
                    prop_assert!(records.len() >= 4, "{} records", records.len());
                }
                Err(ResultsError::Format { reason, .. }) => prop_assert!(reason.starts_with("line "), "{}", reason),
                Err(other) => prop_assert!(false, "{}", other),
            }
        }
    }
}
