//! The command line: raw clap flags, and their conversion into validated
//! library options.
//!
//! The only module that knows clap. Conversions do no I/O: they check what
//! can be checked from the flags alone, so a typo is refused before any
//! server starts.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::driver::{DriverSettings, Load, Ramp};
use crate::pool::{PoolKind, PoolSettings};
use crate::provision::{BackendChoice, ProvisionError, ProvisionOptions, DEFAULT_PG_IMAGE, DEFAULT_REDIS_IMAGE};
use crate::run::CellSettings;
use crate::workload::WorkloadOverrides;

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
    Provision(ProvisionCommand),
    /// Run one benchmark cell: a workload through pools, measured on both
    /// sides of the pool; appended to results/<run>/cells.jsonl.
    Run(Box<RunCommand>),
}

/// `contend run`.
#[derive(Debug, Args)]
pub struct RunCommand {
    /// Workload to run (goal-count).
    #[arg(long)]
    pub workload: String,
    /// Pool each application instance uses: deadpool, sqlx, or none (a connection per transaction).
    #[arg(long, value_enum, default_value_t = PoolArg::Deadpool)]
    pub pool: PoolArg,
    /// Connections per instance's pool (ignored with --pool none).
    #[arg(long, default_value_t = 10)]
    pub pool_size: u32,
    /// Application instances, each with its own pool.
    #[arg(long, default_value_t = 1)]
    pub instances: u32,
    /// Concurrent clients, closed loop, spread over the instances [default: 16].
    #[arg(long, conflicts_with = "rate")]
    pub clients: Option<u32>,
    /// Open loop: transactions per second arriving as a Poisson process, latency timed from each intended start.
    #[arg(long, value_name = "PER_SECOND")]
    pub rate: Option<f64>,
    /// Open loop: most transactions in flight at once.
    #[arg(long, default_value_t = 1000, requires = "rate")]
    pub max_in_flight: u32,
    /// How clients start: herd (all at once) or linear:DURATION.
    #[arg(long, default_value = "linear:1s", value_parser = parse_ramp)]
    pub ramp: Ramp,
    /// Measured time, e.g. 10s or 1m.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Time run before measuring, excluded from results.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
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
    /// Strategy, for workloads that have several (default: the workload's).
    #[arg(long)]
    pub strategy: Option<String>,
    /// Override any default of workloads/<name>.toml by dotted path (repeatable), e.g. traffic.zipf_exponent=1.2.
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE", value_parser = parse_setting)]
    pub workload_settings: Vec<(String, String)>,
    /// Retries of a deadlocked or serialization-failed transaction.
    #[arg(long, default_value_t = 3)]
    pub max_retries: u32,
    /// Directory under which results/<run>/ is created.
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// Seed of the clients' random choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where the servers come from.
    #[command(flatten)]
    pub servers: ServerArgs,
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

impl TryFrom<RunCommand> for RunPlan {
    type Error = String;

    fn try_from(args: RunCommand) -> Result<Self, Self::Error> {
        if args.pool_size == 0 {
            return Err("--pool-size 0: a pool needs at least one connection".into());
        }
        let load = match (args.clients, args.rate) {
            (Some(0), _) => return Err("--clients 0: at least one client is needed".into()),
            (_, Some(rate)) if !(rate > 0.0 && rate.is_finite()) => {
                return Err(format!(
                    "--rate {rate}: give a positive number of transactions per second"
                ))
            }
            (_, Some(_)) if args.max_in_flight == 0 => {
                return Err("--max-in-flight 0: at least one transaction must be allowed in flight".into())
            }
            (_, Some(rate)) => Load::Open {
                rate_per_s: rate,
                max_in_flight: args.max_in_flight,
            },
            (clients, None) => Load::Closed {
                clients: clients.unwrap_or(16),
            },
        };
        if args.instances == 0 {
            return Err("--instances 0: at least one application instance is needed".into());
        }
        if args.duration.is_zero() {
            return Err("--duration 0s: measure for at least a moment, e.g. --duration 10s".into());
        }
        let provision = ProvisionOptions::try_from(args.servers).map_err(|e| e.to_string())?;
        let pool = PoolSettings {
            kind: match args.pool {
                PoolArg::Deadpool => PoolKind::Deadpool,
                PoolArg::Sqlx => PoolKind::Sqlx,
                PoolArg::None => PoolKind::None,
            },
            size: args.pool_size,
            acquire_timeout: args.acquire_timeout,
            connect_timeout: Duration::from_secs(10),
            statement_timeout: args.statement_timeout,
        };
        let cell = CellSettings {
            workload: args.workload,
            overrides: WorkloadOverrides {
                scale: args.scale,
                think_time_ms: args.think_time.map(|d| d.as_millis() as u64),
                cache: args.cache,
                strategy: args.strategy,
                settings: args.workload_settings,
            },
            pool,
            instances: args.instances,
            driver: DriverSettings {
                load,
                ramp: args.ramp,
                warmup_s: args.warmup.as_secs_f64(),
                duration_s: args.duration.as_secs_f64(),
                max_retries: args.max_retries,
                seed: args.seed,
            },
        };
        crate::workload::validate(&cell.workload, &cell.overrides).map_err(|e| e.to_string())?;
        Ok(RunPlan {
            cell,
            provision,
            results_root: args.results,
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
    /// max_connections for servers contend starts (default: the server's own, 100).
    #[arg(long, value_name = "N")]
    pub max_connections: Option<u32>,
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
            max_connections: args.max_connections,
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
