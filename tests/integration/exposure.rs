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
