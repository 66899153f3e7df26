//! The command line: raw clap flags, and their conversion into validated
//! library options.
//!
//! The only module that knows clap. Conversions do no I/O beyond reading
//! the files a script workload is given: they check what can be checked
//! from the flags alone, so a typo is refused before any server starts.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use contend::client::{PoolKind, PoolSettings};
use contend::driver::{DriverSettings, Load, Ramp};
use contend::exec::{PlannedCell, SweepPlan};
use contend::provision::{BackendChoice, ProvisionError, ProvisionOptions, DEFAULT_PG_IMAGE, DEFAULT_REDIS_IMAGE};
use contend::record::CellSettings;
use contend::workload::script::{ScriptData, ScriptFile, ScriptSettings};
use contend::workload::WorkloadOverrides;

/// contend measures connection pools and max_connections on real servers.
#[derive(Debug, Parser)]
#[command(name = "contend", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// contend's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start PostgreSQL and Redis, run COMMAND with DATABASE_URL and
    /// REDIS_URL set, tear everything down, and exit with COMMAND's status.
    /// Without a command, print the URLs and wait for Ctrl-C.
    Provision(Box<ProvisionCommand>),
    /// Run one benchmark cell: a workload through pools, measured on both
    /// sides of the pool; appended to results/<run>/cells.jsonl.
    Run(Box<RunCommand>),
    /// Run a cell for every pool size × instances × max_connections, appending
    /// each to results/<run>/cells.jsonl as it finishes; --resume continues one.
    Sweep(Box<SweepCommand>),
    /// Recommend pool sizes and max_connections from a sweep's results/<run>.
    Recommend(RecommendCommand),
    /// Run a migration (by default the workload's CREATE INDEX CONCURRENTLY)
    /// while the workload runs: EXPLAIN ANALYZE before and after, the
    /// build's phases, foreground latency before/during/after, and a check
    /// that every new index is valid. Writes results/<run>/migration.json.
    Migrate(Box<MigrateCommand>),
    /// Write run.json, summary.md, plots/*.svg and index.html for a
    /// results/<run> directory; from its run.json when there is one.
    Report(ReportCommand),
    /// Compare two runs' cells (goodput, p95/p99 per operation, mean time per
    /// query) and exit 1 on a regression beyond the threshold and the noise.
    Compare(CompareCommand),
}

/// `contend compare`.
#[derive(Debug, Args)]
pub struct CompareCommand {
    /// The baseline's results/<run> directory.
    pub baseline: PathBuf,
    /// The current results/<run> directory.
    pub current: PathBuf,
    /// Relative change that counts, e.g. 10% or 0.1.
    #[arg(long, default_value = "10%", value_parser = parse_share)]
    pub threshold: f64,
    /// Confidence of the interval (Welch's t), 0 to 1.
    #[arg(long, default_value_t = 0.95)]
    pub confidence: f64,
    /// Also write the Markdown table here (e.g. $GITHUB_STEP_SUMMARY).
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
}

/// "10%" or "0.1" as 0.1.
fn parse_share(raw: &str) -> Result<f64, String> {
    let value = match raw.strip_suffix('%') {
        Some(percent) => percent.trim().parse::<f64>().map(|p| p / 100.0),
        None => raw.trim().parse::<f64>(),
    }
    .map_err(|_| format!("`{raw}` is not a share: write 10% or 0.1"))?;
    if value > 0.0 && value < 10.0 {
        Ok(value)
    } else {
        Err(format!("`{raw}`: give a share above 0, e.g. 10%"))
    }
}

/// `contend report`.
#[derive(Debug, Args)]
pub struct ReportCommand {
    /// The results/<run> directory.
    pub dir: PathBuf,
    /// Rebuild run.json from cells.jsonl and migration.json even when it
    /// exists (e.g. to judge with other --goodput-share or --formula).
    #[arg(long)]
    pub rebuild: bool,
    /// How the recommendation judges the cells (used when run.json is built).
    #[command(flatten)]
    pub judging: RecommendArgs,
}

