//! `contend compare`: the Markdown table (or JSON, CSV) on stdout, the
//! table appended to --markdown, JUnit XML to --junit, exit 1 on a
//! regression.

use std::path::Path;

use contend::analysis::{compare, markdown, CompareOptions};
use contend::record::CellRecord;
use contend::render::{comparison_csv, junit_xml};
use contend::results::{read_cells, RunFile};

use crate::cli::{CompareCommand, Format};
use crate::cmd::Outcome;

/// The cells of a results/<run> directory: run.json's when there is one,
/// else cells.jsonl's.
fn cells_of(dir: &Path) -> anyhow::Result<Vec<CellRecord>> {
    if dir.join("run.json").exists() {
        return Ok(RunFile::read(dir)?.cells);
    }
    let cells = read_cells(dir)?;
    anyhow::ensure!(
        !cells.is_empty(),
        "{} holds no cells: give a results/<run> directory",
        dir.display()
    );
    Ok(cells)
}

pub fn run(args: &CompareCommand) -> anyhow::Result<Outcome> {
    let options = CompareOptions::try_from(args)?;
    let comparison = compare(&cells_of(&args.baseline)?, &cells_of(&args.current)?, &options)?;
    let table = markdown(&comparison);
    match args.format {
        Format::Text => print!("{table}"),
        Format::Json => super::print_json(&comparison)?,
        Format::Csv => print!("{}", comparison_csv(&comparison)?),
    }
    if let Some(path) = &args.markdown {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| anyhow::anyhow!("--markdown {}: {e}", path.display()))?;
        file.write_all(table.as_bytes())
            .map_err(|e| anyhow::anyhow!("--markdown {}: {e}", path.display()))?;
    }
    if let Some(path) = &args.junit {
        // One document per file: written whole, not appended.
        std::fs::write(path, junit_xml(&comparison)?)
            .map_err(|e| anyhow::anyhow!("--junit {}: {e}", path.display()))?;
    }
    Ok(if comparison.regressed() {
        Outcome::Regression
    } else {
        Outcome::Ok
    })
}
