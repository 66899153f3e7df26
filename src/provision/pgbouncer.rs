//! PgBouncer between the application pools and PostgreSQL: one contend
//! starts in front of a cell's database ([`start_pgbouncer`]) or one the
//! user runs ([`ExternalPooler`]), what a result records about it
//! ([`PoolerInfo`]), and the URLs the app pools and the sampler use.
//!
//! A started PgBouncer lives in its own run directory
//! (`contend-run-<pid>-<random>`, as the local servers' do, so stale
//! cleanup finds it after a `kill -9`): its config and auth file (mode
//! 0600, owned by the account it runs as), its log and its pid. It listens
//! on a free 127.0.0.1 port and authenticates the app pools by SCRAM as the
//! clients' role, against that role's own verifier read from the server
//! (PgBouncer ≥ 1.14 takes SCRAM secrets in its auth file and then logs in
//! to the server with the keys the client proved: SCRAM pass-through, no
//! password in any file); where the verifier cannot be read (an external
//! server's non-superuser URL) the auth file holds the role's password.
//! A forced `user=`/`password=` in the database entry does not work with
//! SCRAM clients on 1.18: the client's keys replace the entry's password
//! (measured: "password authentication failed"). It has an admin console
//! user of its own. It is spawned like the servers are
//! ([`super::process`]): as the `postgres` user under root (PgBouncer
//! refuses root), with a parent-death signal. This module starts, probes
//! and stops the pooler; it never samples it (measure does) and never
//! checks a configuration against a cell (the binary's options do).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use super::install::{how_to_get, ServerBinary};
use super::local::{last_lines, wait_for_log_line, write_private, RunDir};
use super::ports::{on_a_free_port, says_port_taken, StartFailure};
use super::process::{self, RunAs};
use super::{database_url, generate_password, mask_url, PgServer, ProvisionError, ServerOrigin};

/// File in a pooler's run directory naming the pgbouncer pid; stale
/// cleanup kills what it names.
pub(super) const PGBOUNCER_PID_FILE: &str = "pgbouncer.pid";

/// The admin console's user.
const POOLER_ADMIN_USER: &str = "contend_admin";

/// The admin console's database.
const ADMIN_DATABASE: &str = "pgbouncer";

/// PgBouncer's `pool_mode`: when a server connection goes back to the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    /// When the client disconnects (PgBouncer's own default).
    Session,
    /// When the transaction ends: what deployments with many app instances run.
    Transaction,
    /// After every statement: multi-statement transactions are refused.
    Statement,
}

impl fmt::Display for PoolMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
            PoolMode::Statement => "statement",
        })
    }
}

/// A PgBouncer contend starts in front of each cell's database, as run and
/// as recorded. `PoolerSettings::default()` is `--pooler pgbouncer`
/// without further flags: transaction mode, pool size 20, 1000 clients,
/// no reserve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolerSettings {
    /// `pool_mode`. Default: transaction (`--pooler-mode`; PgBouncer's own
    /// default is session).
    pub mode: PoolMode,
    /// `default_pool_size`: server connections per database and user.
    /// Default 20, PgBouncer's (`--pooler-pool-size`, `--pooler-pool-sizes`).
    pub pool_size: u32,
    /// `max_client_conn`: client connections PgBouncer accepts; past it,
    /// clients are refused. Default 1000 (`--pooler-max-client-conn`;
    /// PgBouncer's own default is 100).
    pub max_client_conn: u32,
    /// `reserve_pool_size`: extra server connections for a pool whose
    /// clients waited `reserve_pool_timeout` (5 s). Default 0
    /// (`--pooler-reserve`).
    pub reserve_pool_size: u32,
}

impl Default for PoolerSettings {
    /// Transaction mode, `default_pool_size` 20, `max_client_conn` 1000,
    /// `reserve_pool_size` 0.
    fn default() -> Self {
        PoolerSettings {
            mode: PoolMode::Transaction,
            pool_size: 20,
            max_client_conn: 1000,
            reserve_pool_size: 0,
        }
    }
}

impl PoolerSettings {
    /// Most server connections this pooler opens to one database: its pool
    /// and its reserve.
    pub fn server_connections(&self) -> u32 {
        self.pool_size.saturating_add(self.reserve_pool_size)
    }
}

