//! TLS against a real server: one local PostgreSQL started with `--tls`
//! (hostssl lines only, a CA made for the run) shared by this file's tests.
//! Every connection contend makes to it (pools of each kind, the sampler,
//! the checker, the template loader) must be TLS with `verify-full`, and
//! what a user gets wrong is refused in one line naming the setting.

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::Duration;

use contend::provision::tls::{PgTarget, ServerCertificates};

use crate::util::{prepare_machine, text, IsolatedTmp};

/// The admin URL (with `sslmode=verify-full&sslrootcert=…`) of the one
/// TLS server of this test binary. Started from a thread of its own: the
/// server lives as long as the test binary (contend's spawner thread ties
/// it to the process), not as long as one test's runtime.
fn tls_server_url() -> &'static str {
    static SERVERS: OnceLock<contend::provision::Servers> = OnceLock::new();
    let servers = SERVERS.get_or_init(|| {
        prepare_machine();
        std::thread::spawn(|| {
            tokio::runtime::Runtime::new().unwrap().block_on(async {
                contend::provision::provision(&contend::provision::ProvisionOptions {
                    backend: contend::provision::BackendChoice::Local,
                    with_redis: false,
                    tls: true,
                    ..Default::default()
                })
                .await
                .expect("a local server with --tls")
            })
        })
        .join()
        .unwrap()
    });
    &servers.postgres.url
}

/// `url` with `key` set to `value` in its query (added or replaced).
fn with_query(url: &str, key: &str, value: &str) -> String {
    let mut parsed = url::Url::parse(url).unwrap();
    let kept: Vec<(String, String)> = parsed
        .query_pairs()
        .filter(|(k, _)| k != key)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    parsed
        .query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .append_pair(key, value);
    parsed.to_string()
}

