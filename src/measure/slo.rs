//! Service-level objectives a workload declares in its `[slo]` table, and
//! the scorecard of one cell against them: PASS or FAIL per objective, with
//! the measured value.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::measure::histogram::decode_histogram;
use crate::measure::CellMetrics;

/// The `[slo]` table of `workloads/<name>.toml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloSpec {
    /// p50 end-to-end per operation, milliseconds; `"*"` as for p95.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub p50_ms: BTreeMap<String, f64>,
    /// p90 end-to-end per operation, milliseconds.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub p90_ms: BTreeMap<String, f64>,
    /// p95 end-to-end per operation, milliseconds; `"*"` for every
    /// operation without its own entry.
    #[serde(default)]
    pub p95_ms: BTreeMap<String, f64>,
    /// p99 end-to-end per operation, milliseconds; `"*"` as above.
    #[serde(default)]
    pub p99_ms: BTreeMap<String, f64>,
    /// p99.9 end-to-end per operation, milliseconds.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub p999_ms: BTreeMap<String, f64>,
    /// Pool wait p95 per operation, milliseconds.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pool_wait_p95_ms: BTreeMap<String, f64>,
    /// Connect time p99 per operation, milliseconds (cells that connect).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub connect_p99_ms: BTreeMap<String, f64>,
    /// At most this share of attempts slower than a latency, all operations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_share_over: Option<ShareOver>,
    /// Retries over first attempts, at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retry_rate: Option<f64>,
    /// Attempts failed on a deadlock (40P01) over attempts, at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_deadlock_rate: Option<f64>,
    /// Failed attempts of one class (its key, e.g. "53300", "pool_timeout")
    /// over attempts, at most.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub max_error_rate_by_class: BTreeMap<String, f64>,
    /// Pool utilisation at most: connections held (throughput × time held
    /// per attempt) over the pools' connections. Judged only with pools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pool_utilisation: Option<f64>,
    /// Cache hits over cache lookups, at least. Judged only when the cell
    /// used a cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_cache_hit_rate: Option<f64>,
    /// Compensations that succeeded over those attempted, at least. Judged
    /// only when a compensation was attempted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_compensation_success: Option<f64>,
    /// Successful attempts per second per operation, at least.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub min_ok_per_s: BTreeMap<String, f64>,
    /// Failed attempts over attempts, at most (0.01 = 1%).
    #[serde(default)]
    pub max_error_rate: Option<f64>,
    /// Business successes per second, at least.
    #[serde(default)]
    pub min_goodput_per_s: Option<f64>,
}

/// `max_share_over = { ms = 1000, share = 0.01 }`: at most `share` of
/// attempts slower than `ms`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareOver {
    /// The latency, milliseconds.
    pub ms: f64,
    /// The share of attempts, 0..=1.
    pub share: f64,
}

/// What a scorecard needs besides the metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct SloContext {
    /// Business successes per second.
    pub goodput_per_s: f64,
    /// Connections the cell's pools could hold; `None` without pools.
    pub pool_connections: Option<u32>,
}

/// The unit a result's measured value and limit are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SloUnit {
    /// Milliseconds.
    Ms,
    /// A share 0..=1, shown as a percentage.
    Share,
    /// Per second.
    PerS,
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
    /// A share outside 0..=1.
    #[error("[slo] {key} = {share}: give a share from 0 to 1, e.g. 0.01")]
    Share {
        /// The key.
        key: String,
        /// The share given.
        share: f64,
    },
    /// A per-operation floor that is negative or not a number.
    #[error("[slo] {key} = {floor}: give a number of successes per second")]
    Floor {
        /// The key.
        key: String,
        /// The floor given.
        floor: f64,
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
    /// The unit of `measured` and `limit`; `None` in cells recorded before
    /// units (read from the objective's words then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<SloUnit>,
}

impl SloResult {
    /// The unit, from the objective's words for results recorded without one.
    pub fn unit(&self) -> SloUnit {
        self.unit.unwrap_or(if self.objective.starts_with("error rate") {
            SloUnit::Share
        } else if self.objective.starts_with("goodput") {
            SloUnit::PerS
        } else {
            SloUnit::Ms
        })
    }
}

