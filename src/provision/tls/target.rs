//! A PostgreSQL URL read once into [`PgTarget`]: tokio-postgres's config
//! (TLS keys taken out), the [`TlsSettings`], and the rustls connector built
//! from them; it connects through tokio-postgres with libpq's fallbacks
//! (`allow`: plain, then TLS; `prefer`: TLS, then plain) and gives sqlx the
//! same settings. Never a plain connection where the mode forbids one.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode as WireMode;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{RootCert, SslMode, TlsError, TlsSettings};

/// A connection's driving half, TLS or plain: what [`PgTarget::connect`]
/// gives beside the client.
pub type PgConnection = tokio_postgres::Connection<Socket, <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream>;

/// Why a URL cannot be connected to, before any connection.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// Not a URL (or key-value string) tokio-postgres reads.
    #[error("{0}")]
    Url(#[source] tokio_postgres::Error),
    /// TLS settings that cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// A PostgreSQL server to connect to, read once from its URL.
#[derive(Clone)]
pub struct PgTarget {
    /// Host, port, user, database and the rest; callers may change it
    /// (application name, timeouts). Its own `sslmode` is ignored:
    /// [`PgTarget::connect`] sets it per attempt.
    pub config: tokio_postgres::Config,
    /// The URL without its TLS keys (what sqlx parses).
    url: String,
    tls: Arc<Tls>,
}

struct Tls {
    settings: TlsSettings,
    connector: MakeRustlsConnect,
}

impl PgTarget {
    /// Reads `url`, the `PGSSL*` variables and libpq's default files.
    pub fn parse(url: &str) -> Result<PgTarget, TargetError> {
        let (url, settings) = TlsSettings::from_url(url)?;
        let config: tokio_postgres::Config = url.parse().map_err(TargetError::Url)?;
        Ok(PgTarget {
            config,
            url,
            tls: Arc::new(Tls {
                connector: MakeRustlsConnect::new(client_config(&settings)?),
                settings,
            }),
        })
    }

    /// The TLS settings read.
    pub fn tls_settings(&self) -> &TlsSettings {
        &self.tls.settings
    }

    /// The URL without its TLS keys.
    pub fn url_without_tls(&self) -> &str {
        &self.url
    }

    /// Opens a connection the way libpq would with these settings: for
    /// `allow`, plain and then TLS if the server refused plain; for
    /// `prefer`, TLS if offered and plain if the handshake failed (the TLS
    /// attempt's error is the one returned when both fail; unlike libpq, a
    /// server's refusal after a TLS handshake is not tried again in plain);
    /// for the others, TLS only.
    pub async fn connect(&self) -> Result<(Client, PgConnection), tokio_postgres::Error> {
        // Boxed: two tokio-postgres connects inline would grow every
        // caller's future (a debug build's test thread overflowed its stack).
        Box::pin(self.connect_as_libpq()).await
    }

    async fn connect_as_libpq(&self) -> Result<(Client, PgConnection), tokio_postgres::Error> {
        match self.tls.settings.mode {
            SslMode::Disable => self.attempt(WireMode::Disable).await,
            SslMode::Allow => match self.attempt(WireMode::Disable).await {
                Err(refused) if refused.as_db_error().is_some() => self.attempt(WireMode::Require).await,
                other => other,
            },
            // Plain again only when the handshake failed: a server's refusal
            // (53300, a password) may have come over plain already, and
            // repeating it would double every refused connect of a herd.
            SslMode::Prefer => match self.attempt(WireMode::Prefer).await {
                Err(tls_failed) if super::rustls_error(&tls_failed).is_some() => {
                    self.attempt(WireMode::Disable).await.map_err(|_| tls_failed)
                }
                other => other,
            },
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => self.attempt(WireMode::Require).await,
        }
    }

    async fn attempt(&self, mode: WireMode) -> Result<(Client, PgConnection), tokio_postgres::Error> {
        let mut config = self.config.clone();
        config.ssl_mode(mode);
        config.connect(self.tls.connector.clone()).await
    }

    /// sqlx's options for the same server and the same TLS settings. sqlx
    /// checks no certificate under `require`; libpq checks the chain when
    /// a root certificate is given, so that is asked of sqlx as `verify-ca`.
    pub fn sqlx_options(&self) -> Result<sqlx::postgres::PgConnectOptions, sqlx::Error> {
        use sqlx::postgres::PgSslMode;
        let settings = &self.tls.settings;
        let mut options: sqlx::postgres::PgConnectOptions = self.url.parse()?;
        let root_file = match &settings.root_cert {
            Some((RootCert::File(path), _)) => Some(path.clone()),
            _ => None,
        };
        options = options.ssl_mode(match settings.mode {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Allow => PgSslMode::Allow,
            SslMode::Prefer => PgSslMode::Prefer,
            SslMode::Require if settings.root_cert.is_some() => PgSslMode::VerifyCa,
            SslMode::Require => PgSslMode::Require,
            SslMode::VerifyCa => PgSslMode::VerifyCa,
            SslMode::VerifyFull => PgSslMode::VerifyFull,
        });
        if let Some(path) = root_file {
            options = options.ssl_root_cert(path);
        }
        if let (Some((cert, _)), Some((key, _))) = (&settings.client_cert, &settings.client_key) {
            options = options.ssl_client_cert(cert).ssl_client_key(key);
        }
        Ok(options)
    }
}

/// The ring provider, named rather than taken from the process default:
/// the tree holds no other, and naming it keeps it so.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// rustls's client configuration for `settings`: what to verify (nothing;
/// the chain; the chain and the host name) and the client certificate.
fn client_config(settings: &TlsSettings) -> Result<ClientConfig, TlsError> {
    let provider = provider();
    if settings.mode == SslMode::Disable {
        // Never used: files named for TLS are not read (libpq ignores them).
        return Ok(ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Rustls)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
            .with_no_client_auth());
    }
    let roots = match &settings.root_cert {
        Some((root, _)) => Some(root_store(root)?),
        None if settings.mode.verifies() => return Err(TlsError::NoRootCert { mode: settings.mode }),
        None => None,
    };
    let verifier: Arc<dyn ServerCertVerifier> = match roots {
        None => Arc::new(NoVerification(provider.clone())),
        Some(roots) => {
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| TlsError::BadPem {
                    setting: "sslrootcert",
                    path: root_path(settings),
                    what: e.to_string(),
                })?;
            match settings.mode {
                SslMode::VerifyFull => webpki,
                _ => Arc::new(ChainOnly(webpki)),
            }
        }
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Rustls)?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match (&settings.client_cert, &settings.client_key) {
        (Some((cert, _)), Some((key, _))) => builder
            .with_client_auth_cert(read_certs("sslcert", cert)?, read_key(key)?)
            .map_err(TlsError::Rustls),
        (Some((_, super::Origin::Default)), None) | (None, Some((_, super::Origin::Default))) | (None, None) => {
            Ok(builder.with_no_client_auth())
        }
        (Some(_), None) => Err(TlsError::HalfClientCert {
            given: "sslcert",
            missing: "sslkey",
        }),
        (None, Some(_)) => Err(TlsError::HalfClientCert {
            given: "sslkey",
            missing: "sslcert",
        }),
    }
}

