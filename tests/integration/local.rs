//! The local backend, for real: servers from this machine's binaries.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use contend::provision::{provision, BackendChoice, ProvisionOptions};

use crate::util::{prepare_machine, processes_mentioning, text, wait_until, IsolatedTmp, KillOnDrop};

fn local_options(max_connections: u32) -> ProvisionOptions {
    ProvisionOptions {
        backend: BackendChoice::Local,
        max_connections: Some(max_connections),
        ..Default::default()
    }
}

#[test]
fn provision_runs_the_command_against_both_servers_and_leaves_nothing() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let output = tmp
        .contend()
        .args(["provision", "--backend", "local", "--max-connections", "37", "--"])
        .args([
            "sh",
            "-c",
            r#"psql "$DATABASE_URL" -Atc "show max_connections"; redis-cli --no-auth-warning -u "$REDIS_URL" ping; echo "$DATABASE_URL""#,
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[..2], ["37", "PONG"], "stderr: {stderr}");
    assert!(stderr.contains("backend local"), "{stderr}");
    let password = url::Url::parse(lines[2]).unwrap().password().unwrap().to_string();
    assert!(stderr.contains("contend:***@"), "URLs are shown masked: {stderr}");
    assert!(
        !stderr.contains(&password),
        "the password never reaches stderr: {stderr}"
    );
    assert!(tmp.run_dirs().is_empty(), "left behind: {:?}", tmp.run_dirs());
    assert!(processes_mentioning(&tmp.path().to_string_lossy()).is_empty());
}

#[test]
fn provision_exits_with_the_commands_status() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let output = tmp
        .contend()
        .args(["provision", "--backend", "local", "--", "sh", "-c", "exit 7"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(7), "{:?}", text(&output));
    assert!(tmp.run_dirs().is_empty());
}

