//! From a sweep's cells to pool sizes and `max_connections`, with the
//! evidence: the knee of goodput against total pool size, a Universal
//! Scalability Law fit, a Little's law cross-check, the `max_connections`
//! budget with the cells that broke it, and verdicts on popular formulas.
//!
//! Reads finished records only; never measures and never formats (report
//! does). Every number it produces names the cells it came from, as their
//! line numbers in `cells.jsonl` (from 1).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::formula::{Bindings, Formula, Sizes};
use super::stats::median;
use super::usl::{fit, UslFit};
use crate::record::{Bottleneck, CellRecord};

/// A USL fit explaining less than this share of the variance is not trusted
/// to smooth the knee.
const MIN_R_SQUARED_FOR_SMOOTHING: f64 = 0.5;

/// Choices a recommendation depends on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecommendOptions {
    /// Share of peak goodput the knee must reach. Default 0.95.
    pub goodput_share: f64,
    /// p99 end-to-end the knee must stay within, milliseconds; `None`: no
    /// latency bound.
    pub p99_slo_ms: Option<f64>,
    /// Connections kept free for admin sessions and migrations. Default 5.
    pub headroom: u32,
    /// CPU cores of the database server, for `2 × cores + spindles`.
    pub cores: u32,
    /// Effective spindles, for `2 × cores + spindles`. Default 1.
    pub spindles: u32,
    /// Formulas to judge besides the built-in ones.
    #[serde(default)]
    pub formulas: Vec<Formula>,
    /// Also project the pool the knee's goodput needs at this network
    /// round trip, milliseconds (`--for-rtt`); `None`: no projection.
    #[serde(default)]
    pub for_rtt_ms: Option<f64>,
}

impl Default for RecommendOptions {
    fn default() -> Self {
        RecommendOptions {
            goodput_share: 0.95,
            p99_slo_ms: None,
            headroom: 5,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            spindles: 1,
            formulas: Vec::new(),
            for_rtt_ms: None,
        }
    }
}

/// What one cell contributes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellPoint {
    /// Line in cells.jsonl, from 1.
    pub cell: usize,
    /// Instances × pool size.
    pub total_pool: u32,
    /// Application instances.
    pub instances: u32,
    /// Pool size per instance.
    pub pool_size: u32,
    /// The server's max_connections.
    pub max_connections: u32,
    /// Business successes per second.
    pub goodput_per_s: f64,
    /// Attempts per second.
    pub throughput_per_s: f64,
    /// Highest p99 end-to-end of the cell's operations, milliseconds.
    pub p99_ms: f64,
    /// 53300 refusals.
    pub refused: u64,
    /// Pool timeouts.
    pub pool_timeouts: u64,
    /// Failed attempts over attempts.
    pub error_rate: f64,
    /// Mean time in the database per attempt, milliseconds.
    pub mean_in_db_ms: f64,
    /// Mean active sessions the sampler saw.
    pub observed_active: f64,
    /// Concurrent clients (closed loop), if any.
    pub clients: Option<u32>,
    /// The cell's bottleneck class; `None` for cells recorded before diagnoses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bottleneck: Option<Bottleneck>,
    /// Share of its active backends waiting on Lock or LWLock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_wait_share: Option<f64>,
    /// Network round trip the cell was run with (`--network-rtt`), ms.
    #[serde(default)]
    pub rtt_set_ms: f64,
    /// Round trip its clients saw (`SELECT 1` over the pools' path), ms;
    /// 0 in cells recorded before it was measured.
    #[serde(default)]
    pub rtt_measured_ms: f64,
    /// Protocol round trips per attempt, all operations weighted by their
    /// attempts in the database; 0 in cells recorded before it was counted.
    #[serde(default)]
    pub round_trips_per_attempt: f64,
}

