//! libpq's TLS settings, read once: `sslmode`, `sslrootcert`, `sslcert`
//! and `sslkey` from a URL's query string (or a key-value string), else
//! from `PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT`, `PGSSLKEY`, else libpq's
//! defaults (`prefer`, and the files under `~/.postgresql/` when they
//! exist). Pure: no file is read here, only named.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::TlsError;

/// libpq's `sslmode`. Default: [`SslMode::Prefer`], as libpq's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// Plain only.
    Disable,
    /// Plain first; TLS if the server refuses plain.
    Allow,
    /// TLS if the server offers it, plain if not (or if TLS fails).
    Prefer,
    /// TLS or nothing; the certificate is checked only against a root
    /// certificate when one is given (as libpq does).
    Require,
    /// TLS, the server's certificate chain checked against the roots.
    VerifyCa,
    /// As `verify-ca`, and the certificate must name the host connected to.
    VerifyFull,
}

impl SslMode {
    /// Every mode, in libpq's order.
    pub const ALL: [SslMode; 6] = [
        SslMode::Disable,
        SslMode::Allow,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ];

    /// The name libpq spells it with.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Whether the mode alone demands a verified chain.
    pub fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

impl std::fmt::Display for SslMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SslMode {
    type Err = TlsError;

    fn from_str(value: &str) -> Result<SslMode, TlsError> {
        SslMode::ALL
            .into_iter()
            .find(|mode| mode.as_str() == value)
            .ok_or_else(|| TlsError::BadSslMode {
                value: value.to_string(),
            })
    }
}

/// Where the roots a server's certificate is checked against come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RootCert {
    /// A PEM file of CA certificates (`sslrootcert=PATH`).
    File(PathBuf),
    /// The system's trust store (`sslrootcert=system`, as libpq 16).
    System,
}

/// Where a setting's value came from: what an error names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// The URL's query string or the key-value string.
    Url,
    /// A `PGSSL*` environment variable.
    Environment,
    /// libpq's default (a file under `~/.postgresql/` that exists).
    Default,
}

/// One connection target's TLS settings, parsed once. The default is
/// libpq's with no file present: `prefer`, no root, no client certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsSettings {
    /// `sslmode`. Default: `prefer`.
    pub mode: SslMode,
    /// `sslrootcert`, and where it came from. Default: `~/.postgresql/root.crt`
    /// when it exists, else none.
    pub root_cert: Option<(RootCert, Origin)>,
    /// `sslcert`: the client's certificate chain (PEM). Default:
    /// `~/.postgresql/postgresql.crt` when it exists.
    pub client_cert: Option<(PathBuf, Origin)>,
    /// `sslkey`: the client certificate's private key (PEM). Default:
    /// `~/.postgresql/postgresql.key` when it exists.
    pub client_key: Option<(PathBuf, Origin)>,
}

impl Default for TlsSettings {
    /// `prefer`, nothing else: libpq's defaults where no file exists.
    fn default() -> Self {
        TlsSettings {
            mode: SslMode::Prefer,
            root_cert: None,
            client_cert: None,
            client_key: None,
        }
    }
}

/// The URL keys this module owns (tokio-postgres knows only some of them,
/// sqlx all: both are given the URL without them, and these settings).
pub const TLS_KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

impl TlsSettings {
    /// Splits `url` into itself without [`TLS_KEYS`] and the TLS settings
    /// its keys, the process's `PGSSL*` variables and libpq's default
    /// files give, in that order of precedence.
    pub fn from_url(url: &str) -> Result<(String, TlsSettings), TlsError> {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        Self::from_url_with(url, &|name| std::env::var(name).ok(), home.as_deref(), &|path| {
            path.exists()
        })
    }

    /// [`TlsSettings::from_url`] with the environment, the home directory
    /// and the file-existence check given (for tests).
    pub fn from_url_with(
        url: &str,
        env: &dyn Fn(&str) -> Option<String>,
        home: Option<&std::path::Path>,
        exists: &dyn Fn(&std::path::Path) -> bool,
    ) -> Result<(String, TlsSettings), TlsError> {
        let (stripped, keys) = split_tls_keys(url);
        let lookup = |key: &str, variable: &str| -> Option<(String, Origin)> {
            keys.iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| (v.clone(), Origin::Url))
                .or_else(|| {
                    env(variable)
                        .filter(|v| !v.is_empty())
                        .map(|v| (v, Origin::Environment))
                })
        };
        let default_file = |name: &str| {
            home.map(|home| home.join(".postgresql").join(name))
                .filter(|path| exists(path))
                .map(|path| (path, Origin::Default))
        };
        let mode = match lookup("sslmode", "PGSSLMODE") {
            Some((value, _)) => value.parse()?,
            None => SslMode::Prefer,
        };
        let root_cert = match lookup("sslrootcert", "PGSSLROOTCERT") {
            Some((value, origin)) if value == "system" => Some((RootCert::System, origin)),
            Some((value, origin)) => Some((RootCert::File(PathBuf::from(value)), origin)),
            None => default_file("root.crt").map(|(path, origin)| (RootCert::File(path), origin)),
        };
        let path = |(value, origin): (String, Origin)| (PathBuf::from(value), origin);
        let client_cert = lookup("sslcert", "PGSSLCERT")
            .map(path)
            .or_else(|| default_file("postgresql.crt"));
        let client_key = lookup("sslkey", "PGSSLKEY")
            .map(path)
            .or_else(|| default_file("postgresql.key"));
        Ok((
            stripped,
            TlsSettings {
                mode,
                root_cert,
                client_cert,
                client_key,
            },
        ))
    }
}

