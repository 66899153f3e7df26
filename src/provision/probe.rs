//! Talking to a server once: the facts a result records about it (version,
//! settings, reserved connections), the clients' role on servers contend
//! starts, and connection errors explained as what to check.

use std::collections::BTreeMap;
use std::time::Duration;

use super::tls::{PgTarget, TargetError, TlsRefusal};
use super::{generate_password, mask_url, PgServer, ProvisionError, RedisServer, ServerOrigin};

/// Server settings that shape benchmark results; every result records them.
const RECORDED_SETTINGS: &[&str] = &[
    "max_connections",
    "superuser_reserved_connections",
    "shared_buffers",
    "work_mem",
    "effective_cache_size",
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_level",
    "max_wal_size",
    "checkpoint_timeout",
    "shared_preload_libraries",
    "jit",
    "max_worker_processes",
    // on with --tls: what a cell's connect times were paid with.
    "ssl",
    "max_parallel_workers_per_gather",
];

/// The role benchmark clients connect as on servers contend starts.
pub const CLIENT_ROLE: &str = "contend_app";

/// Creates (or, after a restart on the same data, re-keys) [`CLIENT_ROLE`]
/// with a fresh generated password: a login role with no other attribute,
/// as an application's would be. Returns `postgres` with its client URL
/// and role set.
pub(crate) async fn with_client_role(mut postgres: PgServer) -> Result<PgServer, ProvisionError> {
    let failed = |reason: String| ProvisionError::Connect {
        server: "PostgreSQL",
        url: postgres.masked_url(),
        reason: format!("creating the clients' role {CLIENT_ROLE}: {reason}"),
    };
    let target = PgTarget::parse(&postgres.url).map_err(|e| failed(e.to_string()))?;
    let (client, connection) = target
        .connect()
        .await
        .map_err(|e| failed(explain_pg_connect_error(&e)))?;
    let connection_task = tokio::spawn(connection);
    // The server gets a SCRAM verifier, never the password: the statement's
    // text is kept by pg_stat_statements (utility statements verbatim) and
    // readable by anyone with pg_read_all_stats. The verifier is base64 and
    // `$`-separated: safe inside a literal (utility statements take no
    // parameters) and a `$$` body.
    let password = generate_password();
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
    let created = client
        .batch_execute(&format!(
            "DO $$BEGIN
               IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{CLIENT_ROLE}') THEN
                 ALTER ROLE {CLIENT_ROLE} WITH LOGIN NOSUPERUSER PASSWORD '{verifier}';
               ELSE
                 CREATE ROLE {CLIENT_ROLE} WITH LOGIN NOSUPERUSER PASSWORD '{verifier}';
               END IF;
             END$$"
        ))
        .await;
    drop(client);
    let _ = connection_task.await;
    created.map_err(|e| failed(e.to_string()))?;
    let mut url = ::url::Url::parse(&postgres.url).map_err(|e| failed(e.to_string()))?;
    url.set_username(CLIENT_ROLE)
        .and_then(|()| url.set_password(Some(&password)))
        .map_err(|()| failed("the server URL cannot carry a user".into()))?;
    postgres.client_url = url.to_string();
    postgres.client_role = Some(CLIENT_ROLE.to_string());
    Ok(postgres)
}

/// Connects once and reads the facts a result records about a server.
pub(crate) async fn probe_postgres(url: &str, origin: ServerOrigin) -> Result<PgServer, ProvisionError> {
    let connect_error = |reason: String| ProvisionError::Connect {
        server: "PostgreSQL",
        url: mask_url(url),
        reason,
    };
    let target = PgTarget::parse(url).map_err(|e| match e {
        TargetError::Url(e) => connect_error(format!("not a valid URL ({e})")),
        TargetError::Tls(e) => connect_error(e.to_string()),
    })?;
    let (client, connection) = tokio::time::timeout(Duration::from_secs(10), target.connect())
        .await
        .map_err(|_| connect_error("no answer within 10 s: check host and port".into()))?
        .map_err(|e| connect_error(explain_pg_connect_error(&e)))?;
    let connection_task = tokio::spawn(connection);
    let rows = client
        .query(
            "SELECT name, setting, unit FROM pg_settings WHERE name = ANY($1) OR name IN ('server_version', 'server_version_num', 'reserved_connections')",
            &[&RECORDED_SETTINGS],
        )
        .await
        .map_err(|e| connect_error(format!("reading settings failed: {e}")))?;
    drop(client);
    connection_task.abort();
    let mut all: BTreeMap<String, String> = BTreeMap::new();
    for row in rows {
        let name: String = row.get(0);
        let setting: String = row.get(1);
        let unit: Option<String> = row.get(2);
        all.insert(name, with_unit(&setting, unit.as_deref()));
    }
    let number = |name: &str| all.get(name).and_then(|v| v.parse::<u32>().ok()).unwrap_or(0);
    let max_connections = number("max_connections");
    let reserved_connections = number("superuser_reserved_connections") + number("reserved_connections");
    let version_num = number("server_version_num") / 10_000;
    let version = all.remove("server_version").unwrap_or_default();
    all.remove("server_version_num");
    let (host, port) = config_host_port(&target.config);
    Ok(PgServer {
        url: url.to_string(),
        client_url: url.to_string(),
        client_role: None,
        host,
        port,
        max_connections,
        reserved_connections,
        version,
        version_num,
        settings: all,
        origin,
    })
}

