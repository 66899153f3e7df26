//! Who owns a container: this host's identity and a process's start time,
//! as labels, and whether the owner a container names is provably gone.
//!
//! A docker daemon can be shared: by a CI runner's jobs, by processes in
//! other pid namespaces, by other machines pointing DOCKER_HOST at it. A
//! pid means nothing outside the pid namespace and boot it was read in, and
//! a pid can be reused. So a container carries the host's identity (machine
//! id, boot id, pid namespace), its contend's pid and that process's start
//! time; stale cleanup removes a container only when the identity is this
//! host's and the pid is dead or now names a process that started at
//! another time. Reads /proc and /etc; never talks to docker.

use std::fs;

use super::process::pid_alive;

/// Label: the identity of the host (and pid namespace) of the contend that
/// started the container.
pub(super) const LABEL_HOST: &str = "contend.host";
/// Label: that contend's pid.
pub(super) const LABEL_PID: &str = "contend.pid";
/// Label: that contend's start time, in clock ticks since boot
/// (/proc/<pid>/stat field 22).
pub(super) const LABEL_STARTED: &str = "contend.started";

/// This host's identity: `<machine id>/<boot id>/<pid namespace>`. The
/// machine id is /etc/machine-id (the hostname where it is missing); the
/// boot id changes at every boot, so pids of an earlier boot never match;
/// the pid namespace tells a contend in another container on the same
/// kernel apart.
pub fn host_identity() -> String {
    let machine = read_trimmed("/etc/machine-id")
        .or_else(|| read_trimmed("/var/lib/dbus/machine-id"))
        .or_else(|| read_trimmed("/proc/sys/kernel/hostname"))
        .unwrap_or_else(|| "unknown-machine".into());
    let boot = read_trimmed("/proc/sys/kernel/random/boot_id").unwrap_or_else(|| "unknown-boot".into());
    let pid_namespace = fs::read_link("/proc/self/ns/pid")
        .map(|link| link.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown-pidns".into());
    format!("{machine}/{boot}/{pid_namespace}")
}

/// Start time of process `pid` in clock ticks since boot (field 22 of
/// /proc/<pid>/stat); `None` when it does not exist.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name (which may hold spaces
    // or parentheses): state is field 3, so start time is the 20th after.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// The labels naming this contend process as a container's owner.
pub(super) fn owner_labels() -> [(&'static str, String); 3] {
    let pid = std::process::id();
    [
        (LABEL_HOST, host_identity()),
        (LABEL_PID, pid.to_string()),
        (
            LABEL_STARTED,
            process_start_time(pid as i32).map_or_else(String::new, |t| t.to_string()),
        ),
    ]
}

/// What stale cleanup may do with a container, from its labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Owner {
    /// Its contend is provably gone from this host: remove it.
    Gone {
        /// The pid it named.
        pid: i32,
    },
    /// Its contend still runs here: leave it.
    Alive,
    /// Started from another host or pid namespace: nothing here can tell
    /// whether its contend lives, so leave it.
    Elsewhere,
    /// Labelled by an older contend (a pid, no host): leave it, and say so.
    Unknown,
}

/// Whose a container with `labels` is, seen from this host (`this_host`
/// is [`host_identity`]).
pub(super) fn owner_of(labels: &std::collections::HashMap<String, String>, this_host: &str) -> Owner {
    let Some(pid) = labels.get(LABEL_PID).and_then(|p| p.parse::<i32>().ok()) else {
        return Owner::Unknown;
    };
    match labels.get(LABEL_HOST) {
        None => return Owner::Unknown,
        Some(host) if host != this_host => return Owner::Elsewhere,
        Some(_) => {}
    }
    if !pid_alive(pid) {
        return Owner::Gone { pid };
    }
    let started = labels.get(LABEL_STARTED).and_then(|s| s.parse::<u64>().ok());
    match (started, process_start_time(pid)) {
        // The pid was reused by a process that started at another time.
        (Some(labelled), Some(now)) if labelled != now => Owner::Gone { pid },
        _ => Owner::Alive,
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn labels(pairs: &[(&str, String)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    #[test]
    fn this_process_has_a_start_time_and_a_stable_identity() {
        let me = std::process::id() as i32;
        assert!(process_start_time(me).is_some());
        assert_eq!(process_start_time(me), process_start_time(me));
        assert_eq!(host_identity(), host_identity());
        assert_eq!(host_identity().split('/').count(), 3);
    }

    #[test]
    fn only_a_provably_gone_owner_on_this_host_is_gone() {
        let host = host_identity();
        let me = std::process::id().to_string();
        let started = process_start_time(std::process::id() as i32).unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id().to_string();
        child.wait().unwrap();
        let own = labels(&[
            (LABEL_HOST, host.clone()),
            (LABEL_PID, me.clone()),
            (LABEL_STARTED, started.to_string()),
        ]);
        assert_eq!(owner_of(&own, &host), Owner::Alive);
        let reused = labels(&[
            (LABEL_HOST, host.clone()),
            (LABEL_PID, me.clone()),
            (LABEL_STARTED, (started + 1).to_string()),
        ]);
        assert!(matches!(owner_of(&reused, &host), Owner::Gone { .. }));
        let gone = labels(&[(LABEL_HOST, host.clone()), (LABEL_PID, dead.clone())]);
        assert!(matches!(owner_of(&gone, &host), Owner::Gone { .. }));
        let elsewhere = labels(&[(LABEL_HOST, "other/boot/pid:[1]".into()), (LABEL_PID, dead.clone())]);
        assert_eq!(owner_of(&elsewhere, &host), Owner::Elsewhere);
        let old = labels(&[(LABEL_PID, dead)]);
        assert_eq!(owner_of(&old, &host), Owner::Unknown);
    }
}
