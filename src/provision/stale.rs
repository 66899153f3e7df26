//! Leftovers of contend runs that were killed before they could clean up.
//!
//! A SIGKILL leaves no chance to remove a run directory (the servers in it
//! die by their parent-death signal). Each start of contend looks for run
//! directories whose owning contend is gone, stops any server still running
//! from one, removes it, and says so. Docker leftovers are handled by the
//! docker backend, which knows the labels.

use std::fs;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::docker_api::PROXY_SOCKET_PREFIX;
use super::local::{OWNER_FILE, REDIS_PID_FILE, RUN_DIR_PREFIX};
use super::owner::{host_identity, process_start_time};
use super::pgbouncer::PGBOUNCER_PID_FILE;
use super::process::pid_alive;

/// Removes run directories left by dead contend processes, returning one
/// line per directory removed.
pub fn remove_stale_local_runs() -> Vec<String> {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return Vec::new();
    };
    let this_host = host_identity();
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(pid) = proxy_socket_owner(name) {
            if proxy_socket_stale(&entry.path(), pid) {
                let _ = fs::remove_file(entry.path());
            }
            continue;
        }
        if !name.starts_with(RUN_DIR_PREFIX) {
            continue;
        }
        let dir = entry.path();
        let owner = read_pid(&dir.join(OWNER_FILE));
        if !owner_gone(&dir.join(OWNER_FILE), &this_host) {
            continue;
        }
        let stopped = stop_leftover_servers(&dir);
        if fs::remove_dir_all(&dir).is_ok() {
            let owner = owner.map_or("unknown".to_string(), |pid| pid.to_string());
            let servers = if stopped == 0 {
                String::new()
            } else {
                format!(", stopping {stopped} server process(es) still running from it")
            };
            removed.push(format!(
                "removed {} left by contend pid {owner}, which did not exit cleanly{servers}",
                dir.display()
            ));
        }
    }
    removed
}

/// Whether the contend an owner file names is provably gone: the file
/// names this host and a pid that is dead or was reused (another start
/// time). A file naming another host or pid namespace is never stale from
/// here; one with a pid alone (an older contend's) is stale when the pid is
/// dead, and so is a missing or unreadable one (a contend killed before it
/// wrote it).
fn owner_gone(owner_file: &Path, this_host: &str) -> bool {
    let text = fs::read_to_string(owner_file).unwrap_or_default();
    let mut lines = text.lines().map(str::trim);
    let Some(pid) = lines.next().and_then(|p| p.parse::<i32>().ok()) else {
        return true;
    };
    let started = lines.next().and_then(|s| s.parse::<u64>().ok());
    match lines.next() {
        Some(host) if !host.is_empty() && host != this_host => false,
        _ if !pid_alive(pid) => true,
        _ => matches!((started, process_start_time(pid)), (Some(then), Some(now)) if then != now),
    }
}

/// Stops a postmaster, redis-server or pgbouncer still running from `dir`; returns how
/// many were signalled. A pid is only signalled when it runs inside the
/// directory, so a reused pid is never hit.
fn stop_leftover_servers(dir: &Path) -> usize {
    let candidates = [
        (read_pid(&dir.join("data").join("postmaster.pid")), Signal::SIGQUIT),
        (read_pid(&dir.join(REDIS_PID_FILE)), Signal::SIGKILL),
        (read_pid(&dir.join(PGBOUNCER_PID_FILE)), Signal::SIGKILL),
    ];
    let mut stopped = 0;
    for (pid, signal) in candidates {
        let Some(pid) = pid else { continue };
        // Every server was started in the run directory (postgres then
        // moves into its data directory, below it).
        let runs_there = fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(dir));
        if runs_there && kill(Pid::from_raw(pid), signal).is_ok() {
            stopped += 1;
            for _ in 0..100 {
                if !pid_alive(pid) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    stopped
}

/// Whether a docker API proxy socket is a dead contend's: nothing runs
/// behind it once its contend is gone. One that still accepts a connection
/// is a live contend's, whatever its pid says here (another pid namespace).
fn proxy_socket_stale(path: &Path, pid: i32) -> bool {
    !pid_alive(pid) && std::os::unix::net::UnixStream::connect(path).is_err()
}

/// `contend-docker-<pid>-<random>.sock` (or an older contend's
/// `contend-docker-<pid>.sock`) → pid.
fn proxy_socket_owner(file_name: &str) -> Option<i32> {
    let middle = file_name.strip_prefix(PROXY_SOCKET_PREFIX)?.strip_suffix(".sock")?;
    middle.split('-').next()?.parse().ok()
}

/// The first line of a pid file as a pid.
fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path).ok()?.lines().next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_socket_names_give_their_pid_in_both_forms() {
        assert_eq!(proxy_socket_owner("contend-docker-123-Ab3dEf9h.sock"), Some(123));
        assert_eq!(proxy_socket_owner("contend-docker-123.sock"), Some(123));
        assert_eq!(proxy_socket_owner("contend-docker-x.sock"), None);
        assert_eq!(proxy_socket_owner("contend-run-123"), None);
    }

    #[test]
    fn a_socket_someone_listens_on_is_never_stale() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id() as i32;
        child.wait().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("contend-docker-{dead}-live.sock"));
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert!(!proxy_socket_stale(&path, dead), "someone listens: live");
        drop(listener);
        assert!(proxy_socket_stale(&path, dead), "nobody listens and the pid is dead");
        assert!(!proxy_socket_stale(&path, std::process::id() as i32), "the pid lives");
    }
}
