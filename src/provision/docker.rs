//! The docker backend: PostgreSQL and Redis in containers, through
//! testcontainers.
//!
//! Defaults are the official images at a current release. Choices made on
//! purpose, because they shape every number measured:
//! - fsync stays on (the testcontainers Postgres module turns it off; contend
//!   uses a plain image and passes its own `-c` settings);
//! - host networking, with the servers listening on 127.0.0.1 only: docker's
//!   userland port proxy would otherwise sit in every round trip and take CPU
//!   from the two cores the database and the driver share;
//! - readiness is a real connection, not a log line (the official postgres
//!   entrypoint starts the server twice, the first time on a socket only);
//! - where no registry is reachable and a default image is missing, local
//!   stand-in images built by `testcontainers/build-images.sh` serve, and
//!   results record that they did.
//!
//! Containers carry `contend.*` labels, naming their contend by host
//! identity, pid and start time ([`super::owner`]); a killed contend's
//! containers are removed by a watcher process within a second or two, or
//! at the next start on the same host at the latest.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bollard::query_parameters::{CreateImageOptions, ListContainersOptions, ListImagesOptions, RemoveContainerOptions};
use bollard::Docker;
use futures_util::StreamExt;
use testcontainers::core::WaitFor;
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, CopyTargetOptions, GenericImage, ImageExt};

use super::docker_api;
use super::owner::{self, Owner, LABEL_PID};
use super::ports::{on_a_free_port, says_port_taken, StartFailure};
use super::secret::generate_password;
use super::{probe_postgres, probe_redis, PgServer, ProvisionError, ProvisionOptions, RedisServer, ServerOrigin};

/// Default PostgreSQL image: the official image at a current release.
pub const DEFAULT_PG_IMAGE: &str = "postgres:17";
/// Default Redis image: the official image at a current release.
pub const DEFAULT_REDIS_IMAGE: &str = "redis:7";
/// Repository prefix of the local stand-in images.
const STAND_IN_PREFIX: &str = "contend-standin/";

const LABEL_SESSION: &str = "contend.session";
const LABEL_ROLE: &str = "contend.role";
const DB_USER: &str = "contend";
/// Where the PostgreSQL container finds its password.
const PG_PASSWORD_FILE: &str = "/run/contend/pg-password";
/// redis-server's configuration, with its password, in the container.
const REDIS_CONFIG_FILE: &str = "/data/contend-redis.conf";
/// Parallel query plans need more than docker's default 64 MB /dev/shm.
const SHM_BYTES: u64 = 512 * 1024 * 1024;
/// How long a pull may take before the image counts as unavailable.
const PULL_TIMEOUT: Duration = Duration::from_secs(120);

/// Whether docker can serve, as `auto` needs to know.
pub enum DockerStatus {
    /// The daemon answers and the images needed are available (names
    /// resolved).
    Usable {
        /// PostgreSQL image that would run.
        pg_image: String,
        /// Redis image that would run; `None` when no Redis is needed.
        redis_image: Option<String>,
    },
    /// Why docker cannot serve.
    Unusable(String),
}

impl DockerStatus {
    /// Asks the daemon, and resolves the images needed (pulling if need
    /// be): Redis's only when `options.with_redis`.
    pub async fn probe(options: &ProvisionOptions) -> DockerStatus {
        let docker = match docker_api::connect().await {
            Ok(docker) => docker,
            Err(error) => return DockerStatus::Unusable(error.to_string()),
        };
        let pg = resolve_image(&docker, &options.pg_image, options.images_chosen).await;
        let redis = match options.with_redis {
            true => resolve_image(&docker, &options.redis_image, options.images_chosen)
                .await
                .map(Some),
            false => Ok(None),
        };
        match (pg, redis) {
            (Ok(pg), Ok(redis)) => DockerStatus::Usable {
                pg_image: pg.reference,
                redis_image: redis.map(|image| image.reference),
            },
            (Err(e), _) | (_, Err(e)) => DockerStatus::Unusable(e.to_string()),
        }
    }
}

/// An image ready to run.
#[derive(Debug, Clone)]
struct ResolvedImage {
    reference: String,
    id: String,
    stand_in: bool,
}

impl ResolvedImage {
    fn origin(&self) -> ServerOrigin {
        ServerOrigin::Docker {
            image: self.reference.clone(),
            image_id: self.id.clone(),
            stand_in: self.stand_in,
        }
    }
}

