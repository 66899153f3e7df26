//! CSV for scripts (`--format csv`): one row per cell, per recommendation,
//! per compared metric, a header row first. Formats what records and
//! analysis hold; computes nothing beyond picking the headline figures.

use crate::analysis::{Comparison, Recommendation};
use crate::driver::Load;
use crate::record::CellRecord;

/// A table that could not be written (a field the CSV writer refused).
#[derive(Debug, thiserror::Error)]
#[error("writing CSV: {0}")]
pub struct CsvError(String);

fn table(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> Result<String, CsvError> {
    let mut writer = ::csv::Writer::from_writer(Vec::new());
    writer.write_record(header).map_err(|e| CsvError(e.to_string()))?;
    for row in rows {
        writer.write_record(&row).map_err(|e| CsvError(e.to_string()))?;
    }
    let bytes = writer.into_inner().map_err(|e| CsvError(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| CsvError(e.to_string()))
}

fn opt(value: Option<impl ToString>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

/// Columns of [`cells_csv`].
pub const CELL_COLUMNS: &[&str] = &[
    "cell",
    "workload",
    "strategy",
    "pool",
    "pool_size",
    "instances",
    "clients",
    "rate_per_s",
    "max_connections",
    "seed",
    "measured_s",
    "attempts",
    "ok",
    "errors",
    "error_rate",
    "throughput_per_s",
    "goodput_per_s",
    "worst_p99_ms",
    "invariants_hold",
    "slo_failed",
];

/// One row per cell, `cell` its line in cells.jsonl (1-based).
pub fn cells_csv(cells: &[CellRecord]) -> Result<String, CsvError> {
    let rows = cells.iter().enumerate().map(|(i, c)| {
        let s = &c.settings;
        let (clients, rate) = match s.driver.load {
            Load::Closed { clients } => (Some(clients), None),
            Load::Open { rate_per_s, .. } => (None, Some(rate_per_s)),
        };
        vec![
            (i + 1).to_string(),
            s.workload.clone(),
            opt(c.strategy.as_ref()),
            s.pool.kind.to_string(),
            s.pool.size.to_string(),
            s.instances.to_string(),
            opt(clients),
            opt(rate),
            c.postgres.max_connections.to_string(),
            s.driver.seed.to_string(),
            c.metrics.measured_s.to_string(),
            c.metrics.attempts.to_string(),
            c.metrics.ok.to_string(),
            c.metrics.errors.to_string(),
            c.metrics.error_rate.to_string(),
            c.metrics.throughput_per_s.to_string(),
            c.business.goodput_per_s.to_string(),
            c.metrics.worst_p99_ms().to_string(),
            c.invariants_hold().to_string(),
            c.slo.results.iter().filter(|r| !r.pass).count().to_string(),
        ]
    });
    table(CELL_COLUMNS, rows)
}

/// One row per recommendation (a sweep's workloads): the knee, the USL fit
/// and max_connections; empty where there is none.
pub fn recommendations_csv(recommendations: &[Recommendation]) -> Result<String, CsvError> {
    let header = [
        "workload",
        "cells",
        "knee_total_pool",
        "knee_pool_per_instance",
        "knee_goodput_per_s",
        "knee_p99_ms",
        "peak_goodput_per_s",
        "p99_bound_ms",
        "max_connections",
        "usl_sigma",
        "usl_kappa",
        "usl_r_squared",
    ];
    let rows = recommendations.iter().map(|r| {
        let knee = r.knee.as_ref();
        let per_instance = knee.map(|k| {
            k.pool_per_instance
                .iter()
                .map(|(instances, pool)| format!("{instances}:{pool}"))
                .collect::<Vec<_>>()
                .join(" ")
        });
        let usl = r.usl.as_ref().map(|u| &u.fit);
        vec![
            r.workload.clone(),
            r.cells.len().to_string(),
            opt(knee.map(|k| k.total_pool)),
            opt(per_instance),
            opt(knee.map(|k| k.goodput_per_s)),
            opt(knee.map(|k| k.p99_ms)),
            opt(knee.map(|k| k.peak_goodput_per_s)),
            opt(r.p99_bound.as_ref().map(|(ms, _)| ms)),
            opt(r.max_connections.as_ref().map(|m| m.recommended)),
            opt(usl.map(|f| f.sigma)),
            opt(usl.map(|f| f.kappa)),
            opt(usl.map(|f| f.r_squared)),
        ]
    });
    table(&header, rows)
}

/// One row per compared metric: the samples' means and counts, the change,
/// its interval and the verdict (snake_case, as in the JSON).
pub fn comparison_csv(comparison: &Comparison) -> Result<String, CsvError> {
    let header = [
        "configuration",
        "metric",
        "unit",
        "worse",
        "baseline_n",
        "baseline_mean",
        "current_n",
        "current_mean",
        "change",
        "interval_low",
        "interval_high",
        "verdict",
    ];
    let mean = |v: &[f64]| {
        if v.is_empty() {
            String::new()
        } else {
            (v.iter().sum::<f64>() / v.len() as f64).to_string()
        }
    };
    let rows = comparison.metrics.iter().map(|m| {
        vec![
            m.configuration.clone(),
            m.metric.clone(),
            m.unit.clone(),
            word(&m.worse),
            m.baseline.len().to_string(),
            mean(&m.baseline),
            m.current.len().to_string(),
            mean(&m.current),
            m.change.to_string(),
            opt(m.interval.map(|(low, _)| low)),
            opt(m.interval.map(|(_, high)| high)),
            word(&m.verdict),
        ]
    });
    table(&header, rows)
}

/// A unit enum's serde name (`lower`, `regression`).
fn word(value: &impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(word)) => word,
        _ => String::new(),
    }
}