fn root_path(settings: &TlsSettings) -> std::path::PathBuf {
    match &settings.root_cert {
        Some((RootCert::File(path), _)) => path.clone(),
        _ => "system".into(),
    }
}

fn root_store(root: &RootCert) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    match root {
        RootCert::File(path) => {
            for cert in read_certs("sslrootcert", path)? {
                store.add(cert).map_err(|e| TlsError::BadPem {
                    setting: "sslrootcert",
                    path: path.clone(),
                    what: e.to_string(),
                })?;
            }
        }
        RootCert::System => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                let reason = match found.errors.first() {
                    Some(error) => error.to_string(),
                    None => "the store is empty".into(),
                };
                return Err(TlsError::NoSystemRoots { reason });
            }
        }
    }
    Ok(store)
}

fn read_certs(setting: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(setting, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(setting, path, e))?;
    if certs.is_empty() {
        return Err(TlsError::BadPem {
            setting,
            path: path.to_path_buf(),
            what: "no PEM certificate in it".into(),
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_error("sslkey", path, e))
}

fn pem_error(setting: &'static str, path: &Path, error: rustls::pki_types::pem::Error) -> TlsError {
    match error {
        rustls::pki_types::pem::Error::Io(source) => TlsError::Read {
            setting,
            path: path.to_path_buf(),
            source,
        },
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::BadPem {
            setting,
            path: path.to_path_buf(),
            what: "nothing of the expected kind in it (a PEM certificate, or an unencrypted key)".into(),
        },
        other => TlsError::BadPem {
            setting,
            path: path.to_path_buf(),
            what: other.to_string(),
        },
    }
}

/// `require`, `prefer` and `allow` without a root certificate: encrypted,
/// the server's identity unchecked (libpq's behaviour), the handshake's
/// signatures still checked.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca` (and `require`/`prefer`/`allow` with a root certificate):
/// the chain checked as webpki does, a name mismatch forgiven. webpki
/// checks the name only after the chain, so a forgiven name never hides a
/// bad chain.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use rustls::CertificateError;
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verifying_mode_without_a_root_is_refused_before_connecting() {
        for mode in ["verify-ca", "verify-full"] {
            let error = PgTarget::parse(&format!("postgres://u@127.0.0.1/db?sslmode={mode}"))
                .err()
                .expect("no root certificate to verify against");
            assert!(
                matches!(error, TargetError::Tls(TlsError::NoRootCert { .. })),
                "{error:?}"
            );
            assert!(error.to_string().contains("sslrootcert"), "{error}");
        }
    }

    #[test]
    fn disable_reads_no_tls_file() {
        let target = PgTarget::parse("postgres://u@127.0.0.1/db?sslmode=disable&sslrootcert=/nonexistent/ca.pem")
            .expect("files named for TLS are not read when TLS is off");
        assert_eq!(target.tls_settings().mode, SslMode::Disable);
    }

    #[test]
    fn a_missing_root_file_is_named() {
        let error = PgTarget::parse("postgres://u@127.0.0.1/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem")
            .err()
            .expect("the file is not there");
        assert!(
            error.to_string().starts_with("sslrootcert=/nonexistent/ca.pem: "),
            "{error}"
        );
    }

    #[test]
    fn a_client_certificate_needs_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let certs = crate::provision::tls::ServerCertificates::generate(&["localhost"]).unwrap();
        let cert = dir.path().join("client.crt");
        std::fs::write(&cert, &certs.server_cert_pem).unwrap();
        let error = PgTarget::parse(&format!("postgres://u@127.0.0.1/db?sslcert={}", cert.display()))
            .err()
            .expect("sslcert without sslkey");
        assert!(error.to_string().contains("sslkey"), "{error}");
    }

    #[test]
    fn sqlx_is_asked_to_verify_when_libpq_would() {
        let dir = tempfile::tempdir().unwrap();
        let certs = crate::provision::tls::ServerCertificates::generate(&["localhost"]).unwrap();
        let ca = dir.path().join("ca.crt");
        std::fs::write(&ca, &certs.ca_cert_pem).unwrap();
        let target = PgTarget::parse(&format!(
            "postgres://u@127.0.0.1/db?sslmode=require&sslrootcert={}",
            ca.display()
        ))
        .unwrap();
        assert_eq!(target.url_without_tls(), "postgres://u@127.0.0.1/db");
        let options = target.sqlx_options().unwrap();
        assert!(matches!(options.get_ssl_mode(), sqlx::postgres::PgSslMode::VerifyCa));
    }
}
