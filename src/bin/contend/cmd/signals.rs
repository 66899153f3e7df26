//! The signals that end a run early, all handled alike: SIGINT (Ctrl-C),
//! SIGTERM (what CI runners, systemd and Kubernetes send) and SIGHUP (the
//! terminal closed). Each stops the run where it is; the subcommand then
//! tears its servers down, keeps what is already on disk and says how to
//! go on, and main exits 128 + the signal's number (130, 143, 129).
//!
//! The handlers are installed before the servers start: a signal that
//! arrives while they start waits here until the subcommand looks, so the
//! servers still come down through contend rather than through the
//! parent-death signal alone. Only listens: what stopping means is the
//! subcommand's.

use anyhow::Context;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// Which signal stopped a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interruption {
    /// SIGINT, Ctrl-C in a terminal.
    Interrupt,
    /// SIGTERM.
    Terminate,
    /// SIGHUP.
    Hangup,
}

impl Interruption {
    /// The exit status of a process this signal stopped: 128 + its number.
    pub fn exit_code(self) -> u8 {
        128 + match self {
            Interruption::Interrupt => libc::SIGINT,
            Interruption::Terminate => libc::SIGTERM,
            Interruption::Hangup => libc::SIGHUP,
        } as u8
    }
}

impl std::fmt::Display for Interruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Interruption::Interrupt => "SIGINT",
            Interruption::Terminate => "SIGTERM",
            Interruption::Hangup => "SIGHUP",
        })
    }
}

/// SIGINT, SIGTERM and SIGHUP, listened for from [`Interrupts::listen`] on.
pub struct Interrupts {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl Interrupts {
    /// Starts listening: from now on these signals no longer end the
    /// process by themselves, and one that arrives is kept until
    /// [`Interrupts::received`] is awaited.
    pub fn listen() -> anyhow::Result<Interrupts> {
        Ok(Interrupts {
            interrupt: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
            hangup: signal(SignalKind::hangup()).context("listening for SIGHUP")?,
        })
    }

    /// The next of the three signals (at once if one came already).
    pub async fn received(&mut self) -> Interruption {
        tokio::select! {
            _ = self.interrupt.recv() => Interruption::Interrupt,
            _ = self.terminate.recv() => Interruption::Terminate,
            _ = self.hangup.recv() => Interruption::Hangup,
        }
    }
}
