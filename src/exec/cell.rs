//! The harness a measured cell runs in, shared by run (and through it,
//! sweep) and migrate: the cell's fresh copy of the template, the checker's
//! connection doubling as the server's watchdog, the checker's Redis
//! connection, the instances' pools, the driver's Redis client and the
//! server sampler, opened in that order and released by
//! [`CellHarness::finish`].
//!
//! The watchdog: the checker's connection sits idle while the load runs, so
//! it ends only when the server ends it (killed, crashed, restarted). Then
//! the clients are stopped at once instead of spinning through connection
//! errors, and the cell ends as [`RunError::ServerLost`]; a setup step that
//! fails while the checker's connection ends does too.
//!
//! The deadline ([`CellClock`]): a server can also stop answering without
//! closing anything (a SIGSTOP'd postmaster, a paused container, a network
//! dropping packets), and then every step would wait forever. So the cell
//! must keep moving (only a template's first load is not bounded: it can
//! take minutes and happens once): setup steps get
//! the grace (`--cell-grace`, [`DriverSettings::grace_s`]) each, the load
//! gets warmup + duration and then the grace past the last attempt that
//! finished (the drain, the teardown and the checks fit in it). A cell past
//! its deadline is abandoned as [`RunError::Unresponsive`]: its clients
//! stopped, its tasks dropped, nothing of it recorded as measured.
//!
//! The network (`--network-rtt`): when the cell asks for a round trip,
//! [`CellHarness::start_load`] starts a [`DelayProxy`] before the pools and
//! gives the pools its address instead of the server's (the one seam:
//! `pools_url`); the checker and the sampler still connect directly. It
//! is stopped after the pools close, and its report kept for the record.
//!
//! Owns the order of those steps and their release; what a cell measures
//! and records is run's and migrate's.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_postgres::Client;

use super::error::RunError;
use super::template::{copy_for_cell, drop_database, ensure_template_then, grant_cell_to};
use crate::client::{cache_connections, redis_client, AppPool, POOL_APPLICATION_NAME};
use crate::driver::{drive, DriveOutput, DriverSettings, LiveCounts};
use crate::measure::{PoolerSampler, SamplerSettings, ServerSampler, ServerSamples, POOLER_INTERVAL};
use crate::network::{upstream_of, url_through, DelayProxy, ProxyReport};
use crate::provision::tls::{PgConnection, PgTarget, TargetError};
use crate::provision::{
    connect_external_pooler, database_url, start_pgbouncer, CellPooler, ExternalPooler, PgServer, Pooler, Servers,
};
use crate::record::{CellSettings, NetworkMeasured, PoolerCell, ServerLoss, TemplateInfo};
use crate::workload::{uses_redis, CellContext, DataPlan, InvariantCheck, Workload, WorkloadError};

/// `application_name` of the checker's connection.
const CHECKER_APPLICATION: &str = "contend-control";

/// `application_name` of the connection that times the pools' round trip.
const RTT_APPLICATION: &str = "contend-rtt";

/// `SELECT 1`s timed on each connection for the cell's round trips (after
/// one untimed).
const RTT_SAMPLES: u32 = 51;

/// How long a failed setup step waits for the checker's connection to end
/// before taking the failure for what it says: a server that went away
/// ends every session within milliseconds, but the step may hear of it
/// first.
const LOSS_GRACE: Duration = Duration::from_secs(1);

/// Longest a PgBouncer contend starts for a cell gets to be ready.
const POOLER_STARTUP: Duration = Duration::from_secs(30);

/// How often the deadline looks at the clock and the live counts.
const CLOCK_TICK: Duration = Duration::from_millis(200);

/// A cell's deadline (see the module's documentation): the grace past a
/// moment the harness moves on as the cell goes (a step starting, the
/// load's window ending) or past the last attempt that finished, whichever
/// is later; unbounded while the template first loads.
pub(super) struct CellClock {
    grace: Duration,
    started: Instant,
    /// `None`: unbounded for now.
    not_before: std::sync::Mutex<Option<Instant>>,
}

