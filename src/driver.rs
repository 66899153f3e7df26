//! The load generator: clients running a workload through the application
//! instances' pools, in a closed or an open loop.
//!
//! Closed loop: each client is a task bound to one instance's pool; it picks
//! an operation, checks out a connection, runs the operation in a
//! transaction, records the attempt, retries deadlocks and serialization
//! failures up to a bound, thinks, and goes again until the measured window
//! ends. Open loop: arrivals follow a Poisson schedule fixed in advance; a
//! dispatcher thread releases each at its time (a thread's sleep, not
//! tokio's timer, whose millisecond ticks started arrivals 0.5 to 2 ms
//! late); workers take the next released arrival and time the transaction
//! from its *intended* start, so a stalled server
//! shows in the tail instead of silently slowing the arrivals (coordinated
//! omission); how late each arrival started is reported as schedule lag.
//! Recording
//! goes to a few mutex-guarded shards (histograms are large; one set per
//! client would cost hundreds of MB at 150 clients), merged at the end. The
//! driver never formats and never writes files.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::attempt::Attempt;
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

/// How load is offered.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Load {
    /// A fixed number of clients, each waiting for its answer (and its
    /// think time) before the next transaction.
    Closed {
        /// Concurrent clients, spread evenly over the instances.
        clients: u32,
    },
    /// Transactions arriving at a rate, whatever the answers.
    Open {
        /// Mean arrivals per second (Poisson).
        rate_per_s: f64,
        /// Most transactions in flight at once; arrivals beyond wait for a
        /// free worker, and their wait counts in their latency.
        max_in_flight: u32,
    },
}

/// Driver settings for one cell.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct DriverSettings {
    /// Closed or open loop.
    pub load: Load,
    /// How closed-loop clients start (open loop: how the rate ramps up is
    /// not modelled; arrivals start at once).
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

/// State shared live with whoever watches a run: counts for a progress
/// display, and a request to end the run before its planned duration.
#[derive(Debug, Default)]
pub struct LiveCounts {
    /// Attempts that succeeded.
    pub ok: AtomicU64,
    /// Attempts that failed.
    pub errors: AtomicU64,
    /// Set to end the run early: clients finish the transaction they are in
    /// and start no other.
    stop: std::sync::atomic::AtomicBool,
}

impl LiveCounts {
    /// Zeroes the counts and withdraws a stop request, for the next cell
    /// of a sweep.
    pub fn reset_for_next_cell(&self) {
        self.ok.store(0, Ordering::Relaxed);
        self.errors.store(0, Ordering::Relaxed);
        self.stop.store(false, Ordering::Relaxed);
    }

