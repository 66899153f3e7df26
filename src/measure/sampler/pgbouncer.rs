//! The pooler's side of a cell: PgBouncer's admin console read every
//! interval (1 s by default) on a connection of the sampler's own, outside
//! every pool. `SHOW POOLS` gives the cell database's pool as it stands
//! (clients active and waiting, server connections active and idle, the
//! longest wait); `SHOW STATS` gives cumulative counters whose differences
//! between two samples say what the pooler did in that interval
//! (transactions, queries, time clients waited for a server connection).
//!
//! The admin console speaks only the simple query protocol, so every read
//! is a `simple_query`. A failed read is kept in
//! [`PoolerSamples::sampling_errors`] and sampling goes on; only connecting
//! fails [`PoolerSampler::start`]. Measures only: never formats, never
//! changes the pooler (no `RELOAD`, no `RESET`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::{SamplerError, MAX_SAMPLING_ERRORS};
use crate::provision::{connect_admin, mask_url};

/// Default time between two pooler samples: 1 s.
pub const POOLER_INTERVAL: Duration = Duration::from_secs(1);

/// Time allowed for one read of the admin console.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// One reading of the cell database's pool, with what the pooler did since
/// the reading before.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PoolerSample {
    /// Milliseconds since the sampler started.
    pub at_ms: u64,
    /// `cl_active`: clients linked to a server connection (or idle with
    /// nothing to run).
    pub cl_active: u64,
    /// `cl_waiting`: clients that sent a query and wait for a server
    /// connection: the pooler's queue.
    pub cl_waiting: u64,
    /// `sv_active`: server connections linked to a client.
    pub sv_active: u64,
    /// `sv_idle`: server connections ready for a client.
    pub sv_idle: u64,
    /// `sv_used`: server connections idle long enough to be checked first.
    pub sv_used: u64,
    /// `sv_login`: server connections logging in.
    pub sv_login: u64,
    /// `maxwait` + `maxwait_us`: how long the oldest waiting client has
    /// waited, microseconds.
    pub maxwait_us: u64,
    /// What `SHOW STATS` counted since the sample before (since start for
    /// the first).
    pub delta: PoolerStatsDelta,
}

/// Differences of PgBouncer's cumulative `SHOW STATS` counters for one
/// database.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct PoolerStatsDelta {
    /// `total_xact_count`: transactions pooled (in session mode, sessions
    /// count as they end).
    pub xacts: u64,
    /// `total_query_count`: queries pooled.
    pub queries: u64,
    /// `total_xact_time`: microseconds spent in transactions, on a server
    /// connection.
    pub xact_time_us: u64,
    /// `total_query_time`: microseconds spent in queries, on a server
    /// connection.
    pub query_time_us: u64,
    /// `total_wait_time`: microseconds clients waited for a server
    /// connection.
    pub wait_time_us: u64,
}

impl PoolerStatsDelta {
    /// Mean wait for a server connection per pooled transaction,
    /// microseconds (0 with no transaction).
    pub fn wait_per_xact_us(&self) -> f64 {
        per(self.wait_time_us, self.xacts)
    }

    /// Mean time on a server connection per pooled transaction,
    /// microseconds (0 with no transaction).
    pub fn xact_time_per_xact_us(&self) -> f64 {
        per(self.xact_time_us, self.xacts)
    }

    fn between(from: &StatsCounters, to: &StatsCounters) -> PoolerStatsDelta {
        PoolerStatsDelta {
            xacts: to.xacts.saturating_sub(from.xacts),
            queries: to.queries.saturating_sub(from.queries),
            xact_time_us: to.xact_time_us.saturating_sub(from.xact_time_us),
            query_time_us: to.query_time_us.saturating_sub(from.query_time_us),
            wait_time_us: to.wait_time_us.saturating_sub(from.wait_time_us),
        }
    }
}

fn per(total: u64, count: u64) -> f64 {
    if count == 0 {
        0.0
    } else {
        total as f64 / count as f64
    }
}

/// Everything the pooler sampler saw over one window.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PoolerSamples {
    /// Time between two samples, milliseconds.
    pub interval_ms: u64,
    /// One entry per successful sample, in time order.
    pub samples: Vec<PoolerSample>,
    /// `SHOW STATS` end minus start over the whole window (all zero when
    /// the first or last read failed: then `sampling_errors` says so).
    pub totals: PoolerStatsDelta,
    /// Failed reads, `"at <t> ms: <what>"`, at most
    /// [`MAX_SAMPLING_ERRORS`].
    pub sampling_errors: Vec<String>,
}

impl PoolerSamples {
    /// The largest `cl_waiting` sampled.
    pub fn max_cl_waiting(&self) -> u64 {
        self.samples.iter().map(|s| s.cl_waiting).max().unwrap_or(0)
    }

    /// The largest `maxwait` sampled, microseconds.
    pub fn max_wait_us(&self) -> u64 {
        self.samples.iter().map(|s| s.maxwait_us).max().unwrap_or(0)
    }
}

/// A running pooler sampler; [`PoolerSampler::stop`] it for the results.
pub struct PoolerSampler {
    stop_sender: watch::Sender<bool>,
    task: JoinHandle<PoolerSamples>,
}