impl CellClock {
    /// A clock whose cell must keep moving from now on, with `grace_s`
    /// seconds of grace.
    pub fn new(grace_s: f64) -> Arc<CellClock> {
        let now = Instant::now();
        Arc::new(CellClock {
            grace: Duration::from_secs_f64(grace_s.max(0.001)),
            started: now,
            not_before: std::sync::Mutex::new(Some(now)),
        })
    }

    /// The grace runs from `at` (or from the last finished attempt, if
    /// later); `None` suspends the deadline.
    fn bound_from(&self, at: Option<Instant>) {
        *self
            .not_before
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = at;
    }

    /// Runs `cell` unless it passes its deadline: then its clients are told
    /// to stop, `cell` is dropped (its connections with it) and the result
    /// is [`RunError::Unresponsive`].
    pub async fn bound<T, E: From<RunError>>(
        &self,
        live: &LiveCounts,
        cell: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        tokio::select! {
            done = cell => done,
            after = self.expired(live) => {
                live.request_stop();
                Err(RunError::Unresponsive {
                    after_s: after.as_secs_f64(),
                    grace_s: self.grace.as_secs_f64(),
                }
                .into())
            }
        }
    }

    /// Resolves, with the time since the clock started, once the cell is
    /// past its deadline.
    async fn expired(&self, live: &LiveCounts) -> Duration {
        let finished = || {
            live.ok.load(std::sync::atomic::Ordering::Relaxed) + live.errors.load(std::sync::atomic::Ordering::Relaxed)
        };
        let (mut seen, mut last_progress) = (finished(), Instant::now());
        loop {
            tokio::time::sleep(CLOCK_TICK).await;
            let now = Instant::now();
            let count = finished();
            if count != seen {
                (seen, last_progress) = (count, now);
            }
            let not_before = *self
                .not_before
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(not_before) = not_before {
                if now > not_before.max(last_progress) + self.grace {
                    return now - self.started;
                }
            }
        }
    }
}

/// Marks the watchdog closing when a harness is dropped without
/// [`CellHarness::finish`] (a cell abandoned at its deadline or by a
/// signal), so its checker's connection ending later stops no other cell.
struct DisarmOnDrop(Arc<watch::Sender<Watch>>);

impl Drop for DisarmOnDrop {
    fn drop(&mut self) {
        self.0.send_modify(|watch| {
            watch.closing = true;
            watch.armed = false;
        });
    }
}

/// One cell's database and everything connected to it. Open it, prepare the
/// workload, start the load side, drive, stop the load side, check, then
/// [`CellHarness::finish`] (on every path, errors included).
pub(super) struct CellHarness {
    /// The server's admin URL (any database of it).
    admin_url: String,
    /// The cell's database: a fresh copy of the template.
    database: String,
    /// The admin's URL of the cell's database (checks, sampler, migrations).
    cell_url: String,
    /// The clients' URL of the cell's database.
    client_url: String,
    /// What the pools connect to: `client_url`, or the proxy's address
    /// in its place when the cell has a network.
    pools_url: String,
    /// The network's proxy while the load runs.
    proxy: Option<DelayProxy>,
    /// What the proxy reported when it stopped.
    pub proxy_report: Option<ProxyReport>,
    redis_url: Option<String>,
    /// The template the copy was made from.
    pub template: TemplateInfo,
    /// How long the copy took.
    pub copy: Duration,
    checker: Client,
    checker_task: tokio::task::JoinHandle<()>,
    watchdog: Arc<watch::Sender<Watch>>,
    checker_redis: Option<redis::aio::MultiplexedConnection>,
    /// The driver's Redis client: each instance's cache connection is
    /// opened by the driver thread that drives it.
    cache_client: Option<redis::Client>,
    pools: Arc<Vec<AppPool>>,
    sampler: Option<ServerSampler>,
    /// The server the pools reach, for a PgBouncer contend starts in front
    /// of it.
    upstream: PgServer,
    /// The user's PgBouncer (`--pooler-url`), for cells that go through it.
    external_pooler: Option<ExternalPooler>,
    /// The cell's pooler while the load runs, and its sampler.
    pooler: Option<(Pooler, PoolerSampler)>,
    /// What the pooler did, once the load stopped.
    pooler_cell: Option<PoolerCell>,
    live: Arc<LiveCounts>,
    opened: Instant,
    clock: Arc<CellClock>,
    _disarm: DisarmOnDrop,
}

