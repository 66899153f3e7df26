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
//!
//! Threads: an application instance stands for an app process, which has a
//! CPU of its own. With [`DriverSettings::threads`] above 1, the instances
//! are dealt round-robin to that many driver threads, each a single-thread
//! runtime that runs its instances' clients and, because pools open
//! connections (and spawn their tasks) in the runtime that asks for them,
//! their connections too: a statement's wake-ups stay on one thread, as in
//! pgbench's `-j`. Each thread opens its instances' Redis connections,
//! records into its own recorder and closes its instances' pools before it
//! ends. With 1, every client runs on the caller's runtime.
//!
//! Recording goes to a few mutex-guarded shards per thread (histograms are
//! large; one set per client would cost hundreds of MB at 150 clients),
//! merged at the end. The driver never formats and never writes files.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::client::AppPool;
use crate::client::{count_round_trips, Attempt};
use crate::measure::{AttemptOutcome, AttemptTiming, IntervalStats, Recorder, TransactionEnd};
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

/// Driver settings for one cell. The defaults ([`DriverSettings::default`])
/// are `contend run`'s.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct DriverSettings {
    /// Closed or open loop. Default: closed, 16 clients.
    pub load: Load,
    /// How closed-loop clients start (open loop: how the rate ramps up is
    /// not modelled; arrivals start at once). Default: linear over 1 s.
    pub ramp: Ramp,
    /// Seconds run before measuring; attempts started then are not
    /// measured. Default 2.
    pub warmup_s: f64,
    /// Seconds measured. Default 10.
    pub duration_s: f64,
    /// Retries of a deadlocked or serialization-failed transaction.
    /// Default 3.
    pub max_retries: u32,
    /// Seed of the clients' random choices. Default 1.
    pub seed: u64,
    /// Driver threads, each owning whole application instances (dealt
    /// round-robin): their clients, their pools' connections and their
    /// cache connections. At most the number of instances is used; 1 runs
    /// every client on the caller's runtime. `contend run` resolves
    /// `--driver-threads` (default: the machine's cores) to
    /// min(that, instances) before recording it; cells recorded before the
    /// field existed were driven on 1. Default 1.
    #[serde(default = "one_thread")]
    pub threads: u32,
    /// Seconds a cell may go on past warmup + duration with nothing
    /// finishing before the harness takes the server for one that stopped
    /// answering and fails the cell (the drain of what is in flight, the
    /// teardown and the checks must fit in it). Not a measurement: cells
    /// that differ only in it are the same cell. Default 30.
    #[serde(default = "default_grace_s")]
    pub grace_s: f64,
    /// pgbench's `--latency-limit`, milliseconds: measured transactions
    /// that take longer are counted as late; in an open loop, an arrival
    /// already later than this when a worker could send it is skipped (not
    /// sent) and counted as skipped. Default none (left out of the record,
    /// so cells without it keep their key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_limit_ms: Option<f64>,
}

impl Default for DriverSettings {
    fn default() -> Self {
        DriverSettings {
            load: Load::Closed { clients: 16 },
            ramp: Ramp::Linear { over_s: 1.0 },
            warmup_s: 2.0,
            duration_s: 10.0,
            max_retries: 3,
            seed: 1,
            threads: one_thread(),
            grace_s: default_grace_s(),
            latency_limit_ms: None,
        }
    }
}

fn one_thread() -> u32 {
    1
}

fn default_grace_s() -> f64 {
    30.0
}

