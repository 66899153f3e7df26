//! Getting PostgreSQL and Redis servers: started with the settings a cell
//! needs, reachable, and gone afterwards.
//!
//! One interface, [`provision`] → [`Servers`], over three backends:
//! `local` (initdb and postgres/redis-server binaries on this machine),
//! `docker` (testcontainers) and `external` (URLs the user gives), chosen by
//! `auto` when not named. This module owns server lifetimes and the facts a
//! result must record about a server (version, image, settings); it never
//! runs a workload and never formats a report.

mod docker;
mod docker_api;
mod external;
mod local;
mod ports;
pub(crate) mod process;
mod secret;
mod stale;
mod url;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use docker::{DockerStatus, DEFAULT_PG_IMAGE, DEFAULT_REDIS_IMAGE};
pub use local::find_pg_bin_dir;
pub use secret::{generate_password, mask_url};
pub use stale::remove_stale_local_runs;
pub use url::database_url;

/// PostgreSQL's upper bound on `max_connections` (MAX_BACKENDS, 2^18 - 1).
pub const MAX_CONNECTIONS_LIMIT: u32 = 262_143;

/// Settings contend always applies to servers it starts, before the user's
/// `--pg-setting`s (which win).
const BASE_SETTINGS: &[(&str, &str)] = &[("shared_preload_libraries", "pg_stat_statements")];

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
    "max_parallel_workers_per_gather",
];

/// Which way to get servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// Docker when a daemon answers and the images are present or can be
    /// pulled, else local binaries, else an error naming what to install.
    Auto,
    /// A throwaway cluster from the server binaries on this machine.
    Local,
    /// Containers through testcontainers.
    Docker,
    /// Servers the user already runs, given by URL.
    External,
}

/// The backend actually serving a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// initdb + postgres and redis-server spawned by contend.
    Local,
    /// Containers started by contend.
    Docker,
    /// Servers contend does not own.
    External,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Local => "local",
            Backend::Docker => "docker",
            Backend::External => "external",
        })
    }
}

/// Everything provisioning needs, validated, with no I/O done yet.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProvisionOptions {
    /// Backend to use. Default: auto.
    pub backend: BackendChoice,
    /// `max_connections` for servers contend starts; `None` keeps the
    /// server's default (100). Refused for external servers unless it equals
    /// what the server already has.
    pub max_connections: Option<u32>,
    /// Extra server settings (`-c key=value`), applied after contend's own.
    pub pg_settings: Vec<(String, String)>,
    /// Directory holding `initdb` and `postgres` (local backend). Default:
    /// found on PATH, through pg_config, or under /usr/lib/postgresql/*/bin.
    pub pg_bin: Option<PathBuf>,
    /// Port to try first for PostgreSQL (local and docker); another free one
    /// is used, and said, when it is taken. Default: any free port.
    pub pg_port: Option<u16>,
    /// Port to try first for Redis, as `pg_port`.
    pub redis_port: Option<u16>,
    /// PostgreSQL image (docker backend). Default: [`DEFAULT_PG_IMAGE`].
    pub pg_image: String,
    /// Redis image (docker backend). Default: [`DEFAULT_REDIS_IMAGE`].
    pub redis_image: String,
    /// Whether `pg_image` / `redis_image` were chosen by the user (then a
    /// missing image is an error rather than a fallback to a stand-in).
    pub images_chosen: bool,
    /// External PostgreSQL URL (external backend).
    pub database_url: Option<String>,
    /// External Redis URL (external backend); without it, no Redis.
    pub redis_url: Option<String>,
    /// Time allowed for a server to accept connections. Default: 60 s.
    pub startup_timeout: Duration,
}

impl Default for ProvisionOptions {
    fn default() -> Self {
        ProvisionOptions {
            backend: BackendChoice::Auto,
            max_connections: None,
            pg_settings: Vec::new(),
            pg_bin: None,
            pg_port: None,
            redis_port: None,
            pg_image: DEFAULT_PG_IMAGE.to_string(),
            redis_image: DEFAULT_REDIS_IMAGE.to_string(),
            images_chosen: false,
            database_url: None,
            redis_url: None,
            startup_timeout: Duration::from_secs(60),
        }
    }
}

