//! Service-level objectives a workload declares in its `[slo]` table, and
//! the scorecard of one cell against them: PASS or FAIL per objective, with
//! the measured value.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::measure::CellMetrics;

/// The `[slo]` table of `workloads/<name>.toml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloSpec {
    /// p95 end-to-end per operation, milliseconds; `"*"` for every
    /// operation without its own entry.
    #[serde(default)]
    pub p95_ms: BTreeMap<String, f64>,
    /// p99 end-to-end per operation, milliseconds; `"*"` as above.
    #[serde(default)]
    pub p99_ms: BTreeMap<String, f64>,
    /// Failed attempts over attempts, at most (0.01 = 1%).
    #[serde(default)]
    pub max_error_rate: Option<f64>,
    /// Business successes per second, at least.
    #[serde(default)]
    pub min_goodput_per_s: Option<f64>,
}

/// An `[slo]` limit that makes no sense; the message names the key and
/// what to give instead.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SloError {
    /// A latency limit that is not a positive number of milliseconds.
    #[error("[slo] {table}.{operation} = {limit}: give a positive number of milliseconds")]
    Latency {
        /// `p95_ms` or `p99_ms`.
        table: &'static str,
        /// The operation the limit is for (`*` for every operation).
        operation: String,
        /// The limit given, milliseconds.
        limit: f64,
    },
    /// An error-rate limit outside 0..=1.
    #[error("[slo] max_error_rate = {rate}: give a share from 0 to 1, e.g. 0.01")]
    ErrorRate {
        /// The share given.
        rate: f64,
    },
    /// A goodput floor that is negative or not a number.
    #[error("[slo] min_goodput_per_s = {goodput}: give a number of successes per second")]
    Goodput {
        /// The floor given, successes per second.
        goodput: f64,
    },
}

/// One objective judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloResult {
    /// The objective, e.g. "p95 initialize <= 300 ms".
    pub objective: String,
    /// What was measured, in the objective's unit.
    pub measured: f64,
    /// The limit.
    pub limit: f64,
    /// Whether it was met.
    pub pass: bool,
}

impl SloSpec {
    /// Checks the limits make sense; the error names the key.
    pub fn validate(&self) -> Result<(), SloError> {
        for (table, limits) in [("p95_ms", &self.p95_ms), ("p99_ms", &self.p99_ms)] {
            for (operation, &limit) in limits {
                if !(limit > 0.0 && limit.is_finite()) {
                    return Err(SloError::Latency {
                        table,
                        operation: operation.clone(),
                        limit,
                    });
                }
            }
        }
        if let Some(rate) = self.max_error_rate {
            if !(0.0..=1.0).contains(&rate) {
                return Err(SloError::ErrorRate { rate });
            }
        }
        if let Some(goodput) = self.min_goodput_per_s {
            if !(goodput >= 0.0 && goodput.is_finite()) {
                return Err(SloError::Goodput { goodput });
            }
        }
        Ok(())
    }

    /// The p99 limit for `operation`: its own, else `"*"`.
    pub fn p99_limit(&self, operation: &str) -> Option<f64> {
        self.p99_ms.get(operation).or_else(|| self.p99_ms.get("*")).copied()
    }

    /// The strictest p99 limit over `operations`, for a knee that must stay
    /// within every operation's SLO.
    pub fn strictest_p99(&self, operations: &[String]) -> Option<f64> {
        operations
            .iter()
            .filter_map(|op| self.p99_limit(op))
            .min_by(f64::total_cmp)
    }

    /// Whether it declares anything.
    pub fn is_empty(&self) -> bool {
        self.p95_ms.is_empty()
            && self.p99_ms.is_empty()
            && self.max_error_rate.is_none()
            && self.min_goodput_per_s.is_none()
    }

