//! PgBouncer between the app pools and the server, for real: a transaction
//! pooler queues what direct connections would have had refused (53300),
//! its queue and wait are sampled, named prepared statements break through
//! it on 1.18 and are explained, a sweep runs its pool size as an axis, a
//! `kill -9` of contend leaves no pgbouncer, and bad configurations are
//! refused before anything starts.

use std::process::{Output, Stdio};
use std::time::Duration;

use crate::util::{prepare_machine, processes_mentioning, text, wait_until, IsolatedTmp, KillOnDrop};

/// 4 instances × app pool 10 (40 connections) against max_connections 20,
/// on the sleep workload, everyone at once.
const FORTY_CONNECTIONS: &[&str] = &[
    "run",
    "--workload",
    "sleep",
    "--backend",
    "local",
    "--max-connections",
    "20",
    "--instances",
    "4",
    "--pool-size",
    "10",
    "--clients",
    "40",
    "--ramp",
    "herd",
];

/// 40 SCRAM logins through PgBouncer take seconds in a debug build: the
/// window is measured once every client is in.
const WINDOW: &[&str] = &["--duration", "2s", "--warmup", "3s"];

const THROUGH_TRANSACTION_POOLER: &[&str] = &[
    "--pooler",
    "pgbouncer",
    "--pooler-mode",
    "transaction",
    "--pooler-pool-size",
    "5",
];

fn run(tmp: &IsolatedTmp, extra: &[&str]) -> Output {
    tmp.contend()
        .args(FORTY_CONNECTIONS)
        .args(WINDOW)
        .args(extra)
        .arg("--results")
        .arg(tmp.path().join("results"))
        .output()
        .unwrap()
}

fn record(output: &Output) -> serde_json::Value {
    let (stdout, stderr) = text(output);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("a cell record on stdout ({e}): {stdout}\n{stderr}"))
}

fn errors_of(record: &serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    record["metrics"]["errors_by_class"]
        .as_object()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn forty_connections_through_a_transaction_pooler_of_five_queue_instead_of_meeting_53300() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let output = run(
        &tmp,
        &[
            THROUGH_TRANSACTION_POOLER,
            &["-M", "extended", "--format", "json", "--no-slo-exit"],
        ]
        .concat(),
    );
    assert!(output.status.success(), "{:?}", text(&output));
    let cell = record(&output);
    let errors = errors_of(&cell);
    assert!(!errors.contains_key("53300"), "no 53300 through the pooler: {errors:?}");
    assert!(
        !errors.contains_key("26000") && !errors.contains_key("42P05"),
        "extended mode has no prepared-statement errors: {errors:?}"
    );
    assert!(cell["metrics"]["ok"].as_u64().unwrap() > 0);
    let pooler = &cell["pooler"];
    assert_eq!(pooler["info"]["version"].as_str().unwrap(), "PgBouncer 1.18.0");
    assert_eq!(pooler["info"]["config"]["pool_mode"], "transaction");
    assert_eq!(pooler["info"]["config"]["default_pool_size"], "5");
    let samples = pooler["samples"]["samples"].as_array().unwrap();
    assert!(samples.len() >= 2, "a sample a second: {samples:?}");
    assert!(
        samples.iter().any(|s| s["cl_waiting"].as_u64().unwrap() > 0),
        "40 clients wait for 5 server connections: {samples:?}"
    );
    assert!(
        samples.iter().all(|s| s["sv_active"].as_u64().unwrap() <= 5),
        "never more server connections than the pool: {samples:?}"
    );
    assert!(
        samples.iter().any(|s| s["delta"]["wait_time_us"].as_u64().unwrap() > 0),
        "the pooler's wait is on the timeline: {samples:?}"
    );
    assert!(pooler["cpu_s"].as_f64().is_some(), "PgBouncer's own CPU is recorded");
    assert!(tmp.run_dirs().is_empty(), "pooler and server directories removed");
}