    /// Asks the clients to stop after their current transaction.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Whether [`LiveCounts::request_stop`] was called.
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// First retry waits up to this long, microseconds; each further retry
/// doubles the ceiling, up to [`RETRY_BACKOFF_MAX_US`].
const RETRY_BACKOFF_BASE_US: u64 = 1_000;
/// Longest wait before a retry, microseconds.
const RETRY_BACKOFF_MAX_US: u64 = 50_000;

/// Number of recorder shards: enough that clients rarely wait on a lock
/// with two cores, few enough to keep the histograms small.
const SHARDS: usize = 8;

/// What a driven cell produced.
pub struct DriveOutput {
    /// Every attempt, merged.
    pub recorder: Recorder,
    /// Open loop: how late arrivals started, microseconds (measured ones).
    pub schedule_lag: Option<hdrhistogram::Histogram<u64>>,
    /// Open loop: arrivals scheduled in the measured window.
    pub scheduled: u64,
    /// Seconds from the start of measurement until the last measured
    /// attempt finished: the duration plus the drain of what was in flight
    /// (and, in an overloaded open loop, queued). Rates divide by this, so
    /// they count work done, not work offered.
    pub measured_s: f64,
}

/// Runs the load against `pools` until warmup plus duration have passed;
/// returns everything recorded.
///
/// `caches` holds one Redis connection per instance when the workload's
/// cache is on, and is empty otherwise.
pub async fn drive<W: Workload>(
    workload: Arc<W>,
    pools: Arc<Vec<AppPool>>,
    caches: Vec<redis::aio::MultiplexedConnection>,
    settings: DriverSettings,
    live: Arc<LiveCounts>,
) -> DriveOutput {
    let t0 = Instant::now();
    let measure_from = t0 + Duration::from_secs_f64(settings.warmup_s);
    let end = measure_from + Duration::from_secs_f64(settings.duration_s);
    let operations = workload.operations();
    let shards: Arc<Vec<Mutex<Recorder>>> = Arc::new(
        (0..SHARDS)
            .map(|_| Mutex::new(Recorder::new(operations, measure_from)))
            .collect(),
    );
    let (workers, schedule) = match settings.load {
        Load::Closed { clients } => (clients, None),
        Load::Open {
            rate_per_s,
            max_in_flight,
        } => {
            // The warmup and the measured window each get their own count,
            // so the measured window holds exactly rate × duration arrivals.
            let warmup = Duration::from_secs_f64(settings.warmup_s);
            let mut offsets = poisson_schedule(rate_per_s, settings.warmup_s, settings.seed);
            offsets.extend(
                poisson_schedule(rate_per_s, settings.duration_s, settings.seed.wrapping_add(1))
                    .into_iter()
                    .map(|offset| warmup + offset),
            );
            let schedule = Arc::new(OpenSchedule::new(t0, offsets, Arc::clone(&live)));
            (max_in_flight, Some(schedule))
        }
    };
    let dispatcher = schedule.as_ref().map(|schedule| {
        let schedule = Arc::clone(schedule);
        std::thread::spawn(move || schedule.dispatch())
    });
    let mut tasks = Vec::with_capacity(workers as usize);
    for worker in 0..workers {
        let context = ClientContext {
            workload: Arc::clone(&workload),
            pools: Arc::clone(&pools),
            shards: Arc::clone(&shards),
            live: Arc::clone(&live),
            instance: worker as usize % pools.len(),
            cache: caches.get(worker as usize % pools.len()).cloned(),
            shard: worker as usize % SHARDS,
            start_at: t0 + ramp_offset(settings.ramp, worker, workers),
            end,
            max_retries: settings.max_retries,
            rng: SmallRng::seed_from_u64(settings.seed ^ (u64::from(worker) << 32 | 0x9e37)),
        };
        tasks.push(match &schedule {
            None => tokio::spawn(run_client(context)),
            Some(schedule) => tokio::spawn(run_open_worker(context, Arc::clone(schedule), measure_from)),
        });
    }
    for task in tasks {
        let _ = task.await;
    }
    if let Some(dispatcher) = dispatcher {
        // It has released every arrival (or seen the stop) before the
        // workers could end: this join does not wait.
        let _ = dispatcher.join();
    }
    // Rates divide by the window planned, or by the time actually measured
    // when the run was stopped early.
    let elapsed_s = measure_from.elapsed().as_secs_f64();
    let measured_s = if live.stop_requested() {
        elapsed_s
    } else {
        elapsed_s.max(settings.duration_s)
    };
    let mut recorder = Recorder::new(operations, measure_from);
    for shard in shards.iter() {
        recorder.merge(&shard.lock().expect("a client panicked while recording"));
    }
    let (schedule_lag, scheduled) = match schedule {
        None => (None, 0),
        Some(schedule) => {
            let scheduled = schedule
                .offsets
                .iter()
                .filter(|offset| t0 + **offset >= measure_from)
                .count() as u64;
            let lag = schedule.lag.lock().expect("lag histogram poisoned").clone();
            (Some(lag), scheduled)
        }
    };
    DriveOutput {
        recorder,
        schedule_lag,
        scheduled,
        measured_s,
    }
}

/// Arrival offsets from t0 of a Poisson process at `rate_per_s` over
/// `seconds` conditioned on its count (exactly `round(rate × seconds)`
/// arrivals), seeded: the same seed gives the same arrivals.
pub fn poisson_schedule(rate_per_s: f64, seconds: f64, seed: u64) -> Vec<Duration> {
    use rand::Rng;
    if !(rate_per_s > 0.0 && rate_per_s.is_finite() && seconds > 0.0) {
        return Vec::new();
    }
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x005e_ed0f_a771_7a15);
    // A Poisson process conditioned on its count: the arrival times of a
    // Poisson process that made n arrivals in [0, T) are n independent
    // uniform times, sorted. Conditioning on n = rate × T keeps the
    // exponential gaps between arrivals (up to the count) while the
    // achieved rate matches the one asked for instead of drifting by
    // sqrt(n) arrivals (2.2% low at 200/s over 20 s with one seed).
    let count = (rate_per_s * seconds).round() as usize;
    let mut offsets: Vec<Duration> = (0..count)
        .map(|_| Duration::from_secs_f64(rng.random_range(0.0..seconds)))
        .collect();
    offsets.sort_unstable();
    offsets
}