/// State shared live with whoever watches a run: counts for a progress
/// display, and a request to end the run before its planned duration.
#[derive(Debug, Default)]
pub struct LiveCounts {
    /// Attempts that succeeded.
    pub ok: AtomicU64,
    /// Attempts that failed.
    pub errors: AtomicU64,
    /// The figures since a progress line last took them (warmup included).
    pub interval: IntervalStats,
    /// Cells begun with these counts ([`LiveCounts::reset_for_next_cell`]
    /// calls): a watcher that sees it change starts its clock again.
    pub cell: AtomicU64,
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
        let _ = self.interval.take();
        self.cell.fetch_add(1, Ordering::Relaxed);
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

/// Why a cell could not be driven (what the cell measured, failures
/// included, is never an error).
#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    /// Opening an instance's Redis connection for its cache.
    #[error("connecting to Redis for the cache of instance {instance}: {error}")]
    Cache {
        /// The instance, from 0.
        instance: usize,
        /// Redis' error.
        error: redis::RedisError,
    },
    /// Starting a driver thread or its runtime.
    #[error("starting driver thread {thread}: {error}; try fewer with --driver-threads")]
    Thread {
        /// The thread, from 0.
        thread: usize,
        /// The OS error.
        error: std::io::Error,
    },
    /// A client task or a driver thread panicked: the other clients were
    /// stopped and what they recorded is not a whole cell.
    #[error("a client panicked: {message}")]
    Panicked {
        /// The panic's message (the first, when several panicked).
        message: String,
    },
}

/// The message of a panic's payload (`panic!`'s text), or a placeholder
/// when the payload is not text.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        text.to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// Test-only fault injection, honoured in debug builds only:
/// `CONTEND_TEST_PANIC=client:N` makes the first client of the N-th cell
/// this process drives panic in its third transaction, as a bug in a
/// workload would. Release builds never read it.
const TEST_PANIC_VARIABLE: &str = "CONTEND_TEST_PANIC";

/// Cells driven by this process so far, for [`TEST_PANIC_VARIABLE`].
static CELLS_DRIVEN: AtomicU64 = AtomicU64::new(0);

/// Whether this cell (the `cell`-th driven, from 1) is to have a client
/// panic ([`TEST_PANIC_VARIABLE`]).
fn panic_injected(cell: u64) -> bool {
    if !cfg!(debug_assertions) {
        return false;
    }
    std::env::var(TEST_PANIC_VARIABLE)
        .ok()
        .and_then(|value| value.strip_prefix("client:")?.parse::<u64>().ok())
        == Some(cell)
}

/// First retry waits up to this long, microseconds; each further retry
/// doubles the ceiling, up to [`RETRY_BACKOFF_MAX_US`].
const RETRY_BACKOFF_BASE_US: u64 = 1_000;
/// Longest wait before a retry, microseconds.
const RETRY_BACKOFF_MAX_US: u64 = 50_000;

/// Recorder shards when the clients run on the caller's runtime, which may
/// have several worker threads: enough that clients rarely wait on a lock
/// with two cores, few enough to keep the histograms small. A driver
/// thread's runtime runs one task at a time, so one shard never waits.
const SHARDS: usize = 8;