/// Connects once to Redis, checks it answers, and reads its version.
pub(crate) async fn probe_redis(url: &str, origin: ServerOrigin) -> Result<RedisServer, ProvisionError> {
    let connect_error = |reason: String| ProvisionError::Connect {
        server: "Redis",
        url: mask_url(url),
        reason,
    };
    let client = redis::Client::open(url).map_err(|e| connect_error(format!("not a valid URL ({e})")))?;
    let mut connection = tokio::time::timeout(Duration::from_secs(10), client.get_multiplexed_async_connection())
        .await
        .map_err(|_| connect_error("no answer within 10 s: check host and port".into()))?
        .map_err(|e| connect_error(explain_redis_error(&e)))?;
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut connection)
        .await
        .map_err(|e| connect_error(explain_redis_error(&e)))?;
    let version = info
        .lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .unwrap_or("unknown")
        .trim()
        .to_string();
    Ok(RedisServer {
        url: url.to_string(),
        version,
        origin,
    })
}

fn explain_redis_error(error: &redis::RedisError) -> String {
    let text = error.to_string();
    if error.kind() == redis::ErrorKind::AuthenticationFailed || text.contains("WRONGPASS") || text.contains("NOAUTH") {
        "password authentication failed: check the password in the URL".to_string()
    } else if text.contains("Connection refused") {
        "connection refused: is the server running and listening on that host and port?".into()
    } else {
        text
    }
}

fn config_host_port(config: &tokio_postgres::Config) -> (String, u16) {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    (host, config.get_ports().first().copied().unwrap_or(5432))
}

/// Settings in 8kB pages or kB are shown the way postgresql.conf writes them.
fn with_unit(setting: &str, unit: Option<&str>) -> String {
    let Ok(value) = setting.parse::<u64>() else {
        return setting.to_string();
    };
    let kb = match unit {
        Some("8kB") => value * 8,
        Some("kB") => value,
        Some("MB") => value * 1024,
        Some(other) => return format!("{setting}{other}"),
        None => return setting.to_string(),
    };
    if kb % (1024 * 1024) == 0 {
        format!("{}GB", kb / (1024 * 1024))
    } else if kb % 1024 == 0 {
        format!("{}MB", kb / 1024)
    } else {
        format!("{kb}kB")
    }
}

/// Turns a connection error into what a user should check.
pub(crate) fn explain_pg_connect_error(error: &tokio_postgres::Error) -> String {
    if let Some(refusal) = TlsRefusal::of(error) {
        return refusal.to_string();
    }
    if let Some(db) = error.as_db_error() {
        return match db.code().code() {
            "28P01" => format!("{}: check the password in the URL", db.message()),
            "28000" => format!("{}: check the user name and pg_hba.conf", db.message()),
            "3D000" => format!("{}: check the database name in the URL", db.message()),
            "53300" => format!("{}: the server is at max_connections", db.message()),
            _ => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        };
    }
    let text = error.to_string();
    let source = std::error::Error::source(error)
        .map(|s| s.to_string())
        .unwrap_or_default();
    if source.contains("Connection refused") {
        "connection refused: is the server running and listening on that host and port?".into()
    } else if source.is_empty() {
        text
    } else {
        format!("{text}: {source}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_render_like_postgresql_conf() {
        assert_eq!(with_unit("16384", Some("8kB")), "128MB");
        assert_eq!(with_unit("4096", Some("kB")), "4MB");
        assert_eq!(with_unit("on", None), "on");
        assert_eq!(with_unit("300", Some("s")), "300s");
    }
}
