//! Why exec could not run a cell, a sweep or a migration, each with the
//! context a user needs; and which of those mean the PostgreSQL server
//! stopped answering ([`RunError::is_connection_loss`]), so a sweep can
//! record the cell as failed and bring the server back instead of stopping.
//!
//! What a cell measured is never an error. PostgreSQL errors are shown on
//! one line (message and SQLSTATE), not as a chain: the server's DETAIL and
//! HINT lines would break the binary's one-line errors.

use std::path::PathBuf;

use crate::client::{PoolError, RedisError};
use crate::driver::DriveError;
use crate::measure::SamplerError;
use crate::network::ProxyError;
use crate::provision::tls::TlsError;
use crate::provision::{PoolerError, ProvisionError};
use crate::record::ServerLoss;
use crate::results::ResultsError;
use crate::workload::{MigrationError, WorkloadError};

use super::pg_error::{connection_lost, pg_reason};
use super::template::TemplateError;

/// Setup failures of a cell, a sweep or a migration run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Building the workload, or reading the cell's data for it.
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    /// Loading, copying, granting or dropping data.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// A connection or query of contend's own (not the clients').
    #[error("{what}: {}", pg_reason(.error))]
    Database {
        /// What contend was doing, e.g. "connecting to the cell database".
        what: &'static str,
        /// What the server or the socket said.
        error: tokio_postgres::Error,
    },
    /// A URL's TLS settings cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Redis could not be reached.
    #[error(transparent)]
    Redis(#[from] RedisError),
    /// The workload needs Redis and the servers have none.
    #[error("this workload needs Redis (a cache or a gate): use a local or docker backend, or pass --redis-url")]
    NoRedis,
    /// An application pool could not be built.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// The network proxy (`--network-rtt`) could not start.
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    /// The cell's pooler could not be started or reached.
    #[error(transparent)]
    Pooler(#[from] PoolerError),
    /// A cell goes through the user's pooler and none was given.
    #[error("--pooler external needs --pooler-url and --pooler-admin-url")]
    NoExternalPooler,
    /// The server sampler could not start.
    #[error(transparent)]
    Sampler(#[from] SamplerError),
    /// The load could not be driven.
    #[error(transparent)]
    Drive(#[from] DriveError),
    /// `--migrated` with a workload that has no migration.
    #[error("--migrated: this workload ships no migration (goal-count and wallet-transfer do)")]
    NoMigration,
    /// The workload's migration does not parse.
    #[error(transparent)]
    Migration(#[from] MigrationError),
    /// A statement of the workload's migration failed under `--migrated`.
    #[error("--migrated: {file} line {line}: {}", pg_reason(.error))]
    MigratedStatement {
        /// The migration's file name.
        file: &'static str,
        /// The statement's first line in it, from 1.
        line: usize,
        /// What the server said.
        error: tokio_postgres::Error,
    },
    /// The PostgreSQL server went away during the cell: its connections
    /// closed under it. Nothing of the cell is a measurement.
    #[error("PostgreSQL went away {:.1} s into the cell: {}", .0.after_s, .0.reason)]
    ServerLost(Box<ServerLoss>),
    /// The server stopped answering: the cell passed its deadline (the
    /// grace past warmup + duration, or past a setup step, with nothing
    /// finishing) and was abandoned. Nothing of it is a measurement.
    #[error(
        "the server stopped answering after {after_s:.0} s: nothing finished for {grace_s:.0} s (--cell-grace) past the cell's window or step; raise --cell-grace if it is only slow"
    )]
    Unresponsive {
        /// Seconds from the cell's start until it was abandoned.
        after_s: f64,
        /// The grace, seconds.
        grace_s: f64,
    },
    /// A task of contend panicked during the cell (a bug, not a
    /// measurement): the cell is failed, never recorded as whole.
    #[error("contend panicked during the cell: {message}; this is a bug, please report it")]
    Panicked {
        /// The panic's message.
        message: String,
    },
    /// PostgreSQL went away under a cell of a sweep and did not come back.
    #[error(
        "PostgreSQL went away under a cell and could not be brought back ({error}); the cell is in {}; continue with --resume {} once the server runs",
        failed.display(),
        dir.display()
    )]
    NotRecovered {
        /// Why recovery failed.
        error: ProvisionError,
        /// The failed.jsonl the cell was appended to.
        failed: PathBuf,
        /// The run directory to resume.
        dir: PathBuf,
    },
    /// Restarting the server with another `max_connections`.
    #[error(transparent)]
    Provision(#[from] ProvisionError),
    /// Reading or writing the run directory (what was written before is
    /// intact).
    #[error(transparent)]
    Results(#[from] ResultsError),
}

impl RunError {
    /// The panic's message when a task of the cell panicked (a client, a
    /// driver thread, or the cell's own steps).
    pub fn panic_message(&self) -> Option<&str> {
        match self {
            RunError::Panicked { message } | RunError::Drive(DriveError::Panicked { message }) => Some(message),
            _ => None,
        }
    }

    /// Whether this error means the PostgreSQL server stopped answering:
    /// the server lost under the load (or under the cell's setup, as its
    /// watchdog saw it), or a connection of contend's own closed, reset,
    /// refused, or ended by a server shutting down or restarting. A sweep
    /// records such a cell as failed and brings the server back.
    pub fn is_connection_loss(&self) -> bool {
        match self {
            RunError::ServerLost(_) | RunError::Unresponsive { .. } => true,
            RunError::Template(error) => error.is_connection_loss(),
            RunError::Database { error, .. } | RunError::MigratedStatement { error, .. } => connection_lost(error),
            RunError::Workload(WorkloadError::CellData { source, .. }) => connection_lost(source),
            _ => false,
        }
    }
}
