//! SVG plots of a run, drawn with plotters' SVG backend (text as SVG
//! `<text>`, no font files needed): goodput and p99 against total pool
//! size, an errors heatmap, latency over time with an index build's phases
//! shaded, and the share of pool wait against time in the database.
//!
//! Reads finished records only.

use std::collections::{BTreeMap, BTreeSet};

use plotters::prelude::*;

use super::markup::slug;
use crate::analysis::median;
use crate::record::{CellRecord, MigrationRecord};

/// Size of every plot, pixels.
const SIZE: (u32, u32) = (760, 420);

/// Why a plot could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("drawing {plot}: {reason}")]
pub struct PlotError {
    /// Which plot.
    pub plot: &'static str,
    /// What plotters said.
    pub reason: String,
}

/// One plot: a file name and its SVG.
#[derive(Debug, Clone)]
pub struct Plot {
    /// File name under plots/, e.g. "goodput-goal-count.svg".
    pub file: String,
    /// Title shown above it in the report.
    pub title: String,
    /// The SVG document.
    pub svg: String,
}

fn failed<E: std::fmt::Display>(plot: &'static str) -> impl Fn(E) -> PlotError {
    move |e| PlotError {
        plot,
        reason: e.to_string(),
    }
}

fn color(i: usize) -> RGBColor {
    const COLORS: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(255, 127, 14),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
    ];
    COLORS[i % COLORS.len()]
}

/// The series' legend, upper right on a light box, as every plot has it.
fn draw_legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
}

/// Median of `value` per (max_connections, total pool) over the cells.
fn by_budget_and_pool(cells: &[CellRecord], value: impl Fn(&CellRecord) -> f64) -> BTreeMap<u32, Vec<(f64, f64)>> {
    let mut groups: BTreeMap<u32, BTreeMap<u32, Vec<f64>>> = BTreeMap::new();
    for cell in cells {
        let total = cell.settings.instances * cell.settings.pool.size;
        groups
            .entry(cell.postgres.max_connections)
            .or_default()
            .entry(total)
            .or_default()
            .push(value(cell));
    }
    groups
        .into_iter()
        .map(|(budget, pools)| {
            let points = pools
                .into_iter()
                .map(|(pool, mut v)| (f64::from(pool), median(&mut v)))
                .collect();
            (budget, points)
        })
        .collect()
}

fn pool_wait_share(cell: &CellRecord) -> f64 {
    let (waited, in_db) = cell.metrics.operations.iter().fold((0.0, 0.0), |(w, d), op| {
        (
            w + op.pool_wait.mean_us * op.pool_wait.count as f64,
            d + op.in_db.mean_us * op.in_db.count as f64,
        )
    });
    if waited + in_db > 0.0 {
        waited / (waited + in_db)
    } else {
        0.0
    }
}