impl CellPoint {
    fn of(cell: usize, record: &CellRecord) -> CellPoint {
        let m = &record.metrics;
        let in_db: (f64, u64) = m.operations.iter().fold((0.0, 0), |(sum, count), op| {
            (sum + op.in_db.mean_us * op.in_db.count as f64, count + op.in_db.count)
        });
        let samples = &record.server.samples;
        let observed_active = if samples.is_empty() {
            0.0
        } else {
            samples
                .iter()
                .map(|s| f64::from(s.by_state.get("active").copied().unwrap_or(0)))
                .sum::<f64>()
                / samples.len() as f64
        };
        CellPoint {
            cell,
            total_pool: record.settings.instances * record.settings.pool.size,
            instances: record.settings.instances,
            pool_size: record.settings.pool.size,
            max_connections: record.postgres.max_connections,
            goodput_per_s: record.business.goodput_per_s,
            throughput_per_s: m.throughput_per_s,
            p99_ms: m.worst_p99_ms(),
            refused: m.errors_by_class.get("53300").copied().unwrap_or(0),
            pool_timeouts: m.errors_by_class.get("pool_timeout").copied().unwrap_or(0),
            error_rate: m.error_rate,
            mean_in_db_ms: if in_db.1 > 0 {
                in_db.0 / in_db.1 as f64 / 1000.0
            } else {
                0.0
            },
            observed_active,
            clients: match record.settings.driver.load {
                crate::driver::Load::Closed { clients } => Some(clients),
                crate::driver::Load::Open { .. } => None,
            },
            bottleneck: record.diagnosis.as_ref().map(|d| d.bottleneck),
            lock_wait_share: record.diagnosis.as_ref().map(|d| {
                ["Lock", "LWLock"]
                    .iter()
                    .map(|k| d.wait_shares.get(*k).copied().unwrap_or(0.0))
                    .sum()
            }),
            rtt_set_ms: record.settings.network.rtt_ms,
            rtt_measured_ms: record.network.as_ref().map_or(0.0, |n| n.rtt_pooled_ms),
            round_trips_per_attempt: {
                let (trips, attempts) = m.operations.iter().fold((0.0, 0u64), |(trips, attempts), op| {
                    (
                        trips + op.round_trips_per_attempt * op.in_db.count as f64,
                        attempts + op.in_db.count,
                    )
                });
                if attempts > 0 {
                    trips / attempts as f64
                } else {
                    0.0
                }
            },
        }
    }
}

/// Why the knee is where it is: the bottleneck on each side of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KneeVerdict {
    /// Cells with a smaller total pool than the knee's.
    pub below: Option<SideVerdict>,
    /// The knee's own cells.
    pub at: Option<SideVerdict>,
    /// Cells with a larger total pool.
    pub above: Option<SideVerdict>,
}

/// The bottleneck most of one side's cells had.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SideVerdict {
    /// The class most of them had (the first of the tied, by cell order).
    pub bottleneck: Bottleneck,
    /// Those cells.
    pub cells: Vec<usize>,
    /// Mean share of their active backends waiting on Lock or LWLock.
    pub lock_wait_share: f64,
}

/// The verdict of `cells` around a knee at `knee_pool`; `None` when no
/// cell was diagnosed (cells recorded before diagnoses).
fn knee_verdict(cells: &[CellPoint], knee_pool: u32) -> Option<KneeVerdict> {
    let side = |keep: &dyn Fn(u32) -> bool| -> Option<SideVerdict> {
        let diagnosed: Vec<&CellPoint> = cells
            .iter()
            .filter(|c| keep(c.total_pool) && c.bottleneck.is_some())
            .collect();
        let mut counts: Vec<(Bottleneck, usize)> = Vec::new();
        for cell in &diagnosed {
            let class = cell.bottleneck?;
            match counts.iter_mut().find(|(b, _)| *b == class) {
                Some((_, n)) => *n += 1,
                None => counts.push((class, 1)),
            }
        }
        let most = counts.iter().map(|(_, n)| *n).max()?;
        let bottleneck = counts.iter().find(|(_, n)| *n == most)?.0;
        let chosen: Vec<&&CellPoint> = diagnosed.iter().filter(|c| c.bottleneck == Some(bottleneck)).collect();
        Some(SideVerdict {
            bottleneck,
            cells: chosen.iter().map(|c| c.cell).collect(),
            lock_wait_share: chosen.iter().filter_map(|c| c.lock_wait_share).sum::<f64>() / chosen.len() as f64,
        })
    };
    let verdict = KneeVerdict {
        below: side(&|pool| pool < knee_pool),
        at: side(&|pool| pool == knee_pool),
        above: side(&|pool| pool > knee_pool),
    };
    (verdict.below.is_some() || verdict.at.is_some() || verdict.above.is_some()).then_some(verdict)
}