impl SloSpec {
    /// Checks the limits make sense; the error names the key.
    pub fn validate(&self) -> Result<(), SloError> {
        for (table, limits) in self
            .latency_tables()
            .into_iter()
            .map(|(table, _, limits, _)| (table, limits))
        {
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
        let mut shares: Vec<(String, f64)> = [
            ("max_retry_rate", self.max_retry_rate),
            ("max_deadlock_rate", self.max_deadlock_rate),
            ("max_pool_utilisation", self.max_pool_utilisation),
            ("min_cache_hit_rate", self.min_cache_hit_rate),
            ("min_compensation_success", self.min_compensation_success),
            ("max_share_over.share", self.max_share_over.map(|o| o.share)),
        ]
        .into_iter()
        .filter_map(|(key, share)| share.map(|s| (key.to_string(), s)))
        .collect();
        shares.extend(
            self.max_error_rate_by_class
                .iter()
                .map(|(class, &s)| (format!("max_error_rate_by_class.{class}"), s)),
        );
        if let Some((key, share)) = shares.into_iter().find(|(_, s)| !(0.0..=1.0).contains(s)) {
            return Err(SloError::Share { key, share });
        }
        if let Some(over) = self.max_share_over {
            if !(over.ms > 0.0 && over.ms.is_finite()) {
                return Err(SloError::Latency {
                    table: "max_share_over",
                    operation: "ms".into(),
                    limit: over.ms,
                });
            }
        }
        for (operation, &floor) in &self.min_ok_per_s {
            if !(floor >= 0.0 && floor.is_finite()) {
                return Err(SloError::Floor {
                    key: format!("min_ok_per_s.{operation}"),
                    floor,
                });
            }
        }
        Ok(())
    }

    /// The per-operation latency tables: key, label, limits, and which
    /// figure of an operation each judges (microseconds, and how many
    /// values it has).
    #[allow(clippy::type_complexity)]
    fn latency_tables(
        &self,
    ) -> [(
        &'static str,
        &'static str,
        &BTreeMap<String, f64>,
        fn(&crate::measure::OperationMetrics) -> (u64, u64),
    ); 7] {
        [
            ("p50_ms", "p50", &self.p50_ms, |op| {
                (op.end_to_end.p50_us, op.end_to_end.count)
            }),
            ("p90_ms", "p90", &self.p90_ms, |op| {
                (op.end_to_end.p90_us, op.end_to_end.count)
            }),
            ("p95_ms", "p95", &self.p95_ms, |op| {
                (op.end_to_end.p95_us, op.end_to_end.count)
            }),
            ("p99_ms", "p99", &self.p99_ms, |op| {
                (op.end_to_end.p99_us, op.end_to_end.count)
            }),
            ("p999_ms", "p99.9", &self.p999_ms, |op| {
                (op.end_to_end.p999_us, op.end_to_end.count)
            }),
            ("pool_wait_p95_ms", "pool wait p95", &self.pool_wait_p95_ms, |op| {
                (op.pool_wait.p95_us, op.pool_wait.count)
            }),
            ("connect_p99_ms", "connect p99", &self.connect_p99_ms, |op| {
                (op.connect.p99_us, op.connect.count)
            }),
        ]
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
        *self == SloSpec::default()
    }

    /// The scorecard of a cell: each declared objective, PASS or FAIL.
    /// Objectives with nothing to judge (an operation the cell never ran, a
    /// cache it did not use, no compensation, no pool) are left out.
    pub fn evaluate(&self, metrics: &CellMetrics, context: &SloContext) -> Vec<SloResult> {
        let mut out = Vec::new();
        let mut push = |objective: String, measured: f64, limit: f64, at_most: bool, unit: SloUnit| {
            out.push(SloResult {
                objective,
                measured,
                limit,
                pass: if at_most { measured <= limit } else { measured >= limit },
                unit: Some(unit),
            });
        };
        for (_, label, limits, figure) in self.latency_tables() {
            for operation in &metrics.operations {
                let (value_us, count) = figure(operation);
                if count == 0 {
                    continue;
                }
                let Some(&limit) = limits.get(&operation.name).or_else(|| limits.get("*")) else {
                    continue;
                };
                push(
                    format!("{label} {} <= {limit} ms", operation.name),
                    value_us as f64 / 1000.0,
                    limit,
                    true,
                    SloUnit::Ms,
                );
            }
        }
        let attempts = metrics.attempts.max(1) as f64;
        let pct = |share: f64| format!("{}%", share * 100.0);
        if let Some(over) = self.max_share_over {
            let slower: u64 = metrics
                .operations
                .iter()
                .filter_map(|op| decode_histogram(&op.histograms.end_to_end).ok())
                .map(|h| h.len() - h.count_between(0, (over.ms * 1000.0) as u64).min(h.len()))
                .sum();
            push(
                format!("attempts over {} ms <= {}", over.ms, pct(over.share)),
                slower as f64 / attempts,
                over.share,
                true,
                SloUnit::Share,
            );
        }
        if let Some(limit) = self.max_error_rate {
            push(
                format!("error rate <= {}", pct(limit)),
                metrics.error_rate,
                limit,
                true,
                SloUnit::Share,
            );
        }
        for (class, &limit) in &self.max_error_rate_by_class {
            let failed = metrics.errors_by_class.get(class).copied().unwrap_or(0);
            push(
                format!("{class} errors <= {}", pct(limit)),
                failed as f64 / attempts,
                limit,
                true,
                SloUnit::Share,
            );
        }
        if let Some(limit) = self.max_deadlock_rate {
            let deadlocks = metrics.errors_by_class.get("40P01").copied().unwrap_or(0);
            push(
                format!("deadlocks <= {}", pct(limit)),
                deadlocks as f64 / attempts,
                limit,
                true,
                SloUnit::Share,
            );
        }
        if let Some(limit) = self.max_retry_rate {
            let rate = metrics.retries as f64 / metrics.first_attempts.max(1) as f64;
            push(
                format!("retry rate <= {}", pct(limit)),
                rate,
                limit,
                true,
                SloUnit::Share,
            );
        }
        if let (Some(limit), Some(connections)) = (self.max_pool_utilisation, context.pool_connections) {
            let held_us: f64 = metrics
                .operations
                .iter()
                .map(|op| (op.end_to_end.mean_us - op.pool_wait.mean_us).max(0.0) * op.end_to_end.count as f64)
                .sum();
            let held = metrics.throughput_per_s * held_us / attempts / 1e6;
            push(
                format!("pool utilisation <= {}", pct(limit)),
                held / f64::from(connections.max(1)),
                limit,
                true,
                SloUnit::Share,
            );
        }
        let count = |what: &str| -> u64 { metrics.operations.iter().filter_map(|op| op.counts.get(what)).sum() };
        if let Some(limit) = self.min_cache_hit_rate {
            let (hits, misses) = (count("cache_hit"), count("cache_miss"));
            if hits + misses > 0 {
                push(
                    format!("cache hit rate >= {}", pct(limit)),
                    hits as f64 / (hits + misses) as f64,
                    limit,
                    false,
                    SloUnit::Share,
                );
            }
        }
        if let Some(limit) = self.min_compensation_success {
            let attempted = count("compensation_attempted");
            if attempted > 0 {
                push(
                    format!("compensation success >= {}", pct(limit)),
                    count("compensation_succeeded") as f64 / attempted as f64,
                    limit,
                    false,
                    SloUnit::Share,
                );
            }
        }
        for operation in &metrics.operations {
            let Some(&floor) = self
                .min_ok_per_s
                .get(&operation.name)
                .or_else(|| self.min_ok_per_s.get("*"))
            else {
                continue;
            };
            let rate = if metrics.measured_s > 0.0 {
                operation.ok as f64 / metrics.measured_s
            } else {
                0.0
            };
            push(
                format!("{} ok >= {floor}/s", operation.name),
                rate,
                floor,
                false,
                SloUnit::PerS,
            );
        }
        if let Some(limit) = self.min_goodput_per_s {
            push(
                format!("goodput >= {limit}/s"),
                context.goodput_per_s,
                limit,
                false,
                SloUnit::PerS,
            );
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
        let context = SloContext {
            goodput_per_s: 60.0,
            pool_connections: None,
        };
        let card = spec.evaluate(&metrics(&[("initialize", 200), ("claim", 150)], 0.02), &context);
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
    fn a_teams_whole_sheet_is_judged_in_each_objectives_unit() {
        let spec: SloSpec = toml::from_str(
            "p50_ms = { \"*\" = 5 }\np90_ms = { \"*\" = 5 }\np999_ms = { \"*\" = 5000 }\n\
             pool_wait_p95_ms = { a = 1 }\nmax_share_over = { ms = 100, share = 0.5 }\n\
             max_retry_rate = 0.1\nmax_deadlock_rate = 0.01\nmax_error_rate_by_class = { \"53300\" = 0 }\n\
             max_pool_utilisation = 0.7\nmin_cache_hit_rate = 0.9\nmin_compensation_success = 0.999\n\
             min_ok_per_s = { a = 5 }",
        )
        .unwrap();
        spec.validate().unwrap();
        let mut m = metrics(&[("a", 200)], 0.0);
        m.attempts = 100;
        m.first_attempts = 80;
        m.retries = 20;
        m.throughput_per_s = 100.0;
        m.measured_s = 2.0;
        m.errors_by_class = BTreeMap::from([("40P01".to_string(), 2), ("53300".to_string(), 1)]);
        let op = &mut m.operations[0];
        op.ok = 10;
        op.end_to_end.mean_us = 20_000.0;
        op.end_to_end.p50_us = 10_000;
        op.end_to_end.count = 100;
        op.counts = BTreeMap::from([("cache_hit".to_string(), 9), ("cache_miss".to_string(), 1)]);
        let mut histogram = crate::measure::histogram::new_histogram(3);
        for latency_us in [1_000, 50_000, 150_000, 250_000] {
            histogram.record(latency_us).unwrap();
        }
        op.histograms.end_to_end = crate::measure::encode_histogram(&histogram).unwrap();
        let context = SloContext {
            goodput_per_s: 5.0,
            pool_connections: Some(2),
        };
        let card = spec.evaluate(&m, &context);
        let line = |objective: &str| {
            card.iter()
                .find(|r| r.objective == objective)
                .unwrap_or_else(|| panic!("no {objective:?} in {card:#?}"))
                .clone()
        };
        assert!(!line("p50 a <= 5 ms").pass);
        let over = line("attempts over 100 ms <= 50%");
        assert_eq!(
            (over.measured, over.unit),
            (2.0 / 100.0, Some(SloUnit::Share)),
            "2 of 4 recorded, of 100 attempts"
        );
        let retries = line("retry rate <= 10%");
        assert!(!retries.pass && (retries.measured - 0.25).abs() < 1e-12);
        assert!(!line("deadlocks <= 1%").pass, "2 of 100");
        assert!(!line("53300 errors <= 0%").pass);
        // 100/s × 20 ms held = 2 connections held of 2: fully used.
        let utilisation = line("pool utilisation <= 70%");
        assert!(
            !utilisation.pass && (utilisation.measured - 1.0).abs() < 1e-9,
            "{utilisation:?}"
        );
        assert!(line("cache hit rate >= 90%").pass);
        assert_eq!(line("a ok >= 5/s").measured, 5.0);
        assert!(
            card.iter().all(|r| !r.objective.starts_with("compensation")),
            "nothing compensated, nothing judged"
        );
        assert!(
            card.iter().all(|r| !r.objective.starts_with("pool wait")),
            "no pool wait values"
        );
        let without_pools = spec.evaluate(
            &m,
            &SloContext {
                pool_connections: None,
                ..context
            },
        );
        assert!(without_pools
            .iter()
            .all(|r| !r.objective.starts_with("pool utilisation")));
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
        assert!(toml::from_str::<SloSpec>("p42_ms = {}").is_err());
        let spec: SloSpec = toml::from_str("max_retry_rate = 3").unwrap();
        assert_eq!(
            spec.validate().unwrap_err().to_string(),
            "[slo] max_retry_rate = 3: give a share from 0 to 1, e.g. 0.01"
        );
    }
}
