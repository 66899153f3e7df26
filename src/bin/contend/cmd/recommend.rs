//! `contend recommend`: read a sweep's cells, print the recommendation.

use contend::analysis::{recommend, recommend_each, RecommendOptions};
use contend::render::{recommendation_text, recommendations_csv};
use contend::results::read_cells;

use crate::cli::{Format, RecommendCommand};
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
    // Cells of several network round trips (--network-rtts) get one
    // recommendation each: a knee over two networks would be neither's.
    let mut rtts: Vec<u64> = records.iter().map(|r| r.settings.network.rtt_ms.to_bits()).collect();
    rtts.sort_unstable();
    rtts.dedup();
    if rtts.len() > 1 {
        let recommendations = recommend_each(&records, &options);
        match if args.json { Format::Json } else { args.format } {
            Format::Text => {
                for recommendation in &recommendations {
                    print!("{}", recommendation_text(recommendation));
                }
            }
            Format::Json => super::print_json(&recommendations)?,
            Format::Csv => print!("{}", recommendations_csv(&recommendations)?),
        }
        return Ok(Outcome::Ok);
    }
    let recommendation = recommend(&records, &options);
    match if args.json { Format::Json } else { args.format } {
        Format::Text => print!("{}", recommendation_text(&recommendation)),
        Format::Json => super::print_json(&recommendation)?,
        Format::Csv => print!("{}", recommendations_csv(std::slice::from_ref(&recommendation))?),
    }
    Ok(Outcome::Ok)
}
