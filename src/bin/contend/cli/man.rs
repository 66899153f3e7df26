//! `contend man`: the manual page, rendered by clap_mangen from the very
//! definitions that parse the command line.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory};

use super::Cli;

/// `contend man`.
#[derive(Debug, Args)]
pub struct ManCommand {
    /// Write contend.1 and one contend-SUBCOMMAND.1 per subcommand (each
    /// with all its flags) into DIR instead of printing contend(1).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Writes contend(1): the synopsis, the top-level options and every
/// subcommand with its summary.
pub fn write_page(out: &mut dyn Write) -> std::io::Result<()> {
    clap_mangen::Man::new(Cli::command()).render(out)
}

/// Writes contend.1 and contend-SUBCOMMAND.1 for each subcommand into
/// `dir`, which must exist.
pub fn write_pages(dir: &Path) -> std::io::Result<()> {
    clap_mangen::generate_to(Cli::command(), dir)
}
