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
    for recommendation in &run.recommendations {
        print!("{}", contend::report::recommendation_text(recommendation));
    }
    eprintln!("contend: report: {}", written.index.display());
    Ok(ExitCode::SUCCESS)
}

/// The cells of a results/<run> directory: run.json's when there is one,
/// else cells.jsonl's.
fn cells_of(dir: &std::path::Path) -> anyhow::Result<Vec<contend::run::CellRecord>> {
    if dir.join("run.json").exists() {
        return Ok(contend::runfile::RunFile::read(dir)?.cells);
    }
    let cells = contend::sweep::read_cells(dir)?;
    anyhow::ensure!(
        !cells.is_empty(),
        "{} holds no cells: give a results/<run> directory",
        dir.display()
    );
    Ok(cells)
}

/// `contend compare`: the Markdown table, exit 1 on a regression.
fn compare_cmd(args: &contend::cli::CompareCommand) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.confidence > 0.0 && args.confidence < 1.0,
        "--confidence {}: give a level between 0 and 1, e.g. 0.95",
        args.confidence
    );
    let options = contend::compare::CompareOptions {
        threshold: args.threshold,
        confidence: args.confidence,
    };
    let comparison = contend::compare::compare(&cells_of(&args.baseline)?, &cells_of(&args.current)?, &options)?;
    let table = contend::compare::markdown(&comparison);
    print!("{table}");
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
    Ok(if comparison.regressed() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// clap's error as one line: its message up to the first blank line
/// (possible values included), without the usage block.
fn clap_error_line(error: &clap::Error) -> String {
    let rendered = error.render().to_string();
    let message: Vec<&str> = rendered
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let message = message.join(" ");
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    format!("{message}; see contend --help")
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version.
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("contend: error: {}", clap_error_line(&e));
            return ExitCode::from(2);
        }
    };
    // One thread: a client's task and its connection's task wake each other
    // on every statement, and across worker threads each wake is a futex
    // call and a context switch. On two cores shared with the server, one
    // thread measured 12% less client CPU per transaction than two
    // (BENCHMARKS.md, "Driver changes"). A cell's clients run on driver
    // threads of their own, each one such runtime owning whole instances
    // (driver.rs); with --driver-threads 1, on this one.
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
            Command::Compare(args) => compare_cmd(&args),
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
