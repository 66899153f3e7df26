//! What the benches share: preparing the machine, finding pgbench, and
//! running a child to its end with what it cost. Included by each bench
//! with `#[path = "support/mod.rs"] mod support;` (every bench is a crate
//! of its own); not every bench uses every item.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context};
use nix::sys::resource::{getrusage, UsageWho};

/// Runs scripts/setup.sh: what the machine image lacks (redis-server, the
/// stand-in images) is installed or built, as for the tests.
pub fn prepare_machine() -> anyhow::Result<()> {
    let status = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/setup.sh"))
        .status()
        .context("running scripts/setup.sh")?;
    if !status.success() {
        bail!("scripts/setup.sh failed");
    }
    Ok(())
}

/// `PGBENCH` from the environment, else Debian's PostgreSQL 15 pgbench,
/// else pgbench on the PATH.
pub fn pgbench_binary() -> PathBuf {
    std::env::var_os("PGBENCH").map(PathBuf::from).unwrap_or_else(|| {
        let debian = PathBuf::from("/usr/lib/postgresql/15/bin/pgbench");
        if debian.exists() {
            debian
        } else {
            PathBuf::from("pgbench")
        }
    })
}

/// Children's user + system CPU seconds so far (waited-for children only).
fn children_cpu_s() -> anyhow::Result<f64> {
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).context("getrusage(RUSAGE_CHILDREN)")?;
    let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Ok(seconds(usage.user_time()) + seconds(usage.system_time()))
}

/// Runs `command` to its end; returns its stdout and the CPU it used (the
/// kernel's accounting of the child). A failure carries both outputs.
pub fn run_child(command: &mut Command, what: &str) -> anyhow::Result<(String, f64)> {
    let before = children_cpu_s()?;
    let output = command.output().with_context(|| format!("starting {what}"))?;
    let cpu_s = children_cpu_s()? - before;
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    if !output.status.success() {
        bail!(
            "{what} failed ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok((stdout, cpu_s))
}
