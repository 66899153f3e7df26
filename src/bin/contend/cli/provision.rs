//! `contend provision`: where the servers come from, and a command to run
//! against them.

use clap::Args;

use super::ServerArgs;

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

#[cfg(test)]
mod tests {
    use clap::Parser;
    use contend::provision::{BackendChoice, ProvisionOptions};

    use crate::cli::{Cli, Command};

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