/// The smallest total pool that reaches the goodput share within the SLO.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Knee {
    /// Instances × pool size at the knee.
    pub total_pool: u32,
    /// Median goodput of the knee's cells, per second.
    pub goodput_per_s: f64,
    /// Median p99 of the knee's cells, milliseconds.
    pub p99_ms: f64,
    /// Highest goodput of any total pool, per second, and its cells.
    pub peak_goodput_per_s: f64,
    /// Cells at the peak.
    pub peak_cells: Vec<usize>,
    /// Cells at the knee.
    pub cells: Vec<usize>,
    /// Pool size per instance at the knee, for each instance count swept.
    pub pool_per_instance: BTreeMap<u32, u32>,
    /// What the share of peak was judged on: the fitted curve or the medians.
    pub basis: String,
    /// The total pool whose measured median goodput was highest, that
    /// median, and its cells: what was measured, beside the peak the knee
    /// was judged against (the same group unless the curve was used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_measured: Option<BestMeasured>,
}

/// The best measured total pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BestMeasured {
    /// Instances × pool size.
    pub total_pool: u32,
    /// Its median goodput, per second.
    pub goodput_per_s: f64,
    /// Its cells.
    pub cells: Vec<usize>,
}

/// The USL fit and the cells it used.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UslReport {
    /// Fitted parameters.
    pub fit: UslFit,
    /// Cells fitted (those within the max_connections budget).
    pub cells: Vec<usize>,
}

/// Little's law on one cell: busy connections = goodput × time in database.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LittleCheck {
    /// The cell.
    pub cell: usize,
    /// Attempts per second × mean seconds in the database.
    pub predicted_busy: f64,
    /// Mean active sessions the sampler saw.
    pub observed_busy: f64,
    /// The pool's size, the ceiling of busy connections.
    pub total_pool: u32,
}

/// A cell whose pools could not all fit in max_connections.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OverBudget {
    /// The cell.
    pub cell: usize,
    /// Instances × pool size.
    pub total_pool: u32,
    /// Connections ordinary clients could have (max_connections − reserved).
    pub available: u32,
    /// 53300 refusals clients saw.
    pub refused: u64,
    /// Pool timeouts clients saw.
    pub pool_timeouts: u64,
    /// Failed attempts over attempts.
    pub error_rate: f64,
}

/// The max_connections to run with, and the cells that show why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MaxConnectionsAdvice {
    /// instances × pool + reserved + headroom.
    pub recommended: u32,
    /// Instances the figure is for (the most swept).
    pub instances: u32,
    /// Pool per instance.
    pub pool_per_instance: u32,
    /// superuser_reserved_connections (+ reserved_connections on 16+).
    pub reserved: u32,
    /// Headroom for admin sessions and migrations.
    pub headroom: u32,
    /// Cells where the pools exceeded what the server admits.
    pub over_budget: Vec<OverBudget>,
}

/// A popular formula against the measurements.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FormulaVerdict {
    /// The formula as people write it.
    pub formula: String,
    /// What it sizes: "pool" (total connections) or "max_connections".
    pub sizes: String,
    /// Its value here.
    pub value: f64,
    /// The measured cell at or nearest that size (best goodput there).
    pub nearest_cell: Option<usize>,
    /// Goodput there, per second.
    pub goodput_per_s: f64,
    /// p99 there, milliseconds.
    pub p99_ms: f64,
    /// The formula's value minus the recommendation.
    pub distance_from_recommended: f64,
}

