//! The script workload on real servers: pgbench's tpcb-like writes exactly
//! one history row per committed transaction and keeps TPC-B's balances
//! consistent, `contend run --workload script` works on a local and an
//! external server, and bad scripts are refused with their line.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use contend::client::{AppPool, PoolKind, PoolSettings};
use contend::driver::{drive, DriverSettings, LiveCounts, Load, Ramp};
use contend::record::CellRecord;
use contend::workload::script::{Script, ScriptData, ScriptFile, ScriptSettings};
use contend::workload::{CellContext, Workload, WorkloadOverrides};
use contend::{
    exec::{copy_for_cell, drop_database, ensure_template},
    provision::database_url,
};

use crate::bad_input::refused;
use crate::util::{local_servers, prepare_machine, text, IsolatedTmp};

fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/script").join(name)
}

fn only_cell(results: &Path) -> CellRecord {
    let dir = std::fs::read_dir(results)
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .next()
        .expect("a run directory");
    let mut cells = contend::results::read_cells(&dir).unwrap();
    assert_eq!(cells.len(), 1);
    cells.remove(0)
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// Runs tpcb-like through the library on a copy of pgbench's tables that
/// the test keeps, so it can look at what the transactions left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpcb_like_commits_one_history_row_per_transaction_and_keeps_balances_consistent() {
    let servers = local_servers(None).await;
    let admin_url = servers.postgres.url.clone();
    for kind in [PoolKind::Deadpool, PoolKind::Sqlx] {
        let mut workload = Script::new(&WorkloadOverrides {
            script: Some(ScriptSettings {
                scripts: vec![ScriptFile {
                    path: shipped("tpcb-like.sql"),
                    weight: 1,
                }],
                data: ScriptData::PgbenchTables { scale: 1 },
            }),
            ..Default::default()
        })
        .unwrap();
        let template = ensure_template(&admin_url, &workload.data_plan()).await.unwrap();
        let database = format!("contend_test_script_{kind}");
        copy_for_cell(&admin_url, &template, &database, servers.postgres.version_num)
            .await
            .unwrap();
        let url = database_url(&admin_url, &database);
        let checker = connect(&url).await;
        let rows = |sql: &'static str| {
            let checker = &checker;
            async move { checker.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
        };
        assert_eq!(rows("SELECT count(*) FROM pgbench_accounts").await, 100_000);
        assert_eq!(rows("SELECT count(*) FROM pgbench_tellers").await, 10);
        assert_eq!(rows("SELECT count(*) FROM pgbench_history").await, 0);
        workload
            .prepare_cell(CellContext {
                client: &checker,
                database: &database,
                redis: None,
            })
            .await
            .unwrap();
        let settings = PoolSettings {
            kind,
            size: 4,
            acquire_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            statement_timeout: None,
            ..Default::default()
        };
        let pools = Arc::new(vec![AppPool::new(&url, &settings).unwrap()]);
        let output = drive(
            Arc::new(workload),
            Arc::clone(&pools),
            None,
            DriverSettings {
                load: Load::Closed { clients: 8 },
                ramp: Ramp::Herd,
                warmup_s: 0.0,
                duration_s: 2.0,
                max_retries: 0,
                seed: 3,
                threads: 1,
                ..Default::default()
            },
            Arc::new(LiveCounts::default()),
        )
        .await
        .unwrap();
        pools[0].close().await;
        let metrics = output.recorder.summarize(output.measured_s);
        assert_eq!(metrics.errors, 0, "{kind}: {:?}", metrics.errors_by_class);
        assert!(metrics.ok > 50, "{kind}: {} transactions", metrics.ok);
        // Without a warmup every transaction is measured: each committed
        // one inserted exactly one history row.
        let history = rows("SELECT count(*) FROM pgbench_history").await;
        assert_eq!(history as u64, metrics.ok, "{kind}");
        // TPC-B's consistency conditions: every delta went to an account, a
        // teller and a branch in the same transaction.
        let sums = checker
            .query_one(
                "SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(tbalance) FROM pgbench_tellers), \
                 (SELECT sum(bbalance) FROM pgbench_branches), (SELECT sum(delta) FROM pgbench_history)",
                &[],
            )
            .await
            .unwrap();
        let sums: Vec<i64> = (0..4).map(|i| sums.get(i)).collect();
        assert!(sums.iter().all(|sum| *sum == sums[0]), "{kind}: {sums:?}");
        let distinct_accounts = rows("SELECT count(DISTINCT aid) FROM pgbench_history").await;
        assert!(
            distinct_accounts > history * 9 / 10,
            "aids spread over 100,000 accounts"
        );
        drop(checker);
        drop_database(&admin_url, &database).await.unwrap();
    }
    servers.shutdown().await;
}

