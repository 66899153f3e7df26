//! The external backend: servers the user already runs, given by URL.
//!
//! contend owns nothing here: it reads what the servers are (version,
//! `max_connections`, settings) and refuses what would need a restart it
//! does not own.

use super::{probe_postgres, probe_redis, PgServer, ProvisionError, ProvisionOptions, RedisServer, ServerOrigin};

/// Checks both URLs answer and reads the servers' facts.
pub(super) async fn connect(options: &ProvisionOptions) -> Result<(PgServer, Option<RedisServer>), ProvisionError> {
    let url = options.database_url.as_deref().ok_or(ProvisionError::MissingUrl)?;
    if let Some((key, _)) = options.pg_settings.first() {
        return Err(ProvisionError::InvalidSetting {
            setting: key.clone(),
            reason: "contend cannot change settings of an external server; set it on the server, or let contend start one (--backend local or docker)".into(),
        });
    }
    let postgres = probe_postgres(url, ServerOrigin::External).await?;
    if let Some(requested) = options.max_connections {
        if requested != postgres.max_connections {
            return Err(ProvisionError::ExternalMaxConnections {
                requested,
                actual: postgres.max_connections,
            });
        }
    }
    let redis = match options.redis_url.as_deref() {
        Some(url) => Some(probe_redis(url, ServerOrigin::External).await?),
        None => None,
    };
    Ok((postgres, redis))
}
