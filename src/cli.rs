//! The command line: raw clap flags, and their conversion into validated
//! library options.
//!
//! The only module that knows clap. Conversions do no I/O: they check what
//! can be checked from the flags alone, so a typo is refused before any
//! server starts.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::provision::{BackendChoice, ProvisionError, ProvisionOptions, DEFAULT_PG_IMAGE, DEFAULT_REDIS_IMAGE};

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
        let Command::Provision(provision) = cli.command;
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
        let Command::Provision(provision) = cli.command;
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
