//! Reports for real: a sweep and a migration rendered into one index.html
//! that headless Chromium draws, and no file of a run holding a password.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{prepare_machine, prepare_machine_with_chromium, text, IsolatedTmp};

fn only_run_dir(results: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(results)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.into_iter().next().unwrap()
}

pub(crate) fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn a_sweep_and_a_migration_render_into_a_page_chromium_draws() {
    prepare_machine_with_chromium();
    let tmp = IsolatedTmp::new();
    let sweep_results = tmp.path().join("sweep");
    // max_connections 8 leaves 5 for clients: the pools of 8 meet 53300.
    let output = tmp
        .contend()
        .args([
            "sweep",
            "--workload",
            "sleep",
            "--pool-sizes",
            "2,8",
            "--max-connections",
            "8,30",
        ])
        .args([
            "--clients",
            "8",
            "--duration",
            "1s",
            "--warmup",
            "0s",
            "--backend",
            "local",
        ])
        .arg("--results")
        .arg(&sweep_results)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let dir = only_run_dir(&sweep_results);
    assert!(
        stderr.contains(&format!("contend: report: {}", dir.join("index.html").display())),
        "{stderr}"
    );

    let migrate_results = tmp.path().join("migrate");
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
            "--no-slo-exit",
            "--duration",
            "1s",
            "--warmup",
            "0s",
            "--backend",
            "local",
            "--results",
        ])
        .arg(&migrate_results)
        .output()
        .unwrap();
    assert!(output.status.success(), "{:?}", text(&output));
    std::fs::copy(
        only_run_dir(&migrate_results).join("migration.json"),
        dir.join("migration.json"),
    )
    .unwrap();

    // run.json rebuilt from both, then everything re-rendered from it.
    let output = tmp.contend().args(["report", "--rebuild"]).arg(&dir).output().unwrap();
    assert!(output.status.success(), "{:?}", text(&output));
    let run: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["schema"], "contend.run/1");
    assert_eq!(run["cells"].as_array().unwrap().len(), 4);
    assert_eq!(run["migrations"].as_array().unwrap().len(), 1);
    assert!(run["machine"]["cores"].as_u64().unwrap() >= 1);
    let histogram = run["cells"][0]["metrics"]["operations"][0]["histograms"]["end_to_end"]
        .as_str()
        .unwrap();
    assert!(!histogram.is_empty(), "cells keep their mergeable histograms");
    std::fs::remove_file(dir.join("index.html")).unwrap();
    let output = tmp.contend().args(["report"]).arg(&dir).output().unwrap();
    assert!(output.status.success(), "{:?}", text(&output));
    for plot in [
        "goodput-sleep",
        "p99-sleep",
        "errors-sleep",
        "pool-wait-sleep",
        "migration-latency-goal-count",
    ] {
        assert!(dir.join("plots").join(format!("{plot}.svg")).exists(), "{plot}");
    }
    let summary = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(
        summary.contains("## Recommendation: sleep") && summary.contains("## SLO scorecard"),
        "{summary}"
    );

    let html = std::fs::read_to_string(dir.join("index.html")).unwrap();
    for section in [
        "Recommendation",
        "SLO scorecard",
        "Plan diffs",
        "Index Only Scan using user_goals_user_challenge",
    ] {
        assert!(html.contains(section), "{section}");
    }
    assert!(html.contains("53300"), "the heatmap names the refusals");
    assert!(
        !html.contains("<script src") && !html.contains("<link ") && !html.contains("<img "),
        "offline: the page fetches nothing"
    );

    let dom = Command::new("chromium-headless-shell")
        .args([
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!("file://{}", dir.join("index.html").display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.contains("data-plots=\"5\""), "{}", &dom[..dom.len().min(400)]);
    assert!(dom.contains("data-plots-drawn=\"5\""), "Chromium drew every plot");
}

#[test]
fn no_file_of_a_run_holds_the_servers_password() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let results = tmp.path().join("results");
    let url_file = tmp.path().join("url");
    // The servers' URLs (with their generated passwords) reach the inner
    // contend runs, which then write results, reports and logs.
    let script = r#"printf %s "$DATABASE_URL" > "$URL_FILE"
"$CONTEND" run --workload wallet-transfer --scale 0.02 --clients 2 --duration 1s --warmup 0s \
  --no-slo-exit --backend external --database-url "$DATABASE_URL" --redis-url "$REDIS_URL" --results "$RESULTS" &&
"$CONTEND" migrate --workload goal-count --scale 0.02 --clients 2 --duration 1s --warmup 0s \
  --no-slo-exit --backend external --database-url "$DATABASE_URL" --redis-url "$REDIS_URL" --results "$RESULTS""#;
    let output = tmp
        .contend()
        .args(["provision", "--backend", "local", "--", "sh", "-c", script])
        .env("CONTEND", env!("CARGO_BIN_EXE_contend"))
        .env("URL_FILE", &url_file)
        .env("RESULTS", &results)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let url = url::Url::parse(&std::fs::read_to_string(&url_file).unwrap()).unwrap();
    let password = url.password().unwrap().to_string();
    assert!(password.len() >= 16, "a generated password");
    let files = files_under(&results);
    assert!(files.len() >= 10, "{files:?}");
    for file in &files {
        let content = String::from_utf8_lossy(&std::fs::read(file).unwrap()).into_owned();
        assert!(!content.contains(&password), "{} holds the password", file.display());
    }
    assert!(
        !stdout.contains(&password) && !stderr.contains(&password),
        "output holds the password"
    );
}