/// `contend migrate`.
#[derive(Debug, Args)]
pub struct MigrateCommand {
    /// The foreground load; --duration is the window measured before the
    /// migration and again after it.
    #[command(flatten)]
    pub cell: CellArgs,
    /// SQL file to run; default: the workload's own (sql/<workload>/migration.sql).
    #[arg(long, value_name = "FILE")]
    pub migration: Option<PathBuf>,
    /// Keep an index a failed concurrent build left INVALID (default: drop it).
    #[arg(long)]
    pub keep_invalid: bool,
    /// lock_timeout of the migration's session, e.g. 2s.
    #[arg(long, value_parser = parse_duration)]
    pub lock_timeout: Option<Duration>,
    /// statement_timeout of the migration's session: a longer build is cancelled.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub max_statement_time: Duration,
    /// Connections per instance's pool.
    #[arg(long, default_value_t = 10)]
    pub pool_size: u32,
    /// Application instances, each with its own pool.
    #[arg(long, default_value_t = 1)]
    pub instances: u32,
    /// Directory under which results/<run>/ is created.
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// Where the servers come from.
    #[command(flatten)]
    pub servers: ServerArgs,
}

/// A validated `contend migrate`.
#[derive(Debug, Clone)]
pub struct MigratePlan {
    /// What runs.
    pub settings: contend::record::MigrateSettings,
    /// The servers.
    pub provision: ProvisionOptions,
    /// Where results go.
    pub results_root: PathBuf,
}

impl TryFrom<MigrateCommand> for MigratePlan {
    type Error = String;

    fn try_from(args: MigrateCommand) -> Result<Self, Self::Error> {
        let cell = args.cell.cell_settings(args.pool_size, args.instances)?;
        let migration = match &args.migration {
            Some(path) => Some(contend::workload::Migration::from_file(path).map_err(|e| e.to_string())?),
            None => None,
        };
        if args.max_statement_time.is_zero() {
            return Err("--max-statement-time 0s: give the build some time, e.g. 10m".into());
        }
        let provision = ProvisionOptions::try_from(args.servers).map_err(|e| e.to_string())?;
        Ok(MigratePlan {
            settings: contend::record::MigrateSettings {
                cell,
                migration,
                keep_invalid: args.keep_invalid,
                lock_timeout_ms: args.lock_timeout.map(|d| d.as_millis().max(1) as u64),
                max_statement_ms: args.max_statement_time.as_millis().max(1) as u64,
            },
            provision,
            results_root: args.results,
        })
    }
}

/// `contend recommend`.
#[derive(Debug, Args)]
pub struct RecommendCommand {
    /// The sweep's results/<run> directory.
    pub dir: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// How to judge the cells.
    #[command(flatten)]
    pub judging: RecommendArgs,
}

/// How a recommendation judges the cells, shared by `recommend` and `sweep`.
#[derive(Debug, Args)]
pub struct RecommendArgs {
    /// Share of peak goodput the knee must reach, 0 to 1.
    #[arg(long, default_value_t = 0.95)]
    pub goodput_share: f64,
    /// p99 end-to-end the knee must stay within, milliseconds.
    #[arg(long, value_name = "MS")]
    pub p99_slo_ms: Option<f64>,
    /// Connections kept free for admin sessions and migrations.
    #[arg(long, default_value_t = 5)]
    pub headroom: u32,
    /// CPU cores of the database server [default: this machine's].
    #[arg(long)]
    pub cores: Option<u32>,
    /// Effective spindles, for 2 × cores + spindles.
    #[arg(long, default_value_t = 1)]
    pub spindles: u32,
    /// A sizing formula to judge besides the built-in ones, e.g.
    /// 'max_connections = vus * 1.5 + eps / 10' or 'pool = cores * 4'
    /// (variables: cores, spindles, vus, clients, eps, instances). Repeatable.
    #[arg(long = "formula", value_name = "SIZES = EXPR")]
    pub formulas: Vec<String>,
}

impl TryFrom<&RecommendArgs> for contend::analysis::RecommendOptions {
    type Error = String;

    fn try_from(args: &RecommendArgs) -> Result<Self, Self::Error> {
        if !(args.goodput_share > 0.0 && args.goodput_share <= 1.0) {
            return Err(format!(
                "--goodput-share {}: give a share above 0 and at most 1, e.g. 0.95",
                args.goodput_share
            ));
        }
        let defaults = contend::analysis::RecommendOptions::default();
        Ok(contend::analysis::RecommendOptions {
            goodput_share: args.goodput_share,
            p99_slo_ms: args.p99_slo_ms,
            headroom: args.headroom,
            cores: args.cores.unwrap_or(defaults.cores),
            spindles: args.spindles,
            formulas: args
                .formulas
                .iter()
                .map(|text| contend::analysis::Formula::parse(text).map_err(|e| format!("--formula {e}")))
                .collect::<Result<_, _>>()?,
        })
    }
}

