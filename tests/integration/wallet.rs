//! wallet-transfer against a real server: every strategy keeps the money
//! right, naive locking deadlocks on hot wallets where ordered locking does
//! not, and SERIALIZABLE fails with 40001 and is retried.

use std::sync::Arc;

use contend::client::PoolSettings;
use contend::driver::{DriverSettings, LiveCounts, Load, Ramp};
use contend::provision::Servers;
use contend::workload::WorkloadOverrides;
use contend::{
    exec::run_cell,
    record::{CellRecord, CellSettings},
};

use crate::util::{local_servers, prepare_machine};

const INVARIANTS: [&str; 3] = [
    "total balance is unchanged",
    "no balance is negative",
    "ledger agrees with balances",
];

fn cell(strategy: &str, clients: u32, pool_size: u32) -> CellSettings {
    CellSettings {
        workload: "wallet-transfer".into(),
        overrides: WorkloadOverrides {
            scale: Some(0.01),
            strategy: Some(strategy.into()),
            ..Default::default()
        },
        pool: PoolSettings {
            size: pool_size,
            ..Default::default()
        },
        driver: DriverSettings {
            load: Load::Closed { clients },
            ramp: Ramp::Herd,
            warmup_s: 0.3,
            duration_s: 2.0,
            max_retries: 10,
            seed: 7,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A few very hot wallets: 20 wallets at scale 1, steep skew.
fn hot(strategy: &str) -> CellSettings {
    let mut settings = cell(strategy, 32, 8);
    settings.overrides.scale = Some(1.0);
    settings.overrides.settings = vec![
        ("data.wallets_per_scale".into(), "20".into()),
        ("traffic.zipf_exponent".into(), "1.5".into()),
    ];
    settings
}

/// Local servers as [`local_servers`] gives, with `deadlock_timeout` at
/// 50 ms instead of 1 s: each deadlock otherwise stalls its transfers for a
/// second, and a 2 s cell would see only a couple, most retried after it.
async fn servers_detecting_deadlocks_quickly(max_connections: u32) -> Servers {
    prepare_machine();
    contend::provision::provision(&contend::provision::ProvisionOptions {
        backend: contend::provision::BackendChoice::Local,
        max_connections: Some(max_connections),
        pg_settings: vec![("deadlock_timeout".into(), "50ms".into())],
        ..Default::default()
    })
    .await
    .expect("starting local servers")
}

async fn run(settings: &CellSettings, servers: &Servers) -> CellRecord {
    run_cell(settings, servers, Arc::new(LiveCounts::default()))
        .await
        .unwrap()
}

fn count(record: &CellRecord, op: &str, what: &str) -> u64 {
    record
        .metrics
        .operations
        .iter()
        .find(|o| o.name == op)
        .and_then(|o| o.counts.get(what).copied())
        .unwrap_or(0)
}

fn errors(record: &CellRecord, class: &str) -> u64 {
    record.metrics.errors_by_class.get(class).copied().unwrap_or(0)
}

fn assert_invariants(record: &CellRecord) {
    let names: Vec<&str> = record.invariants.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, INVARIANTS, "{:?}", record.invariants);
    assert!(record.invariants_hold(), "{:#?}", record.invariants);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_strategy_keeps_the_money_right_through_a_small_pool() {
    let servers = local_servers(Some(40)).await;
    for strategy in ["naive", "ordered", "serializable"] {
        let record = run(&cell(strategy, 64, 8), &servers).await;
        assert_eq!(record.strategy.as_deref(), Some(strategy));
        assert_invariants(&record);
        let transferred = count(&record, "transfer", "transferred");
        let read = count(&record, "history", "history_read");
        eprintln!(
            "{strategy}: {transferred} transferred, {} insufficient, {read} history reads, errors {:?}, {} retries",
            count(&record, "transfer", "insufficient_funds"),
            record.metrics.errors_by_class,
            record.metrics.retries
        );
        assert!(transferred > 0, "{strategy}: {:?}", record.metrics.operations[0].counts);
        assert!(read > 0, "{strategy}");
        assert_eq!(record.business.successes, transferred + read);
        let unexpected: Vec<_> = record
            .metrics
            .errors_by_class
            .keys()
            .filter(|class| !["40P01", "40001"].contains(&class.as_str()))
            .collect();
        assert!(
            unexpected.is_empty(),
            "{strategy}: {:?}",
            record.metrics.errors_by_class
        );
    }
    servers.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn naive_locking_deadlocks_on_hot_wallets_and_ordered_locking_does_not() {
    let servers = servers_detecting_deadlocks_quickly(40).await;
    let naive = run(&hot("naive"), &servers).await;
    let deadlocks = errors(&naive, "40P01");
    eprintln!(
        "naive: {deadlocks} deadlocks, {} retries, {} transferred, errors {:?}",
        naive.metrics.retries,
        count(&naive, "transfer", "transferred"),
        naive.metrics.errors_by_class
    );
    assert!(deadlocks > 0, "{:?}", naive.metrics.errors_by_class);
    assert!(naive.metrics.retries > 0);
    assert_invariants(&naive);

    let ordered = run(&hot("ordered"), &servers).await;
    eprintln!(
        "ordered: {} transferred, errors {:?}",
        count(&ordered, "transfer", "transferred"),
        ordered.metrics.errors_by_class
    );
    assert_eq!(errors(&ordered, "40P01"), 0, "{:?}", ordered.metrics.errors_by_class);
    assert!(count(&ordered, "transfer", "transferred") > 0);
    assert_invariants(&ordered);
    servers.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serializable_transfers_fail_with_40001_and_are_retried() {
    let servers = local_servers(Some(40)).await;
    let record = run(&hot("serializable"), &servers).await;
    let failures = errors(&record, "40001");
    eprintln!(
        "serializable: {failures} serialization failures, {} retries, {} transferred, errors {:?}",
        record.metrics.retries,
        count(&record, "transfer", "transferred"),
        record.metrics.errors_by_class
    );
    assert!(failures > 0, "{:?}", record.metrics.errors_by_class);
    assert!(record.metrics.retries > 0);
    assert!(count(&record, "transfer", "transferred") > 0);
    assert_invariants(&record);
    servers.shutdown().await;
}