/// A line per max_connections of a value against total pool size (log x).
fn lines_against_pool(
    plot: &'static str,
    caption: &str,
    y_desc: &str,
    series: &BTreeMap<u32, Vec<(f64, f64)>>,
    y_max: Option<f64>,
) -> Result<String, PlotError> {
    let err = failed(plot);
    // x is log2 of the total pool, labelled with the pool itself: pool
    // sizes are usually powers of two, which then fall on the ticks.
    let log2 = |v: f64| v.max(1e-9).log2();
    let xs = series.values().flatten().map(|p| log2(p.0));
    let x_max = xs.clone().fold(0.0, f64::max) + 0.4;
    let x_min = xs.fold(f64::MAX, f64::min).min(x_max - 1.0) - 0.4;
    let y_top = y_max.unwrap_or_else(|| series.values().flatten().map(|p| p.1).fold(0.0, f64::max) * 1.4);
    let y_top = if y_top > 0.0 { y_top } else { 1.0 };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(&err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(64)
            .build_cartesian_2d(x_min..x_max, 0f64..y_top)
            .map_err(&err)?;
        chart
            .configure_mesh()
            .x_desc("total pool = instances × pool size (log scale)")
            .y_desc(y_desc)
            .x_label_formatter(&|v| {
                let pool = v.exp2();
                if (v - v.round()).abs() < 1e-6 {
                    format!("{pool:.0}")
                } else {
                    format!("{pool:.1}")
                }
            })
            .draw()
            .map_err(&err)?;
        for (i, (budget, points)) in series.iter().enumerate() {
            let c = color(i);
            chart
                .draw_series(LineSeries::new(
                    points.iter().map(|&(x, y)| (log2(x), y)),
                    c.stroke_width(2),
                ))
                .map_err(&err)?
                .label(format!("max_connections {budget}"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
            chart
                .draw_series(points.iter().map(|&(x, y)| Circle::new((log2(x), y), 4, c.filled())))
                .map_err(&err)?;
        }
        draw_legend(&mut chart).map_err(&err)?;
        root.present().map_err(&err)?;
    }
    Ok(svg)
}

/// Goodput against total pool size, a line per max_connections.
pub fn goodput(workload: &str, cells: &[CellRecord]) -> Result<Plot, PlotError> {
    let series = by_budget_and_pool(cells, |c| c.business.goodput_per_s);
    Ok(Plot {
        file: format!("goodput-{}.svg", slug(workload)),
        title: format!("{workload}: goodput against total pool size"),
        svg: lines_against_pool(
            "goodput",
            &format!("{workload}: goodput (median of repeats)"),
            "business successes / s",
            &series,
            None,
        )?,
    })
}

/// p99 end-to-end (worst operation) against total pool size.
pub fn p99(workload: &str, cells: &[CellRecord]) -> Result<Plot, PlotError> {
    let series = by_budget_and_pool(cells, |cell| cell.metrics.worst_p99_ms());
    Ok(Plot {
        file: format!("p99-{}.svg", slug(workload)),
        title: format!("{workload}: p99 latency against total pool size"),
        svg: lines_against_pool(
            "p99",
            &format!("{workload}: p99 end to end, worst operation (median of repeats)"),
            "milliseconds",
            &series,
            None,
        )?,
    })
}

/// The share of pool wait in pool wait + time in the database.
pub fn pool_wait(workload: &str, cells: &[CellRecord]) -> Result<Plot, PlotError> {
    let series = by_budget_and_pool(cells, |c| pool_wait_share(c) * 100.0);
    Ok(Plot {
        file: format!("pool-wait-{}.svg", slug(workload)),
        title: format!("{workload}: waiting for a connection against working in the database"),
        svg: lines_against_pool(
            "pool-wait",
            &format!("{workload}: pool wait as a share of pool wait + time in the database"),
            "% of the time",
            &series,
            Some(100.0),
        )?,
    })
}

/// Error rate per total pool × max_connections, with 53300 refusals named.
pub fn errors_heatmap(workload: &str, cells: &[CellRecord]) -> Result<Plot, PlotError> {
    const PLOT: &str = "errors";
    let err = failed(PLOT);
    let pools: Vec<u32> = cells
        .iter()
        .map(|c| c.settings.instances * c.settings.pool.size)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let budgets: Vec<u32> = cells
        .iter()
        .map(|c| c.postgres.max_connections)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // (errors, attempts, refused) per cell position.
    let mut grid: BTreeMap<(usize, usize), (u64, u64, u64)> = BTreeMap::new();
    for cell in cells {
        let x = pools
            .iter()
            .position(|&p| p == cell.settings.instances * cell.settings.pool.size)
            .unwrap_or(0);
        let y = budgets
            .iter()
            .position(|&b| b == cell.postgres.max_connections)
            .unwrap_or(0);
        let entry = grid.entry((x, y)).or_default();
        entry.0 += cell.metrics.errors;
        entry.1 += cell.metrics.attempts;
        entry.2 += cell.metrics.errors_by_class.get("53300").copied().unwrap_or(0);
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(&err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{workload}: failed attempts (share; 53300 = too many clients)"),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(110)
            .build_cartesian_2d(0f64..pools.len() as f64, 0f64..budgets.len() as f64)
            .map_err(&err)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(pools.len() * 2 + 1)
            .y_labels(budgets.len() * 2 + 1)
            .x_label_formatter(&|v| label_at(*v, &pools, ""))
            .y_label_formatter(&|v| label_at(*v, &budgets, "max_conn "))
            .x_desc("total pool = instances × pool size")
            .draw()
            .map_err(&err)?;
        for (&(x, y), &(errors, attempts, refused)) in &grid {
            let share = if attempts > 0 {
                errors as f64 / attempts as f64
            } else {
                0.0
            };
            let fill = heat(share);
            let (x0, y0) = (x as f64, y as f64);
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x0 + 0.03, y0 + 0.03), (x0 + 0.97, y0 + 0.97)],
                    fill.filled(),
                )))
                .map_err(&err)?;
            let text = if refused > 0 {
                format!("{:.0}% ({refused}×53300)", share * 100.0)
            } else {
                format!("{:.1}%", share * 100.0)
            };
            chart
                .draw_series(std::iter::once(Text::new(
                    text,
                    (x0 + 0.08, y0 + 0.55),
                    ("sans-serif", 12).into_font().color(&BLACK),
                )))
                .map_err(&err)?;
        }
        root.present().map_err(&err)?;
    }
    Ok(Plot {
        file: format!("errors-{}.svg", slug(workload)),
        title: format!("{workload}: errors by total pool size and max_connections"),
        svg,
    })
}

/// The label of the category whose middle is at `v` (labels fall on .5).
fn label_at(v: f64, values: &[u32], prefix: &str) -> String {
    let i = v.floor() as usize;
    if (v - v.floor() - 0.5).abs() < 1e-6 && i < values.len() {
        format!("{prefix}{}", values[i])
    } else {
        String::new()
    }
}