#[tokio::test]
async fn max_connections_changes_by_restart_and_keeps_the_data() {
    prepare_machine();
    let mut servers = provision(&local_options(37)).await.unwrap();
    assert_eq!(servers.postgres.max_connections, 37);
    assert_eq!(servers.postgres.settings["fsync"], "on");
    let url = servers.postgres.url.clone();
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
        .batch_execute("CREATE TABLE kept (id int); INSERT INTO kept VALUES (1)")
        .await
        .unwrap();
    drop(client);

    let took = servers.set_max_connections(120).await.unwrap();
    eprintln!("local max_connections change 37 -> 120 took {took:?}");
    assert_eq!(servers.postgres.max_connections, 120);
    assert_eq!(servers.postgres.url, url, "same port and password after the restart");
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let row = client.query_one("SELECT count(*) FROM kept", &[]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    let shown = client.query_one("SHOW max_connections", &[]).await.unwrap();
    assert_eq!(shown.get::<_, String>(0), "120");
    drop(client);

    assert!(
        servers.set_max_connections(2).await.is_err(),
        "2 leaves nothing above the reserved 3"
    );
    servers.shutdown().await;
}

#[test]
fn sigkill_of_contend_takes_its_servers_down_and_the_next_start_cleans_up() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let mut child = KillOnDrop(
        tmp.contend()
            .args(["provision", "--backend", "local"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("DATABASE_URL=postgres://"), "{first}");
    let redis_url = lines.next().unwrap().unwrap();
    let redis_port = url::Url::parse(redis_url.trim_start_matches("REDIS_URL="))
        .unwrap()
        .port()
        .unwrap();
    // postgres names its data directory on its command line; redis-server
    // rewrites its own to `redis-server 127.0.0.1:PORT`.
    let tmp_path = tmp.path().to_string_lossy().to_string();
    let redis_listen = format!("127.0.0.1:{redis_port}");
    let servers = || processes_mentioning(&tmp_path).len() + processes_mentioning(&redis_listen).len();
    assert_eq!(servers(), 2, "postgres and redis-server run");

    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let gone = wait_until(Duration::from_secs(5), || servers() == 0);
    assert!(
        gone.is_some(),
        "still running: {:?} {:?}",
        processes_mentioning(&tmp_path),
        processes_mentioning(&redis_listen)
    );
    eprintln!("servers gone {:?} after SIGKILL", gone.unwrap());
    assert_eq!(
        tmp.run_dirs().len(),
        1,
        "the killed run's directory is left for the next start"
    );

    let output = tmp
        .contend()
        .args(["provision", "--backend", "local", "--", "true"])
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("did not exit cleanly"),
        "the next start says what it removed: {stderr}"
    );
    assert!(tmp.run_dirs().is_empty());
}

#[test]
fn a_port_taken_before_the_server_binds_it_is_retried_on_another() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let taken_pg = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_redis = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let pg_port = taken_pg.local_addr().unwrap().port().to_string();
    let redis_port = taken_redis.local_addr().unwrap().port().to_string();
    let output = tmp
        .contend()
        .args([
            "provision",
            "--backend",
            "local",
            "--pg-port",
            &pg_port,
            "--redis-port",
            &redis_port,
        ])
        .args(["--", "sh", "-c", r#"psql "$DATABASE_URL" -Atc "select 1""#])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stdout.trim(), "1");
    assert!(
        stderr.contains(&format!("port {pg_port} was taken before PostgreSQL")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("port {redis_port} was taken before Redis")),
        "{stderr}"
    );
}

#[test]
fn a_server_that_refuses_to_start_is_explained_and_leaves_nothing() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let output = tmp
        .contend()
        .args([
            "provision",
            "--backend",
            "local",
            "--pg-setting",
            "shared_buffers=64TB",
            "--",
            "true",
        ])
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("PostgreSQL did not start"), "{stderr}");
    assert!(stderr.contains("FATAL"), "the server's own reason is shown: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(tmp.run_dirs().is_empty(), "left behind: {:?}", tmp.run_dirs());
    assert!(processes_mentioning(&tmp.path().to_string_lossy()).is_empty());
}

/// Benchmark clients connect as a role that is not a superuser, so the
/// superuser reservation keeps them out of the last slots exactly as it
/// keeps an application out; contend's own sessions stay superuser.
#[tokio::test]
async fn clients_connect_as_a_role_the_superuser_reservation_keeps_out() {
    let servers = crate::util::local_servers(Some(10)).await;
    assert_eq!(servers.postgres.client_role.as_deref(), Some("contend_app"));
    assert_eq!(servers.postgres.reserved_connections, 3);
    assert!(!servers.postgres.client_url.contains(&format!(
        ":{}@",
        url::Url::parse(&servers.postgres.url).unwrap().password().unwrap()
    )));
    let mut held = Vec::new();
    let refused = loop {
        match tokio_postgres::connect(&servers.postgres.client_url, tokio_postgres::NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                held.push(client);
                assert!(held.len() <= 10, "the clients' role got past max_connections");
            }
            Err(e) => break e,
        }
    };
    assert_eq!(held.len(), 10 - 3, "every slot but the reserved ones");
    assert_eq!(
        refused.code(),
        Some(&tokio_postgres::error::SqlState::TOO_MANY_CONNECTIONS),
        "{refused}"
    );
    let is_superuser = held[0]
        .query_one("SELECT rolsuper FROM pg_roles WHERE rolname = current_user", &[])
        .await
        .unwrap();
    assert!(!is_superuser.get::<_, bool>(0));
    // The superuser still gets one of the reserved slots, as a DBA would.
    let (admin, connection) = tokio_postgres::connect(&servers.postgres.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    admin.simple_query("SELECT 1").await.unwrap();
    drop(held);
    drop(admin);
    servers.shutdown().await;
}

/// A temp dir shared with other pid namespaces (a bind-mounted /tmp): a
/// run directory is removed only when its owner file names this host and
/// a contend provably gone (dead pid, or the pid now started at another
/// time); one naming another host survives, as does a live contend's.
#[test]
fn stale_run_directories_are_removed_only_when_their_owner_is_provably_gone_here() {
    use crate::util::{text, IsolatedTmp};
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let here = contend::provision::host_identity();
    let me = std::process::id();
    let started = contend::provision::process_start_time(me as i32).unwrap();
    let dead = {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    };
    let run_dir = |name: &str, owner: String| {
        let dir = tmp.path().join(format!("contend-run-{name}"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("owner.pid"), owner).unwrap();
        dir
    };
    let elsewhere = run_dir(
        "elsewhere",
        format!("{dead}\n{started}\nanother-machine/boot/pid:[1]\n"),
    );
    let live = run_dir("live", format!("{me}\n{started}\n{here}\n"));
    let reused = run_dir("reused", format!("{me}\n{}\n{here}\n", started + 1));
    let gone = run_dir("gone", format!("{dead}\n{started}\n{here}\n"));
    let older = run_dir("older", format!("{dead}"));
    let output = tmp
        .contend()
        .args(["provision", "--backend", "local", "--", "true"])
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(elsewhere.exists(), "another host's run directory was removed: {stderr}");
    assert!(live.exists(), "a live contend's run directory was removed: {stderr}");
    for dir in [&reused, &gone, &older] {
        assert!(!dir.exists(), "{} survived: {stderr}", dir.display());
    }
}