/// The pooler a cell's app pools go through, as run and recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum CellPooler {
    /// A PgBouncer contend starts in front of the cell's database.
    #[serde(rename = "pgbouncer")]
    PgBouncer(PoolerSettings),
    /// The user's PgBouncer ([`ExternalPooler`]); its settings are what
    /// its `SHOW CONFIG` says ([`PoolerInfo::config`]).
    External,
}

/// A PgBouncer the user runs (`--pooler-url`, `--pooler-admin-url`), in
/// front of the server contend is given. It must route every database to
/// that server (a `* = host=…` fallback entry), since each cell has a
/// database of its own. URLs hold passwords: never print or record them.
#[derive(Debug, Clone)]
pub struct ExternalPooler {
    /// What the app pools connect to; its database is replaced by the
    /// cell's.
    pub url: String,
    /// Its admin console (database `pgbouncer`), for sampling.
    pub admin_url: String,
}

/// What a result records about the pooler a cell went through.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PoolerInfo {
    /// `SHOW VERSION`, e.g. "PgBouncer 1.18.0".
    pub version: String,
    /// Where it came from (`local`: the binary contend started;
    /// `external`: the user's).
    pub origin: ServerOrigin,
    /// Host the app pools connect to.
    pub host: String,
    /// Port the app pools connect to.
    pub port: u16,
    /// Settings that shape results ([`RECORDED_CONFIG`]), as `SHOW CONFIG`
    /// reports them.
    pub config: BTreeMap<String, String>,
}

/// `SHOW CONFIG` keys every result records.
const RECORDED_CONFIG: &[&str] = &[
    "pool_mode",
    "default_pool_size",
    "min_pool_size",
    "reserve_pool_size",
    "reserve_pool_timeout",
    "max_client_conn",
    "max_db_connections",
    "max_user_connections",
    "server_lifetime",
    "server_idle_timeout",
    "query_wait_timeout",
    "max_prepared_statements",
];

/// Why a pooler could not be had. Messages never hold a password.
#[derive(Debug, thiserror::Error)]
pub enum PoolerError {
    /// No pgbouncer binary.
    #[error("--pooler pgbouncer: no pgbouncer binary found (looked on PATH, /usr/sbin, /usr/local/sbin, /usr/local/bin): {how_to_get}; or give a running one with --pooler-url and --pooler-admin-url")]
    NoBinary {
        /// How to get it on this system.
        how_to_get: String,
    },
    /// It exited or never got ready.
    #[error("PgBouncer did not start: {reason}")]
    Start {
        /// Its own last log lines, or the timeout.
        reason: String,
    },
    /// Its admin console or client side did not answer.
    #[error("cannot connect to PgBouncer at {url}: {reason}")]
    Connect {
        /// The URL, password masked.
        url: String,
        /// What went wrong and what to check.
        reason: String,
    },
    /// The server URL it should log in with is unusable.
    #[error("PgBouncer cannot log in to PostgreSQL: {reason}")]
    Upstream {
        /// What is missing.
        reason: String,
    },
    /// Files, processes, the account.
    #[error(transparent)]
    Provision(#[from] ProvisionError),
}

/// A pooler a cell goes through: the app pools' URL, the admin console's
/// URL, what is recorded, and the process when contend started it.
/// Dropping it stops that process; prefer [`Pooler::shutdown`].
pub struct Pooler {
    /// What the app pools connect to, password included (never print it).
    pub client_url: String,
    /// The admin console (database `pgbouncer`), password included.
    pub admin_url: String,
    /// What a result records.
    pub info: PoolerInfo,
    process: Option<Child>,
    // Declared last: removed after the process is stopped.
    _dir: Option<RunDir>,
}

impl Pooler {
    /// Stops a pooler contend started (SIGINT, PgBouncer's safe shutdown,
    /// then SIGKILL after 2 s) and removes its directory; nothing for an
    /// external one.
    pub async fn shutdown(mut self) {
        if let Some(child) = self.process.take() {
            let _ = tokio::task::spawn_blocking(move || stop_pgbouncer(child)).await;
        }
    }

