//! A first run on a fresh machine: a cell that needs no Redis runs where
//! redis-server is missing, one that needs it says in one line how to get
//! it, and `auto` names an inherited DATABASE_URL before benchmarking it.

use std::path::Path;

use crate::util::{local_servers, text, IsolatedTmp};

/// A PATH with `apt-get` on it and nothing else: no redis-server, no
/// PostgreSQL binaries (contend finds those under /usr/lib/postgresql).
fn path_without_redis(tmp: &IsolatedTmp) -> std::path::PathBuf {
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    if Path::new("/usr/bin/apt-get").is_file() {
        std::os::unix::fs::symlink("/usr/bin/apt-get", bin.join("apt-get")).unwrap();
    }
    bin
}

#[test]
fn goal_count_runs_without_redis_server_and_the_cache_says_how_to_get_it() {
    let tmp = IsolatedTmp::new();
    let bin = path_without_redis(&tmp);
    let results = tmp.path().join("results");
    let run = |extra: &[&str]| {
        tmp.contend()
            .env("PATH", &bin)
            .args(["run", "--workload", "goal-count", "--backend", "local"])
            .args(["--duration", "1s", "--warmup", "0s", "--clients", "4"])
            // Redis is the subject here, not whether a 1 s debug-build cell
            // meets goal-count's objectives.
            .arg("--no-slo-exit")
            .arg("--results")
            .arg(&results)
            .args(extra)
            .output()
            .unwrap()
    };

    let output = run(&[]);
    let (_, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    let recorded = std::fs::read_dir(&results)
        .unwrap()
        .flatten()
        .any(|run| run.path().join("cells.jsonl").is_file());
    assert!(recorded, "the cell is recorded: {stderr}");
    assert!(!stderr.contains("redis"), "no Redis was asked for: {stderr}");

    let output = run(&["--cache"]);
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let error: Vec<_> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(error.len(), 1, "one line: {stderr}");
    assert!(error[0].contains("redis-server not found"), "{stderr}");
    assert!(error[0].contains("scripts/setup.sh"), "{stderr}");
    if bin.join("apt-get").exists() {
        assert!(error[0].contains("apt-get install -y redis-server"), "{stderr}");
    }
    assert!(tmp.run_dirs().is_empty(), "nothing left: {:?}", tmp.run_dirs());
}

#[tokio::test]
async fn auto_names_the_database_url_it_inherits_and_how_to_avoid_it() {
    let owned = local_servers(None).await;
    let url = owned.postgres.url.clone();
    let password = url::Url::parse(&url).unwrap().password().unwrap().to_string();
    let tmp = IsolatedTmp::new();

    let output = tmp
        .contend()
        .env("DATABASE_URL", &url)
        .args(["provision", "--", "true"])
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    let notice: Vec<_> = stderr.lines().filter(|l| l.contains("DATABASE_URL")).collect();
    assert_eq!(notice.len(), 1, "{stderr}");
    assert!(notice[0].contains("backend external"), "{stderr}");
    assert!(notice[0].contains(&owned.postgres.masked_url()), "{stderr}");
    assert!(notice[0].contains("--backend local"), "{stderr}");
    assert!(notice[0].contains("unset DATABASE_URL"), "{stderr}");
    assert!(!stderr.contains(&password), "the password stays masked: {stderr}");

    // Given as a flag, the URL is the user's choice: nothing to warn about.
    let output = tmp
        .contend()
        .args(["provision", "--database-url", &url, "--", "true"])
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("DATABASE_URL"), "{stderr}");
    owned.shutdown().await;
}
