//! The local backend: a throwaway cluster and a Redis from binaries on this
//! machine.
//!
//! Everything lives in one run directory under the temp dir
//! (`contend-run-<pid>-<random>`): the data directory, the socket directory,
//! the servers' logs. The postmaster is spawned directly (not through a
//! daemonising `pg_ctl`) so that a parent-death signal can reach it; see
//! [`super::process`]. The run directory goes when the servers go; one left
//! by a killed contend is removed at the next start ([`super::stale`]).

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::install::{how_to_get, ServerBinary};
use super::ports::{on_a_free_port, says_port_taken, StartFailure};
use super::process::{self, RunAs};
use super::secret::generate_password;
use super::tls::{ServerCertificates, LOCAL_SERVER_NAMES};
use super::{probe_postgres, probe_redis, PgServer, ProvisionError, ProvisionOptions, RedisServer, ServerOrigin};

/// Prefix of run directories under the temp dir; [`super::stale`] looks for it.
pub(super) const RUN_DIR_PREFIX: &str = "contend-run-";
/// File in a run directory naming the contend that owns it: its pid, its
/// start time and its host identity, one a line (an older contend wrote the
/// pid alone).
pub(super) const OWNER_FILE: &str = "owner.pid";
/// File in a run directory naming the redis-server pid.
pub(super) const REDIS_PID_FILE: &str = "redis.pid";

const DB_USER: &str = "contend";

/// Finds the directory holding `initdb` and `postgres`: `--pg-bin`, else
/// PATH, else `pg_config --bindir`, else the newest /usr/lib/postgresql/*/bin.
pub fn find_pg_bin_dir(chosen: Option<&Path>) -> Result<PathBuf, ProvisionError> {
    if let Some(dir) = chosen {
        for binary in ["initdb", "postgres"] {
            if !dir.join(binary).is_file() {
                return Err(ProvisionError::BadPgBin {
                    dir: dir.to_path_buf(),
                    missing: binary,
                });
            }
        }
        return Ok(dir.to_path_buf());
    }
    let mut searched = Vec::new();
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    searched.push("PATH".to_string());
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output() {
        if output.status.success() {
            candidates.push(PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()));
        }
    }
    searched.push("pg_config --bindir".to_string());
    let mut versioned: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versioned.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
    candidates.extend(versioned.into_iter().map(|(_, dir)| dir));
    searched.push("/usr/lib/postgresql/*/bin".to_string());
    candidates
        .into_iter()
        .find(|dir| dir.join("initdb").is_file() && dir.join("postgres").is_file())
        // Through symlinks (/usr/local/bin/postgres → /usr/lib/postgresql/15/bin):
        // results record where the server really is.
        .map(|dir| {
            fs::canonicalize(dir.join("postgres"))
                .ok()
                .and_then(|real| real.parent().map(Path::to_path_buf))
                .filter(|real| real.join("initdb").is_file())
                .unwrap_or(dir)
        })
        .ok_or_else(|| ProvisionError::NoServerBinaries {
            searched: searched.join(", "),
            how_to_get: how_to_get(ServerBinary::Postgres),
        })
}

/// Finds `redis-server` on PATH.
pub fn find_redis_server() -> Result<PathBuf, ProvisionError> {
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| ProvisionError::NoRedisServer {
            how_to_get: how_to_get(ServerBinary::Redis),
        })
}

/// The run directory: created owned by the server account, removed on drop.
pub(super) struct RunDir {
    pub(super) path: PathBuf,
}

