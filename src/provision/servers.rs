//! Running servers ([`Servers`]): what a result records about each
//! ([`PgServer`], [`RedisServer`], [`ServerOrigin`]), changing
//! `max_connections`, recovering PostgreSQL after it died under a cell, and
//! shutting down what contend started; [`provision`] gets them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::choose::choose_backend;
use super::probe::{probe_postgres, with_client_role};
use super::{docker, external, local, mask_url, remove_stale_local_runs, Backend, ProvisionError, ProvisionOptions};

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
    /// The Redis server, when one was started (the cells use Redis) or
    /// given.
    pub redis: Option<RedisServer>,
    /// The backend serving.
    pub backend: Backend,
    /// Why that backend was chosen (auto) or that it was asked for.
    pub backend_reason: String,
    /// The user's PgBouncer in front of this server (`--pooler-url`), for
    /// cells that go through it; set by the caller after provisioning.
    /// Default `None`.
    pub external_pooler: Option<super::ExternalPooler>,
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
    /// session and recover by itself) is waited for, and a local one that
    /// still does not answer (stopped, hung) is restarted; a local
    /// postmaster that is gone is started again on its data directory, with the same
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
                None if wait_until_answers(&self.postgres, UNRESPONSIVE_WAIT).await => {
                    "the postmaster survived and recovered by itself"
                }
                None => {
                    let postgres = servers.restart_unresponsive_postgres().await?;
                    self.postgres = with_client_role(postgres).await?;
                    "PostgreSQL did not answer: stopped and started again on its data directory (crash recovery)"
                }
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

/// How long a local postmaster that still runs after a failed cell gets to
/// answer again (a crashed backend's recovery takes a second or two) before
/// it is taken for hung and restarted.
const UNRESPONSIVE_WAIT: Duration = Duration::from_secs(15);

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
            (with_client_role(pg).await?, redis, Owned::Local(Box::new(servers)))
        }
        Backend::Docker => {
            let (servers, pg, redis) = docker::DockerServers::start(options).await?;
            (with_client_role(pg).await?, redis, Owned::Docker(Box::new(servers)))
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
        external_pooler: None,
        owned,
    })
}