/// `contend run`.
#[derive(Debug, Args)]
pub struct RunCommand {
    /// What each cell runs.
    #[command(flatten)]
    pub cell: CellArgs,
    /// Connections per instance's pool (ignored with --pool none).
    #[arg(long, default_value_t = 10)]
    pub pool_size: u32,
    /// Application instances, each with its own pool.
    #[arg(long, default_value_t = 1)]
    pub instances: u32,
    /// Directory under which results/<run>/ is created.
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// Where the servers come from.
    #[command(flatten)]
    pub servers: ServerArgs,
}

/// `contend sweep`.
#[derive(Debug, Args)]
pub struct SweepCommand {
    /// What each cell runs.
    #[command(flatten)]
    pub cell: CellArgs,
    /// Pool sizes per instance, comma-separated, e.g. 1,2,4,8,16,32,64.
    #[arg(long, value_delimiter = ',', required = true, value_name = "N,N,...")]
    pub pool_sizes: Vec<u32>,
    /// Application instance counts, comma-separated.
    #[arg(
        long = "instances",
        value_delimiter = ',',
        default_value = "1",
        value_name = "K,K,..."
    )]
    pub instances: Vec<u32>,
    /// Runs of each cell, each with its own seed (seed, seed + 1, …): the
    /// recommendation takes medians, and the spread shows the noise.
    #[arg(long, default_value_t = 1)]
    pub repeat: u32,
    /// Continue the sweep in this results/<run> directory, running only the cells it lacks.
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// Directory under which results/<run>/ is created.
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// Where the servers come from; --max-connections takes a list here.
    #[command(flatten)]
    pub servers: ServerArgs,
    /// How the recommendation printed at the end judges the cells.
    #[command(flatten)]
    pub judging: RecommendArgs,
}

/// What a cell runs, shared by `run` and `sweep`.
#[derive(Debug, Args)]
pub struct CellArgs {
    /// Workload to run: goal-count, seat-reservation, wallet-transfer, sleep, or script (pgbench-style --script files).
    #[arg(long)]
    pub workload: String,
    /// Script workload: a pgbench-style script, with a relative weight as in pgbench's -f (repeatable; weight 1 when omitted).
    #[arg(long = "script", value_name = "FILE[@WEIGHT]")]
    pub scripts: Vec<ScriptFile>,
    /// Script workload: SQL run once into the template database (the tables and rows the scripts read).
    #[arg(long, value_name = "FILE", conflicts_with = "pgbench_scale")]
    pub init_sql: Option<PathBuf>,
    /// Script workload: pgbench's standard tables at scale N, as `pgbench -i -s N` creates them; sets :scale to N.
    #[arg(long, value_name = "N")]
    pub pgbench_scale: Option<u32>,
    /// Pool each application instance uses: deadpool, sqlx, or none (a connection per transaction).
    #[arg(long, value_enum, default_value_t = PoolArg::Deadpool)]
    pub pool: PoolArg,
    /// Concurrent clients, closed loop, spread over the instances [default: 16].
    #[arg(long, conflicts_with = "rate")]
    pub clients: Option<u32>,
    /// Open loop: transactions per second arriving as a Poisson process, latency timed from each intended start.
    #[arg(long, value_name = "PER_SECOND", allow_hyphen_values = true)]
    pub rate: Option<f64>,
    /// Open loop: most transactions in flight at once.
    #[arg(long, default_value_t = 1000, requires = "rate")]
    pub max_in_flight: u32,
    /// How clients start: herd (all at once) or linear:DURATION.
    #[arg(long, default_value = "linear:1s", value_parser = parse_ramp)]
    pub ramp: Ramp,
    /// Measured time, e.g. 10s or 1m.
    #[arg(long, default_value = "10s", value_parser = parse_duration, allow_hyphen_values = true)]
    pub duration: Duration,
    /// Time run before measuring, excluded from results.
    #[arg(long, default_value = "2s", value_parser = parse_duration, allow_hyphen_values = true)]
    pub warmup: Duration,
    /// Data scale (1 = the workload's default size; goal-count: 2 million goals).
    #[arg(long)]
    pub scale: Option<f64>,
    /// Think time between a client's transactions, e.g. 10ms (default: the workload's).
    #[arg(long, value_parser = parse_duration)]
    pub think_time: Option<Duration>,
    /// Longest wait for a pooled connection.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub acquire_timeout: Duration,
    /// statement_timeout for every connection (default: the server's).
    #[arg(long, value_parser = parse_duration)]
    pub statement_timeout: Option<Duration>,
    /// Use the workload's Redis cache-aside (goal-count: initialize's count).
    #[arg(long)]
    pub cache: bool,
    /// Apply the workload's migration (sql/<workload>/migration.sql, e.g.
    /// goal-count's index) and VACUUM (ANALYZE) to each cell's data before
    /// measuring: compare cells with and without it.
    #[arg(long)]
    pub migrated: bool,
    /// Strategy, for workloads that have several (default: the workload's).
    #[arg(long)]
    pub strategy: Option<String>,
    /// Override any default of workloads/<name>.toml by dotted path (repeatable), e.g. traffic.zipf_exponent=1.2.
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE", value_parser = parse_setting)]
    pub workload_settings: Vec<(String, String)>,
    /// Use this TOML instead of the workload's compiled-in workloads/<name>.toml
    /// (same tables and keys; --set applies on top).
    #[arg(long, value_name = "FILE")]
    pub workload_file: Option<PathBuf>,
    /// Retries of a deadlocked or serialization-failed transaction.
    #[arg(long, default_value_t = 3)]
    pub max_retries: u32,
    /// Seed of the clients' random choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Threads driving the clients, each owning whole application instances (their clients and connections), as app processes each have a CPU; at most --instances are used [default: the machine's cores].
    #[arg(long, value_name = "N")]
    pub driver_threads: Option<u32>,
}

