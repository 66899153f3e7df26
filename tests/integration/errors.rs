//! Every error class the driver reports, provoked for real on a real server
//! through each pool kind's session, and asserted to be classified rather
//! than crashed on.

use std::time::Duration;

use contend::client::ErrorClass;
use contend::client::{AppPool, Param, PoolKind, PoolSettings, Session};
use contend::provision::Servers;

use crate::util::local_servers;

async fn servers(max_connections: u32) -> Servers {
    local_servers(Some(max_connections)).await
}

fn settings(kind: PoolKind) -> PoolSettings {
    PoolSettings {
        kind,
        size: 4,
        acquire_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(5),
        statement_timeout: None,
        ..Default::default()
    }
}

async fn session(pool: &AppPool) -> Session {
    pool.acquire().await.0.expect("a connection")
}

const KINDS: [PoolKind; 3] = [PoolKind::Deadpool, PoolKind::Sqlx, PoolKind::None];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_violation_query_canceled_and_lock_not_available() {
    let servers = servers(40).await;
    let url = &servers.postgres.url;
    let setup = AppPool::new(url, &settings(PoolKind::None)).unwrap();
    let mut admin = session(&setup).await;
    admin
        .simple("CREATE TABLE uniq (id int PRIMARY KEY); CREATE TABLE locked (id int)")
        .await
        .unwrap();
    for kind in KINDS {
        let pool = AppPool::new(url, &settings(kind)).unwrap();
        let mut s = session(&pool).await;
        s.simple("DELETE FROM uniq").await.unwrap();
        s.execute("INSERT INTO uniq VALUES ($1)", &[Param::Int(1)])
            .await
            .unwrap();
        let duplicate = s.execute("INSERT INTO uniq VALUES ($1)", &[Param::Int(1)]).await;
        assert_eq!(duplicate.unwrap_err(), ErrorClass::UniqueViolation, "{kind}");

        let mut timed = settings(kind);
        timed.statement_timeout = Some(Duration::from_millis(50));
        let timed_pool = AppPool::new(url, &timed).unwrap();
        let mut t = session(&timed_pool).await;
        let slow = t.query("SELECT pg_sleep(2)", &[]).await;
        assert_eq!(
            slow.unwrap_err(),
            ErrorClass::QueryCanceled,
            "{kind}: statement_timeout"
        );

        admin
            .simple("BEGIN; LOCK TABLE locked IN ACCESS EXCLUSIVE MODE")
            .await
            .unwrap();
        s.simple("SET lock_timeout = '50ms'").await.unwrap();
        let blocked = s.query("SELECT count(*) FROM locked", &[]).await;
        assert_eq!(
            blocked.unwrap_err(),
            ErrorClass::LockNotAvailable,
            "{kind}: lock_timeout"
        );
        s.simple("RESET lock_timeout").await.unwrap();
        admin.simple("COMMIT").await.unwrap();
        drop((s, t));
        pool.close().await;
        timed_pool.close().await;
    }
    drop(admin);
    servers.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlocks_and_serialization_failures_are_classified_as_retryable() {
    let servers = servers(40).await;
    let url = &servers.postgres.url;
    let setup = AppPool::new(url, &settings(PoolKind::None)).unwrap();
    let mut admin = session(&setup).await;
    admin
        .simple("CREATE TABLE pair (id int PRIMARY KEY, v int); INSERT INTO pair VALUES (1, 0), (2, 0); CREATE TABLE skew (k int, v int)")
        .await
        .unwrap();
    for kind in KINDS {
        let pool = AppPool::new(url, &settings(kind)).unwrap();
        // Deadlock: each locks one row, then wants the other's.
        let (mut a, mut b) = (session(&pool).await, session(&pool).await);
        for s in [&mut a, &mut b] {
            s.simple("SET deadlock_timeout = '50ms'").await.unwrap();
            s.simple("BEGIN").await.unwrap();
        }
        a.execute("UPDATE pair SET v = v + 1 WHERE id = $1", &[Param::Int(1)])
            .await
            .unwrap();
        b.execute("UPDATE pair SET v = v + 1 WHERE id = $1", &[Param::Int(2)])
            .await
            .unwrap();
        let (ra, rb) = tokio::join!(
            a.execute("UPDATE pair SET v = v + 1 WHERE id = $1", &[Param::Int(2)]),
            b.execute("UPDATE pair SET v = v + 1 WHERE id = $1", &[Param::Int(1)]),
        );
        let failures: Vec<ErrorClass> = [ra, rb].into_iter().filter_map(Result::err).collect();
        assert_eq!(failures, [ErrorClass::DeadlockDetected], "{kind}: exactly one victim");
        assert!(failures[0].is_retryable());
        for s in [&mut a, &mut b] {
            s.simple("ROLLBACK").await.unwrap();
        }

        // Write skew under SERIALIZABLE: the second commit must fail.
        for s in [&mut a, &mut b] {
            s.simple("BEGIN ISOLATION LEVEL SERIALIZABLE").await.unwrap();
        }
        a.query("SELECT sum(v) FROM skew WHERE k = $1", &[Param::Int(1)])
            .await
            .unwrap();
        b.query("SELECT sum(v) FROM skew WHERE k = $1", &[Param::Int(2)])
            .await
            .unwrap();
        a.execute("INSERT INTO skew VALUES ($1, 1)", &[Param::Int(2)])
            .await
            .unwrap();
        b.execute("INSERT INTO skew VALUES ($1, 1)", &[Param::Int(1)])
            .await
            .unwrap();
        a.simple("COMMIT").await.unwrap();
        let second = b.simple("COMMIT").await;
        assert_eq!(second.unwrap_err(), ErrorClass::SerializationFailure, "{kind}");
        assert!(ErrorClass::SerializationFailure.is_retryable());
        drop((a, b));
        pool.close().await;
    }
    drop(admin);
    servers.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_connections_and_refused_connections_are_outcomes() {
    let servers = servers(6).await;
    let url = &servers.postgres.url;
    let unpooled = AppPool::new(url, &settings(PoolKind::None)).unwrap();
    let mut held = Vec::new();
    let mut refusal = None;
    for _ in 0..10 {
        match unpooled.acquire().await.0 {
            Ok(session) => held.push(session),
            Err(class) => {
                refusal = Some(class);
                break;
            }
        }
    }
    assert_eq!(
        held.len(),
        6,
        "max_connections 6 admits 6 (contend's user is a superuser)"
    );
    assert_eq!(refusal, Some(ErrorClass::TooManyConnections));
    let deadpool = AppPool::new(url, &settings(PoolKind::Deadpool)).unwrap();
    assert_eq!(deadpool.acquire().await.0.err(), Some(ErrorClass::TooManyConnections));
    // sqlx retries a refused connect inside acquire until its acquire
    // timeout and then reports only that: the application sees a pool
    // timeout, never the 53300 behind it.
    let mut quick = settings(PoolKind::Sqlx);
    quick.acquire_timeout = Duration::from_millis(500);
    let sqlx_pool = AppPool::new(url, &quick).unwrap();
    assert_eq!(sqlx_pool.acquire().await.0.err(), Some(ErrorClass::PoolTimeout));
    drop(held);

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nowhere = format!("postgres://x:y@127.0.0.1:{port}/db");
    for kind in KINDS {
        let mut quick = settings(kind);
        quick.acquire_timeout = Duration::from_millis(500);
        let pool = AppPool::new(&nowhere, &quick).unwrap();
        let (result, _) = pool.acquire().await;
        let class = result.err().unwrap();
        assert!(
            matches!(class, ErrorClass::ConnectionFailed | ErrorClass::PoolTimeout),
            "{kind}: {class:?}"
        );
    }
    servers.shutdown().await;
}

/// A contend that runs out of file descriptors says it is its own limit,
/// not a server's refusal; and one whose soft limit is below its hard
/// limit raises it first, so the same load does not run out at all. Both
/// are real second processes under `prlimit`, against servers a first
/// contend started with the machine's own limits.
#[test]
fn running_out_of_file_descriptors_is_contends_own_error_and_the_soft_limit_is_raised() {
    use crate::util::{prepare_machine, text, IsolatedTmp};
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let script = r#"run() {
  prlimit --nofile="$1" "$CONTEND" run --workload sleep --pool none --clients 60 --ramp herd \
    --duration 1s --warmup 0s --backend external --results "$OUT/$2" > "$OUT/$2.out" 2>&1
}
run 48:48 capped && run 48:4096 raised"#;
    let output = tmp
        .contend()
        .args(["provision", "--backend", "local", "--", "sh", "-c", script])
        .env("CONTEND", env!("CARGO_BIN_EXE_contend"))
        .env("OUT", tmp.path())
        .output()
        .unwrap();
    let read = |name: &str| std::fs::read_to_string(tmp.path().join(name)).unwrap_or_default();
    assert!(
        output.status.success(),
        "{:?}\ncapped: {}\nraised: {}",
        text(&output),
        read("capped.out"),
        read("raised.out")
    );
    let cells = |dir: &str| {
        let root = tmp.path().join(dir);
        let run = std::fs::read_dir(&root).unwrap().flatten().next().unwrap().path();
        std::fs::read_to_string(run.join("cells.jsonl")).unwrap()
    };
    let capped = read("capped.out");
    assert!(capped.contains("too many open files in contend (limit 48)"), "{capped}");
    assert!(!capped.contains("connection failed"), "not the server's: {capped}");
    assert!(
        cells("capped").contains("\"too_many_open_files\""),
        "{}",
        cells("capped")
    );
    let raised = read("raised.out");
    assert!(
        !raised.contains("too many open files"),
        "the soft limit was raised: {raised}"
    );
    assert!(!cells("raised").contains("too_many_open_files"), "{}", cells("raised"));
}
