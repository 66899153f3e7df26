//! contend against pgbench on exactly the same statements: for pgbench's
//! tpcb-like and select-only scripts (sql/script/) at several client
//! counts, `pgbench -M prepared -c N -j 2 -T D -f SCRIPT` and
//! `contend run --workload script --script SCRIPT` with N clients, one after
//! the other against one local server, each as a child process. As pgbench
//! `-j 2` runs two threads each owning half the clients and their
//! connections, contend runs two application instances on two driver
//! threads, each with half the clients and a pool of N/2 (`--instances 2
//! --pool-size N/2 --driver-threads 2`; 1 client: one instance, a pool of
//! 1), so client counts above 1 must be even. Reports contend's throughput as a share of pgbench's and each
//! tool's client CPU seconds per 1,000 transactions, from the kernel's
//! accounting of the child (getrusage RUSAGE_CHILDREN around its wait), as a
//! Markdown table on stdout and in results/<run>/versus-pgbench.md.
//!
//! CPU per transaction is a slope: each tool runs twice, for half the
//! duration and for the whole of it, and the extra CPU of the longer run is
//! divided by its extra transactions. What a run costs once whatever its
//! length (pgbench connecting; contend copying the template, starting the
//! server sampler, writing its report) cancels out, and is shown apart as
//! the fixed cost. Throughput is the longer run's.
//!
//! Minutes long, so not part of the quick `cargo bench`: run it with
//! `cargo bench --bench versus_pgbench`. Settings (environment):
//! `CONTEND_VERSUS_SECONDS` of the longer run (default 10, at least 2), `CONTEND_VERSUS_CLIENTS`
//! (default 1,8,64), `CONTEND_VERSUS_SCALE` (default 10), `PGBENCH` (default
//! /usr/lib/postgresql/15/bin/pgbench, else pgbench on the PATH).
//!
//! Both tools see the same data shape: pgbench's database is made by
//! `pgbench -i -s SCALE` and vacuumed before each run (`-v`); contend copies
//! its template, made by `--pgbench-scale SCALE`, for each run. Neither has a
//! warmup, and contend's clients start together (`--ramp herd`), as
//! pgbench's do. Both connect over TCP to 127.0.0.1 with the same URL.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use contend::provision::database_url;
use contend::provision::{provision, BackendChoice, ProvisionOptions};
use support::{prepare_machine, run_child};

#[path = "support/mod.rs"]
mod support;

const SCRIPTS: &[&str] = &["tpcb-like", "select-only"];
const PGBENCH_DATABASE: &str = "contend_versus_pgbench";

/// What the environment asks for.
struct Settings {
    seconds: u64,
    clients: Vec<u32>,
    scale: u32,
    pgbench: PathBuf,
}

impl Settings {
    fn from_env() -> anyhow::Result<Settings> {
        let read = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_string());
        let seconds = read("CONTEND_VERSUS_SECONDS", "10")
            .parse()
            .context("CONTEND_VERSUS_SECONDS: give whole seconds, e.g. 10")?;
        let clients = read("CONTEND_VERSUS_CLIENTS", "1,8,64")
            .split(',')
            .map(|n| n.trim().parse::<u32>())
            .collect::<Result<Vec<_>, _>>()
            .context("CONTEND_VERSUS_CLIENTS: give client counts like 1,8,64")?;
        let scale = read("CONTEND_VERSUS_SCALE", "10")
            .parse()
            .context("CONTEND_VERSUS_SCALE: give pgbench's scale, e.g. 10")?;
        let pgbench = support::pgbench_binary();
        if seconds < 2 || clients.contains(&0) || scale == 0 {
            bail!("CONTEND_VERSUS_SECONDS must be at least 2 (each tool also runs for half of it); CONTEND_VERSUS_CLIENTS and CONTEND_VERSUS_SCALE must be above 0");
        }
        if let Some(odd) = clients.iter().find(|&&n| n > 1 && n % 2 == 1) {
            bail!("CONTEND_VERSUS_CLIENTS: {odd} is odd; give 1 or even counts (contend splits them over two instances as pgbench -j 2 over two threads)");
        }
        Ok(Settings {
            seconds,
            clients,
            scale,
            pgbench,
        })
    }
}