    /// CPU seconds (user + system) the pgbouncer process used so far, from
    /// /proc/<pid>/stat; `None` for an external pooler or when unreadable.
    pub fn cpu_seconds(&self) -> Option<f64> {
        let pid = self.process.as_ref()?.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // utime and stime are fields 14 and 15; the fields after the
        // parenthesised name start at field 3.
        let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace().skip(11);
        let utime: u64 = fields.next()?.parse().ok()?;
        let stime: u64 = fields.next()?.parse().ok()?;
        let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??;
        Some((utime + stime) as f64 / ticks as f64)
    }
}

impl Drop for Pooler {
    fn drop(&mut self) {
        if let Some(child) = self.process.take() {
            stop_pgbouncer(child);
        }
    }
}

fn stop_pgbouncer(mut child: Child) {
    // SIGTERM is PgBouncer's immediate shutdown: the cell is over, its
    // clients closed already.
    process::stop_child(&mut child, Signal::SIGTERM, Duration::from_secs(2));
}

/// Finds the `pgbouncer` binary: PATH, then the directories Debian and
/// source builds put it in (/usr/sbin is not on a plain user's PATH).
pub fn find_pgbouncer() -> Result<PathBuf, PoolerError> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/local/sbin", "/usr/local/bin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|dir| dir.join("pgbouncer"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| PoolerError::NoBinary {
            how_to_get: how_to_get(ServerBinary::PgBouncer),
        })
}

/// Starts PgBouncer in front of `database` on `upstream`, with `settings`,
/// on a free 127.0.0.1 port, and waits until its admin console answers.
pub async fn start_pgbouncer(
    settings: &PoolerSettings,
    upstream: &PgServer,
    database: &str,
    startup_timeout: Duration,
) -> Result<Pooler, PoolerError> {
    let binary = find_pgbouncer()?;
    let login = upstream_login(upstream)?;
    let secret = match role_verifier(&upstream.url, &login.user).await {
        Some(verifier) => verifier,
        None => login.password.clone().ok_or_else(|| PoolerError::Upstream {
            reason: format!(
                "the clients' URL has no password and the role {}'s verifier cannot be read",
                login.user
            ),
        })?,
    };
    let run_as = process::server_account().map_err(|e| PoolerError::Start { reason: e.to_string() })?;
    let dir = RunDir::create(run_as.as_ref())?;
    let admin_password = generate_password();
    let auth = format!(
        "{} {}\n\"{POOLER_ADMIN_USER}\" \"{}\"\n",
        auth_quoted(&login.user),
        auth_quoted(&secret),
        postgres_protocol::password::scram_sha_256(admin_password.as_bytes()),
    );
    write_private(&dir.path.join("userlist.txt"), auth.as_bytes(), run_as.as_ref())
        .map_err(ProvisionError::io("writing PgBouncer's auth file"))?;
    let config = PgBouncerConfig {
        settings,
        upstream: &login,
        database,
        dir: &dir.path,
    };
    let (child, port) = spawn_on_a_free_port(&binary, &config, run_as.as_ref(), startup_timeout).await?;
    let mut client_url =
        ::url::Url::parse(&database_url(&upstream.client_url, database)).map_err(|e| PoolerError::Upstream {
            reason: format!("the clients' URL does not parse: {e}"),
        })?;
    let _ = client_url.set_host(Some("127.0.0.1"));
    let _ = client_url.set_port(Some(port));
    let mut pooler = Pooler {
        client_url: client_url.to_string(),
        admin_url: format!("postgres://{POOLER_ADMIN_USER}:{admin_password}@127.0.0.1:{port}/{ADMIN_DATABASE}"),
        info: PoolerInfo {
            version: String::new(),
            origin: ServerOrigin::Local { binary },
            host: "127.0.0.1".into(),
            port,
            config: BTreeMap::new(),
        },
        process: Some(child),
        _dir: Some(dir),
    };
    let (version, config) = probe_admin(&pooler.admin_url).await?;
    pooler.info.version = version;
    pooler.info.config = config;
    Ok(pooler)
}

/// A pooler the user runs, for the cell's `database`: its URL pointed at
/// that database, its admin console probed for the facts a result records.
pub async fn connect_external_pooler(external: &ExternalPooler, database: &str) -> Result<Pooler, PoolerError> {
    let client_url = database_url(&external.url, database);
    let parsed: tokio_postgres::Config = external.url.parse().map_err(|e| PoolerError::Connect {
        url: mask_url(&external.url),
        reason: format!("not a PostgreSQL URL: {e}"),
    })?;
    let (host, port) = host_port(&parsed);
    let (version, config) = probe_admin(&external.admin_url).await?;
    Ok(Pooler {
        client_url,
        admin_url: external.admin_url.clone(),
        info: PoolerInfo {
            version,
            origin: ServerOrigin::External,
            host,
            port,
            config,
        },
        process: None,
        _dir: None,
    })
}

