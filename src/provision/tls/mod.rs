//! TLS, the libpq way, for every PostgreSQL connection contend makes, and
//! the certificates of servers contend starts with `--tls`.
//!
//! [`TlsSettings`] is read once from a URL and the `PGSSL*` variables;
//! [`PgTarget`] builds from it both the tokio-postgres connector (deadpool,
//! `--pool none`, the sampler, the checker, the template loader, migrate)
//! and sqlx's options, so both drivers verify the same way. Refusals come
//! back as [`TlsRefusal`]: one line naming the setting to change. This
//! module never retries beyond libpq's own fallbacks (`allow`, `prefer`)
//! and never goes below what `sslmode` allows.

mod certs;
mod error;
mod settings;
mod target;

pub use self::certs::{ServerCertificates, LOCAL_SERVER_NAMES};
pub(crate) use self::error::rustls_error;
pub use self::error::{TlsError, TlsRefusal};
pub use self::settings::{Origin, RootCert, SslMode, TlsSettings, TLS_KEYS};
pub use self::target::{PgConnection, PgTarget, TargetError};
