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

use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_postgres::{Client, Row, Statement};

use crate::provision::database_url;
use crate::provision::explain_pg_connect_error;
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

/// Statements whose text mentions one of these are the sampler's own (or
/// another monitor's) and are left out of [`ServerSamples::top_statements`].
const OWN_QUERY_MARKERS: &[&str] = &["pg_stat_activity", "pg_stat_statements", "pg_locks", "pg_stat_database"];

/// One activity sample: sessions of the cell database by state and by wait
/// event type, and how many of them wait for a lock. `pg_locks.database` is
/// NULL for transaction-id locks (a row-lock wait), so lock waiters are
/// matched by pid to the sessions counted rather than by database oid.
const ACTIVITY_SQL: &str = "\
WITH sessions AS (
    SELECT pid, state, wait_event_type
    FROM pg_stat_activity
    WHERE datname = $1 AND backend_type = 'client backend' AND pid <> pg_backend_pid()
)
SELECT coalesce(state, 'unknown') AS state,
       CASE WHEN state = 'active' THEN coalesce(wait_event_type, 'CPU') END AS wait_event_type,
       count(*) AS sessions,
       (SELECT count(*) FROM pg_locks WHERE NOT granted AND pid IN (SELECT pid FROM sessions)) AS lock_waiters
FROM sessions
GROUP BY 1, 2";

/// Counters of `pg_stat_database`, in [`DatabaseDelta`] field order.
const DATABASE_SQL: &str = "\
SELECT xact_commit, xact_rollback, deadlocks, conflicts, blks_hit, blks_read, temp_bytes,
       tup_returned, tup_fetched, tup_inserted, tup_updated, tup_deleted
FROM pg_stat_database
WHERE datname = $1";

/// Statement counters of the cell database (PostgreSQL 13 and later).
const STATEMENTS_SQL: &str = "\
SELECT queryid, query, calls, total_exec_time, rows, shared_blks_hit, shared_blks_read
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = $1)";

/// The same before PostgreSQL 13, where the column was `total_time`.
const STATEMENTS_SQL_BEFORE_13: &str = "\
SELECT queryid, query, calls, total_time, rows, shared_blks_hit, shared_blks_read
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = $1)";

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
    /// flush these counters lazily (PostgreSQL 15+: at most about once a
    /// second while busy, and at exit), so work of the last second of the
    /// window may be missing; all zero when a snapshot failed (then
    /// `sampling_errors` says so).
    pub database: DatabaseDelta,
    /// Statements of the database by execution time spent in the window,
    /// longest first, at most [`SamplerSettings::top_statements`]; empty when
    /// `pg_stat_statements` is unavailable (then `sampling_errors` says why).
    pub top_statements: Vec<StatementStats>,
    /// Redis counters over the window, when Redis was sampled and both
    /// snapshots succeeded.
    pub redis: Option<RedisDelta>,
    /// Failed samples and snapshots, each as `"at <t> ms: <what>"` (time
    /// since start), at most [`MAX_SAMPLING_ERRORS`] plus one line counting
    /// the rest.
    pub sampling_errors: Vec<String>,
}

/// What the database's client sessions were doing at one moment.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ActivitySample {
    /// Milliseconds since the sampler started (the starting snapshots).
    pub t_ms: u64,
    /// Client backends connected to the database, the sampler's own excluded.
    pub connections: u32,
    /// Those backends by `pg_stat_activity.state` ("active", "idle",
    /// "idle in transaction", ...; "unknown" when the sampler's user may not
    /// see a session's state: grant it `pg_read_all_stats`).
    pub by_state: BTreeMap<String, u32>,
    /// Active backends by `wait_event_type` ("Lock", "LWLock", "IO",
    /// "Timeout", ...), or "CPU" when not waiting.
    pub by_wait_event_type: BTreeMap<String, u32>,
    /// Ungranted `pg_locks` entries of those backends: how many wait for a
    /// lock (row-lock waits included).
    pub lock_waiters: u32,
}

