//! `contend compare`: two run directories, a threshold and a confidence
//! level, checked into [`CompareOptions`].

use std::path::PathBuf;

use clap::Args;

use contend::analysis::CompareOptions;

/// `contend compare`.
#[derive(Debug, Args)]
pub struct CompareCommand {
    /// The baseline's results/<run> directory.
    pub baseline: PathBuf,
    /// The current results/<run> directory.
    pub current: PathBuf,
    /// Relative change that counts, e.g. 10% or 0.1.
    #[arg(long, default_value = "10%", value_parser = parse_share)]
    pub threshold: f64,
    /// Confidence of the interval (Welch's t), 0 to 1.
    #[arg(long, default_value_t = 0.95, value_parser = super::values::parse_finite)]
    pub confidence: f64,
    /// Also write the Markdown table here (e.g. $GITHUB_STEP_SUMMARY).
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// What stdout gets: text, json (the comparison) or csv (a row per metric).
    #[arg(long, value_enum, default_value_t = super::Format::Text)]
    pub format: super::Format,
    /// Also write the comparison as JUnit XML here: a test case per
    /// configuration and metric, a failure per regression.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

/// "10%" or "0.1" as 0.1.
fn parse_share(raw: &str) -> Result<f64, String> {
    let value = match raw.strip_suffix('%') {
        Some(percent) => percent.trim().parse::<f64>().map(|p| p / 100.0),
        None => raw.trim().parse::<f64>(),
    }
    .map_err(|_| format!("`{raw}` is not a share: write 10% or 0.1"))?;
    if value > 0.0 && value < 10.0 {
        Ok(value)
    } else {
        Err(format!("`{raw}`: give a share above 0, e.g. 10%"))
    }
}

impl TryFrom<&CompareCommand> for CompareOptions {
    type Error = anyhow::Error;

    fn try_from(args: &CompareCommand) -> Result<Self, Self::Error> {
        anyhow::ensure!(
            args.confidence > 0.0 && args.confidence < 1.0,
            "--confidence {}: give a level between 0 and 1, e.g. 0.95",
            args.confidence
        );
        Ok(CompareOptions {
            threshold: args.threshold,
            confidence: args.confidence,
        })
    }
}
