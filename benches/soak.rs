//! Soak: does contend hold its memory and file descriptors over a long
//! cell? One `contend run --workload sleep --rate R` open-loop cell on a
//! local server for `CONTEND_SOAK_MINUTES` (default 20) minutes, as a child
//! process; every `CONTEND_SOAK_SAMPLE_S` seconds (default 60) its resident
//! memory (`VmRSS` of /proc/<pid>/status), threads and open file
//! descriptors (/proc/<pid>/fd) are read. Prints a Markdown table and a
//! verdict, also written to results/<run>/soak.md: flat when the file
//! descriptors stay within 2 of each other once the cell runs and resident
//! memory grows less than 10% (plus 8 MiB) from the first sample after a
//! minute to the last. Exits 1 when they are not flat. Some growth is by
//! design: the cell's per-second timeline (a few hundred bytes per second
//! per recorder shard) and the sampler's activity samples (two a second)
//! are kept until the cell's record is written.
//!
//! Not a test and not part of the quick `cargo bench`: `cargo bench --bench
//! soak`. Other settings: `CONTEND_SOAK_RATE` (default 200) arrivals per
//! second.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};

#[path = "support/mod.rs"]
mod support;

struct Settings {
    minutes: u64,
    sample: Duration,
    rate: f64,
}

impl Settings {
    fn from_env() -> anyhow::Result<Settings> {
        let read = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_string());
        let minutes: u64 = read("CONTEND_SOAK_MINUTES", "20")
            .parse()
            .context("CONTEND_SOAK_MINUTES: give whole minutes, e.g. 20")?;
        let sample_s: u64 = read("CONTEND_SOAK_SAMPLE_S", "60")
            .parse()
            .context("CONTEND_SOAK_SAMPLE_S: give whole seconds, e.g. 60")?;
        let rate: f64 = read("CONTEND_SOAK_RATE", "200")
            .parse()
            .context("CONTEND_SOAK_RATE: give arrivals per second, e.g. 200")?;
        if minutes == 0 || sample_s == 0 || !(rate > 0.0 && rate.is_finite()) {
            bail!("CONTEND_SOAK_MINUTES, CONTEND_SOAK_SAMPLE_S and CONTEND_SOAK_RATE must be above 0");
        }
        Ok(Settings {
            minutes,
            sample: Duration::from_secs(sample_s),
            rate,
        })
    }
}

/// What /proc says of a process at one moment.
struct Sample {
    at_s: u64,
    rss_kib: u64,
    threads: u64,
    fds: usize,
}

/// The process's resident memory, threads and open descriptors; `None`
/// once it is gone.
fn sample(pid: u32, at_s: u64) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|value| value.parse::<u64>().ok())
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some(Sample {
        at_s,
        rss_kib: field("VmRSS:")?,
        threads: field("Threads:")?,
        fds,
    })
}

fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    support::prepare_machine()?;
    let stamp = humantime::format_rfc3339_seconds(SystemTime::now())
        .to_string()
        .replace([':', '-'], "");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("results")
        .join(format!("{}-soak", stamp.trim_end_matches('Z')));
    let results = dir.join("run");
    eprintln!(
        "soak: contend run --workload sleep --rate {} for {} min, sampled every {} s",
        settings.rate,
        settings.minutes,
        settings.sample.as_secs()
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_contend"))
        .args(["run", "--backend", "local", "--workload", "sleep"])
        .args(["--rate", &settings.rate.to_string(), "--max-in-flight", "64"])
        .args(["--duration", &format!("{}m", settings.minutes), "--warmup", "2s"])
        .arg("--results")
        .arg(&results)
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting contend")?;
    let pid = child.id();
    let started = Instant::now();
    let mut samples = Vec::new();
    let status = loop {
        let next = started + settings.sample * samples.len() as u32;
        while Instant::now() < next {
            if child.try_wait()?.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if let Some(sample) = sample(pid, started.elapsed().as_secs()) {
            eprintln!(
                "soak: {:>5} s  rss {:>7} KiB  threads {:>3}  fds {:>4}",
                sample.at_s, sample.rss_kib, sample.threads, sample.fds
            );
            samples.push(sample);
        }
    };
    if !status.success() {
        bail!(
            "contend run ended with {status}; its run is under {}",
            results.display()
        );
    }
    let run_dir = std::fs::read_dir(&results)?
        .flatten()
        .map(|entry| entry.path())
        .next()
        .with_context(|| format!("contend wrote no run under {}", results.display()))?;
    let cell = contend::results::read_cells(&run_dir)?
        .pop()
        .context("contend's run has no cell")?;

    let mut report = format!(
        "contend run --workload sleep --rate {} --max-in-flight 64, {} min measured, local PostgreSQL: \
         {} ok, {} errors, achieved {:.1}/s\n\n\
         | at s | VmRSS KiB | threads | open fds |\n| ---: | ---: | ---: | ---: |\n",
        settings.rate,
        settings.minutes,
        cell.metrics.ok,
        cell.metrics.errors,
        cell.schedule.as_ref().map_or(0.0, |s| s.achieved_rate_per_s),
    );
    for s in &samples {
        report.push_str(&format!("| {} | {} | {} | {} |\n", s.at_s, s.rss_kib, s.threads, s.fds));
    }
    // The first minute holds the start (servers, template, pools filling).
    let running: Vec<&Sample> = samples.iter().filter(|s| s.at_s >= 60).collect();
    let (Some(first), Some(last)) = (running.first(), running.last()) else {
        bail!("no sample after the first minute: run longer (CONTEND_SOAK_MINUTES)");
    };
    let fd_spread = running.iter().map(|s| s.fds).max().unwrap_or(0) - running.iter().map(|s| s.fds).min().unwrap_or(0);
    let rss_growth_kib = last.rss_kib as i64 - first.rss_kib as i64;
    let rss_flat = (rss_growth_kib as f64) < first.rss_kib as f64 * 0.10 + 8192.0;
    let flat = rss_flat && fd_spread <= 2;
    let minutes = (last.at_s - first.at_s).max(1) as f64 / 60.0;
    report.push_str(&format!(
        "\nFrom {} s to {} s: VmRSS {:+} KiB ({:+.1}%, {:+.0} KiB/min, {:.1} B per transaction), \
         open fds within {} of each other: {}\n",
        first.at_s,
        last.at_s,
        rss_growth_kib,
        rss_growth_kib as f64 * 100.0 / first.rss_kib as f64,
        rss_growth_kib as f64 / minutes,
        rss_growth_kib as f64 * 1024.0 / (settings.rate * minutes * 60.0),
        fd_spread,
        if flat { "flat" } else { "NOT flat" },
    ));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("soak.md"), &report)?;
    print!("{report}");
    eprintln!("soak: written to {}", dir.join("soak.md").display());
    if !flat {
        std::process::exit(1);
    }
    Ok(())
}