/// End minus start of the database's `pg_stat_database` counters (counts;
/// `temp_bytes` in bytes, `blks_*` in blocks). Negative only when statistics
/// were reset during the window (then `sampling_errors` says so).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DatabaseDelta {
    /// Transactions committed.
    pub xact_commit: i64,
    /// Transactions rolled back.
    pub xact_rollback: i64,
    /// Deadlocks detected.
    pub deadlocks: i64,
    /// Queries canceled by recovery conflicts (standbys only).
    pub conflicts: i64,
    /// Blocks found in shared buffers.
    pub blks_hit: i64,
    /// Blocks read from the OS (page cache or disk).
    pub blks_read: i64,
    /// Bytes written to temporary files.
    pub temp_bytes: i64,
    /// Rows returned by sequential scans (live rows scanned).
    pub tup_returned: i64,
    /// Rows fetched by index scans.
    pub tup_fetched: i64,
    /// Rows inserted.
    pub tup_inserted: i64,
    /// Rows updated.
    pub tup_updated: i64,
    /// Rows deleted.
    pub tup_deleted: i64,
}

/// One statement's `pg_stat_statements` counters over the window (summed over
/// users for the same `queryid`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatementStats {
    /// Normalized statement text, as `pg_stat_statements` shows it.
    pub query: String,
    /// Executions in the window.
    pub calls: i64,
    /// Execution time in the window, milliseconds.
    pub total_exec_ms: f64,
    /// `total_exec_ms / calls`, milliseconds.
    pub mean_exec_ms: f64,
    /// Rows returned or affected in the window.
    pub rows: i64,
    /// Shared buffer hits in the window, blocks.
    pub shared_blks_hit: i64,
    /// Shared blocks read in the window, blocks.
    pub shared_blks_read: i64,
}