/// The image to run for `wanted`, resolved once per process: `auto` and the
/// start that follows it must not try a pull twice or say so twice.
async fn resolve_image(docker: &Docker, wanted: &str, chosen: bool) -> Result<ResolvedImage, ProvisionError> {
    static RESOLVED: Mutex<Vec<(String, bool, ResolvedImage)>> = Mutex::new(Vec::new());
    let known = RESOLVED.lock().ok().and_then(|resolved| {
        resolved
            .iter()
            .find(|(w, c, _)| w == wanted && *c == chosen)
            .map(|(_, _, r)| r.clone())
    });
    if let Some(resolved) = known {
        return Ok(resolved);
    }
    let resolved = resolve_image_now(docker, wanted, chosen).await?;
    if let Ok(mut cache) = RESOLVED.lock() {
        cache.push((wanted.to_string(), chosen, resolved.clone()));
    }
    Ok(resolved)
}

/// Present locally, else pulled, else (for a default image) the newest local
/// stand-in for the same repository.
async fn resolve_image_now(docker: &Docker, wanted: &str, chosen: bool) -> Result<ResolvedImage, ProvisionError> {
    if let Ok(image) = docker.inspect_image(wanted).await {
        return Ok(ResolvedImage {
            reference: wanted.to_string(),
            id: image.id.unwrap_or_default(),
            stand_in: wanted.starts_with(STAND_IN_PREFIX),
        });
    }
    let pull_error = match pull(docker, wanted).await {
        Ok(()) => {
            let image = docker
                .inspect_image(wanted)
                .await
                .map_err(|e| ProvisionError::ImageUnavailable {
                    image: wanted.to_string(),
                    reason: format!("pulled but cannot be inspected: {e}"),
                })?;
            return Ok(ResolvedImage {
                reference: wanted.to_string(),
                id: image.id.unwrap_or_default(),
                stand_in: false,
            });
        }
        Err(reason) => reason,
    };
    let (repository, _) = split_reference(wanted);
    let stand_in = if chosen {
        None
    } else {
        newest_stand_in(docker, repository.rsplit('/').next().unwrap_or(repository)).await
    };
    match stand_in {
        Some(resolved) => {
            eprintln!(
                "contend: {wanted} is not present and cannot be pulled ({pull_error}); using the local stand-in {} instead",
                resolved.reference
            );
            Ok(resolved)
        }
        None => Err(ProvisionError::ImageUnavailable {
            image: wanted.to_string(),
            reason: format!(
                "not present and cannot be pulled ({pull_error}); build the local stand-ins with testcontainers/build-images.sh, or pass another image"
            ),
        }),
    }
}

/// Why an image could not be pulled; shown inside the "not available"
/// message, after the image's name.
#[derive(Debug, thiserror::Error)]
enum PullError {
    /// The daemon refused or the registry failed (its first line shown).
    #[error("{}", first_line(&error.to_string()))]
    Failed {
        /// The image reference.
        image: String,
        /// bollard's error.
        error: bollard::errors::Error,
    },
    /// No pull finished within [`PULL_TIMEOUT`].
    #[error("no pull finished within {} s", PULL_TIMEOUT.as_secs())]
    Timeout {
        /// The image reference.
        image: String,
    },
}

async fn pull(docker: &Docker, reference: &str) -> Result<(), PullError> {
    let (repository, tag) = split_reference(reference);
    let options = CreateImageOptions {
        from_image: Some(repository.to_string()),
        tag: Some(tag.to_string()),
        ..Default::default()
    };
    let pulling = async {
        let mut progress = docker.create_image(Some(options), None, None);
        while let Some(step) = progress.next().await {
            step.map_err(|error| PullError::Failed {
                image: reference.to_string(),
                error,
            })?;
        }
        Ok(())
    };
    tokio::time::timeout(PULL_TIMEOUT, pulling)
        .await
        .map_err(|_| PullError::Timeout {
            image: reference.to_string(),
        })?
}

async fn newest_stand_in(docker: &Docker, repository: &str) -> Option<ResolvedImage> {
    let images = docker.list_images(Some(ListImagesOptions::default())).await.ok()?;
    let prefix = format!("{STAND_IN_PREFIX}{repository}:");
    images
        .into_iter()
        .flat_map(|image| {
            let id = image.id.clone();
            image
                .repo_tags
                .into_iter()
                .filter(|tag| tag.starts_with(&prefix))
                .map(move |tag| (tag, id.clone()))
        })
        .max_by_key(|(tag, _)| tag[prefix.len()..].parse::<u32>().unwrap_or(0))
        .map(|(reference, id)| ResolvedImage {
            reference,
            id,
            stand_in: true,
        })
}

