//! A regression gate: two runs' cells compared per configuration, per
//! operation and per normalised query, with run-to-run noise judged by
//! Welch's t interval over repeated cells.
//!
//! A change is a regression only when it is worse than the threshold AND
//! its confidence interval lies entirely on the worse side of zero. Welch's
//! interval, not a bootstrap: with the three to five repeats a CI job can
//! afford, a bootstrap of the means is far too narrow (it flagged +20% on a
//! same-build comparison here), while Student's t with few degrees of
//! freedom widens as it should. With a single cell per side there is no run-to-run noise to judge
//! by, and the change is reported as inconclusive, never as a regression.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::driver::Load;
use crate::record::CellRecord;

/// Statements compared: those with at least this many calls on both sides.
const MIN_CALLS: i64 = 20;
/// A percentile is compared only from cells where at least this many
/// attempts lie beyond it (p99 needs 1,000 attempts, p95 200): a p99 of 60
/// attempts is their maximum, and maxima are not comparable.
const MIN_TAIL_SAMPLES: f64 = 10.0;
/// Differences of means below this many milliseconds never count: below
/// the resolution of a latency histogram bucket or of pg_stat_statements'
/// timing on a busy machine (BEGIN moving from 0.4 to 0.8 µs is not news).
const MIN_ABSOLUTE_MS: f64 = 0.05;

/// How to compare.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct CompareOptions {
    /// Relative change that counts, e.g. 0.10 for 10%.
    pub threshold: f64,
    /// Confidence of the interval, e.g. 0.95.
    pub confidence: f64,
}

/// Which way is worse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Worse {
    /// Lower is worse (goodput).
    Lower,
    /// Higher is worse (latency, statement time).
    Higher,
}

/// The verdict on one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Worse beyond the threshold and beyond noise.
    Regression,
    /// Better beyond the threshold and beyond noise.
    Improvement,
    /// Within the threshold, or within noise.
    Unchanged,
    /// Beyond the threshold, but one cell per side gives no noise estimate.
    Inconclusive,
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Verdict::Regression => "REGRESSION",
            Verdict::Improvement => "improved",
            Verdict::Unchanged => "ok",
            Verdict::Inconclusive => "inconclusive (1 run per side)",
        }
    }
}

/// One metric compared.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetricComparison {
    /// The configuration, e.g. "goal-count pool deadpool 8 × 1, 64 clients, max_connections 100".
    pub configuration: String,
    /// The metric, e.g. "goodput", "p99 initialize", "mean time: SELECT count(*) …".
    pub metric: String,
    /// Unit of the values.
    pub unit: String,
    /// Which way is worse.
    pub worse: Worse,
    /// Baseline samples (one per repeated cell).
    pub baseline: Vec<f64>,
    /// Current samples.
    pub current: Vec<f64>,
    /// Relative change of the means, current / baseline − 1.
    pub change: f64,
    /// Welch's interval of the change, when both sides have two samples or more.
    pub interval: Option<(f64, f64)>,
    /// The verdict.
    pub verdict: Verdict,
}

/// Everything compared.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    /// Options used.
    pub options: CompareOptions,
    /// Per metric.
    pub metrics: Vec<MetricComparison>,
    /// Configurations present on one side only.
    pub unmatched: Vec<String>,
}

impl Comparison {
    /// Whether any metric regressed.
    pub fn regressed(&self) -> bool {
        self.metrics.iter().any(|m| m.verdict == Verdict::Regression)
    }
}

/// Why two runs cannot be compared.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// No configuration appears in both.
    #[error("the runs share no configuration (workload, strategy, pool, instances, load, max_connections): nothing to compare; baseline has {baseline:?}, current has {current:?}")]
    NothingInCommon {
        /// Baseline's configurations.
        baseline: Vec<String>,
        /// Current's configurations.
        current: Vec<String>,
    },
}