impl ProvisionOptions {
    /// Checks what can be checked without touching a server.
    pub fn validate(&self) -> Result<(), ProvisionError> {
        if let Some(requested) = self.max_connections {
            validate_max_connections(requested, &self.pg_settings)?;
        }
        for (key, _) in &self.pg_settings {
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
                return Err(ProvisionError::InvalidSetting {
                    setting: key.clone(),
                    reason: "a setting name is letters, digits, `_` and `.`".into(),
                });
            }
            if key == "max_connections" {
                return Err(ProvisionError::InvalidSetting {
                    setting: key.clone(),
                    reason: "use --max-connections, which contend tracks and validates".into(),
                });
            }
        }
        if self.backend == BackendChoice::External && self.database_url.is_none() {
            return Err(ProvisionError::MissingUrl);
        }
        Ok(())
    }

    /// Settings passed to servers contend starts: contend's base settings,
    /// `max_connections`, then the user's.
    fn server_settings(&self) -> Vec<(String, String)> {
        let mut settings: Vec<(String, String)> = BASE_SETTINGS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if let Some(n) = self.max_connections {
            settings.push(("max_connections".into(), n.to_string()));
        }
        settings.extend(self.pg_settings.iter().cloned());
        settings
    }
}

/// `max_connections` must leave room for ordinary connections after the
/// superuser reservation, and fit PostgreSQL's limit.
pub fn validate_max_connections(requested: u32, pg_settings: &[(String, String)]) -> Result<(), ProvisionError> {
    let value = |name: &str, default: u32| {
        pg_settings
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.parse::<u32>().ok())
            .unwrap_or(default)
    };
    let reserved = value("superuser_reserved_connections", 3) + value("reserved_connections", 0);
    if requested == 0 {
        return Err(ProvisionError::InvalidMaxConnections {
            requested,
            reason: "it must be at least 1; pick a value above superuser_reserved_connections (3 by default)".into(),
        });
    }
    if requested > MAX_CONNECTIONS_LIMIT {
        return Err(ProvisionError::InvalidMaxConnections {
            requested,
            reason: format!("PostgreSQL allows at most {MAX_CONNECTIONS_LIMIT}"),
        });
    }
    if requested <= reserved {
        return Err(ProvisionError::InvalidMaxConnections {
            requested,
            reason: format!(
                "it must exceed the {reserved} connections reserved for superusers, or no ordinary client could connect"
            ),
        });
    }
    Ok(())
}

/// Provisioning failures: setup problems a user fixes, each saying how.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// No initdb/postgres found.
    #[error("no PostgreSQL server binaries found (looked in {searched}): install them (apt-get install -y postgresql) or pass --pg-bin DIR")]
    NoServerBinaries {
        /// Places searched, comma-separated.
        searched: String,
    },
    /// `--pg-bin` names a directory without the binaries.
    #[error("--pg-bin {dir}: no {missing} there; pass the directory holding initdb and postgres (e.g. /usr/lib/postgresql/15/bin)")]
    BadPgBin {
        /// The directory given.
        dir: PathBuf,
        /// The binary that is missing.
        missing: &'static str,
    },
    /// No redis-server.
    #[error("redis-server not found on PATH: install it (apt-get install -y redis-server), or use --backend docker or --redis-url")]
    NoRedisServer,
    /// `max_connections` the server cannot take.
    #[error("max_connections {requested} is not usable: {reason}")]
    InvalidMaxConnections {
        /// Value asked for.
        requested: u32,
        /// Why not, and what to pick.
        reason: String,
    },
    /// A `--pg-setting` contend refuses.
    #[error("--pg-setting {setting}: {reason}")]
    InvalidSetting {
        /// The setting's name.
        setting: String,
        /// Why it is refused.
        reason: String,
    },
    /// External backend without a URL.
    #[error("the external backend needs a server: pass --database-url URL or set DATABASE_URL")]
    MissingUrl,
    /// Asked to change `max_connections` on a server contend does not own.
    #[error("the external server has max_connections = {actual}; contend cannot change it to {requested} because that needs a server restart contend does not own: drop --max-connections, or restart the server with max_connections = {requested}")]
    ExternalMaxConnections {
        /// Value asked for.
        requested: u32,
        /// Value the server has.
        actual: u32,
    },
    /// A server that should answer does not.
    #[error("cannot connect to {server} at {url}: {reason}")]
    Connect {
        /// "PostgreSQL" or "Redis".
        server: &'static str,
        /// The URL, password masked.
        url: String,
        /// What went wrong and what to check.
        reason: String,
    },
    /// initdb failed.
    #[error("initdb failed: {output}")]
    Initdb {
        /// The last lines initdb printed.
        output: String,
    },
    /// A server process exited or never answered.
    #[error("{server} did not start: {reason}")]
    ServerStart {
        /// "PostgreSQL" or "Redis".
        server: &'static str,
        /// The server's own last log lines, or the timeout.
        reason: String,
    },
    /// The docker daemon did not answer.
    #[error("docker is not usable: {reason}")]
    DockerUnavailable {
        /// What the daemon (or its absence) said.
        reason: String,
    },
    /// An image is neither present nor pullable.
    #[error("image {image} is not available: {reason}")]
    ImageUnavailable {
        /// The image reference.
        image: String,
        /// Why, and what to do.
        reason: String,
    },
    /// A container failed to start or be removed.
    #[error("container for {image}: {reason}")]
    Container {
        /// The image reference.
        image: String,
        /// What docker said.
        reason: String,
    },
    /// Auto found no usable backend.
    #[error("no backend can serve: docker: {docker}; local: {local}")]
    NoBackend {
        /// Why docker cannot serve.
        docker: String,
        /// Why local cannot serve.
        local: String,
    },
    /// Filesystem or process trouble.
    #[error("{context}: {source}")]
    Io {
        /// What contend was doing.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl ProvisionError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ProvisionError {
        let context = context.into();
        move |source| ProvisionError::Io { context, source }
    }
}

