//! What provisioning is asked for ([`ProvisionOptions`]) and the checks
//! that need no server: `max_connections` bounds and `--pg-setting` names.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{BackendChoice, ProvisionError, DEFAULT_PG_IMAGE, DEFAULT_REDIS_IMAGE};

/// PostgreSQL's upper bound on `max_connections` (MAX_BACKENDS, 2^18 - 1).
pub const MAX_CONNECTIONS_LIMIT: u32 = 262_143;

/// Settings contend always applies to servers it starts, before the user's
/// `--pg-setting`s (which win).
const BASE_SETTINGS: &[(&str, &str)] = &[("shared_preload_libraries", "pg_stat_statements")];

/// Everything provisioning needs, validated, with no I/O done yet. The
/// defaults ([`ProvisionOptions::default`]) are `contend provision`'s.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProvisionOptions {
    /// Backend to use. Default: auto.
    pub backend: BackendChoice,
    /// `max_connections` for servers contend starts; `None` keeps the
    /// server's default (100). Refused for external servers unless it equals
    /// what the server already has. Default `None`.
    pub max_connections: Option<u32>,
    /// Extra server settings (`-c key=value`), applied after contend's own.
    /// Default: none.
    pub pg_settings: Vec<(String, String)>,
    /// Directory holding `initdb` and `postgres` (local backend). Default:
    /// found on PATH, through pg_config, or under /usr/lib/postgresql/*/bin.
    pub pg_bin: Option<PathBuf>,
    /// Port to try first for PostgreSQL (local and docker); another free one
    /// is used, and said, when it is taken. Default: any free port.
    pub pg_port: Option<u16>,
    /// Port to try first for Redis, as `pg_port`. Default: any free port.
    pub redis_port: Option<u16>,
    /// PostgreSQL image (docker backend). Default: [`DEFAULT_PG_IMAGE`].
    pub pg_image: String,
    /// Redis image (docker backend). Default: [`DEFAULT_REDIS_IMAGE`].
    pub redis_image: String,
    /// Whether `pg_image` / `redis_image` were chosen by the user (then a
    /// missing image is an error rather than a fallback to a stand-in).
    /// Default `false`.
    pub images_chosen: bool,
    /// External PostgreSQL URL (external backend). Default `None`.
    pub database_url: Option<String>,
    /// External Redis URL (external backend); without it, no Redis.
    /// Default `None`.
    pub redis_url: Option<String>,
    /// Time allowed for a server to accept connections. Default: 60 s.
    pub startup_timeout: Duration,
    /// Whether contend starts a Redis beside PostgreSQL (local and docker
    /// backends). Default `true` (`contend provision` starts both); `run`,
    /// `sweep` and `migrate` set it to whether their cells use Redis, so a
    /// machine without redis-server runs every other cell. Records written
    /// before it existed read as `true`, which is what they did.
    #[serde(default = "starts_redis_by_default")]
    pub with_redis: bool,
    /// Whether servers contend starts take TLS only (`--tls`): a CA and a
    /// server certificate made at start, `ssl = on`, pg_hba `hostssl`
    /// lines only, and contend's clients given the CA with
    /// `sslmode=verify-full`. Local backend only for now. Default `false`;
    /// records written before it existed read as `false`.
    #[serde(default)]
    pub tls: bool,
    /// Whether `database_url` came from the `DATABASE_URL` environment
    /// variable rather than a flag: `auto` then says on stderr that it
    /// benchmarks that server. Default `false`; never recorded.
    #[serde(skip)]
    pub database_url_from_env: bool,
}

fn starts_redis_by_default() -> bool {
    true
}

impl Default for ProvisionOptions {
    fn default() -> Self {
        ProvisionOptions {
            backend: BackendChoice::Auto,
            max_connections: None,
            pg_settings: Vec::new(),
            pg_bin: None,
            pg_port: None,
            redis_port: None,
            pg_image: DEFAULT_PG_IMAGE.to_string(),
            redis_image: DEFAULT_REDIS_IMAGE.to_string(),
            images_chosen: false,
            database_url: None,
            redis_url: None,
            startup_timeout: Duration::from_secs(60),
            with_redis: true,
            tls: false,
            database_url_from_env: false,
        }
    }
}

