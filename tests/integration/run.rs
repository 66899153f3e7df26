//! One goal-count cell through each pool kind, against a real server: the
//! 53300 herd, pool timeouts, the template copy, and `contend run` itself.

use std::sync::Arc;
use std::time::Duration;

use contend::client::{PoolKind, PoolSettings};
use contend::driver::{DriverSettings, LiveCounts, Load, Ramp};
use contend::provision::Servers;
use contend::workload::WorkloadOverrides;
use contend::{
    exec::run_cell,
    record::{CellRecord, CellSettings},
};

use crate::util::{local_servers, prepare_machine, text, IsolatedTmp};

async fn servers(max_connections: u32) -> Servers {
    local_servers(Some(max_connections)).await
}

fn cell(kind: PoolKind, size: u32, clients: u32, ramp: Ramp) -> CellSettings {
    CellSettings {
        workload: "goal-count".into(),
        overrides: WorkloadOverrides {
            scale: Some(0.005),
            ..Default::default()
        },
        pool: PoolSettings {
            kind,
            size,
            ..Default::default()
        },
        driver: DriverSettings {
            load: Load::Closed { clients },
            ramp,
            warmup_s: 0.5,
            duration_s: 2.0,
            seed: 7,
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn run(settings: &CellSettings, servers: &Servers) -> CellRecord {
    run_cell(settings, servers, Arc::new(LiveCounts::default()))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_pool_kind_runs_goal_count_cleanly() {
    let servers = servers(60).await;
    for kind in [PoolKind::Deadpool, PoolKind::Sqlx, PoolKind::None] {
        let record = run(&cell(kind, 4, 8, Ramp::Linear { over_s: 0.2 }), &servers).await;
        let m = &record.metrics;
        assert!(m.ok > 10, "{kind}: {} ok", m.ok);
        assert_eq!(m.errors, 0, "{kind}: {:?}", m.errors_by_class);
        let names: Vec<&str> = m.operations.iter().map(|op| op.name.as_str()).collect();
        assert_eq!(names, ["initialize", "browse", "progress", "claim"]);
        let initialize = &m.operations[0];
        assert!(
            initialize.in_db.count > 0 && initialize.in_db.p50_us > 0,
            "{kind}: in-db time recorded"
        );
        assert!(initialize.end_to_end.p99_us >= initialize.in_db.p50_us);
        if kind == PoolKind::None {
            assert_eq!(
                initialize.connect.count,
                initialize.first_attempts + initialize.retries,
                "a connect per attempt"
            );
            assert_eq!(initialize.pool_wait.max_us, 0, "no pool, no pool wait");
        }
        if kind == PoolKind::Deadpool {
            let connects: u64 = m.operations.iter().map(|op| op.connect.count).sum();
            assert!(
                connects <= 4,
                "deadpool opened {connects} connections for a pool of 4 (warmup excluded)"
            );
        }
        assert!(
            record.postgres.url.is_empty() || !serde_json::to_string(&record).unwrap().contains(&record.postgres.url)
        );
    }
    servers.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_herd_without_a_pool_meets_too_many_clients_and_a_bounded_pool_does_not() {
    let servers = servers(30).await;
    let unpooled = run(&cell(PoolKind::None, 1, 45, Ramp::Herd), &servers).await;
    let refused = unpooled.metrics.errors_by_class.get("53300").copied().unwrap_or(0);
    assert!(
        refused > 0,
        "45 clients against max_connections 30: {:?}",
        unpooled.metrics.errors_by_class
    );
    assert!(
        unpooled.metrics.ok > 0,
        "the connections that got in did work: {:?}",
        unpooled.metrics
    );

    let pooled = run(&cell(PoolKind::Deadpool, 10, 45, Ramp::Herd), &servers).await;
    assert_eq!(pooled.metrics.errors, 0, "{:?}", pooled.metrics.errors_by_class);
    assert!(pooled.metrics.goodput_per_s > unpooled.metrics.goodput_per_s);
    servers.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starved_pool_times_out_and_says_so() {
    let servers = servers(20).await;
    let mut settings = cell(PoolKind::Deadpool, 1, 12, Ramp::Herd);
    settings.pool.acquire_timeout = Duration::from_millis(1);
    let record = run(&settings, &servers).await;
    let timeouts = record.metrics.errors_by_class.get("pool_timeout").copied().unwrap_or(0);
    assert!(timeouts > 0, "{:?}", record.metrics.errors_by_class);
    servers.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_is_loaded_once_and_every_cell_gets_a_fresh_copy() {
    let servers = servers(20).await;
    let settings = cell(PoolKind::Deadpool, 2, 2, Ramp::Herd);
    let first = run(&settings, &servers).await;
    let second = run(&settings, &servers).await;
    assert!(second.template.reused, "the second cell copies the first's template");
    assert_eq!(first.template.name, second.template.name);
    assert!(second.copy_ms > 0.0);
    // The cells assigned goals; the template still has exactly the seed.
    let template_url = contend::provision::database_url(&servers.postgres.url, &first.template.name);
    let (client, connection) = tokio_postgres::connect(&template_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let rows: i64 = client
        .query_one("SELECT count(*) FROM user_goals", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1_000 * 10, "scale 0.005: 1,000 users × 10 goals");
    drop(client);
    servers.shutdown().await;
}

#[test]
fn contend_run_prints_a_summary_and_appends_the_cell() {
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
            "--pool",
            "deadpool",
            "--pool-size",
            "4",
        ])
        .args([
            "--clients",
            "6",
            "--duration",
            "1s",
            "--warmup",
            "0s",
            "--scale",
            "0.005",
            "--no-slo-exit",
            "--results",
        ])
        .arg(&results)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("goodput"), "{stdout}");
    assert!(stdout.contains("initialize"), "{stdout}");
    let run_dir = std::fs::read_dir(&results).unwrap().next().unwrap().unwrap().path();
    let cells = std::fs::read_to_string(run_dir.join("cells.jsonl")).unwrap();
    assert_eq!(cells.lines().count(), 1);
    let record: serde_json::Value = serde_json::from_str(cells.lines().next().unwrap()).unwrap();
    assert_eq!(record["schema"], "contend.cell/1");
    assert_eq!(record["settings"]["pool"]["kind"], "deadpool");
    assert!(record["metrics"]["ok"].as_u64().unwrap() > 0);
    assert!(!cells.contains("postgres://"), "no URL, so no password, in results");
}

#[test]
fn contend_run_refuses_bad_input_in_one_line() {
    let tmp = IsolatedTmp::new();
    for (args, expected) in [
        (
            vec!["--workload", "nope"],
            "invalid value 'nope' for '--workload <WORKLOAD>'",
        ),
        (
            vec!["--workload", "goal-count", "--pool-size", "0"],
            "'0' for '--pool-size <POOL_SIZE>'",
        ),
        (
            vec!["--workload", "goal-count", "--clients", "0"],
            "'0' for '--clients <CLIENTS>'",
        ),
        (
            vec!["--workload", "goal-count", "--duration", "soon"],
            "is not a duration",
        ),
        (vec!["--workload", "goal-count", "--pool", "bb8"], "invalid value 'bb8'"),
    ] {
        let output = tmp.contend().arg("run").args(&args).output().unwrap();
        let (_, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(
            stderr.lines().filter(|l| l.contains("error")).count(),
            1,
            "{args:?}: {stderr}"
        );
    }
}

/// Redis killed mid-run: goal-count's cache falls back to the database,
/// counts its cache errors, and the run still succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_count_cache_falls_back_to_the_database_when_redis_dies() {
    let servers = servers(20).await;
    let port = url::Url::parse(&servers.redis.as_ref().unwrap().url)
        .unwrap()
        .port()
        .unwrap();
    let mut settings = cell(PoolKind::Deadpool, 4, 4, Ramp::Herd);
    settings.overrides.cache = true;
    settings.driver.warmup_s = 0.0;
    settings.driver.duration_s = 3.0;
    let live = Arc::new(LiveCounts::default());
    let watching = Arc::clone(&live);
    let killer = tokio::spawn(async move {
        for _ in 0..1_500 {
            if watching.ok.load(std::sync::atomic::Ordering::Relaxed) >= 1_500 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for process in crate::util::processes_mentioning(&format!("127.0.0.1:{port}")) {
            let pid: i32 = process.split(':').next().unwrap().parse().unwrap();
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    });
    let record = run_cell(&settings, &servers, live).await.unwrap();
    killer.await.unwrap();
    let initialize = &record.metrics.operations[0];
    let counts = &initialize.counts;
    assert!(counts.get("cache_hit").copied().unwrap_or(0) > 0, "{counts:?}");
    assert!(
        counts.get("cache_error").copied().unwrap_or(0) > 0,
        "Redis died: {counts:?}"
    );
    assert!(initialize.ok > 0, "initialize still succeeds through the database");
    assert_eq!(record.metrics.errors, 0, "{:?}", record.metrics.errors_by_class);
    servers.shutdown().await;
}

/// p99 end-to-end of a sleep cell (5 ms server-side per transaction) through
/// a pool of 2: capacity about 2 / 5 ms = 400/s.
async fn sleep_p99_us(servers: &Servers, load: Load, warmup_s: f64, duration_s: f64) -> u64 {
    let mut settings = cell(PoolKind::Deadpool, 2, 1, Ramp::Herd);
    settings.workload = "sleep".into();
    settings.driver.load = load;
    settings.driver.warmup_s = warmup_s;
    settings.driver.duration_s = duration_s;
    let record = run(&settings, servers).await;
    assert_eq!(record.metrics.errors, 0, "{:?}", record.metrics.errors_by_class);
    record.metrics.operations[0].end_to_end.p99_us
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_tail_grows_with_run_length_while_closed_loop_does_not() {
    let servers = servers(20).await;
    let overload = Load::Open {
        rate_per_s: 600.0,
        max_in_flight: 1000,
    };
    // No warmup in the open loop: the backlog it builds is the point.
    let open_short = sleep_p99_us(&servers, overload, 0.0, 1.0).await;
    let open_long = sleep_p99_us(&servers, overload, 0.0, 4.0).await;
    let closed = Load::Closed { clients: 4 };
    let closed_short = sleep_p99_us(&servers, closed, 0.5, 1.0).await;
    let closed_long = sleep_p99_us(&servers, closed, 0.5, 4.0).await;
    eprintln!("p99 µs: open 1 s {open_short}, 4 s {open_long}; closed 1 s {closed_short}, 4 s {closed_long}");
    assert!(
        open_long as f64 > 1.8 * open_short as f64,
        "queueing behind a rate above capacity grows with time: {open_short} → {open_long}"
    );
    assert!(
        (closed_long as f64) < 1.5 * closed_short as f64,
        "a closed loop hides it: {closed_short} → {closed_long}"
    );
    assert!(open_long > 10 * closed_long);
    servers.shutdown().await;
}

#[test]
fn rate_and_clients_together_are_refused() {
    let tmp = IsolatedTmp::new();
    let output = tmp
        .contend()
        .args(["run", "--workload", "sleep", "--rate", "100", "--clients", "4"])
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("'--rate <PER_SECOND>' cannot be used with '--clients <CLIENTS>'"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_count_cache_is_read_filled_and_invalidated() {
    let servers = servers(20).await;
    let mut settings = cell(PoolKind::Deadpool, 4, 4, Ramp::Herd);
    settings.overrides.cache = true;
    let record = run(&settings, &servers).await;
    let counts = &record.metrics.operations[0].counts;
    let misses = counts.get("cache_miss").copied().unwrap_or(0);
    let hits = counts.get("cache_hit").copied().unwrap_or(0);
    assert!(misses > 0, "{counts:?}");
    assert!(hits > 0, "hot users' counts come from the cache: {counts:?}");
    assert_eq!(counts.get("cache_error"), None, "{counts:?}");
    let initialize = &record.metrics.operations[0];
    assert!(
        initialize.pool_wait.count > 0 && initialize.first_attempts + initialize.retries >= initialize.pool_wait.count,
        "pool wait recorded for attempts"
    );
    servers.shutdown().await;
}