/// Redis counters over the window.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RedisDelta {
    /// Key lookups that found the key (`keyspace_hits`).
    pub keyspace_hits: u64,
    /// Key lookups that did not (`keyspace_misses`).
    pub keyspace_misses: u64,
    /// Commands processed (`total_commands_processed`), the sampler's own
    /// `INFO` commands included.
    pub commands_processed: u64,
    /// Most `connected_clients` seen at start, at any sample or at stop, the
    /// sampler's own connection excluded.
    pub max_connected_clients: u64,
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
            move |reason: String| SamplerError::Query { step, database, reason }
        };
        let (activity_statement, database_statement) = tokio::try_join!(
            async {
                timed(client.prepare(ACTIVITY_SQL))
                    .await
                    .map_err(query_error("prepare the pg_stat_activity query"))
            },
            async {
                timed(client.prepare(DATABASE_SQL))
                    .await
                    .map_err(query_error("prepare the pg_stat_database query"))
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
            timed(read_database(&client, &database_statement, &database)),
            async {
                match &statements_statement {
                    Some(statement) => Some(timed_pg(read_statements(&client, statement, &database)).await),
                    None => None,
                }
            },
            async {
                match &mut redis_connection {
                    Some(connection) => Some(timed(read_redis_counters(connection)).await),
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
    /// it here.
    pub async fn stop(self) -> ServerSamples {
        let _ = self.stop_sender.send(true);
        let mut errors = self.start_errors;
        let (samples, mut max_connected_clients) = match self.task.await {
            Ok(output) => {
                errors.append(output.errors);
                (output.samples, output.max_connected_clients)
            }
            Err(e) => {
                errors.push(elapsed_ms(self.started), format!("the sampling task failed: {e}"));
                (Vec::new(), 0)
            }
        };
        let t_ms = elapsed_ms(self.started);
        let database = &self.settings.database;
        let mut redis_side = self.redis;
        let (end_database, end_statements, end_redis) = tokio::join!(
            timed(read_database(&self.client, &self.database_statement, database)),
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
                    Some(side) => Some(timed(read_redis_counters(&mut side.connection)).await),
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
                errors.push(
                    t_ms,
                    format!("reading pg_stat_statements at stop failed: {}", describe_failure(&e)),
                );
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

/// The sampler's own connection to `database` on the server of `url`.
async fn connect_postgres(url: &str, database: &str) -> Result<Client, SamplerError> {
    let connect_error = |reason: String| SamplerError::Connect {
        url: mask_url(&database_url(url, database)),
        reason,
    };
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| connect_error(format!("not a valid URL ({e})")))?;
    config
        .dbname(database)
        .application_name(APPLICATION_NAME)
        .connect_timeout(CONNECT_TIMEOUT);
    let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, config.connect(tokio_postgres::NoTls))
        .await
        .map_err(|_| {
            connect_error(format!(
                "no answer within {} s: check host and port",
                CONNECT_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| connect_error(explain_pg_connect_error(&e)))?;
    // Ends when the client is dropped (or the server goes away, which the
    // next query reports).
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Prepares the `pg_stat_statements` snapshot query, with the pre-13 column
/// name when the server is older.
async fn prepare_statements_query(client: &Client) -> Result<Statement, PgFailure> {
    match timed_pg(client.prepare(STATEMENTS_SQL)).await {
        Err(PgFailure::Pg(e)) if sqlstate(&e) == Some("42703") => {
            timed_pg(client.prepare(STATEMENTS_SQL_BEFORE_13)).await
        }
        other => other,
    }
}

/// The sampling error for an unusable `pg_stat_statements`.
fn statements_unavailable(database: &str, failure: &PgFailure) -> String {
    let code = match failure {
        PgFailure::Pg(e) => sqlstate(e),
        PgFailure::Timeout => None,
    };
    match code {
        Some("42P01" | "42883") => format!(
            "pg_stat_statements is not installed in {database}: CREATE EXTENSION pg_stat_statements (needs shared_preload_libraries)"
        ),
        Some("55000") => format!(
            "pg_stat_statements is installed in {database} but not loaded: add it to shared_preload_libraries and restart the server"
        ),
        _ => format!(
            "pg_stat_statements of {database} cannot be read: {}",
            describe_failure(failure)
        ),
    }
}

async fn connect_redis(url: &str) -> Result<MultiplexedConnection, String> {
    let client = redis::Client::open(url).map_err(|e| format!("not a valid URL ({e})"))?;
    tokio::time::timeout(CONNECT_TIMEOUT, client.get_multiplexed_async_connection())
        .await
        .map_err(|_| format!("no answer within {} s: check host and port", CONNECT_TIMEOUT.as_secs()))?
        .map_err(|e| describe_redis_error(&e))
}

fn describe_redis_error(error: &redis::RedisError) -> String {
    let text = error.to_string();
    if error.kind() == redis::ErrorKind::AuthenticationFailed || text.contains("WRONGPASS") || text.contains("NOAUTH") {
        "password authentication failed: check the password in the URL".to_string()
    } else if text.contains("Connection refused") {
        "connection refused: is the server running and listening on that host and port?".to_string()
    } else {
        text
    }
}

/// A failed query: the server's error, or no answer within [`QUERY_TIMEOUT`].
#[derive(Debug)]
enum PgFailure {
    Pg(tokio_postgres::Error),
    Timeout,
}

async fn timed_pg<T>(query: impl Future<Output = Result<T, tokio_postgres::Error>>) -> Result<T, PgFailure> {
    match tokio::time::timeout(QUERY_TIMEOUT, query).await {
        Ok(result) => result.map_err(PgFailure::Pg),
        Err(_) => Err(PgFailure::Timeout),
    }
}

/// Runs `query` with [`QUERY_TIMEOUT`], turning any failure into its description.
async fn timed<T, E: Describe>(query: impl Future<Output = Result<T, E>>) -> Result<T, String> {
    match tokio::time::timeout(QUERY_TIMEOUT, query).await {
        Ok(result) => result.map_err(|e| e.describe()),
        Err(_) => Err(format!("no answer within {} s", QUERY_TIMEOUT.as_secs())),
    }
}

/// Errors that say what happened and what to check, without secrets.
trait Describe {
    fn describe(&self) -> String;
}

impl Describe for tokio_postgres::Error {
    fn describe(&self) -> String {
        describe_pg_error(self)
    }
}

impl Describe for String {
    fn describe(&self) -> String {
        self.clone()
    }
}

fn describe_failure(failure: &PgFailure) -> String {
    match failure {
        PgFailure::Pg(e) => describe_pg_error(e),
        PgFailure::Timeout => format!("no answer within {} s", QUERY_TIMEOUT.as_secs()),
    }
}

fn sqlstate(error: &tokio_postgres::Error) -> Option<&str> {
    error.code().map(|code| code.code())
}

fn describe_pg_error(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        let hint = match db.code().code() {
            "42501" => ": grant the sampler's user pg_read_all_stats (or pg_monitor)",
            _ => "",
        };
        return format!("{} (SQLSTATE {}){hint}", db.message(), db.code().code());
    }
    if error.is_closed() {
        return "the connection to PostgreSQL is closed: did the server stop?".to_string();
    }
    match std::error::Error::source(error) {
        Some(source) => format!("{error}: {source}"),
        None => error.to_string(),
    }
}

/// Reads `pg_stat_database` counters in [`DatabaseDelta`] field order.
async fn read_database(client: &Client, statement: &Statement, database: &str) -> Result<[i64; 12], String> {
    let row = client
        .query_opt(statement, &[&database])
        .await
        .map_err(|e| describe_pg_error(&e))?
        .ok_or_else(|| format!("pg_stat_database has no row for {database}"))?;
    let mut counters = [0i64; 12];
    for (index, counter) in counters.iter_mut().enumerate() {
        *counter = column::<Option<i64>>(&row, index)?.unwrap_or(0);
    }
    Ok(counters)
}

fn column<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, index: usize) -> Result<T, String> {
    row.try_get(index)
        .map_err(|e| format!("unexpected column {index}: {e}"))
}

fn database_delta(start: &[i64; 12], end: &[i64; 12]) -> DatabaseDelta {
    let d = |i: usize| end[i].saturating_sub(start[i]);
    DatabaseDelta {
        xact_commit: d(0),
        xact_rollback: d(1),
        deadlocks: d(2),
        conflicts: d(3),
        blks_hit: d(4),
        blks_read: d(5),
        temp_bytes: d(6),
        tup_returned: d(7),
        tup_fetched: d(8),
        tup_inserted: d(9),
        tup_updated: d(10),
        tup_deleted: d(11),
    }
}

fn database_counters(delta: &DatabaseDelta) -> [i64; 12] {
    [
        delta.xact_commit,
        delta.xact_rollback,
        delta.deadlocks,
        delta.conflicts,
        delta.blks_hit,
        delta.blks_read,
        delta.temp_bytes,
        delta.tup_returned,
        delta.tup_fetched,
        delta.tup_inserted,
        delta.tup_updated,
        delta.tup_deleted,
    ]
}

/// One `queryid`'s cumulative `pg_stat_statements` counters.
#[derive(Debug, Clone, Default, PartialEq)]
struct StatementCounters {
    query: String,
    calls: i64,
    total_exec_ms: f64,
    rows: i64,
    shared_blks_hit: i64,
    shared_blks_read: i64,
}

impl StatementCounters {
    fn add(&mut self, other: &StatementCounters) {
        self.calls = self.calls.saturating_add(other.calls);
        self.total_exec_ms += other.total_exec_ms;
        self.rows = self.rows.saturating_add(other.rows);
        self.shared_blks_hit = self.shared_blks_hit.saturating_add(other.shared_blks_hit);
        self.shared_blks_read = self.shared_blks_read.saturating_add(other.shared_blks_read);
    }
}

/// Snapshot of the database's statements by `queryid` (rows of several users
/// summed), the sampler's own and other monitoring queries left out.
async fn read_statements(
    client: &Client,
    statement: &Statement,
    database: &str,
) -> Result<HashMap<i64, StatementCounters>, tokio_postgres::Error> {
    let rows = client.query(statement, &[&database]).await?;
    let mut snapshot: HashMap<i64, StatementCounters> = HashMap::new();
    for row in &rows {
        let read = || -> Result<Option<(i64, StatementCounters)>, tokio_postgres::Error> {
            let Some(queryid) = row.try_get::<_, Option<i64>>(0)? else {
                return Ok(None);
            };
            let query = row.try_get::<_, Option<String>>(1)?.unwrap_or_default();
            if is_monitoring_query(&query) {
                return Ok(None);
            }
            Ok(Some((
                queryid,
                StatementCounters {
                    query,
                    calls: row.try_get::<_, Option<i64>>(2)?.unwrap_or(0),
                    total_exec_ms: row.try_get::<_, Option<f64>>(3)?.unwrap_or(0.0),
                    rows: row.try_get::<_, Option<i64>>(4)?.unwrap_or(0),
                    shared_blks_hit: row.try_get::<_, Option<i64>>(5)?.unwrap_or(0),
                    shared_blks_read: row.try_get::<_, Option<i64>>(6)?.unwrap_or(0),
                },
            )))
        };
        if let Some((queryid, counters)) = read()? {
            match snapshot.get_mut(&queryid) {
                Some(existing) => existing.add(&counters),
                None => {
                    snapshot.insert(queryid, counters);
                }
            }
        }
    }
    Ok(snapshot)
}

fn is_monitoring_query(query: &str) -> bool {
    let lower = query.to_ascii_lowercase();
    OWN_QUERY_MARKERS.iter().any(|marker| lower.contains(marker))
}

/// Per-`queryid` end minus start, statements without calls in the window
/// dropped, longest total execution time first, at most `top`. A `queryid`
/// new at the end counts from zero; one whose calls went down was evicted and
/// re-added during the window and counts from zero too.
fn statement_deltas(
    start: &HashMap<i64, StatementCounters>,
    end: &HashMap<i64, StatementCounters>,
    top: usize,
) -> Vec<StatementStats> {
    let zero = StatementCounters::default();
    let mut deltas: Vec<StatementStats> = end
        .iter()
        .filter_map(|(queryid, end)| {
            let base = start
                .get(queryid)
                .filter(|start| start.calls <= end.calls)
                .unwrap_or(&zero);
            let calls = end.calls - base.calls;
            if calls <= 0 {
                return None;
            }
            let total_exec_ms = (end.total_exec_ms - base.total_exec_ms).max(0.0);
            Some(StatementStats {
                query: end.query.clone(),
                calls,
                total_exec_ms,
                mean_exec_ms: total_exec_ms / calls as f64,
                rows: end.rows.saturating_sub(base.rows),
                shared_blks_hit: end.shared_blks_hit.saturating_sub(base.shared_blks_hit),
                shared_blks_read: end.shared_blks_read.saturating_sub(base.shared_blks_read),
            })
        })
        .collect();
    deltas.sort_by(|a, b| {
        b.total_exec_ms
            .total_cmp(&a.total_exec_ms)
            .then(b.calls.cmp(&a.calls))
            .then_with(|| a.query.cmp(&b.query))
    });
    deltas.truncate(top);
    deltas
}

/// Redis `INFO` counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct RedisCounters {
    keyspace_hits: u64,
    keyspace_misses: u64,
    commands_processed: u64,
    /// `connected_clients` minus the sampler's own connection.
    connected_clients: u64,
}

/// The sampler's Redis connection and the counters at start.
struct RedisSide {
    connection: MultiplexedConnection,
    start: RedisCounters,
}

/// `INFO stats` and `INFO clients` in one round trip (one section per
/// command: Redis before 7 takes only one).
async fn read_redis_counters(connection: &mut MultiplexedConnection) -> Result<RedisCounters, String> {
    let (stats, clients): (String, String) = redis::pipe()
        .cmd("INFO")
        .arg("stats")
        .cmd("INFO")
        .arg("clients")
        .query_async(connection)
        .await
        .map_err(|e| describe_redis_error(&e))?;
    Ok(RedisCounters {
        keyspace_hits: info_field(&stats, "keyspace_hits")?,
        keyspace_misses: info_field(&stats, "keyspace_misses")?,
        commands_processed: info_field(&stats, "total_commands_processed")?,
        connected_clients: info_field(&clients, "connected_clients")?.saturating_sub(1),
    })
}

/// `connected_clients` minus the sampler's own connection.
async fn read_redis_clients(connection: &mut MultiplexedConnection) -> Result<u64, String> {
    let clients: String = redis::cmd("INFO")
        .arg("clients")
        .query_async(connection)
        .await
        .map_err(|e| describe_redis_error(&e))?;
    Ok(info_field(&clients, "connected_clients")?.saturating_sub(1))
}

/// The integer value of `key` in Redis `INFO` output (`key:value` lines).
fn info_field(info: &str, key: &str) -> Result<u64, String> {
    let value = info
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .ok_or_else(|| format!("INFO has no {key}"))?;
    value
        .trim()
        .parse()
        .map_err(|_| format!("INFO {key} is not a number: {:?}", value.trim()))
}

/// End minus start; a counter that went down (restart, `CONFIG RESETSTAT`)
/// counts as zero.
fn redis_delta(start: &RedisCounters, end: &RedisCounters, max_connected_clients: u64) -> RedisDelta {
    RedisDelta {
        keyspace_hits: end.keyspace_hits.saturating_sub(start.keyspace_hits),
        keyspace_misses: end.keyspace_misses.saturating_sub(start.keyspace_misses),
        commands_processed: end.commands_processed.saturating_sub(start.commands_processed),
        max_connected_clients,
    }
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
}

/// State of the sampling task.
struct Sampling {
    client: Arc<Client>,
    activity: Statement,
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
        }
    }

    /// One activity query, and `INFO clients` alongside when Redis is sampled.
    async fn sample_once(&mut self) {
        let t_ms = elapsed_ms(self.started);
        let client = &self.client;
        let activity = &self.activity;
        let database = self.database.as_str();
        let redis = self.redis.as_mut();
        let (activity_result, redis_result) = tokio::join!(
            timed(async {
                let rows = client
                    .query(activity, &[&database])
                    .await
                    .map_err(|e| describe_pg_error(&e))?;
                activity_sample(t_ms, &rows)
            }),
            async {
                match redis {
                    Some(connection) => Some(timed(read_redis_clients(connection)).await),
                    None => None,
                }
            },
        );
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

/// Folds the grouped rows of [`ACTIVITY_SQL`] into one sample.
fn activity_sample(t_ms: u64, rows: &[Row]) -> Result<ActivitySample, String> {
    let mut sample = ActivitySample {
        t_ms,
        ..ActivitySample::default()
    };
    for row in rows {
        let state: String = column(row, 0)?;
        let wait_event_type: Option<String> = column(row, 1)?;
        let sessions = saturating_u32(column(row, 2)?);
        sample.lock_waiters = saturating_u32(column(row, 3)?);
        sample.connections = sample.connections.saturating_add(sessions);
        *sample.by_state.entry(state).or_insert(0) += sessions;
        if let Some(wait_event_type) = wait_event_type {
            *sample.by_wait_event_type.entry(wait_event_type).or_insert(0) += sessions;
        }
    }
    Ok(sample)
}

fn saturating_u32(value: i64) -> u32 {
    u32::try_from(value.max(0)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(query: &str, calls: i64, total_exec_ms: f64, rows: i64) -> StatementCounters {
        StatementCounters {
            query: query.to_string(),
            calls,
            total_exec_ms,
            rows,
            shared_blks_hit: calls * 2,
            shared_blks_read: calls,
        }
    }

    #[test]
    fn statement_deltas_subtract_drop_idle_and_rank_by_time() {
        let start = HashMap::from([
            (1, counters("SELECT a", 10, 100.0, 10)),
            (2, counters("SELECT b", 5, 50.0, 5)),
            (3, counters("SELECT idle", 7, 70.0, 7)),
            (4, counters("SELECT evicted", 100, 1000.0, 100)),
        ]);
        let end = HashMap::from([
            (1, counters("SELECT a", 30, 120.0, 30)),
            (2, counters("SELECT b", 6, 150.0, 6)),
            (3, counters("SELECT idle", 7, 70.0, 7)),
            (4, counters("SELECT evicted", 3, 9.0, 3)),
            (5, counters("SELECT new", 4, 40.0, 8)),
        ]);
        let top = statement_deltas(&start, &end, 10);
        let names: Vec<&str> = top.iter().map(|s| s.query.as_str()).collect();
        assert_eq!(names, ["SELECT b", "SELECT new", "SELECT a", "SELECT evicted"]);
        let a = &top[2];
        assert_eq!(
            (a.calls, a.rows, a.shared_blks_hit, a.shared_blks_read),
            (20, 20, 40, 20)
        );
        assert!((a.total_exec_ms - 20.0).abs() < 1e-9);
        assert!((a.mean_exec_ms - 1.0).abs() < 1e-9);
        let new = &top[1];
        assert_eq!((new.calls, new.rows), (4, 8));
        assert!((new.mean_exec_ms - 10.0).abs() < 1e-9);
        assert_eq!(top[3].calls, 3, "evicted and re-added counts from zero");

        let top2 = statement_deltas(&start, &end, 2);
        assert_eq!(top2, top[..2].to_vec());
        assert!(statement_deltas(&start, &end, 0).is_empty());
    }

    #[test]
    fn monitoring_queries_are_recognized() {
        assert!(is_monitoring_query(ACTIVITY_SQL));
        assert!(is_monitoring_query(DATABASE_SQL));
        assert!(is_monitoring_query(STATEMENTS_SQL));
        assert!(is_monitoring_query("select * from PG_LOCKS"));
        assert!(!is_monitoring_query("INSERT INTO t (v) VALUES ($1)"));
    }

    #[test]
    fn info_fields_are_exact_keys() {
        let info = "# Stats\r\nkeyspace_hits_extra:9\r\nkeyspace_hits:12\r\nkeyspace_misses:3\r\nbad:x\r\n";
        assert_eq!(info_field(info, "keyspace_hits"), Ok(12));
        assert_eq!(info_field(info, "keyspace_misses"), Ok(3));
        assert!(info_field(info, "total_commands_processed")
            .unwrap_err()
            .contains("no total_commands_processed"));
        assert!(info_field(info, "bad").unwrap_err().contains("not a number"));
    }

    #[test]
    fn redis_delta_never_underflows() {
        let start = RedisCounters {
            keyspace_hits: 10,
            keyspace_misses: 5,
            commands_processed: 100,
            connected_clients: 2,
        };
        let end = RedisCounters {
            keyspace_hits: 13,
            keyspace_misses: 1,
            commands_processed: 120,
            connected_clients: 4,
        };
        assert_eq!(
            redis_delta(&start, &end, 7),
            RedisDelta {
                keyspace_hits: 3,
                keyspace_misses: 0,
                commands_processed: 20,
                max_connected_clients: 7,
            }
        );
    }

    #[test]
    fn database_delta_is_field_by_field() {
        let start: [i64; 12] = std::array::from_fn(|i| i as i64);
        let end: [i64; 12] = std::array::from_fn(|i| (i as i64) * 3 + 1);
        let delta = database_delta(&start, &end);
        assert_eq!(database_counters(&delta), std::array::from_fn(|i| (i as i64) * 2 + 1));
        assert_eq!(delta.xact_commit, 1);
        assert_eq!(delta.tup_deleted, 23);
    }

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
            sampling_errors: vec!["at 0 ms: x".into()],
        };
        let json = serde_json::to_string(&samples).expect("serializes");
        let back: ServerSamples = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(back, samples);
    }
}