/// What the watchdog knows, behind one lock so that arming it and the
/// connection ending cannot miss each other.
#[derive(Debug, Default)]
struct Watch {
    /// Set while the load runs: a loss then stops the clients.
    armed: bool,
    /// Set when the harness closes the connection itself.
    closing: bool,
    /// The server's words, once it ended the connection.
    lost: Option<String>,
}

impl CellHarness {
    /// Makes sure the template of `plan` exists, copies it to `database`,
    /// grants the copy to the clients' role, and opens the checker's
    /// connection to it. `live` is what the watchdog stops; `clock` is the
    /// cell's deadline, which the harness moves on as the cell goes (the
    /// caller runs the cell within [`CellClock::bound`]).
    pub async fn open(
        servers: &Servers,
        plan: &DataPlan,
        database: String,
        live: Arc<LiveCounts>,
        clock: Arc<CellClock>,
    ) -> Result<CellHarness, RunError> {
        let admin_url = servers.postgres.url.clone();
        // The first load of a template may take minutes: not bounded.
        let template = ensure_template_then(&admin_url, plan, || clock.bound_from(None)).await?;
        clock.bound_from(Some(Instant::now()));
        let copy = copy_for_cell(&admin_url, &template, &database, servers.postgres.version_num).await?;
        clock.bound_from(Some(Instant::now()));
        let cell_url = database_url(&admin_url, &database);
        let checker = async {
            if let Some(role) = &servers.postgres.client_role {
                grant_cell_to(&cell_url, role).await?;
            }
            connect(&cell_url, CHECKER_APPLICATION, "connecting to the cell database").await
        };
        let (checker, connection) = match checker.await {
            Ok(opened) => opened,
            Err(error) => {
                if !error.is_connection_loss() {
                    let _ = drop_database(&admin_url, &database).await;
                }
                return Err(error);
            }
        };
        let watchdog = Arc::new(watch::Sender::new(Watch::default()));
        let checker_task = {
            let watchdog = Arc::clone(&watchdog);
            let live = Arc::clone(&live);
            tokio::spawn(async move {
                let ended = connection.await;
                let reason = match &ended {
                    Err(e) => server_message(e),
                    Ok(()) => "the server closed the connection".to_string(),
                };
                let mut stop = false;
                watchdog.send_modify(|watch| {
                    if !watch.closing {
                        watch.lost = Some(reason);
                        stop = watch.armed;
                    }
                });
                if stop {
                    live.request_stop();
                }
            })
        };
        Ok(CellHarness {
            _disarm: DisarmOnDrop(Arc::clone(&watchdog)),
            clock,
            client_url: database_url(&servers.postgres.client_url, &database),
            pools_url: String::new(),
            proxy: None,
            proxy_report: None,
            redis_url: servers.redis.as_ref().map(|redis| redis.url.clone()),
            admin_url,
            database,
            cell_url,
            template,
            copy,
            checker,
            checker_task,
            watchdog,
            checker_redis: None,
            cache_client: None,
            pools: Arc::new(Vec::new()),
            sampler: None,
            upstream: servers.postgres.clone(),
            external_pooler: servers.external_pooler.clone(),
            pooler: None,
            pooler_cell: None,
            live,
            opened: Instant::now(),
        })
    }

    /// The admin's URL of the cell's database.
    pub fn cell_url(&self) -> &str {
        &self.cell_url
    }

