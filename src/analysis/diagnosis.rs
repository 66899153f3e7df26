//! Where a cell's time went, as one bottleneck class with its evidence: a
//! pure function of the cell's record ([`diagnose`]).
//!
//! The classes are tried in order, the first whose evidence crosses its
//! threshold wins: refused or slow connections (nothing else matters when
//! clients cannot connect), contend's own CPU (then every other figure
//! understates the server), the pool, the server's lock waits, its I/O
//! waits, its CPU; else nothing saturated.

use std::collections::BTreeMap;

use crate::client::PoolKind;
use crate::record::{Bottleneck, CellRecord, Diagnosis, TimeShares};

/// Refused connection attempts, of all attempts, that make connections the bottleneck.
const REFUSED_SHARE: f64 = 0.01;
/// Share of end-to-end time spent opening connections that does.
const CONNECT_SHARE: f64 = 0.30;
/// contend's CPU per driver thread that makes the client the bottleneck.
const CLIENT_CPU_SHARE: f64 = 0.85;
/// Share of end-to-end time waiting for a pooled connection that makes the pool the bottleneck.
const POOL_WAIT_SHARE: f64 = 0.30;
/// Pool timeouts, of all attempts, that do.
const POOL_TIMEOUT_SHARE: f64 = 0.01;
/// Share of active backend samples waiting on Lock or LWLock that makes locks the bottleneck.
const LOCK_WAIT_SHARE: f64 = 0.30;
/// Share waiting on IO that makes I/O the bottleneck.
const IO_WAIT_SHARE: f64 = 0.30;
/// Share of end-to-end time in the database, and of active samples on
/// CPU, that make the server's CPU the bottleneck.
const SERVER_CPU_SHARE: f64 = 0.60;

/// The error classes (their keys) of an attempt refused a connection.
const REFUSED_CLASSES: [&str; 3] = ["53300", "connection_failed", "too_many_open_files"];

