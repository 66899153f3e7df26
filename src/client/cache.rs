//! Redis as an application holds it: a client for a URL and the
//! multiplexed connections each application instance (and the workload's
//! own checks) use.

/// Redis could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// The URL does not parse.
    #[error("Redis URL: {0}")]
    Url(#[source] redis::RedisError),
    /// Connecting failed.
    #[error("connecting to Redis for the cache: {0}")]
    Connect(#[source] redis::RedisError),
}

/// A Redis client for `url`; opens nothing.
pub fn redis_client(url: &str) -> Result<redis::Client, RedisError> {
    redis::Client::open(url).map_err(RedisError::Url)
}

/// `instances` multiplexed Redis connections, opened on the caller's
/// runtime (the workload's own checks use one).
pub async fn cache_connections(
    url: &str,
    instances: u32,
) -> Result<Vec<redis::aio::MultiplexedConnection>, RedisError> {
    let client = redis_client(url)?;
    let mut connections = Vec::with_capacity(instances as usize);
    for _ in 0..instances {
        connections.push(
            client
                .get_multiplexed_async_connection()
                .await
                .map_err(RedisError::Connect)?,
        );
    }
    Ok(connections)
}
