//! The network between the app pools and the server (`--network-rtt`) on
//! real servers, timed: a test binary of its own, so that no test of the
//! main binary runs beside these on the machine's two cores (the proxy's
//! thread woken milliseconds late by them moved what is judged here by
//! more than its tolerance). What they show: a script of k statements spends about k round trips more
//! in the database, the record holds the round trip the clients saw and
//! the proxy's cost, and at RTT 0 the pools reach the server itself.

use std::path::PathBuf;
use std::sync::Arc;

use contend::client::PoolSettings;
use contend::driver::{DriverSettings, LiveCounts, Load, Ramp};
use contend::exec::run_cell;
use contend::network::{upstream_of, NetworkSettings};
use contend::record::{CellRecord, CellSettings};
use contend::workload::script::{ScriptData, ScriptFile, ScriptSettings};
use contend::workload::WorkloadOverrides;

#[allow(dead_code)]
#[path = "../integration/util.rs"]
mod util;

use util::local_servers;

/// Statements in the test's script: each one round trip.
const K: usize = 5;

/// A script of [`K`] one-row SELECTs (autocommit: one round trip each).
fn k_statements(dir: &tempfile::TempDir) -> PathBuf {
    let path = dir.path().join("five.sql");
    let script: String = (1..=K).map(|i| format!("SELECT {i};\n")).collect();
    std::fs::write(&path, script).unwrap();
    path
}

fn cell(script: &std::path::Path, rtt_ms: f64) -> CellSettings {
    CellSettings {
        workload: contend::workload::script::NAME.into(),
        overrides: WorkloadOverrides {
            script: Some(ScriptSettings {
                scripts: vec![ScriptFile {
                    path: script.to_path_buf(),
                    weight: 1,
                }],
                data: ScriptData::Empty,
            }),
            ..Default::default()
        },
        pool: PoolSettings {
            size: 2,
            ..Default::default()
        },
        driver: DriverSettings {
            load: Load::Closed { clients: 2 },
            ramp: Ramp::Herd,
            warmup_s: 0.5,
            duration_s: 2.0,
            ..Default::default()
        },
        network: NetworkSettings { rtt_ms, jitter_ms: 0.0 },
        ..Default::default()
    }
}

/// Median time in the database per transaction, milliseconds: the
/// median, since on two cores shared with the other tests of this binary
/// the proxy's thread is sometimes woken milliseconds late, and those tails
/// move a mean by more than the 20 % judged here.
fn in_db_ms(record: &CellRecord) -> f64 {
    record.metrics.operations[0].in_db.p50_us as f64 / 1000.0
}

/// The tests of this binary, one at a time: each judges timings that the
/// other's load would move.
static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    ALONE.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[test]
fn k_statements_at_2ms_spend_k_round_trips_more_in_the_database() {
    let _alone = alone();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(k_statements_at_2ms());
}

async fn k_statements_at_2ms() {
    let servers = local_servers(None).await;
    let dir = tempfile::tempdir().unwrap();
    let script = k_statements(&dir);
    let server_addr = upstream_of(&servers.postgres.client_url).unwrap().to_string();
    let live = || Arc::new(LiveCounts::default());

    let direct = run_cell(&cell(&script, 0.0), &servers, live()).await.unwrap();
    let network = direct.network.as_ref().expect("the round trip is recorded");
    assert!(network.proxy.is_none(), "RTT 0: no proxy in the path: {network:?}");
    assert_eq!(
        network.pools_connect_to, server_addr,
        "RTT 0: the pools reach the server itself"
    );

    let far = run_cell(&cell(&script, 2.0), &servers, live()).await.unwrap();
    let network = far.network.as_ref().expect("the round trip is recorded");
    let proxy = network.proxy.as_ref().expect("RTT 2 ms: the proxy's report");
    assert_ne!(
        network.pools_connect_to, server_addr,
        "RTT 2 ms: the pools reach the proxy"
    );
    let (near_ms, far_ms) = (in_db_ms(&direct), in_db_ms(&far));
    let rise_ms = far_ms - near_ms;
    let expected_ms = K as f64 * 2.0;
    eprintln!(
        "in-DB per transaction: {near_ms:.3} ms at RTT 0, {far_ms:.3} ms at 2 ms (rise {rise_ms:.3} ms, expected {expected_ms} ms); \
         measured RTT {:.3} ms (the proxy's own path {:.3} ms, trimmed); proxy CPU {:.3} s for {} transactions ({:.3} s per 1k); timer late p50 {:.1} µs, p99 {:.1} µs",
        network.rtt_pooled_ms,
        proxy.trimmed_ms,
        proxy.cpu_s,
        far.metrics.ok + far.metrics.warmup_attempts,
        proxy.cpu_s * 1000.0 / (far.metrics.ok + far.metrics.warmup_attempts) as f64,
        proxy.timer_late_p50_us,
        proxy.timer_late_p99_us,
    );
    // The network's part of the clients' round trip (the server's and
    // loopback's, the direct round trip, taken out): 2 ms ± 0.3 ms.
    let added_ms = network.rtt_pooled_ms - network.rtt_direct_ms;
    assert!(
        (added_ms - 2.0).abs() <= 0.3,
        "the network adds {added_ms:.3} ms: {network:?}"
    );
    assert!(network.rtt_direct_ms < 1.0, "the direct side stays direct: {network:?}");
    assert!(
        proxy.cpu_s > 0.0 && proxy.connections >= 2 && proxy.chunks > 0,
        "{proxy:?}"
    );

    assert!(
        (rise_ms - expected_ms).abs() <= 0.2 * expected_ms,
        "{K} statements at 2 ms: in-DB time rises by {rise_ms:.2} ms, not {expected_ms} ms ± 20%"
    );
    assert!(far.metrics.errors == 0 && direct.metrics.errors == 0);
    for record in [&direct, &far] {
        let counted = record.metrics.operations[0].round_trips_per_attempt;
        assert!(
            (counted - K as f64).abs() < 0.05,
            "{K} statements, {counted} round trips counted"
        );
    }
}

