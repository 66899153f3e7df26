//! Getting PostgreSQL and Redis servers (and a PgBouncer in front of a
//! cell's database): started with the settings a cell needs, reachable,
//! and gone afterwards.
//!
//! One interface, [`provision`] → [`Servers`], over three backends:
//! `local` (initdb and postgres/redis-server binaries on this machine),
//! `docker` (testcontainers) and `external` (URLs the user gives), chosen by
//! `auto` when not named. This module owns server lifetimes and the facts a
//! result must record about a server (version, image, settings); it never
//! runs a workload and never formats a report.

mod choose;
mod docker;
mod docker_api;
mod error;
mod external;
mod install;
mod local;
mod options;
mod owner;
mod pgbouncer;
mod ports;
mod probe;
pub(crate) mod process;
mod secret;
mod servers;
mod stale;
pub mod tls;
mod url;

pub use choose::{Backend, BackendChoice};
pub use docker::{DockerStatus, DEFAULT_PG_IMAGE, DEFAULT_REDIS_IMAGE};
pub use docker_api::{DockerDaemonError, DockerProxyError};
pub use error::ProvisionError;
pub use install::{how_to_get, install_command, ServerBinary};
pub use local::find_pg_bin_dir;
pub use options::{validate_max_connections, ProvisionOptions, MAX_CONNECTIONS_LIMIT};
pub use owner::{host_identity, process_start_time};
pub use pgbouncer::{
    connect_admin, connect_external_pooler, find_pgbouncer, start_pgbouncer, CellPooler, ExternalPooler, PoolMode,
    Pooler, PoolerError, PoolerInfo, PoolerSettings,
};
pub(crate) use probe::explain_pg_connect_error;
pub use probe::CLIENT_ROLE;
pub(crate) use probe::{probe_postgres, probe_redis};
pub use secret::{generate_password, mask_url};
pub use servers::{provision, PgServer, Recovery, RedisServer, ServerOrigin, Servers};
pub use stale::remove_stale_local_runs;
pub use url::database_url;