/// Green (no errors) through yellow to red (all failed).
fn heat(share: f64) -> RGBColor {
    let s = share.clamp(0.0, 1.0).sqrt();
    let (r, g) = if s < 0.5 {
        (120.0 + 270.0 * s, 200.0)
    } else {
        (255.0, 200.0 - 300.0 * (s - 0.5))
    };
    RGBColor(r.min(255.0) as u8, g.max(40.0) as u8, 90)
}

/// Foreground p50 and p99 per second through a migration, its phases shaded.
pub fn migration_timeline(record: &MigrationRecord) -> Result<Plot, PlotError> {
    const PLOT: &str = "migration-latency";
    let err = failed(PLOT);
    let seconds = &record.metrics.timeline;
    let end_s = record
        .phases
        .iter()
        .map(|p| p.to_ms / 1000.0)
        .fold(seconds.len() as f64, f64::max);
    let y_top = seconds.iter().map(|s| s.p99_us as f64 / 1000.0).fold(1.0, f64::max) * 1.15;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(&err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("Foreground latency through {}", record.migration.source),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..end_s.max(1.0), 0f64..y_top)
            .map_err(&err)?;
        chart
            .configure_mesh()
            .x_desc("seconds since measurement began")
            .y_desc("milliseconds, end to end")
            .draw()
            .map_err(&err)?;
        let shaded: Vec<_> = record
            .phases
            .iter()
            .filter(|p| p.name != "before" && p.name != "after")
            .collect();
        // Phases in the order they first happened.
        let mut names: Vec<&str> = Vec::new();
        for phase in &shaded {
            if !names.contains(&phase.name.as_str()) {
                names.push(&phase.name);
            }
        }
        for (i, name) in names.iter().enumerate() {
            let c = color(i + 2);
            chart
                .draw_series(shaded.iter().filter(|p| p.name == *name).map(|p| {
                    Rectangle::new(
                        [(p.from_ms / 1000.0, 0.0), (p.to_ms / 1000.0, y_top)],
                        c.mix(0.18).filled(),
                    )
                }))
                .map_err(&err)?
                .label(name.to_string())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], c.mix(0.35).filled()));
        }
        // Seconds are plotted at their middle.
        for (i, (label, quantile)) in [("p50", 50), ("p99", 99)].into_iter().enumerate() {
            let c = color(i);
            let points: Vec<(f64, f64)> = seconds
                .iter()
                .filter(|s| s.attempts > 0)
                .map(|s| {
                    let us = if quantile == 50 { s.p50_us } else { s.p99_us };
                    (s.second as f64 + 0.5, us as f64 / 1000.0)
                })
                .collect();
            chart
                .draw_series(LineSeries::new(points, c.stroke_width(2)))
                .map_err(&err)?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        }
        draw_legend(&mut chart).map_err(&err)?;
        root.present().map_err(&err)?;
    }
    Ok(Plot {
        file: format!("migration-latency-{}.svg", slug(&record.settings.cell.workload)),
        title: format!(
            "{}: latency through the migration ({})",
            record.settings.cell.workload, record.migration.source
        ),
        svg,
    })
}

/// Every plot the run's data allows.
pub fn all(cells: &[CellRecord], migrations: &[MigrationRecord]) -> Result<Vec<Plot>, PlotError> {
    let mut plots = Vec::new();
    let mut workloads: Vec<&str> = Vec::new();
    for cell in cells {
        if !workloads.contains(&cell.settings.workload.as_str()) {
            workloads.push(&cell.settings.workload);
        }
    }
    for workload in workloads {
        let of_workload: Vec<CellRecord> = cells
            .iter()
            .filter(|c| c.settings.workload == workload)
            .cloned()
            .collect();
        plots.push(goodput(workload, &of_workload)?);
        plots.push(p99(workload, &of_workload)?);
        plots.push(errors_heatmap(workload, &of_workload)?);
        plots.push(pool_wait(workload, &of_workload)?);
    }
    for migration in migrations {
        plots.push(migration_timeline(migration)?);
    }
    Ok(plots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heat_goes_from_green_to_red() {
        let none = heat(0.0);
        let all = heat(1.0);
        assert!(none.1 > none.0, "{none:?}");
        assert!(all.0 > all.1, "{all:?}");
    }

    #[test]
    fn labels_sit_in_the_middle_of_categories() {
        assert_eq!(label_at(0.5, &[4, 8], ""), "4");
        assert_eq!(label_at(1.5, &[4, 8], "mc "), "mc 8");
        assert_eq!(label_at(1.0, &[4, 8], ""), "");
        assert_eq!(label_at(2.5, &[4, 8], ""), "");
    }

    #[test]
    fn lines_draw_an_svg_with_the_legend() {
        let mut series = BTreeMap::new();
        series.insert(100, vec![(1.0, 10.0), (2.0, 19.0), (4.0, 30.0)]);
        series.insert(20, vec![(1.0, 9.0), (2.0, 18.0)]);
        let svg = lines_against_pool("t.svg", "T", "y", &series, None).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        assert!(svg.contains("max_connections 100") && svg.contains("max_connections 20"));
        assert!(svg.matches("<polyline").count() >= 2, "a line per max_connections");
    }
}
