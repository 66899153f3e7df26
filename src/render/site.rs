//! The files of a report, rendered from a [`RunFile`] alone: summary.md,
//! plots/*.svg and index.html (the plots embedded, readable offline).
//!
//! Reads finished records only; never measures. Writes its files through
//! results, whole.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use super::plots::{self, Plot};
use super::text::{
    bottleneck_name, diagnosis_text, errors_text, recommendation_text, scorecard_text, slo_measured_text, time_split,
};
use crate::record::{cell_key, record_key, CellRecord, MigrationRecord};
use crate::results::{write_whole, ResultsError, RunFile};

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    /// A plot failed.
    #[error(transparent)]
    Plot(#[from] plots::PlotError),
    /// A file could not be written.
    #[error(transparent)]
    Results(#[from] ResultsError),
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Written {
    /// index.html.
    pub index: PathBuf,
    /// summary.md.
    pub summary: PathBuf,
    /// plots/*.svg.
    pub plots: Vec<PathBuf>,
}

/// Writes summary.md, plots/*.svg and index.html for `run` into `dir`.
pub fn write_report(dir: &Path, run: &RunFile) -> Result<Written, SiteError> {
    let plots = plots::all(&run.cells, &run.migrations)?;
    let plot_dir = dir.join("plots");
    std::fs::create_dir_all(&plot_dir).map_err(|error| ResultsError::Write {
        path: plot_dir.clone(),
        error,
    })?;
    let mut plot_paths = Vec::new();
    for plot in &plots {
        let path = plot_dir.join(&plot.file);
        write_whole(&path, plot.svg.as_bytes())?;
        plot_paths.push(path);
    }
    let summary = dir.join("summary.md");
    write_whole(&summary, summary_markdown(run, &plots).as_bytes())?;
    let index = dir.join("index.html");
    write_whole(&index, index_html(dir, run, &plots).as_bytes())?;
    Ok(Written {
        index,
        summary,
        plots: plot_paths,
    })
}

use super::markup::{escape_html as escape, slug};

const POOLER_HEADER: [&str; 9] = [
    "cell",
    "pooler",
    "app pools",
    "goodput/s",
    "peak cl_waiting",
    "app pool wait ms",
    "pooler wait ms",
    "in the database ms",
    "PgBouncer CPU s",
];

/// Rows of the pooler table: one per cell that went through a pooler.
fn pooler_rows(cells: &[CellRecord]) -> Vec<[String; 9]> {
    cells
        .iter()
        .enumerate()
        .filter_map(|(i, cell)| {
            let pooler = cell.pooler.as_ref()?;
            let config = |key: &str| pooler.info.config.get(key).cloned().unwrap_or_default();
            let split = time_split(cell, pooler);
            let ms =
                |f: fn(&super::text::TimeSplit) -> f64| split.as_ref().map_or("–".into(), |s| format!("{:.2}", f(s)));
            Some([
                format!("#{}", i + 1),
                format!(
                    "{} {} pool {}",
                    pooler.info.version,
                    config("pool_mode"),
                    config("default_pool_size")
                ),
                format!("{} × {}", cell.settings.instances, cell.settings.pool.size),
                format!("{:.1}", cell.business.goodput_per_s),
                pooler.samples.max_cl_waiting().to_string(),
                ms(|s| s.app_pool_wait_ms),
                ms(|s| s.pooler_wait_ms),
                ms(|s| s.in_db_ms),
                pooler.cpu_s.map_or("–".into(), |cpu| format!("{cpu:.2}")),
            ])
        })
        .collect()
}

/// Rows of the scorecard table: one per cell.
const DIAGNOSIS_HEADER: [&str; 4] = ["cell", "pools", "bottleneck", "why"];

/// One row per diagnosed cell (cells recorded before diagnoses have none).
fn diagnosis_rows(cells: &[CellRecord]) -> Vec<[String; 4]> {
    cells
        .iter()
        .enumerate()
        .filter_map(|(i, cell)| {
            let diagnosis = cell.diagnosis.as_ref()?;
            let sentence = diagnosis_text(diagnosis);
            let why = sentence
                .split_once(" — ")
                .map_or(sentence.as_str(), |(_, why)| why)
                .to_string();
            Some([
                format!("#{}", i + 1),
                format!("{} × {}", cell.settings.instances, cell.settings.pool.size),
                bottleneck_name(diagnosis.bottleneck).to_string(),
                why,
            ])
        })
        .collect()
}

fn scorecard_rows(cells: &[CellRecord]) -> Vec<[String; 8]> {
    cells
        .iter()
        .enumerate()
        .map(|(i, cell)| {
            let passed = cell.slo.results.iter().filter(|r| r.pass).count();
            let failing: Vec<String> = cell
                .slo
                .results
                .iter()
                .filter(|r| !r.pass)
                .map(|r| format!("{} (measured {})", r.objective, slo_measured_text(r)))
                .collect();
            [
                format!("#{}", i + 1),
                cell.settings.workload.clone(),
                format!("{} × {}", cell.settings.instances, cell.settings.pool.size),
                cell.postgres.max_connections.to_string(),
                format!("{:.1}/s", cell.business.goodput_per_s),
                format!("{:.1} ms", cell.metrics.worst_p99_ms()),
                if cell.slo.results.is_empty() {
                    "no [slo] declared".into()
                } else if failing.is_empty() {
                    format!("PASS {passed}/{}", cell.slo.results.len())
                } else {
                    format!("FAIL {passed}/{}", cell.slo.results.len())
                },
                failing.join("; "),
            ]
        })
        .collect()
}

/// The cells the server died under: what, when, why, how it came back, and
/// whether a later run measured the cell after all.
fn failed_rows(run: &RunFile) -> Vec<[String; 6]> {
    run.failed_cells
        .iter()
        .map(|failed| {
            let measured_later = run
                .cells
                .iter()
                // From the failed cell's settings, not its stored key: a key
                // an older contend wrote has another form.
                .position(|cell| record_key(cell) == cell_key(&failed.settings, failed.max_connections))
                .map_or("no: run again with --resume".to_string(), |n| {
                    format!("yes, cell #{}", n + 1)
                });
            [
                failed.key.clone(),
                format!("{:.1} s", failed.loss.after_s),
                failed.loss.reason.clone(),
                format!(
                    "{} ok · errors {}",
                    failed.loss.ok,
                    errors_text(&failed.loss.errors_by_class)
                ),
                match (&failed.recovery, failed.recovered_in_s) {
                    (Some(how), Some(took)) => format!("{how} in {took:.2} s"),
                    _ => "not recovered: the sweep stopped".to_string(),
                },
                measured_later,
            ]
        })
        .collect()
}

const FAILED_HEADER: [&str; 6] = [
    "cell",
    "server lost after",
    "reason",
    "before the loss",
    "recovery",
    "measured later",
];

const SCORECARD_HEADER: [&str; 8] = [
    "cell",
    "workload",
    "instances × pool",
    "max_connections",
    "goodput",
    "p99 (worst op)",
    "SLO",
    "failing objectives",
];

fn diff_rows(migration: &MigrationRecord) -> Vec<[String; 8]> {
    migration
        .plan_diffs
        .iter()
        .map(|d| {
            [
                d.query.clone(),
                d.scans_before.join(", "),
                d.scans_after.join(", "),
                format!("{:.3} → {:.3} ms", d.execution_ms.0, d.execution_ms.1),
                format!("{:.1}×", d.speedup),
                format!(
                    "hit {} → {}, read {} → {}",
                    d.shared_hit_blocks.0, d.shared_hit_blocks.1, d.shared_read_blocks.0, d.shared_read_blocks.1
                ),
                format!("{} → {}", d.rows_removed_by_filter.0, d.rows_removed_by_filter.1),
                format!("{} → {}", d.heap_fetches.0, d.heap_fetches.1),
            ]
        })
        .collect()
}

const DIFF_HEADER: [&str; 8] = [
    "query",
    "scans before",
    "scans after",
    "execution",
    "speed-up",
    "shared buffers",
    "rows removed by filter",
    "heap fetches",
];

fn window_rows(migration: &MigrationRecord) -> Vec<[String; 6]> {
    let f = &migration.foreground;
    [("before", &f.before), ("during", &f.during), ("after", &f.after)]
        .into_iter()
        .map(|(name, w)| {
            [
                name.to_string(),
                format!("{}–{}", w.from_second, w.to_second.min(99_999)),
                w.attempts.to_string(),
                w.errors.to_string(),
                if w.attempts == 0 {
                    "—".into()
                } else {
                    format!("{:.1}", w.end_to_end.p50_us as f64 / 1000.0)
                },
                if w.attempts == 0 {
                    "— (no whole second inside)".into()
                } else {
                    format!("{:.1}", w.end_to_end.p99_us as f64 / 1000.0)
                },
            ]
        })
        .collect()
}

const WINDOW_HEADER: [&str; 6] = ["window", "seconds", "attempts", "errors", "p50 ms", "p99 ms"];

fn markdown_table<const N: usize>(out: &mut String, header: [&str; N], rows: &[[String; N]]) {
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(out, "|{}", " --- |".repeat(N));
    for row in rows {
        let cells: Vec<String> = row.iter().map(|c| c.replace('|', "\\|")).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
}

fn html_table<const N: usize>(out: &mut String, header: [&str; N], rows: &[[String; N]]) {
    out.push_str("<table><thead><tr>");
    for h in header {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr></thead><tbody>\n");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let class = if cell.starts_with("FAIL") {
                " class=\"fail\""
            } else if cell.starts_with("PASS") {
                " class=\"pass\""
            } else {
                ""
            };
            let _ = write!(out, "<td{class}>{}</td>", escape(cell));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table>\n");
}

fn header_lines(run: &RunFile) -> Vec<String> {
    let m = &run.machine;
    let mut lines = vec![format!(
        "machine: {} · {} cores · {:.1} GiB · {} · kernel {}",
        m.hostname,
        m.cores,
        m.memory_bytes as f64 / (1u64 << 30) as f64,
        m.os,
        m.kernel
    )];
    if let Some(pg) = &run.postgres {
        lines.push(format!(
            "server: PostgreSQL {} · max_connections {} · shared_buffers {}",
            pg.version,
            pg.max_connections,
            pg.settings.get("shared_buffers").map_or("?", String::as_str)
        ));
    }
    lines.push(format!(
        "contend {} · written {} · {} cell(s) · {} migration(s)",
        run.contend_version,
        run.written_at,
        run.cells.len(),
        run.migrations.len()
    ));
    lines
}

fn migration_outcome(migration: &MigrationRecord) -> String {
    let mut out = String::new();
    for run in &migration.statements {
        let _ = writeln!(
            out,
            "line {}: {} — {:.2} s{}",
            run.statement.line,
            run.statement.sql.lines().next().unwrap_or_default(),
            (run.finished_ms - run.started_ms) / 1000.0,
            run.error.as_ref().map_or(String::new(), |e| format!(", FAILED: {e}"))
        );
    }
    for index in &migration.indexes {
        let _ = writeln!(
            out,
            "index {} on {}: {}{}",
            index.name,
            index.table,
            if index.valid { "valid" } else { "INVALID" },
            index.reason.as_ref().map_or(String::new(), |r| format!(" ({r})"))
        );
    }
    out
}

/// summary.md: the run in Markdown, for a CI job summary or a pull request.
pub fn summary_markdown(run: &RunFile, plots: &[Plot]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# contend run\n");
    for line in header_lines(run) {
        let _ = writeln!(out, "- {line}");
    }
    for rec in &run.recommendations {
        let _ = writeln!(
            out,
            "\n## Recommendation: {}\n\n```text\n{}```",
            rec.workload,
            recommendation_text(rec)
        );
    }
    if !run.cells.is_empty() {
        let _ = writeln!(out, "\n## SLO scorecard\n");
        markdown_table(&mut out, SCORECARD_HEADER, &scorecard_rows(&run.cells));
    }
    let diagnosed = diagnosis_rows(&run.cells);
    if !diagnosed.is_empty() {
        let _ = writeln!(out, "\n## Where the time went\n");
        markdown_table(&mut out, DIAGNOSIS_HEADER, &diagnosed);
    }
    let pooled = pooler_rows(&run.cells);
    if !pooled.is_empty() {
        let _ = writeln!(out, "\n## Through PgBouncer: where a transaction's time went\n");
        markdown_table(&mut out, POOLER_HEADER, &pooled);
    }
    if !run.failed_cells.is_empty() {
        let _ = writeln!(out, "\n## Cells the server died under\n");
        markdown_table(&mut out, FAILED_HEADER, &failed_rows(run));
    }
    for migration in &run.migrations {
        let _ = writeln!(
            out,
            "\n## Migration {}\n\n```text\n{}```\n",
            migration.migration.source,
            migration_outcome(migration)
        );
        markdown_table(&mut out, DIFF_HEADER, &diff_rows(migration));
        out.push('\n');
        markdown_table(&mut out, WINDOW_HEADER, &window_rows(migration));
    }
    if !plots.is_empty() {
        let _ = writeln!(out, "\n## Plots\n");
        for plot in plots {
            let _ = writeln!(out, "- [{}](plots/{})", plot.title, plot.file);
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}\
h1,h2{font-weight:600}table{border-collapse:collapse;margin:1em 0;font-size:14px}\
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}th{background:#f3f3f3}\
td.pass{color:#1a7f37;font-weight:600}td.fail{color:#c62828;font-weight:600}\
pre{background:#f6f8fa;padding:1em;white-space:pre-wrap;font-size:13px}figure{margin:1.5em 0}\
figcaption{font-weight:600;margin-bottom:.4em}";

/// Counts the plots the browser actually drew (an SVG with a non-empty
/// box, lines or shapes, and laid-out text) into `data-plots-drawn`.
const DRAWN_CHECK: &str = "window.addEventListener('load',function(){var figs=document.querySelectorAll('figure.plot svg');\
var drawn=0;figs.forEach(function(svg){var box=svg.getBBox();\
var shapes=Array.prototype.filter.call(svg.querySelectorAll('polyline,path,rect,circle,line'),function(e){var b=e.getBBox();return b.width>0||b.height>0;}).length;\
var text=Array.prototype.filter.call(svg.querySelectorAll('text'),function(t){return t.getComputedTextLength()>0;}).length;\
if(box.width>0&&box.height>0&&shapes>2&&text>2){drawn++;}});\
document.body.dataset.plots=figs.length;document.body.dataset.plotsDrawn=drawn;});";

/// index.html: everything on one page, the plots inline, no network needed.
pub fn index_html(dir: &Path, run: &RunFile, plots: &[Plot]) -> String {
    let title = dir
        .file_name()
        .map_or("contend run".into(), |n| n.to_string_lossy().into_owned());
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>contend · {}</title><style>{STYLE}</style></head><body>\n<h1>contend · {}</h1>\n<ul>",
        escape(&title),
        escape(&title)
    );
    for line in header_lines(run) {
        let _ = write!(out, "<li>{}</li>", escape(&line));
    }
    out.push_str("</ul>\n");
    for rec in &run.recommendations {
        let _ = write!(
            out,
            "<h2 id=\"recommendation-{}\">Recommendation: {}</h2>\n<pre>{}</pre>\n",
            slug(&rec.workload),
            escape(&rec.workload),
            escape(&recommendation_text(rec))
        );
    }
    let pooled = pooler_rows(&run.cells);
    if !pooled.is_empty() {
        out.push_str("<h2 id=\"pooler\">Through PgBouncer: where a transaction's time went</h2>\n");
        html_table(&mut out, POOLER_HEADER, &pooled);
    }
    if !run.cells.is_empty() {
        out.push_str("<h2 id=\"scorecard\">SLO scorecard</h2>\n");
        html_table(&mut out, SCORECARD_HEADER, &scorecard_rows(&run.cells));
        let diagnosed = diagnosis_rows(&run.cells);
        if !diagnosed.is_empty() {
            out.push_str("<h2 id=\"bottlenecks\">Where the time went</h2>\n");
            html_table(&mut out, DIAGNOSIS_HEADER, &diagnosed);
        }
        for best in run.recommendations.iter().filter_map(|r| r.knee.as_ref()) {
            if let Some(cell) = best
                .cells
                .first()
                .and_then(|&n| run.cells.get(n - 1))
                .filter(|c| !c.slo.results.is_empty())
            {
                let _ = writeln!(
                    out,
                    "<p>At the recommended size (cell #{}):</p><pre>{}</pre>",
                    best.cells[0],
                    escape(&scorecard_text(&cell.slo.results))
                );
            }
        }
    }
    if !run.failed_cells.is_empty() {
        out.push_str("<h2 id=\"failed\">Cells the server died under</h2>\n");
        html_table(&mut out, FAILED_HEADER, &failed_rows(run));
    }
    for migration in &run.migrations {
        let _ = write!(
            out,
            "<h2 id=\"migration\">Migration {}</h2>\n<pre>{}</pre>\n<h3>Plan diffs (EXPLAIN ANALYZE, BUFFERS)</h3>\n",
            escape(&migration.migration.source),
            escape(&migration_outcome(migration))
        );
        html_table(&mut out, DIFF_HEADER, &diff_rows(migration));
        out.push_str("<h3>Foreground latency</h3>\n");
        html_table(&mut out, WINDOW_HEADER, &window_rows(migration));
    }
    if !plots.is_empty() {
        out.push_str("<h2 id=\"plots\">Plots</h2>\n");
    }
    for plot in plots {
        let _ = write!(
            out,
            "<figure class=\"plot\" id=\"{}\"><figcaption>{}</figcaption>\n{}\n</figure>\n",
            slug(plot.file.trim_end_matches(".svg")),
            escape(&plot.title),
            plot.svg
        );
    }
    let _ = write!(out, "<script>{DRAWN_CHECK}</script>\n</body></html>\n");
    out
}
