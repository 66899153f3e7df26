//! `contend report`: a run directory, and how to judge its cells when
//! run.json is built.

use std::path::PathBuf;

use clap::Args;

use super::RecommendArgs;

/// `contend report`.
#[derive(Debug, Args)]
pub struct ReportCommand {
    /// The results/<run> directory.
    pub dir: PathBuf,
    /// Rebuild run.json from cells.jsonl and migration.json even when it
    /// exists (e.g. to judge with other --goodput-share or --formula).
    #[arg(long)]
    pub rebuild: bool,
    /// How the recommendation judges the cells (used when run.json is built).
    #[command(flatten)]
    pub judging: RecommendArgs,
}
