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
use std::sync::OnceLock;

use bollard::{ClientVersion, Docker, API_DEFAULT_VERSION};
use hyper::body::Incoming;
use hyper::{Request, Response, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};

/// The daemon's socket path, from `DOCKER_HOST` (unix:// only) or the default.
pub(super) fn daemon_socket() -> Option<PathBuf> {
    match std::env::var("DOCKER_HOST") {
        Ok(host) if !host.is_empty() => host.strip_prefix("unix://").map(PathBuf::from),
        _ => Some(PathBuf::from("/var/run/docker.sock")),
    }
}

/// A bollard client that speaks the daemon's own version, and whether
/// testcontainers can talk to the daemon directly.
pub(super) async fn connect() -> Result<Docker, String> {
    let docker = Docker::connect_with_local_defaults().map_err(|e| format!("no docker client: {e}"))?;
    let docker = tokio::time::timeout(std::time::Duration::from_secs(5), docker.negotiate_version())
        .await
        .map_err(|_| "the docker daemon did not answer within 5 s".to_string())?
        .map_err(|e| format!("the docker daemon did not answer: {e}"))?;
    docker
        .ping()
        .await
        .map_err(|e| format!("the docker daemon did not answer a ping: {e}"))?;
    Ok(docker)
}

/// Makes testcontainers able to talk to the daemon `docker` is connected to:
/// nothing to do when the daemon is new enough, else a version-pinning proxy
/// (started once per process) and `DOCKER_HOST` pointing at it.
pub(super) fn make_testcontainers_compatible(docker: &Docker) -> Result<(), String> {
    let daemon = docker.client_version();
    if version_tuple(&daemon) >= version_tuple(API_DEFAULT_VERSION) {
        return Ok(());
    }
    static PROXY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let proxy = PROXY.get_or_init(|| {
        let socket = daemon_socket()
            .ok_or("DOCKER_HOST is not a unix:// socket; contend can only pin the API version of a local daemon")?;
        start_proxy(&socket, &format!("{}.{}", daemon.major_version, daemon.minor_version))
    });
    let path = proxy.clone()?;
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

fn start_proxy(daemon: &Path, pinned_version: &str) -> Result<PathBuf, String> {
    let path = std::env::temp_dir().join(format!("{PROXY_SOCKET_PREFIX}{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the docker API proxy: {e}"))?;
    let listener = {
        let _guard = runtime.enter();
        UnixListener::bind(&path).map_err(|e| format!("binding {}: {e}", path.display()))?
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
        .map_err(|e| format!("starting the docker API proxy thread: {e}"))?;
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
