//! Helpers shared by the integration tests: machine preparation, running the
//! contend binary in an isolated temp dir, and looking for leftovers.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Installs what the tests need beyond the machine image (redis-server, the
/// docker stand-in images) once per test binary, through the project's own
/// setup script.
pub fn prepare_machine() {
    static PREPARED: OnceLock<Result<(), String>> = OnceLock::new();
    run_setup(&PREPARED, &[]);
}

/// [`prepare_machine`], and chromium-headless-shell for rendering reports.
pub fn prepare_machine_with_chromium() {
    static PREPARED: OnceLock<Result<(), String>> = OnceLock::new();
    run_setup(&PREPARED, &["--with-chromium"]);
}

fn run_setup(once: &OnceLock<Result<(), String>>, args: &[&str]) {
    let prepared = once.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/setup.sh");
        let output = Command::new("bash")
            .arg(&script)
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    });
    if let Err(output) = prepared {
        panic!("scripts/setup.sh failed:\n{output}");
    }
}

/// A temp dir used as contend's TMPDIR, so a test can see exactly what one
/// contend run left behind.
pub struct IsolatedTmp {
    pub dir: tempfile::TempDir,
}

impl IsolatedTmp {
    pub fn new() -> IsolatedTmp {
        IsolatedTmp {
            dir: tempfile::Builder::new().prefix("contend-test-").tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// contend's leftovers in this dir: run directories and proxy sockets
    /// of processes that are gone.
    pub fn run_dirs(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("contend-run-"))
            .collect()
    }

    /// The contend binary, with this dir as its TMPDIR.
    pub fn contend(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_contend"));
        command
            .env("TMPDIR", self.path())
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL");
        command
    }
}

/// Processes whose command line mentions `needle` (zombies excluded).
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push(format!("{pid}: {cmdline}"));
        }
    }
    found
}

/// Polls `check` until it is true or `limit` passes; returns the time taken.
pub fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// Stdout and stderr of an output, for assertion messages.
pub fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

/// Containers labelled with `contend.pid=<pid>`.
pub fn containers_of_pid(pid: u32) -> Vec<String> {
    let output = Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label=contend.pid={pid}")])
        .output()
        .expect("docker CLI");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// A child process killed when the test ends, pass or fail: a failed
/// assertion must not leave a `contend provision` waiting for Ctrl-C.
pub struct KillOnDrop(pub std::process::Child);

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Local servers for a library-level test, after preparing the machine.
pub async fn local_servers(max_connections: Option<u32>) -> contend::provision::Servers {
    prepare_machine();
    contend::provision::provision(&contend::provision::ProvisionOptions {
        backend: contend::provision::BackendChoice::Local,
        max_connections,
        ..Default::default()
    })
    .await
    .expect("starting local servers")
}
