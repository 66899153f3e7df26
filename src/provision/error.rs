//! Provisioning's error type: setup problems a user fixes, each saying how.

use std::path::PathBuf;

use super::DockerDaemonError;

/// Provisioning failures: setup problems a user fixes, each saying how.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// No initdb/postgres found.
    #[error("no PostgreSQL server binaries found (looked in {searched}): {how_to_get}, or pass --pg-bin DIR, or use --backend docker")]
    NoServerBinaries {
        /// Places searched, comma-separated.
        searched: String,
        /// How to get them on this system ([`super::install::how_to_get`]).
        how_to_get: String,
    },
    /// `--pg-bin` names a directory without the binaries.
    #[error("--pg-bin {dir}: no {missing} there; pass the directory holding initdb and postgres (e.g. /usr/lib/postgresql/15/bin)")]
    BadPgBin {
        /// The directory given.
        dir: PathBuf,
        /// The binary that is missing.
        missing: &'static str,
    },
    /// No redis-server, and the cells use Redis.
    #[error("redis-server not found on PATH, and Redis is needed (a cache, the redis-gate strategy, or `contend provision`): {how_to_get}; or use --backend docker, or --backend external with --redis-url")]
    NoRedisServer {
        /// How to get it on this system ([`super::install::how_to_get`]).
        how_to_get: String,
    },
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
    #[error("docker is not usable: {error}")]
    DockerUnavailable {
        /// What the daemon (or its absence) said.
        error: DockerDaemonError,
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

// Not `#[from]`: the daemon's words are already in the message, and a
// `source` would make `{:#}` repeat them.
impl From<DockerDaemonError> for ProvisionError {
    fn from(error: DockerDaemonError) -> Self {
        ProvisionError::DockerUnavailable { error }
    }
}