/// The arrivals of an open-loop cell, released at their times by
/// [`OpenSchedule::dispatch`] and taken by the workers one at a time.
struct OpenSchedule {
    t0: Instant,
    offsets: Vec<Duration>,
    released: Mutex<Option<tokio::sync::mpsc::UnboundedSender<Instant>>>,
    arrivals: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<Instant>>,
    live: Arc<LiveCounts>,
    lag: Mutex<hdrhistogram::Histogram<u64>>,
}

impl OpenSchedule {
    fn new(t0: Instant, offsets: Vec<Duration>, live: Arc<LiveCounts>) -> OpenSchedule {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        OpenSchedule {
            t0,
            offsets,
            released: Mutex::new(Some(sender)),
            arrivals: tokio::sync::Mutex::new(receiver),
            live,
            lag: Mutex::new(
                hdrhistogram::Histogram::new_with_bounds(1, crate::metrics::MAX_LATENCY_US, 3)
                    .expect("valid histogram bounds"),
            ),
        }
    }

    /// Releases every arrival at its intended start, on a thread of its own:
    /// a thread's sleep wakes within tens of microseconds of its deadline.
    /// Closing the channel at the end (or at a stop) ends the workers.
    fn dispatch(&self) {
        let Some(sender) = self.released.lock().expect("dispatcher poisoned").take() else {
            return;
        };
        for offset in &self.offsets {
            let intended = self.t0 + *offset;
            let ahead = intended.saturating_duration_since(Instant::now());
            if !ahead.is_zero() {
                std::thread::sleep(ahead);
            }
            if self.live.stop_requested() || sender.send(intended).is_err() {
                return;
            }
        }
    }

    /// The next released arrival's intended start, or `None` when all are.
    async fn take(&self) -> Option<Instant> {
        self.arrivals.lock().await.recv().await
    }
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
    cache: Option<redis::aio::MultiplexedConnection>,
    shard: usize,
    start_at: Instant,
    end: Instant,
    max_retries: u32,
    rng: SmallRng,
}

async fn run_client<W: Workload>(mut context: ClientContext<W>) {
    tokio::time::sleep_until(context.start_at.into()).await;
    let think = Duration::from_millis(context.workload.think_time_ms());
    while Instant::now() < context.end && !context.live.stop_requested() {
        let started = Instant::now();
        run_with_retries(&mut context, started).await;
        if !think.is_zero() {
            tokio::time::sleep(think).await;
        }
    }
}

async fn run_open_worker<W: Workload>(
    mut context: ClientContext<W>,
    schedule: Arc<OpenSchedule>,
    measure_from: Instant,
) {
    while let Some(intended) = schedule.take().await {
        if context.live.stop_requested() {
            break;
        }
        let lag_us = intended.elapsed().as_micros() as u64;
        if intended >= measure_from {
            schedule
                .lag
                .lock()
                .expect("lag histogram poisoned")
                .saturating_record(lag_us.max(1));
        }
        // Timed from the intended start: the wait for a free worker is part
        // of what a client arriving then would have seen.
        run_with_retries(&mut context, intended).await;
    }
}

