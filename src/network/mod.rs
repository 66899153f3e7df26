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