impl PoolerSampler {
    /// Connects to the admin console at `admin_url` and samples `database`'s
    /// pool every `interval` from now on.
    pub async fn start(admin_url: &str, database: &str, interval: Duration) -> Result<PoolerSampler, SamplerError> {
        if interval.is_zero() {
            return Err(SamplerError::InvalidSettings {
                reason: "the pooler sampling interval must be above 0".into(),
            });
        }
        let (client, connection) = connect_admin(admin_url).await.map_err(|reason| SamplerError::Connect {
            url: mask_url(admin_url),
            reason: format!("PgBouncer's admin console: {reason}"),
        })?;
        let (stop_sender, mut stop) = watch::channel(false);
        let database = database.to_string();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut errors = Vec::new();
            let mut error = |at: Instant, what: String| {
                if errors.len() < MAX_SAMPLING_ERRORS {
                    errors.push(format!("at {} ms: {what}", at.duration_since(started).as_millis()));
                }
            };
            let first = match read_stats(&client, &database).await {
                Ok(counters) => Some(counters),
                Err(what) => {
                    error(Instant::now(), what);
                    None
                }
            };
            let mut previous = first;
            let mut samples = Vec::new();
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            ticks.tick().await;
            let mut last = previous;
            loop {
                let stopping = tokio::select! {
                    _ = ticks.tick() => false,
                    _ = stop.changed() => true,
                };
                let at = Instant::now();
                match read_sample(&client, &database, previous.as_ref()).await {
                    Ok((mut sample, counters)) => {
                        sample.at_ms = at.duration_since(started).as_millis() as u64;
                        samples.push(sample);
                        previous = Some(counters);
                        last = Some(counters);
                    }
                    Err(what) => error(at, what),
                }
                if stopping {
                    break;
                }
            }
            let totals = match (first, last) {
                (Some(first), Some(last)) => PoolerStatsDelta::between(&first, &last),
                _ => PoolerStatsDelta::default(),
            };
            drop(client);
            let _ = connection.await;
            PoolerSamples {
                interval_ms: interval.as_millis() as u64,
                samples,
                totals,
                sampling_errors: errors,
            }
        });
        Ok(PoolerSampler { stop_sender, task })
    }

    /// Takes one last sample and returns everything sampled.
    pub async fn stop(self) -> PoolerSamples {
        let _ = self.stop_sender.send(true);
        match self.task.await {
            Ok(samples) => samples,
            Err(e) => PoolerSamples {
                sampling_errors: vec![format!("the pooler sampling task failed: {e}")],
                ..PoolerSamples::default()
            },
        }
    }
}

/// The cumulative `SHOW STATS` counters of one database.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct StatsCounters {
    xacts: u64,
    queries: u64,
    xact_time_us: u64,
    query_time_us: u64,
    wait_time_us: u64,
}

async fn read_sample(
    client: &Client,
    database: &str,
    previous: Option<&StatsCounters>,
) -> Result<(PoolerSample, StatsCounters), String> {
    let pools = show(client, "SHOW POOLS").await?;
    let mut sample = PoolerSample::default();
    for row in pools
        .iter()
        .filter(|row| row.get("database").map(String::as_str) == Some(database))
    {
        let n = |column: &str| number(row, column);
        sample.cl_active += n("cl_active");
        sample.cl_waiting += n("cl_waiting");
        sample.sv_active += n("sv_active");
        sample.sv_idle += n("sv_idle");
        sample.sv_used += n("sv_used");
        sample.sv_login += n("sv_login");
        sample.maxwait_us = sample
            .maxwait_us
            .max(n("maxwait").saturating_mul(1_000_000) + n("maxwait_us"));
    }
    let counters = read_stats(client, database).await?;
    sample.delta = PoolerStatsDelta::between(&previous.copied().unwrap_or(counters), &counters);
    Ok((sample, counters))
}

async fn read_stats(client: &Client, database: &str) -> Result<StatsCounters, String> {
    let stats = show(client, "SHOW STATS").await?;
    // A database the pooler has not seen a client of yet has no row: zeros.
    let Some(row) = stats
        .iter()
        .find(|row| row.get("database").map(String::as_str) == Some(database))
    else {
        return Ok(StatsCounters::default());
    };
    Ok(StatsCounters {
        xacts: number(row, "total_xact_count"),
        queries: number(row, "total_query_count"),
        xact_time_us: number(row, "total_xact_time"),
        query_time_us: number(row, "total_query_time"),
        wait_time_us: number(row, "total_wait_time"),
    })
}

/// The rows of an admin console `SHOW`, each as column → text.
async fn show(client: &Client, command: &str) -> Result<Vec<HashMap<String, String>>, String> {
    let messages = tokio::time::timeout(READ_TIMEOUT, client.simple_query(command))
        .await
        .map_err(|_| format!("{command}: no answer within {} s", READ_TIMEOUT.as_secs()))?
        .map_err(|e| format!("{command}: {e}"))?;
    Ok(messages
        .into_iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(
                row.columns()
                    .iter()
                    .enumerate()
                    .filter_map(|(i, column)| Some((column.name().to_string(), row.get(i)?.to_string())))
                    .collect(),
            ),
            _ => None,
        })
        .collect())
}

fn number(row: &HashMap<String, String>, column: &str) -> u64 {
    row.get(column).and_then(|v| v.parse().ok()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_and_means_per_transaction() {
        let from = StatsCounters {
            xacts: 10,
            queries: 30,
            xact_time_us: 1_000,
            query_time_us: 800,
            wait_time_us: 50,
        };
        let to = StatsCounters {
            xacts: 20,
            queries: 60,
            xact_time_us: 3_000,
            query_time_us: 2_000,
            wait_time_us: 1_050,
        };
        let delta = PoolerStatsDelta::between(&from, &to);
        assert_eq!(delta.xacts, 10);
        assert_eq!(delta.wait_per_xact_us(), 100.0);
        assert_eq!(delta.xact_time_per_xact_us(), 200.0);
        assert_eq!(PoolerStatsDelta::default().wait_per_xact_us(), 0.0);
        // A pooler restarted under the sampler counts from 0 again: no
        // underflow.
        assert_eq!(PoolerStatsDelta::between(&to, &from).xacts, 0);
    }
}
