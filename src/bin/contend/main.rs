//! The `contend` binary: parse flags, start the runtime, dispatch to one
//! subcommand, and map how it ended to an exit code, here and nowhere else;
//! the codes and their precedence are one table in [`exit`].

use std::process::ExitCode;

mod cli;
mod cmd;
mod exit;

use crate::cli::Command;
use crate::exit::ExitStatus;

fn main() -> ExitCode {
    let cli = match cli::parse() {
        Ok(cli) => cli,
        // --help and --version.
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitStatus::Success.into();
        }
        Err(e) => {
            eprintln!("contend: error: {}", clap_error_line(&e));
            return ExitStatus::BadInput.into();
        }
    };
    raise_open_files_limit();
    // One thread: a client's task and its connection's task wake each other
    // on every statement, and across worker threads each wake is a futex
    // call and a context switch. On two cores shared with the server, one
    // thread measured 12% less client CPU per transaction than two
    // (BENCHMARKS.md, "Driver changes"). A cell's clients run on driver
    // threads of their own, each one such runtime owning whole instances
    // (contend::driver); with --driver-threads 1, on this one.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("contend: cannot start the async runtime: {e}");
            return ExitStatus::BadInput.into();
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Provision(args) => cmd::provision::run(*args).await,
            Command::Run(args) => cmd::run::run(*args).await,
            Command::Sweep(args) => cmd::sweep::run(*args).await,
            Command::Recommend(args) => cmd::recommend::run(&args),
            Command::Migrate(args) => cmd::migrate::run(*args).await,
            Command::Report(args) => cmd::report::run(&args),
            Command::Compare(args) => cmd::compare::run(&args),
            Command::Completions(args) => cmd::completions::run(&args),
            Command::Man(args) => cmd::man::run(&args),
        }
    });
    match outcome {
        Ok(outcome) => ExitStatus::from(outcome).into(),
        Err(error) => {
            eprintln!("contend: error: {error:#}");
            ExitStatus::BadInput.into()
        }
    }
}

/// Raises the soft limit on open files to the hard limit. Every client
/// connection is a socket, and the soft limit is often 1024 while the hard
/// one is far higher: at a few hundred clients with `--pool none`, contend
/// would run out of descriptors and count it as failed connections. What
/// it still runs out of is classified as contend's own
/// (`ErrorClass::ClientOutOfFiles`), never the server's. Servers and the
/// `provision` command inherit the raised limit.
fn raise_open_files_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if soft >= hard {
        return;
    }
    if setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_err() {
        // An unlimited hard limit cannot be the soft one: the kernel caps
        // open files at fs.nr_open.
        let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|n| n.trim().parse::<u64>().ok());
        if let Some(most) = nr_open.filter(|&most| most > soft) {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, most.min(hard), hard);
        }
    }
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
