//! `contend recommend`: read a sweep's cells, print the recommendation.

use contend::analysis::{recommend, RecommendOptions};
use contend::render::recommendation_text;
use contend::results::read_cells;

use crate::cli::RecommendCommand;
use crate::cmd::Outcome;

pub fn run(args: &RecommendCommand) -> anyhow::Result<Outcome> {
    let options = RecommendOptions::try_from(&args.judging)?;
    let records = read_cells(&args.dir)?;
    if records.is_empty() {
        anyhow::bail!(
            "{} has no finished cells: run a sweep into it first",
            args.dir.display()
        );
    }
    let recommendation = recommend(&records, &options);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&recommendation)?);
    } else {
        print!("{}", recommendation_text(&recommendation));
    }
    Ok(Outcome::Ok)
}
