//! The docker backend, for real, against the stand-in images that
//! scripts/setup.sh builds from this machine's own server binaries.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use contend::provision::{provision, BackendChoice, ProvisionOptions, ServerOrigin};

use crate::util::{containers_of_pid, prepare_machine, text, wait_until, IsolatedTmp, KillOnDrop};

#[test]
fn provision_runs_the_command_in_containers_and_removes_them() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let child = tmp
        .contend()
        .args(["provision", "--backend", "docker", "--max-connections", "37", "--"])
        .args([
            "sh",
            "-c",
            r#"psql "$DATABASE_URL" -Atc "show max_connections; show fsync"; redis-cli --no-auth-warning -u "$REDIS_URL" ping"#,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let output = child.wait_with_output().unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["37", "on", "PONG"],
        "stderr: {stderr}"
    );
    assert!(stderr.contains("backend docker"), "{stderr}");
    assert!(
        containers_of_pid(pid).is_empty(),
        "containers left: {:?}",
        containers_of_pid(pid)
    );
}

#[tokio::test]
async fn max_connections_changes_with_a_fresh_container_and_facts_are_recorded() {
    prepare_machine();
    let options = ProvisionOptions {
        backend: BackendChoice::Docker,
        max_connections: Some(40),
        ..Default::default()
    };
    let mut servers = provision(&options).await.unwrap();
    assert_eq!(servers.postgres.max_connections, 40);
    assert_eq!(servers.postgres.settings["fsync"], "on", "fsync stays on unless asked");
    match &servers.postgres.origin {
        ServerOrigin::Docker {
            image,
            image_id,
            stand_in,
        } => {
            assert!(image.starts_with("contend-standin/postgres:"), "{image}");
            assert!(image_id.starts_with("sha256:"), "{image_id}");
            assert!(stand_in);
        }
        other => panic!("not docker: {other:?}"),
    }
    let took = servers.set_max_connections(90).await.unwrap();
    eprintln!("docker max_connections change 40 -> 90 took {took:?}");
    assert_eq!(servers.postgres.max_connections, 90);
    let (client, connection) = tokio_postgres::connect(&servers.postgres.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let shown = client.query_one("SHOW max_connections", &[]).await.unwrap();
    assert_eq!(shown.get::<_, String>(0), "90");
    drop(client);
    servers.shutdown().await;
    assert!(containers_of_pid(std::process::id())
        .iter()
        .all(|id| !container_is_running(id)));
}

fn container_is_running(id: &str) -> bool {
    let output = Command::new("docker")
        .args(["inspect", "-f", "{{.State.Running}}", id])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).trim() == "true"
}

#[test]
fn sigkill_of_contend_removes_its_containers_within_seconds() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let mut child = KillOnDrop(
        tmp.contend()
            .args(["provision", "--backend", "docker"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("DATABASE_URL="), "{first}");
    assert_eq!(containers_of_pid(pid).len(), 2);
    child.kill().unwrap();
    child.wait().unwrap();
    let gone = wait_until(Duration::from_secs(10), || containers_of_pid(pid).is_empty());
    assert!(gone.is_some(), "containers left: {:?}", containers_of_pid(pid));
    eprintln!("containers gone {:?} after SIGKILL", gone.unwrap());
}

/// The stale-cleanup tests, one at a time: each one's contend would
/// otherwise clean up the other's dead-owner container first and say so
/// on its own stderr.
static STALE_CLEANUP: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn the_next_start_removes_containers_of_a_dead_contend_and_says_so() {
    prepare_machine();
    let _one_at_a_time = STALE_CLEANUP.lock().unwrap_or_else(|e| e.into_inner());
    // A container labelled as a contend that no longer exists, as a killed
    // contend whose watcher was killed too would leave.
    let dead_pid = dead_pid();
    let created = Command::new("docker")
        .args(["run", "-d", "--label", &format!("contend.pid={dead_pid}")])
        .args([
            "--label",
            &format!("contend.host={}", contend::provision::host_identity()),
            "--label",
            "contend.role=postgres",
            "--label",
            "contend.session=stale-test",
        ])
        .args(["-e", "POSTGRES_PASSWORD=x", "contend-standin/postgres:15"])
        .output()
        .unwrap();
    assert!(created.status.success(), "{:?}", text(&created));
    let tmp = IsolatedTmp::new();
    let output = tmp
        .contend()
        .args(["provision", "--backend", "docker", "--", "true"])
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("left by contend pid {dead_pid}, which did not exit cleanly")),
        "{stderr}"
    );
    assert!(containers_of_pid(dead_pid).is_empty());
}