/// A PostgreSQL server ready for connections, and what a result must record
/// about it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PgServer {
    /// Connection URL, password included: pass it to clients, never print it
    /// (use [`PgServer::masked_url`]). Never written to results, so empty
    /// in a record read back.
    #[serde(skip_serializing, default)]
    pub url: String,
    /// URL the benchmark's clients connect with, password included (never
    /// written to results). On a server contend started it names
    /// [`CLIENT_ROLE`], a role that is not a superuser, so
    /// `superuser_reserved_connections` keeps the clients out of the last
    /// slots as it keeps an application out; on an external server it is
    /// the URL given.
    #[serde(skip_serializing, default)]
    pub client_url: String,
    /// The role clients connect as on a server contend started; `None`:
    /// the external URL's own user.
    #[serde(default)]
    pub client_role: Option<String>,
    /// Host contend connects to.
    pub host: String,
    /// Port contend connects to.
    pub port: u16,
    /// `max_connections` as the server reports it.
    pub max_connections: u32,
    /// `superuser_reserved_connections` (+ `reserved_connections` on 16+).
    pub reserved_connections: u32,
    /// `server_version`, e.g. "15.18 (Debian 15.18-0+deb12u1)".
    pub version: String,
    /// Major version number, e.g. 15.
    pub version_num: u32,
    /// Settings that shape results ([`RECORDED_SETTINGS`]), as the server
    /// reports them.
    pub settings: BTreeMap<String, String>,
    /// Where the server came from.
    pub origin: ServerOrigin,
}

impl PgServer {
    /// The URL with its password masked, for messages and results.
    pub fn masked_url(&self) -> String {
        mask_url(&self.url)
    }
}

/// A Redis server ready for connections.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RedisServer {
    /// Connection URL, password included; never print it (see
    /// [`RedisServer::masked_url`]). Never written to results, so empty in
    /// a record read back.
    #[serde(skip_serializing, default)]
    pub url: String,
    /// `redis_version` from INFO.
    pub version: String,
    /// Where the server came from.
    pub origin: ServerOrigin,
}

impl RedisServer {
    /// The URL with its password masked.
    pub fn masked_url(&self) -> String {
        mask_url(&self.url)
    }
}

/// Where a server came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "lowercase")]
pub enum ServerOrigin {
    /// Spawned from binaries on this machine.
    Local {
        /// The binary that runs the server.
        binary: PathBuf,
    },
    /// A container contend started.
    Docker {
        /// Image reference as run.
        image: String,
        /// Image id (sha256:…).
        image_id: String,
        /// Whether it is a local stand-in for an official image.
        stand_in: bool,
    },
    /// A server contend does not own.
    External,
}

/// How PostgreSQL was brought back after it died under a cell.
#[derive(Debug, Clone)]
pub struct Recovery {
    /// What was done, in words.
    pub how: String,
    /// From the decision to recover until the server answered.
    pub took: Duration,
}

/// Running servers. Dropping it stops whatever contend started; prefer
/// [`Servers::shutdown`], which waits for the servers to be gone.
pub struct Servers {
    /// The PostgreSQL server.
    pub postgres: PgServer,
    /// The Redis server, when one was started or given.
    pub redis: Option<RedisServer>,
    /// The backend serving.
    pub backend: Backend,
    /// Why that backend was chosen (auto) or that it was asked for.
    pub backend_reason: String,
    owned: Owned,
}

