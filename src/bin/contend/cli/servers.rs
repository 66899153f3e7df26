//! Flags several subcommands share: where the servers come from
//! ([`ServerArgs`] → [`ProvisionOptions`]) and how a recommendation judges
//! the cells ([`RecommendArgs`] → [`RecommendOptions`]).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use contend::analysis::{Formula, RecommendOptions};
use contend::provision::{BackendChoice, ProvisionError, ProvisionOptions, DEFAULT_PG_IMAGE, DEFAULT_REDIS_IMAGE};

use super::cell::parse_setting;
use super::values::{parse_cores, parse_finite, parse_positive, parse_sizing_count, parse_startup_seconds};

/// How a recommendation judges the cells, shared by `recommend` and `sweep`.
#[derive(Debug, Args)]
pub struct RecommendArgs {
    /// Share of peak goodput the knee must reach, 0 to 1.
    #[arg(long, default_value_t = RecommendOptions::default().goodput_share, value_parser = parse_finite)]
    pub goodput_share: f64,
    /// p99 end-to-end the knee must stay within, milliseconds.
    #[arg(long, value_name = "MS", value_parser = parse_positive)]
    pub p99_slo_ms: Option<f64>,
    /// Connections kept free for admin sessions and migrations.
    #[arg(long, default_value_t = RecommendOptions::default().headroom, value_parser = parse_sizing_count)]
    pub headroom: u32,
    /// CPU cores of the database server [default: this machine's].
    #[arg(long, value_parser = parse_cores)]
    pub cores: Option<u32>,
    /// Effective spindles, for 2 × cores + spindles.
    #[arg(long, default_value_t = RecommendOptions::default().spindles, value_parser = parse_sizing_count)]
    pub spindles: u32,
    /// A sizing formula to judge besides the built-in ones, e.g.
    /// 'max_connections = vus * 1.5 + eps / 10' or 'pool = cores * 4'
    /// (variables: cores, spindles, vus, clients, eps, instances). Repeatable.
    #[arg(long = "formula", value_name = "SIZES = EXPR")]
    pub formulas: Vec<String>,
    /// Also project the pool the knee's goodput needs at this network round trip, e.g. 1.5ms, by Little's law from the measured server time and round trips per transaction (a projection, said so).
    #[arg(long, value_name = "DELAY", value_parser = super::values::parse_network_ms)]
    pub for_rtt: Option<f64>,
}

impl TryFrom<&RecommendArgs> for RecommendOptions {
    type Error = anyhow::Error;

    fn try_from(args: &RecommendArgs) -> Result<Self, Self::Error> {
        anyhow::ensure!(
            args.goodput_share > 0.0 && args.goodput_share <= 1.0,
            "--goodput-share {}: give a share above 0 and at most 1, e.g. 0.95",
            args.goodput_share
        );
        let defaults = RecommendOptions::default();
        Ok(RecommendOptions {
            goodput_share: args.goodput_share,
            p99_slo_ms: args.p99_slo_ms,
            headroom: args.headroom,
            cores: args.cores.unwrap_or(defaults.cores),
            spindles: args.spindles,
            formulas: args
                .formulas
                .iter()
                .map(|text| Formula::parse(text).map_err(|e| anyhow::anyhow!("--formula {e}")))
                .collect::<Result<_, _>>()?,
            for_rtt_ms: args.for_rtt,
        })
    }
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
    /// Start PostgreSQL with TLS only (local backend): a CA and a server
    /// certificate made for the run, pg_hba hostssl lines only, contend's
    /// clients on sslmode=verify-full.
    #[arg(long)]
    pub tls: bool,
    /// Seconds a server may take to accept connections.
    #[arg(long, value_name = "SECONDS", default_value_t = ProvisionOptions::default().startup_timeout.as_secs(), value_parser = parse_startup_seconds)]
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
        // clap does not say where a value came from; the same URL in the
        // environment is reason enough for auto to say where it found it.
        let database_url_from_env =
            database_url.is_some() && std::env::var("DATABASE_URL").ok().as_deref() == database_url.as_deref();
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
            startup_timeout: Duration::from_secs(args.startup_timeout),
            database_url_from_env,
            tls: args.tls,
            ..ProvisionOptions::default()
        };
        options.validate()?;
        Ok(options)
    }
}