/// The pool the knee's goodput would need at another round trip: a
/// projection from the knee's cells, not a measurement. Each attempt holds
/// its connection for its time in the database, which is server time plus
/// its round trips × the round trip; so at `for_rtt_ms` the hold time is
/// the measured one plus round trips × (`for_rtt_ms` − the RTT the cells
/// ran with), and by Little's law the busy connections are throughput ×
/// that hold time. A pool exactly that busy queues without bound, so the
/// knee kept some connections spare; the spare ones are carried over
/// scaled by the square root of the busy ones' growth (square-root
/// staffing: queueing headroom grows with the square root of the load).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RttProjection {
    /// The round trip projected for, milliseconds.
    pub for_rtt_ms: f64,
    /// The round trip the knee's cells ran with (`--network-rtt`), ms.
    pub from_rtt_ms: f64,
    /// The round trip their clients saw, median of the cells, ms.
    pub from_rtt_measured_ms: f64,
    /// Attempts per second at the knee (median of its cells).
    pub throughput_per_s: f64,
    /// Mean time in the database per attempt at the knee, ms.
    pub in_db_ms: f64,
    /// Round trips per attempt at the knee (the driver's count).
    pub round_trips_per_attempt: f64,
    /// In-database time less round trips × the measured round trip: the
    /// server's own time per attempt, ms (never below 0).
    pub server_ms: f64,
    /// Hold time per attempt at `for_rtt_ms`, ms.
    pub projected_in_db_ms: f64,
    /// Connections busy at the knee: throughput × in-DB time.
    pub busy_at_knee: f64,
    /// Connections busy at `for_rtt_ms`: throughput × projected hold time.
    pub projected_busy: f64,
    /// The knee's total pool, projected from.
    pub knee_total_pool: u32,
    /// Total pool projected: `projected_busy` + the knee's spare
    /// connections × √(`projected_busy` / `busy_at_knee`), rounded up.
    pub total_pool: u32,
    /// Per instance, for each instance count swept.
    pub pool_per_instance: BTreeMap<u32, u32>,
    /// The knee's cells it was projected from.
    pub cells: Vec<usize>,
}

/// Projects the knee's pool to `for_rtt_ms` (see [`RttProjection`]);
/// `None` without round trips counted in the knee's cells.
fn project(cells: &[CellPoint], knee: &Knee, for_rtt_ms: f64) -> Option<RttProjection> {
    let at_knee: Vec<&CellPoint> = cells.iter().filter(|c| knee.cells.contains(&c.cell)).collect();
    let median_of = |value: fn(&CellPoint) -> f64| {
        let mut values: Vec<f64> = at_knee.iter().map(|c| value(c)).collect();
        median(&mut values)
    };
    let round_trips = median_of(|c| c.round_trips_per_attempt);
    if at_knee.is_empty() || round_trips <= 0.0 {
        return None;
    }
    let throughput = median_of(|c| c.throughput_per_s);
    let in_db_ms = median_of(|c| c.mean_in_db_ms);
    let from_rtt_ms = median_of(|c| c.rtt_set_ms);
    let from_rtt_measured_ms = median_of(|c| c.rtt_measured_ms);
    let projected_in_db_ms = (in_db_ms + round_trips * (for_rtt_ms - from_rtt_ms)).max(0.0);
    let busy_at_knee = throughput * in_db_ms / 1000.0;
    let projected_busy = throughput * projected_in_db_ms / 1000.0;
    let spare = (f64::from(knee.total_pool) - busy_at_knee).max(0.0);
    let growth = if busy_at_knee > 0.0 {
        (projected_busy / busy_at_knee).sqrt()
    } else {
        1.0
    };
    let total_pool = (projected_busy + spare * growth).ceil().max(1.0) as u32;
    Some(RttProjection {
        for_rtt_ms,
        from_rtt_ms,
        from_rtt_measured_ms,
        throughput_per_s: throughput,
        in_db_ms,
        round_trips_per_attempt: round_trips,
        server_ms: (in_db_ms - round_trips * from_rtt_measured_ms).max(0.0),
        projected_in_db_ms,
        busy_at_knee,
        projected_busy,
        knee_total_pool: knee.total_pool,
        total_pool,
        pool_per_instance: knee
            .pool_per_instance
            .keys()
            .map(|&k| (k, total_pool.div_ceil(k)))
            .collect(),
        cells: knee.cells.clone(),
    })
}

