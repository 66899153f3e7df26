//! Talking to a docker daemon older than testcontainers expects.
//!
//! testcontainers (through bollard) sends every request as API version 1.53
//! and does not negotiate; a daemon speaking at most an older version
//! (Debian 12's docker.io 20.10 speaks 1.41) refuses all of them with
//! "client version 1.53 is too new". When the daemon is older, contend puts a
//! small proxy on a Unix socket in front of it that rewrites the version in
//! each request path to the daemon's, and points testcontainers at it via
//! `DOCKER_HOST`. The proxy runs on its own thread and runtime so it outlives
//! whichever tokio runtime first asked for docker (each test has its own).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use bollard::{ClientVersion, Docker, API_DEFAULT_VERSION};
use hyper::body::Incoming;
use hyper::{Request, Response, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};

/// Why the docker daemon cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DockerDaemonError {
    /// No client could be made (e.g. a malformed `DOCKER_HOST`).
    #[error("no docker client: {error}")]
    NoClient {
        /// bollard's error.
        error: bollard::errors::Error,
    },
    /// The daemon did not answer the version negotiation in time.
    #[error("the docker daemon did not answer within 5 s")]
    Timeout,
    /// The version negotiation failed.
    #[error("the docker daemon did not answer: {error}")]
    Negotiate {
        /// bollard's error.
        error: bollard::errors::Error,
    },
    /// The daemon did not answer a ping.
    #[error("the docker daemon did not answer a ping: {error}")]
    Ping {
        /// bollard's error.
        error: bollard::errors::Error,
    },
    /// The daemon is too old for testcontainers and the version-pinning
    /// proxy could not be put in front of it.
    #[error(transparent)]
    Proxy(Arc<DockerProxyError>),
}

/// Why the version-pinning proxy could not start. Shared (`Arc`): the
/// outcome of the one attempt per process is kept and returned to every
/// later caller.
#[derive(Debug, thiserror::Error)]
pub enum DockerProxyError {
    /// `DOCKER_HOST` names a TCP daemon: contend only proxies a local socket.
    #[error("DOCKER_HOST is not a unix:// socket; contend can only pin the API version of a local daemon")]
    NotUnixSocket,
    /// The proxy's runtime or thread could not start.
    #[error("starting the docker API proxy{what}: {error}")]
    Start {
        /// "" (its runtime) or " thread".
        what: &'static str,
        /// The OS error.
        error: std::io::Error,
    },
    /// The proxy's socket could not be bound.
    #[error("binding {}: {error}", path.display())]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
}

/// The daemon's socket path, from `DOCKER_HOST` (unix:// only) or the default.
pub(super) fn daemon_socket() -> Option<PathBuf> {
    match std::env::var("DOCKER_HOST") {
        Ok(host) if !host.is_empty() => host.strip_prefix("unix://").map(PathBuf::from),
        _ => Some(PathBuf::from("/var/run/docker.sock")),
    }
}

/// A bollard client that speaks the daemon's own version, and whether
/// testcontainers can talk to the daemon directly.
pub(super) async fn connect() -> Result<Docker, DockerDaemonError> {
    let docker = Docker::connect_with_local_defaults().map_err(|error| DockerDaemonError::NoClient { error })?;
    let docker = tokio::time::timeout(std::time::Duration::from_secs(5), docker.negotiate_version())
        .await
        .map_err(|_| DockerDaemonError::Timeout)?
        .map_err(|error| DockerDaemonError::Negotiate { error })?;
    docker.ping().await.map_err(|error| DockerDaemonError::Ping { error })?;
    Ok(docker)
}

