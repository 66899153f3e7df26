//! Server processes that die with contend.
//!
//! Owns how local server processes are spawned and stopped: as the `postgres`
//! user when contend runs as root (initdb and postgres refuse root), with a
//! parent-death signal so that even a SIGKILL of contend takes them down,
//! with an environment cleared of all but what a server needs, and from one
//! thread that lives as long as the process. It knows nothing about
//! PostgreSQL or Redis themselves.
//!
//! Why one long-lived thread: `PR_SET_PDEATHSIG` fires when the *thread* that
//! forked the child exits, not the process. Tokio's blocking threads and the
//! test harness's threads come and go, so every spawn is handed to a thread
//! that never exits.

use std::io;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::{Pid, User};

/// The account servers run as, when contend itself runs as root.
#[derive(Debug, Clone)]
pub struct RunAs {
    /// User name, for messages.
    pub name: String,
    /// Numeric user id.
    pub uid: u32,
    /// Numeric group id.
    pub gid: u32,
}

/// Why there is no account to run servers as.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// Root, and no `postgres` user.
    #[error(
        "contend runs as root and there is no `postgres` user to run the servers as \
         (initdb refuses root): create one (useradd --system postgres) or run contend as another user"
    )]
    NoPostgresUser,
    /// The user database could not be read.
    #[error("could not look up the `postgres` user: {error}")]
    Lookup {
        /// The lookup's error.
        error: nix::Error,
    },
}

/// The account to run servers as: `None` when contend is not root (servers
/// then run as the current user), the `postgres` user when it is.
pub fn server_account() -> Result<Option<RunAs>, AccountError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    match User::from_name("postgres") {
        Ok(Some(user)) => Ok(Some(RunAs {
            name: user.name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        })),
        Ok(None) => Err(AccountError::NoPostgresUser),
        Err(error) => Err(AccountError::Lookup { error }),
    }
}

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `command` so that the child receives `death_signal` when contend
/// dies, from the long-lived spawner thread.
pub fn spawn_tied_to_contend(mut command: Command, run_as: Option<&RunAs>, death_signal: Signal) -> io::Result<Child> {
    use std::os::unix::process::CommandExt;
    if let Some(account) = run_as {
        command.uid(account.uid).gid(account.gid);
    }
    server_environment(&mut command);
    set_parent_death_signal(&mut command, death_signal);
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner()
        .lock()
        .map_err(|_| io::Error::other("spawner lock poisoned"))?
        .send((command, reply_tx))
        .map_err(|_| io::Error::other("the server spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("the server spawner thread did not answer"))?
}

/// Variables of contend's environment a server keeps: where to find
/// programs, the locale and time zone, and the temp dir. Everything else
/// (DATABASE_URL, REDIS_URL, PGPASSWORD, cloud credentials…) stays with
/// contend: a server's environment is readable in /proc by its account.
const SERVER_ENVIRONMENT: &[&str] = &["PATH", "LANG", "LANGUAGE", "TZ", "TMPDIR"];

/// Clears what `command` would inherit, keeping [`SERVER_ENVIRONMENT`] and
/// `LC_*`, and the variables the caller set on it explicitly.
fn server_environment(command: &mut Command) {
    let explicit: Vec<(std::ffi::OsString, Option<std::ffi::OsString>)> = command
        .get_envs()
        .map(|(key, value)| (key.to_owned(), value.map(ToOwned::to_owned)))
        .collect();
    command.env_clear();
    for (key, value) in std::env::vars_os() {
        let name = key.to_string_lossy();
        if SERVER_ENVIRONMENT.contains(&name.as_ref()) || name.starts_with("LC_") {
            command.env(&key, value);
        }
    }
    for (key, value) in explicit {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
}

fn spawner() -> &'static Mutex<mpsc::Sender<SpawnRequest>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("contend-server-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("spawning the server spawner thread");
        Mutex::new(tx)
    })
}

/// Arranges for the child to get `signal` when its parent thread dies.
///
/// One of two `unsafe` blocks in contend (network/delay.rs has the other): `pre_exec` runs between fork and exec, where
/// only async-signal-safe calls are allowed; `prctl` and `getppid` are. std
/// runs `pre_exec` after the uid/gid switch, which matters because changing
/// credentials clears the parent-death signal.
#[allow(unsafe_code)]
fn set_parent_death_signal(command: &mut Command, signal: Signal) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    let signal = signal as libc::c_int;
    // SAFETY: the closure only makes async-signal-safe syscalls and touches
    // no memory shared with other threads.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // contend may have died between fork and prctl: then nobody would
            // ever signal this child, so do not start it at all.
            if libc::getppid() != parent {
                return Err(io::Error::other("contend exited while starting a server"));
            }
            Ok(())
        });
    }
}

/// Sends `first` to the child, waits up to `grace` for it to exit, then
/// SIGKILLs it. Returns once the child is reaped. A stopped child (SIGSTOP,
/// a debugger) and its own children are continued first: a stopped
/// process only acts on its signals once it runs, and a stopped backend
/// outlives its postmaster's SIGKILL.
pub fn stop_child(child: &mut Child, first: Signal, grace: Duration) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let pid = Pid::from_raw(child.id() as i32);
    continue_with_children(pid);
    let _ = kill(pid, first);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// SIGCONT to `pid` and to each of its children (harmless to a process
/// that runs).
fn continue_with_children(pid: Pid) {
    let _ = kill(pid, Signal::SIGCONT);
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    for child in children
        .split_whitespace()
        .filter_map(|child| child.parse::<i32>().ok())
    {
        let _ = kill(Pid::from_raw(child), Signal::SIGCONT);
    }
}

/// Whether a process with this pid is running. A zombie is not: where the
/// init process does not reap (some containers), a killed contend lingers as
/// one.
pub fn pid_alive(pid: i32) -> bool {
    if pid <= 0 || kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name, which may itself
        // contain spaces or parentheses.
        Ok(stat) => stat
            .rfind(')')
            .and_then(|end| stat[end + 1..].split_whitespace().next())
            .is_none_or(|state| state != "Z" && state != "X"),
        Err(_) => true,
    }
}
