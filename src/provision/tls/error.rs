//! What can go wrong with TLS, each said as the setting to change: settings
//! that cannot be used ([`TlsError`], before any connection), and a
//! connection the server or the certificate check refused ([`TlsRefusal`],
//! read out of a tokio-postgres error).

use std::path::PathBuf;

use super::SslMode;

/// TLS settings that cannot be used, found before connecting.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// `sslmode` is not one of libpq's.
    #[error("sslmode={value} is not one of libpq's modes: disable, allow, prefer, require, verify-ca, verify-full")]
    BadSslMode {
        /// What was given.
        value: String,
    },
    /// A verifying mode with no root certificate to verify against.
    #[error("sslmode={mode} checks the server's certificate, but no root certificate was given: set sslrootcert=PATH to the CA that signed it (or sslrootcert=system for the system's roots)")]
    NoRootCert {
        /// The mode asked for.
        mode: SslMode,
    },
    /// A named file could not be read.
    #[error("{setting}={}: {source}", path.display())]
    Read {
        /// `sslrootcert`, `sslcert` or `sslkey`.
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A named file holds nothing of what it should.
    #[error("{setting}={}: {what}", path.display())]
    BadPem {
        /// `sslrootcert`, `sslcert` or `sslkey`.
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// One of `sslcert` and `sslkey` without the other.
    #[error("{given} is set but {missing} is not: a client certificate needs both sslcert and sslkey")]
    HalfClientCert {
        /// The one given.
        given: &'static str,
        /// The one missing.
        missing: &'static str,
    },
    /// The system's trust store could not be read (`sslrootcert=system`).
    #[error("sslrootcert=system: no usable root certificate in the system's store ({reason}); give sslrootcert=PATH")]
    NoSystemRoots {
        /// What went wrong.
        reason: String,
    },
    /// rustls refused the configuration (a key that does not match its
    /// certificate, say).
    #[error("sslcert/sslkey: {0}")]
    Rustls(#[source] rustls::Error),
}

/// Why a connection was refused, TLS-wise: one line naming the setting to
/// change. Read from a connect error by [`TlsRefusal::of`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsRefusal {
    /// The server takes only TLS (pg_hba `hostssl`) and contend was told
    /// not to use it.
    #[error("the server accepts only TLS connections (pg_hba.conf hostssl) and sslmode=disable was given: set sslmode=require (or sslmode=verify-full with sslrootcert=PATH)")]
    TlsRequired,
    /// The server offers no TLS and the mode demands it.
    #[error("the server does not offer TLS (ssl = off) and sslmode requires it: turn ssl on at the server, or set sslmode=prefer to accept a plain connection")]
    ServerWithoutTls,
    /// The certificate chain ends at no root given.
    #[error(
        "the server's certificate is not signed by a CA in sslrootcert: set sslrootcert=PATH to the CA that signed it"
    )]
    UnknownCa,
    /// The certificate names other hosts than the one connected to.
    #[error("the server's certificate is for {presented}, not {expected}: connect by a name it holds, or set sslmode=verify-ca to check the CA only")]
    WrongHost {
        /// The host connected to.
        expected: String,
        /// The names the certificate holds.
        presented: String,
    },
    /// The certificate is outside its validity period.
    #[error("the server's certificate has expired or is not valid yet: renew it at the server (or check this machine's clock)")]
    Expired,
    /// The server wants a client certificate and got none.
    #[error("the server requires a client certificate: set sslcert=PATH and sslkey=PATH")]
    ClientCertMissing,
    /// The server did not accept the client certificate sent.
    #[error("the server refused the client certificate ({alert}): check sslcert and sslkey, and that the server's ssl_ca_file signed them")]
    ClientCertRefused {
        /// The TLS alert the server sent.
        alert: String,
    },
    /// Another handshake failure.
    #[error("the TLS handshake failed: {0}")]
    Handshake(String),
}