/// `--pool` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PoolArg {
    /// deadpool-postgres.
    Deadpool,
    /// sqlx PgPool.
    Sqlx,
    /// A new connection per transaction.
    None,
}

fn parse_duration(raw: &str) -> Result<Duration, String> {
    if raw.trim_start().starts_with('-') {
        return Err(format!("`{raw}` is negative; give a duration such as 10s, 500ms or 2m"));
    }
    humantime::parse_duration(raw.trim())
        .map_err(|e| format!("`{raw}` is not a duration ({e}); write it like 10s, 500ms or 2m"))
}

fn parse_ramp(raw: &str) -> Result<Ramp, String> {
    match raw.split_once(':') {
        None if raw == "herd" => Ok(Ramp::Herd),
        Some(("linear", over)) => Ok(Ramp::Linear {
            over_s: parse_duration(over)?.as_secs_f64(),
        }),
        _ => Err(format!(
            "`{raw}` is not a ramp: use herd, or linear:DURATION such as linear:5s"
        )),
    }
}

/// A validated `contend run`.
#[derive(Debug, Clone)]
pub struct RunPlan {
    /// The cell.
    pub cell: CellSettings,
    /// The servers.
    pub provision: ProvisionOptions,
    /// Where results go.
    pub results_root: PathBuf,
}

