//! What a cell runs, shared by `run`, `sweep` and `migrate`: [`CellArgs`]
//! → [`CellSettings`] for one pool size and instance count, and the
//! parsers of ramps and `KEY=VALUE` settings (numbers and durations are
//! parsed and bounded in `values`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use contend::client::{PoolKind, PoolSettings, QueryMode};
use contend::driver::{DriverSettings, Load, Ramp};
use contend::network::NetworkSettings;
use contend::record::CellSettings;
use contend::workload::script::{ScriptData, ScriptFile, ScriptSettings};
use contend::workload::WorkloadOverrides;

use super::values::{
    check_schedule, parse_clients, parse_driver_threads, parse_duration, parse_latency_limit, parse_max_in_flight,
    parse_max_retries, parse_max_tries, parse_network_ms, parse_pgbench_scale, parse_positive, parse_progress,
    parse_rate,
};

/// What `--help` says of pgbench's letters: the ones contend takes mean
/// what they mean in pgbench; the others are left out, and why.
pub const PGBENCH_LETTERS: &str = "\
pgbench's letters: -c clients, -j driver threads, -T duration, -R rate, -L latency limit, \
-P progress, -C a connection per transaction (--pool none), -f script, -s scale (script workload). \
Left out because contend means something else or has no such thing: -t (contend runs for a time, \
not a count of transactions), -h/-p/-U/-d (-h is help here; give --database-url), -D (--set sets \
the workload's TOML, not script variables), -l only beside --aggregate-interval (no per-transaction log), -n/-v, -S/-N/-b \
(workloads are named with --workload), -r. -M is --query-mode (simple, extended, prepared).";