/// Everything recommended from one sweep.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Recommendation {
    /// The workload the cells ran.
    #[serde(default)]
    pub workload: String,
    /// Options used.
    pub options: RecommendOptions,
    /// Cells read.
    pub cells: Vec<CellPoint>,
    /// The knee, when any cell stayed within budget (and the SLO).
    pub knee: Option<Knee>,
    /// The p99 bound the knee had to stay within, milliseconds, and where
    /// it came from (--p99-slo-ms or the workload's `[slo]`); none: no bound.
    #[serde(default)]
    pub p99_bound: Option<(f64, String)>,
    /// The USL fit, when at least three pool sizes were measured.
    pub usl: Option<UslReport>,
    /// Little's law per cell within budget.
    pub littles_law: Vec<LittleCheck>,
    /// max_connections advice.
    pub max_connections: Option<MaxConnectionsAdvice>,
    /// Verdicts on popular formulas.
    pub formulas: Vec<FormulaVerdict>,
    /// The bottleneck on each side of the knee; `None` without a knee or
    /// without diagnosed cells.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knee_verdict: Option<KneeVerdict>,
    /// The network round trip the cells ran with (`--network-rtt`), ms:
    /// the recommendation is for that network. 0 (loopback) in
    /// recommendations made before it was recorded.
    #[serde(default)]
    pub network_rtt_ms: f64,
    /// The round trip the cells' clients saw, median, ms (0: not measured).
    #[serde(default)]
    pub network_rtt_measured_ms: f64,
    /// With `--for-rtt`: the pool projected for that round trip.
    #[serde(default)]
    pub projection: Option<RttProjection>,
}

/// Recommends from `records` (in cells.jsonl order), all taken as one
/// workload's.
pub fn recommend(records: &[CellRecord], options: &RecommendOptions) -> Recommendation {
    let numbered: Vec<(usize, &CellRecord)> = records.iter().enumerate().map(|(i, r)| (i + 1, r)).collect();
    recommend_lines(&numbered, options)
}

/// One recommendation per workload and network round trip of `records`
/// (in cells.jsonl order, in the order they first appear), cells still
/// named by their line: a knee found over cells of two networks would be
/// neither's.
pub fn recommend_each(records: &[CellRecord], options: &RecommendOptions) -> Vec<Recommendation> {
    let group = |r: &CellRecord| (r.settings.workload.clone(), r.settings.network.rtt_ms.to_bits());
    let mut groups: Vec<(String, u64)> = Vec::new();
    for record in records {
        if !groups.contains(&group(record)) {
            groups.push(group(record));
        }
    }
    groups
        .iter()
        .map(|wanted| {
            let numbered: Vec<(usize, &CellRecord)> = records
                .iter()
                .enumerate()
                .filter(|(_, r)| group(r) == *wanted)
                .map(|(i, r)| (i + 1, r))
                .collect();
            recommend_lines(&numbered, options)
        })
        .collect()
}