impl CellArgs {
    /// The cell these flags describe, with one pool size and instance count;
    /// checked without I/O.
    fn cell_settings(&self, pool_size: u32, instances: u32) -> Result<CellSettings, String> {
        if pool_size == 0 {
            return Err("--pool-size 0: a pool needs at least one connection".into());
        }
        if instances == 0 {
            return Err("--instances 0: at least one application instance is needed".into());
        }
        let load = match (self.clients, self.rate) {
            (Some(0), _) => return Err("--clients 0: at least one client is needed".into()),
            (_, Some(rate)) if !(rate > 0.0 && rate.is_finite()) => {
                return Err(format!(
                    "--rate {rate}: give a positive number of transactions per second"
                ))
            }
            (_, Some(_)) if self.max_in_flight == 0 => {
                return Err("--max-in-flight 0: at least one transaction must be allowed in flight".into())
            }
            (_, Some(rate)) => Load::Open {
                rate_per_s: rate,
                max_in_flight: self.max_in_flight,
            },
            (clients, None) => Load::Closed {
                clients: clients.unwrap_or(16),
            },
        };
        if self.duration.is_zero() {
            return Err("--duration 0s: measure for at least a moment, e.g. --duration 10s".into());
        }
        let threads = match self.driver_threads {
            Some(0) => return Err("--driver-threads 0: at least one thread must drive the clients".into()),
            Some(threads) => threads,
            None => std::thread::available_parallelism().map_or(1, |cores| cores.get() as u32),
        };
        let pool = PoolSettings {
            kind: match self.pool {
                PoolArg::Deadpool => PoolKind::Deadpool,
                PoolArg::Sqlx => PoolKind::Sqlx,
                PoolArg::None => PoolKind::None,
            },
            size: pool_size,
            acquire_timeout: self.acquire_timeout,
            connect_timeout: Duration::from_secs(10),
            statement_timeout: self.statement_timeout,
        };
        let cell = CellSettings {
            workload: self.workload.clone(),
            overrides: WorkloadOverrides {
                scale: self.scale,
                think_time_ms: self.think_time.map(|d| d.as_millis() as u64),
                cache: self.cache,
                strategy: self.strategy.clone(),
                migrated: self.migrated,
                settings: self.workload_settings.clone(),
                defaults_file: match &self.workload_file {
                    Some(path) => Some(contend::workload::DefaultsFile {
                        path: path.display().to_string(),
                        text: std::fs::read_to_string(path)
                            .map_err(|e| format!("cannot read --workload-file {}: {e}", path.display()))?,
                    }),
                    None => None,
                },
                script: self.script_settings()?,
            },
            pool,
            instances,
            driver: DriverSettings {
                load,
                ramp: self.ramp,
                warmup_s: self.warmup.as_secs_f64(),
                duration_s: self.duration.as_secs_f64(),
                max_retries: self.max_retries,
                seed: self.seed,
                threads: threads.min(instances),
            },
        };
        contend::workload::validate(&cell.workload, &cell.overrides).map_err(|e| e.to_string())?;
        Ok(cell)
    }
}

impl CellArgs {
    /// The script workload's files and data; refused for other workloads.
    fn script_settings(&self) -> Result<Option<ScriptSettings>, String> {
        let data = match (&self.init_sql, self.pgbench_scale) {
            (Some(path), _) => ScriptData::InitSql { path: path.clone() },
            (None, Some(scale)) => ScriptData::PgbenchTables { scale },
            (None, None) => ScriptData::Empty,
        };
        if self.workload != contend::workload::script::NAME {
            if !self.scripts.is_empty() || data != ScriptData::Empty {
                return Err(format!(
                    "--script, --init-sql and --pgbench-scale are for --workload script, not {}",
                    self.workload
                ));
            }
            return Ok(None);
        }
        Ok(Some(ScriptSettings {
            scripts: self.scripts.clone(),
            data,
        }))
    }
}

impl TryFrom<RunCommand> for RunPlan {
    type Error = String;

    fn try_from(args: RunCommand) -> Result<Self, Self::Error> {
        let cell = args.cell.cell_settings(args.pool_size, args.instances)?;
        let provision = ProvisionOptions::try_from(args.servers).map_err(|e| e.to_string())?;
        Ok(RunPlan {
            cell,
            provision,
            results_root: args.results,
        })
    }
}

/// A validated `contend sweep`.
#[derive(Debug, Clone)]
pub struct SweepPlanArgs {
    /// The cells, in run order.
    pub plan: SweepPlan,
    /// The servers (max_connections set per cell by the sweep).
    pub provision: ProvisionOptions,
    /// Where results go: a new run directory under this root, or the one resumed.
    pub results_root: PathBuf,
    /// A run directory to resume.
    pub resume: Option<PathBuf>,
    /// How the recommendation at the end judges the cells.
    pub recommend: contend::analysis::RecommendOptions,
}

impl TryFrom<SweepCommand> for SweepPlanArgs {
    type Error = String;

