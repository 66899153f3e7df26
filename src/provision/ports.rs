//! Ports for servers contend starts: a free one from the kernel, and retries
//! when another process takes it between choosing and binding.

use std::future::Future;
use std::net::TcpListener;

use super::ProvisionError;

/// Ports tried before giving up.
const PORT_ATTEMPTS: usize = 5;

/// A free TCP port on 127.0.0.1, as the kernel hands one out. It may be taken
/// again before the server binds it: [`on_a_free_port`] retries.
pub(super) fn free_port() -> Result<u16, ProvisionError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(ProvisionError::io("choosing a free port on 127.0.0.1"))
}

/// Why one start of a server failed.
pub(super) enum StartFailure {
    /// Its port was taken; the server's own words.
    PortTaken(String),
    /// Anything else: not worth another port.
    Failed(ProvisionError),
}

impl From<ProvisionError> for StartFailure {
    fn from(error: ProvisionError) -> Self {
        StartFailure::Failed(error)
    }
}

/// Whether a server's log says it could not bind its port.
pub(super) fn says_port_taken(log: &str) -> bool {
    log.contains("could not bind") || log.contains("Address already in use")
}

/// Starts `server` with `start_on(port)` on `hint` (or a free port), and on
/// other free ports while the failure is a taken port, saying so each time.
pub(super) async fn on_a_free_port<T, F, Fut>(
    server: &'static str,
    hint: Option<u16>,
    mut start_on: F,
) -> Result<T, ProvisionError>
where
    F: FnMut(u16) -> Fut,
    Fut: Future<Output = Result<T, StartFailure>>,
{
    let mut port = match hint {
        Some(port) => port,
        None => free_port()?,
    };
    let mut attempt = 1;
    loop {
        match start_on(port).await {
            Ok(started) => return Ok(started),
            Err(StartFailure::PortTaken(_)) if attempt < PORT_ATTEMPTS => {
                let next = free_port()?;
                eprintln!("contend: port {port} was taken before {server} could bind it; trying {next}");
                port = next;
                attempt += 1;
            }
            Err(StartFailure::PortTaken(reason)) => {
                return Err(ProvisionError::ServerStart {
                    server,
                    reason: format!("{PORT_ATTEMPTS} ports in a row were taken before it could bind them: {reason}"),
                })
            }
            Err(StartFailure::Failed(error)) => return Err(error),
        }
    }
}