/// Longest a driver thread waits, after closing its pools, for its
/// connections' tasks to say goodbye to the server before its runtime drops
/// them.
const WIND_DOWN: Duration = Duration::from_secs(1);

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
/// `redis` is given when the workload uses Redis: each instance's clients
/// then share one multiplexed connection, opened by the thread that drives
/// the instance, as each instance's cache client would hold.
pub async fn drive<W: Workload>(
    workload: Arc<W>,
    pools: Arc<Vec<AppPool>>,
    redis: Option<redis::Client>,
    settings: DriverSettings,
    live: Arc<LiveCounts>,
) -> Result<DriveOutput, DriveError> {
    let threads = (settings.threads.max(1) as usize).min(pools.len()).max(1);
    let shares = shares(pools.len(), threads, workers(settings.load));
    let cell = CELLS_DRIVEN.fetch_add(1, Ordering::Relaxed) + 1;
    let clients = Arc::new(Clients {
        workload,
        pools,
        live,
        settings,
        inject_panic: panic_injected(cell),
    });
    let (start, dispatcher, outputs) = if threads == 1 {
        let share = shares.into_iter().next().expect("one share per thread");
        let caches = open_caches(redis.as_ref(), &share.instances).await?;
        let (start, dispatcher) = Start::now(&clients.settings, &clients.live);
        let output = clients.run_share(&share, caches, &start, SHARDS).await;
        (start, dispatcher, vec![output])
    } else {
        Clients::run_on_threads(&clients, shares, redis).await?
    };
    if let Some(dispatcher) = dispatcher {
        // It has released every arrival (or seen the stop) before the
        // workers could end: this join does not wait.
        let _ = dispatcher.join();
    }
    // A panicked client ended early and stopped the others: what was
    // recorded is a cell cut short, never to be taken for a whole one.
    if let Some(message) = outputs.iter().find_map(|output| output.panic.clone()) {
        return Err(DriveError::Panicked { message });
    }
    // Rates divide by the window planned, or by the time actually measured
    // when the run was stopped early.
    let finished = outputs.iter().map(|output| output.finished).max().unwrap_or(start.t0);
    let elapsed_s = finished.saturating_duration_since(start.measure_from).as_secs_f64();
    let measured_s = if clients.live.stop_requested() {
        elapsed_s
    } else {
        elapsed_s.max(settings.duration_s)
    };
    let mut recorder = Recorder::new(clients.workload.operations(), start.measure_from);
    let mut schedule_lag = start.schedule.as_ref().map(|_| lag_histogram());
    for output in &outputs {
        recorder.merge(&output.recorder);
        if let (Some(lag), Some(thread_lag)) = (schedule_lag.as_mut(), &output.lag) {
            lag.add(thread_lag).expect("lag histograms share their bounds");
        }
    }
    let scheduled = start.schedule.as_ref().map_or(0, |schedule| {
        schedule
            .offsets
            .iter()
            .filter(|offset| start.t0 + **offset >= start.measure_from)
            .count() as u64
    });
    Ok(DriveOutput {
        recorder,
        schedule_lag,
        scheduled,
        measured_s,
    })
}

/// Closed-loop clients, or open-loop workers.
fn workers(load: Load) -> u32 {
    match load {
        Load::Closed { clients } => clients,
        Load::Open { max_in_flight, .. } => max_in_flight,
    }
}

/// The instances one driver thread owns and the workers of their clients.
#[derive(Debug, Clone, PartialEq)]
struct Share {
    /// Instances, dealt round-robin: thread t of n owns t, t + n, …
    instances: Vec<usize>,
    /// Workers (clients, or open-loop workers) of those instances: worker w
    /// belongs to instance w mod instances, as with one thread.
    workers: Vec<u32>,
}

/// `instances` dealt to `threads` (1 ..= instances) threads, with their workers.
fn shares(instances: usize, threads: usize, workers: u32) -> Vec<Share> {
    (0..threads)
        .map(|thread| Share {
            instances: (thread..instances).step_by(threads).collect(),
            workers: (0..workers)
                .filter(|&worker| worker as usize % instances % threads == thread)
                .collect(),
        })
        .collect()
}

/// Opens one multiplexed Redis connection per instance in `instances`, on
/// the runtime that calls it (the connection's task is spawned there).
async fn open_caches(
    redis: Option<&redis::Client>,
    instances: &[usize],
) -> Result<Vec<redis::aio::MultiplexedConnection>, DriveError> {
    let Some(client) = redis else {
        return Ok(Vec::new());
    };
    let mut caches = Vec::with_capacity(instances.len());
    for &instance in instances {
        let connection = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|error| DriveError::Cache { instance, error })?;
        caches.push(connection);
    }
    Ok(caches)
}

/// When the clients start and stop, the same for every thread.
#[derive(Clone)]
struct Start {
    t0: Instant,
    measure_from: Instant,
    end: Instant,
    /// Open loop: the arrivals, one queue for every worker on every thread.
    schedule: Option<Arc<OpenSchedule>>,
}