    fn try_from(mut args: SweepCommand) -> Result<Self, Self::Error> {
        let recommend = contend::analysis::RecommendOptions::try_from(&args.judging)?;
        let max_connections = std::mem::take(&mut args.servers.max_connections);
        let mut provision = ProvisionOptions::try_from(args.servers).map_err(|e| e.to_string())?;
        for &value in &max_connections {
            contend::provision::validate_max_connections(value, &provision.pg_settings).map_err(|e| e.to_string())?;
        }
        provision.max_connections = max_connections.first().copied();
        if args.repeat == 0 {
            return Err("--repeat 0: run each cell at least once".into());
        }
        let mut cells = Vec::new();
        // max_connections outermost: the server restarts only when it changes.
        let budgets: Vec<Option<u32>> = if max_connections.is_empty() {
            vec![None]
        } else {
            max_connections.iter().copied().map(Some).collect()
        };
        for max_connections in budgets {
            for &instances in &args.instances {
                for &pool_size in &args.pool_sizes {
                    let settings = args.cell.cell_settings(pool_size, instances)?;
                    for run in 0..u64::from(args.repeat) {
                        let mut settings = settings.clone();
                        settings.driver.seed = settings.driver.seed.wrapping_add(run);
                        cells.push(PlannedCell {
                            max_connections,
                            settings,
                        });
                    }
                }
            }
        }
        Ok(SweepPlanArgs {
            plan: SweepPlan { cells },
            provision,
            results_root: args.results,
            resume: args.resume,
            recommend,
        })
    }
}

/// `contend provision`.
#[derive(Debug, Args)]
pub struct ProvisionCommand {
    /// Where the servers come from.
    #[command(flatten)]
    pub servers: ServerArgs,
    /// Command to run against the servers (after `--`).
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// How to get servers; shared by every subcommand that needs them.
#[derive(Debug, Args, Clone)]
pub struct ServerArgs {
    /// Backend: auto (docker if it can serve, else local), local, docker or external.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    pub backend: BackendArg,
    /// max_connections for servers contend starts (default: the server's own, 100); `sweep` takes a comma-separated list.
    #[arg(long, value_name = "N", value_delimiter = ',')]
    pub max_connections: Vec<u32>,
    /// Extra PostgreSQL setting, passed as `-c KEY=VALUE` (repeatable).
    #[arg(long = "pg-setting", value_name = "KEY=VALUE", value_parser = parse_setting)]
    pub pg_settings: Vec<(String, String)>,
    /// Directory holding initdb and postgres (local backend).
    #[arg(long, value_name = "DIR")]
    pub pg_bin: Option<PathBuf>,
    /// Port to try first for PostgreSQL (default: any free port).
    #[arg(long, value_name = "PORT")]
    pub pg_port: Option<u16>,
    /// Port to try first for Redis (default: any free port).
    #[arg(long, value_name = "PORT")]
    pub redis_port: Option<u16>,
    /// PostgreSQL image (docker backend) [default: postgres:17, or the local stand-in when it cannot be pulled].
    #[arg(long, value_name = "IMAGE")]
    pub pg_image: Option<String>,
    /// Redis image (docker backend) [default: redis:7, or the local stand-in when it cannot be pulled].
    #[arg(long, value_name = "IMAGE")]
    pub redis_image: Option<String>,
    /// PostgreSQL URL of an existing server (external backend).
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Redis URL of an existing server (external backend).
    #[arg(long, env = "REDIS_URL", value_name = "URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Seconds a server may take to accept connections.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub startup_timeout: u64,
}

/// `--backend` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    /// Docker when a daemon answers and the images are available, else local.
    Auto,
    /// Server binaries on this machine.
    Local,
    /// Containers (testcontainers).
    Docker,
    /// Existing servers given by --database-url / --redis-url.
    External,
}

fn parse_setting(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_string(), value.to_string())),
        _ => Err(format!(
            "`{raw}` is not KEY=VALUE (for example --pg-setting shared_buffers=256MB)"
        )),
    }
}

impl TryFrom<ServerArgs> for ProvisionOptions {
    type Error = ProvisionError;

