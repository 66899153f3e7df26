//! Which backend serves: the one asked for, or for `auto` the first of
//! external (a URL was given; one from `DATABASE_URL` is named, masked),
//! docker (the daemon answers and the images needed are available) and
//! local (the server binaries needed are installed), with the reason said
//! on stderr. Decides only; starting servers is the backends'.

use serde::{Deserialize, Serialize};

use super::docker::{self, DockerStatus};
use super::local;
use super::{mask_url, ProvisionError, ProvisionOptions};

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

/// The backend to use for `options`, and why (said on stderr by
/// [`super::provision`]).
pub(super) async fn choose_backend(options: &ProvisionOptions) -> Result<(Backend, String), ProvisionError> {
    match options.backend {
        BackendChoice::Local => Ok((Backend::Local, "asked for with --backend local".into())),
        BackendChoice::Docker => Ok((Backend::Docker, "asked for with --backend docker".into())),
        BackendChoice::External => Ok((Backend::External, "asked for with --backend external".into())),
        BackendChoice::Auto => {
            if let Some(url) = &options.database_url {
                if options.database_url_from_env {
                    return Ok((
                        Backend::External,
                        format!(
                            "DATABASE_URL is set in this shell, so contend benchmarks the server at {}; to have contend start its own, pass --backend local or --backend docker, or unset DATABASE_URL",
                            mask_url(url)
                        ),
                    ));
                }
                return Ok((Backend::External, "a database URL was given".into()));
            }
            let docker_status = match options.tls {
                true => DockerStatus::Unusable("--tls is for the local backend only, for now".into()),
                false => docker::DockerStatus::probe(options).await,
            };
            let docker_reason = match docker_status {
                DockerStatus::Usable { pg_image, redis_image } => {
                    let images = match redis_image {
                        Some(redis_image) => format!("{pg_image} and {redis_image} are"),
                        None => format!("{pg_image} is"),
                    };
                    return Ok((
                        Backend::Docker,
                        format!("the docker daemon answers and {images} available"),
                    ));
                }
                DockerStatus::Unusable(reason) => reason,
            };
            let redis_server = match options.with_redis {
                true => local::find_redis_server().map(Some),
                false => Ok(None),
            };
            let local_reason = match (local::find_pg_bin_dir(options.pg_bin.as_deref()), redis_server) {
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