fn recommend_lines(numbered: &[(usize, &CellRecord)], options: &RecommendOptions) -> Recommendation {
    let records: Vec<&CellRecord> = numbered.iter().map(|(_, r)| *r).collect();
    let cells: Vec<CellPoint> = numbered.iter().map(|&(line, r)| CellPoint::of(line, r)).collect();
    let reserved = records
        .iter()
        .map(|r| r.postgres.reserved_connections)
        .max()
        .unwrap_or(3);
    let within_budget: Vec<&CellPoint> = cells
        .iter()
        .filter(|c| c.total_pool <= c.max_connections.saturating_sub(reserved) && c.refused == 0)
        .collect();

    // Goodput per total pool (median over repeats and max_connections values).
    let mut by_pool: BTreeMap<u32, Vec<&CellPoint>> = BTreeMap::new();
    for cell in &within_budget {
        by_pool.entry(cell.total_pool).or_default().push(cell);
    }
    let groups: Vec<(u32, f64, f64, Vec<usize>)> = by_pool
        .iter()
        .map(|(pool, cells)| {
            let mut goodputs: Vec<f64> = cells.iter().map(|c| c.goodput_per_s).collect();
            let mut p99s: Vec<f64> = cells.iter().map(|c| c.p99_ms).collect();
            (
                *pool,
                median(&mut goodputs),
                median(&mut p99s),
                cells.iter().map(|c| c.cell).collect(),
            )
        })
        .collect();
    let usl = fit(&within_budget
        .iter()
        .map(|c| (f64::from(c.total_pool), c.goodput_per_s))
        .collect::<Vec<_>>())
    .map(|fit| UslReport {
        fit,
        cells: within_budget.iter().map(|c| c.cell).collect(),
    });
    // Single short cells are noisy (one lucky cell can be the "peak"): when
    // the USL curve explains the cells well enough, the knee is read off the
    // curve at the measured sizes; otherwise off the measured medians.
    let smoothed = usl.as_ref().filter(|u| u.fit.r_squared >= MIN_R_SQUARED_FOR_SMOOTHING);
    let level = |group: &(u32, f64, f64, Vec<usize>)| match smoothed {
        Some(u) => u.fit.predict(f64::from(group.0)),
        None => group.1,
    };
    // The latency bound: the one asked for, else the strictest p99 of the
    // workload's own [slo] table.
    let p99_bound_source: Option<(f64, String)> = match options.p99_slo_ms {
        Some(ms) => Some((ms, "--p99-slo-ms".into())),
        None => records.iter().find_map(|r| {
            let operations: Vec<String> = r.metrics.operations.iter().map(|op| op.name.clone()).collect();
            r.slo.spec.strictest_p99(&operations).map(|ms| {
                (
                    ms,
                    format!("the strictest p99 of workloads/{}.toml [slo]", r.settings.workload),
                )
            })
        }),
    };
    let p99_bound = p99_bound_source.as_ref().map(|(ms, _)| *ms);
    let peak = groups.iter().max_by(|a, b| level(a).total_cmp(&level(b)));
    let best_measured = groups.iter().max_by(|a, b| a.1.total_cmp(&b.1)).map(|g| BestMeasured {
        total_pool: g.0,
        goodput_per_s: g.1,
        cells: g.3.clone(),
    });
    let knee = peak.and_then(|peak| {
        let peak_level = level(peak);
        groups
            .iter()
            .find(|g| level(g) >= options.goodput_share * peak_level && p99_bound.is_none_or(|slo| g.2 <= slo))
            .map(|g| {
                let instance_counts: std::collections::BTreeSet<u32> = cells.iter().map(|c| c.instances).collect();
                Knee {
                    total_pool: g.0,
                    goodput_per_s: g.1,
                    p99_ms: g.2,
                    peak_goodput_per_s: peak.1,
                    peak_cells: peak.3.clone(),
                    cells: g.3.clone(),
                    pool_per_instance: instance_counts.iter().map(|&k| (k, g.0.div_ceil(k))).collect(),
                    basis: match smoothed {
                        Some(u) => format!(
                            "the USL curve fitted to the cells (R² {:.2}): {:.1}/s at the knee vs {:.1}/s at the peak",
                            u.fit.r_squared,
                            u.fit.predict(f64::from(g.0)),
                            peak_level
                        ),
                        None => "measured median goodput per total pool".into(),
                    },
                    best_measured: best_measured.clone(),
                }
            })
    });

    let littles_law = within_budget
        .iter()
        .filter(|c| c.observed_active > 0.0 || c.mean_in_db_ms > 0.0)
        .map(|c| LittleCheck {
            cell: c.cell,
            predicted_busy: c.throughput_per_s * c.mean_in_db_ms / 1000.0,
            observed_busy: c.observed_active,
            total_pool: c.total_pool,
        })
        .collect();

    let over_budget: Vec<OverBudget> = cells
        .iter()
        .filter(|c| c.total_pool > c.max_connections.saturating_sub(reserved) || c.refused > 0)
        .map(|c| OverBudget {
            cell: c.cell,
            total_pool: c.total_pool,
            available: c.max_connections.saturating_sub(reserved),
            refused: c.refused,
            pool_timeouts: c.pool_timeouts,
            error_rate: c.error_rate,
        })
        .collect();
    let max_connections = knee.as_ref().map(|knee| {
        let instances = cells.iter().map(|c| c.instances).max().unwrap_or(1);
        let pool_per_instance = knee.total_pool.div_ceil(instances).max(1);
        MaxConnectionsAdvice {
            recommended: instances * pool_per_instance + reserved + options.headroom,
            instances,
            pool_per_instance,
            reserved,
            headroom: options.headroom,
            over_budget: over_budget.clone(),
        }
    });

    let formulas = verdicts(&cells, knee.as_ref(), max_connections.as_ref(), options);
    // The cells the knee was judged on: those within the budget (a cell
    // refused connections is not beside the knee, whatever its pool).
    let judged: Vec<CellPoint> = within_budget.iter().map(|c| (*c).clone()).collect();
    let knee_verdict = knee.as_ref().and_then(|knee| knee_verdict(&judged, knee.total_pool));
    let projection = match (options.for_rtt_ms, knee.as_ref()) {
        (Some(for_rtt_ms), Some(knee)) => project(&cells, knee, for_rtt_ms),
        _ => None,
    };
    let network_rtt_ms = {
        let mut set: Vec<f64> = cells.iter().map(|c| c.rtt_set_ms).collect();
        median(&mut set)
    };
    let network_rtt_measured_ms = {
        let mut seen: Vec<f64> = cells.iter().map(|c| c.rtt_measured_ms).collect();
        median(&mut seen)
    };
    Recommendation {
        network_rtt_ms,
        network_rtt_measured_ms,
        projection,
        workload: records.first().map(|r| r.settings.workload.clone()).unwrap_or_default(),
        options: options.clone(),
        cells,
        knee,
        p99_bound: p99_bound_source,
        usl,
        littles_law,
        max_connections,
        formulas,
        knee_verdict,
    }
}