    /// The checker's connection to the cell's database (idle while the load
    /// runs, unless the caller queries it then, as migrate does).
    pub fn checker(&self) -> &Client {
        &self.checker
    }

    /// What the workload's own preparation and checks get.
    fn context(&mut self) -> CellContext<'_> {
        CellContext {
            client: &self.checker,
            database: &self.database,
            redis: self.checker_redis.as_mut(),
        }
    }

    /// Opens the checker's Redis connection and the driver's Redis client
    /// when the workload uses Redis, and lets the workload read the cell's
    /// data.
    pub async fn prepare<W: Workload>(&mut self, workload: &mut W) -> Result<(), RunError> {
        self.clock.bound_from(Some(Instant::now()));
        let prepared = async {
            if workload.uses_redis() {
                let url = self.redis_url.as_deref().ok_or(RunError::NoRedis)?;
                self.checker_redis = cache_connections(url, 1).await?.pop();
                self.cache_client = Some(redis_client(url)?);
            }
            workload.prepare_cell(self.context()).await?;
            Ok::<(), RunError>(())
        }
        .await;
        self.unless_lost_in_setup(prepared).await
    }

    /// Starts the cell's pooler when it has one, builds the instances'
    /// pools (they connect when first used) and starts the samplers.
    pub async fn start_load(&mut self, settings: &CellSettings) -> Result<(), RunError> {
        self.clock.bound_from(Some(Instant::now()));
        let started = async {
            // The pools' URL: the server's or the pooler's; with a network
            // (--network-rtt) the proxy sits in front of it.
            let app_url = Box::pin(self.app_pools_url(settings.pooler)).await?;
            self.pools_url = app_url.clone();
            if !settings.network.is_direct() {
                let proxy = DelayProxy::start(upstream_of(&app_url)?, settings.network)?;
                self.pools_url = url_through(&app_url, proxy.local_addr());
                self.proxy = Some(proxy);
            }
            let pools = (0..settings.instances)
                .map(|_| AppPool::new(&self.pools_url, &settings.pool))
                .collect::<Result<Vec<_>, _>>()?;
            self.pools = Arc::new(pools);
            let sampler = ServerSampler::start(
                &self.cell_url,
                self.redis_url.as_deref(),
                SamplerSettings::new(self.database.clone()),
            )
            .await?;
            self.sampler = Some(sampler);
            Ok::<(), RunError>(())
        }
        .await;
        self.unless_lost_in_setup(started).await
    }

    /// Times the round trip over the pools' path (a connection of its own
    /// to the pools' URL, so no pool's connection is opened on this
    /// runtime) and directly (the checker's connection), before the load;
    /// with a proxy, first trims what its own path adds off its delay.
    pub async fn measure_network(&self, settings: &CellSettings) -> Result<NetworkMeasured, RunError> {
        match self.time_network(settings).await {
            Ok(measured) => Ok(measured),
            // A server that went away under the probe is a loss, as under the load.
            Err(error) => Err(self.loss_or(error).await),
        }
    }

    /// [`CellHarness::measure_network`]'s timing.
    async fn time_network(&self, settings: &CellSettings) -> Result<NetworkMeasured, RunError> {
        let (pooled, task) = connect_spawned(
            &self.pools_url,
            RTT_APPLICATION,
            "connecting over the pools' path to time its round trip",
        )
        .await?;
        let mut rtt_pooled_ms = median_round_trip_ms(&pooled).await?;
        let rtt_direct_ms = median_round_trip_ms(&self.checker).await?;
        // The proxy's own path (two more loopback hops, its threads waking
        // on a busy machine) adds to the delay asked for: measured here, it
        // is trimmed off the delay once, and the round trip timed again, so
        // the clients see the round trip asked for (the record keeps both).
        if let Some(proxy) = &self.proxy {
            let excess_ms = rtt_pooled_ms - rtt_direct_ms - settings.network.rtt_ms;
            if excess_ms > 0.0 {
                proxy.trim(Duration::from_secs_f64(excess_ms / 1000.0));
                rtt_pooled_ms = median_round_trip_ms(&pooled).await?;
            }
        }
        drop(pooled);
        let _ = task.await;
        let pools_connect_to = match self.proxy.as_ref() {
            Some(proxy) => proxy.local_addr().to_string(),
            None => upstream_of(&self.pools_url).map_or_else(|_| String::new(), |addr| addr.to_string()),
        };
        Ok(NetworkMeasured {
            rtt_set_ms: settings.network.rtt_ms,
            rtt_pooled_ms,
            rtt_direct_ms,
            samples: RTT_SAMPLES,
            pools_connect_to,
            proxy: None,
        })
    }

    /// The URL the app pools connect to: the server's, or, with a pooler,
    /// the pooler's (started now in front of the cell's database, or the
    /// user's), whose admin console is then sampled. contend's own
    /// connections (checker, sampler, template) always go to the server.
    async fn app_pools_url(&mut self, pooler: Option<CellPooler>) -> Result<String, RunError> {
        let Some(pooler) = pooler else {
            return Ok(self.client_url.clone());
        };
        // Boxed: starting a pooler is a large future, and a cell's future
        // holds it (a debug build's test thread has a 2 MiB stack).
        let pooler = match pooler {
            CellPooler::PgBouncer(settings) => {
                Box::pin(start_pgbouncer(
                    &settings,
                    &self.upstream,
                    &self.database,
                    POOLER_STARTUP,
                ))
                .await?
            }
            CellPooler::External => {
                let external = self.external_pooler.as_ref().ok_or(RunError::NoExternalPooler)?;
                Box::pin(connect_external_pooler(external, &self.database)).await?
            }
        };
        let sampler = Box::pin(PoolerSampler::start(&pooler.admin_url, &self.database, POOLER_INTERVAL)).await?;
        let url = pooler.client_url.clone();
        self.pooler = Some((pooler, sampler));
        Ok(url)
    }

    /// What the cell's pooler did, once [`CellHarness::stop_load`] ran;
    /// `None` without a pooler.
    pub fn take_pooler(&mut self) -> Option<PoolerCell> {
        self.pooler_cell.take()
    }

    /// Drives `workload` through the pools with the watchdog armed: a
    /// server that goes away stops the clients and makes the result
    /// [`RunError::ServerLost`]. Borrows nothing of the harness, so it can
    /// be spawned while something else runs on the cell.
    pub fn drive<W: Workload>(
        &self,
        workload: Arc<W>,
        settings: DriverSettings,
    ) -> impl Future<Output = Result<DriveOutput, RunError>> + Send + 'static {
        let pools = Arc::clone(&self.pools);
        let cache_client = self.cache_client.clone();
        let live = Arc::clone(&self.live);
        let watchdog = Arc::clone(&self.watchdog);
        // The load's window, then the grace past the last attempt to finish
        // (the drain, stop_load, the checks and finish).
        let window = Duration::from_secs_f64(settings.warmup_s + settings.duration_s);
        self.clock.bound_from(Some(Instant::now() + window));
        async move {
            let mut lost_already = false;
            watchdog.send_modify(|watch| {
                watch.armed = true;
                lost_already = watch.lost.is_some();
            });
            if lost_already {
                live.request_stop();
            }
            let load_started = Instant::now();
            let output = drive(workload, pools, cache_client, settings, live).await;
            watchdog.send_modify(|watch| watch.armed = false);
            let lost = watchdog.borrow().lost.clone();
            if let Some(reason) = lost {
                let (ok, errors_by_class) = match &output {
                    Ok(output) => {
                        let metrics = output.recorder.summarize(output.measured_s);
                        (metrics.ok, metrics.errors_by_class)
                    }
                    Err(_) => (0, Default::default()),
                };
                return Err(RunError::ServerLost(Box::new(ServerLoss {
                    reason,
                    after_s: load_started.elapsed().as_secs_f64(),
                    ok,
                    errors_by_class,
                })));
            }
            Ok(output?)
        }
    }

    /// Runs `work` (which uses the cell while the load runs) unless the
    /// server goes away first: then [`RunError::ServerLost`] at once.
    pub async fn unless_lost<T, E: From<RunError>>(&self, work: impl Future<Output = Result<T, E>>) -> Result<T, E> {
        let mut seen = self.watchdog.subscribe();
        tokio::select! {
            done = work => done,
            lost = seen.wait_for(|watch| watch.lost.is_some()) => {
                let reason = lost.map(|watch| watch.lost.clone().unwrap_or_default()).unwrap_or_default();
                Err(self.loss(reason).into())
            }
        }
    }

    /// Stops the sampler and closes the pools (and the pooler, after its
    /// sampler's last reading); returns what was sampled. The sampler's
    /// last `pg_stat_database` snapshot waits for the pools' sessions to
    /// exit: a backend flushes its counters lazily, and fully only as it
    /// exits (a pooler's server connections exit as the pooler does).
    pub async fn stop_load(&mut self) -> ServerSamples {
        let sampler = self
            .sampler
            .take()
            .expect("start_load starts the sampler stop_load stops");
        let pools = Arc::clone(&self.pools);
        let pooler = self.pooler.take();
        let mut pooler_cell = None;
        let closing = async {
            for pool in pools.iter() {
                pool.close().await;
            }
            if let Some((pooler, pooler_sampler)) = pooler {
                let samples = Box::pin(pooler_sampler.stop()).await;
                pooler_cell = Some(PoolerCell {
                    info: pooler.info.clone(),
                    samples,
                    cpu_s: pooler.cpu_seconds(),
                });
                Box::pin(pooler.shutdown()).await;
            }
        };
        // Boxed, as the pooler's start is.
        let samples = sampler.stop_after(Box::pin(closing), Some(POOL_APPLICATION_NAME)).await;
        self.pooler_cell = pooler_cell;
        self.stop_proxy().await;
        samples
    }

    /// Stops the network's proxy (after the pools: its threads' CPU is
    /// then whole) and keeps its report.
    async fn stop_proxy(&mut self) {
        if let Some(proxy) = self.proxy.take() {
            // Joining its threads blocks for as long as their last chunks take.
            self.proxy_report = tokio::task::spawn_blocking(move || proxy.stop()).await.ok();
        }
    }

    /// The workload's invariants, checked on the cell's data.
    pub async fn check_invariants<W: Workload>(&mut self, workload: &W) -> Vec<InvariantCheck> {
        workload.check_invariants(self.context()).await
    }

    /// Releases everything and drops the cell's database, then returns
    /// `outcome` (or, when only the drop failed, the drop's error). When the
    /// server went away the copy is left: it is gone with the server, or a
    /// restarted local server still has it and the next cell's copy
    /// replaces it.
    pub async fn finish<T, E: From<RunError>>(mut self, outcome: Result<T, E>) -> Result<T, E> {
        if let Some(sampler) = self.sampler.take() {
            let _ = sampler.stop().await;
        }
        for pool in self.pools.iter() {
            pool.close().await;
        }
        self.stop_proxy().await;
        if let Some((pooler, _sampler)) = self.pooler.take() {
            Box::pin(pooler.shutdown()).await;
        }
        let mut lost = false;
        self.watchdog.send_modify(|watch| {
            watch.closing = true;
            lost = watch.lost.is_some();
        });
        drop(self.checker);
        let _ = self.checker_task.await;
        if lost {
            return outcome;
        }
        let dropped = drop_database(&self.admin_url, &self.database).await;
        let value = outcome?;
        dropped.map_err(RunError::from)?;
        Ok(value)
    }

    /// `result`, or [`RunError::ServerLost`] when its error came with the
    /// checker's connection ending: a step such as the sampler's start or
    /// the workload's preparation cannot always tell a server that went away
    /// from another failure, the watchdog can.
    async fn unless_lost_in_setup(&self, result: Result<(), RunError>) -> Result<(), RunError> {
        let Err(error) = result else {
            return Ok(());
        };
        if error.is_connection_loss() {
            return Err(error);
        }
        let mut seen = self.watchdog.subscribe();
        let lost = tokio::time::timeout(LOSS_GRACE, seen.wait_for(|watch| watch.lost.is_some())).await;
        match lost {
            Ok(Ok(watch)) => {
                let reason = watch.lost.clone().unwrap_or_default();
                drop(watch);
                Err(self.loss(reason))
            }
            _ => Err(error),
        }
    }

    /// [`RunError::ServerLost`] when the checker's connection ends within
    /// [`LOSS_GRACE`] (the server went away), else `error`.
    async fn loss_or(&self, error: RunError) -> RunError {
        let mut seen = self.watchdog.subscribe();
        let lost = tokio::time::timeout(LOSS_GRACE, seen.wait_for(|watch| watch.lost.is_some())).await;
        match lost {
            Ok(Ok(watch)) => {
                let reason = watch.lost.clone().unwrap_or_default();
                drop(watch);
                self.loss(reason)
            }
            _ => error,
        }
    }

    /// A loss noticed outside the load: nothing was measured.
    fn loss(&self, reason: String) -> RunError {
        RunError::ServerLost(Box::new(ServerLoss {
            reason,
            after_s: self.opened.elapsed().as_secs_f64(),
            ok: self.live.ok.load(std::sync::atomic::Ordering::Relaxed),
            errors_by_class: Default::default(),
        }))
    }
}

