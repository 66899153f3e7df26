//! PostgreSQL as the sampler sees it: sessions by state and wait event
//! (`pg_stat_activity`, `pg_locks`), the database's counters
//! (`pg_stat_database`) and its statements (`pg_stat_statements`), read
//! over the sampler's own connection and turned into end-minus-start deltas.
//!
//! This file owns the SQL the sampler sends and the reading of its rows; it
//! must not decide when to sample (the loop in `mod.rs` does), and must
//! never change server state: no `pg_stat_statements_reset()`, no
//! `pg_stat_reset()`, because the server may be the user's own.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;

use serde::{Deserialize, Serialize};
use tokio_postgres::{Client, Row, Statement};

use super::SamplerError;
#[cfg(doc)]
use super::ServerSamples;
use super::{APPLICATION_NAME, CONNECT_TIMEOUT, QUERY_TIMEOUT};
use crate::provision::{database_url, explain_pg_connect_error, mask_url};

/// Statements whose text mentions one of these are the sampler's own (or
/// another monitor's) and are left out of [`ServerSamples::top_statements`].
const OWN_QUERY_MARKERS: &[&str] = &["pg_stat_activity", "pg_stat_statements", "pg_locks", "pg_stat_database"];

/// One activity sample: sessions of the cell database by state and by wait
/// event type, and how many of them wait for a lock. `pg_locks.database` is
/// NULL for transaction-id locks (a row-lock wait), so lock waiters are
/// matched by pid to the sessions counted rather than by database oid.
pub(super) const ACTIVITY_SQL: &str = "\
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

/// The pools' sessions of a database by how they are encrypted, as the
/// server reports in `pg_stat_ssl`.
pub(super) const TLS_SQL: &str = "\
SELECT s.ssl, s.version, s.cipher, count(*) AS sessions
FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
WHERE a.datname = $1 AND a.application_name = $2 AND a.pid <> pg_backend_pid()
GROUP BY 1, 2, 3";

/// Counters of `pg_stat_database`, in [`DatabaseDelta`] field order.
pub(super) const DATABASE_SQL: &str = "\
SELECT xact_commit, xact_rollback, deadlocks, conflicts, blks_hit, blks_read, temp_bytes,
       tup_returned, tup_fetched, tup_inserted, tup_updated, tup_deleted
FROM pg_stat_database
WHERE datname = $1";

/// Sessions of a database with a given `application_name` (the sampler's
/// own excluded): the cell's, waited for until they exit.
pub(super) const SESSIONS_SQL: &str = "\
SELECT count(*)
FROM pg_stat_activity
WHERE datname = $1 AND application_name = $2 AND pid <> pg_backend_pid()";

/// Statement counters of the cell database (PostgreSQL 13 and later).
pub(super) const STATEMENTS_SQL: &str = "\
SELECT queryid, query, calls, total_exec_time, rows, shared_blks_hit, shared_blks_read
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = $1)";

/// The same before PostgreSQL 13, where the column was `total_time`.
pub(super) const STATEMENTS_SQL_BEFORE_13: &str = "\
SELECT queryid, query, calls, total_time, rows, shared_blks_hit, shared_blks_read
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = $1)";

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

/// Sessions of the application pools seen with one encryption, as
/// `pg_stat_ssl` reports them: the most at once over the samples.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct TlsSessions {
    /// Whether they use TLS (`pg_stat_ssl.ssl`).
    pub ssl: bool,
    /// TLS version, e.g. "TLSv1.3"; `None` for plain sessions.
    pub version: Option<String>,
    /// Cipher, e.g. "TLS_AES_256_GCM_SHA384"; `None` for plain sessions.
    pub cipher: Option<String>,
    /// Most such sessions seen in one sample.
    pub sessions: u32,
}

