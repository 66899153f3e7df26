//! contend migrate for real: goal-count's index turns the count's
//! sequential scan into an index-only scan while the workload runs, a
//! failing concurrent build is reported and cleaned up, and a migration
//! that cannot run is refused before anything runs.

use std::sync::Arc;
use std::time::Duration;

use contend::client::PoolSettings;
use contend::driver::{DriverSettings, LiveCounts, Load, Ramp};
use contend::record::CellSettings;
use contend::workload::Migration;
use contend::workload::WorkloadOverrides;
use contend::{exec::run_migrate, record::MigrateSettings};

use crate::util::{local_servers, prepare_machine, text, IsolatedTmp};

fn migration_json(results: &std::path::Path) -> serde_json::Value {
    let dir = std::fs::read_dir(results).unwrap().flatten().next().unwrap().path();
    serde_json::from_slice(&std::fs::read(dir.join("migration.json")).unwrap()).unwrap()
}

#[test]
fn goal_count_index_turns_the_counts_seq_scan_into_an_index_only_scan_under_load() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let results = tmp.path().join("results");
    let output = tmp
        .contend()
        .args([
            "migrate",
            "--workload",
            "goal-count",
            "--scale",
            "0.2",
            "--clients",
            "4",
        ])
        // Not about SLOs: the count's seq scan before the index may miss them.
        .args([
            "--no-slo-exit",
            "--duration",
            "2s",
            "--warmup",
            "0s",
            "--backend",
            "local",
            "--results",
        ])
        .arg(&results)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(
            "initialize (count): Seq Scan on user_goals → Index Only Scan using user_goals_user_challenge on user_goals"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("user_goals_user_challenge on user_goals: valid"),
        "{stdout}"
    );
    for window in ["  before ", "  during ", "  after "] {
        assert!(stdout.contains(window), "{window}: {stdout}");
    }

    let record = migration_json(&results);
    assert_eq!(record["schema"], "contend.migration/1");
    assert_eq!(record["succeeded"], true);
    // The plans are the server's own EXPLAIN JSON, stored whole and read.
    let before = &record["explain_before"][0];
    assert!(before["plan_json"][0]["Plan"]["Node Type"].is_string(), "{before}");
    let diff = &record["plan_diffs"][0];
    assert_eq!(diff["query"], "initialize (count)");
    assert!(diff["scans_before"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s == "Seq Scan on user_goals"));
    assert_eq!(diff["new_indexes"][0], "user_goals_user_challenge");
    let execution = diff["execution_ms"].as_array().unwrap();
    assert!(
        execution[0].as_f64().unwrap() > 0.0 && execution[1].as_f64().unwrap() > 0.0,
        "{diff}"
    );
    assert!(diff["speedup"].as_f64().unwrap() > 1.0, "{diff}");
    // 40,000 users × 10 goals: the sequential scan filters nearly all of them.
    let removed = diff["rows_removed_by_filter"].as_array().unwrap();
    assert!(removed[0].as_f64().unwrap() > 300_000.0, "{diff}");
    assert_eq!(removed[1].as_f64().unwrap(), 0.0, "{diff}");
    let buffers_before =
        diff["shared_hit_blocks"][0].as_u64().unwrap() + diff["shared_read_blocks"][0].as_u64().unwrap();
    let buffers_after =
        diff["shared_hit_blocks"][1].as_u64().unwrap() + diff["shared_read_blocks"][1].as_u64().unwrap();
    assert!(buffers_after * 10 < buffers_before, "{diff}");

    // The foreground kept running through the build, and the build's phases were seen.
    let foreground = &record["foreground"];
    assert!(foreground["before"]["attempts"].as_u64().unwrap() > 0, "{foreground}");
    assert!(foreground["after"]["attempts"].as_u64().unwrap() > 0, "{foreground}");
    let phases: Vec<&str> = record["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(phases.iter().any(|p| p.starts_with("building index")), "{phases:?}");
    assert_eq!(record["vacuumed"][0], "user_goals");
    assert!(!record["metrics"]["timeline"].as_array().unwrap().is_empty());
}