impl RunDir {
    pub(super) fn create(run_as: Option<&RunAs>) -> Result<RunDir, ProvisionError> {
        let path = std::env::temp_dir().join(format!(
            "{RUN_DIR_PREFIX}{}-{}",
            std::process::id(),
            &generate_password()[..8]
        ));
        fs::create_dir(&path).map_err(ProvisionError::io(format!("creating {}", path.display())))?;
        let dir = RunDir { path };
        // pid, start time, host: stale cleanup removes the directory only
        // when this names a contend provably gone from its host (a temp
        // dir can be shared with other pid namespaces).
        let pid = std::process::id();
        let started = super::owner::process_start_time(pid as i32).map_or_else(String::new, |t| t.to_string());
        fs::write(
            dir.path.join(OWNER_FILE),
            format!("{pid}\n{started}\n{}\n", super::owner::host_identity()),
        )
        .map_err(ProvisionError::io("writing the run directory's owner file"))?;
        fs::set_permissions(&dir.path, fs::Permissions::from_mode(0o700))
            .map_err(ProvisionError::io("restricting the run directory"))?;
        if let Some(account) = run_as {
            std::os::unix::fs::chown(&dir.path, Some(account.uid), Some(account.gid)).map_err(ProvisionError::io(
                format!("giving {} to {}", dir.path.display(), account.name),
            ))?;
        }
        Ok(dir)
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// The local servers of one contend run.
pub(super) struct LocalServers {
    pg_port: u16,
    pg_origin: ServerOrigin,
    postmaster: Option<Child>,
    redis_process: Option<Child>,
    bin_dir: PathBuf,
    settings: Vec<(String, String)>,
    password: String,
    run_as: Option<RunAs>,
    startup_timeout: Duration,
    // Declared last: dropped after the servers are stopped.
    dir: RunDir,
}

impl LocalServers {
    /// Starts PostgreSQL, and Redis when `options.with_redis`; returns them
    /// with the facts about each.
    pub(super) async fn start(
        options: &ProvisionOptions,
    ) -> Result<(LocalServers, PgServer, Option<RedisServer>), ProvisionError> {
        let bin_dir = find_pg_bin_dir(options.pg_bin.as_deref())?;
        // Looked for before anything starts: a missing binary is said at once.
        let redis_binary = match options.with_redis {
            true => Some(find_redis_server()?),
            false => None,
        };
        let run_as = process::server_account().map_err(|e| ProvisionError::ServerStart {
            server: "PostgreSQL",
            reason: e.to_string(),
        })?;
        let dir = RunDir::create(run_as.as_ref())?;
        let password = generate_password();
        initdb(&bin_dir, &dir.path, &password, run_as.as_ref()).await?;

        let mut settings = options.server_settings();
        let tls_query = match options.tls {
            true => Some(serve_tls_only(&dir.path, run_as.as_ref(), &mut settings)?),
            false => None,
        };
        let (postmaster, port) = start_postmaster(
            &bin_dir,
            &dir.path,
            options.pg_port,
            &settings,
            run_as.as_ref(),
            options.startup_timeout,
        )
        .await?;
        let mut servers_so_far = PartialStart {
            postmaster: Some(postmaster),
            redis: None,
        };
        let mut url = format!("postgres://{DB_USER}:{password}@127.0.0.1:{port}/postgres");
        if let Some(query) = &tls_query {
            url = format!("{url}?{query}");
        }
        let origin = ServerOrigin::Local {
            binary: bin_dir.join("postgres"),
        };
        let postgres = probe_postgres(&url, origin.clone()).await?;

        let redis = match redis_binary {
            Some(redis_binary) => {
                let redis_password = generate_password();
                let (redis_process, redis_port) = start_redis(
                    &redis_binary,
                    &dir.path,
                    options.redis_port,
                    &redis_password,
                    run_as.as_ref(),
                    options.startup_timeout,
                )
                .await?;
                servers_so_far.redis = Some(redis_process);
                let redis_url = format!("redis://default:{redis_password}@127.0.0.1:{redis_port}");
                Some(probe_redis(&redis_url, ServerOrigin::Local { binary: redis_binary }).await?)
            }
            None => None,
        };

        let (postmaster, redis_process) = servers_so_far.keep();
        let servers = LocalServers {
            pg_port: port,
            pg_origin: origin,
            postmaster,
            redis_process,
            bin_dir,
            settings,
            password,
            run_as,
            startup_timeout: options.startup_timeout,
            dir,
        };
        Ok((servers, postgres, redis))
    }

    /// Fast shutdown, then a start on the same data directory and port with
    /// the new `max_connections`.
    pub(super) async fn restart_postgres(&mut self, max_connections: u32) -> Result<PgServer, ProvisionError> {
        super::validate_max_connections(max_connections, &self.settings)?;
        if let Some(mut postmaster) = self.postmaster.take() {
            tokio::task::spawn_blocking(move || {
                process::stop_child(&mut postmaster, Signal::SIGINT, Duration::from_secs(30))
            })
            .await
            .map_err(|e| ProvisionError::io("stopping PostgreSQL")(std::io::Error::other(e)))?;
        }
        self.settings.retain(|(k, _)| k != "max_connections");
        self.settings
            .push(("max_connections".into(), max_connections.to_string()));
        self.start_on_data_directory().await
    }

    /// Starts PostgreSQL again on its data directory when its postmaster
    /// has exited (killed, crashed); `None` when it still runs.
    pub(super) async fn restart_dead_postgres(&mut self) -> Result<Option<PgServer>, ProvisionError> {
        let exited = match self.postmaster.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(Some(_))) || !process::pid_alive(child.id() as i32),
            None => true,
        };
        if !exited {
            return Ok(None);
        }
        if let Some(mut dead) = self.postmaster.take() {
            let _ = dead.wait();
        }
        self.start_on_data_directory().await.map(Some)
    }

