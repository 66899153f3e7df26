//! The recommendation across the layers, for a sweep whose cells went
//! through a PgBouncer contend started: the knee of its `default_pool_size`
//! against goodput (within a p99 objective), the app pool per instance that
//! keeps the pooler's client queue short there, and the `max_connections`
//! that holds the pooler's pools. A pure function of records; every figure
//! names the cells it came from (`#n`, the line in cells.jsonl).

use serde::{Deserialize, Serialize};

use super::median;
use crate::provision::CellPooler;
use crate::record::CellRecord;

/// What a sweep with a pooler says about sizing the three layers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PoolerRecommendation {
    /// The smallest pooler pool size whose median goodput reaches the
    /// share of the best (and whose median p99 is within the objective).
    pub pool_size: u32,
    /// Its median goodput, per second.
    pub goodput_per_s: f64,
    /// Its median worst-operation p99, milliseconds.
    pub p99_ms: f64,
    /// Its cells.
    pub cells: Vec<usize>,
    /// The pooler pool size with the best median goodput, and its cells.
    pub best_pool_size: u32,
    /// That goodput, per second.
    pub best_goodput_per_s: f64,
    /// The best's cells.
    pub best_cells: Vec<usize>,
    /// At the knee: the app pool per instance with the shortest peak
    /// pooler queue (`cl_waiting`) among those keeping the knee's goodput
    /// share, and the instances.
    pub app_pool_size: u32,
    /// Instances of those cells.
    pub instances: u32,
    /// The peak `cl_waiting` sampled in those cells.
    pub peak_cl_waiting: u64,
    /// `max_connections` = pooler pools (1 per cell's database) × pool
    /// size + reserve pool + the server's reserved slots + headroom.
    pub max_connections: u32,
    /// The reserve pool and reserved slots in that sum.
    pub reserve_pool_size: u32,
    /// The server's reserved slots in that sum.
    pub reserved_connections: u32,
    /// The headroom in that sum.
    pub headroom: u32,
}

/// Cells of one pooler pool size: median goodput, median p99, their numbers.
type Group = (f64, f64, Vec<usize>);

/// The pooler recommendation of `records` (numbered from 1 as in
/// cells.jsonl), or `None` when fewer than two pooler pool sizes were
/// measured. `share` is the share of the best goodput the knee must reach
/// (e.g. 0.95); `p99_slo_ms` bounds its p99 when given.
pub fn recommend_pooler(
    records: &[CellRecord],
    share: f64,
    p99_slo_ms: Option<f64>,
    headroom: u32,
) -> Option<PoolerRecommendation> {
    let through: Vec<(usize, &CellRecord, u32, u32)> = records
        .iter()
        .enumerate()
        .filter_map(|(i, record)| match record.settings.pooler {
            Some(CellPooler::PgBouncer(settings)) => {
                Some((i + 1, record, settings.pool_size, settings.reserve_pool_size))
            }
            _ => None,
        })
        .collect();
    let mut sizes: Vec<u32> = through.iter().map(|(_, _, size, _)| *size).collect();
    sizes.sort_unstable();
    sizes.dedup();
    if sizes.len() < 2 {
        return None;
    }
    let group = |size: u32| -> Group {
        let cells: Vec<&(usize, &CellRecord, u32, u32)> = through.iter().filter(|c| c.2 == size).collect();
        let goodput = median(&mut cells.iter().map(|c| c.1.business.goodput_per_s).collect::<Vec<_>>());
        let p99 = median(&mut cells.iter().map(|c| c.1.metrics.worst_p99_ms()).collect::<Vec<_>>());
        (goodput, p99, cells.iter().map(|c| c.0).collect())
    };
    let groups: Vec<(u32, Group)> = sizes.iter().map(|&size| (size, group(size))).collect();
    let best = groups.iter().max_by(|a, b| a.1 .0.total_cmp(&b.1 .0)).cloned()?;
    let (best_pool_size, (best_goodput, _, best_cells)) = best.clone();
    // No size within the objective: the best is what is said.
    let (pool_size, (goodput, p99, cells)) = groups
        .iter()
        .find(|(_, (goodput, p99, _))| *goodput >= share * best_goodput && p99_slo_ms.is_none_or(|slo| *p99 <= slo))
        .cloned()
        .unwrap_or(best);
    let at_knee: Vec<&(usize, &CellRecord, u32, u32)> = through.iter().filter(|c| c.2 == pool_size).collect();
    let queue = |record: &CellRecord| record.pooler.as_ref().map_or(0, |p| p.samples.max_cl_waiting());
    let keeps_share = at_knee
        .iter()
        .filter(|c| c.1.business.goodput_per_s >= share * goodput)
        .min_by_key(|c| (queue(c.1), c.1.settings.pool.size))
        .or_else(|| at_knee.first())?;
    let reserve = keeps_share.3;
    let reserved = keeps_share.1.postgres.reserved_connections;
    Some(PoolerRecommendation {
        pool_size,
        goodput_per_s: goodput,
        p99_ms: p99,
        cells,
        best_pool_size,
        best_goodput_per_s: best_goodput,
        best_cells,
        app_pool_size: keeps_share.1.settings.pool.size,
        instances: keeps_share.1.settings.instances,
        peak_cl_waiting: queue(keeps_share.1),
        max_connections: pool_size + reserve + reserved + headroom,
        reserve_pool_size: reserve,
        reserved_connections: reserved,
        headroom,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provision::{PoolMode, PoolerSettings};

    /// A recorded cell of the fixtures, through a PgBouncer pool of
    /// `pool_size`, with `goodput`.
    fn cell(pool_size: u32, goodput: f64) -> CellRecord {
        let run: serde_json::Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/results-7f0d7fe/sweep-sleep/run.json"
        ))
        .unwrap();
        let mut record: CellRecord = serde_json::from_value(run["cells"][0].clone()).unwrap();
        record.settings.pooler = Some(CellPooler::PgBouncer(PoolerSettings {
            mode: PoolMode::Transaction,
            pool_size,
            reserve_pool_size: 1,
            ..PoolerSettings::default()
        }));
        record.business.goodput_per_s = goodput;
        record
    }

    #[test]
    fn the_knee_is_the_smallest_pool_size_within_the_share_of_the_best() {
        let cells = [cell(2, 100.0), cell(8, 190.0), cell(16, 200.0), cell(8, 192.0)];
        let rec = recommend_pooler(&cells, 0.95, None, 5).unwrap();
        assert_eq!(rec.pool_size, 8);
        assert_eq!(rec.cells, vec![2, 4]);
        assert_eq!(rec.goodput_per_s, 191.0, "the median of its cells");
        assert_eq!((rec.best_pool_size, rec.best_cells.clone()), (16, vec![3]));
        let reserved = cells[0].postgres.reserved_connections;
        assert_eq!(rec.max_connections, 8 + 1 + reserved + 5);
        // An objective no pool size meets: the best is what is said.
        let rec = recommend_pooler(&cells, 0.95, Some(0.0), 5).unwrap();
        assert_eq!(rec.pool_size, 16);
        assert_eq!(rec.p99_ms, cells[2].metrics.worst_p99_ms());
        // One pool size is no axis.
        assert_eq!(recommend_pooler(&cells[..1], 0.95, None, 5), None);
    }
}
