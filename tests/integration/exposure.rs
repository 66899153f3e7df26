//! What a run exposes to the network: the servers contend starts listen on
//! the loopback interface only, whatever the backend (docker containers run
//! on the host network, so their sockets are the host's too).

use contend::provision::{provision, BackendChoice, ProvisionOptions};

use crate::util::prepare_machine;

/// Local addresses of the TCP sockets listening on `port`, as the kernel
/// lists them in /proc/net/tcp and /proc/net/tcp6 (hex, e.g. "0100007F"
/// for 127.0.0.1, "00000000" for any).
fn listening_addresses(port: u16) -> Vec<String> {
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state)) = (fields.get(1), fields.get(3)) else {
                continue;
            };
            let Some((address, hex_port)) = local.split_once(':') else {
                continue;
            };
            if *state == "0A" && u16::from_str_radix(hex_port, 16) == Ok(port) {
                found.push(format!("{table} {address}"));
            }
        }
    }
    found
}

async fn servers_listen_on_loopback_only(backend: BackendChoice) {
    prepare_machine();
    let servers = provision(&ProvisionOptions {
        backend,
        ..Default::default()
    })
    .await
    .unwrap();
    let redis_port = url::Url::parse(&servers.redis.as_ref().unwrap().url)
        .unwrap()
        .port()
        .unwrap();
    for (server, port) in [("PostgreSQL", servers.postgres.port), ("Redis", redis_port)] {
        let addresses = listening_addresses(port);
        assert!(!addresses.is_empty(), "{server} listens on {port}");
        assert!(
            addresses.iter().all(|a| a == "/proc/net/tcp 0100007F"),
            "{server} listens on 127.0.0.1 only, not {addresses:?}"
        );
    }
    servers.shutdown().await;
}

#[tokio::test]
async fn local_servers_listen_on_loopback_only() {
    servers_listen_on_loopback_only(BackendChoice::Local).await;
}

#[tokio::test]
async fn docker_servers_listen_on_loopback_only() {
    servers_listen_on_loopback_only(BackendChoice::Docker).await;
}

/// The generated passwords reach only the command `contend provision`
/// runs: not a server's command line (`ps` shows it to every user), not a
/// container's configuration (`docker inspect`), not a server's
/// environment (which carries nothing of contend's beyond what it needs),
/// and no file or output of a run against them.
fn passwords_stay_out_of_ps_inspect_environments_and_files(backend: &str) {
    use crate::util::{text, IsolatedTmp};
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let file = |name: &str| tmp.path().join(name);
    let marker = format!("contend-env-marker-{}", contend::provision::generate_password());
    let script = r#"printf '%s\n%s\n' "$DATABASE_URL" "$REDIS_URL" > "$OUT/urls"
ps -eo args > "$OUT/ps"
for p in $(ps -o pid= --ppid "$PPID"); do
  [ "$p" = "$$" ] || { tr '\0' '\n' < "/proc/$p/environ"; echo; } >> "$OUT/environ" 2>/dev/null
done
if [ "$BACKEND" = docker ]; then
  docker inspect $(docker ps -aq --filter "label=contend.pid=$PPID") > "$OUT/inspect"
fi
"$CONTEND" run --workload sleep --clients 2 --duration 1s --warmup 0s --backend external --results "$OUT/results""#;
    let output = tmp
        .contend()
        .args(["provision", "--backend", backend, "--", "sh", "-c", script])
        .env("CONTEND", env!("CARGO_BIN_EXE_contend"))
        .env("OUT", tmp.path())
        .env("BACKEND", backend)
        .env("CONTEND_TEST_MARKER", &marker)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let urls = std::fs::read_to_string(file("urls")).unwrap();
    let passwords: Vec<String> = urls
        .lines()
        .map(|u| url::Url::parse(u).unwrap().password().unwrap().to_string())
        .collect();
    assert_eq!(passwords.len(), 2, "{urls}");
    assert!(passwords.iter().all(|p| p.len() >= 16), "generated passwords: {urls}");

    let ps = std::fs::read_to_string(file("ps")).unwrap();
    assert!(
        ps.contains("postgres") && ps.contains("redis-server"),
        "the servers ran while ps looked: {ps}"
    );
    let mut looked_at = vec![
        ("ps -eo args".to_string(), ps),
        ("stdout".into(), stdout),
        ("stderr".into(), stderr),
    ];
    if backend == "docker" {
        let inspect = std::fs::read_to_string(file("inspect")).unwrap();
        assert!(inspect.contains("contend.host"), "both containers inspected: {inspect}");
        looked_at.push(("docker inspect".into(), inspect));
    } else {
        let environ = std::fs::read_to_string(file("environ")).unwrap();
        // Names only in messages: values may be anyone's secrets.
        let names: Vec<&str> = environ
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, _)| k))
            .collect();
        assert!(
            names.contains(&"PATH"),
            "the servers' environments were read: {names:?}"
        );
        assert!(
            !environ.contains(&marker),
            "a server inherited contend's environment: {names:?}"
        );
        assert!(!names.contains(&"DATABASE_URL"), "{names:?}");
        looked_at.push(("the servers' environments".into(), environ));
    }
    let results = crate::report::files_under(&file("results"));
    assert!(results.len() >= 3, "{results:?}");
    for path in results {
        let content = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
        looked_at.push((path.display().to_string(), content));
    }
    for (what, content) in &looked_at {
        for password in &passwords {
            assert!(
                !content.contains(password.as_str()),
                "{what} holds a generated password"
            );
        }
    }
}

#[test]
fn local_passwords_stay_out_of_ps_environments_and_files() {
    passwords_stay_out_of_ps_inspect_environments_and_files("local");
}

#[test]
fn docker_passwords_stay_out_of_ps_inspect_and_files() {
    passwords_stay_out_of_ps_inspect_environments_and_files("docker");
}

/// The clients' role is created with a SCRAM verifier computed by contend:
/// the statement text the server keeps (pg_stat_statements keeps utility
/// statements verbatim, for anyone with pg_read_all_stats) never holds the
/// clients' password, and the role still logs in with it.
#[tokio::test]
async fn the_clients_password_never_reaches_the_server_as_text() {
    let servers = crate::util::local_servers(None).await;
    let client_password = url::Url::parse(&servers.postgres.client_url)
        .unwrap()
        .password()
        .unwrap()
        .to_string();
    let (admin, connection) = tokio_postgres::connect(&servers.postgres.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    admin
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .await
        .unwrap();
    let kept: Vec<String> = admin
        .query(
            "SELECT query FROM pg_stat_statements WHERE query LIKE '%contend_app%'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(!kept.is_empty(), "the role's statement is kept: the check looks at it");
    assert!(
        kept.iter().all(|q| !q.contains(&client_password)),
        "the server keeps the clients' password as text"
    );
    let (client, connection) = tokio_postgres::connect(&servers.postgres.client_url, tokio_postgres::NoTls)
        .await
        .expect("the clients' role logs in with its password");
    tokio::spawn(connection);
    assert_eq!(
        client
            .query_one("SELECT current_user::text", &[])
            .await
            .unwrap()
            .get::<_, String>(0),
        "contend_app"
    );
    drop((admin, client));
    servers.shutdown().await;
}
