//! `contend man`: contend(1) on stdout, or every page into `--dir`.

use anyhow::Context;

use crate::cli::{man, ManCommand};
use crate::cmd::Outcome;

pub fn run(args: &ManCommand) -> anyhow::Result<Outcome> {
    match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("--dir {}: creating it", dir.display()))?;
            man::write_pages(dir).with_context(|| format!("--dir {}: writing the manual pages", dir.display()))?;
            eprintln!("contend: manual pages written to {}", dir.display());
        }
        None => {
            let mut page = Vec::new();
            man::write_page(&mut page)?;
            std::io::Write::write_all(&mut std::io::stdout().lock(), &page)?;
        }
    }
    Ok(Outcome::Ok)
}
