//! The network between the application and the database, on one machine:
//! a delaying TCP proxy ([`DelayProxy`]) that contend runs between the app
//! pools and the server when a cell asks for a round-trip time
//! ([`NetworkSettings`]), with what it cost ([`ProxyReport`]).
//!
//! Kernel traffic shaping (netem) is not available where contend runs, so
//! the delay is made here: half the round trip each way, bytes in order per
//! connection, on threads of the proxy's own (never the driver's runtime),
//! with a timer precise to tens of microseconds ([`delay`]). The proxy only
//! moves bytes: it knows nothing of PostgreSQL's protocol (TLS passes
//! through it unchanged) and nothing here records a cell or formats.

mod delay;
mod proxy;

pub use self::delay::{sharpen_this_thread, wait_until, DelayQueue};
pub use self::proxy::{DelayProxy, ProxyError, ProxyReport};

use std::net::{SocketAddr, ToSocketAddrs};

use serde::{Deserialize, Serialize};

/// The network a cell's app pools reach the server over. The default is
/// direct (no proxy in the path: loopback, about 0.06 ms a round trip).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct NetworkSettings {
    /// Round trip added between the app pools and the server, milliseconds;
    /// half of it each way. Default 0: direct.
    pub rtt_ms: f64,
    /// Each chunk's one-way delay varies uniformly within ± half this,
    /// milliseconds, never below zero and never overtaking the chunk before
    /// it on its connection (TCP keeps order). Default 0.
    #[serde(default)]
    pub jitter_ms: f64,
}

impl NetworkSettings {
    /// Whether the pools connect to the server directly (no delay asked).
    pub fn is_direct(&self) -> bool {
        self.rtt_ms <= 0.0 && self.jitter_ms <= 0.0
    }
}

/// The server a PostgreSQL URL names, resolved (port 5432 when it names
/// none): where the proxy connects on the clients' behalf.
pub fn upstream_of(url: &str) -> Result<SocketAddr, ProxyError> {
    let unusable = |reason: String| ProxyError::Upstream { reason };
    let parsed = url::Url::parse(url).map_err(|_| {
        unusable("the server is not given as a postgres:// URL (a key=value string has no host to replace)".into())
    })?;
    let host = parsed
        .host_str()
        .filter(|host| !host.is_empty())
        .ok_or_else(|| unusable("the URL names no host (a Unix socket cannot be delayed)".into()))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = parsed.port().unwrap_or(5432);
    (host, port)
        .to_socket_addrs()
        .map_err(|e| unusable(format!("{host}:{port} does not resolve: {e}")))?
        .next()
        .ok_or_else(|| unusable(format!("{host}:{port} resolves to no address")))
}

/// `url` with its host and port replaced by `through`'s: the URL the app
/// pools get when a proxy (or a pooler) sits between them and the server.
/// Everything else (user, password, database, parameters) is kept.
pub fn url_through(url: &str, through: SocketAddr) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            let host_set = parsed.set_host(Some(&through.ip().to_string())).is_ok();
            let port_set = parsed.set_port(Some(through.port())).is_ok();
            if host_set && port_set {
                parsed.to_string()
            } else {
                url.to_string()
            }
        }
        Err(_) => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pools_url_goes_through_the_proxy_and_keeps_the_rest() {
        let url = "postgres://app:s3cret@127.0.0.1:5433/cell_1?sslmode=disable";
        assert_eq!(upstream_of(url).expect("resolves"), "127.0.0.1:5433".parse().unwrap());
        assert_eq!(
            url_through(url, "127.0.0.1:40001".parse().unwrap()),
            "postgres://app:s3cret@127.0.0.1:40001/cell_1?sslmode=disable"
        );
        assert_eq!(upstream_of("postgres://u@localhost/db").expect("resolves").port(), 5432);
        let error = upstream_of("host=127.0.0.1 user=u").expect_err("no URL");
        assert!(error.to_string().contains("postgres:// URL"), "{error}");
    }

    #[test]
    fn direct_is_no_delay_at_all() {
        assert!(NetworkSettings::default().is_direct());
        assert!(!NetworkSettings {
            rtt_ms: 0.1,
            jitter_ms: 0.0
        }
        .is_direct());
        assert!(!NetworkSettings {
            rtt_ms: 0.0,
            jitter_ms: 0.5
        }
        .is_direct());
    }
}