#[test]
fn the_same_forty_connections_direct_meet_53300() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let output = run(&tmp, &["-M", "extended", "--format", "json", "--no-slo-exit"]);
    assert!(output.status.success(), "{:?}", text(&output));
    let cell = record(&output);
    let errors = errors_of(&cell);
    assert!(
        errors.get("53300").and_then(|n| n.as_u64()).unwrap_or(0) > 0,
        "40 connections against max_connections 20 (17 for the clients' role): {errors:?}"
    );
    assert!(cell.get("pooler").is_none(), "no pooler recorded: {}", cell["pooler"]);
}

#[test]
fn prepared_statements_through_a_transaction_pooler_fail_as_their_own_class_and_are_explained() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let output = run(&tmp, &[THROUGH_TRANSACTION_POOLER, &["-M", "prepared"]].concat());
    let (stdout, stderr) = text(&output);
    // Errors are measured data, as any: the cell is recorded, and the
    // sleep workload declares no objective that would make them exit 99.
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stderr.contains("cell appended to"), "{stderr}");
    assert!(
        stdout.contains("prepared statement does not exist (26000)")
            || stdout.contains("prepared statement already exists (42P05)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("why: named prepared statements do not survive a transaction- or statement-mode pooler")
            && stdout.contains("--query-mode extended")
            && stdout.contains("max_prepared_statements"),
        "{stdout}"
    );
    assert!(!stdout.contains("53300"), "{stdout}");
}