    /// Stops a postmaster that runs but does not answer (stopped, hung) with
    /// an immediate shutdown, then starts it again on its data directory
    /// (crash recovery replays the WAL).
    pub(super) async fn restart_unresponsive_postgres(&mut self) -> Result<PgServer, ProvisionError> {
        if let Some(mut postmaster) = self.postmaster.take() {
            tokio::task::spawn_blocking(move || {
                process::stop_child(&mut postmaster, Signal::SIGQUIT, Duration::from_secs(5))
            })
            .await
            .map_err(|e| ProvisionError::io("stopping PostgreSQL")(std::io::Error::other(e)))?;
        }
        self.start_on_data_directory().await
    }

    /// Starts the postmaster on the run's data directory, port and
    /// settings, and probes it. A postmaster that was killed leaves
    /// backends that exit only once they notice, and until then its shared
    /// memory is in use and a new postmaster refuses to start: retried until
    /// the startup timeout.
    async fn start_on_data_directory(&mut self) -> Result<PgServer, ProvisionError> {
        let deadline = tokio::time::Instant::now() + self.startup_timeout;
        let (postmaster, port) = loop {
            match start_postmaster(
                &self.bin_dir,
                &self.dir.path,
                Some(self.pg_port),
                &self.settings,
                self.run_as.as_ref(),
                self.startup_timeout,
            )
            .await
            {
                Ok(started) => break started,
                Err(ProvisionError::ServerStart { reason, .. })
                    if still_in_use(&reason) && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(250)).await
                }
                Err(e) => return Err(e),
            }
        };
        self.postmaster = Some(postmaster);
        self.pg_port = port;
        let url = format!("postgres://{DB_USER}:{}@127.0.0.1:{port}/postgres", self.password);
        probe_postgres(&url, self.pg_origin.clone()).await
    }

    pub(super) fn startup_timeout(&self) -> Duration {
        self.startup_timeout
    }

    pub(super) async fn shutdown(mut self) {
        let postmaster = self.postmaster.take();
        let redis = self.redis_process.take();
        let _ = tokio::task::spawn_blocking(move || stop_both(postmaster, redis)).await;
        // `self.dir` is removed as `self` drops here.
    }
}

impl Drop for LocalServers {
    fn drop(&mut self) {
        stop_both(self.postmaster.take(), self.redis_process.take());
    }
}

/// Whether a postmaster refused to start because the one before it has not
/// let go yet: its backends still attached to the shared memory, or its
/// lock file naming a live process.
fn still_in_use(reason: &str) -> bool {
    reason.contains("is still in use") || reason.contains("already exists")
}

/// Fast shutdown for PostgreSQL (SIGINT ends sessions at once), SIGTERM for
/// Redis (persistence is off, so it exits at once).
fn stop_both(postmaster: Option<Child>, redis: Option<Child>) {
    if let Some(mut child) = postmaster {
        process::stop_child(&mut child, Signal::SIGINT, Duration::from_secs(10));
    }
    if let Some(mut child) = redis {
        process::stop_child(&mut child, Signal::SIGTERM, Duration::from_secs(5));
    }
}

/// Servers started so far, stopped if a later step fails.
struct PartialStart {
    postmaster: Option<Child>,
    redis: Option<Child>,
}

