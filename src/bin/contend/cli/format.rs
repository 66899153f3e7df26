//! `--format`: what `run`, `sweep`, `recommend` and `compare` print on
//! stdout. Everything else (progress, notices) is on stderr whatever it is.

/// What stdout gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Text for people (the default).
    #[default]
    Text,
    /// One JSON document, the schema of the file it comes from.
    Json,
    /// A header and one row per cell, recommendation or compared metric.
    Csv,
}