/// The diagnosis of one cell.
pub fn diagnose(record: &CellRecord) -> Diagnosis {
    let metrics = &record.metrics;
    let attempts = metrics.attempts.max(1) as f64;
    let (mut end_to_end_us, mut pool_wait_us, mut connect_us, mut in_db_us) = (0.0, 0.0, 0.0, 0.0);
    for op in &metrics.operations {
        end_to_end_us += op.end_to_end.mean_us * op.end_to_end.count as f64;
        pool_wait_us += op.pool_wait.mean_us * op.pool_wait.count as f64;
        connect_us += op.connect.mean_us * op.connect.count as f64;
        in_db_us += op.in_db.mean_us * op.in_db.count as f64;
    }
    let share = |part: f64| {
        if end_to_end_us > 0.0 {
            (part / end_to_end_us).clamp(0.0, 1.0)
        } else {
            0.0
        }
    };
    let (pool_wait, connect, in_db) = (share(pool_wait_us), share(connect_us), share(in_db_us));
    let time_shares = TimeShares {
        pool_wait,
        connect,
        in_db,
        outside: (1.0 - pool_wait - connect - in_db).max(0.0),
    };
    let class_share = |keys: &[&str]| {
        keys.iter()
            .map(|key| metrics.errors_by_class.get(*key).copied().unwrap_or(0))
            .sum::<u64>() as f64
            / attempts
    };
    let refused_share = class_share(&REFUSED_CLASSES);
    let mut refused: Vec<(&str, u64)> = REFUSED_CLASSES
        .iter()
        .filter_map(|key| metrics.errors_by_class.get(*key).map(|n| (*key, *n)))
        .filter(|(_, n)| *n > 0)
        .collect();
    refused.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
    let refused_classes = refused.into_iter().map(|(key, _)| key.to_string()).collect();
    let pool_timeout_share = class_share(&["pool_timeout"]);

    let samples = &record.server.samples;
    let mut waits: BTreeMap<String, u64> = BTreeMap::new();
    for sample in samples {
        for (kind, count) in &sample.by_wait_event_type {
            *waits.entry(kind.clone()).or_default() += u64::from(*count);
        }
    }
    let waited: u64 = waits.values().sum();
    let wait_shares: BTreeMap<String, f64> = waits
        .into_iter()
        .map(|(kind, count)| (kind, count as f64 / waited.max(1) as f64))
        .collect();
    let mean_active = if samples.is_empty() {
        0.0
    } else {
        samples
            .iter()
            .map(|s| f64::from(s.by_state.get("active").copied().unwrap_or(0)))
            .sum::<f64>()
            / samples.len() as f64
    };
    let wait_share = |kinds: &[&str]| {
        kinds
            .iter()
            .map(|k| wait_shares.get(*k).copied().unwrap_or(0.0))
            .sum::<f64>()
    };
    let busy_in_db = metrics.throughput_per_s * (in_db_us / attempts) / 1e6;
    let pool_connections = match record.settings.pool.kind {
        PoolKind::None => None,
        _ => Some(record.settings.instances * record.settings.pool.size),
    };
    let client_cpu_share = record.client_cpu.as_ref().and_then(|cpu| {
        let capacity = cpu.wall_s * f64::from(record.settings.driver.threads.max(1));
        (capacity > 0.0).then(|| cpu.cpu_s / capacity)
    });

    let bottleneck = if refused_share >= REFUSED_SHARE || connect >= CONNECT_SHARE {
        Bottleneck::Connections
    } else if client_cpu_share.is_some_and(|s| s >= CLIENT_CPU_SHARE) {
        Bottleneck::Client
    } else if pool_wait >= POOL_WAIT_SHARE || pool_timeout_share >= POOL_TIMEOUT_SHARE {
        Bottleneck::Pool
    } else if wait_share(&["Lock", "LWLock"]) >= LOCK_WAIT_SHARE {
        Bottleneck::ServerLocks
    } else if wait_share(&["IO"]) >= IO_WAIT_SHARE {
        Bottleneck::ServerIo
    } else if in_db >= SERVER_CPU_SHARE && wait_share(&["CPU"]) >= SERVER_CPU_SHARE {
        Bottleneck::ServerCpu
    } else {
        Bottleneck::None
    };
    Diagnosis {
        bottleneck,
        time_shares,
        mean_end_to_end_ms: end_to_end_us / attempts / 1000.0,
        refused_share,
        refused_classes,
        pool_timeout_share,
        wait_shares,
        mean_active,
        busy_in_db,
        pool_connections,
        client_cpu_share,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::ClientCpu;

    /// The first cell of a sweep recorded by an earlier build (sleep
    /// workload: its time is in pg_sleep, a Timeout wait).
    fn recorded_cell() -> CellRecord {
        let cells = include_str!("../../tests/fixtures/results-7f0d7fe/sweep-sleep/cells.jsonl");
        serde_json::from_str(cells.lines().next().unwrap()).unwrap()
    }

    #[test]
    fn shares_of_time_add_up_and_an_old_cell_is_diagnosed_too() {
        let d = diagnose(&recorded_cell());
        let t = d.time_shares;
        let sum = t.pool_wait + t.connect + t.in_db + t.outside;
        assert!((sum - 1.0).abs() < 1e-9 || t.outside == 0.0, "{t:?}");
        assert!(d.client_cpu_share.is_none(), "not measured then");
        assert!(d.mean_end_to_end_ms > 0.0);
    }

    #[test]
    fn a_busy_client_outranks_the_pool_and_refusals_outrank_the_client() {
        let mut record = recorded_cell();
        let threads = f64::from(record.settings.driver.threads.max(1));
        record.client_cpu = Some(ClientCpu {
            cpu_s: 0.95 * 4.0 * threads,
            wall_s: 4.0,
        });
        let d = diagnose(&record);
        assert_eq!(d.bottleneck, Bottleneck::Client, "{d:?}");
        assert!((d.client_cpu_share.unwrap() - 0.95).abs() < 1e-9);
        record
            .metrics
            .errors_by_class
            .insert("53300".into(), record.metrics.attempts / 10 + 1);
        assert_eq!(diagnose(&record).bottleneck, Bottleneck::Connections);
    }

    #[test]
    fn lock_waits_among_active_backends_make_the_locks_the_bottleneck() {
        let mut record = recorded_cell();
        for sample in &mut record.server.samples {
            sample.by_wait_event_type = BTreeMap::from([("Lock".to_string(), 3), ("CPU".to_string(), 1)]);
        }
        for op in &mut record.metrics.operations {
            op.pool_wait.mean_us = 0.0;
        }
        let d = diagnose(&record);
        assert_eq!(d.bottleneck, Bottleneck::ServerLocks, "{d:?}");
        assert!((d.wait_shares["Lock"] - 0.75).abs() < 1e-9);
    }
}