/// What a cell runs, shared by `run`, `sweep` and `migrate`.
#[derive(Debug, Args)]
pub struct CellArgs {
    /// Workload to run (script: pgbench-style --script files).
    // An `Option` only so that `sweep --resume DIR` can take it from the
    // run's plan; every other subcommand requires it.
    #[arg(long, required = true, value_parser = clap::builder::PossibleValuesParser::new(contend::workload::WORKLOADS))]
    pub workload: Option<String>,
    /// Script workload: a pgbench-style script, with a relative weight as in pgbench's -f (repeatable; weight 1 when omitted).
    #[arg(short = 'f', long = "script", value_name = "FILE[@WEIGHT]")]
    pub scripts: Vec<ScriptFile>,
    /// Script workload: SQL run once into the template database (the tables and rows the scripts read).
    #[arg(long, value_name = "FILE", conflicts_with = "pgbench_scale")]
    pub init_sql: Option<PathBuf>,
    /// Script workload: pgbench's standard tables at scale N, as `pgbench -i -s N` creates them; sets :scale to N.
    #[arg(short = 's', long, value_name = "N", value_parser = parse_pgbench_scale)]
    pub pgbench_scale: Option<u32>,
    /// Pool each application instance uses: deadpool, sqlx, or none (a connection per transaction).
    #[arg(long, value_enum, default_value_t = PoolArg::Deadpool)]
    pub pool: PoolArg,
    /// A new connection for each transaction, as pgbench's -C: the same as --pool none.
    #[arg(short = 'C', long, conflicts_with = "pool")]
    pub connect: bool,
    /// Concurrent clients, closed loop, spread over the instances [default: 16].
    #[arg(short = 'c', long, conflicts_with = "rate", value_parser = parse_clients)]
    pub clients: Option<u32>,
    /// Open loop: transactions per second arriving as a Poisson process, latency timed from each intended start.
    #[arg(short = 'R', long, value_name = "PER_SECOND", allow_hyphen_values = true, value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Open loop: most transactions in flight at once.
    #[arg(long, default_value_t = 1000, requires = "rate", value_parser = parse_max_in_flight)]
    pub max_in_flight: u32,
    /// How clients start: herd (all at once) or linear:DURATION.
    #[arg(long, default_value = "linear:1s", value_parser = parse_ramp)]
    pub ramp: Ramp,
    /// Measured time, e.g. 10s or 1m.
    #[arg(short = 'T', long, default_value = "10s", value_parser = parse_duration, allow_hyphen_values = true)]
    pub duration: Duration,
    /// Time run before measuring, excluded from results.
    #[arg(long, default_value = "2s", value_parser = parse_duration, allow_hyphen_values = true)]
    pub warmup: Duration,
    /// How long a cell may go on past warmup + duration with nothing
    /// finishing before it is failed as "the server stopped answering".
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub cell_grace: Duration,
    /// Data scale (1 = the workload's default size; goal-count: 2 million goals).
    #[arg(long, value_parser = parse_positive)]
    pub scale: Option<f64>,
    /// Think time between a client's transactions, e.g. 10ms (default: the workload's).
    #[arg(long, value_parser = parse_duration)]
    pub think_time: Option<Duration>,
    /// How statements are sent, as pgbench's -M: prepared (named statements reused per connection, what ORMs do), extended (the unnamed statement, one round trip) or simple (the simple protocol, parameters as literals).
    #[arg(short = 'M', long, value_enum, default_value_t = QueryModeArg::Prepared)]
    pub query_mode: QueryModeArg,
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
    #[arg(long, default_value_t = DriverSettings::default().max_retries, value_parser = parse_max_retries)]
    pub max_retries: u32,
    /// pgbench's count of tries: the first try and its retries (--max-tries N is --max-retries N-1).
    #[arg(long, value_name = "N", conflicts_with = "max_retries", value_parser = parse_max_tries)]
    pub max_tries: Option<u32>,
    /// As pgbench's -L, milliseconds: transactions taking longer are counted as late; with --rate, an arrival already later than this when it could be sent is skipped (not sent) and counted as skipped.
    #[arg(short = 'L', long, value_name = "MS", value_parser = parse_latency_limit)]
    pub latency_limit: Option<f64>,
    /// A progress line every N seconds on stderr, as pgbench's -P (default without a terminal: every 5 s; with one, a bar).
    #[arg(short = 'P', long, value_name = "SECONDS", value_parser = parse_progress)]
    pub progress: Option<f64>,
    /// Seed of the clients' random choices.
    #[arg(long, default_value_t = DriverSettings::default().seed)]
    pub seed: u64,
    /// Threads driving the clients, each owning whole application instances (their clients and connections), as app processes each have a CPU; at most --instances are used [default: the machine's cores].
    #[arg(short = 'j', long, value_name = "N", value_parser = parse_driver_threads)]
    pub driver_threads: Option<u32>,
    /// Round trip between the app pools and the server, e.g. 2ms or 0.5ms: contend runs a delaying TCP proxy between them (half each way; its sampler and checks still connect directly); 0 connects directly [default: 0].
    #[arg(long, value_name = "DELAY", value_parser = parse_network_ms)]
    pub network_rtt: Option<f64>,
    /// With --network-rtt: each way's delay varies uniformly within ± half this, never reordering a connection's bytes, e.g. 0.2ms.
    #[arg(long, value_name = "DELAY", value_parser = parse_network_ms)]
    pub network_jitter: Option<f64>,
    /// Not offered: refused, saying why (a proxy above TCP cannot lose packets honestly).
    #[arg(long, value_name = "P")]
    pub network_loss: Option<String>,
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

/// `--query-mode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QueryModeArg {
    /// Named prepared statements, reused per connection.
    Prepared,
    /// The unnamed statement: parse, bind, execute in one round trip.
    Extended,
    /// The simple query protocol.
    Simple,
}

/// `herd` or `linear:DURATION`.
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