// Boxed: both are large (a testcontainers handle carries its whole request),
// and `Servers` is moved around.
enum Owned {
    Local(Box<local::LocalServers>),
    Docker(Box<docker::DockerServers>),
    External,
}

impl Servers {
    /// Restarts PostgreSQL with a new `max_connections`, keeping its data
    /// (local) or starting a fresh container (docker); refused for external
    /// servers. Returns how long the change took, until the server accepted
    /// connections again.
    pub async fn set_max_connections(&mut self, max_connections: u32) -> Result<Duration, ProvisionError> {
        let started = Instant::now();
        match &mut self.owned {
            Owned::Local(servers) => {
                self.postgres = with_client_role(servers.restart_postgres(max_connections).await?).await?;
            }
            Owned::Docker(servers) => {
                self.postgres = with_client_role(servers.replace_postgres(max_connections).await?).await?;
            }
            Owned::External => {
                if self.postgres.max_connections != max_connections {
                    return Err(ProvisionError::ExternalMaxConnections {
                        requested: max_connections,
                        actual: self.postgres.max_connections,
                    });
                }
            }
        }
        Ok(started.elapsed())
    }

    /// Whether PostgreSQL accepts a connection and answers within a few
    /// seconds.
    pub async fn postgres_answers(&self) -> bool {
        answers(&self.postgres).await
    }

    /// Brings PostgreSQL back after it died under a cell. A server process
    /// that still runs (a crashed backend makes the postmaster end every
    /// session and recover by itself) is waited for; a local postmaster
    /// that is gone is started again on its data directory, with the same
    /// settings (crash recovery replays the WAL; the template survives); a
    /// docker server gets a fresh container (the next cell loads the
    /// template again); an external server is waited for. Returns what was
    /// done and how long it took, until the server answered.
    pub async fn recover_postgres(&mut self) -> Result<Recovery, ProvisionError> {
        let started = Instant::now();
        let how = match &mut self.owned {
            Owned::Local(servers) => match servers.restart_dead_postgres().await? {
                Some(postgres) => {
                    self.postgres = with_client_role(postgres).await?;
                    "PostgreSQL started again on its data directory (crash recovery)"
                }
                None => "the postmaster survived and recovered by itself",
            },
            Owned::Docker(servers) => {
                let running = servers.postgres_running().await;
                if running && wait_until_answers(&self.postgres, Duration::from_secs(30)).await {
                    "the container survived and PostgreSQL recovered by itself"
                } else {
                    let fresh = servers.replace_postgres(self.postgres.max_connections).await?;
                    self.postgres = with_client_role(fresh).await?;
                    "PostgreSQL replaced by a fresh container"
                }
            }
            Owned::External => "the external server came back",
        };
        if !wait_until_answers(&self.postgres, self.startup_timeout()).await {
            return Err(ProvisionError::Connect {
                server: "PostgreSQL",
                url: self.postgres.masked_url(),
                reason: format!(
                    "it went away during a cell and did not answer again within {} s",
                    self.startup_timeout().as_secs()
                ),
            });
        }
        Ok(Recovery {
            how: how.to_string(),
            took: started.elapsed(),
        })
    }

    fn startup_timeout(&self) -> Duration {
        match &self.owned {
            Owned::Local(servers) => servers.startup_timeout(),
            Owned::Docker(servers) => servers.startup_timeout(),
            Owned::External => Duration::from_secs(60),
        }
    }

    /// Stops what contend started and removes its files or containers.
    pub async fn shutdown(self) {
        match self.owned {
            Owned::Local(servers) => servers.shutdown().await,
            Owned::Docker(servers) => servers.shutdown().await,
            Owned::External => {}
        }
    }
}

async fn answers(postgres: &PgServer) -> bool {
    let probe = probe_postgres(&postgres.url, postgres.origin.clone());
    matches!(tokio::time::timeout(Duration::from_secs(5), probe).await, Ok(Ok(_)))
}