    fn try_from(args: ServerArgs) -> Result<Self, Self::Error> {
        let backend = match args.backend {
            BackendArg::Auto => BackendChoice::Auto,
            BackendArg::Local => BackendChoice::Local,
            BackendArg::Docker => BackendChoice::Docker,
            BackendArg::External => BackendChoice::External,
        };
        // DATABASE_URL in the environment must not silently turn a local or
        // docker run into an external one: only auto and external read it.
        let (database_url, redis_url) = match backend {
            BackendChoice::Auto | BackendChoice::External => (args.database_url, args.redis_url),
            BackendChoice::Local | BackendChoice::Docker => (None, None),
        };
        let images_chosen = args.pg_image.is_some() || args.redis_image.is_some();
        let options = ProvisionOptions {
            backend,
            max_connections: match args.max_connections.as_slice() {
                [] => None,
                [one] => Some(*one),
                _ => {
                    return Err(ProvisionError::InvalidSetting {
                        setting: "--max-connections".into(),
                        reason: "takes one value here; `contend sweep` takes a list".into(),
                    })
                }
            },
            pg_settings: args.pg_settings,
            pg_bin: args.pg_bin,
            pg_port: args.pg_port,
            redis_port: args.redis_port,
            pg_image: args.pg_image.unwrap_or_else(|| DEFAULT_PG_IMAGE.to_string()),
            redis_image: args.redis_image.unwrap_or_else(|| DEFAULT_REDIS_IMAGE.to_string()),
            images_chosen,
            database_url,
            redis_url,
            startup_timeout: Duration::from_secs(args.startup_timeout.max(1)),
        };
        options.validate()?;
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<ProvisionOptions, String> {
        let cli = Cli::try_parse_from(args).map_err(|e| e.to_string())?;
        let Command::Provision(provision) = cli.command else {
            panic!("not provision")
        };
        ProvisionOptions::try_from(provision.servers).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_auto_and_official_images() {
        let options = parse(&["contend", "provision", "--backend", "auto"]).unwrap();
        assert_eq!(options.backend, BackendChoice::Auto);
        assert_eq!(options.pg_image, "postgres:17");
        assert!(!options.images_chosen);
    }

    #[test]
    fn settings_parse_and_command_follows_dashes() {
        let cli = Cli::try_parse_from([
            "contend",
            "provision",
            "--backend",
            "local",
            "--max-connections",
            "37",
            "--pg-setting",
            "work_mem=8MB",
            "--",
            "sh",
            "-c",
            "true",
        ])
        .unwrap();
        let Command::Provision(provision) = cli.command else {
            panic!("not provision")
        };
        assert_eq!(provision.command, ["sh", "-c", "true"]);
        let options = ProvisionOptions::try_from(provision.servers).unwrap();
        assert_eq!(options.max_connections, Some(37));
        assert_eq!(options.pg_settings, [("work_mem".to_string(), "8MB".to_string())]);
    }

    fn run_plan(args: &[&str]) -> Result<RunPlan, String> {
        let cli = Cli::try_parse_from(args).map_err(|e| e.to_string())?;
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        RunPlan::try_from(*run)
    }

    #[test]
    fn driver_threads_are_at_most_the_instances_and_default_to_the_cores() {
        let base = [
            "contend",
            "run",
            "--workload",
            "sleep",
            "--backend",
            "external",
            "--database-url",
            "postgres://contend@127.0.0.1/contend",
        ];
        let threads = |extra: &[&str]| run_plan(&[&base[..], extra].concat()).map(|plan| plan.cell.driver.threads);
        assert_eq!(threads(&["--instances", "4", "--driver-threads", "2"]), Ok(2));
        assert_eq!(threads(&["--instances", "2", "--driver-threads", "8"]), Ok(2));
        assert_eq!(threads(&["--driver-threads", "8"]), Ok(1), "one instance, one thread");
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        assert_eq!(threads(&["--instances", "64"]), Ok(cores.min(64)));
        assert!(threads(&["--driver-threads", "0"])
            .unwrap_err()
            .contains("--driver-threads 0"));
    }

    #[test]
    fn refuses_bad_values_before_any_io() {
        assert!(parse(&["contend", "provision", "--max-connections", "0"])
            .unwrap_err()
            .contains("at least 1"));
        assert!(parse(&["contend", "provision", "--max-connections", "300000"])
            .unwrap_err()
            .contains("at most"));
        assert!(parse(&["contend", "provision", "--pg-setting", "nokey"])
            .unwrap_err()
            .contains("KEY=VALUE"));
        assert!(parse(&["contend", "provision", "--backend", "nope"]).is_err());
    }
}