#[test]
fn a_sweep_runs_the_pooler_pool_size_as_an_axis() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let results = tmp.path().join("results");
    let output = tmp
        .contend()
        .args([
            "sweep",
            "--workload",
            "sleep",
            "--backend",
            "local",
            "--max-connections",
            "20",
        ])
        .args(["--pool-sizes", "10", "--instances", "4", "--clients", "40"])
        .args(["--pooler", "pgbouncer", "--pooler-pool-sizes", "2,8", "-M", "extended"])
        .args(["--duration", "1s", "--warmup", "0s", "--no-slo-exit", "--results"])
        .arg(&results)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    // The recommendation names the pooler's pool size and its cells.
    let named = stdout
        .lines()
        .find(|line| line.trim_start().starts_with("default_pool_size "))
        .unwrap_or_else(|| panic!("a pooler recommendation: {stdout}"));
    assert!(
        (named.contains("default_pool_size 2:") && named.contains("(cells #1)"))
            || (named.contains("default_pool_size 8:") && named.contains("(cells #2)")),
        "{named}"
    );
    assert!(stdout.contains("max_connections >= "), "{stdout}");
    let run_dir = std::fs::read_dir(&results).unwrap().flatten().next().unwrap().path();
    let cells: Vec<serde_json::Value> = std::fs::read_to_string(run_dir.join("cells.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let sizes: Vec<&str> = cells
        .iter()
        .map(|cell| cell["pooler"]["info"]["config"]["default_pool_size"].as_str().unwrap())
        .collect();
    assert_eq!(sizes, ["2", "8"]);
    for cell in &cells {
        assert_eq!(cell["settings"]["pooler"]["kind"], "pgbouncer");
        let peak = cell["pooler"]["samples"]["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["sv_active"].as_u64().unwrap() + s["sv_idle"].as_u64().unwrap())
            .max()
            .unwrap();
        let size: u64 = cell["settings"]["pooler"]["pool_size"].as_u64().unwrap();
        assert!(peak <= size, "server connections within the pool of {size}: {peak}");
        assert!(!errors_of(cell).contains_key("53300"), "{:?}", errors_of(cell));
    }
}

#[test]
fn a_kill_9_of_contend_leaves_no_pgbouncer() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let mut contend = KillOnDrop(
        tmp.contend()
            .args(FORTY_CONNECTIONS)
            .args(THROUGH_TRANSACTION_POOLER)
            .args(["-M", "extended", "--duration", "60s", "--results"])
            .arg(tmp.path().join("results"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let tmp_path = tmp.path().display().to_string();
    let pgbouncer_runs = || {
        processes_mentioning(&tmp_path)
            .iter()
            .any(|p| p.contains("pgbouncer.ini"))
    };
    assert!(
        wait_until(Duration::from_secs(60), pgbouncer_runs).is_some(),
        "contend starts pgbouncer"
    );
    contend.kill().unwrap(); // SIGKILL
    let _ = contend.wait();
    let gone = wait_until(Duration::from_secs(10), || processes_mentioning(&tmp_path).is_empty());
    assert!(
        gone.is_some(),
        "pgbouncer (and the server) die with contend: {:?}",
        processes_mentioning(&tmp_path)
    );
    // The next start removes the pooler's directory along with the server's.
    let output = tmp
        .contend()
        .args(["provision", "--backend", "local", "--", "true"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{:?}", text(&output));
    assert!(tmp.run_dirs().is_empty(), "left: {:?}", tmp.run_dirs());
}

#[test]
fn bad_pooler_configurations_are_refused_before_anything_starts() {
    let tmp = IsolatedTmp::new();
    let refused = |extra: &[&str], says: &str| {
        let output = tmp
            .contend()
            .args([
                "run",
                "--workload",
                "sleep",
                "--backend",
                "local",
                "--max-connections",
                "20",
            ])
            .args(["--instances", "4", "--pool-size", "10"])
            .args(extra)
            .output()
            .unwrap();
        let (_, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(2), "{extra:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(says), "{extra:?}: {stderr}");
    };
    refused(
        &["--pooler", "pgbouncer", "--pooler-pool-size", "18"],
        "exceeds max_connections 20 less 3 superuser-reserved slots",
    );
    refused(
        &[
            "--pooler",
            "pgbouncer",
            "--pooler-pool-size",
            "10",
            "--pooler-reserve",
            "8",
        ],
        "PgBouncer's pool (10 + reserve 8) exceeds max_connections 20",
    );
    refused(
        &[
            "--pooler",
            "pgbouncer",
            "--pooler-pool-size",
            "5",
            "--pooler-max-client-conn",
            "30",
        ],
        "PgBouncer would refuse 10 of them",
    );
    refused(
        &["--pooler", "pgbouncer", "--pooler-mode", "bogus"],
        "invalid value 'bogus'",
    );
    refused(&["--pooler", "odyssey"], "invalid value 'odyssey'");
    refused(&["--pooler-pool-size", "5"], "--pooler");
    assert!(tmp.run_dirs().is_empty(), "nothing started");
}

/// What `--statement-timeout` is refused with a pooler for: PgBouncer 1.18
/// refuses the `options` startup parameter that carries it. Also: a client
/// logs in by SCRAM as the clients' role (pass-through to the server).
#[tokio::test]
async fn pgbouncer_refuses_the_options_startup_parameter_and_passes_scram_through() {
    let servers = crate::util::local_servers(None).await;
    let settings = contend::provision::PoolerSettings::default();
    let pooler = contend::provision::start_pgbouncer(&settings, &servers.postgres, "postgres", Duration::from_secs(30))
        .await
        .expect("pgbouncer starts");
    let config: tokio_postgres::Config = pooler.client_url.parse().unwrap();
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("SCRAM through the pooler");
    let task = tokio::spawn(connection);
    let row = client.query_one("SELECT current_user::text", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), contend::provision::CLIENT_ROLE);
    drop(client);
    let _ = task.await;
    let mut with_options = config.clone();
    with_options.options("-c statement_timeout=1000");
    let refused = with_options
        .connect(tokio_postgres::NoTls)
        .await
        .err()
        .expect("refused");
    let message = refused
        .as_db_error()
        .map_or_else(|| refused.to_string(), |db| db.message().to_string());
    assert!(message.contains("unsupported startup parameter: options"), "{message}");
    pooler.shutdown().await;
    servers.shutdown().await;
}