impl ProvisionOptions {
    /// Checks what can be checked without touching a server.
    pub fn validate(&self) -> Result<(), ProvisionError> {
        if let Some(requested) = self.max_connections {
            validate_max_connections(requested, &self.pg_settings)?;
        }
        for (key, _) in &self.pg_settings {
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
                return Err(ProvisionError::InvalidSetting {
                    setting: key.clone(),
                    reason: "a setting name is letters, digits, `_` and `.`".into(),
                });
            }
            if let Some(why) = reserved_setting(key) {
                return Err(ProvisionError::InvalidSetting {
                    setting: key.clone(),
                    reason: why.into(),
                });
            }
            if key == "max_connections" {
                return Err(ProvisionError::InvalidSetting {
                    setting: key.clone(),
                    reason: "use --max-connections, which contend tracks and validates".into(),
                });
            }
        }
        if self.tls {
            let external = self.backend == BackendChoice::External
                || (self.backend == BackendChoice::Auto && self.database_url.is_some());
            if external {
                return Err(ProvisionError::InvalidSetting {
                    setting: "--tls".into(),
                    reason: "starts contend's own servers with TLS; for a server of yours, put sslmode=verify-full&sslrootcert=PATH in --database-url".into(),
                });
            }
            if self.backend == BackendChoice::Docker {
                return Err(ProvisionError::InvalidSetting {
                    setting: "--tls".into(),
                    reason: "the docker backend has no TLS yet: use --backend local".into(),
                });
            }
        }
        if self.backend == BackendChoice::External && self.database_url.is_none() {
            return Err(ProvisionError::MissingUrl);
        }
        Ok(())
    }

    /// Settings passed to servers contend starts: contend's base settings,
    /// `max_connections`, then the user's.
    pub(super) fn server_settings(&self) -> Vec<(String, String)> {
        let mut settings: Vec<(String, String)> = BASE_SETTINGS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if let Some(n) = self.max_connections {
            settings.push(("max_connections".into(), n.to_string()));
        }
        settings.extend(self.pg_settings.iter().cloned());
        settings
    }
}

/// Server settings contend owns, with why `--pg-setting` may not change
/// them: they would open the server beyond the loopback interface, move
/// files out of the run directory (breaking teardown), or make contend
/// lose track of the server.
const RESERVED_SETTINGS: &[(&str, &str)] = &[
    (
        "listen_addresses",
        "contend's servers listen on 127.0.0.1 only, so nothing beyond this machine can reach them",
    ),
    ("port", "contend picks the port; use --pg-port to suggest one"),
    (
        "unix_socket_directories",
        "the socket stays in the run directory, which teardown removes",
    ),
    ("unix_socket_group", "the socket stays the server account's own"),
    ("unix_socket_permissions", "the socket stays the server account's own"),
    (
        "data_directory",
        "the data directory is the run's own, which teardown removes",
    ),
    ("config_file", "contend's servers run on the configuration initdb wrote"),
    ("hba_file", "authentication stays password-only from 127.0.0.1"),
    ("ident_file", "authentication stays password-only from 127.0.0.1"),
    (
        "external_pid_file",
        "contend tracks the postmaster itself; a pid file elsewhere would outlive teardown",
    ),
    (
        "ssl_cert_file",
        "a file outside the run directory; contend's servers take no TLS settings",
    ),
    (
        "ssl_key_file",
        "a file outside the run directory; contend's servers take no TLS settings",
    ),
    (
        "ssl_ca_file",
        "a file outside the run directory; contend's servers take no TLS settings",
    ),
    (
        "ssl_crl_file",
        "a file outside the run directory; contend's servers take no TLS settings",
    ),
    (
        "ssl_crl_dir",
        "a file outside the run directory; contend's servers take no TLS settings",
    ),
    (
        "ssl_dh_params_file",
        "a file outside the run directory; contend's servers take no TLS settings",
    ),
    (
        "ssl_passphrase_command",
        "runs a command; contend's servers take no TLS settings",
    ),
    (
        "archive_command",
        "runs a shell command as the server account on every WAL segment",
    ),
    ("archive_library", "loads code into the server"),
    ("restore_command", "runs a shell command as the server account"),
    ("archive_cleanup_command", "runs a shell command as the server account"),
    ("recovery_end_command", "runs a shell command as the server account"),
    (
        "log_directory",
        "the server's log stays in the run directory, where contend reads it",
    ),
    (
        "logging_collector",
        "the server's log stays in the run directory, where contend reads it",
    ),
];