/// One tool's run of one script at one client count.
struct Measured {
    transactions: u64,
    per_s: f64,
    cpu_s: f64,
}

/// One tool's short and long runs of one script at one client count.
struct Paired {
    short: Measured,
    long: Measured,
}

impl Paired {
    /// CPU seconds per 1,000 transactions, from the difference of the runs.
    fn cpu_s_per_1000(&self) -> f64 {
        let transactions = self.long.transactions as f64 - self.short.transactions as f64;
        if transactions <= 0.0 {
            f64::NAN
        } else {
            (self.long.cpu_s - self.short.cpu_s) * 1000.0 / transactions
        }
    }

    /// CPU seconds a run costs whatever its length (the slope's intercept).
    fn fixed_cpu_s(&self) -> f64 {
        self.long.cpu_s - self.cpu_s_per_1000() * self.long.transactions as f64 / 1000.0
    }
}

/// The number after `label` on pgbench's output line that starts with it.
fn pgbench_figure(stdout: &str, label: &str) -> anyhow::Result<f64> {
    stdout
        .lines()
        .find_map(|line| line.trim().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .with_context(|| format!("pgbench printed no `{label}`:\n{stdout}"))
}

fn run_pgbench(settings: &Settings, url: &str, script: &Path, clients: u32, seconds: u64) -> anyhow::Result<Measured> {
    let mut command = Command::new(&settings.pgbench);
    command
        .args(["-M", "prepared", "-v", "-j", "2"])
        .args(["-c", &clients.to_string()])
        .args(["-T", &seconds.to_string()])
        // pgbench sets :scale from -s for -f scripts (it counts branches only for built-in ones).
        .args(["-s", &settings.scale.to_string()])
        .arg("-f")
        .arg(script)
        .arg(url);
    let (stdout, cpu_s) = run_child(&mut command, "pgbench")?;
    Ok(Measured {
        transactions: pgbench_figure(&stdout, "number of transactions actually processed:")? as u64,
        per_s: pgbench_figure(&stdout, "tps =")?,
        cpu_s,
    })
}

fn run_contend(
    settings: &Settings,
    url: &str,
    script: &Path,
    clients: u32,
    seconds: u64,
    results: &Path,
) -> anyhow::Result<Measured> {
    let results = results.join(format!(
        "{}-{clients}-{seconds}s",
        script.file_stem().unwrap_or_default().to_string_lossy()
    ));
    let (instances, pool_size) = instances_and_pool(clients);
    let mut command = Command::new(env!("CARGO_BIN_EXE_contend"));
    command
        .args(["run", "--backend", "external", "--database-url", url])
        .args(["--workload", "script", "--script"])
        .arg(script)
        .args(["--pgbench-scale", &settings.scale.to_string()])
        .args(["--clients", &clients.to_string(), "--pool-size", &pool_size.to_string()])
        .args([
            "--instances",
            &instances.to_string(),
            "--driver-threads",
            &instances.to_string(),
        ])
        .args(["--duration", &format!("{seconds}s")])
        .args(["--warmup", "0s", "--ramp", "herd", "--results"])
        .arg(&results)
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL");
    let (_, cpu_s) = run_child(&mut command, "contend run")?;
    let run_dir = std::fs::read_dir(&results)?
        .flatten()
        .map(|entry| entry.path())
        .next()
        .with_context(|| format!("contend wrote no run under {}", results.display()))?;
    let cell = contend::results::read_cells(&run_dir)?
        .pop()
        .context("contend's run has no cell")?;
    if cell.metrics.errors > 0 {
        eprintln!(
            "versus_pgbench: contend had {} errors: {:?}",
            cell.metrics.errors, cell.metrics.errors_by_class
        );
    }
    Ok(Measured {
        transactions: cell.metrics.ok,
        per_s: cell.metrics.ok as f64 / cell.metrics.measured_s,
        cpu_s,
    })
}

/// contend's layout for pgbench's `-j 2`: two instances (each on a driver
/// thread) with half the clients each, or one for a single client.
fn instances_and_pool(clients: u32) -> (u32, u32) {
    if clients >= 2 {
        (2, clients / 2)
    } else {
        (1, clients)
    }
}

/// The shorter run of a pair: half the duration, at least a second.
fn short_seconds(seconds: u64) -> u64 {
    (seconds / 2).max(1)
}

async fn create_pgbench_database(admin_url: &str) -> anyhow::Result<String> {
    let (admin, connection) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {PGBENCH_DATABASE} WITH (FORCE)"))
        .await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {PGBENCH_DATABASE}"))
        .await?;
    Ok(database_url(admin_url, PGBENCH_DATABASE))
}

fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    prepare_machine()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let servers = runtime.block_on(provision(&ProvisionOptions {
        backend: BackendChoice::Local,
        ..Default::default()
    }))?;
    let outcome = compare(&settings, &servers.postgres.url, &runtime);
    runtime.block_on(servers.shutdown());
    let table = outcome?;
    print!("{table}");
    Ok(())
}