impl Start {
    /// Starts the clock now; in an open loop, starts the dispatcher thread.
    fn now(settings: &DriverSettings, live: &Arc<LiveCounts>) -> (Start, Option<std::thread::JoinHandle<()>>) {
        let t0 = Instant::now();
        let measure_from = t0 + Duration::from_secs_f64(settings.warmup_s);
        let end = measure_from + Duration::from_secs_f64(settings.duration_s);
        let schedule = match settings.load {
            Load::Closed { .. } => None,
            Load::Open { rate_per_s, .. } => {
                // The warmup and the measured window each get their own
                // count, so the measured window holds exactly rate ×
                // duration arrivals.
                let warmup = Duration::from_secs_f64(settings.warmup_s);
                let mut offsets = poisson_schedule(rate_per_s, settings.warmup_s, settings.seed);
                offsets.extend(
                    poisson_schedule(rate_per_s, settings.duration_s, settings.seed.wrapping_add(1))
                        .into_iter()
                        .map(|offset| warmup + offset),
                );
                Some(Arc::new(OpenSchedule::new(t0, offsets, Arc::clone(live))))
            }
        };
        let dispatcher = schedule.as_ref().map(|schedule| {
            let schedule = Arc::clone(schedule);
            std::thread::spawn(move || schedule.dispatch())
        });
        (
            Start {
                t0,
                measure_from,
                end,
                schedule,
            },
            dispatcher,
        )
    }
}

/// What one thread's clients recorded.
struct ShareOutput {
    recorder: Recorder,
    /// Open loop: how late the thread's workers started measured arrivals.
    lag: Option<hdrhistogram::Histogram<u64>>,
    /// When the thread's last client ended.
    finished: Instant,
    /// The first panic of one of the thread's clients, if one panicked.
    panic: Option<String>,
}

fn lag_histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, crate::measure::MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// What every thread's clients share.
struct Clients<W> {
    workload: Arc<W>,
    pools: Arc<Vec<AppPool>>,
    live: Arc<LiveCounts>,
    settings: DriverSettings,
    /// [`TEST_PANIC_VARIABLE`] asks for a panic in this cell.
    inject_panic: bool,
}

