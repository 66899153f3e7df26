//! `contend report`: run.json (read, or built from the run's files), then
//! summary.md, plots and index.html from it.

use contend::analysis::RecommendOptions;
use contend::exec::assemble_run_file;
use contend::render::{recommendation_text, write_report};
use contend::results::RunFile;

use crate::cli::ReportCommand;
use crate::cmd::Outcome;

pub fn run(args: &ReportCommand) -> anyhow::Result<Outcome> {
    let options = RecommendOptions::try_from(&args.judging)?;
    let run = if args.dir.join("run.json").exists() && !args.rebuild {
        RunFile::read(&args.dir)?
    } else {
        let run = assemble_run_file(&args.dir, &options)?;
        run.write(&args.dir)?;
        run
    };
    let written = write_report(&args.dir, &run)?;
    for recommendation in &run.recommendations {
        print!("{}", recommendation_text(recommendation));
    }
    eprintln!("contend: report: {}", written.index.display());
    Ok(Outcome::Ok)
}