/// An open-loop sleep sweep at RTT 0 and 2 ms: 300 transactions/s of
/// BEGIN, a 5 ms pg_sleep, COMMIT (3 round trips) need about 300 × 5.2 ms
/// ≈ 1.6 connections busy over loopback and 300 × 11.2 ms ≈ 3.4 at 2 ms,
/// so the knee at 2 ms is larger; the projection from the RTT-0 cells
/// (`recommend --for-rtt 2ms`) lands within 25% of it.
#[test]
fn the_knee_grows_with_the_rtt_and_the_projection_from_loopback_finds_it() {
    let _alone = alone();
    util::prepare_machine();
    let tmp = util::IsolatedTmp::new();
    let results = tmp.path().join("results");
    let output = tmp
        .contend()
        .args(["sweep", "--workload", "sleep", "--pool-sizes", "1,2,3,4,6"])
        .args([
            "--network-rtts",
            "0,2ms",
            "--rate",
            "300",
            "--duration",
            "2s",
            "--warmup",
            "0.5s",
        ])
        .args([
            "--set",
            "traffic.delay_us=5000",
            "--p99-slo-ms",
            "10000",
            "--backend",
            "local",
        ])
        .args(["--no-slo-exit", "--results"])
        .arg(&results)
        .output()
        .unwrap();
    let (stdout, stderr) = util::text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("made for a network RTT of 2 ms"), "{stdout}");
    assert!(stdout.contains("made for loopback"), "{stdout}");
    let dir = std::fs::read_dir(&results).unwrap().flatten().next().unwrap().path();
    let output = tmp
        .contend()
        .args(["recommend", "--json", "--for-rtt", "2ms", "--p99-slo-ms", "10000"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", util::text(&output).1);
    let recommendations: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(recommendations.len(), 2, "one per round trip");
    let of_rtt = |rtt: f64| {
        recommendations
            .iter()
            .find(|r| r["network_rtt_ms"].as_f64() == Some(rtt))
            .unwrap_or_else(|| panic!("a recommendation for RTT {rtt}"))
    };
    let (near, far) = (of_rtt(0.0), of_rtt(2.0));
    let near_knee = near["knee"]["total_pool"].as_u64().expect("a knee at RTT 0");
    let far_knee = far["knee"]["total_pool"].as_u64().expect("a knee at 2 ms");
    let projected = near["projection"]["total_pool"]
        .as_u64()
        .expect("a projection from RTT 0");
    let off = (projected as f64 - far_knee as f64).abs() / far_knee as f64;
    eprintln!(
        "knee at RTT 0: {near_knee}; at 2 ms: {far_knee}; projected from RTT 0 for 2 ms: {projected} ({:.0}% off); projection {}",
        off * 100.0,
        near["projection"]
    );
    assert!(
        far_knee > near_knee,
        "the knee at 2 ms ({far_knee}) is larger than at 0 ({near_knee})"
    );
    assert!(off <= 0.25, "projected {projected} for a measured knee of {far_knee}");
    let text = tmp
        .contend()
        .args(["recommend", "--for-rtt", "2ms", "--p99-slo-ms", "10000"])
        .arg(&dir)
        .output()
        .unwrap();
    let (stdout, _) = util::text(&text);
    assert!(
        stdout.contains("- projection (Little's law, not measured): at RTT 2 ms"),
        "{stdout}"
    );
}