/// One reading of [`TLS_SQL`] (prepared as `statement`), folded into
/// `seen` as the most sessions per encryption.
pub(super) async fn read_tls(
    client: &Client,
    statement: &Statement,
    database: &str,
    application: &str,
    seen: &mut BTreeMap<(bool, Option<String>, Option<String>), u32>,
) -> Result<(), PgFailure> {
    let rows = client.query(statement, &[&database, &application]).await?;
    for row in &rows {
        let key = (column(row, 0)?, column(row, 1)?, column(row, 2)?);
        let sessions = saturating_u32(column(row, 3)?);
        let most = seen.entry(key).or_insert(0);
        *most = (*most).max(sessions);
    }
    Ok(())
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

/// The sampler's own connection to `database` on the server of `url`.
pub(super) async fn connect_postgres(url: &str, database: &str) -> Result<Client, SamplerError> {
    let connect_error = |reason: String| SamplerError::Connect {
        url: mask_url(&database_url(url, database)),
        reason,
    };
    let mut target = crate::provision::tls::PgTarget::parse(url).map_err(|e| match e {
        crate::provision::tls::TargetError::Url(e) => connect_error(format!("not a valid URL ({e})")),
        crate::provision::tls::TargetError::Tls(e) => connect_error(e.to_string()),
    })?;
    target
        .config
        .dbname(database)
        .application_name(APPLICATION_NAME)
        .connect_timeout(CONNECT_TIMEOUT);
    let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, target.connect())
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
pub(super) async fn prepare_statements_query(client: &Client) -> Result<Statement, PgFailure> {
    match timed_pg(client.prepare(STATEMENTS_SQL)).await {
        Err(failure) if failure.sqlstate() == Some("42703") => timed_pg(client.prepare(STATEMENTS_SQL_BEFORE_13)).await,
        other => other,
    }
}

/// The sampling error for an unusable `pg_stat_statements`.
pub(super) fn statements_unavailable(database: &str, failure: &PgFailure) -> String {
    match failure.sqlstate() {
        Some("42P01" | "42883") => format!(
            "pg_stat_statements is not installed in {database}: CREATE EXTENSION pg_stat_statements (needs shared_preload_libraries)"
        ),
        Some("55000") => format!(
            "pg_stat_statements is installed in {database} but not loaded: add it to shared_preload_libraries and restart the server"
        ),
        _ => format!("pg_stat_statements of {database} cannot be read: {failure}"),
    }
}

/// Why one PostgreSQL query batch (a sample or a snapshot) failed. Its
/// `Display` is what [`ServerSamples::sampling_errors`] records: what
/// happened and what to check, never a password.
#[derive(Debug, thiserror::Error)]
pub(super) enum PgFailure {
    /// The server answered with an error, or the connection failed.
    #[error("{}", describe_pg_error(.0))]
    Pg(#[from] tokio_postgres::Error),
    /// No answer within [`QUERY_TIMEOUT`].
    #[error("no answer within {} s", QUERY_TIMEOUT.as_secs())]
    Timeout,
    /// `pg_stat_database` has no row for the sampled database.
    #[error("pg_stat_database has no row for {database}")]
    NoDatabaseRow {
        /// The sampled database.
        database: String,
    },
    /// A column did not have the type the sampler reads it as.
    #[error("unexpected column {index}: {error}")]
    Column {
        /// The column's position, from 0.
        index: usize,
        /// tokio-postgres's conversion error.
        error: tokio_postgres::Error,
    },
}

impl PgFailure {
    /// The server's SQLSTATE, when the server answered with an error.
    fn sqlstate(&self) -> Option<&str> {
        match self {
            PgFailure::Pg(error) => sqlstate(error),
            _ => None,
        }
    }
}

/// Runs `query` with [`QUERY_TIMEOUT`].
pub(super) async fn timed_pg<T, E: Into<PgFailure>>(query: impl Future<Output = Result<T, E>>) -> Result<T, PgFailure> {
    match tokio::time::timeout(QUERY_TIMEOUT, query).await {
        Ok(result) => result.map_err(Into::into),
        Err(_) => Err(PgFailure::Timeout),
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
pub(super) async fn read_database(
    client: &Client,
    statement: &Statement,
    database: &str,
) -> Result<[i64; 12], PgFailure> {
    let row = client
        .query_opt(statement, &[&database])
        .await?
        .ok_or_else(|| PgFailure::NoDatabaseRow {
            database: database.to_string(),
        })?;
    let mut counters = [0i64; 12];
    for (index, counter) in counters.iter_mut().enumerate() {
        *counter = column::<Option<i64>>(&row, index)?.unwrap_or(0);
    }
    Ok(counters)
}

fn column<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, index: usize) -> Result<T, PgFailure> {
    row.try_get(index).map_err(|error| PgFailure::Column { index, error })
}

pub(super) fn database_delta(start: &[i64; 12], end: &[i64; 12]) -> DatabaseDelta {
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

pub(super) fn database_counters(delta: &DatabaseDelta) -> [i64; 12] {
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
pub(super) struct StatementCounters {
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
pub(super) async fn read_statements(
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
pub(super) fn statement_deltas(
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

/// One activity sample at `t_ms`: [`ACTIVITY_SQL`] prepared as `statement`.
pub(super) async fn read_activity(
    client: &Client,
    statement: &Statement,
    database: &str,
    t_ms: u64,
) -> Result<ActivitySample, PgFailure> {
    let rows = client.query(statement, &[&database]).await?;
    activity_sample(t_ms, &rows)
}

/// Folds the grouped rows of [`ACTIVITY_SQL`] into one sample.
fn activity_sample(t_ms: u64, rows: &[Row]) -> Result<ActivitySample, PgFailure> {
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
    fn failures_say_what_happened() {
        assert_eq!(PgFailure::Timeout.to_string(), "no answer within 5 s");
        let missing = PgFailure::NoDatabaseRow {
            database: "cell_1".into(),
        };
        assert_eq!(missing.to_string(), "pg_stat_database has no row for cell_1");
        assert_eq!(missing.sqlstate(), None);
        assert_eq!(
            statements_unavailable("cell_1", &PgFailure::Timeout),
            "pg_stat_statements of cell_1 cannot be read: no answer within 5 s"
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
}
