//! Open-loop accuracy: does contend offer the rate it is asked for, and does
//! it time a known service time as it is? `contend run --workload sleep
//! --rate R` (one `pg_sleep` of `delay_us`, 5 ms by default, per
//! transaction, arrivals a seeded Poisson process) against one local
//! server, as a child process; then the same transaction (BEGIN, the same
//! pg_sleep, END) through `pgbench -M prepared -c 1 -r` as the reference for
//! what a client sees of that delay. Reports, per rate: arrivals scheduled
//! in the window and achieved against the target, and contend's p50
//! against the 5 ms asked for and against pgbench's mean, as a Markdown
//! table on stdout and in results/<run>/open-loop.md.
//!
//! A Poisson process's count over a window strays from rate × window by
//! about √(rate × window): the table shows the scheduled count apart, so
//! the driver's accuracy (achieved against scheduled) is not confused with
//! the draw.
//!
//! Not part of the quick `cargo bench`: `cargo bench --bench open_loop`.
//! Settings (environment): `CONTEND_OPEN_RATES` (default 200,1000) per
//! second, `CONTEND_OPEN_SECONDS` measured per rate (default 20), `PGBENCH`
//! (default /usr/lib/postgresql/15/bin/pgbench, else pgbench on the PATH).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{bail, Context};
use contend::provision::{provision, BackendChoice, ProvisionOptions};

#[path = "support/mod.rs"]
mod support;

/// The sleep workload's delay, microseconds (workloads/sleep.toml).
const DELAY_US: u64 = 5_000;

struct Settings {
    rates: Vec<f64>,
    seconds: u64,
    pgbench: PathBuf,
}

impl Settings {
    fn from_env() -> anyhow::Result<Settings> {
        let read = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_string());
        let rates = read("CONTEND_OPEN_RATES", "200,1000")
            .split(',')
            .map(|n| n.trim().parse::<f64>())
            .collect::<Result<Vec<_>, _>>()
            .context("CONTEND_OPEN_RATES: give rates per second like 200,1000")?;
        let seconds = read("CONTEND_OPEN_SECONDS", "20")
            .parse()
            .context("CONTEND_OPEN_SECONDS: give whole seconds, e.g. 20")?;
        if seconds == 0 || rates.iter().any(|rate| !(*rate > 0.0)) {
            bail!("CONTEND_OPEN_SECONDS and every rate of CONTEND_OPEN_RATES must be above 0");
        }
        let pgbench = support::pgbench_binary();
        Ok(Settings {
            rates,
            seconds,
            pgbench,
        })
    }
}

fn output_of(command: &mut Command, what: &str) -> anyhow::Result<String> {
    support::run_child(command, what).map(|(stdout, _)| stdout)
}

/// pgbench's mean transaction latency and the pg_sleep statement's mean, ms.
fn pgbench_reference(settings: &Settings, url: &str, dir: &Path) -> anyhow::Result<(f64, f64)> {
    std::fs::create_dir_all(dir)?;
    let script = dir.join("sleep.sql");
    std::fs::write(
        &script,
        format!("BEGIN;\nSELECT pg_sleep({DELAY_US} / 1000000.0);\nEND;\n"),
    )?;
    let mut command = Command::new(&settings.pgbench);
    command
        .args(["-M", "prepared", "-n", "-r", "-c", "1"])
        .args(["-T", &settings.seconds.to_string()])
        .arg("-f")
        .arg(&script)
        .arg(url);
    let stdout = output_of(&mut command, "pgbench")?;
    let first_number = |line: &str| line.split_whitespace().next().and_then(|n| n.parse::<f64>().ok());
    let transaction_ms = stdout
        .lines()
        .find_map(|line| line.trim().strip_prefix("latency average ="))
        .and_then(first_number)
        .with_context(|| format!("pgbench printed no latency average:\n{stdout}"))?;
    let statement_ms = stdout
        .lines()
        .filter(|line| line.contains("pg_sleep"))
        .find_map(first_number)
        .with_context(|| format!("pgbench printed no per-statement latency:\n{stdout}"))?;
    Ok((transaction_ms, statement_ms))
}

fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    support::prepare_machine()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let servers = runtime.block_on(provision(&ProvisionOptions {
        backend: BackendChoice::Local,
        ..Default::default()
    }))?;
    let outcome = measure(&settings, &servers.postgres.url);
    runtime.block_on(servers.shutdown());
    print!("{}", outcome?);
    Ok(())
}

fn measure(settings: &Settings, url: &str) -> anyhow::Result<String> {
    let stamp = humantime::format_rfc3339_seconds(SystemTime::now())
        .to_string()
        .replace([':', '-'], "");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("results")
        .join(format!("{}-open-loop", stamp.trim_end_matches('Z')));
    eprintln!("open_loop: pgbench reference, 1 client, {} s", settings.seconds);
    let (pgbench_transaction_ms, pgbench_statement_ms) = pgbench_reference(settings, url, &dir)?;
    let mut table = format!(
        "contend run --workload sleep --rate R (pg_sleep of {delay_ms} ms per transaction), {} s measured, \
         local PostgreSQL; reference: pgbench -M prepared -c 1 on BEGIN; SELECT pg_sleep; END: \
         transaction {pgbench_transaction_ms:.3} ms, pg_sleep statement {pgbench_statement_ms:.3} ms (means)\n\n\
         | target /s | scheduled /s | achieved /s | achieved / target | achieved / scheduled | errors | \
         p50 ms | p50 / {delay_ms} ms | p50 / pgbench mean | in-db p50 ms | schedule lag p99 ms |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        settings.seconds,
        delay_ms = DELAY_US as f64 / 1000.0,
    );
    for &rate in &settings.rates {
        eprintln!("open_loop: contend at {rate}/s");
        let results = dir.join(format!("rate-{rate}"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_contend"));
        command
            .args(["run", "--backend", "external", "--database-url", url])
            .args(["--workload", "sleep", "--rate", &rate.to_string()])
            .args(["--duration", &format!("{}s", settings.seconds), "--warmup", "1s"])
            .arg("--results")
            .arg(&results)
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL");
        output_of(&mut command, "contend run")?;
        let run_dir = std::fs::read_dir(&results)?
            .flatten()
            .map(|entry| entry.path())
            .next()
            .with_context(|| format!("contend wrote no run under {}", results.display()))?;
        let cell = contend::results::read_cells(&run_dir)?
            .pop()
            .context("contend's run has no cell")?;
        let schedule = cell.schedule.context("an open-loop cell without its schedule report")?;
        let operation = cell
            .metrics
            .operations
            .first()
            .context("a cell without its operation")?;
        let scheduled_per_s = schedule.scheduled as f64 / settings.seconds as f64;
        let p50_ms = operation.end_to_end.p50_us as f64 / 1000.0;
        table.push_str(&format!(
            "| {rate:.0} | {scheduled_per_s:.1} | {:.1} | {:.4} | {:.4} | {} | {p50_ms:.3} | {:.3} | {:.3} | {:.3} | {:.3} |\n",
            schedule.achieved_rate_per_s,
            schedule.achieved_rate_per_s / rate,
            schedule.achieved_rate_per_s / scheduled_per_s,
            cell.metrics.errors,
            p50_ms / (DELAY_US as f64 / 1000.0),
            p50_ms / pgbench_transaction_ms,
            operation.in_db.p50_us as f64 / 1000.0,
            schedule.lag.p99_us as f64 / 1000.0,
        ));
    }
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("open-loop.md"), &table)?;
    eprintln!("open_loop: written to {}", dir.join("open-loop.md").display());
    Ok(table)
}