#[test]
fn a_unique_build_over_duplicates_is_reported_dropped_and_fails_the_run() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let file = tmp.path().join("unique.sql");
    std::fs::write(
        &file,
        "-- one goal per user? there are ten.\n\
         CREATE UNIQUE INDEX CONCURRENTLY user_goals_one_per_user ON user_goals (user_id);\n\
         CREATE INDEX CONCURRENTLY never_reached ON user_goals (created_at);\n",
    )
    .unwrap();
    let results = tmp.path().join("results");
    let output = tmp
        .contend()
        .args([
            "migrate",
            "--workload",
            "goal-count",
            "--scale",
            "0.05",
            "--clients",
            "2",
        ])
        .args([
            "--duration",
            "1s",
            "--warmup",
            "0s",
            "--backend",
            "local",
            "--migration",
        ])
        .arg(&file)
        .arg("--results")
        .arg(&results)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(stdout.contains("FAILED (23505)"), "{stdout}");
    assert!(
        stdout.contains("user_goals_one_per_user on user_goals: INVALID, dropped (DROP INDEX CONCURRENTLY)"),
        "{stdout}"
    );
    assert!(stdout.contains("1 statement(s) after the failure not run"), "{stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let record = migration_json(&results);
    assert_eq!(record["succeeded"], false);
    let index = &record["indexes"][0];
    assert_eq!(index["valid"], false);
    assert_eq!(index["dropped"], true);
    let reason = index["reason"].as_str().unwrap();
    assert!(reason.starts_with("line 2: could not create unique index"), "{reason}");
    assert!(reason.contains("is duplicated"), "{reason}");
    assert_eq!(record["statements"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_build_leaves_an_invalid_index_kept_when_asked() {
    let servers = local_servers(None).await;
    let settings = MigrateSettings {
        cell: CellSettings {
            workload: "goal-count".into(),
            overrides: WorkloadOverrides {
                scale: Some(0.2),
                ..Default::default()
            },
            pool: PoolSettings {
                size: 2,
                acquire_timeout: Duration::from_secs(10),
                ..Default::default()
            },
            driver: DriverSettings {
                load: Load::Closed { clients: 2 },
                ramp: Ramp::Herd,
                warmup_s: 0.0,
                duration_s: 1.0,
                seed: 5,
                ..Default::default()
            },
            ..Default::default()
        },
        migration: Some(
            Migration::parse(
                "cancelled.sql",
                "CREATE INDEX CONCURRENTLY user_goals_slow ON user_goals (user_id, challenge_id, created_at);",
            )
            .unwrap(),
        ),
        keep_invalid: true,
        lock_timeout_ms: None,
        // The build of 400,000 rows takes far longer than this: cancelled.
        max_statement_ms: 20,
    };
    let record = run_migrate(&settings, &servers, Arc::new(LiveCounts::default()))
        .await
        .unwrap();
    servers.shutdown().await;
    assert!(!record.succeeded);
    assert_eq!(
        record.statements[0].error_code.as_deref(),
        Some("57014"),
        "{:?}",
        record.statements
    );
    assert_eq!(record.indexes.len(), 1, "{:?}", record.indexes);
    let index = &record.indexes[0];
    assert!(!index.valid && !index.dropped, "{index:?}");
    assert!(
        index.reason.as_deref().unwrap().contains("statement timeout"),
        "{index:?}"
    );
    assert!(record.vacuumed.is_empty(), "no valid index, nothing to vacuum");
    // The plans did not change: the invalid index is not used.
    assert_eq!(record.plan_diffs[0].scans_before, record.plan_diffs[0].scans_after);
}

#[test]
fn a_migration_that_cannot_run_is_refused_before_anything_runs() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let in_block = tmp.path().join("in_block.sql");
    std::fs::write(
        &in_block,
        "BEGIN;\nALTER TABLE user_goals ADD COLUMN note text;\nCREATE INDEX CONCURRENTLY n ON user_goals (note);\nCOMMIT;\n",
    )
    .unwrap();
    let typo = tmp.path().join("typo.sql");
    std::fs::write(
        &typo,
        "CREATE INDEX CONCURRENTLY a ON user_goals (user_id);\n\nCREATE INDEX CONCURENTLY b\n  ON user_goals (challenge_id);\n",
    )
    .unwrap();
    for (file, expected) in [
        (
            &in_block,
            "line 3: `CREATE INDEX CONCURRENTLY N …` cannot run inside a transaction block",
        ),
        (&typo, "line 3: syntax error at or near \"b\" (nothing was run)"),
        (&tmp.path().join("missing.sql"), "cannot read migration"),
    ] {
        let results = tmp.path().join("results");
        let output = tmp
            .contend()
            .args([
                "migrate",
                "--workload",
                "goal-count",
                "--scale",
                "0.05",
                "--backend",
                "local",
            ])
            .arg("--migration")
            .arg(file)
            .arg("--results")
            .arg(&results)
            .output()
            .unwrap();
        let (_, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("contend: error:")).collect();
        assert_eq!(errors.len(), 1, "{stderr}");
        assert!(errors[0].contains(expected), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        let written: Vec<_> = std::fs::read_dir(&results)
            .map(|d| d.flatten().collect())
            .unwrap_or_default();
        assert!(
            written.is_empty(),
            "nothing written for a refused migration: {written:?}"
        );
    }
    assert!(tmp.run_dirs().is_empty(), "{:?}", tmp.run_dirs());
}