/// One transaction, retried while it fails with a retryable class. The first
/// attempt is timed from `first_started`; retries from their own start.
async fn run_with_retries<W: Workload>(context: &mut ClientContext<W>, first_started: Instant) {
    let pool = &context.pools[context.instance];
    let op = context.workload.choose_operation(&mut context.rng);
    let mut started = first_started;
    for attempt in 0..=context.max_retries {
        let mut connections = Attempt::new(pool, context.cache.as_mut());
        let result = context
            .workload
            .run_operation(op, &mut connections, &mut context.rng)
            .await;
        let (times, finished) = connections.finish(result.is_ok()).await;
        let mut counted = [None; 3];
        let outcome = match result.and_then(|result| finished.map(|()| result)) {
            Ok(result) => {
                counted = result.counted;
                AttemptOutcome::Ok
            }
            Err(class) => AttemptOutcome::Failed(class),
        };
        let timing = AttemptTiming {
            pool_wait_us: times.acquire.pool_wait_us,
            connect_us: times.acquire.connect_us,
            in_db_us: times.in_db_us,
            end_to_end_us: started.elapsed().as_micros() as u64,
            checked_out: times.checked_out,
        };
        let retryable = matches!(&outcome, AttemptOutcome::Failed(class) if class.is_retryable());
        match &outcome {
            AttemptOutcome::Ok => context.live.ok.fetch_add(1, Ordering::Relaxed),
            AttemptOutcome::Failed(_) => context.live.errors.fetch_add(1, Ordering::Relaxed),
        };
        {
            let mut recorder = context.shards[context.shard].lock().expect("recorder shard poisoned");
            recorder.record(op, started, timing, &outcome, attempt > 0);
            for what in counted.into_iter().chain(times.counted).flatten() {
                recorder.count(op, started, what);
            }
        }
        if !retryable || attempt == context.max_retries || Instant::now() >= context.end {
            break;
        }
        // Bounded, jittered exponential backoff: retrying a deadlock or a
        // serialization failure at once mostly meets the same conflict.
        let ceiling_us = (RETRY_BACKOFF_BASE_US << attempt.min(6)).min(RETRY_BACKOFF_MAX_US);
        let backoff_us = context.rng.random_range(0..=ceiling_us);
        tokio::time::sleep(Duration::from_micros(backoff_us)).await;
        started = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_schedule_has_the_rate_and_is_reproducible() {
        let offsets = poisson_schedule(1000.0, 10.0, 3);
        assert_eq!(offsets.len(), 10_000, "conditioned on its count");
        // Gaps stay exponential: mean 1 ms, and about e^-1 of them above it.
        let gaps: Vec<f64> = offsets.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        assert!((mean - 0.001).abs() < 0.00005, "{mean}");
        let above = gaps.iter().filter(|&&g| g > 0.001).count() as f64 / gaps.len() as f64;
        assert!((above - (-1f64).exp()).abs() < 0.02, "{above}");
        assert!(offsets.windows(2).all(|w| w[0] <= w[1]));
        assert!(offsets.last().unwrap() < &Duration::from_secs(10));
        assert_eq!(offsets, poisson_schedule(1000.0, 10.0, 3));
        assert_ne!(offsets, poisson_schedule(1000.0, 10.0, 4));
    }

    #[test]
    fn linear_ramp_spreads_starts() {
        let ramp = Ramp::Linear { over_s: 10.0 };
        assert_eq!(ramp_offset(ramp, 0, 10), Duration::ZERO);
        assert_eq!(ramp_offset(ramp, 5, 10), Duration::from_secs(5));
        assert_eq!(ramp_offset(Ramp::Herd, 9, 10), Duration::ZERO);
    }
}