impl PartialStart {
    fn keep(mut self) -> (Option<Child>, Option<Child>) {
        (self.postmaster.take(), self.redis.take())
    }
}

impl Drop for PartialStart {
    fn drop(&mut self) {
        stop_both(self.postmaster.take(), self.redis.take());
    }
}

async fn initdb(bin_dir: &Path, run_dir: &Path, password: &str, run_as: Option<&RunAs>) -> Result<(), ProvisionError> {
    let pwfile = run_dir.join("pwfile");
    write_private(&pwfile, password.as_bytes(), run_as)
        .map_err(ProvisionError::io("writing the initdb password file"))?;
    let mut command = Command::new(bin_dir.join("initdb"));
    command
        .arg("--pgdata")
        .arg(run_dir.join("data"))
        .arg("--username")
        .arg(DB_USER)
        .arg("--pwfile")
        .arg(&pwfile)
        .args([
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            "--encoding=UTF8",
            "--locale=C",
        ])
        // A throwaway cluster: syncing its initial files buys nothing.
        .arg("--no-sync")
        .current_dir(run_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = process::spawn_tied_to_contend(command, run_as, Signal::SIGKILL).map_err(ProvisionError::io(
        format!("running {}", bin_dir.join("initdb").display()),
    ))?;
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .map_err(|e| ProvisionError::io("waiting for initdb")(std::io::Error::other(e)))?
        .map_err(ProvisionError::io("waiting for initdb"))?;
    let _ = fs::remove_file(&pwfile);
    if !output.status.success() {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        return Err(ProvisionError::Initdb {
            output: last_lines(&text, 4),
        });
    }
    Ok(())
}

/// `--tls`: writes a CA, a server certificate for [`LOCAL_SERVER_NAMES`]
/// and its key (mode 0600, the server account's) into the run directory,
/// leaves pg_hba.conf with `hostssl` lines only, and adds the settings that
/// turn TLS on. Returns the query string contend's clients connect with.
fn serve_tls_only(
    run_dir: &Path,
    run_as: Option<&RunAs>,
    settings: &mut Vec<(String, String)>,
) -> Result<String, ProvisionError> {
    let certificates = ServerCertificates::generate(&LOCAL_SERVER_NAMES).map_err(|e| ProvisionError::ServerStart {
        server: "PostgreSQL",
        reason: format!("making its TLS certificate: {e}"),
    })?;
    let ca = run_dir.join("ca.crt");
    let cert = run_dir.join("server.crt");
    let key = run_dir.join("server.key");
    for (path, text) in [
        (&ca, &certificates.ca_cert_pem),
        (&cert, &certificates.server_cert_pem),
        (&key, &certificates.server_key_pem),
    ] {
        write_private(path, text.as_bytes(), run_as)
            .map_err(ProvisionError::io(format!("writing {}", path.display())))?;
    }
    // The socket in the run directory stays (nothing of contend's uses it
    // over the network); every TCP connection must be TLS.
    let hba = run_dir.join("data").join("pg_hba.conf");
    fs::write(
        &hba,
        "# written by contend --tls: TLS only over TCP\n\
         local all all trust\n\
         hostssl all all 127.0.0.1/32 scram-sha-256\n\
         hostssl all all ::1/128 scram-sha-256\n",
    )
    .map_err(ProvisionError::io(format!("writing {}", hba.display())))?;
    settings.push(("ssl".into(), "on".into()));
    settings.push(("ssl_cert_file".into(), cert.display().to_string()));
    settings.push(("ssl_key_file".into(), key.display().to_string()));
    let mut query = ::url::form_urlencoded::Serializer::new(String::new());
    query.append_pair("sslmode", "verify-full");
    query.append_pair("sslrootcert", &ca.display().to_string());
    Ok(query.finish())
}

/// Spawns the postmaster and waits until it accepts connections, retrying on
/// another port when the chosen one was taken meanwhile.
async fn start_postmaster(
    bin_dir: &Path,
    run_dir: &Path,
    port_hint: Option<u16>,
    settings: &[(String, String)],
    run_as: Option<&RunAs>,
    timeout: Duration,
) -> Result<(Child, u16), ProvisionError> {
    let log_path = run_dir.join("postgres.log");
    let log_path = &log_path;
    on_a_free_port("PostgreSQL", port_hint, |port| async move {
        let log_offset = fs::metadata(log_path).map(|m| m.len()).unwrap_or(0);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .map_err(ProvisionError::io("opening the PostgreSQL log"))?;
        let mut command = Command::new(bin_dir.join("postgres"));
        command
            .arg("-D")
            .arg(run_dir.join("data"))
            .arg("-p")
            .arg(port.to_string())
            .arg("-c")
            .arg("listen_addresses=127.0.0.1")
            .arg("-c")
            .arg(format!("unix_socket_directories={}", run_dir.display()));
        for (key, value) in settings {
            command.arg("-c").arg(format!("{key}={value}"));
        }
        command
            .current_dir(run_dir)
            .stdin(Stdio::null())
            .stdout(
                log.try_clone()
                    .map_err(ProvisionError::io("opening the PostgreSQL log"))?,
            )
            .stderr(log);
        // SIGQUIT is an immediate shutdown: the postmaster takes its backends
        // down with it, which is what a throwaway cluster wants when contend dies.
        let mut child = process::spawn_tied_to_contend(command, run_as, Signal::SIGQUIT).map_err(
            ProvisionError::io(format!("running {}", bin_dir.join("postgres").display())),
        )?;
        match wait_for_log_line(&mut child, log_path, log_offset, "ready to accept connections", timeout).await {
            Ok(()) => Ok((child, port)),
            Err(not_ready) => {
                let log_tail = not_ready.to_string();
                process::stop_child(&mut child, Signal::SIGQUIT, Duration::from_secs(5));
                let reason = important_lines(&log_tail);
                Err(if says_port_taken(&log_tail) {
                    StartFailure::PortTaken(reason)
                } else {
                    StartFailure::Failed(ProvisionError::ServerStart {
                        server: "PostgreSQL",
                        reason,
                    })
                })
            }
        }
    })
    .await
}

async fn start_redis(
    binary: &Path,
    run_dir: &Path,
    port_hint: Option<u16>,
    password: &str,
    run_as: Option<&RunAs>,
    timeout: Duration,
) -> Result<(Child, u16), ProvisionError> {
    let log_path = run_dir.join("redis.log");
    let log_path = &log_path;
    on_a_free_port("Redis", port_hint, |port| async move {
        let log_offset = fs::metadata(log_path).map(|m| m.len()).unwrap_or(0);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .map_err(ProvisionError::io("opening the Redis log"))?;
        // The password goes in a config file only the server's account can
        // read, never on the command line, where `ps` shows it to everyone.
        let config = run_dir.join(REDIS_CONFIG_FILE);
        let text = redis_config(port, password, Some(run_dir));
        // A retry on another port writes it afresh.
        let _ = fs::remove_file(&config);
        write_private(&config, text.as_bytes(), run_as).map_err(ProvisionError::io("writing the Redis config file"))?;
        let mut command = Command::new(binary);
        command
            .arg(&config)
            .current_dir(run_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(ProvisionError::io("opening the Redis log"))?)
            .stderr(log);
        let mut child = process::spawn_tied_to_contend(command, run_as, Signal::SIGKILL)
            .map_err(ProvisionError::io(format!("running {}", binary.display())))?;
        let _ = fs::write(run_dir.join(REDIS_PID_FILE), child.id().to_string());
        match wait_for_log_line(&mut child, log_path, log_offset, "Ready to accept connections", timeout).await {
            Ok(()) => Ok((child, port)),
            Err(not_ready) => {
                let log_tail = not_ready.to_string();
                process::stop_child(&mut child, Signal::SIGKILL, Duration::from_secs(1));
                let reason = last_lines(&log_tail, 3);
                Err(if says_port_taken(&log_tail) {
                    StartFailure::PortTaken(reason)
                } else {
                    StartFailure::Failed(ProvisionError::ServerStart {
                        server: "Redis",
                        reason,
                    })
                })
            }
        }
    })
    .await
}

/// File in a run directory holding redis-server's configuration (with its
/// password), readable by the server's account only.
const REDIS_CONFIG_FILE: &str = "redis.conf";

/// redis-server's configuration: loopback only, no persistence, the
/// password; `dir` is where it runs (local backend; a container's is its
/// working directory).
pub(super) fn redis_config(port: u16, password: &str, dir: Option<&Path>) -> String {
    let mut text = format!(
        "bind 127.0.0.1\nport {port}\nsave \"\"\nappendonly no\ndaemonize no\nlogfile \"\"\nrequirepass {}\n",
        redis_quoted(password)
    );
    if let Some(dir) = dir {
        text.push_str(&format!("dir {}\n", redis_quoted(&dir.display().to_string())));
    }
    text
}

/// A value quoted for a redis config line.
fn redis_quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Writes `bytes` to a new file with mode 0600, owned by `run_as` when
/// contend is root: readable by the server's account and nobody else.
pub(super) fn write_private(path: &Path, bytes: &[u8], run_as: Option<&RunAs>) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    if let Some(account) = run_as {
        std::os::unix::fs::chown(path, Some(account.uid), Some(account.gid))?;
    }
    Ok(())
}

