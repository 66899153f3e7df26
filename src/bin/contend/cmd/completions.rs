//! `contend completions SHELL`: the script on stdout.

use crate::cli::CompletionsCommand;
use crate::cmd::Outcome;

pub fn run(args: &CompletionsCommand) -> anyhow::Result<Outcome> {
    let mut script = Vec::new();
    args.write_script(&mut script);
    std::io::Write::write_all(&mut std::io::stdout().lock(), &script)?;
    Ok(Outcome::Ok)
}