/// Opens a connection of contend's own to `url`, named `application` in
/// `pg_stat_activity`; `what` says what for, should it fail. The caller
/// spawns (or watches) the connection.
pub(super) async fn connect(
    url: &str,
    application: &str,
    what: &'static str,
) -> Result<(Client, PgConnection), RunError> {
    let database = |error| RunError::Database { what, error };
    let mut target = PgTarget::parse(url).map_err(|e| match e {
        TargetError::Url(e) => database(e),
        TargetError::Tls(e) => RunError::Tls(e),
    })?;
    target.config.application_name(application);
    target.connect().await.map_err(database)
}

/// [`connect`], with the connection spawned; the task ends with it.
pub(super) async fn connect_spawned(
    url: &str,
    application: &str,
    what: &'static str,
) -> Result<(Client, tokio::task::JoinHandle<()>), RunError> {
    let (client, connection) = connect(url, application, what).await?;
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok((client, task))
}

/// The median of [`RTT_SAMPLES`] `SELECT 1` round trips on `client`
/// (after one untimed), milliseconds.
async fn median_round_trip_ms(client: &Client) -> Result<f64, RunError> {
    let timing = |error| RunError::Database {
        what: "timing the round trip (SELECT 1)",
        error,
    };
    client.simple_query("SELECT 1").await.map_err(timing)?;
    let mut times = Vec::with_capacity(RTT_SAMPLES as usize);
    for _ in 0..RTT_SAMPLES {
        let started = Instant::now();
        client.simple_query("SELECT 1").await.map_err(timing)?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// The server's own words when it ended a connection (e.g. "terminating
/// connection due to unexpected postmaster exit"), else the client's.
fn server_message(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => db.message().to_string(),
        None => format!("the server ended the connection ({error})"),
    }
}

/// Whether any of `cells` uses Redis (its workload's cache, the redis-gate
/// strategy, a Redis workload): contend starts a Redis only then, so a
/// machine without redis-server runs every other cell.
pub fn cells_need_redis<'a>(cells: impl IntoIterator<Item = &'a CellSettings>) -> Result<bool, WorkloadError> {
    for cell in cells {
        if uses_redis(&cell.workload, &cell.overrides)? {
            return Ok(true);
        }
    }
    Ok(false)
}