/// contend's sessions on the server by application name, each with
/// whether `pg_stat_ssl` says it is encrypted; polled until `running`
/// says stop.
async fn watch_sessions(url: &str, running: impl Fn() -> bool) -> BTreeSet<(String, bool)> {
    let target = PgTarget::parse(url).unwrap();
    let (client, connection) = target.connect().await.unwrap();
    tokio::spawn(connection);
    let mut seen = BTreeSet::new();
    while running() {
        for row in client
            .query(
                "SELECT a.application_name, s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
                 WHERE a.application_name LIKE 'contend%' AND a.pid <> pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
        {
            seen.insert((row.get(0), row.get(1)));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pool_the_sampler_and_the_checker_are_on_tls_with_verify_full() {
    let url = tls_server_url().to_string();
    assert!(
        url.contains("sslmode=verify-full"),
        "contend's own clients verify fully"
    );
    for pool in ["deadpool", "sqlx", "none"] {
        let tmp = IsolatedTmp::new();
        let results = tmp.path().join("results");
        let mut command = tmp.contend();
        command
            .args(["run", "--backend", "external", "--database-url", &url])
            .args(["--workload", "wallet-transfer", "--pool", pool, "--pool-size", "4"])
            .args(["--clients", "4", "--duration", "1s", "--warmup", "0s", "--no-slo-exit"])
            .arg("--results")
            .arg(&results);
        let child = tokio::task::spawn_blocking(move || command.output().unwrap());
        let watched = watch_sessions(&url, || !child.is_finished()).await;
        let output = child.await.unwrap();
        let (stdout, stderr) = text(&output);
        assert!(output.status.success(), "--pool {pool}: {stderr}");

        let applications: BTreeSet<&str> = watched.iter().map(|(name, _)| name.as_str()).collect();
        for expected in ["contend", "contend-sampler", "contend-control"] {
            assert!(applications.contains(expected), "--pool {pool}: saw {watched:?}");
        }
        assert!(watched.iter().all(|(_, ssl)| *ssl), "--pool {pool}: {watched:?}");

        let run_dir = std::fs::read_dir(&results).unwrap().next().unwrap().unwrap().path();
        let cells = std::fs::read_to_string(run_dir.join("cells.jsonl")).unwrap();
        let record: serde_json::Value = serde_json::from_str(cells.lines().next().unwrap()).unwrap();
        assert_eq!(record["tls"]["mode"], "verify-full", "--pool {pool}: {}", record["tls"]);
        assert!(
            record["tls"]["version"].as_str().unwrap().starts_with("TLSv1."),
            "--pool {pool}: {}",
            record["tls"]
        );
        assert_eq!(record["tls"]["plain_sessions"], 0);
        assert_eq!(record["postgres"]["settings"]["ssl"], "on");
        assert!(
            stdout.contains("tls: TLSv1."),
            "--pool {pool}: the summary says it: {stdout}"
        );
        assert!(!cells.contains("sslrootcert"), "no URL in results");
    }
}

/// `contend provision --backend external` against `url`: its status and
/// its stderr's error lines.
fn provision_external(url: &str) -> (Option<i32>, Vec<String>, String) {
    let tmp = IsolatedTmp::new();
    let output = tmp
        .contend()
        .args([
            "provision",
            "--backend",
            "external",
            "--database-url",
            url,
            "--",
            "true",
        ])
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    let errors = stderr
        .lines()
        .filter(|line| line.contains("error:"))
        .map(str::to_string)
        .collect();
    (output.status.code(), errors, stderr)
}

#[test]
fn verify_full_is_accepted_and_so_are_libpqs_weaker_modes() {
    let url = tls_server_url();
    let (status, _, stderr) = provision_external(url);
    assert_eq!(status, Some(0), "{stderr}");
    // Without a root certificate: require encrypts with the certificate
    // unchecked, prefer takes the TLS the server offers, and allow, refused
    // in plain by the hostssl-only server, tries again with TLS.
    let mut bare = url::Url::parse(url).unwrap();
    bare.set_query(None);
    for mode in ["require", "prefer", "allow"] {
        let (status, _, stderr) = provision_external(&with_query(bare.as_str(), "sslmode", mode));
        assert_eq!(status, Some(0), "sslmode={mode}: {stderr}");
    }
}

#[test]
fn a_certificate_for_another_host_is_refused_in_one_line() {
    let url = tls_server_url();
    // Connect to the same server by a name its certificate does not hold
    // (hostaddr says where it is, as libpq's does).
    let mut other = url::Url::parse(&with_query(url, "hostaddr", "127.0.0.1")).unwrap();
    other.set_host(Some("db.example.invalid")).unwrap();
    let (status, errors, stderr) = provision_external(other.as_str());
    assert_eq!(status, Some(2), "{stderr}");
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("not db.example.invalid"), "{stderr}");
    assert!(errors[0].contains("sslmode=verify-ca"), "{stderr}");
    assert!(errors[0].contains("127.0.0.1"), "the names it holds: {stderr}");

    // verify-ca checks the chain only: the same connection is accepted.
    let chain_only = with_query(other.as_str(), "sslmode", "verify-ca");
    let (status, _, stderr) = provision_external(&chain_only);
    assert_eq!(status, Some(0), "{stderr}");
}

#[test]
fn a_certificate_of_an_unknown_ca_is_refused_naming_sslrootcert() {
    let url = tls_server_url();
    let dir = tempfile::tempdir().unwrap();
    let stranger = dir.path().join("other-ca.crt");
    let other = ServerCertificates::generate(&["localhost"]).unwrap();
    std::fs::write(&stranger, other.ca_cert_pem).unwrap();
    let url = with_query(url, "sslrootcert", stranger.to_str().unwrap());
    let (status, errors, stderr) = provision_external(&url);
    assert_eq!(status, Some(2), "{stderr}");
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("not signed by a CA in sslrootcert"), "{stderr}");
}

#[test]
fn sslmode_disable_against_a_hostssl_only_server_names_sslmode_require() {
    let url = with_query(tls_server_url(), "sslmode", "disable");
    let (status, errors, stderr) = provision_external(&url);
    assert_eq!(status, Some(2), "{stderr}");
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("set sslmode=require"), "{stderr}");
    assert!(!stderr.contains("retry"), "no retry loop: {stderr}");
}

#[test]
fn pgsslmode_in_the_environment_is_read_and_the_url_wins_over_it() {
    let url = tls_server_url();
    let tmp = IsolatedTmp::new();
    // The URL says verify-full: PGSSLMODE=disable must not downgrade it.
    let output = tmp
        .contend()
        .env("PGSSLMODE", "disable")
        .args([
            "provision",
            "--backend",
            "external",
            "--database-url",
            url,
            "--",
            "true",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output).1);
    // Without sslmode in the URL, PGSSLMODE=disable is what is used.
    let mut bare = url::Url::parse(url).unwrap();
    bare.set_query(None);
    let output = tmp
        .contend()
        .env("PGSSLMODE", "disable")
        .args([
            "provision",
            "--backend",
            "external",
            "--database-url",
            bare.as_str(),
            "--",
            "true",
        ])
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("set sslmode=require"), "{stderr}");
}
