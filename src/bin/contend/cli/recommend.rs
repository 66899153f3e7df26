//! `contend recommend`: a sweep's run directory and how to judge it.

use std::path::PathBuf;

use clap::Args;

use super::RecommendArgs;

/// `contend recommend`.
#[derive(Debug, Args)]
pub struct RecommendCommand {
    /// The sweep's results/<run> directory.
    pub dir: PathBuf,
    /// Print JSON instead of text (--format json).
    #[arg(long)]
    pub json: bool,
    /// How to judge the cells.
    #[command(flatten)]
    pub judging: RecommendArgs,
    /// What stdout gets: text, json (as --json) or csv (a row per recommendation).
    #[arg(long, value_enum, default_value_t = super::Format::Text)]
    pub format: super::Format,
}