/// A server that never logged that it was ready.
#[derive(Debug, thiserror::Error)]
pub(super) enum NotReady {
    /// It exited; what it logged since it was started.
    #[error("{}", if log.trim().is_empty() { format!("exited with {status} and logged nothing") } else { log.clone() })]
    Exited {
        /// Its log file.
        log_path: PathBuf,
        /// How it exited.
        status: std::process::ExitStatus,
        /// What it logged since it was started.
        log: String,
    },
    /// It ran past the timeout.
    #[error("not ready after {} s; last log lines: {}", after.as_secs(), last_lines(log, 3))]
    TimedOut {
        /// Its log file.
        log_path: PathBuf,
        /// The timeout.
        after: Duration,
        /// What it logged since it was started.
        log: String,
    },
}

/// Waits until `needle` appears in the log after `offset`. On exit of the
/// server or timeout, says so with the log written since `offset`.
pub(super) async fn wait_for_log_line(
    child: &mut Child,
    log_path: &Path,
    offset: u64,
    needle: &str,
    timeout: Duration,
) -> Result<(), NotReady> {
    let deadline = Instant::now() + timeout;
    loop {
        let written = read_log_from(log_path, offset);
        if written.contains(needle) {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            // Read once more: the last lines may have landed after the check.
            return Err(NotReady::Exited {
                log_path: log_path.to_path_buf(),
                status,
                log: read_log_from(log_path, offset),
            });
        }
        if Instant::now() >= deadline {
            return Err(NotReady::TimedOut {
                log_path: log_path.to_path_buf(),
                after: timeout,
                log: written,
            });
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn read_log_from(path: &Path, offset: u64) -> String {
    use std::io::Seek;
    let mut text = String::new();
    if let Ok(mut file) = fs::File::open(path) {
        if file.seek(std::io::SeekFrom::Start(offset)).is_ok() {
            let _ = file.read_to_string(&mut text);
        }
    }
    text
}

/// The FATAL/ERROR/PANIC lines of a PostgreSQL log (the ones that say why),
/// or its last lines when there are none.
fn important_lines(log: &str) -> String {
    let important: Vec<&str> = log
        .lines()
        .filter(|line| {
            line.contains("FATAL") || line.contains("ERROR") || line.contains("PANIC") || line.contains("HINT")
        })
        .collect();
    if important.is_empty() {
        last_lines(log, 3)
    } else {
        important.join(" / ")
    }
}

pub(super) fn last_lines(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(count)..].join(" / ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn important_lines_pick_the_reason() {
        let log = "2026 LOG:  starting\n2026 FATAL:  could not create semaphores: No space left on device\n2026 LOG:  database system is shut down\n";
        assert_eq!(
            important_lines(log),
            "2026 FATAL:  could not create semaphores: No space left on device"
        );
        assert_eq!(important_lines("a\nb\nc\nd\n"), "b / c / d");
    }

    #[test]
    fn bad_pg_bin_names_the_missing_binary() {
        let err = find_pg_bin_dir(Some(Path::new("/nonexistent"))).unwrap_err();
        assert!(err.to_string().contains("no initdb there"), "{err}");
    }
}