impl TlsRefusal {
    /// The TLS reason `error` (from connecting) had, if it had one.
    pub fn of(error: &tokio_postgres::Error) -> Option<TlsRefusal> {
        if let Some(db) = error.as_db_error() {
            let message = db.message();
            return match db.code().code() {
                "28000" if message.contains("no encryption") => Some(TlsRefusal::TlsRequired),
                "28000" if message.contains("client certificate") => Some(TlsRefusal::ClientCertMissing),
                _ => None,
            };
        }
        if let Some(tls) = rustls_error(error) {
            return Some(Self::from_rustls(tls));
        }
        if error.to_string().contains("server does not support TLS") {
            return Some(TlsRefusal::ServerWithoutTls);
        }
        None
    }

    fn from_rustls(error: &rustls::Error) -> TlsRefusal {
        use rustls::{AlertDescription, CertificateError};
        match error {
            rustls::Error::InvalidCertificate(certificate) => match certificate {
                // BadSignature: a root of the same name, another key (two
                // runs' CAs, or a CA re-keyed): not the CA that signed it.
                CertificateError::UnknownIssuer | CertificateError::BadSignature => TlsRefusal::UnknownCa,
                CertificateError::NotValidForNameContext { expected, presented } => TlsRefusal::WrongHost {
                    expected: server_name(expected),
                    presented: presented.join(", "),
                },
                CertificateError::NotValidForName => TlsRefusal::WrongHost {
                    expected: "the host connected to".into(),
                    presented: "other names".into(),
                },
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. } => TlsRefusal::Expired,
                other => TlsRefusal::Handshake(format!("the server's certificate: {other:?}")),
            },
            rustls::Error::AlertReceived(
                alert @ (AlertDescription::BadCertificate
                | AlertDescription::UnknownCA
                | AlertDescription::CertificateRequired
                | AlertDescription::CertificateUnknown
                | AlertDescription::CertificateExpired
                | AlertDescription::CertificateRevoked
                | AlertDescription::UnsupportedCertificate
                | AlertDescription::DecryptError),
            ) => {
                if *alert == AlertDescription::CertificateRequired {
                    TlsRefusal::ClientCertMissing
                } else {
                    TlsRefusal::ClientCertRefused {
                        alert: format!("{alert:?}"),
                    }
                }
            }
            other => TlsRefusal::Handshake(other.to_string()),
        }
    }
}

fn server_name(name: &rustls::pki_types::ServerName<'_>) -> String {
    match name {
        rustls::pki_types::ServerName::DnsName(dns) => dns.as_ref().to_string(),
        rustls::pki_types::ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        other => format!("{other:?}"),
    }
}

/// The rustls error somewhere in `error`'s sources: tokio-rustls wraps it
/// in an io::Error, whose `source()` skips it (only `get_ref` reaches it).
pub(crate) fn rustls_error<'e>(error: &'e (dyn std::error::Error + 'static)) -> Option<&'e rustls::Error> {
    let mut current: Option<&'e (dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = current {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            if let Some(tls) = io.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
                return Some(tls);
            }
        }
        current = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::{AlertDescription, CertificateError};

    #[test]
    fn handshake_failures_name_the_setting_to_change() {
        let of = |error: rustls::Error| TlsRefusal::from_rustls(&error).to_string();
        assert!(of(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)).contains("sslrootcert"));
        assert!(of(rustls::Error::InvalidCertificate(CertificateError::BadSignature)).contains("sslrootcert"));
        assert!(of(rustls::Error::InvalidCertificate(CertificateError::Expired)).contains("expired"));
        let wrong_host = of(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForNameContext {
                expected: rustls::pki_types::ServerName::try_from("db.example.com").unwrap(),
                presented: vec!["localhost".into(), "127.0.0.1".into()],
            },
        ));
        assert!(
            wrong_host.contains("for localhost, 127.0.0.1, not db.example.com"),
            "{wrong_host}"
        );
        assert!(wrong_host.contains("sslmode=verify-ca"), "{wrong_host}");
        for alert in [AlertDescription::BadCertificate, AlertDescription::UnknownCA] {
            let refused = of(rustls::Error::AlertReceived(alert));
            assert!(refused.contains("sslcert and sslkey"), "{refused}");
        }
        assert!(of(rustls::Error::AlertReceived(AlertDescription::CertificateRequired)).contains("sslcert=PATH"));
    }

    #[test]
    fn the_error_is_found_inside_the_io_error_tokio_rustls_wraps_it_in() {
        let wrapped = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        assert!(matches!(
            rustls_error(&wrapped),
            Some(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer))
        ));
    }
}
