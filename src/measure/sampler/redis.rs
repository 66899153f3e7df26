//! Redis as the sampler sees it: `INFO stats` and `INFO clients` over the
//! sampler's own connection, turned into counters over the window
//! ([`RedisDelta`]).
//!
//! This file owns the INFO commands and their parsing; it must not decide
//! when to sample (the loop in `mod.rs` does) and never changes server state
//! (no `CONFIG RESETSTAT`).

use std::future::Future;

use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};

use super::{CONNECT_TIMEOUT, QUERY_TIMEOUT};

/// Redis counters over the window.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RedisDelta {
    /// Key lookups that found the key (`keyspace_hits`).
    pub keyspace_hits: u64,
    /// Key lookups that did not (`keyspace_misses`).
    pub keyspace_misses: u64,
    /// Commands processed (`total_commands_processed`), the sampler's own
    /// `INFO` commands included.
    pub commands_processed: u64,
    /// Most `connected_clients` seen at start, at any sample or at stop, the
    /// sampler's own connection excluded.
    pub max_connected_clients: u64,
}

/// Redis `INFO` counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct RedisCounters {
    keyspace_hits: u64,
    keyspace_misses: u64,
    commands_processed: u64,
    /// `connected_clients` minus the sampler's own connection.
    pub(super) connected_clients: u64,
}

/// The sampler's Redis connection and the counters at start.
pub(super) struct RedisSide {
    pub(super) connection: MultiplexedConnection,
    pub(super) start: RedisCounters,
}

/// `INFO stats` and `INFO clients` in one round trip (one section per
/// command: Redis before 7 takes only one).
pub(super) async fn read_redis_counters(connection: &mut MultiplexedConnection) -> Result<RedisCounters, RedisFailure> {
    let (stats, clients): (String, String) = redis::pipe()
        .cmd("INFO")
        .arg("stats")
        .cmd("INFO")
        .arg("clients")
        .query_async(connection)
        .await?;
    Ok(RedisCounters {
        keyspace_hits: info_field(&stats, "keyspace_hits")?,
        keyspace_misses: info_field(&stats, "keyspace_misses")?,
        commands_processed: info_field(&stats, "total_commands_processed")?,
        connected_clients: info_field(&clients, "connected_clients")?.saturating_sub(1),
    })
}

/// `connected_clients` minus the sampler's own connection.
pub(super) async fn read_redis_clients(connection: &mut MultiplexedConnection) -> Result<u64, RedisFailure> {
    let clients: String = redis::cmd("INFO").arg("clients").query_async(connection).await?;
    Ok(info_field(&clients, "connected_clients")?.saturating_sub(1))
}

/// The integer value of `key` in Redis `INFO` output (`key:value` lines).
fn info_field(info: &str, key: &'static str) -> Result<u64, RedisFailure> {
    let value = info
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .ok_or(RedisFailure::MissingField { key })?
        .trim();
    value.parse().map_err(|_| RedisFailure::NotANumber {
        key,
        value: value.to_string(),
    })
}

/// End minus start; a counter that went down (restart, `CONFIG RESETSTAT`)
/// counts as zero.
pub(super) fn redis_delta(start: &RedisCounters, end: &RedisCounters, max_connected_clients: u64) -> RedisDelta {
    RedisDelta {
        keyspace_hits: end.keyspace_hits.saturating_sub(start.keyspace_hits),
        keyspace_misses: end.keyspace_misses.saturating_sub(start.keyspace_misses),
        commands_processed: end.commands_processed.saturating_sub(start.commands_processed),
        max_connected_clients,
    }
}

/// Why connecting to Redis or one `INFO` round trip failed. Its `Display` is
/// what [`ServerSamples::sampling_errors`](crate::measure::ServerSamples::sampling_errors)
/// records: what happened and what to check, never a password.
#[derive(Debug, thiserror::Error)]
pub(super) enum RedisFailure {
    /// The URL does not parse as a Redis URL.
    #[error("not a valid URL ({0})")]
    Url(redis::RedisError),
    /// No connection within [`CONNECT_TIMEOUT`].
    #[error("no answer within {} s: check host and port", CONNECT_TIMEOUT.as_secs())]
    ConnectTimeout,
    /// No answer to `INFO` within [`QUERY_TIMEOUT`].
    #[error("no answer within {} s", QUERY_TIMEOUT.as_secs())]
    Timeout,
    /// Redis refused, or the connection failed.
    #[error("{}", describe_redis_error(.0))]
    Redis(#[from] redis::RedisError),
    /// `INFO` did not list a field the sampler reads.
    #[error("INFO has no {key}")]
    MissingField {
        /// The field, e.g. `keyspace_hits`.
        key: &'static str,
    },
    /// An `INFO` field was not an integer.
    #[error("INFO {key} is not a number: {value:?}")]
    NotANumber {
        /// The field.
        key: &'static str,
        /// Its value as Redis sent it, trimmed.
        value: String,
    },
}

/// The sampler's own Redis connection.
pub(super) async fn connect_redis(url: &str) -> Result<MultiplexedConnection, RedisFailure> {
    let client = redis::Client::open(url).map_err(RedisFailure::Url)?;
    Ok(
        tokio::time::timeout(CONNECT_TIMEOUT, client.get_multiplexed_async_connection())
            .await
            .map_err(|_| RedisFailure::ConnectTimeout)??,
    )
}

/// Runs `query` with [`QUERY_TIMEOUT`].
pub(super) async fn timed_redis<T>(query: impl Future<Output = Result<T, RedisFailure>>) -> Result<T, RedisFailure> {
    tokio::time::timeout(QUERY_TIMEOUT, query)
        .await
        .unwrap_or(Err(RedisFailure::Timeout))
}

fn describe_redis_error(error: &redis::RedisError) -> String {
    let text = error.to_string();
    if error.kind() == redis::ErrorKind::AuthenticationFailed || text.contains("WRONGPASS") || text.contains("NOAUTH") {
        "password authentication failed: check the password in the URL".to_string()
    } else if text.contains("Connection refused") {
        "connection refused: is the server running and listening on that host and port?".to_string()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_fields_are_exact_keys() {
        let info = "# Stats\r\nkeyspace_hits_extra:9\r\nkeyspace_hits:12\r\nkeyspace_misses:3\r\nbad:x\r\n";
        assert_eq!(info_field(info, "keyspace_hits").unwrap(), 12);
        assert_eq!(info_field(info, "keyspace_misses").unwrap(), 3);
        let missing = info_field(info, "total_commands_processed").unwrap_err();
        assert!(matches!(missing, RedisFailure::MissingField { .. }));
        assert_eq!(missing.to_string(), "INFO has no total_commands_processed");
        let bad = info_field(info, "bad").unwrap_err();
        assert_eq!(bad.to_string(), "INFO bad is not a number: \"x\"");
    }

    #[test]
    fn redis_delta_never_underflows() {
        let start = RedisCounters {
            keyspace_hits: 10,
            keyspace_misses: 5,
            commands_processed: 100,
            connected_clients: 2,
        };
        let end = RedisCounters {
            keyspace_hits: 13,
            keyspace_misses: 1,
            commands_processed: 120,
            connected_clients: 4,
        };
        assert_eq!(
            redis_delta(&start, &end, 7),
            RedisDelta {
                keyspace_hits: 3,
                keyspace_misses: 0,
                commands_processed: 20,
                max_connected_clients: 7,
            }
        );
    }
}
