//! The `contend` binary: parse flags, call the library, explain errors, map
//! outcomes to exit codes (0 ok, 1 a failed check, 2 bad input or setup).

use std::process::ExitCode;

use clap::Parser;
use contend::cli::{Cli, Command};

mod provision_cmd;

/// `contend recommend`: read a sweep's cells, print the recommendation.
fn recommend_cmd(args: &contend::cli::RecommendCommand) -> anyhow::Result<ExitCode> {
    let options = contend::recommend::RecommendOptions::try_from(&args.judging).map_err(anyhow::Error::msg)?;
    let records = contend::sweep::read_cells(&args.dir)?;
    if records.is_empty() {
        anyhow::bail!(
            "{} has no finished cells: run a sweep into it first",
            args.dir.display()
        );
    }
    let recommendation = contend::recommend::recommend(&records, &options);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&recommendation)?);
    } else {
        print!("{}", contend::report::recommendation_text(&recommendation));
    }
    Ok(ExitCode::SUCCESS)
}
mod migrate_cmd;
mod run_cmd;
mod sweep_cmd;

/// `contend report`: run.json (read, or built from the run's files), then
/// summary.md, plots and index.html from it.
fn report_cmd(args: &contend::cli::ReportCommand) -> anyhow::Result<ExitCode> {
    let options = contend::recommend::RecommendOptions::try_from(&args.judging).map_err(anyhow::Error::msg)?;
    let run = if args.dir.join("run.json").exists() && !args.rebuild {
        contend::runfile::RunFile::read(&args.dir)?
    } else {
        let run = contend::runfile::RunFile::assemble(&args.dir, &options)?;
        run.write(&args.dir)?;
        run
    };
    let written = contend::site::write_report(&args.dir, &run)?;
    if let Some(recommendation) = &run.recommendation {
        print!("{}", contend::report::recommendation_text(recommendation));
    }
    eprintln!("contend: report: {}", written.index.display());
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One thread: a client's task and its connection's task wake each other
    // on every statement, and across worker threads each wake is a futex
    // call and a context switch. On two cores shared with the server, one
    // thread measured 12% less client CPU per transaction than two
    // (BENCHMARKS.md, "Driver changes").
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("contend: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Provision(args) => provision_cmd::run(*args).await,
            Command::Run(args) => run_cmd::run(*args).await,
            Command::Sweep(args) => sweep_cmd::run(*args).await,
            Command::Recommend(args) => recommend_cmd(&args),
            Command::Migrate(args) => migrate_cmd::run(*args).await,
            Command::Report(args) => report_cmd(&args),
        }
    });
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("contend: error: {error:#}");
            ExitCode::from(2)
        }
    }
}