fn compare(settings: &Settings, admin_url: &str, runtime: &tokio::runtime::Runtime) -> anyhow::Result<String> {
    let pgbench_url = runtime.block_on(create_pgbench_database(admin_url))?;
    eprintln!("versus_pgbench: pgbench -i -s {}", settings.scale);
    let mut init = Command::new(&settings.pgbench);
    init.args(["-i", "-q", "-s", &settings.scale.to_string()])
        .arg(&pgbench_url);
    run_child(&mut init, "pgbench -i")?;
    let stamp = humantime::format_rfc3339_seconds(SystemTime::now())
        .to_string()
        .replace([':', '-'], "");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("results")
        .join(format!("{}-versus-pgbench", stamp.trim_end_matches('Z')));
    let scripts_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/script");
    let mut table = format!(
        "contend (2 instances on 2 driver threads) vs pgbench -M prepared -j 2, {} s per run, scale {}, local PostgreSQL\n\n\
         CPU per 1k tx: the extra CPU of a {} s run over a {} s run, per extra transaction; \
         fixed: CPU a run costs whatever its length\n\n\
         | script | clients | pgbench tx/s | contend tx/s | contend / pgbench | pgbench CPU s per 1k tx | contend CPU s per 1k tx | pgbench fixed CPU s | contend fixed CPU s |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        settings.seconds,
        settings.scale,
        settings.seconds,
        short_seconds(settings.seconds)
    );
    for script in SCRIPTS {
        let path = scripts_dir.join(format!("{script}.sql"));
        for &clients in &settings.clients {
            // Alternating the tools, so a change in the machine's speed
            // meanwhile falls on both.
            let mut runs = Vec::with_capacity(4);
            for seconds in [short_seconds(settings.seconds), settings.seconds] {
                eprintln!("versus_pgbench: {script}, {clients} clients, {seconds} s: pgbench");
                runs.push(run_pgbench(settings, &pgbench_url, &path, clients, seconds)?);
                // Let the checkpointer and autovacuum settle between runs.
                std::thread::sleep(Duration::from_secs(1));
                eprintln!("versus_pgbench: {script}, {clients} clients, {seconds} s: contend");
                runs.push(run_contend(
                    settings,
                    admin_url,
                    &path,
                    clients,
                    seconds,
                    &dir.join("contend"),
                )?);
                std::thread::sleep(Duration::from_secs(1));
            }
            let mut runs = runs.into_iter();
            let mut next = || runs.next().expect("four runs");
            let (pgbench_short, contend_short, pgbench_long, contend_long) = (next(), next(), next(), next());
            let pgbench = Paired {
                short: pgbench_short,
                long: pgbench_long,
            };
            let contend = Paired {
                short: contend_short,
                long: contend_long,
            };
            table.push_str(&format!(
                "| {script} | {clients} | {:.0} | {:.0} | {:.2} | {:.4} | {:.4} | {:.2} | {:.2} |\n",
                pgbench.long.per_s,
                contend.long.per_s,
                contend.long.per_s / pgbench.long.per_s,
                pgbench.cpu_s_per_1000(),
                contend.cpu_s_per_1000(),
                pgbench.fixed_cpu_s(),
                contend.fixed_cpu_s()
            ));
        }
    }
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("versus-pgbench.md"), &table)?;
    eprintln!("versus_pgbench: written to {}", dir.join("versus-pgbench.md").display());
    Ok(table)
}