/// Makes testcontainers able to talk to the daemon `docker` is connected to:
/// nothing to do when the daemon is new enough, else a version-pinning proxy
/// (started once per process) and `DOCKER_HOST` pointing at it.
pub(super) fn make_testcontainers_compatible(docker: &Docker) -> Result<(), DockerDaemonError> {
    let daemon = docker.client_version();
    if version_tuple(&daemon) >= version_tuple(API_DEFAULT_VERSION) {
        return Ok(());
    }
    static PROXY: OnceLock<Result<PathBuf, Arc<DockerProxyError>>> = OnceLock::new();
    let proxy = PROXY.get_or_init(|| {
        let socket = daemon_socket().ok_or(DockerProxyError::NotUnixSocket)?;
        start_proxy(&socket, &format!("{}.{}", daemon.major_version, daemon.minor_version)).map_err(Arc::new)
    });
    let path = proxy.clone().map_err(DockerDaemonError::Proxy)?;
    ORIGINAL_DOCKER_HOST.get_or_init(|| std::env::var("DOCKER_HOST").ok());
    // Set once, before testcontainers' first client is made, and never changed.
    std::env::set_var("DOCKER_HOST", format!("unix://{}", path.display()));
    Ok(())
}

static ORIGINAL_DOCKER_HOST: OnceLock<Option<String>> = OnceLock::new();

/// `DOCKER_HOST` as the user set it, before any proxy: for processes that
/// must reach the daemon after contend (and its proxy) are gone.
pub(super) fn users_docker_host() -> Option<String> {
    match ORIGINAL_DOCKER_HOST.get() {
        Some(original) => original.clone(),
        None => std::env::var("DOCKER_HOST").ok(),
    }
}

fn version_tuple(version: &ClientVersion) -> (usize, usize) {
    (version.major_version, version.minor_version)
}

/// Prefix of the proxy's socket file under the temp dir; the pid follows.
pub(super) const PROXY_SOCKET_PREFIX: &str = "contend-docker-";

fn start_proxy(daemon: &Path, pinned_version: &str) -> Result<PathBuf, DockerProxyError> {
    // The random part: the same pid can be another live contend's in
    // another pid namespace sharing this temp dir.
    let path = std::env::temp_dir().join(format!(
        "{PROXY_SOCKET_PREFIX}{}-{}.sock",
        std::process::id(),
        &super::secret::generate_password()[..8]
    ));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| DockerProxyError::Start { what: "", error })?;
    let listener = {
        let _guard = runtime.enter();
        UnixListener::bind(&path).map_err(|error| DockerProxyError::Bind {
            path: path.clone(),
            error,
        })?
    };
    let daemon = daemon.to_path_buf();
    let pinned_version = pinned_version.to_string();
    std::thread::Builder::new()
        .name("contend-docker-api-proxy".into())
        .spawn(move || {
            runtime.block_on(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let daemon = daemon.clone();
                    let pinned_version = pinned_version.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |request| {
                            forward(request, daemon.clone(), pinned_version.clone())
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            })
        })
        .map_err(|error| DockerProxyError::Start { what: " thread", error })?;
    Ok(path)
}

async fn forward(
    mut request: Request<Incoming>,
    daemon: PathBuf,
    pinned_version: String,
) -> Result<Response<Incoming>, std::io::Error> {
    let rewritten = pin_version(request.uri(), &pinned_version);
    *request.uri_mut() = rewritten;
    let stream = UnixStream::connect(&daemon).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(connection);
    sender.send_request(request).await.map_err(std::io::Error::other)
}

/// `/v1.53/containers/json?all=1` → `/v1.41/containers/json?all=1`.
fn pin_version(uri: &Uri, version: &str) -> Uri {
    let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
    let rewritten = match path_and_query.strip_prefix("/v") {
        Some(rest) => match rest.find('/') {
            Some(slash) if rest[..slash].chars().all(|c| c.is_ascii_digit() || c == '.') => {
                format!("/v{version}{}", &rest[slash..])
            }
            _ => path_and_query.to_string(),
        },
        None => path_and_query.to_string(),
    };
    rewritten.parse().unwrap_or_else(|_| uri.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_only_the_version_segment() {
        let uri: Uri = "/v1.53/containers/json?all=true".parse().unwrap();
        assert_eq!(pin_version(&uri, "1.41").to_string(), "/v1.41/containers/json?all=true");
        let uri: Uri = "/_ping".parse().unwrap();
        assert_eq!(pin_version(&uri, "1.41").to_string(), "/_ping");
        let uri: Uri = "/volumes/x".parse().unwrap();
        assert_eq!(pin_version(&uri, "1.41").to_string(), "/volumes/x");
    }
}
