//! The server-side view of one benchmark cell: what PostgreSQL (and Redis)
//! were doing while the load ran.
//!
//! [`ServerSampler::start`] opens the sampler's own connection to the cell
//! database (outside every application pool, `application_name =
//! contend-sampler`), snapshots `pg_stat_database`, `pg_stat_statements` and
//! Redis `INFO`, and spawns a task that takes one [`ActivitySample`] per
//! interval with a single prepared query (plus `INFO clients` when Redis is
//! sampled). [`ServerSampler::stop`] ends the task, snapshots again and
//! returns [`ServerSamples`]: the samples and end-minus-start deltas. A failed
//! sample or snapshot is recorded in [`ServerSamples::sampling_errors`] and
//! sampling goes on; only bad settings, connecting, preparing and the starting
//! `pg_stat_database` snapshot can fail with a [`SamplerError`]. This module
//! measures: it must not format text for people, print, write files, or
//! change server state — in particular it never calls
//! `pg_stat_statements_reset()` or `pg_stat_reset()`, because the server may
//! be the user's own. Times are milliseconds and field names carry units.
//!
//! This file holds the settings, the results and the loop (start, sample
//! every interval, stop); what is read from PostgreSQL lives in
//! `postgres.rs` and what is read from Redis in `redis.rs`. A PgBouncer in
//! front of the cell is sampled apart, on its admin console
//! (`pgbouncer.rs`, [`PoolerSampler`]).

mod pgbouncer;
mod postgres;
mod redis;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_postgres::{Client, Statement};

pub use self::pgbouncer::{PoolerSample, PoolerSampler, PoolerSamples, PoolerStatsDelta, POOLER_INTERVAL};
use self::postgres::{
    connect_postgres, database_counters, database_delta, prepare_statements_query, read_activity, read_database,
    read_statements, read_tls, statement_deltas, statements_unavailable, timed_pg, PgFailure, StatementCounters,
    ACTIVITY_SQL, DATABASE_SQL, SESSIONS_SQL, TLS_SQL,
};
pub use self::postgres::{ActivitySample, DatabaseDelta, StatementStats, TlsSessions};
pub use self::redis::RedisDelta;
use self::redis::{connect_redis, read_redis_clients, read_redis_counters, redis_delta, timed_redis, RedisSide};
use crate::client::POOL_APPLICATION_NAME;
use crate::provision::mask_url;

/// Default time between two activity samples: 500 ms.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(500);

/// Default number of statements kept in [`ServerSamples::top_statements`].
pub const DEFAULT_TOP_STATEMENTS: usize = 10;

/// `application_name` of the sampler's connection, so it can be told apart in
/// `pg_stat_activity` and server logs.
pub const APPLICATION_NAME: &str = "contend-sampler";

/// Most entries kept in [`ServerSamples::sampling_errors`]; beyond it one last
/// entry says how many more there were (a dead server fails every interval).
pub const MAX_SAMPLING_ERRORS: usize = 100;

/// Time allowed for connecting to PostgreSQL or Redis.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Time allowed for one query batch (a sample or a snapshot).
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest [`ServerSampler::stop_after`] waits for the cell's sessions to
/// exit (they exit within milliseconds of their pool closing).
pub const SESSIONS_EXIT_WAIT: Duration = Duration::from_secs(5);

