//! seat-reservation for real: every strategy under contention keeps every
//! invariant, and redis-gate compensates when its database step fails and
//! when Redis goes away.

use std::sync::Arc;
use std::time::Duration;

use contend::client::PoolSettings;
use contend::driver::{DriverSettings, LiveCounts, Load, Ramp};
use contend::provision::Servers;
use contend::workload::seat_reservation::STRATEGIES;
use contend::workload::WorkloadOverrides;
use contend::{
    exec::run_cell,
    record::{CellRecord, CellSettings},
};

use crate::util::{local_servers, processes_mentioning};

fn cell(strategy: &str, settings: Vec<(String, String)>) -> CellSettings {
    CellSettings {
        workload: "seat-reservation".into(),
        overrides: WorkloadOverrides {
            scale: Some(0.1),
            strategy: Some(strategy.into()),
            settings,
            ..Default::default()
        },
        pool: PoolSettings {
            size: 8,
            acquire_timeout: Duration::from_secs(10),
            ..Default::default()
        },
        driver: DriverSettings {
            load: Load::Closed { clients: 64 },
            ramp: Ramp::Herd,
            warmup_s: 0.0,
            duration_s: 1.5,
            seed: 11,
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

fn count(record: &CellRecord, what: &str) -> u64 {
    record.metrics.operations[0].counts.get(what).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_strategy_keeps_every_invariant_with_64_clients_over_a_pool_of_8() {
    let servers = local_servers(Some(100)).await;
    for strategy in STRATEGIES {
        let record = run(&cell(strategy, Vec::new()), &servers).await;
        assert!(record.invariants_hold(), "{strategy}: {:#?}", record.invariants);
        assert!(record.invariants.len() >= 3, "{strategy}: {:?}", record.invariants);
        assert!(
            count(&record, "reserved") > 0,
            "{strategy}: {:?}",
            record.metrics.operations[0].counts
        );
        assert!(count(&record, "full") > 0, "{strategy}: hot sections sell out");
        assert_eq!(record.strategy.as_deref(), Some(*strategy));
    }
    servers.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_gate_compensates_a_failing_database_step() {
    let servers = local_servers(Some(100)).await;
    let settings = vec![("faults.confirm_failure_rate".to_string(), "0.3".to_string())];
    let record = run(&cell("redis-gate", settings), &servers).await;
    let injected = record.metrics.errors_by_class.get("22012").copied().unwrap_or(0);
    assert!(injected > 0, "{:?}", record.metrics.errors_by_class);
    let attempted = count(&record, "compensation_attempted");
    assert!(
        attempted >= injected,
        "every failed confirmation is compensated: {attempted} < {injected}"
    );
    assert_eq!(count(&record, "compensation_succeeded"), attempted);
    assert!(record.invariants_hold(), "{:#?}", record.invariants);
    assert!(record
        .invariants
        .iter()
        .any(|c| c.name.starts_with("Redis counters agree")));
    servers.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_gate_survives_redis_going_away_without_overselling() {
    let servers = local_servers(Some(100)).await;
    let port = url::Url::parse(&servers.redis.as_ref().unwrap().url)
        .unwrap()
        .port()
        .unwrap();
    let mut settings = cell("redis-gate", Vec::new());
    settings.driver.duration_s = 3.0;
    // Plenty of seats, so the gate is still deciding when Redis dies.
    settings.overrides.settings = vec![("data.capacity".into(), "2000".into())];
    let live = Arc::new(LiveCounts::default());
    let watching = Arc::clone(&live);
    // Kill Redis once the gate has been deciding for a while.
    let killer = tokio::spawn(async move {
        for _ in 0..1_500 {
            if watching.ok.load(std::sync::atomic::Ordering::Relaxed) >= 300 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for process in processes_mentioning(&format!("127.0.0.1:{port}")) {
            let pid: i32 = process.split(':').next().unwrap().parse().unwrap();
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    });
    let record = run_cell(&settings, &servers, live).await.unwrap();
    killer.await.unwrap();
    assert!(count(&record, "reserved") > 0);
    assert!(
        count(&record, "gate_unavailable") > 0,
        "{:?}",
        record.metrics.operations[0].counts
    );
    for check in &record.invariants {
        if check.name.starts_with("Redis counters agree") {
            assert!(
                check.not_checked && !check.holds,
                "Redis is gone: agreement can be neither claimed nor refuted: {check:?}"
            );
            assert_eq!(check.verdict(), "NOT CHECKED");
        } else {
            assert!(check.holds, "the database alone still never oversells: {check:?}");
        }
    }
    assert!(
        record.invariants_hold(),
        "a check that could not be made does not fail the cell: {:#?}",
        record.invariants
    );
    servers.shutdown().await;
}

/// A violation is reported, not hidden: a template whose counter was
/// corrupted by hand (as a buggy strategy would leave it) is copied into the
/// cell, and `contend run` says FAIL and exits 1 — 1, not the SLO's 99,
/// though an objective set out of reach FAILs too (the exit table's
/// precedence).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_violated_invariant_fails_the_run_and_its_exit_status() {
    let servers = local_servers(Some(40)).await;
    // Load the template through a first cell, then corrupt it.
    let first = run(&cell("conditional-update", Vec::new()), &servers).await;
    assert!(first.invariants_hold());
    let admin = &servers.postgres.url;
    let template_url = contend::provision::database_url(admin, &first.template.name);
    let (client, connection) = tokio_postgres::connect(&template_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let task = tokio::spawn(connection);
    client
        .batch_execute("UPDATE sections SET taken = taken + 7 WHERE id = 1")
        .await
        .unwrap();
    drop(client);
    task.await.unwrap().unwrap();

    let tmp = crate::util::IsolatedTmp::new();
    let output = tmp
        .contend()
        .args([
            "run",
            "--workload",
            "seat-reservation",
            "--backend",
            "external",
            "--database-url",
            admin,
        ])
        .args([
            "--scale",
            "0.1",
            "--clients",
            "4",
            "--duration",
            "1s",
            "--warmup",
            "0s",
            "--set",
            "slo.p95_ms={ reserve = 0.001 }",
            "--results",
        ])
        .arg(tmp.path().join("results"))
        .output()
        .unwrap();
    let (stdout, stderr) = crate::util::text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("FAIL  taken = count(reservations) per section"),
        "{stdout}"
    );
    assert!(stderr.contains("an invariant was violated"), "{stderr}");
    assert!(stderr.contains("FAILed too (exit status 1 beats 99)"), "{stderr}");
    assert!(stdout.contains("  FAIL  p95"), "{stdout}");
    servers.shutdown().await;
}

/// seat-reservation's defaults carry seed scenario 1's sheet: every
/// objective contend can judge for this cell is on the scorecard, each
/// PASS or FAIL in its unit, and the count met closes it.
#[test]
fn the_registration_teams_sheet_is_scored_objective_by_objective() {
    crate::util::prepare_machine();
    let tmp = crate::util::IsolatedTmp::new();
    let output = tmp
        .contend()
        .args(["run", "--workload", "seat-reservation", "--backend", "local"])
        .args(["-c", "4", "-T", "2s", "--warmup", "0s", "--no-slo-exit", "--results"])
        .arg(tmp.path().join("results"))
        .output()
        .unwrap();
    let (stdout, stderr) = crate::util::text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    let objectives = [
        "p50 reserve <= 120 ms",
        "p95 reserve <= 40 ms",
        "p99 reserve <= 600 ms",
        "attempts over 1000 ms <= 1%",
        "error rate <= 1%",
        "deadlocks <= 0.1%",
        "retry rate <= 3%",
        "pool utilisation <= 70%",
        "goodput >= 40/s",
    ];
    let mut passes = 0;
    for objective in objectives {
        let line = stdout
            .lines()
            .find(|l| l.contains(objective))
            .unwrap_or_else(|| panic!("{objective} not on the scorecard:\n{stdout}"));
        assert!(
            line.trim_start().starts_with("PASS") || line.trim_start().starts_with("FAIL"),
            "{line}"
        );
        passes += usize::from(line.trim_start().starts_with("PASS"));
        let unit = if objective.ends_with("ms") && !objective.starts_with("attempts") {
            " ms"
        } else if objective.ends_with("/s") {
            "/s"
        } else {
            "%"
        };
        assert!(
            line.trim_end().ends_with(unit),
            "measured in the objective's unit: {line}"
        );
    }
    let met = stdout
        .lines()
        .find(|l| {
            l.trim_end()
                .ends_with(&format!("of {} objectives met", objectives.len()))
        })
        .unwrap_or_else(|| panic!("no count of objectives met:\n{stdout}"));
    assert!(met.trim_start().starts_with(&format!("{passes} of ")), "{met}");
}