#[test]
fn contend_run_tpcb_like_on_a_local_server() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let results = tmp.path().join("results");
    let output = tmp
        .contend()
        .args(["run", "--backend", "local", "--workload", "script", "--script"])
        .arg(shipped("tpcb-like.sql"))
        .args(["--pgbench-scale", "1", "--clients", "4", "--pool-size", "4"])
        .args(["--duration", "2s", "--warmup", "0s", "--results"])
        .arg(&results)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("tpcb-like"), "{stdout}");
    let cell = only_cell(&results);
    assert!(cell.business.goodput_per_s > 0.0, "{:?}", cell.business);
    assert_eq!(cell.metrics.errors, 0, "{:?}", cell.metrics.errors_by_class);
    assert_eq!(cell.template.name, "contend_tmpl_pgbench_s1");
    let script = cell.settings.overrides.script.expect("the scripts are recorded");
    assert_eq!(script.data, ScriptData::PgbenchTables { scale: 1 });
    assert_eq!(script.scripts[0].path, shipped("tpcb-like.sql"));
}

/// Init SQL, two weighted scripts, a zipfian draw and a sleep, on a server
/// given by URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_scripts_on_init_sql_run_on_an_external_server() {
    let servers = local_servers(None).await;
    let tmp = IsolatedTmp::new();
    let write = |name: &str, text: &str| {
        let path = tmp.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let init = write(
        "init.sql",
        "CREATE TABLE counters (id int PRIMARY KEY, hits bigint NOT NULL DEFAULT 0);\n\
         INSERT INTO counters (id) SELECT generate_series(1, 100);\n",
    );
    let hit = write(
        "hit.sql",
        "\\set id random_zipfian(1, 100, 1.5)\nUPDATE counters\n   SET hits = hits + 1\n WHERE id = :id;\n",
    );
    let peek = write(
        "peek.sql",
        "\\set pause 1\n\\sleep :pause ms\n\\set id random(1, 100)\nSELECT hits FROM counters WHERE id = :id;\n",
    );
    let results = tmp.path().join("results");
    let mut command = tmp.contend();
    command
        .args(["run", "--backend", "external", "--database-url", &servers.postgres.url])
        .args(["--workload", "script", "--script"])
        .arg(format!("{}@3", hit.display()))
        .arg("--script")
        .arg(format!("{}@1", peek.display()))
        .arg("--init-sql")
        .arg(&init)
        .args(["--clients", "4", "--duration", "2s", "--warmup", "0s", "--results"])
        .arg(&results);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let cell = only_cell(&results);
    assert_eq!(cell.metrics.errors, 0, "{:?}", cell.metrics.errors_by_class);
    let names: Vec<&str> = cell.metrics.operations.iter().map(|op| op.name.as_str()).collect();
    assert_eq!(names, ["hit", "peek"]);
    let (hits, peeks) = (cell.metrics.operations[0].ok, cell.metrics.operations[1].ok);
    assert!(hits > 2 * peeks && peeks > 0, "weights 3:1, got {hits}:{peeks}");
    assert!(
        cell.template.name.starts_with("contend_tmpl_script_"),
        "{}",
        cell.template.name
    );
    servers.shutdown().await;
}

fn script_file(tmp: &IsolatedTmp, text: &str) -> String {
    let path = tmp.path().join("custom.sql");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn an_unknown_meta_command_is_refused_with_its_line() {
    let tmp = IsolatedTmp::new();
    let script = script_file(&tmp, "\\set aid 1\nBEGIN;\nSELECT :aid;\n\\frobnicate 3\nEND;\n");
    let expected = format!(
        "contend: error: script {script} line 4: unknown meta-command \\frobnicate; contend supports \\set and \\sleep"
    );
    refused(
        &["run", "--backend", "local", "--workload", "script", "--script", &script],
        &expected,
    );
}

#[test]
fn an_unsupported_meta_command_is_refused_with_its_line() {
    let tmp = IsolatedTmp::new();
    let script = script_file(&tmp, "SELECT 1 AS one\n\\gset\n");
    refused(
        &["run", "--backend", "local", "--workload", "script", "--script", &script],
        "line 2: \\gset is not supported; contend supports \\set and \\sleep",
    );
}

#[test]
fn a_missing_script_file_is_refused() {
    refused(
        &[
            "run",
            "--backend",
            "local",
            "--workload",
            "script",
            "--script",
            "/nonexistent/tpcb.sql",
        ],
        "cannot read script /nonexistent/tpcb.sql: No such file or directory",
    );
}

#[test]
fn a_bad_weight_is_refused() {
    let tpcb = format!("{}@heavy", shipped("tpcb-like.sql").display());
    refused(
        &["run", "--backend", "local", "--workload", "script", "--script", &tpcb],
        "bad weight in",
    );
}

#[test]
fn scripts_whose_weights_are_all_zero_are_refused() {
    let select = format!("{}@0", shipped("select-only.sql").display());
    refused(
        &["run", "--backend", "local", "--workload", "script", "--script", &select],
        "weights add up to 0",
    );
}

#[test]
fn script_flags_on_another_workload_are_refused() {
    refused(
        &[
            "run",
            "--backend",
            "local",
            "--workload",
            "sleep",
            "--pgbench-scale",
            "3",
        ],
        "--script, --init-sql and --pgbench-scale are for --workload script, not sleep",
    );
}