/// The formulas people use to size pools and max_connections, judged on
/// every sweep besides the user's own.
pub const BUILT_IN_FORMULAS: &[&str] = &[
    // The textbook rule of thumb for a pool.
    "pool = 2 * cores + spindles",
    // The incident report's: VUs × 1.5 + EPS / 10, plus 20%.
    "max_connections = (vus * 1.5 + eps / 10) * 1.2",
];

fn verdicts(
    cells: &[CellPoint],
    knee: Option<&Knee>,
    budget: Option<&MaxConnectionsAdvice>,
    options: &RecommendOptions,
) -> Vec<FormulaVerdict> {
    let bindings = Bindings {
        cores: f64::from(options.cores),
        spindles: f64::from(options.spindles),
        vus: f64::from(cells.iter().filter_map(|c| c.clients).max().unwrap_or(0)),
        eps: cells.iter().map(|c| c.throughput_per_s).fold(0.0, f64::max),
        instances: f64::from(cells.iter().map(|c| c.instances).max().unwrap_or(1)),
    };
    let built_in = BUILT_IN_FORMULAS
        .iter()
        .map(|text| Formula::parse(text).expect("built-in formulas parse"));
    built_in
        .chain(options.formulas.iter().cloned())
        .map(|formula| {
            let value = formula.eval(&bindings);
            let (key, recommended): (fn(&CellPoint) -> f64, Option<f64>) = match formula.sizes() {
                Sizes::Pool => (|c| f64::from(c.total_pool), knee.map(|k| f64::from(k.total_pool))),
                Sizes::MaxConnections => (
                    |c| f64::from(c.max_connections),
                    budget.map(|b| f64::from(b.recommended)),
                ),
            };
            let nearest = cells
                .iter()
                .map(key)
                .min_by(|a, b| (a - value).abs().total_cmp(&(b - value).abs()));
            let near = nearest.and_then(|nearest| {
                cells
                    .iter()
                    .filter(|c| key(c) == nearest)
                    .max_by(|a, b| a.goodput_per_s.total_cmp(&b.goodput_per_s))
            });
            FormulaVerdict {
                formula: formula.explained(&bindings),
                sizes: formula.sizes().name().into(),
                value,
                nearest_cell: near.map(|c| c.cell),
                goodput_per_s: near.map_or(0.0, |c| c.goodput_per_s),
                p99_ms: near.map_or(0.0, |c| c.p99_ms),
                distance_from_recommended: recommended.map_or(f64::NAN, |r| value - r),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cells of one sweep: the first cell an earlier build recorded, at
    /// each pool size with the goodput given.
    fn sweep(goodputs: &[(u32, f64)]) -> Vec<CellRecord> {
        let cells = include_str!("../../tests/fixtures/results-7f0d7fe/sweep-sleep/cells.jsonl");
        let template: CellRecord = serde_json::from_str(cells.lines().next().unwrap()).unwrap();
        goodputs
            .iter()
            .map(|&(pool, goodput)| {
                let mut record = template.clone();
                record.settings.pool.size = pool;
                record.settings.instances = 1;
                record.postgres.max_connections = 100;
                record.business.goodput_per_s = goodput;
                record.metrics.errors_by_class.clear();
                record
            })
            .collect()
    }

    #[test]
    fn the_curves_peak_and_the_best_measured_cell_are_named_apart() {
        // A smooth rise with one lucky cell at pool 6: the fitted curve
        // peaks elsewhere than the best measured cell.
        let records = sweep(&[
            (1, 1000.0),
            (2, 1900.0),
            (4, 3300.0),
            (6, 4100.0),
            (8, 4000.0),
            (12, 3950.0),
            (16, 3700.0),
        ]);
        let rec = recommend(&records, &RecommendOptions::default());
        let knee = rec.knee.expect("a knee");
        let best = knee.best_measured.clone().expect("the best measured");
        assert_eq!((best.total_pool, best.cells.clone()), (6, vec![4]), "{knee:?}");
        assert!(knee.basis.starts_with("the USL curve"), "{knee:?}");
        assert_eq!(knee.peak_cells, [5], "the curve peaks at pool 8: {knee:?}");
        assert_eq!(knee.peak_goodput_per_s, 4000.0, "the peak group's measured median");
    }

    fn point(cell: usize, total_pool: u32, throughput_per_s: f64, mean_in_db_ms: f64) -> CellPoint {
        CellPoint {
            cell,
            total_pool,
            instances: 1,
            pool_size: total_pool,
            max_connections: 100,
            goodput_per_s: throughput_per_s,
            throughput_per_s,
            p99_ms: 10.0,
            refused: 0,
            pool_timeouts: 0,
            error_rate: 0.0,
            mean_in_db_ms,
            observed_active: 0.0,
            clients: None,
            rtt_set_ms: 0.0,
            rtt_measured_ms: 0.1,
            round_trips_per_attempt: 3.0,
            bottleneck: None,
            lock_wait_share: None,
        }
    }

    #[test]
    fn the_projection_adds_round_trips_times_the_rtt_and_keeps_the_knees_spare_share() {
        let cells = vec![point(1, 2, 150.0, 6.0), point(2, 3, 300.0, 6.0)];
        let knee = Knee {
            total_pool: 3,
            goodput_per_s: 300.0,
            p99_ms: 10.0,
            peak_goodput_per_s: 300.0,
            peak_cells: vec![2],
            cells: vec![2],
            pool_per_instance: [(1, 3), (2, 2)].into_iter().collect(),
            basis: "test".into(),
            best_measured: None,
        };
        let projection = project(&cells, &knee, 2.0).expect("round trips were counted");
        // 300/s × (6 ms + 3 × 2 ms) = 3.6 busy; the knee's 1.2 spare × √(3.6/1.8).
        assert!((projection.projected_in_db_ms - 12.0).abs() < 1e-9);
        assert!((projection.busy_at_knee - 1.8).abs() < 1e-9);
        assert!((projection.projected_busy - 3.6).abs() < 1e-9);
        assert_eq!(projection.total_pool, (3.6 + 1.2 * 2f64.sqrt()).ceil() as u32);
        assert_eq!(projection.pool_per_instance[&2], projection.total_pool.div_ceil(2));
        assert!((projection.server_ms - 5.7).abs() < 1e-9, "6 ms less 3 × 0.1 ms");
        assert_eq!(projection.cells, vec![2]);
        // Back to the knee's own RTT: the knee itself.
        assert_eq!(project(&cells, &knee, 0.0).unwrap().total_pool, 3);
        let uncounted: Vec<CellPoint> = cells
            .into_iter()
            .map(|c| CellPoint {
                round_trips_per_attempt: 0.0,
                ..c
            })
            .collect();
        assert!(project(&uncounted, &knee, 2.0).is_none(), "no count, no projection");
    }
}