impl CellArgs {
    /// The cell these flags describe, with one pool size and instance count;
    /// checked before any server starts. What the flags leave out is
    /// [`CellSettings::default`]'s.
    pub(super) fn cell_settings(&self, pool_size: u32, instances: u32) -> anyhow::Result<CellSettings> {
        use anyhow::bail;
        let defaults = CellSettings::default();
        // pool_size and instances come through parse_pool_size and
        // parse_instances: never 0.
        let load = match (self.clients, self.rate) {
            (_, Some(rate)) => Load::Open {
                rate_per_s: rate,
                max_in_flight: self.max_in_flight,
            },
            (Some(clients), None) => Load::Closed { clients },
            (None, None) => defaults.driver.load,
        };
        if let Some(loss) = &self.network_loss {
            bail!(
                "--network-loss {loss}: not offered; TCP retransmits what a network loses, so loss shows as \
                 retransmission stalls (200 ms and more on Linux) inside the kernel, which a proxy above TCP \
                 cannot produce honestly; use --network-jitter for a variable network"
            );
        }
        if self.network_jitter.is_some() && self.network_rtt.is_none() {
            bail!("--network-jitter varies a delay: give the delay too, e.g. --network-rtt 2ms");
        }
        if self.cell_grace.is_zero() {
            bail!("--cell-grace 0s: give the drain and the checks a moment, e.g. --cell-grace 30s");
        }
        if self.duration.is_zero() {
            bail!("--duration 0s: measure for at least a moment, e.g. --duration 10s");
        }
        if let Some(rate) = self.rate {
            check_schedule(rate, self.warmup + self.duration).map_err(anyhow::Error::msg)?;
        }
        let threads = match self.driver_threads {
            Some(threads) => threads,
            None => std::thread::available_parallelism().map_or(1, |cores| cores.get() as u32),
        };
        let pool = PoolSettings {
            kind: match self.pool {
                _ if self.connect => PoolKind::None,
                PoolArg::Deadpool => PoolKind::Deadpool,
                PoolArg::Sqlx => PoolKind::Sqlx,
                PoolArg::None => PoolKind::None,
            },
            size: pool_size,
            acquire_timeout: self.acquire_timeout,
            statement_timeout: self.statement_timeout,
            query_mode: match self.query_mode {
                QueryModeArg::Prepared => QueryMode::Prepared,
                QueryModeArg::Extended => QueryMode::Extended,
                QueryModeArg::Simple => QueryMode::Simple,
            },
            ..defaults.pool
        };
        let defaults_file = match &self.workload_file {
            Some(path) => Some(contend::workload::DefaultsFile {
                path: path.display().to_string(),
                text: std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("cannot read --workload-file {}: {e}", path.display()))?,
            }),
            None => None,
        };
        let cell = CellSettings {
            workload: self.workload_name()?.to_string(),
            overrides: WorkloadOverrides {
                scale: self.scale,
                think_time_ms: self.think_time.map(|d| d.as_millis() as u64),
                cache: self.cache,
                strategy: self.strategy.clone(),
                migrated: self.migrated,
                settings: self.workload_settings.clone(),
                defaults_file,
                script: self.script_settings()?,
            },
            pool,
            instances,
            driver: DriverSettings {
                load,
                ramp: self.ramp,
                warmup_s: self.warmup.as_secs_f64(),
                duration_s: self.duration.as_secs_f64(),
                max_retries: self.max_tries.map_or(self.max_retries, |tries| tries - 1),
                seed: self.seed,
                threads: threads.min(instances),
                grace_s: self.cell_grace.as_secs_f64(),
                latency_limit_ms: self.latency_limit,
            },
            network: NetworkSettings {
                rtt_ms: self.network_rtt.unwrap_or(0.0),
                jitter_ms: self.network_jitter.unwrap_or(0.0),
            },
            // Set by run and sweep (--pooler), which know the servers.
            pooler: None,
        };
        // Its message, not its chain of sources: the message already says
        // the cause, and `contend: error:` would print it twice.
        contend::workload::validate(&cell.workload, &cell.overrides).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(cell)
    }

    /// `--workload`: clap requires it everywhere but beside `sweep --resume`.
    fn workload_name(&self) -> anyhow::Result<&str> {
        self.workload
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("--workload is required: name the workload to run"))
    }

    /// The script workload's files and data; refused for other workloads.
    fn script_settings(&self) -> anyhow::Result<Option<ScriptSettings>> {
        let data = match (&self.init_sql, self.pgbench_scale) {
            (Some(path), _) => ScriptData::InitSql { path: path.clone() },
            (None, Some(scale)) => ScriptData::PgbenchTables { scale },
            (None, None) => ScriptData::Empty,
        };
        if self.workload_name()? != contend::workload::script::NAME {
            anyhow::ensure!(
                self.scripts.is_empty() && data == ScriptData::Empty,
                "--script, --init-sql and --pgbench-scale are for --workload script, not {}",
                self.workload_name()?
            );
            return Ok(None);
        }
        Ok(Some(ScriptSettings {
            scripts: self.scripts.clone(),
            data,
        }))
    }
}

/// `KEY=VALUE`, for `--set` and `--pg-setting`.
pub(super) fn parse_setting(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_string(), value.to_string())),
        _ => Err(format!(
            "`{raw}` is not KEY=VALUE (for example --pg-setting shared_buffers=256MB)"
        )),
    }
}