/// A pid no process has: one just reaped.
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn a_missing_image_the_user_chose_is_an_error_not_a_fallback() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let output = tmp
        .contend()
        .args([
            "provision",
            "--backend",
            "docker",
            "--pg-image",
            "contend-nonexistent/postgres:99",
            "--",
            "true",
        ])
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("image contend-nonexistent/postgres:99 is not available"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().filter(|l| l.contains("error")).count(), 1, "{stderr}");
}

/// Containers created (not started: nothing needs to run for cleanup to
/// judge them by their labels), removed when the test ends.
struct Decoys(Vec<String>);

impl Decoys {
    fn create(&mut self, labels: &[String]) -> String {
        let mut command = Command::new("docker");
        command.arg("create");
        for label in labels {
            command.args(["--label", label]);
        }
        let created = command
            .args(["--label", "contend.role=decoy", "contend-standin/postgres:15"])
            .output()
            .unwrap();
        assert!(created.status.success(), "{:?}", text(&created));
        let id = String::from_utf8_lossy(&created.stdout).trim().to_string();
        self.0.push(id.clone());
        id
    }
}

impl Drop for Decoys {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f"]).args(&self.0).output();
    }
}

fn container_exists(id: &str) -> bool {
    Command::new("docker")
        .args(["inspect", "-f", "{{.Id}}", id])
        .output()
        .unwrap()
        .status
        .success()
}

/// A shared daemon: cleanup removes a container only when its owner is
/// provably gone from this host (this host's identity, and a dead pid or
/// one now started at another time). Another host's containers, a live
/// contend's and an older contend's unlabelled ones survive.
#[test]
fn stale_cleanup_removes_only_containers_whose_owner_is_provably_gone_on_this_host() {
    prepare_machine();
    let _one_at_a_time = STALE_CLEANUP.lock().unwrap_or_else(|e| e.into_inner());
    let here = contend::provision::host_identity();
    let me = std::process::id();
    let started = contend::provision::process_start_time(me as i32).unwrap();
    let dead = dead_pid();
    let label = |k: &str, v: &dyn std::fmt::Display| format!("contend.{k}={v}");
    let mut decoys = Decoys(Vec::new());
    // Another machine on the same daemon, its contend's pid meaning
    // nothing here (dead here, and one alive here).
    let other_dead = decoys.create(&[
        label("host", &"another-machine/another-boot/pid:[1]"),
        label("pid", &dead),
    ]);
    let other_alive = decoys.create(&[
        label("host", &"another-machine/another-boot/pid:[1]"),
        label("pid", &me),
        label("started", &started),
    ]);
    // This host: a live contend (this test process), the same pid reused
    // by a process started later, and a dead one.
    let live = decoys.create(&[label("host", &here), label("pid", &me), label("started", &started)]);
    let reused = decoys.create(&[
        label("host", &here),
        label("pid", &me),
        label("started", &(started + 1)),
    ]);
    let gone = decoys.create(&[label("host", &here), label("pid", &dead), label("started", &started)]);
    // An older contend's: a pid and no host.
    let old = decoys.create(&[label("pid", &dead)]);

    let tmp = IsolatedTmp::new();
    let output = tmp
        .contend()
        .args(["provision", "--backend", "docker", "--", "true"])
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    for (id, what) in [
        (&other_dead, "another host's, pid dead here"),
        (&other_alive, "another host's"),
        (&live, "a live contend's"),
        (&old, "an older contend's"),
    ] {
        assert!(container_exists(id), "{what} container was removed; stderr: {stderr}");
    }
    for (id, what) in [(&reused, "a reused pid's"), (&gone, "a dead contend's")] {
        assert!(!container_exists(id), "{what} container survived; stderr: {stderr}");
    }
    assert!(
        stderr.contains(&format!("left by contend pid {dead}, which did not exit cleanly")),
        "{stderr}"
    );
    let old_short = &old[..12];
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("container(s) alone") && l.contains(old_short)),
        "the older contend's container is named once: {stderr}"
    );
}