async fn wait_until_answers(postgres: &PgServer, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if answers(postgres).await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Gets servers as `options` ask, saying on stderr which backend serves and
/// why. Stale leftovers of earlier runs that were killed are removed first.
pub async fn provision(options: &ProvisionOptions) -> Result<Servers, ProvisionError> {
    options.validate()?;
    for removed in remove_stale_local_runs() {
        eprintln!("contend: {removed}");
    }
    let (backend, reason) = choose_backend(options).await?;
    eprintln!("contend: backend {backend}: {reason}");
    let (postgres, redis, owned) = match backend {
        Backend::Local => {
            let (servers, pg, redis) = local::LocalServers::start(options).await?;
            (
                with_client_role(pg).await?,
                Some(redis),
                Owned::Local(Box::new(servers)),
            )
        }
        Backend::Docker => {
            let (servers, pg, redis) = docker::DockerServers::start(options).await?;
            (
                with_client_role(pg).await?,
                Some(redis),
                Owned::Docker(Box::new(servers)),
            )
        }
        Backend::External => {
            let (pg, redis) = external::connect(options).await?;
            (pg, redis, Owned::External)
        }
    };
    Ok(Servers {
        postgres,
        redis,
        backend,
        backend_reason: reason,
        owned,
    })
}

async fn choose_backend(options: &ProvisionOptions) -> Result<(Backend, String), ProvisionError> {
    match options.backend {
        BackendChoice::Local => Ok((Backend::Local, "asked for with --backend local".into())),
        BackendChoice::Docker => Ok((Backend::Docker, "asked for with --backend docker".into())),
        BackendChoice::External => Ok((Backend::External, "asked for with --backend external".into())),
        BackendChoice::Auto => {
            if options.database_url.is_some() {
                return Ok((Backend::External, "a database URL was given".into()));
            }
            let docker_reason = match docker::DockerStatus::probe(options).await {
                DockerStatus::Usable { pg_image, redis_image } => {
                    return Ok((
                        Backend::Docker,
                        format!("the docker daemon answers and {pg_image} and {redis_image} are available"),
                    ));
                }
                DockerStatus::Unusable(reason) => reason,
            };
            let local_reason = match (local::find_pg_bin_dir(None), local::find_redis_server()) {
                (Ok(dir), Ok(_)) => {
                    return Ok((
                        Backend::Local,
                        format!(
                            "docker cannot serve ({docker_reason}); using the server binaries in {}",
                            dir.display()
                        ),
                    ));
                }
                (Err(e), _) => e.to_string(),
                (_, Err(e)) => e.to_string(),
            };
            Err(ProvisionError::NoBackend {
                docker: docker_reason,
                local: local_reason,
            })
        }
    }
}

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
    let (client, connection) = tokio_postgres::connect(&postgres.url, tokio_postgres::NoTls)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let connection_task = tokio::spawn(connection);
    // Alphanumeric: safe inside a literal (utility statements take no
    // parameters).
    let password = generate_password();
    let created = client
        .batch_execute(&format!(
            "DO $$BEGIN
               IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{CLIENT_ROLE}') THEN
                 ALTER ROLE {CLIENT_ROLE} WITH LOGIN NOSUPERUSER PASSWORD '{password}';
               ELSE
                 CREATE ROLE {CLIENT_ROLE} WITH LOGIN NOSUPERUSER PASSWORD '{password}';
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
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| connect_error(format!("not a valid URL ({e})")))?;
    let (client, connection) = tokio::time::timeout(Duration::from_secs(10), config.connect(tokio_postgres::NoTls))
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
    let (host, port) = config_host_port(&config);
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

    fn setting(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn max_connections_bounds() {
        assert!(validate_max_connections(0, &[]).is_err());
        assert!(validate_max_connections(3, &[]).is_err());
        assert!(validate_max_connections(4, &[]).is_ok());
        assert!(validate_max_connections(MAX_CONNECTIONS_LIMIT, &[]).is_ok());
        assert!(validate_max_connections(MAX_CONNECTIONS_LIMIT + 1, &[]).is_err());
    }

    #[test]
    fn max_connections_respects_reserved_settings() {
        let settings = [setting("superuser_reserved_connections", "10")];
        assert!(validate_max_connections(10, &settings).is_err());
        assert!(validate_max_connections(11, &settings).is_ok());
        let settings = [setting("superuser_reserved_connections", "0")];
        assert!(validate_max_connections(1, &settings).is_ok());
        let settings = [setting("reserved_connections", "5")];
        assert!(validate_max_connections(8, &settings).is_err());
    }

    #[test]
    fn max_connections_is_not_a_pg_setting() {
        let options = ProvisionOptions {
            pg_settings: vec![setting("max_connections", "10")],
            ..Default::default()
        };
        assert!(matches!(options.validate(), Err(ProvisionError::InvalidSetting { .. })));
    }

    #[test]
    fn units_render_like_postgresql_conf() {
        assert_eq!(with_unit("16384", Some("8kB")), "128MB");
        assert_eq!(with_unit("4096", Some("kB")), "4MB");
        assert_eq!(with_unit("on", None), "on");
        assert_eq!(with_unit("300", Some("s")), "300s");
    }
}