/// On servers contend starts, the clients connect as their own role with a
/// password of its own: neither it nor the admin's reaches a file of the
/// run (cells.jsonl, run.json, the report) or a cell summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_file_of_a_run_holds_the_clients_role_password() {
    use contend::client::PoolSettings;
    use contend::driver::{DriverSettings, LiveCounts, Load, Ramp};
    use contend::{exec::run_cell, record::CellSettings, results::append_cell};

    let servers = crate::util::local_servers(None).await;
    let password_of = |url: &str| url::Url::parse(url).unwrap().password().unwrap().to_string();
    let passwords = [
        password_of(&servers.postgres.url),
        password_of(&servers.postgres.client_url),
    ];
    assert_ne!(
        passwords[0], passwords[1],
        "the clients' role has a password of its own"
    );
    let settings = CellSettings {
        workload: "wallet-transfer".into(),
        overrides: contend::workload::WorkloadOverrides {
            scale: Some(0.02),
            ..Default::default()
        },
        pool: PoolSettings {
            size: 2,
            ..Default::default()
        },
        driver: DriverSettings {
            load: Load::Closed { clients: 2 },
            ramp: Ramp::Herd,
            warmup_s: 0.0,
            duration_s: 1.0,
            ..Default::default()
        },
        ..Default::default()
    };
    let record = run_cell(&settings, &servers, std::sync::Arc::new(LiveCounts::default()))
        .await
        .unwrap();
    assert!(record.metrics.ok > 0, "the clients' role can run the workload");
    assert!(record.invariants_hold(), "{:#?}", record.invariants);
    assert_eq!(record.postgres.client_role.as_deref(), Some("contend_app"));
    let tmp = IsolatedTmp::new();
    let dir = tmp.path().join("run");
    append_cell(&dir, &record).unwrap();
    contend::exec::publish(&dir, &Default::default()).unwrap();
    let summary = contend::render::cell_summary(&record);
    for file in files_under(&dir) {
        let content = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
        for password in &passwords {
            assert!(
                !content.contains(password.as_str()),
                "{} holds a password",
                file.display()
            );
        }
    }
    assert!(passwords.iter().all(|p| !summary.contains(p.as_str())));
    servers.shutdown().await;
}

/// Names in a report cannot inject markup or escape the run directory: a
/// script named with `"><img …>` and `..` runs for real, then its record
/// is rewritten to a workload named like a path out of the directory, and
/// the report is rebuilt from it.
#[test]
fn hostile_names_are_escaped_in_the_page_and_slugged_in_ids_and_file_names() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let scripts = tmp.path().join("scripts");
    std::fs::create_dir(&scripts).unwrap();
    let hostile = "\"><img src=x onerror=alert(1)>..'x";
    let script = scripts.join(format!("{hostile}.sql"));
    std::fs::write(&script, "SELECT 1;\n").unwrap();
    let results = tmp.path().join("results");
    let output = tmp
        .contend()
        .args(["run", "--workload", "script", "--script"])
        .arg(&script)
        .args([
            "--clients",
            "1",
            "--duration",
            "1s",
            "--warmup",
            "0s",
            "--backend",
            "local",
        ])
        .arg("--results")
        .arg(&results)
        .output()
        .unwrap();
    assert!(output.status.success(), "{:?}", text(&output));
    let dir = only_run_dir(&results);
    let cells = std::fs::read_to_string(dir.join("cells.jsonl")).unwrap();
    let json_name = serde_json::to_string(hostile).unwrap();
    assert!(
        cells.contains(&json_name[1..json_name.len() - 1]),
        "the operation is named after the script"
    );
    let html = std::fs::read_to_string(dir.join("index.html")).unwrap();
    assert!(!html.contains("<img"), "no markup from a name");

    // A record whose workload is named to climb out of plots/ and to end
    // an attribute: `report --rebuild` takes whatever cells.jsonl holds.
    let escape = "../../../\"><script>alert(1)</script>";
    let json_name = serde_json::to_string(escape).unwrap();
    let rewritten = cells.replace("\"workload\":\"script\"", &format!("\"workload\":{json_name}"));
    assert_ne!(rewritten, cells, "the record names its workload");
    std::fs::write(dir.join("cells.jsonl"), rewritten).unwrap();
    let before: Vec<PathBuf> = files_under(tmp.path());
    let output = tmp.contend().args(["report", "--rebuild"]).arg(&dir).output().unwrap();
    assert!(output.status.success(), "{:?}", text(&output));
    let written: Vec<PathBuf> = files_under(tmp.path())
        .into_iter()
        .filter(|f| !before.contains(f))
        .collect();
    for file in &written {
        assert!(
            file.starts_with(dir.join("plots")),
            "written outside plots/: {}",
            file.display()
        );
        let name = file.file_name().unwrap().to_str().unwrap();
        assert!(
            name.trim_end_matches(".svg")
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{name}"
        );
    }
    assert!(!written.is_empty(), "the plots of the renamed workload");
    let html = std::fs::read_to_string(dir.join("index.html")).unwrap();
    assert!(!html.contains("<script>alert"), "no script from a name");
    for id in html.split(" id=\"").skip(1) {
        let id = id.split('"').next().unwrap();
        assert!(
            id.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "id {id:?}"
        );
    }
}