/// Why `--pg-setting key=…` is refused, when it is (names are
/// case-insensitive in PostgreSQL).
fn reserved_setting(key: &str) -> Option<&'static str> {
    RESERVED_SETTINGS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(key))
        .map(|(_, why)| *why)
}

/// `max_connections` must leave room for ordinary connections after the
/// superuser reservation, and fit PostgreSQL's limit.
pub fn validate_max_connections(requested: u32, pg_settings: &[(String, String)]) -> Result<(), ProvisionError> {
    let value = |name: &str, default: u32| {
        pg_settings
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.parse::<u32>().ok())
            .unwrap_or(default)
    };
    let reserved = value("superuser_reserved_connections", 3) + value("reserved_connections", 0);
    if requested == 0 {
        return Err(ProvisionError::InvalidMaxConnections {
            requested,
            reason: "it must be at least 1; pick a value above superuser_reserved_connections (3 by default)".into(),
        });
    }
    if requested > MAX_CONNECTIONS_LIMIT {
        return Err(ProvisionError::InvalidMaxConnections {
            requested,
            reason: format!("PostgreSQL allows at most {MAX_CONNECTIONS_LIMIT}"),
        });
    }
    if requested <= reserved {
        return Err(ProvisionError::InvalidMaxConnections {
            requested,
            reason: format!(
                "it must exceed the {reserved} connections reserved for superusers, or no ordinary client could connect"
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn max_connections_bounds() {
        assert!(validate_max_connections(0, &[]).is_err());
        assert!(validate_max_connections(3, &[]).is_err());
        assert!(validate_max_connections(4, &[]).is_ok());
        assert!(validate_max_connections(MAX_CONNECTIONS_LIMIT, &[]).is_ok());
        assert!(validate_max_connections(MAX_CONNECTIONS_LIMIT + 1, &[]).is_err());
    }

    #[test]
    fn max_connections_respects_reserved_settings() {
        let settings = [setting("superuser_reserved_connections", "10")];
        assert!(validate_max_connections(10, &settings).is_err());
        assert!(validate_max_connections(11, &settings).is_ok());
        let settings = [setting("superuser_reserved_connections", "0")];
        assert!(validate_max_connections(1, &settings).is_ok());
        let settings = [setting("reserved_connections", "5")];
        assert!(validate_max_connections(8, &settings).is_err());
    }

    #[test]
    fn settings_contend_owns_are_refused_in_any_case() {
        for key in [
            "listen_addresses",
            "PORT",
            "Hba_File",
            "data_directory",
            "unix_socket_directories",
        ] {
            let options = ProvisionOptions {
                pg_settings: vec![setting(key, "x")],
                ..Default::default()
            };
            assert!(
                matches!(options.validate(), Err(ProvisionError::InvalidSetting { .. })),
                "{key}"
            );
        }
        let options = ProvisionOptions {
            pg_settings: vec![setting("work_mem", "8MB")],
            ..Default::default()
        };
        assert!(options.validate().is_ok());
    }

    #[test]
    fn max_connections_is_not_a_pg_setting() {
        let options = ProvisionOptions {
            pg_settings: vec![setting("max_connections", "10")],
            ..Default::default()
        };
        assert!(matches!(options.validate(), Err(ProvisionError::InvalidSetting { .. })));
    }
}
