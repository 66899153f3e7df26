//! Driver threads: two application instances, each on a thread of its own
//! with its clients and their connections, through every pool kind, in the
//! closed and the open loop, with a cache, and stopped early; the cell says
//! how it was driven.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use contend::client::{PoolKind, PoolSettings};
use contend::driver::{DriverSettings, LiveCounts, Load, Ramp};
use contend::workload::WorkloadOverrides;
use contend::{
    exec::run_cell,
    record::{CellRecord, CellSettings},
};

use crate::util::{local_servers, prepare_machine, text, IsolatedTmp};

/// wallet-transfer (its invariants: money neither made nor lost) on two
/// instances with pools of 2, on two driver threads.
fn two_instances(kind: PoolKind, load: Load) -> CellSettings {
    CellSettings {
        workload: "wallet-transfer".into(),
        overrides: WorkloadOverrides {
            scale: Some(0.01),
            ..Default::default()
        },
        pool: PoolSettings {
            kind,
            size: 2,
            ..Default::default()
        },
        instances: 2,
        driver: DriverSettings {
            load,
            ramp: Ramp::Herd,
            warmup_s: 0.2,
            duration_s: 1.0,
            max_retries: 10,
            seed: 9,
            threads: 2,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn assert_clean(record: &CellRecord, what: &str, at_least_ok: u64) {
    let m = &record.metrics;
    assert!(m.ok >= at_least_ok, "{what}: {} ok", m.ok);
    assert_eq!(m.errors, 0, "{what}: {:?}", m.errors_by_class);
    assert!(
        !record.invariants.is_empty(),
        "{what}: wallet-transfer checks its money"
    );
    assert!(record.invariants_hold(), "{what}: {:?}", record.invariants);
    assert_eq!(
        record.settings.driver.threads, 2,
        "{what}: the cell records its threads"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_two_threads_keep_the_invariants_closed_and_open() {
    let servers = local_servers(Some(40)).await;
    for kind in [PoolKind::Deadpool, PoolKind::Sqlx, PoolKind::None] {
        let settings = two_instances(kind, Load::Closed { clients: 6 });
        let record = run_cell(&settings, &servers, Arc::new(LiveCounts::default()))
            .await
            .unwrap();
        // Without a pool every transaction pays a SCRAM login, slow in a
        // debug build.
        let at_least_ok = if kind == PoolKind::None { 3 } else { 20 };
        assert_clean(&record, &format!("{kind}, closed loop"), at_least_ok);
        if kind == PoolKind::Deadpool {
            let connects: u64 = record.metrics.operations.iter().map(|op| op.connect.count).sum();
            assert!(connects <= 4, "two pools of 2 opened {connects} connections");
        }
    }
    let open = Load::Open {
        rate_per_s: 200.0,
        max_in_flight: 8,
    };
    let record = run_cell(
        &two_instances(PoolKind::Deadpool, open),
        &servers,
        Arc::new(LiveCounts::default()),
    )
    .await
    .unwrap();
    assert_clean(&record, "open loop", 20);
    let schedule = record.schedule.as_ref().expect("an open loop reports its schedule");
    assert_eq!(schedule.scheduled, 200, "200/s for 1 s");
    assert_eq!(
        record.metrics.first_attempts, schedule.scheduled,
        "every measured arrival was taken by a worker on one of the threads"
    );
    assert!(schedule.lag.count > 0, "both threads' lag merged: {:?}", schedule.lag);
    servers.shutdown().await;
}

/// goal-count's cache on two threads, each with its instance's Redis
/// connection, stopped long before its planned 30 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threads_use_their_caches_and_stop_when_asked() {
    let servers = local_servers(Some(30)).await;
    let mut settings = two_instances(PoolKind::Deadpool, Load::Closed { clients: 4 });
    settings.workload = "goal-count".into();
    settings.overrides.scale = Some(0.005);
    settings.overrides.cache = true;
    settings.driver.duration_s = 30.0;
    let live = Arc::new(LiveCounts::default());
    let watching = Arc::clone(&live);
    let stopper = tokio::spawn(async move {
        while watching.ok.load(Ordering::Relaxed) < 1_500 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        watching.request_stop();
    });
    let started = Instant::now();
    let record = run_cell(&settings, &servers, live).await.unwrap();
    stopper.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
    assert!(record.metrics.measured_s < 20.0, "{}", record.metrics.measured_s);
    let counts = &record.metrics.operations[0].counts;
    assert!(counts.get("cache_hit").copied().unwrap_or(0) > 0, "{counts:?}");
    assert_eq!(counts.get("cache_error"), None, "{counts:?}");
    assert_eq!(record.metrics.errors, 0, "{:?}", record.metrics.errors_by_class);
    assert_eq!(record.settings.driver.threads, 2);
    servers.shutdown().await;
}

#[test]
fn contend_run_records_its_driver_threads() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let results = tmp.path().join("results");
    let output = tmp
        .contend()
        .args([
            "run",
            "--workload",
            "goal-count",
            "--backend",
            "local",
            "--scale",
            "0.005",
        ])
        .args(["--instances", "2", "--pool-size", "2", "--driver-threads", "3"])
        .args([
            "--clients",
            "4",
            "--duration",
            "1s",
            "--warmup",
            "0s",
            "--no-slo-exit",
            "--results",
        ])
        .arg(&results)
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    let run_dir = std::fs::read_dir(&results).unwrap().next().unwrap().unwrap().path();
    let record = contend::results::read_cells(&run_dir).unwrap().pop().unwrap();
    assert_eq!(record.settings.driver.threads, 2, "3 asked for, 2 instances to drive");
    assert!(record.metrics.ok > 0);

    let refused = tmp
        .contend()
        .args(["run", "--workload", "goal-count", "--driver-threads", "0"])
        .output()
        .unwrap();
    let (_, stderr) = text(&refused);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("'0' for '--driver-threads <N>': at least one thread must drive the clients"),
        "{stderr}"
    );
}