    /// The scorecard of a cell: each declared objective, PASS or FAIL.
    /// Operations the cell never ran are skipped (nothing to judge).
    pub fn evaluate(&self, metrics: &CellMetrics, goodput_per_s: f64) -> Vec<SloResult> {
        let mut out = Vec::new();
        for (label, limits, quantile) in [("p95", &self.p95_ms, 95), ("p99", &self.p99_ms, 99)] {
            for operation in &metrics.operations {
                if operation.end_to_end.count == 0 {
                    continue;
                }
                let Some(&limit) = limits.get(&operation.name).or_else(|| limits.get("*")) else {
                    continue;
                };
                let measured_us = if quantile == 95 {
                    operation.end_to_end.p95_us
                } else {
                    operation.end_to_end.p99_us
                };
                let measured = measured_us as f64 / 1000.0;
                out.push(SloResult {
                    objective: format!("{label} {} <= {limit} ms", operation.name),
                    measured,
                    limit,
                    pass: measured <= limit,
                });
            }
        }
        if let Some(limit) = self.max_error_rate {
            out.push(SloResult {
                objective: format!("error rate <= {}%", limit * 100.0),
                measured: metrics.error_rate,
                limit,
                pass: metrics.error_rate <= limit,
            });
        }
        if let Some(limit) = self.min_goodput_per_s {
            out.push(SloResult {
                objective: format!("goodput >= {limit}/s"),
                measured: goodput_per_s,
                limit,
                pass: goodput_per_s >= limit,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::LatencySummary;
    use crate::measure::OperationMetrics;

    fn metrics(p95_ms: &[(&str, u64)], error_rate: f64) -> CellMetrics {
        let mut m: CellMetrics = serde_json::from_value(serde_json::json!({
            "measured_s": 1.0, "attempts": 0, "first_attempts": 0, "retries": 0, "ok": 0, "errors": 0,
            "warmup_attempts": 0, "throughput_per_s": 0.0, "goodput_per_s": 0.0, "error_rate": 0.0,
            "errors_by_class": {}, "operations": [], "timeline": []
        }))
        .unwrap();
        m.error_rate = error_rate;
        for (name, p95) in p95_ms {
            let mut op: OperationMetrics = serde_json::from_value(serde_json::json!({
                "name": name, "first_attempts": 1, "retries": 0, "ok": 1, "errors_by_class": {}, "counts": {},
                "end_to_end": LatencySummary::default(), "end_to_end_ok": LatencySummary::default(),
                "pool_wait": LatencySummary::default(), "connect": LatencySummary::default(),
                "in_db": LatencySummary::default(),
                "histograms": {"end_to_end": "", "end_to_end_ok": "", "pool_wait": "", "connect": "", "in_db": ""}
            }))
            .unwrap();
            op.end_to_end.count = 10;
            op.end_to_end.p95_us = p95 * 1000;
            op.end_to_end.p99_us = p95 * 2000;
            m.operations.push(op);
        }
        m
    }

    #[test]
    fn each_objective_passes_or_fails_with_its_measured_value() {
        let spec: SloSpec = toml::from_str(
            "p95_ms = { \"*\" = 300, claim = 100 }\np99_ms = { initialize = 500 }\nmax_error_rate = 0.01\nmin_goodput_per_s = 50",
        )
        .unwrap();
        spec.validate().unwrap();
        let card = spec.evaluate(&metrics(&[("initialize", 200), ("claim", 150)], 0.02), 60.0);
        let line = |objective: &str| card.iter().find(|r| r.objective == objective).unwrap().clone();
        assert!(line("p95 initialize <= 300 ms").pass);
        let claim = line("p95 claim <= 100 ms");
        assert!(!claim.pass);
        assert_eq!(claim.measured, 150.0);
        assert!(line("p99 initialize <= 500 ms").pass, "400 ms");
        assert!(
            card.iter().all(|r| r.objective != "p99 claim <= 500 ms"),
            "no p99 limit for claim"
        );
        assert!(!line("error rate <= 1%").pass);
        assert!(line("goodput >= 50/s").pass);
        assert_eq!(card.len(), 5);
        assert_eq!(spec.strictest_p99(&["initialize".into(), "claim".into()]), Some(500.0));
    }

    #[test]
    fn nonsense_limits_are_refused_by_name() {
        let spec: SloSpec = toml::from_str("p95_ms = { browse = -1 }").unwrap();
        assert_eq!(
            spec.validate().unwrap_err().to_string(),
            "[slo] p95_ms.browse = -1: give a positive number of milliseconds"
        );
        let spec: SloSpec = toml::from_str("max_error_rate = 5").unwrap();
        assert!(matches!(spec.validate(), Err(SloError::ErrorRate { rate }) if rate == 5.0));
        let spec: SloSpec = toml::from_str("min_goodput_per_s = -3").unwrap();
        assert!(spec.validate().unwrap_err().to_string().contains("min_goodput_per_s"));
        assert!(toml::from_str::<SloSpec>("p90_ms = {}").is_err());
    }
}
