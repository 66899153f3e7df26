//! The `contend` binary: parse flags, call the library, explain errors, map
//! outcomes to exit codes (0 ok, 1 a failed check, 2 bad input or setup).

use std::process::ExitCode;

use clap::Parser;
use contend::cli::{Cli, Command};

mod provision_cmd;
mod run_cmd;
mod sweep_cmd;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
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