/// Polls until no session named `application` is connected to `database`
/// or `within` has passed; returns how many are left.
async fn wait_for_sessions_to_exit(
    client: &Client,
    database: &str,
    application: &str,
    within: Duration,
) -> Result<i64, PgFailure> {
    let deadline = Instant::now() + within;
    loop {
        let row = timed_pg(client.query_one(SESSIONS_SQL, &[&database, &application])).await?;
        let left: i64 = row.try_get(0).map_err(|error| PgFailure::Column { index: 0, error })?;
        if left == 0 || Instant::now() >= deadline {
            return Ok(left);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What to sample and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamplerSettings {
    /// Time between two activity samples; at least 1 ms. Default:
    /// [`DEFAULT_INTERVAL`] (500 ms).
    pub interval: Duration,
    /// The cell database whose sessions and statistics are sampled; the
    /// sampler connects to it. Default: `postgres`.
    pub database: String,
    /// Most statements kept in [`ServerSamples::top_statements`]; 0 skips
    /// `pg_stat_statements` entirely. Default: [`DEFAULT_TOP_STATEMENTS`] (10).
    pub top_statements: usize,
}

impl SamplerSettings {
    /// Default settings for sampling `database`.
    pub fn new(database: impl Into<String>) -> SamplerSettings {
        SamplerSettings {
            database: database.into(),
            ..SamplerSettings::default()
        }
    }
}

impl Default for SamplerSettings {
    /// Every 500 ms ([`DEFAULT_INTERVAL`]), database `postgres`, the top 10
    /// statements ([`DEFAULT_TOP_STATEMENTS`]).
    fn default() -> Self {
        SamplerSettings {
            interval: DEFAULT_INTERVAL,
            database: "postgres".to_string(),
            top_statements: DEFAULT_TOP_STATEMENTS,
        }
    }
}

/// Why a sampler could not start. Once started, nothing fails: problems become
/// [`ServerSamples::sampling_errors`]. Messages never contain a password.
#[derive(Debug, thiserror::Error)]
pub enum SamplerError {
    /// Settings the sampler cannot use.
    #[error("sampler settings: {reason}")]
    InvalidSettings {
        /// What is wrong and what to pick instead.
        reason: String,
    },
    /// The sampler's PostgreSQL connection could not be opened.
    #[error("the sampler cannot connect to PostgreSQL at {url}: {reason}")]
    Connect {
        /// The URL of the sampled database, password masked.
        url: String,
        /// What went wrong and what to check.
        reason: String,
    },
    /// A query the sampler needs failed at start.
    #[error("the sampler cannot {step} in database {database}: {reason}")]
    Query {
        /// What the sampler was doing, e.g. "read pg_stat_database".
        step: &'static str,
        /// The sampled database.
        database: String,
        /// The server's message and SQLSTATE, and what to check.
        reason: String,
    },
}

/// Everything sampled during one window (start to stop), as plain data.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServerSamples {
    /// The sampling interval, milliseconds.
    pub interval_ms: u64,
    /// One entry per successful sample, in time order.
    pub samples: Vec<ActivitySample>,
    /// End minus start of `pg_stat_database` for the database. Backends
    /// flush these counters lazily (PostgreSQL 15+: at most once a second,
    /// when idle, and at exit; a busy pooled connection had 191 of 808
    /// commits counted at the end of a 5 s cell), so
    /// [`ServerSampler::stop_after`] reads the end once the cell's sessions
    /// have exited; when some had not, `sampling_errors` says the delta is
    /// partial. All zero when a snapshot failed (then `sampling_errors`
    /// says so).
    pub database: DatabaseDelta,
    /// Statements of the database by execution time spent in the window,
    /// longest first, at most [`SamplerSettings::top_statements`]; empty when
    /// `pg_stat_statements` is unavailable (then `sampling_errors` says why).
    pub top_statements: Vec<StatementStats>,
    /// Redis counters over the window, when Redis was sampled and both
    /// snapshots succeeded.
    pub redis: Option<RedisDelta>,
    /// The application pools' sessions by encryption (`pg_stat_ssl`), the
    /// most of each seen in one sample; empty when none was seen (or in a
    /// record written before it existed).
    #[serde(default)]
    pub tls_sessions: Vec<TlsSessions>,
    /// Failed samples and snapshots, each as `"at <t> ms: <what>"` (time
    /// since start), at most [`MAX_SAMPLING_ERRORS`] plus one line counting
    /// the rest.
    pub sampling_errors: Vec<String>,
}

/// A running sampler; [`ServerSampler::stop`] it to get the results. Dropping
/// it stops the sampling task too, and discards what was sampled.
pub struct ServerSampler {
    settings: SamplerSettings,
    started: Instant,
    client: Arc<Client>,
    database_statement: Statement,
    statements_statement: Option<Statement>,
    start_database: [i64; 12],
    start_statements: Option<HashMap<i64, StatementCounters>>,
    redis: Option<RedisSide>,
    start_errors: ErrorLog,
    stop_sender: watch::Sender<bool>,
    task: JoinHandle<TaskOutput>,
}

impl ServerSampler {
    /// Connects to `settings.database` on the server `url` points at (any
    /// database of it; the URL's database is replaced) with
    /// `application_name = contend-sampler`, and to Redis at `redis_url` when
    /// given; takes the starting snapshots, and spawns a task that samples
    /// every `settings.interval` until [`ServerSampler::stop`]. Redis and
    /// `pg_stat_statements` problems do not fail the start: they become
    /// [`ServerSamples::sampling_errors`].
    pub async fn start(
        url: &str,
        redis_url: Option<&str>,
        settings: SamplerSettings,
    ) -> Result<ServerSampler, SamplerError> {
        validate(&settings)?;
        let database = settings.database.clone();
        let client = Arc::new(connect_postgres(url, &database).await?);
        let query_error = |step: &'static str| {
            let database = database.clone();
            move |failure: PgFailure| SamplerError::Query {
                step,
                database,
                reason: failure.to_string(),
            }
        };
        let (activity_statement, database_statement, tls_statement) = tokio::try_join!(
            async {
                timed_pg(client.prepare(ACTIVITY_SQL))
                    .await
                    .map_err(query_error("prepare the pg_stat_activity query"))
            },
            async {
                timed_pg(client.prepare(DATABASE_SQL))
                    .await
                    .map_err(query_error("prepare the pg_stat_database query"))
            },
            async {
                timed_pg(client.prepare(TLS_SQL))
                    .await
                    .map_err(query_error("prepare the pg_stat_ssl query"))
            },
        )?;
        let mut start_errors = ErrorLog::default();
        let statements_statement = if settings.top_statements == 0 {
            None
        } else {
            match prepare_statements_query(&client).await {
                Ok(statement) => Some(statement),
                Err(e) => {
                    start_errors.push(0, statements_unavailable(&database, &e));
                    None
                }
            }
        };
        let mut redis_connection = match redis_url {
            None => None,
            Some(redis_url) => match connect_redis(redis_url).await {
                Ok(connection) => Some(connection),
                Err(reason) => {
                    start_errors.push(0, format!("Redis at {}: {reason}", mask_url(redis_url)));
                    None
                }
            },
        };

        let started = Instant::now();
        let (start_database, start_statements, start_redis) = tokio::join!(
            timed_pg(read_database(&client, &database_statement, &database)),
            async {
                match &statements_statement {
                    Some(statement) => Some(timed_pg(read_statements(&client, statement, &database)).await),
                    None => None,
                }
            },
            async {
                match &mut redis_connection {
                    Some(connection) => Some(timed_redis(read_redis_counters(connection)).await),
                    None => None,
                }
            },
        );
        let start_database = start_database.map_err(query_error("read pg_stat_database"))?;
        let start_statements = match start_statements {
            Some(Ok(snapshot)) => Some(snapshot),
            Some(Err(e)) => {
                start_errors.push(0, statements_unavailable(&database, &e));
                None
            }
            None => None,
        };
        let redis = match (redis_connection, start_redis) {
            (Some(connection), Some(Ok(start))) => Some(RedisSide { connection, start }),
            (_, Some(Err(reason))) => {
                start_errors.push(0, format!("Redis INFO at start failed: {reason}"));
                None
            }
            _ => None,
        };

        let (stop_sender, stop_receiver) = watch::channel(false);
        let sampling = Sampling {
            client: Arc::clone(&client),
            activity: activity_statement,
            tls: tls_statement,
            tls_seen: BTreeMap::new(),
            database: database.clone(),
            redis: redis.as_ref().map(|side| side.connection.clone()),
            started,
            samples: Vec::new(),
            errors: ErrorLog::default(),
            max_connected_clients: redis.as_ref().map_or(0, |side| side.start.connected_clients),
        };
        let task = tokio::spawn(sampling.run(settings.interval, stop_receiver));
        Ok(ServerSampler {
            settings,
            started,
            client,
            database_statement,
            statements_statement,
            start_database,
            start_statements,
            redis,
            start_errors,
            stop_sender,
            task,
        })
    }

    /// Stops sampling, takes the ending snapshots and returns everything.
    /// Never fails: what could not be read is in
    /// [`ServerSamples::sampling_errors`]. `pg_stat_database` may lag by up
    /// to about a second (see [`ServerSamples::database`]); nothing waits for
    /// it here: [`ServerSampler::stop_after`] does.
    pub async fn stop(self) -> ServerSamples {
        self.stop_after(std::future::ready(()), None).await
    }

    /// Stops sampling, runs `closing` (which ends the sessions whose work
    /// is measured, e.g. closes the pools), waits up to
    /// [`SESSIONS_EXIT_WAIT`] for the database's sessions named `sessions`
    /// (`application_name`) to exit — a backend flushes its statistics as
    /// it exits — and then takes the ending snapshots, so that
    /// `pg_stat_database` counts all of their work. Sessions still there by
    /// then make a sampling error saying the delta is partial.
    pub async fn stop_after(self, closing: impl Future<Output = ()>, sessions: Option<&str>) -> ServerSamples {
        let _ = self.stop_sender.send(true);
        let mut errors = self.start_errors;
        let (samples, mut max_connected_clients, tls_sessions) = match self.task.await {
            Ok(output) => {
                errors.append(output.errors);
                (output.samples, output.max_connected_clients, output.tls_sessions)
            }
            Err(e) => {
                errors.push(elapsed_ms(self.started), format!("the sampling task failed: {e}"));
                (Vec::new(), 0, Vec::new())
            }
        };
        closing.await;
        if let Some(application) = sessions {
            let database = &self.settings.database;
            match wait_for_sessions_to_exit(&self.client, database, application, SESSIONS_EXIT_WAIT).await {
                Ok(0) => {}
                Ok(left) => errors.push(
                    elapsed_ms(self.started),
                    format!(
                        "{left} session(s) of the cell ({application}) had not exited {} s after the pools closed: pg_stat_database is partial (their unflushed work is missing)",
                        SESSIONS_EXIT_WAIT.as_secs()
                    ),
                ),
                Err(reason) => errors.push(
                    elapsed_ms(self.started),
                    format!("waiting for the cell's sessions to exit failed: {reason}; pg_stat_database may be partial"),
                ),
            }
        }
        let t_ms = elapsed_ms(self.started);
        let database = &self.settings.database;
        let mut redis_side = self.redis;
        let (end_database, end_statements, end_redis) = tokio::join!(
            timed_pg(read_database(&self.client, &self.database_statement, database)),
            async {
                match (&self.statements_statement, &self.start_statements) {
                    (Some(statement), Some(_)) => {
                        Some(timed_pg(read_statements(&self.client, statement, database)).await)
                    }
                    _ => None,
                }
            },
            async {
                match &mut redis_side {
                    Some(side) => Some(timed_redis(read_redis_counters(&mut side.connection)).await),
                    None => None,
                }
            },
        );

        let delta = match end_database {
            Ok(end) => {
                let delta = database_delta(&self.start_database, &end);
                if database_counters(&delta).iter().any(|&value| value < 0) {
                    errors.push(
                        t_ms,
                        format!("pg_stat_database counters of {database} went down: statistics were reset during the window, so the delta is not reliable"),
                    );
                }
                delta
            }
            Err(reason) => {
                errors.push(t_ms, format!("reading pg_stat_database at stop failed: {reason}"));
                DatabaseDelta::default()
            }
        };

        let top_statements = match (self.start_statements, end_statements) {
            (Some(start), Some(Ok(end))) => statement_deltas(&start, &end, self.settings.top_statements),
            (_, Some(Err(e))) => {
                errors.push(t_ms, format!("reading pg_stat_statements at stop failed: {e}"));
                Vec::new()
            }
            _ => Vec::new(),
        };

        let redis = match (redis_side, end_redis) {
            (Some(side), Some(Ok(end))) => {
                max_connected_clients = max_connected_clients.max(end.connected_clients);
                Some(redis_delta(&side.start, &end, max_connected_clients))
            }
            (_, Some(Err(reason))) => {
                errors.push(t_ms, format!("Redis INFO at stop failed: {reason}"));
                None
            }
            _ => None,
        };

        ServerSamples {
            interval_ms: u64::try_from(self.settings.interval.as_millis()).unwrap_or(u64::MAX),
            samples,
            database: delta,
            top_statements,
            redis,
            tls_sessions,
            sampling_errors: errors.into_vec(),
        }
    }
}

fn validate(settings: &SamplerSettings) -> Result<(), SamplerError> {
    if settings.interval < Duration::from_millis(1) {
        return Err(SamplerError::InvalidSettings {
            reason: format!(
                "interval {:?} is too short: sample at least 1 ms apart (500 ms is the default)",
                settings.interval
            ),
        });
    }
    if settings.database.is_empty() {
        return Err(SamplerError::InvalidSettings {
            reason: "no database to sample: name the cell database".into(),
        });
    }
    Ok(())
}

/// Failures kept in order with their time, at most [`MAX_SAMPLING_ERRORS`].
#[derive(Debug, Default)]
struct ErrorLog {
    kept: Vec<String>,
    not_kept: usize,
}

impl ErrorLog {
    fn push(&mut self, t_ms: u64, what: impl Display) {
        if self.kept.len() < MAX_SAMPLING_ERRORS {
            self.kept.push(format!("at {t_ms} ms: {what}"));
        } else {
            self.not_kept += 1;
        }
    }

    fn append(&mut self, other: ErrorLog) {
        let room = MAX_SAMPLING_ERRORS.saturating_sub(self.kept.len());
        let extra = other.kept.len().saturating_sub(room);
        self.kept.extend(other.kept.into_iter().take(room));
        self.not_kept += other.not_kept + extra;
    }

    fn into_vec(mut self) -> Vec<String> {
        if self.not_kept > 0 {
            self.kept
                .push(format!("{} more sampling errors were not kept", self.not_kept));
        }
        self.kept
    }
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// What the sampling task hands back at stop.
struct TaskOutput {
    samples: Vec<ActivitySample>,
    errors: ErrorLog,
    max_connected_clients: u64,
    tls_sessions: Vec<TlsSessions>,
}

/// State of the sampling task.
struct Sampling {
    client: Arc<Client>,
    activity: Statement,
    tls: Statement,
    tls_seen: BTreeMap<(bool, Option<String>, Option<String>), u32>,
    database: String,
    redis: Option<MultiplexedConnection>,
    started: Instant,
    samples: Vec<ActivitySample>,
    errors: ErrorLog,
    max_connected_clients: u64,
}

impl Sampling {
    /// Samples every `interval` (the first at once) until `stop` changes or
    /// its sender is dropped. A sample in flight when stop comes is abandoned.
    async fn run(mut self, interval: Duration, mut stop: watch::Receiver<bool>) -> TaskOutput {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                _ = ticker.tick() => {}
            }
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                _ = self.sample_once() => {}
            }
        }
        TaskOutput {
            samples: self.samples,
            errors: self.errors,
            max_connected_clients: self.max_connected_clients,
            tls_sessions: self
                .tls_seen
                .into_iter()
                .map(|((ssl, version, cipher), sessions)| TlsSessions {
                    ssl,
                    version,
                    cipher,
                    sessions,
                })
                .collect(),
        }
    }

    /// One activity query, and `INFO clients` alongside when Redis is sampled.
    async fn sample_once(&mut self) {
        let t_ms = elapsed_ms(self.started);
        let client = &self.client;
        let activity = &self.activity;
        let database = self.database.as_str();
        let redis = self.redis.as_mut();
        let tls = &self.tls;
        let tls_seen = &mut self.tls_seen;
        let (activity_result, tls_result, redis_result) = tokio::join!(
            timed_pg(read_activity(client, activity, database, t_ms)),
            timed_pg(read_tls(client, tls, database, POOL_APPLICATION_NAME, tls_seen)),
            async {
                match redis {
                    Some(connection) => Some(timed_redis(read_redis_clients(connection)).await),
                    None => None,
                }
            },
        );
        if let Err(reason) = tls_result {
            self.errors.push(t_ms, format!("pg_stat_ssl sample failed: {reason}"));
        }
        match activity_result {
            Ok(sample) => self.samples.push(sample),
            Err(reason) => self.errors.push(t_ms, format!("activity sample failed: {reason}")),
        }
        match redis_result {
            Some(Ok(clients)) => self.max_connected_clients = self.max_connected_clients.max(clients),
            Some(Err(reason)) => self.errors.push(t_ms, format!("Redis INFO clients failed: {reason}")),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn error_log_keeps_a_bounded_number() {
        let mut log = ErrorLog::default();
        log.push(0, "first");
        let mut later = ErrorLog::default();
        for i in 0..MAX_SAMPLING_ERRORS + 5 {
            later.push(i as u64, "again");
        }
        log.append(later);
        let all = log.into_vec();
        assert_eq!(all.len(), MAX_SAMPLING_ERRORS + 1);
        assert_eq!(all[0], "at 0 ms: first");
        assert_eq!(all[MAX_SAMPLING_ERRORS], "6 more sampling errors were not kept");
    }

    #[test]
    fn settings_are_validated() {
        assert!(validate(&SamplerSettings::new("cell_1")).is_ok());
        let zero = SamplerSettings {
            interval: Duration::ZERO,
            ..SamplerSettings::new("cell_1")
        };
        assert!(matches!(validate(&zero), Err(SamplerError::InvalidSettings { .. })));
        assert!(validate(&SamplerSettings::new("")).is_err());
    }

    #[test]
    fn samples_round_trip_through_json() {
        let samples = ServerSamples {
            interval_ms: 500,
            samples: vec![ActivitySample {
                t_ms: 3,
                connections: 2,
                by_state: BTreeMap::from([("active".to_string(), 2)]),
                by_wait_event_type: BTreeMap::from([("CPU".to_string(), 1), ("Lock".to_string(), 1)]),
                lock_waiters: 1,
            }],
            database: DatabaseDelta {
                xact_commit: 5,
                ..DatabaseDelta::default()
            },
            top_statements: vec![StatementStats {
                query: "SELECT 1".into(),
                calls: 2,
                total_exec_ms: 0.5,
                mean_exec_ms: 0.25,
                rows: 2,
                shared_blks_hit: 0,
                shared_blks_read: 0,
            }],
            redis: Some(RedisDelta::default()),
            tls_sessions: vec![TlsSessions {
                ssl: true,
                version: Some("TLSv1.3".into()),
                cipher: Some("TLS_AES_256_GCM_SHA384".into()),
                sessions: 2,
            }],
            sampling_errors: vec!["at 0 ms: x".into()],
        };
        let json = serde_json::to_string(&samples).expect("serializes");
        let back: ServerSamples = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(back, samples);
    }
}
