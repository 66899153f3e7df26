//! The server sampler against real servers: sessions by state and wait
//! event, lock waiters, pg_stat_database and pg_stat_statements deltas, and
//! Redis keyspace counters, each provoked on purpose during the window.

use std::time::Duration;

use contend::measure::{SamplerSettings, ServerSampler, ServerSamples};
use contend::provision::database_url;
use contend::provision::Servers;
use tokio_postgres::Client;

use crate::util::local_servers;

const DB: &str = "samp";

/// Local servers with a `samp` database, `pg_stat_statements` created in it
/// when `with_statements`.
async fn servers_with_database(with_statements: bool) -> Servers {
    let servers = local_servers(None).await;
    let admin = connect(&servers.postgres.url).await;
    admin.batch_execute(&format!("CREATE DATABASE {DB}")).await.unwrap();
    let setup = connect(&samp_url(&servers)).await;
    let mut schema = "CREATE TABLE t (id bigserial PRIMARY KEY, v bigint NOT NULL);".to_string();
    if with_statements {
        schema.push_str("CREATE EXTENSION pg_stat_statements;");
    }
    setup.batch_execute(&schema).await.unwrap();
    close(setup, &admin).await;
    servers
}

fn samp_url(servers: &Servers) -> String {
    database_url(&servers.postgres.url, DB)
}

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// Closes `client` and waits until its backend is gone, which is after the
/// backend flushed its statistics (the flush runs before it leaves
/// pg_stat_activity), so its work is in pg_stat_database.
async fn close(client: Client, admin: &Client) {
    let pid: i32 = client.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    drop(client);
    for _ in 0..100 {
        let alive: i64 = admin
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", &[&pid])
            .await
            .unwrap()
            .get(0);
        if alive == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("backend {pid} did not exit within 2 s");
}

fn settings(interval_ms: u64) -> SamplerSettings {
    SamplerSettings {
        interval: Duration::from_millis(interval_ms),
        ..SamplerSettings::new(DB)
    }
}

async fn start(servers: &Servers, interval_ms: u64) -> ServerSampler {
    ServerSampler::start(&servers.postgres.url, None, settings(interval_ms))
        .await
        .unwrap()
}

fn count(map: &std::collections::BTreeMap<String, u32>, key: &str) -> u32 {
    map.get(key).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleeping_sessions_show_as_active_and_waiting_on_a_timeout() {
    let servers = servers_with_database(true).await;
    let sampler = start(&servers, 100).await;
    // Two samples with nobody in the database: the sampler must not count itself.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let mut sleepers = Vec::new();
    for _ in 0..3 {
        let client = connect(&samp_url(&servers)).await;
        sleepers.push(tokio::spawn(async move {
            client.batch_execute("SELECT pg_sleep(1)").await.unwrap();
            client
        }));
    }
    let mut clients = Vec::new();
    for sleeper in sleepers {
        clients.push(sleeper.await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(250)).await;
    let result = sampler.stop().await;
    drop(clients);

    assert_eq!(result.interval_ms, 100);
    assert!(result.sampling_errors.is_empty(), "{:?}", result.sampling_errors);
    assert!(result.samples.len() >= 10, "{} samples in ~1.5 s", result.samples.len());
    assert!(
        result.samples.windows(2).all(|w| w[0].t_ms < w[1].t_ms),
        "samples in time order"
    );
    assert_eq!(
        result.samples[0].connections, 0,
        "the sampler's own session is excluded"
    );
    let max = result.samples.iter().map(|s| s.connections).max().unwrap();
    assert_eq!(max, 3, "exactly the three sleepers, never the sampler");
    let sleeping = result.samples.iter().find(|s| {
        s.connections >= 3 && count(&s.by_state, "active") >= 3 && count(&s.by_wait_event_type, "Timeout") >= 3
    });
    assert!(sleeping.is_some(), "{:#?}", result.samples);
    // After the sleeps, the three sessions are idle and not counted by wait event.
    let last = result.samples.last().unwrap();
    assert_eq!(count(&last.by_state, "idle"), 3, "{last:?}");
    assert!(last.by_wait_event_type.is_empty(), "{last:?}");
    servers.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_select_is_a_lock_waiter() {
    let servers = servers_with_database(true).await;
    let holder = connect(&samp_url(&servers)).await;
    let waiter = connect(&samp_url(&servers)).await;
    let sampler = start(&servers, 100).await;
    holder
        .batch_execute("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let blocked = tokio::spawn(async move {
        waiter.query("SELECT * FROM t", &[]).await.unwrap();
        waiter
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!blocked.is_finished(), "the SELECT waits for the lock");
    holder.batch_execute("COMMIT").await.unwrap();
    let waiter = tokio::time::timeout(Duration::from_secs(5), blocked)
        .await
        .expect("the SELECT finishes once the lock is released")
        .unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let result = sampler.stop().await;
    drop((holder, waiter));

    assert!(result.sampling_errors.is_empty(), "{:?}", result.sampling_errors);
    let waiting = result
        .samples
        .iter()
        .find(|s| s.lock_waiters >= 1 && count(&s.by_wait_event_type, "Lock") >= 1);
    let waiting = waiting.unwrap_or_else(|| panic!("no sample saw the lock wait: {:#?}", result.samples));
    assert_eq!(waiting.lock_waiters, 1, "one waiter: {waiting:?}");
    assert_eq!(
        count(&waiting.by_state, "idle in transaction"),
        1,
        "the holder: {waiting:?}"
    );
    let last = result.samples.last().unwrap();
    assert_eq!(last.lock_waiters, 0, "granted locks are not waiters: {last:?}");
    servers.shutdown().await;
}

/// 20 committed inserts before the window, 50 during it, on one prepared
/// statement; the worker is closed (so its statistics are flushed) before
/// the sampler stops.
async fn inserts_in_window(servers: &Servers) -> ServerSamples {
    let admin = connect(&servers.postgres.url).await;
    let before = connect(&samp_url(servers)).await;
    for v in 0..20i64 {
        before.execute("INSERT INTO t (v) VALUES ($1)", &[&v]).await.unwrap();
    }
    close(before, &admin).await;

    let sampler = start(servers, 500).await;
    let worker = connect(&samp_url(servers)).await;
    let insert = worker.prepare("INSERT INTO t (v) VALUES ($1)").await.unwrap();
    for v in 0..50i64 {
        worker.execute(&insert, &[&v]).await.unwrap();
    }
    close(worker, &admin).await;
    sampler.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_delta_counts_the_window_only() {
    let servers = servers_with_database(true).await;
    let result = inserts_in_window(&servers).await;
    assert!(result.sampling_errors.is_empty(), "{:?}", result.sampling_errors);
    let delta = &result.database;
    assert!(delta.xact_commit >= 50, "{delta:?}");
    assert!(delta.tup_inserted >= 50, "{delta:?}");
    assert!(
        delta.tup_inserted < 70,
        "the 20 inserts before start are not in the delta: {delta:?}"
    );
    assert_eq!((delta.xact_rollback, delta.deadlocks), (0, 0), "{delta:?}");
    servers.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_statements_show_the_workload_not_the_sampler() {
    let servers = servers_with_database(true).await;
    let result = inserts_in_window(&servers).await;
    assert!(result.sampling_errors.is_empty(), "{:?}", result.sampling_errors);
    let top = &result.top_statements;
    assert!(!top.is_empty() && top.len() <= 10, "{top:#?}");
    let insert = top
        .iter()
        .find(|s| s.query.starts_with("INSERT INTO t"))
        .unwrap_or_else(|| panic!("the INSERT is not among {top:#?}"));
    assert_eq!(insert.calls, 50, "calls in the window only: {insert:?}");
    assert_eq!(insert.rows, 50, "{insert:?}");
    assert!(insert.total_exec_ms > 0.0 && insert.mean_exec_ms > 0.0, "{insert:?}");
    assert!((insert.mean_exec_ms * 50.0 - insert.total_exec_ms).abs() < 1e-6);
    for own in ["pg_stat_activity", "pg_stat_statements", "pg_locks", "pg_stat_database"] {
        assert!(
            top.iter().all(|s| !s.query.contains(own)),
            "{own} (the sampler's own query) is listed: {top:#?}"
        );
    }
    assert!(
        top.windows(2).all(|w| w[0].total_exec_ms >= w[1].total_exec_ms),
        "longest first: {top:#?}"
    );
    servers.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_pg_stat_statements_the_list_is_empty_and_the_error_says_why() {
    let servers = servers_with_database(false).await;
    let sampler = start(&servers, 100).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let result = sampler.stop().await;
    assert!(result.top_statements.is_empty());
    assert_eq!(result.sampling_errors.len(), 1, "{:?}", result.sampling_errors);
    assert!(
        result.sampling_errors[0].contains("pg_stat_statements is not installed in samp: CREATE EXTENSION"),
        "{:?}",
        result.sampling_errors
    );
    assert!(!result.samples.is_empty(), "activity sampling goes on");
    servers.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_hits_and_misses_are_counted_in_the_window() {
    let servers = servers_with_database(true).await;
    let redis_url = servers
        .redis
        .as_ref()
        .expect("the local backend starts Redis")
        .url
        .clone();
    let client = redis::Client::open(redis_url.as_str()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let get = |key: &str| redis::cmd("GET").arg(key).clone();
    redis::cmd("SET")
        .arg("present")
        .arg("1")
        .query_async::<()>(&mut redis)
        .await
        .unwrap();
    // Misses before the window are not in the delta.
    for i in 0..10 {
        get(&format!("before-{i}"))
            .query_async::<Option<String>>(&mut redis)
            .await
            .unwrap();
    }

    let sampler = ServerSampler::start(&servers.postgres.url, Some(&redis_url), settings(100))
        .await
        .unwrap();
    for i in 0..5 {
        let value: Option<String> = get(&format!("missing-{i}")).query_async(&mut redis).await.unwrap();
        assert_eq!(value, None);
    }
    for _ in 0..3 {
        let value: Option<String> = get("present").query_async(&mut redis).await.unwrap();
        assert_eq!(value.as_deref(), Some("1"));
    }
    tokio::time::sleep(Duration::from_millis(250)).await;
    let result = sampler.stop().await;

    assert!(result.sampling_errors.is_empty(), "{:?}", result.sampling_errors);
    let delta = result.redis.expect("Redis was sampled");
    assert!(delta.keyspace_misses >= 5, "{delta:?}");
    assert!(delta.keyspace_hits >= 3, "{delta:?}");
    assert_eq!(
        (delta.keyspace_misses, delta.keyspace_hits),
        (5, 3),
        "only the window's lookups"
    );
    assert!(delta.commands_processed >= 8, "{delta:?}");
    assert!(delta.max_connected_clients >= 1, "the test's connection: {delta:?}");
    servers.shutdown().await;
}

/// A cell's pg_stat_database commits count every transaction the driver
/// committed: one pooled connection kept busy by four clients flushes its
/// statistics lazily (PostgreSQL 15: at most once a second, when idle), so
/// the end snapshot is read after the pool's sessions exited. Read while
/// they were still connected, it counted 191 of 808 commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cells_database_commits_count_every_committed_transaction() {
    use contend::client::PoolSettings;
    use contend::driver::{DriverSettings, LiveCounts, Load, Ramp};
    use contend::record::CellSettings;

    let servers = local_servers(None).await;
    let settings = CellSettings {
        workload: "sleep".into(),
        pool: PoolSettings {
            size: 1,
            ..Default::default()
        },
        driver: DriverSettings {
            load: Load::Closed { clients: 4 },
            ramp: Ramp::Herd,
            warmup_s: 0.0,
            duration_s: 2.0,
            ..Default::default()
        },
        ..Default::default()
    };
    let record = contend::exec::run_cell(&settings, &servers, std::sync::Arc::new(LiveCounts::default()))
        .await
        .unwrap();
    servers.shutdown().await;
    let committed = record.metrics.ok as i64;
    assert!(committed > 100, "the connection was kept busy: {committed}");
    assert!(
        record.server.sampling_errors.is_empty(),
        "{:?}",
        record.server.sampling_errors
    );
    // The sampler's own queries commit too: at least, never fewer.
    let counted = record.server.database.xact_commit;
    assert!(
        counted >= committed && counted < committed + 100,
        "pg_stat_database counted {counted} commits for {committed} committed transactions"
    );
}
