//! The external backend: servers contend does not own, given by URL. The
//! servers here are started by contend's local backend, then handed over by
//! URL as a user's would be.

use contend::provision::Servers;

use crate::util::{local_servers, text, IsolatedTmp};

async fn owned_servers(max_connections: u32) -> Servers {
    local_servers(Some(max_connections)).await
}

#[tokio::test]
async fn reads_max_connections_and_version_and_refuses_to_change_them() {
    let owned = owned_servers(44).await;
    let pg_url = owned.postgres.url.clone();
    let redis_url = owned.redis.as_ref().unwrap().url.clone();
    let tmp = IsolatedTmp::new();

    let output = tmp
        .contend()
        .env("DATABASE_URL", &pg_url)
        .env("REDIS_URL", &redis_url)
        .args(["provision", "--backend", "external", "--"])
        .args([
            "sh",
            "-c",
            r#"psql "$DATABASE_URL" -Atc "select 1"; echo "$CONTEND_MAX_CONNECTIONS""#,
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stdout.lines().collect::<Vec<_>>(), ["1", "44"]);
    assert!(stderr.contains("max_connections 44"), "{stderr}");
    assert!(
        stderr.contains("PostgreSQL 15") || stderr.contains("PostgreSQL 1"),
        "{stderr}"
    );

    let output = tmp
        .contend()
        .args([
            "provision",
            "--backend",
            "external",
            "--database-url",
            &pg_url,
            "--max-connections",
            "300",
            "--",
            "true",
        ])
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("max_connections = 44"), "{stderr}");
    assert!(stderr.contains("needs a server restart"), "{stderr}");
    assert_eq!(
        stderr.lines().filter(|l| l.contains("error:")).count(),
        1,
        "one error line: {stderr}"
    );

    let output = tmp
        .contend()
        .args([
            "provision",
            "--backend",
            "external",
            "--database-url",
            &pg_url,
            "--max-connections",
            "44",
            "--",
            "true",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "asking for what the server has is fine: {:?}",
        text(&output)
    );
    owned.shutdown().await;
}

#[tokio::test]
async fn a_wrong_password_is_named_as_such() {
    let owned = owned_servers(20).await;
    let mut url = url::Url::parse(&owned.postgres.url).unwrap();
    url.set_password(Some("wrong-password")).unwrap();
    let tmp = IsolatedTmp::new();
    let output = tmp
        .contend()
        .args([
            "provision",
            "--backend",
            "external",
            "--database-url",
            url.as_str(),
            "--",
            "true",
        ])
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("password authentication failed"), "{stderr}");
    assert!(stderr.contains("check the password"), "{stderr}");
    assert!(!stderr.contains("wrong-password"), "the password is masked: {stderr}");
    assert_eq!(
        stderr.lines().filter(|l| l.contains("error:")).count(),
        1,
        "one error line: {stderr}"
    );

    let mut redis_url = url::Url::parse(&owned.redis.as_ref().unwrap().url).unwrap();
    redis_url.set_password(Some("wrong-password")).unwrap();
    let output = tmp
        .contend()
        .args([
            "provision",
            "--backend",
            "external",
            "--database-url",
            &owned.postgres.url,
        ])
        .args(["--redis-url", redis_url.as_str(), "--", "true"])
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("Redis") && stderr.contains("check the password"),
        "{stderr}"
    );
    owned.shutdown().await;
}

#[test]
fn a_url_that_refuses_connections_is_named_as_such() {
    let unused_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tmp = IsolatedTmp::new();
    let output = tmp
        .contend()
        .args(["provision", "--backend", "external", "--database-url"])
        .arg(format!("postgres://someone:secret@127.0.0.1:{unused_port}/db"))
        .args(["--", "true"])
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("connection refused"), "{stderr}");
    assert!(stderr.contains("someone:***@"), "{stderr}");
    assert!(!stderr.contains("secret"), "{stderr}");
}