impl<W: Workload> Clients<W> {
    /// Runs `share`'s clients on the current runtime until they end,
    /// recording into `shards` shards.
    async fn run_share(
        &self,
        share: &Share,
        caches: Vec<redis::aio::MultiplexedConnection>,
        start: &Start,
        shards: usize,
    ) -> ShareOutput {
        let operations = self.workload.operations();
        let shards: Arc<Vec<Mutex<Recorder>>> = Arc::new(
            (0..shards)
                .map(|_| Mutex::new(Recorder::new(operations, start.measure_from)))
                .collect(),
        );
        let workers = workers(self.settings.load);
        // One per thread: the lag histogram is large, and workers on this
        // thread never wait on another thread's lock to record in it.
        let lag = start.schedule.as_ref().map(|_| Arc::new(Mutex::new(lag_histogram())));
        // A JoinSet: dropping it (an abandoned cell) aborts the clients
        // instead of leaving them running on the caller's runtime.
        let mut tasks = tokio::task::JoinSet::new();
        for (local, &worker) in share.workers.iter().enumerate() {
            let instance = worker as usize % self.pools.len();
            let cache = share
                .instances
                .iter()
                .position(|&owned| owned == instance)
                .and_then(|position| caches.get(position))
                .cloned();
            let context = ClientContext {
                workload: Arc::clone(&self.workload),
                pools: Arc::clone(&self.pools),
                shards: Arc::clone(&shards),
                live: Arc::clone(&self.live),
                instance,
                cache,
                shard: local % shards.len(),
                start_at: start.t0 + ramp_offset(self.settings.ramp, worker, workers),
                end: start.end,
                max_retries: self.settings.max_retries,
                latency_limit: self
                    .settings
                    .latency_limit_ms
                    .map(|ms| Duration::from_secs_f64(ms / 1000.0)),
                rng: SmallRng::seed_from_u64(self.settings.seed ^ (u64::from(worker) << 32 | 0x9e37)),
                panic_at_attempt: (self.inject_panic && worker == 0).then_some(3),
                attempts: 0,
            };
            match (&start.schedule, &lag) {
                (Some(schedule), Some(lag)) => tasks.spawn(run_open_worker(
                    context,
                    Arc::clone(schedule),
                    Arc::clone(lag),
                    start.measure_from,
                )),
                _ => tasks.spawn(run_client(context)),
            };
        }
        drop(caches);
        let mut panic = None;
        while let Some(ended) = tasks.join_next().await {
            if let Err(error) = ended {
                if error.is_panic() && panic.is_none() {
                    panic = Some(panic_message(&*error.into_panic()));
                    // The cell is lost: stop the other clients now rather
                    // than at the window's end.
                    self.live.request_stop();
                }
            }
        }
        let finished = Instant::now();
        let mut recorder = Recorder::new(operations, start.measure_from);
        for shard in shards.iter() {
            // A client that panicked while recording leaves its shard
            // poisoned; the panic already fails the cell.
            recorder.merge(&shard.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        }
        let lag = lag.map(|lag| lag.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone());
        ShareOutput {
            recorder,
            lag,
            finished,
            panic,
        }
    }

    /// Runs each share on a driver thread of its own. The threads open
    /// their caches first; the clock starts once all are ready. Dropping
    /// the returned future (a sweep's Ctrl-C) ends the threads.
    async fn run_on_threads(
        clients: &Arc<Self>,
        shares: Vec<Share>,
        redis: Option<redis::Client>,
    ) -> Result<(Start, Option<std::thread::JoinHandle<()>>, Vec<ShareOutput>), DriveError> {
        // None until the clock starts; the sender dropped = stop now.
        let (start_sender, start_receiver) = tokio::sync::watch::channel(None::<Start>);
        let mut threads = Vec::with_capacity(shares.len());
        for (thread, share) in shares.into_iter().enumerate() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|error| DriveError::Thread { thread, error })?;
            let (ready_sender, ready) = tokio::sync::oneshot::channel();
            let (output_sender, output) = tokio::sync::oneshot::channel();
            let clients = Arc::clone(clients);
            let redis = redis.clone();
            let mut start = start_receiver.clone();
            let body = async move {
                let caches = match open_caches(redis.as_ref(), &share.instances).await {
                    Ok(caches) => caches,
                    Err(error) => {
                        let _ = ready_sender.send(Err(error));
                        return;
                    }
                };
                let _ = ready_sender.send(Ok(()));
                let started = match start.wait_for(Option::is_some).await {
                    Ok(started) => started.clone().expect("waited for Some"),
                    Err(_) => return,
                };
                tokio::select! {
                    output = clients.run_share(&share, caches, &started, 1) => {
                        clients.wind_down(&share).await;
                        let _ = output_sender.send(output);
                    }
                    // Abandoned: the runtime's drop ends the clients.
                    _ = start.changed() => {}
                }
            };
            let handle = std::thread::Builder::new()
                .name(format!("contend-driver-{thread}"))
                .spawn(move || runtime.block_on(body))
                .map_err(|error| DriveError::Thread { thread, error })?;
            threads.push((handle, ready, output));
        }
        let mut waiting = Vec::with_capacity(threads.len());
        for (handle, ready, output) in threads {
            match ready.await {
                Ok(Ok(())) => waiting.push((handle, output)),
                // The other threads see the start sender dropped and end.
                Ok(Err(error)) => return Err(error),
                Err(_) => return Err(thread_panic(join(handle).await)),
            }
        }
        let (start, dispatcher) = Start::now(&clients.settings, &clients.live);
        start_sender.send_replace(Some(start.clone()));
        let mut outputs = Vec::with_capacity(waiting.len());
        for (handle, output) in waiting {
            match output.await {
                Ok(output) => outputs.push(output),
                Err(_) => {
                    // The other threads' clients stop; dropping the start
                    // sender on return ends their threads.
                    clients.live.request_stop();
                    return Err(thread_panic(join(handle).await));
                }
            }
            // It has sent its output: what is left is dropping its runtime.
            let _ = join(handle).await;
        }
        Ok((start, dispatcher, outputs))
    }

    /// Closes the share's pools and gives their connections' tasks (and
    /// sqlx's returns to the pool) up to [`WIND_DOWN`] to end cleanly, with
    /// a Terminate to the server, before the thread's runtime drops them.
    async fn wind_down(&self, share: &Share) {
        for &instance in &share.instances {
            self.pools[instance].close().await;
        }
        let runtime = tokio::runtime::Handle::current().metrics();
        let deadline = Instant::now() + WIND_DOWN;
        while runtime.num_alive_tasks() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// The error of a driver thread that ended without sending its output: it
/// panicked (its clients' panics are caught; this is the thread's own).
fn thread_panic(ended: std::thread::Result<()>) -> DriveError {
    DriveError::Panicked {
        message: match ended {
            Err(payload) => format!("driver thread: {}", panic_message(&*payload)),
            Ok(()) => "a driver thread ended without its clients' results".to_string(),
        },
    }
}

/// Waits for a driver thread to end, off the async runtime.
async fn join(handle: std::thread::JoinHandle<()>) -> std::thread::Result<()> {
    tokio::task::spawn_blocking(move || handle.join())
        .await
        .unwrap_or(Ok(()))
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
    /// [`DriverSettings::latency_limit_ms`].
    latency_limit: Option<Duration>,
    rng: SmallRng,
    /// [`TEST_PANIC_VARIABLE`]: panic when starting this attempt (from 1).
    panic_at_attempt: Option<u64>,
    /// Transactions started so far.
    attempts: u64,
}

async fn run_client<W: Workload>(mut context: ClientContext<W>) {
    tokio::time::sleep_until(context.start_at.into()).await;
    let think = Duration::from_millis(context.workload.think_time_ms());
    while Instant::now() < context.end && !context.live.stop_requested() {
        let started = Instant::now();
        run_with_retries(&mut context, started, None).await;
        if !think.is_zero() {
            // Cut at the window's end: a long think time must not hold the
            // cell past it.
            tokio::time::sleep_until((Instant::now() + think).min(context.end).into()).await;
        }
    }
}

async fn run_open_worker<W: Workload>(
    mut context: ClientContext<W>,
    schedule: Arc<OpenSchedule>,
    lag_histogram: Arc<Mutex<hdrhistogram::Histogram<u64>>>,
    measure_from: Instant,
) {
    while let Some(intended) = schedule.take().await {
        if context.live.stop_requested() {
            break;
        }
        let lag = intended.elapsed();
        context.live.interval.record_lag(lag.as_micros() as u64);
        if intended >= measure_from {
            lag_histogram
                .lock()
                .expect("lag histogram poisoned")
                .saturating_record((lag.as_micros() as u64).max(1));
        }
        // pgbench's skip: an arrival already later than the limit cannot
        // meet it, so it is not sent (and is no attempt).
        if context.latency_limit.is_some_and(|limit| lag > limit) {
            context.live.interval.record_skipped();
            context.shards[context.shard]
                .lock()
                .expect("recorder shard poisoned")
                .count_skipped(intended);
            continue;
        }
        // Timed from the intended start: the wait for a free worker is part
        // of what a client arriving then would have seen.
        run_with_retries(&mut context, intended, Some(lag.as_micros() as u64)).await;
    }
}

/// One transaction, retried while it fails with a retryable class. The first
/// attempt is timed from `first_started`; retries from their own start. An
/// open loop's `lag_us` is how late the first attempt was sent.
async fn run_with_retries<W: Workload>(context: &mut ClientContext<W>, first_started: Instant, lag_us: Option<u64>) {
    context.attempts += 1;
    if context.panic_at_attempt == Some(context.attempts) {
        panic!(
            "{TEST_PANIC_VARIABLE}: client 0 panics in transaction {}",
            context.attempts
        );
    }
    let pool = &context.pools[context.instance];
    let op = context.workload.choose_operation(&mut context.rng);
    let mut started = first_started;
    let (mut pool_wait_us, mut in_db_us) = (0u64, 0u64);
    for attempt in 0..=context.max_retries {
        let ((result, (times, finished)), round_trips) = count_round_trips(async {
            let mut connections = Attempt::new(pool, context.cache.as_mut());
            let result = context
                .workload
                .run_operation(op, &mut connections, &mut context.rng)
                .await;
            let finished = connections.finish(result.is_ok()).await;
            (result, finished)
        })
        .await;
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
            round_trips,
        };
        let retryable = matches!(&outcome, AttemptOutcome::Failed(class) if class.is_retryable());
        pool_wait_us = pool_wait_us.saturating_add(timing.pool_wait_us);
        in_db_us = in_db_us.saturating_add(timing.in_db_us);
        match &outcome {
            AttemptOutcome::Ok => {
                context.live.ok.fetch_add(1, Ordering::Relaxed);
                context
                    .live
                    .interval
                    .record_ok(timing.end_to_end_us, timing.pool_wait_us);
            }
            AttemptOutcome::Failed(class) => {
                context.live.errors.fetch_add(1, Ordering::Relaxed);
                context.live.interval.record_failed(class, timing.pool_wait_us);
            }
        };
        // The transaction's latency, retries included, from its first
        // start: what pgbench holds against --latency-limit.
        let done = !retryable || attempt == context.max_retries || Instant::now() >= context.end;
        let transaction = first_started.elapsed();
        let late = done && context.latency_limit.is_some_and(|limit| transaction > limit);
        if late {
            context.live.interval.record_late();
        }
        {
            let mut recorder = context.shards[context.shard].lock().expect("recorder shard poisoned");
            recorder.record(op, started, timing, &outcome, attempt > 0);
            for what in counted.into_iter().chain(times.counted).flatten() {
                recorder.count(op, started, what);
            }
            if late {
                recorder.count_late(first_started);
            }
            if done {
                let failure = match &outcome {
                    AttemptOutcome::Ok => None,
                    AttemptOutcome::Failed(class) => Some(class),
                };
                recorder.record_transaction(
                    first_started,
                    &TransactionEnd {
                        failure,
                        latency_us: transaction.as_micros() as u64,
                        lag_us,
                        tries: attempt + 1,
                        pool_wait_us,
                        in_db_us,
                    },
                );
            }
        }
        if done {
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
    fn instances_are_dealt_round_robin_and_workers_follow_theirs() {
        let one = shares(3, 1, 5);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].instances, [0, 1, 2]);
        assert_eq!(one[0].workers, [0, 1, 2, 3, 4]);
        let two = shares(3, 2, 7);
        assert_eq!(two[0].instances, [0, 2]);
        assert_eq!(two[1].instances, [1]);
        // Worker w belongs to instance w mod 3, whose thread is instance mod 2.
        assert_eq!(two[0].workers, [0, 2, 3, 5, 6]);
        assert_eq!(two[1].workers, [1, 4]);
        let even = shares(2, 2, 8);
        assert_eq!(even[0].workers, [0, 2, 4, 6]);
        assert_eq!(even[1].workers, [1, 3, 5, 7]);
    }

    #[test]
    fn settings_recorded_before_threads_existed_read_as_one_thread() {
        let old = r#"{"load":{"kind":"closed","clients":8},"ramp":{"kind":"herd"},
            "warmup_s":0.0,"duration_s":6.0,"max_retries":3,"seed":1}"#;
        let settings: DriverSettings = serde_json::from_str(old).unwrap();
        assert_eq!(settings.threads, 1);
        assert_eq!(settings.grace_s, 30.0, "the deadline's grace defaults too");
        let written = serde_json::to_value(settings).unwrap();
        assert_eq!(written["threads"], 1);
    }

    #[test]
    fn linear_ramp_spreads_starts() {
        let ramp = Ramp::Linear { over_s: 10.0 };
        assert_eq!(ramp_offset(ramp, 0, 10), Duration::ZERO);
        assert_eq!(ramp_offset(ramp, 5, 10), Duration::from_secs(5));
        assert_eq!(ramp_offset(Ramp::Herd, 9, 10), Duration::ZERO);
    }
}
