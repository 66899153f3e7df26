//! A cell's diagnosis as recorded: the bottleneck class and the figures it
//! was judged on. analysis::diagnose makes it; render says it in a
//! sentence.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where a cell's time went, as one class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bottleneck {
    /// Clients waited for a pooled connection (or timed out waiting).
    Pool,
    /// Connections were refused (53300) or slow to open.
    Connections,
    /// Backends waited on heavyweight locks or LWLocks.
    ServerLocks,
    /// Backends waited on I/O.
    ServerIo,
    /// Backends were busy on CPU, as many as there are cores or more.
    ServerCpu,
    /// contend itself was CPU-bound: the figures understate the server.
    Client,
    /// Nothing saturated: the load asked for was served.
    None,
}

/// Shares of the mean attempt's end-to-end time (0..=1 each; they sum to 1
/// but for rounding).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TimeShares {
    /// Waiting for a pooled connection.
    pub pool_wait: f64,
    /// Opening a connection.
    pub connect: f64,
    /// In the database (statements and their round trips).
    pub in_db: f64,
    /// Everything else: the client's own work between statements.
    pub outside: f64,
}

/// The bottleneck and its evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnosis {
    /// The class.
    pub bottleneck: Bottleneck,
    /// Where the mean attempt's time went.
    pub time_shares: TimeShares,
    /// Mean end-to-end time of an attempt, milliseconds.
    pub mean_end_to_end_ms: f64,
    /// Attempts refused a connection (53300, connection failures, contend
    /// out of file descriptors), of all attempts.
    pub refused_share: f64,
    /// The error classes (keys) of those refusals, most frequent first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused_classes: Vec<String>,
    /// Attempts that timed out waiting for a pooled connection, of all attempts.
    pub pool_timeout_share: f64,
    /// Active backends by wait event type ("CPU" when not waiting), as
    /// shares of all active backend samples.
    pub wait_shares: BTreeMap<String, f64>,
    /// Mean active backends per sample.
    pub mean_active: f64,
    /// Little's law: throughput × mean in-database time, connections busy
    /// in the database on average.
    pub busy_in_db: f64,
    /// Connections the pools could hold (instances × pool size; none with `--pool none`).
    pub pool_connections: Option<u32>,
    /// contend's CPU time over the cell's wall time per driver thread
    /// (1.0: every driver thread busy all the time); `None` when not measured.
    pub client_cpu_share: Option<f64>,
}