/// The SCRAM verifier of `role` in pg_authid, read with the server's admin
/// URL; `None` when it cannot be read (not a superuser) or is not SCRAM.
async fn role_verifier(admin_url: &str, role: &str) -> Option<String> {
    let (client, connection) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls).await.ok()?;
    let task = tokio::spawn(connection);
    let row = client
        .query_opt("SELECT rolpassword FROM pg_authid WHERE rolname = $1", &[&role])
        .await;
    drop(client);
    let _ = task.await;
    let verifier: Option<String> = row.ok()??.get(0);
    verifier.filter(|v| v.starts_with("SCRAM-SHA-256$"))
}

/// A value double-quoted for PgBouncer's auth file (quotes doubled).
fn auth_quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('"', "\"\""))
}

/// Where PgBouncer connects: the server, and the clients' role.
struct UpstreamLogin {
    host: String,
    port: u16,
    user: String,
    password: Option<String>,
}

fn upstream_login(upstream: &PgServer) -> Result<UpstreamLogin, PoolerError> {
    let config: tokio_postgres::Config = upstream.client_url.parse().map_err(|e| PoolerError::Upstream {
        reason: format!("the clients' URL does not parse: {e}"),
    })?;
    let user = config.get_user().ok_or_else(|| PoolerError::Upstream {
        reason: "the clients' URL names no user".into(),
    })?;
    let password = config.get_password().map(|p| String::from_utf8_lossy(p).into_owned());
    Ok(UpstreamLogin {
        host: upstream.host.clone(),
        port: upstream.port,
        user: user.to_string(),
        password,
    })
}

/// The inputs of one pgbouncer.ini.
struct PgBouncerConfig<'a> {
    settings: &'a PoolerSettings,
    upstream: &'a UpstreamLogin,
    database: &'a str,
    dir: &'a Path,
}

impl PgBouncerConfig<'_> {
    /// pgbouncer.ini listening on `port`.
    fn text(&self, port: u16) -> String {
        let PoolerSettings {
            mode,
            pool_size,
            max_client_conn,
            reserve_pool_size,
        } = *self.settings;
        let upstream = self.upstream;
        let dir = self.dir.display();
        format!(
            "[databases]\n\
             {database} = host={host} port={upstream_port} dbname={database}\n\
             \n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = scram-sha-256\n\
             auth_file = {dir}/userlist.txt\n\
             admin_users = {POOLER_ADMIN_USER}\n\
             pool_mode = {mode}\n\
             default_pool_size = {pool_size}\n\
             reserve_pool_size = {reserve_pool_size}\n\
             max_client_conn = {max_client_conn}\n\
             ignore_startup_parameters = extra_float_digits\n\
             pidfile = {dir}/{PGBOUNCER_PID_FILE}\n\
             log_connections = 0\n\
             log_disconnections = 0\n",
            database = self.database,
            host = connstring_quoted(&upstream.host),
            upstream_port = upstream.port,
        )
    }
}

/// A value for a libpq-style connection string in pgbouncer.ini: bare
/// when it is plain (generated passwords, role and host names), else
/// single-quoted with quotes doubled, as PgBouncer's parser takes them.
fn connstring_quoted(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | ':'));
    match plain {
        true => value.to_string(),
        false => format!("'{}'", value.replace('\'', "''")),
    }
}