/// The configuration a cell measured, without what varies between runs of
/// the same thing (the seed) or between the builds under comparison (the
/// data's migration state).
pub fn configuration(cell: &CellRecord) -> String {
    let s = &cell.settings;
    let load = match s.driver.load {
        Load::Closed { clients } => format!("{clients} clients"),
        Load::Open { rate_per_s, .. } => format!("{rate_per_s}/s open loop"),
    };
    let strategy = cell
        .strategy
        .as_deref()
        .or(s.overrides.strategy.as_deref())
        .map_or(String::new(), |st| format!(" ({st})"));
    format!(
        "{}{strategy} · {} {} × {} · {load} · max_connections {}",
        s.workload, s.pool.kind, s.pool.size, s.instances, cell.postgres.max_connections
    )
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

fn variance(values: &[f64]) -> f64 {
    let m = mean(values);
    values.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (values.len() as f64 - 1.0).max(1.0)
}

/// Student's t quantile `p` with `df` degrees of freedom, fractional df
/// included (Welch–Satterthwaite's are): statrs' inverse CDF, not a series
/// (the one this replaced was ~22% narrow at df 1.6). `df` below a tenth,
/// or a `p` outside (0, 1), has no useful interval: infinite.
fn t_quantile(p: f64, df: f64) -> f64 {
    use statrs::distribution::{ContinuousCDF, StudentsT};
    match StudentsT::new(0.0, 1.0, df.max(0.1)) {
        Ok(t) if p > 0.0 && p < 1.0 => t.inverse_cdf(p),
        _ => f64::INFINITY,
    }
}

/// Welch's interval of mean(current) − mean(baseline), relative to
/// mean(baseline).
fn welch_interval(baseline: &[f64], current: &[f64], confidence: f64) -> (f64, f64) {
    let (nb, nc) = (baseline.len() as f64, current.len() as f64);
    let (vb, vc) = (variance(baseline) / nb, variance(current) / nc);
    let se = (vb + vc).sqrt();
    // Welch–Satterthwaite degrees of freedom (both variances zero: no noise seen).
    let df = if vb + vc > 0.0 {
        (vb + vc).powi(2) / (vb * vb / (nb - 1.0) + vc * vc / (nc - 1.0))
    } else {
        nb + nc - 2.0
    };
    let t = t_quantile(1.0 - (1.0 - confidence) / 2.0, df.max(1.0));
    let b = mean(baseline);
    let diff = mean(current) - b;
    if b > 0.0 {
        ((diff - t * se) / b, (diff + t * se) / b)
    } else {
        (0.0, 0.0)
    }
}

fn judge(
    configuration: &str,
    metric: String,
    unit: &str,
    worse: Worse,
    baseline: Vec<f64>,
    current: Vec<f64>,
    options: &CompareOptions,
) -> MetricComparison {
    let (b, c) = (mean(&baseline), mean(&current));
    let change = if b > 0.0 { c / b - 1.0 } else { 0.0 };
    let signed = |x: f64| if worse == Worse::Higher { x } else { -x };
    let interval =
        (baseline.len() >= 2 && current.len() >= 2).then(|| welch_interval(&baseline, &current, options.confidence));
    let beyond_resolution = unit != "ms" || (c - b).abs() >= MIN_ABSOLUTE_MS;
    let beyond_threshold = change.abs() > options.threshold && beyond_resolution;
    let verdict = match interval {
        _ if !beyond_threshold => Verdict::Unchanged,
        None => Verdict::Inconclusive,
        Some((low, high)) => {
            let (worse_low, worse_high) = (signed(low).min(signed(high)), signed(low).max(signed(high)));
            if worse_low > 0.0 {
                Verdict::Regression
            } else if worse_high < 0.0 {
                Verdict::Improvement
            } else {
                Verdict::Unchanged
            }
        }
    };
    MetricComparison {
        configuration: configuration.to_string(),
        metric,
        unit: unit.to_string(),
        worse,
        baseline,
        current,
        change,
        interval,
        verdict,
    }
}

/// Compares `current` against `baseline`.
pub fn compare(
    baseline: &[CellRecord],
    current: &[CellRecord],
    options: &CompareOptions,
) -> Result<Comparison, CompareError> {
    let group = |cells: &[CellRecord]| {
        let mut groups: BTreeMap<String, Vec<CellRecord>> = BTreeMap::new();
        for cell in cells {
            groups.entry(configuration(cell)).or_default().push(cell.clone());
        }
        groups
    };
    let (base, cur) = (group(baseline), group(current));
    let common: Vec<&String> = base.keys().filter(|k| cur.contains_key(*k)).collect();
    if common.is_empty() {
        return Err(CompareError::NothingInCommon {
            baseline: base.keys().cloned().collect(),
            current: cur.keys().cloned().collect(),
        });
    }
    let mut unmatched: Vec<String> = base.keys().filter(|k| !cur.contains_key(*k)).cloned().collect();
    unmatched.extend(cur.keys().filter(|k| !base.contains_key(*k)).cloned());
    let mut metrics = Vec::new();
    for key in common {
        let (b, c) = (&base[key], &cur[key]);
        let per = |cells: &[CellRecord], f: &dyn Fn(&CellRecord) -> Option<f64>| -> Vec<f64> {
            cells.iter().filter_map(f).collect()
        };
        metrics.push(judge(
            key,
            "goodput".into(),
            "/s",
            Worse::Lower,
            per(b, &|r| Some(r.business.goodput_per_s)),
            per(c, &|r| Some(r.business.goodput_per_s)),
            options,
        ));
        let operations: Vec<String> = b[0].metrics.operations.iter().map(|op| op.name.clone()).collect();
        for operation in &operations {
            for (label, tail, pick) in [
                (
                    "p95",
                    0.05,
                    (|op: &crate::measure::OperationMetrics| op.end_to_end.p95_us) as fn(&_) -> u64,
                ),
                ("p99", 0.01, |op: &crate::measure::OperationMetrics| {
                    op.end_to_end.p99_us
                }),
            ] {
                let enough = |count: u64| count as f64 * tail >= MIN_TAIL_SAMPLES;
                let values = |cells: &[CellRecord]| {
                    per(cells, &|r| {
                        r.metrics
                            .operations
                            .iter()
                            .find(|op| &op.name == operation && op.end_to_end.count > 0)
                            .map(|op| (op.end_to_end.count, pick(op) as f64 / 1000.0))
                            .filter(|&(count, _)| enough(count))
                            .map(|(_, value)| value)
                    })
                };
                let (bv, cv) = (values(b), values(c));
                let all_cells = |cells: &[CellRecord]| cells.len();
                if bv.len() == all_cells(b) && cv.len() == all_cells(c) && !bv.is_empty() {
                    metrics.push(judge(
                        key,
                        format!("{label} {operation}"),
                        "ms",
                        Worse::Higher,
                        bv,
                        cv,
                        options,
                    ));
                }
            }
        }
        // pg_stat_statements: mean execution time per normalised query.
        let queries = |cells: &[CellRecord]| -> BTreeMap<String, Vec<f64>> {
            let mut out: BTreeMap<String, Vec<f64>> = BTreeMap::new();
            for cell in cells {
                for statement in &cell.server.top_statements {
                    if statement.calls >= MIN_CALLS {
                        out.entry(normalise_query(&statement.query))
                            .or_default()
                            .push(statement.mean_exec_ms);
                    }
                }
            }
            out
        };
        let (bq, cq) = (queries(b), queries(c));
        for (query, bv) in &bq {
            if let Some(cv) = cq.get(query) {
                let shown: String = query.chars().take(70).collect();
                let shown = if shown.len() < query.len() {
                    format!("{shown}…")
                } else {
                    shown
                };
                metrics.push(judge(
                    key,
                    format!("mean time: {shown}"),
                    "ms",
                    Worse::Higher,
                    bv.clone(),
                    cv.clone(),
                    options,
                ));
            }
        }
    }
    Ok(Comparison {
        options: *options,
        metrics,
        unmatched,
    })
}

/// A query as pg_stat_statements normalised it, without leading `--`
/// comment lines and with whitespace collapsed.
fn normalise_query(query: &str) -> String {
    let body: Vec<&str> = query
        .lines()
        .skip_while(|l| l.trim().is_empty() || l.trim_start().starts_with("--"))
        .collect();
    body.join(" ").split_whitespace().collect::<Vec<_>>().join(" ")
}

fn value(v: f64, unit: &str) -> String {
    match unit {
        "/s" => format!("{v:.1}/s"),
        _ => format!("{v:.3} {unit}"),
    }
}

/// The comparison as a Markdown table, fit for a CI job summary.
pub fn markdown(comparison: &Comparison) -> String {
    use std::fmt::Write;
    let o = &comparison.options;
    let mut out = String::new();
    let regressions = comparison
        .metrics
        .iter()
        .filter(|m| m.verdict == Verdict::Regression)
        .count();
    let _ = writeln!(
        out,
        "## contend compare: {}\n",
        if regressions == 0 {
            "no regression".to_string()
        } else {
            format!("{regressions} regression(s)")
        }
    );
    let _ = writeln!(
        out,
        "A change is a regression when it is worse than {:.0}% and its {:.0}% interval (Welch's t over \
         the repeated cells, relative to the baseline's mean) lies entirely on the worse side; \
         differences under {MIN_ABSOLUTE_MS} ms never count, and a percentile is compared only when every \
         cell has {MIN_TAIL_SAMPLES} attempts or more beyond it. Values are means over repeated cells.\n",
        o.threshold * 100.0,
        o.confidence * 100.0
    );
    let _ = writeln!(
        out,
        "| configuration | metric | baseline | current | change | interval | verdict |"
    );
    let _ = writeln!(out, "| --- | --- | ---: | ---: | ---: | --- | --- |");
    for m in &comparison.metrics {
        let interval = m.interval.map_or("—".into(), |(low, high)| {
            format!("{:+.1}% … {:+.1}%", low * 100.0, high * 100.0)
        });
        let verdict = if m.verdict == Verdict::Regression {
            format!("**{}**", m.verdict.label())
        } else {
            m.verdict.label().to_string()
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} (n={}) | {} (n={}) | {:+.1}% | {interval} | {verdict} |",
            m.configuration.replace('|', "\\|"),
            m.metric.replace('|', "\\|"),
            value(mean(&m.baseline), &m.unit),
            m.baseline.len(),
            value(mean(&m.current), &m.unit),
            m.current.len(),
            m.change * 100.0,
        );
    }
    if !comparison.unmatched.is_empty() {
        let _ = writeln!(
            out,
            "\nOn one side only (not compared): {}",
            comparison.unmatched.join("; ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> CompareOptions {
        CompareOptions {
            threshold: 0.10,
            confidence: 0.95,
        }
    }

    #[test]
    fn a_clear_drop_is_a_regression_and_noise_is_not() {
        let o = options();
        let drop = judge(
            "c",
            "goodput".into(),
            "/s",
            Worse::Lower,
            vec![100.0, 102.0, 98.0],
            vec![60.0, 62.0, 59.0],
            &o,
        );
        assert_eq!(drop.verdict, Verdict::Regression, "{drop:?}");
        let (low, high) = drop.interval.unwrap();
        assert!(low < -0.35 && high < -0.35, "{drop:?}");
        // A 12% mean difference inside wide noise is not a regression.
        let noisy = judge(
            "c",
            "goodput".into(),
            "/s",
            Worse::Lower,
            vec![100.0, 60.0, 140.0],
            vec![80.0, 130.0, 54.0],
            &o,
        );
        assert_eq!(noisy.verdict, Verdict::Unchanged, "{noisy:?}");
        // Within the threshold: unchanged whatever the interval says.
        let small = judge(
            "c",
            "p99 x".into(),
            "ms",
            Worse::Higher,
            vec![10.0, 10.0, 10.1],
            vec![10.5, 10.6, 10.5],
            &o,
        );
        assert_eq!(small.verdict, Verdict::Unchanged);
        // Latency halving is an improvement.
        let faster = judge(
            "c",
            "p99 x".into(),
            "ms",
            Worse::Higher,
            vec![10.0, 11.0, 10.5],
            vec![5.0, 5.2, 5.1],
            &o,
        );
        assert_eq!(faster.verdict, Verdict::Improvement);
    }

    #[test]
    fn sub_resolution_changes_do_not_count() {
        let m = judge(
            "c",
            "mean time: BEGIN".into(),
            "ms",
            Worse::Higher,
            vec![0.0004, 0.0004, 0.0005],
            vec![0.0009, 0.0008, 0.0009],
            &options(),
        );
        assert_eq!(m.verdict, Verdict::Unchanged, "{m:?}");
        assert_eq!(
            normalise_query("-- Claims a goal.\nUPDATE  t\n SET a = $1"),
            "UPDATE t SET a = $1"
        );
    }

    #[test]
    fn one_cell_per_side_is_inconclusive_never_a_regression() {
        let m = judge(
            "c",
            "goodput".into(),
            "/s",
            Worse::Lower,
            vec![100.0],
            vec![50.0],
            &options(),
        );
        assert_eq!(m.verdict, Verdict::Inconclusive);
        assert!(m.interval.is_none());
    }

    #[test]
    fn quantiles_match_the_tables_at_whole_and_fractional_df() {
        // Whole df: the printed tables; fractional: scipy.stats.t.ppf(0.975, df).
        for (df, table) in [
            (1.0, 12.706),
            (1.3, 7.500529),
            (1.6, 5.517245),
            (2.0, 4.303),
            (2.2, 3.948721),
            (2.7, 3.392148),
            (3.0, 3.182),
            (3.5, 2.940089),
            (4.0, 2.776),
            (7.9, 2.311095),
            (10.0, 2.228),
            (30.0, 2.042272),
        ] {
            let t = t_quantile(0.975, df);
            assert!((t - table).abs() / table < 0.001, "df {df}: {t} vs {table}");
        }
        assert!(
            (t_quantile(0.05, 1e6) + 1.644854).abs() < 1e-4,
            "the normal's, at huge df"
        );
    }

    /// Three runs against two, both noisy alike: Welch's df is 1.68. The old
    /// series rounded it onto df 2 (t 4.30 where Student's is 5.0), an
    /// interval narrow enough to exclude zero: a regression out of noise.
    #[test]
    fn a_noisy_three_against_two_is_not_called_a_regression() {
        let baseline = [98.0, 100.0, 102.0];
        let current = [109.0, 113.0];
        let (nb, nc) = (3.0, 2.0);
        let (vb, vc) = (variance(&baseline) / nb, variance(&current) / nc);
        let df = (vb + vc).powi(2) / (vb * vb / (nb - 1.0) + vc * vc / (nc - 1.0));
        assert!((1.5..2.0).contains(&df), "df {df}");
        let (low, high) = welch_interval(&baseline, &current, 0.95);
        assert!(low < 0.0 && high > 0.0, "the interval holds no change: {low} {high}");
        let se = (vb + vc).sqrt();
        let old_low = (mean(&current) - mean(&baseline) - 4.303 * se) / mean(&baseline);
        assert!(old_low > 0.0, "with the old quantile it called a change: {old_low}");
        let m = judge(
            "c",
            "p99".into(),
            "ms",
            Worse::Higher,
            baseline.to_vec(),
            current.to_vec(),
            &options(),
        );
        assert_ne!(m.verdict, Verdict::Regression, "{m:?}");
    }

    #[test]
    fn welch_brackets_the_change_and_widens_with_few_samples() {
        let (low, high) = welch_interval(&[10.0, 11.0, 12.0], &[20.0, 22.0, 24.0], 0.95);
        assert!(low < 1.1 && high > 1.1 && low > 0.5, "{low} {high}");
        let few = welch_interval(&[10.0, 12.0], &[11.0, 13.0], 0.95);
        let many = welch_interval(
            &[10.0, 12.0, 10.0, 12.0, 10.0, 12.0],
            &[11.0, 13.0, 11.0, 13.0, 11.0, 13.0],
            0.95,
        );
        assert!(few.1 - few.0 > 3.0 * (many.1 - many.0), "{few:?} {many:?}");
    }
}
