//! The load generator: closed-loop clients running a workload through the
//! application instances' pools.
//!
//! Each client is a task bound to one instance's pool; it picks an
//! operation, checks out a connection, runs the operation in a transaction,
//! records the attempt, retries deadlocks and serialization failures up to a
//! bound, thinks, and goes again until the measured window ends. Recording
//! goes to a few mutex-guarded shards (histograms are large; one set per
//! client would cost hundreds of MB at 150 clients), merged at the end. The
//! driver never formats and never writes files.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::metrics::{AttemptOutcome, AttemptTiming, Recorder};
use crate::pool::AppPool;
use crate::workload::Workload;

/// How clients start.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Ramp {
    /// Every client starts at once (a thundering herd).
    Herd,
    /// Client i of n starts at i/n of this many seconds.
    Linear {
        /// Seconds over which clients start.
        over_s: f64,
    },
}

/// Driver settings for one cell.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct DriverSettings {
    /// Concurrent clients, spread evenly over the instances.
    pub clients: u32,
    /// How clients start.
    pub ramp: Ramp,
    /// Seconds run before measuring; attempts started then are not measured.
    pub warmup_s: f64,
    /// Seconds measured.
    pub duration_s: f64,
    /// Retries of a deadlocked or serialization-failed transaction.
    pub max_retries: u32,
    /// Seed of the clients' random choices.
    pub seed: u64,
}

/// Live counts for a progress display.
#[derive(Debug, Default)]
pub struct LiveCounts {
    /// Attempts that succeeded.
    pub ok: AtomicU64,
    /// Attempts that failed.
    pub errors: AtomicU64,
}

/// Number of recorder shards: enough that clients rarely wait on a lock
/// with two cores, few enough to keep the histograms small.
const SHARDS: usize = 8;

/// Runs `settings.clients` clients against `pools` until warmup plus duration
/// have passed; returns everything recorded.
pub async fn drive<W: Workload>(
    workload: Arc<W>,
    pools: Arc<Vec<AppPool>>,
    settings: DriverSettings,
    live: Arc<LiveCounts>,
) -> Recorder {
    let t0 = Instant::now();
    let measure_from = t0 + Duration::from_secs_f64(settings.warmup_s);
    let end = measure_from + Duration::from_secs_f64(settings.duration_s);
    let operations = workload.operations();
    let shards: Arc<Vec<Mutex<Recorder>>> = Arc::new(
        (0..SHARDS)
            .map(|_| Mutex::new(Recorder::new(operations, measure_from)))
            .collect(),
    );
    let mut clients = Vec::with_capacity(settings.clients as usize);
    for client in 0..settings.clients {
        let start_at = t0 + ramp_offset(settings.ramp, client, settings.clients);
        let context = ClientContext {
            workload: Arc::clone(&workload),
            pools: Arc::clone(&pools),
            shards: Arc::clone(&shards),
            live: Arc::clone(&live),
            instance: client as usize % pools.len(),
            shard: client as usize % SHARDS,
            start_at,
            end,
            max_retries: settings.max_retries,
            rng: SmallRng::seed_from_u64(settings.seed ^ (u64::from(client) << 32 | 0x9e37)),
        };
        clients.push(tokio::spawn(run_client(context)));
    }
    for client in clients {
        let _ = client.await;
    }
    let mut merged = Recorder::new(operations, measure_from);
    for shard in shards.iter() {
        merged.merge(&shard.lock().expect("a client panicked while recording"));
    }
    merged
}

fn ramp_offset(ramp: Ramp, client: u32, clients: u32) -> Duration {
    match ramp {
        Ramp::Herd => Duration::ZERO,
        Ramp::Linear { over_s } => Duration::from_secs_f64(over_s * f64::from(client) / f64::from(clients.max(1))),
    }
}

struct ClientContext<W> {
    workload: Arc<W>,
    pools: Arc<Vec<AppPool>>,
    shards: Arc<Vec<Mutex<Recorder>>>,
    live: Arc<LiveCounts>,
    instance: usize,
    shard: usize,
    start_at: Instant,
    end: Instant,
    max_retries: u32,
    rng: SmallRng,
}

async fn run_client<W: Workload>(mut context: ClientContext<W>) {
    tokio::time::sleep_until(context.start_at.into()).await;
    let think = Duration::from_millis(context.workload.think_time_ms());
    let pool = &context.pools[context.instance];
    while Instant::now() < context.end {
        let op = context.workload.choose_operation(&mut context.rng);
        let mut retry = false;
        for attempt in 0..=context.max_retries {
            let started = Instant::now();
            let (session, acquired) = pool.acquire().await;
            let mut in_db_us = 0;
            let mut counted = None;
            let outcome = match session {
                Err(class) => AttemptOutcome::Failed(class),
                Ok(mut session) => {
                    let in_db = Instant::now();
                    let result = run_transaction(&*context.workload, op, &mut session, &mut context.rng).await;
                    in_db_us = in_db.elapsed().as_micros() as u64;
                    match result {
                        Ok(result) => {
                            counted = result.counted;
                            AttemptOutcome::Ok
                        }
                        Err(class) => AttemptOutcome::Failed(class),
                    }
                }
            };
            let timing = AttemptTiming {
                pool_wait_us: acquired.pool_wait_us,
                connect_us: acquired.connect_us,
                in_db_us,
                end_to_end_us: started.elapsed().as_micros() as u64,
            };
            let retryable = matches!(&outcome, AttemptOutcome::Failed(class) if class.is_retryable());
            match &outcome {
                AttemptOutcome::Ok => context.live.ok.fetch_add(1, Ordering::Relaxed),
                AttemptOutcome::Failed(_) => context.live.errors.fetch_add(1, Ordering::Relaxed),
            };
            {
                let mut recorder = context.shards[context.shard].lock().expect("recorder shard poisoned");
                recorder.record(op, started, timing, &outcome, retry);
                if let Some(what) = counted {
                    recorder.count(op, started, what);
                }
            }
            if !retryable || attempt == context.max_retries || Instant::now() >= context.end {
                break;
            }
            retry = true;
        }
        if !think.is_zero() {
            tokio::time::sleep(think).await;
        }
    }
}

/// BEGIN, the operation, COMMIT; ROLLBACK when the operation fails.
async fn run_transaction<W: Workload>(
    workload: &W,
    op: usize,
    session: &mut crate::pool::Session,
    rng: &mut SmallRng,
) -> Result<crate::workload::OperationResult, crate::metrics::ErrorClass> {
    session.simple("BEGIN").await?;
    match workload.run_operation(op, session, rng).await {
        Ok(result) => {
            session.simple("COMMIT").await?;
            Ok(result)
        }
        Err(class) => {
            let _ = session.simple("ROLLBACK").await;
            Err(class)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_ramp_spreads_starts() {
        let ramp = Ramp::Linear { over_s: 10.0 };
        assert_eq!(ramp_offset(ramp, 0, 10), Duration::ZERO);
        assert_eq!(ramp_offset(ramp, 5, 10), Duration::from_secs(5));
        assert_eq!(ramp_offset(Ramp::Herd, 9, 10), Duration::ZERO);
    }
}