async fn spawn_on_a_free_port(
    binary: &Path,
    config: &PgBouncerConfig<'_>,
    run_as: Option<&RunAs>,
    timeout: Duration,
) -> Result<(Child, u16), PoolerError> {
    let dir = config.dir;
    let log_path = dir.join("pgbouncer.log");
    let log_path = &log_path;
    let started = on_a_free_port("PgBouncer", None, |port| async move {
        let log_offset = std::fs::metadata(log_path).map(|m| m.len()).unwrap_or(0);
        let ini = dir.join("pgbouncer.ini");
        let _ = std::fs::remove_file(&ini);
        write_private(&ini, config.text(port).as_bytes(), run_as)
            .map_err(ProvisionError::io("writing pgbouncer.ini"))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .map_err(ProvisionError::io("opening PgBouncer's log"))?;
        let mut command = Command::new(binary);
        command
            .arg(&ini)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(ProvisionError::io("opening PgBouncer's log"))?)
            .stderr(log);
        // SIGKILL on contend's death: its clients die with contend, and
        // the server ends its sessions when their sockets close.
        let mut child = process::spawn_tied_to_contend(command, run_as, Signal::SIGKILL)
            .map_err(ProvisionError::io(format!("running {}", binary.display())))?;
        match wait_for_log_line(&mut child, log_path, log_offset, "process up", timeout).await {
            Ok(()) => Ok((child, port)),
            Err(not_ready) => {
                let log_tail = not_ready.to_string();
                process::stop_child(&mut child, Signal::SIGKILL, Duration::from_secs(1));
                let reason = last_lines(&log_tail, 3);
                Err(if says_port_taken(&log_tail) {
                    StartFailure::PortTaken(reason)
                } else {
                    StartFailure::Failed(ProvisionError::ServerStart {
                        server: "PgBouncer",
                        reason,
                    })
                })
            }
        }
    })
    .await;
    started.map_err(|error| match error {
        ProvisionError::ServerStart { reason, .. } => PoolerError::Start { reason },
        other => PoolerError::Provision(other),
    })
}

/// `SHOW VERSION` and the recorded part of `SHOW CONFIG`, on the admin
/// console (simple query protocol only).
async fn probe_admin(admin_url: &str) -> Result<(String, BTreeMap<String, String>), PoolerError> {
    let failed = |reason: String| PoolerError::Connect {
        url: mask_url(admin_url),
        reason,
    };
    let (client, task) = connect_admin(admin_url).await.map_err(failed)?;
    let probed = async {
        let version = first_value(&client.simple_query("SHOW VERSION").await?)
            .unwrap_or_default()
            .to_string();
        let mut config = BTreeMap::new();
        for message in client.simple_query("SHOW CONFIG").await? {
            if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
                if let (Some(key), Some(value)) = (row.get("key"), row.get("value")) {
                    if RECORDED_CONFIG.contains(&key) {
                        config.insert(key.to_string(), value.to_string());
                    }
                }
            }
        }
        Ok::<_, tokio_postgres::Error>((version, config))
    }
    .await;
    drop(client);
    let _ = task.await;
    probed.map_err(|e| failed(format!("the admin console: {e}")))
}

/// Opens a connection to a PgBouncer admin console, spawned; the error is
/// said as what to check.
pub async fn connect_admin(admin_url: &str) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), String> {
    let mut config: tokio_postgres::Config = admin_url.parse().map_err(|e| format!("not a PostgreSQL URL: {e}"))?;
    config.connect_timeout(Duration::from_secs(10));
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| super::explain_pg_connect_error(&e))?;
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok((client, task))
}

/// The first column of the first row.
fn first_value(messages: &[tokio_postgres::SimpleQueryMessage]) -> Option<&str> {
    messages.iter().find_map(|message| match message {
        tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0),
        _ => None,
    })
}

fn host_port(config: &tokio_postgres::Config) -> (String, u16) {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".into(),
    };
    (host, config.get_ports().first().copied().unwrap_or(5432))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_routes_the_cell_database_with_the_settings() {
        let settings = PoolerSettings {
            mode: PoolMode::Transaction,
            pool_size: 5,
            max_client_conn: 40,
            reserve_pool_size: 2,
        };
        let upstream = UpstreamLogin {
            host: "127.0.0.1".into(),
            port: 5433,
            user: "contend_app".into(),
            password: Some("it's".into()),
        };
        let config = PgBouncerConfig {
            settings: &settings,
            upstream: &upstream,
            database: "contend_cell_1",
            dir: Path::new("/tmp/x"),
        };
        let text = config.text(6432);
        assert!(text.contains("contend_cell_1 = host=127.0.0.1 port=5433 dbname=contend_cell_1\n"));
        for line in [
            "listen_port = 6432",
            "pool_mode = transaction",
            "default_pool_size = 5",
            "reserve_pool_size = 2",
            "max_client_conn = 40",
            "auth_type = scram-sha-256",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        assert_eq!(settings.server_connections(), 7);
        assert_eq!(connstring_quoted("db host"), "'db host'");
        assert_eq!(auth_quoted("a\"b"), "\"a\"\"b\"");
    }
}