type Pairs = Vec<(String, String)>;

/// `url` without [`TLS_KEYS`], and those keys' values in order. A URL's
/// query is rewritten; a key-value string (`host=… sslmode=…`) loses those
/// words (values with spaces in them are not libpq's quoting, here).
fn split_tls_keys(url: &str) -> (String, Pairs) {
    let is_tls_key = |key: &str| TLS_KEYS.contains(&key);
    if url.contains("://") {
        let Ok(mut parsed) = ::url::Url::parse(url) else {
            return (url.to_string(), Vec::new());
        };
        let (tls, kept): (Pairs, Pairs) = parsed
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .partition(|(k, _)| is_tls_key(k));
        if tls.is_empty() {
            return (url.to_string(), tls);
        }
        if kept.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(kept);
        }
        return (parsed.to_string(), tls);
    }
    let mut tls = Vec::new();
    let kept: Vec<&str> = url
        .split_whitespace()
        .filter(|word| match word.split_once('=') {
            Some((key, value)) if is_tls_key(key.trim()) => {
                tls.push((key.trim().to_string(), value.trim_matches('\'').to_string()));
                false
            }
            _ => true,
        })
        .collect();
    (kept.join(" "), tls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::path::Path;

    fn parse(url: &str, env: &[(&str, &str)], files: &[&str]) -> Result<(String, TlsSettings), TlsError> {
        let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let files: Vec<PathBuf> = files.iter().map(PathBuf::from).collect();
        TlsSettings::from_url_with(
            url,
            &|name| env.get(name).cloned(),
            Some(Path::new("/home/u")),
            &|path| files.iter().any(|f| f == path),
        )
    }

    #[test]
    fn prefer_is_the_default_with_nothing_given() {
        let (url, tls) = parse("postgres://u@h/db", &[], &[]).unwrap();
        assert_eq!(url, "postgres://u@h/db");
        assert_eq!(tls, TlsSettings::default());
        assert_eq!(tls.mode, SslMode::Prefer);
    }

    #[test]
    fn every_libpq_mode_parses_and_others_are_refused() {
        for mode in SslMode::ALL {
            let (_, tls) = parse(&format!("postgres://u@h/db?sslmode={mode}"), &[], &[]).unwrap();
            assert_eq!(tls.mode, mode);
        }
        let error = parse("postgres://u@h/db?sslmode=verify_full", &[], &[]).unwrap_err();
        assert!(error.to_string().contains("verify-full"), "{error}");
    }

    #[test]
    fn the_url_wins_over_the_environment_which_wins_over_default_files() {
        let env = [
            ("PGSSLMODE", "require"),
            ("PGSSLROOTCERT", "/env/ca.pem"),
            ("PGSSLCERT", "/env/client.pem"),
        ];
        let files = [
            "/home/u/.postgresql/root.crt",
            "/home/u/.postgresql/postgresql.crt",
            "/home/u/.postgresql/postgresql.key",
        ];
        let (url, tls) = parse(
            "postgres://u@h/db?application_name=x&sslmode=verify-full&sslrootcert=/url/ca.pem",
            &env,
            &files,
        )
        .unwrap();
        assert_eq!(url, "postgres://u@h/db?application_name=x");
        assert_eq!(tls.mode, SslMode::VerifyFull);
        assert_eq!(tls.root_cert, Some((RootCert::File("/url/ca.pem".into()), Origin::Url)));
        assert_eq!(tls.client_cert, Some(("/env/client.pem".into(), Origin::Environment)));
        assert_eq!(
            tls.client_key,
            Some(("/home/u/.postgresql/postgresql.key".into(), Origin::Default))
        );

        let (_, from_env) = parse("postgres://u@h/db", &env, &[]).unwrap();
        assert_eq!(from_env.mode, SslMode::Require);
        assert_eq!(
            from_env.root_cert,
            Some((RootCert::File("/env/ca.pem".into()), Origin::Environment))
        );
        // An empty variable is unset, as libpq reads it.
        let (_, empty) = parse("postgres://u@h/db", &[("PGSSLMODE", "")], &[]).unwrap();
        assert_eq!(empty.mode, SslMode::Prefer);
    }

    #[test]
    fn system_roots_are_named_as_libpq_16_names_them() {
        let (_, tls) = parse("postgres://u@h/db?sslmode=verify-full&sslrootcert=system", &[], &[]).unwrap();
        assert_eq!(tls.root_cert, Some((RootCert::System, Origin::Url)));
    }

    #[test]
    fn key_value_strings_lose_only_their_tls_words() {
        let (rest, tls) = parse("host=h user=u sslmode=verify-ca sslrootcert=/ca.pem dbname=d", &[], &[]).unwrap();
        assert_eq!(rest, "host=h user=u dbname=d");
        assert_eq!(tls.mode, SslMode::VerifyCa);
        assert_eq!(tls.root_cert, Some((RootCert::File("/ca.pem".into()), Origin::Url)));
    }
}