/// `registry:5000/a/b:tag` → (`registry:5000/a/b`, `tag`); no tag → `latest`.
fn split_reference(reference: &str) -> (&str, &str) {
    let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[last_slash..].rfind(':') {
        Some(colon) => (&reference[..last_slash + colon], &reference[last_slash + colon + 1..]),
        None => (reference, "latest"),
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_string()
}

/// The containers of one contend run.
pub(super) struct DockerServers {
    pg_port: u16,
    pg_container: Option<ContainerAsync<GenericImage>>,
    redis_container: Option<ContainerAsync<GenericImage>>,
    pg_image: ResolvedImage,
    settings: Vec<(String, String)>,
    session: String,
    startup_timeout: Duration,
}

impl DockerServers {
    /// Starts PostgreSQL's container, and Redis's when `options.with_redis`;
    /// returns them with the facts about each.
    pub(super) async fn start(
        options: &ProvisionOptions,
    ) -> Result<(DockerServers, PgServer, Option<RedisServer>), ProvisionError> {
        let docker = docker_api::connect().await?;
        for line in remove_stale_containers(&docker).await {
            eprintln!("contend: {line}");
        }
        docker_api::make_testcontainers_compatible(&docker)?;
        let pg_image = resolve_image(&docker, &options.pg_image, options.images_chosen).await?;
        let redis_image = match options.with_redis {
            true => Some(resolve_image(&docker, &options.redis_image, options.images_chosen).await?),
            false => None,
        };
        let session = format!("{}-{}", std::process::id(), &generate_password()[..8]);
        watch_for_contend_death(&session);

        let settings = options.server_settings();
        let (pg_container, postgres) =
            start_postgres(&pg_image, &settings, options.pg_port, &session, options.startup_timeout).await?;
        let (redis_container, redis) = match &redis_image {
            Some(image) => match start_redis(image, options.redis_port, &session, options.startup_timeout).await {
                Ok((container, redis)) => (Some(container), Some(redis)),
                Err(e) => {
                    let _ = pg_container.rm().await;
                    return Err(e);
                }
            },
            None => (None, None),
        };
        let servers = DockerServers {
            pg_port: postgres.port,
            pg_container: Some(pg_container),
            redis_container,
            pg_image,
            settings,
            session,
            startup_timeout: options.startup_timeout,
        };
        Ok((servers, postgres, redis))
    }

    /// A fresh container with the new `max_connections`, on the same port
    /// when it is free again.
    pub(super) async fn replace_postgres(&mut self, max_connections: u32) -> Result<PgServer, ProvisionError> {
        super::validate_max_connections(max_connections, &self.settings)?;
        if let Some(old) = self.pg_container.take() {
            old.rm().await.map_err(|e| ProvisionError::Container {
                image: self.pg_image.reference.clone(),
                reason: format!("removing the old container failed: {e}"),
            })?;
        }
        self.settings.retain(|(k, _)| k != "max_connections");
        self.settings
            .push(("max_connections".into(), max_connections.to_string()));
        let (container, postgres) = start_postgres(
            &self.pg_image,
            &self.settings,
            Some(self.pg_port),
            &self.session,
            self.startup_timeout,
        )
        .await?;
        self.pg_container = Some(container);
        self.pg_port = postgres.port;
        Ok(postgres)
    }

    /// Whether the PostgreSQL container still runs.
    pub(super) async fn postgres_running(&self) -> bool {
        match &self.pg_container {
            Some(container) => container.is_running().await.unwrap_or(false),
            None => false,
        }
    }

    pub(super) fn startup_timeout(&self) -> Duration {
        self.startup_timeout
    }

    pub(super) async fn shutdown(mut self) {
        if let Some(container) = self.pg_container.take() {
            let _ = container.rm().await;
        }
        if let Some(container) = self.redis_container.take() {
            let _ = container.rm().await;
        }
    }
}

fn base_request(
    image: &ResolvedImage,
    role: &str,
    session: &str,
    timeout: Duration,
) -> testcontainers::ContainerRequest<GenericImage> {
    let (repository, tag) = split_reference(&image.reference);
    let mut request = GenericImage::new(repository, tag)
        .with_wait_for(WaitFor::Nothing)
        .with_network("host")
        .with_label(LABEL_SESSION, session)
        .with_label(LABEL_ROLE, role)
        .with_startup_timeout(timeout);
    for (label, value) in owner::owner_labels() {
        request = request.with_label(label, value);
    }
    request
}

async fn start_postgres(
    image: &ResolvedImage,
    settings: &[(String, String)],
    port_hint: Option<u16>,
    session: &str,
    timeout: Duration,
) -> Result<(ContainerAsync<GenericImage>, PgServer), ProvisionError> {
    let password = generate_password();
    let password = &password;
    on_a_free_port("PostgreSQL", port_hint, |port| async move {
        let mut command = vec![
            "postgres".to_string(),
            "-c".into(),
            "listen_addresses=127.0.0.1".into(),
            "-c".into(),
            format!("port={port}"),
        ];
        for (key, value) in settings {
            command.push("-c".into());
            command.push(format!("{key}={value}"));
        }
        // The password goes in as a file the entrypoint reads as root
        // (POSTGRES_PASSWORD_FILE, as with docker secrets), never in the
        // container's environment, which `docker inspect` shows.
        let request = base_request(image, "postgres", session, timeout)
            .with_env_var("POSTGRES_USER", DB_USER)
            .with_env_var("POSTGRES_PASSWORD_FILE", PG_PASSWORD_FILE)
            .with_env_var("POSTGRES_DB", "postgres")
            .with_copy_to(
                CopyTargetOptions::new(PG_PASSWORD_FILE).with_mode(0o600),
                password.as_bytes().to_vec(),
            )
            .with_shm_size(SHM_BYTES)
            .with_cmd(command);
        let container = request.start().await.map_err(|e| ProvisionError::Container {
            image: image.reference.clone(),
            reason: e.to_string(),
        })?;
        let url = format!("postgres://{DB_USER}:{password}@127.0.0.1:{port}/postgres");
        let origin = image.origin();
        match wait_until_ready(&container, timeout, || probe_postgres(&url, origin.clone())).await {
            Ok(server) => Ok((container, server)),
            Err(not_ready) => {
                let _ = container.rm().await;
                Err(start_failure("PostgreSQL", not_ready))
            }
        }
    })
    .await
}

async fn start_redis(
    image: &ResolvedImage,
    port_hint: Option<u16>,
    session: &str,
    timeout: Duration,
) -> Result<(ContainerAsync<GenericImage>, RedisServer), ProvisionError> {
    let password = generate_password();
    let password = &password;
    on_a_free_port("Redis", port_hint, |port| async move {
        // The password goes in a config file (in /data, which the
        // entrypoint gives to the redis user), never on redis-server's
        // command line, where `ps` on the host shows it to every user.
        let config = super::local::redis_config(port, password, None);
        let container = base_request(image, "redis", session, timeout)
            .with_copy_to(
                CopyTargetOptions::new(REDIS_CONFIG_FILE).with_mode(0o600),
                config.into_bytes(),
            )
            .with_cmd(["redis-server", REDIS_CONFIG_FILE])
            .start()
            .await
            .map_err(|e| ProvisionError::Container {
                image: image.reference.clone(),
                reason: e.to_string(),
            })?;
        let url = format!("redis://default:{password}@127.0.0.1:{port}");
        let origin = image.origin();
        match wait_until_ready(&container, timeout, || probe_redis(&url, origin.clone())).await {
            Ok(server) => Ok((container, server)),
            Err(not_ready) => {
                let _ = container.rm().await;
                Err(start_failure("Redis", not_ready))
            }
        }
    })
    .await
}

fn start_failure(server: &'static str, not_ready: NotReady) -> StartFailure {
    let log = not_ready.to_string();
    if says_port_taken(&log) {
        StartFailure::PortTaken(log)
    } else {
        StartFailure::Failed(ProvisionError::ServerStart { server, reason: log })
    }
}

/// A container whose server never answered.
#[derive(Debug, thiserror::Error)]
#[error("{}: {detail}", if *exited { "the container exited" } else { "timed out" })]
struct NotReady {
    /// The container's id.
    container_id: String,
    /// Whether it exited (else it ran past the timeout).
    exited: bool,
    /// Its FATAL/ERROR lines, or the probe's last error.
    detail: String,
}

/// Polls `probe` until it succeeds; on the container's exit or the timeout,
/// says why with its last log lines.
async fn wait_until_ready<T, F, Fut>(
    container: &ContainerAsync<GenericImage>,
    timeout: Duration,
    mut probe: F,
) -> Result<T, NotReady>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ProvisionError>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last_error = match probe().await {
            Ok(server) => return Ok(server),
            Err(e) => e.to_string(),
        };
        let running = container.is_running().await.unwrap_or(false);
        if !running || Instant::now() >= deadline {
            let mut log = container.stdout_to_vec().await.unwrap_or_default();
            log.extend(container.stderr_to_vec().await.unwrap_or_default());
            let log = String::from_utf8_lossy(&log).to_string();
            let important: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("FATAL") || l.contains("ERROR") || l.contains("error") || l.contains("in use"))
                .collect();
            let detail = if important.is_empty() {
                last_error
            } else {
                important.join(" / ")
            };
            return Err(NotReady {
                container_id: container.id().to_string(),
                exited: !running,
                detail,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Removes containers whose contend is provably gone from this host (see
/// [`owner`]): labelled with this host's identity, and a pid that is dead
/// or now belongs to a process started at another time. Containers of
/// other hosts are left alone; so are those of an older contend (a pid
/// label and no host), with one line saying so.
async fn remove_stale_containers(docker: &Docker) -> Vec<String> {
    let options = ListContainersOptions {
        all: true,
        filters: Some(
            [("label".to_string(), vec![LABEL_PID.to_string()])]
                .into_iter()
                .collect(),
        ),
        ..Default::default()
    };
    let Ok(containers) = docker.list_containers(Some(options)).await else {
        return Vec::new();
    };
    let this_host = owner::host_identity();
    let mut removed = Vec::new();
    let mut unknown = Vec::new();
    for container in containers {
        let labels = container.labels.unwrap_or_default();
        let Some(id) = container.id else { continue };
        let short = id[..12.min(id.len())].to_string();
        let pid = match owner::owner_of(&labels, &this_host) {
            Owner::Gone { pid } => pid,
            Owner::Unknown => {
                unknown.push(short);
                continue;
            }
            Owner::Alive | Owner::Elsewhere => continue,
        };
        let remove = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        if docker.remove_container(&id, Some(remove)).await.is_ok() {
            removed.push(format!(
                "removed container {short} ({}) left by contend pid {pid}, which did not exit cleanly",
                labels.get(LABEL_ROLE).map_or("?", String::as_str)
            ));
        }
    }
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !unknown.is_empty() && !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
        removed.push(format!(
            "left {} container(s) alone that an older contend labelled without its host ({}): \
             they may belong to a live contend elsewhere; if they are yours, remove them with docker rm -f",
            unknown.len(),
            unknown.join(" ")
        ));
    }
    removed
}

/// Starts a detached watcher that removes this session's containers once
/// contend is gone, so a SIGKILL leaves nothing running for more than a
/// second or two. Uses the docker CLI; without it, the next start cleans up.
fn watch_for_contend_death(session: &str) {
    use std::os::unix::process::CommandExt;
    // A killed contend may linger as a zombie (the init of some containers
    // never reaps), so "gone" is: no such process, or state Z.
    let script = r#"while read -r stat 2>/dev/null < "/proc/$0/stat"; do
  state=${stat##*) }; state=${state%% *}
  [ "$state" = Z ] && break
  sleep 1
done
ids=$(docker ps -aq --filter "label=contend.session=$1")
[ -n "$ids" ] && docker rm -f -v $ids >/dev/null 2>&1
exit 0"#;
    let mut watcher = std::process::Command::new("sh");
    match docker_api::users_docker_host() {
        Some(host) => watcher.env("DOCKER_HOST", host),
        None => watcher.env_remove("DOCKER_HOST"),
    };
    let _ = watcher
        .arg("-c")
        .arg(script)
        .arg(std::process::id().to_string())
        .arg(session)
        // Its own process group: a Ctrl-C meant for contend must not end it.
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_references() {
        assert_eq!(split_reference("postgres:17"), ("postgres", "17"));
        assert_eq!(split_reference("postgres"), ("postgres", "latest"));
        assert_eq!(
            split_reference("contend-standin/postgres:15"),
            ("contend-standin/postgres", "15")
        );
        assert_eq!(split_reference("registry:5000/pg"), ("registry:5000/pg", "latest"));
        assert_eq!(split_reference("registry:5000/pg:16"), ("registry:5000/pg", "16"));
    }
}
