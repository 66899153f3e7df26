//! Connection pools as an application has them, and one connection checked
//! out of any of them.
//!
//! Three kinds: `deadpool` (deadpool-postgres over tokio-postgres), `sqlx`
//! (PgPool), and `none` (a new connection per transaction: the anti-pattern,
//! kept to show its cost). Acquiring reports the time spent waiting for a
//! connection apart from the time spent opening one. A failure to get a
//! connection is classified ([`ErrorClass`]) and returned as data: refusals
//! such as 53300 are outcomes a run measures, never crashes. This module does
//! not choose what to run and does not record anything.

use std::cell::Cell;
use std::time::{Duration, Instant};

use deadpool::managed::{self, Metrics, RecycleResult};
use serde::{Deserialize, Serialize};
use tokio_postgres::types::ToSql;

use crate::client::ErrorClass;
use crate::provision::tls::{PgTarget, TargetError, TlsError};

/// `application_name` of the application pools' connections, so they can
/// be told apart from contend's own in `pg_stat_activity`.
pub const POOL_APPLICATION_NAME: &str = "contend";

/// Which pool an application instance uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolKind {
    /// deadpool-postgres: bounded, lazily grown, FIFO waiters.
    Deadpool,
    /// sqlx's PgPool.
    Sqlx,
    /// No pool: connect for every transaction.
    None,
}

impl std::fmt::Display for PoolKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PoolKind::Deadpool => "deadpool",
            PoolKind::Sqlx => "sqlx",
            PoolKind::None => "none",
        })
    }
}

/// How statements go to the server, as pgbench's `-M`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueryMode {
    /// Named statements, prepared once per connection and reused (what
    /// deadpool's statement cache, sqlx and most ORMs do).
    #[default]
    Prepared,
    /// The unnamed statement, parsed, bound and executed in one round
    /// trip: nothing outlives the statement.
    Extended,
    /// The simple query protocol, parameters written into the text as
    /// literals.
    Simple,
}

impl std::fmt::Display for QueryMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            QueryMode::Prepared => "prepared",
            QueryMode::Extended => "extended",
            QueryMode::Simple => "simple",
        })
    }
}

fn is_prepared(mode: &QueryMode) -> bool {
    *mode == QueryMode::Prepared
}

/// One application instance's pool settings. `PoolSettings::default()` is
/// what `contend run` uses without flags: deadpool, 10 connections, 5 s
/// acquire timeout, 10 s connect timeout, the server's statement_timeout.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct PoolSettings {
    /// Pool implementation. Default: [`PoolKind::Deadpool`] (`--pool`).
    pub kind: PoolKind,
    /// Most connections the pool opens (ignored for `none`). Default: 10
    /// (`--pool-size`).
    pub size: u32,
    /// Longest wait for a pooled connection before the attempt fails as a
    /// pool timeout. Default: 5 s (`--acquire-timeout`).
    pub acquire_timeout: Duration,
    /// Longest time to open one connection. Default: 10 s (no flag).
    pub connect_timeout: Duration,
    /// Server-side statement_timeout for every connection; `None` keeps the
    /// server's. Default: `None` (`--statement-timeout`).
    pub statement_timeout: Option<Duration>,
    /// How statements are sent. Default: [`QueryMode::Prepared`]
    /// (`--query-mode`, `-M`); left out of records when prepared, so
    /// records from before it read (and key) as they were.
    #[serde(default, skip_serializing_if = "is_prepared")]
    pub query_mode: QueryMode,
}

impl Default for PoolSettings {
    /// deadpool, 10 connections, 5 s acquire timeout, 10 s connect timeout,
    /// no statement_timeout of its own (the CLI's defaults).
    fn default() -> Self {
        PoolSettings {
            kind: PoolKind::Deadpool,
            size: 10,
            acquire_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            statement_timeout: None,
            query_mode: QueryMode::Prepared,
        }
    }
}

/// Why a pool could not be built. Building opens no connection, so only the
/// URL or the settings can be wrong; failing to get a connection later (a
/// timeout, 53300, a refused connect) is measured as an [`ErrorClass`],
/// never returned as this.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The URL is not a PostgreSQL URL tokio-postgres accepts (every pool
    /// kind parses it so).
    #[error("bad database URL: {0}")]
    Url(#[source] tokio_postgres::Error),
    /// The URL is one tokio-postgres accepts but sqlx does not (the `sqlx`
    /// pool only).
    #[error("bad database URL: {0}")]
    SqlxUrl(#[source] sqlx::Error),
    /// The URL's TLS settings cannot be used (a bad sslmode, a missing
    /// sslrootcert, …).
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// deadpool refused to build the pool.
    #[error("building the deadpool pool: {0}")]
    Deadpool(#[source] managed::BuildError),
}

/// A query parameter.
#[derive(Debug, Clone)]
pub enum Param {
    /// `int4`.
    Int(i32),
    /// `int8`.
    BigInt(i64),
    /// `text`.
    Text(String),
    /// A number bound as whatever type the server inferred for its
    /// placeholder (see [`UntypedNumber`]).
    Untyped(UntypedNumber),
}

/// A number sent the way pgbench sends script variables, untyped: encoded
/// as the type the server inferred for its placeholder (int2, int4, int8,
/// float4, float8, or text-like), so `:aid` fits an int4 column and an int8
/// one alike. Through sqlx, which declares parameter types itself, it binds
/// as int8 or float8.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UntypedNumber {
    /// An integer.
    Int(i64),
    /// A double.
    Double(f64),
}

impl ToSql for UntypedNumber {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut tokio_postgres::types::private::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use tokio_postgres::types::Type;
        let out_of_range = || format!("{self:?} is out of range for a {ty} parameter");
        match (*self, ty) {
            (UntypedNumber::Int(i), &Type::INT2) => i16::try_from(i).map_err(|_| out_of_range())?.to_sql(ty, out),
            (UntypedNumber::Int(i), &Type::INT4) => i32::try_from(i).map_err(|_| out_of_range())?.to_sql(ty, out),
            (UntypedNumber::Int(i), &Type::INT8) => i.to_sql(ty, out),
            (UntypedNumber::Int(i), &Type::FLOAT4) => (i as f32).to_sql(ty, out),
            (UntypedNumber::Int(i), &Type::FLOAT8) => (i as f64).to_sql(ty, out),
            (UntypedNumber::Double(d), &Type::FLOAT4) => (d as f32).to_sql(ty, out),
            (UntypedNumber::Double(d), &Type::FLOAT8) => d.to_sql(ty, out),
            (UntypedNumber::Double(d), &(Type::INT2 | Type::INT4 | Type::INT8)) => {
                Err(format!("double {d} cannot be bound to a {ty} parameter: use int(...) in the \\set").into())
            }
            (UntypedNumber::Int(i), _) => i.to_string().to_sql(ty, out),
            (UntypedNumber::Double(d), _) => d.to_string().to_sql(ty, out),
        }
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        use tokio_postgres::types::Type;
        matches!(*ty, Type::INT2 | Type::INT4 | Type::INT8 | Type::FLOAT4 | Type::FLOAT8)
            || <String as ToSql>::accepts(ty)
    }

    tokio_postgres::types::to_sql_checked!();
}

/// How long getting a connection took, microseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct AcquireTiming {
    /// Waiting for the pool, connect time excluded.
    pub pool_wait_us: u64,
    /// Opening a connection (the pool grew, or no pool).
    pub connect_us: u64,
}

tokio::task_local! {
    /// Protocol round trips of the current attempt (see [`count_round_trips`]).
    static ROUND_TRIPS: Cell<u32>;
}

/// Runs `attempt`, counting the protocol round trips its sessions make:
/// one per simple query (BEGIN, COMMIT, a batch) and per execution of a
/// prepared statement, one more per statement prepared (deadpool's cache
/// missed; every statement of a `--pool none` connection, which tokio-postgres
/// prepares unnamed first). sqlx prepares inside its own cache, once per
/// connection and statement, unseen: counted as one. Connecting is not
/// counted (the pool's connect time is apart).
pub async fn count_round_trips<F: std::future::Future>(attempt: F) -> (F::Output, u32) {
    ROUND_TRIPS
        .scope(Cell::new(0), async {
            let output = attempt.await;
            (output, ROUND_TRIPS.with(Cell::get))
        })
        .await
}

/// Adds `n` to the current attempt's round trips, if one is being counted.
fn round_trips(n: u32) {
    let _ = ROUND_TRIPS.try_with(|count| count.set(count.get() + n));
}

tokio::task_local! {
    /// Connect time of the current acquire: deadpool opens connections
    /// inside `get()` on the caller's task, so the manager can report it here.
    static CONNECT_US: Cell<u64>;
}

/// How deadpool-postgres opens a connection: through [`PgTarget::connect`],
/// with libpq's TLS settings.
struct TargetConnect(PgTarget);

impl deadpool_postgres::Connect for TargetConnect {
    fn connect(
        &self,
        _config: &tokio_postgres::Config,
    ) -> futures_util::future::BoxFuture<
        '_,
        Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>,
    > {
        Box::pin(async move {
            let (client, connection) = self.0.connect().await?;
            let task = tokio::spawn(async move {
                let _ = connection.await;
            });
            Ok((client, task))
        })
    }
}

/// deadpool-postgres's manager, timing each connection it opens.
pub struct TimedManager(deadpool_postgres::Manager);

impl managed::Manager for TimedManager {
    type Type = deadpool_postgres::ClientWrapper;
    type Error = tokio_postgres::Error;

    async fn create(&self) -> Result<Self::Type, Self::Error> {
        let started = Instant::now();
        let created = self.0.create().await;
        let took = started.elapsed().as_micros() as u64;
        let _ = CONNECT_US.try_with(|connect| connect.set(connect.get() + took));
        created
    }

    async fn recycle(&self, client: &mut Self::Type, metrics: &Metrics) -> RecycleResult<Self::Error> {
        self.0.recycle(client, metrics).await
    }
}

/// One application instance's pool, and how its sessions send statements.
pub struct AppPool {
    pool: Pool,
    mode: QueryMode,
}

enum Pool {
    /// deadpool-postgres.
    Deadpool(managed::Pool<TimedManager>),
    /// sqlx.
    Sqlx(sqlx::PgPool),
    /// No pool: the server to connect to (boxed: it is large and the
    /// pools are otherwise a pointer each).
    None(Box<PgTarget>),
}

impl AppPool {
    /// Builds a pool for `url`; opens no connection yet.
    pub fn new(url: &str, settings: &PoolSettings) -> Result<AppPool, PoolError> {
        let mut target = PgTarget::parse(url).map_err(|e| match e {
            TargetError::Url(e) => PoolError::Url(e),
            TargetError::Tls(e) => PoolError::Tls(e),
        })?;
        let config = &mut target.config;
        config.connect_timeout(settings.connect_timeout);
        config.application_name(POOL_APPLICATION_NAME);
        if let Some(timeout) = settings.statement_timeout {
            config.options(format!("-c statement_timeout={}", timeout.as_millis()));
        }
        let pool = match settings.kind {
            PoolKind::Deadpool => {
                let manager = deadpool_postgres::Manager::from_connect(
                    target.config.clone(),
                    TargetConnect(target),
                    deadpool_postgres::ManagerConfig {
                        recycling_method: deadpool_postgres::RecyclingMethod::Fast,
                    },
                );
                managed::Pool::builder(TimedManager(manager))
                    .max_size(settings.size as usize)
                    .wait_timeout(Some(settings.acquire_timeout))
                    .create_timeout(Some(settings.connect_timeout))
                    .runtime(deadpool::Runtime::Tokio1)
                    .build()
                    .map(Pool::Deadpool)
                    .map_err(PoolError::Deadpool)?
            }
            PoolKind::Sqlx => {
                let mut options = target.sqlx_options().map_err(PoolError::SqlxUrl)?;
                options = options.application_name(POOL_APPLICATION_NAME);
                if let Some(timeout) = settings.statement_timeout {
                    options = options.options([("statement_timeout", format!("{}", timeout.as_millis()))]);
                }
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(settings.size)
                    .min_connections(0)
                    .acquire_timeout(settings.acquire_timeout)
                    // A benchmark measures the pool, not a health check per checkout.
                    .test_before_acquire(false)
                    .connect_lazy_with(options);
                Pool::Sqlx(pool)
            }
            PoolKind::None => Pool::None(Box::new(target)),
        };
        Ok(AppPool {
            pool,
            mode: settings.query_mode,
        })
    }

    /// Checks a connection out, or says why it could not.
    pub async fn acquire(&self) -> (Result<Session, ErrorClass>, AcquireTiming) {
        let (checkout, timing) = self.check_out().await;
        let mode = self.mode;
        (checkout.map(|checkout| Session { checkout, mode }), timing)
    }

    async fn check_out(&self) -> (Result<Checkout, ErrorClass>, AcquireTiming) {
        let started = Instant::now();
        match &self.pool {
            Pool::Deadpool(pool) => {
                let (got, connect_us) = CONNECT_US
                    .scope(Cell::new(0), async { (pool.get().await, CONNECT_US.with(Cell::get)) })
                    .await;
                let total = started.elapsed().as_micros() as u64;
                let timing = AcquireTiming {
                    pool_wait_us: total.saturating_sub(connect_us),
                    connect_us,
                };
                (got.map(Checkout::Deadpool).map_err(|e| classify_deadpool(&e)), timing)
            }
            Pool::Sqlx(pool) => {
                // sqlx opens connections inside acquire without a hook to
                // time them: its pool wait includes connecting when it grows.
                let got = pool.acquire().await;
                let timing = AcquireTiming {
                    pool_wait_us: started.elapsed().as_micros() as u64,
                    connect_us: 0,
                };
                (got.map(Checkout::Sqlx).map_err(|e| ErrorClass::from_sqlx(&e)), timing)
            }
            Pool::None(target) => {
                let connected = target.connect().await;
                let timing = AcquireTiming {
                    pool_wait_us: 0,
                    connect_us: started.elapsed().as_micros() as u64,
                };
                let session = connected.map(|(client, connection)| {
                    let task = tokio::spawn(async move {
                        let _ = connection.await;
                    });
                    Checkout::Fresh(client, task)
                });
                (
                    session.map_err(|e| connect_failure(ErrorClass::from_tokio_postgres(&e))),
                    timing,
                )
            }
        }
    }

    /// Closes the pool's connections.
    pub async fn close(&self) {
        match &self.pool {
            Pool::Deadpool(pool) => pool.close(),
            Pool::Sqlx(pool) => pool.close().await,
            Pool::None(_) => {}
        }
    }
}

fn classify_deadpool(error: &managed::PoolError<tokio_postgres::Error>) -> ErrorClass {
    match error {
        managed::PoolError::Timeout(managed::TimeoutType::Wait) => ErrorClass::PoolTimeout,
        managed::PoolError::Timeout(_) => ErrorClass::ConnectionFailed,
        managed::PoolError::Backend(e) => connect_failure(ErrorClass::from_tokio_postgres(e)),
        _ => ErrorClass::ConnectionFailed,
    }
}

/// Failing to open a connection is not losing one: tokio-postgres cannot
/// tell the two apart, the caller can.
fn connect_failure(class: ErrorClass) -> ErrorClass {
    match class {
        ErrorClass::ConnectionLost => ErrorClass::ConnectionFailed,
        other => other,
    }
}

/// A connection checked out for one transaction, sending statements as
/// its pool's [`QueryMode`] says.
pub struct Session {
    checkout: Checkout,
    mode: QueryMode,
}

enum Checkout {
    /// From deadpool; goes back to the pool on drop.
    Deadpool(managed::Object<TimedManager>),
    /// From sqlx; goes back to the pool on drop.
    Sqlx(sqlx::pool::PoolConnection<sqlx::Postgres>),
    /// Opened for this transaction; closed on drop.
    Fresh(tokio_postgres::Client, tokio::task::JoinHandle<()>),
}

impl Checkout {
    /// The tokio-postgres client, for every kind but sqlx.
    fn tokio_client(&self) -> Option<&tokio_postgres::Client> {
        match self {
            Checkout::Deadpool(client) => Some(client),
            Checkout::Fresh(client, _) => Some(client),
            Checkout::Sqlx(_) => None,
        }
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if let Checkout::Fresh(_, task) = self {
            task.abort();
        }
    }
}

/// Rows a query returned, as far as workloads need them.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueryResult {
    /// Rows returned (SELECT) or affected (INSERT/UPDATE/DELETE).
    pub rows: u64,
    /// First column of the first row, when it is an integer.
    pub first_int: Option<i64>,
}

impl Session {
    /// Runs a statement without parameters through the simple protocol
    /// (BEGIN, COMMIT, ROLLBACK, SET).
    pub async fn simple(&mut self, sql: &str) -> Result<(), ErrorClass> {
        round_trips(1);
        match &mut self.checkout {
            Checkout::Deadpool(client) => client
                .batch_execute(sql)
                .await
                .map_err(|e| ErrorClass::from_tokio_postgres(&e)),
            Checkout::Fresh(client, _) => client
                .batch_execute(sql)
                .await
                .map_err(|e| ErrorClass::from_tokio_postgres(&e)),
            Checkout::Sqlx(connection) => {
                use sqlx::Executor;
                connection
                    .execute(sqlx::raw_sql(sql))
                    .await
                    .map(|_| ())
                    .map_err(|e| ErrorClass::from_sqlx(&e))
            }
        }
    }

    /// Runs one prepared statement (cached per connection where the pool
    /// keeps connections) and returns what workloads need of its result.
    pub async fn query(&mut self, sql: &str, params: &[Param]) -> Result<QueryResult, ErrorClass> {
        let mut first_int = None;
        let rows = self.fetch(sql, params, 1, &mut |value| first_int = value).await?;
        Ok(QueryResult { rows, first_int })
    }

    /// The one place a query is dispatched to the session's driver: returns
    /// the rows returned and hands `first_row` the first row's first
    /// `columns` columns as integers (`None` where a column is not one).
    ///
    /// Through tokio-postgres the rows are streamed, not collected, and the
    /// parameters passed as an iterator: no allocation of ours per statement.
    async fn fetch(
        &mut self,
        sql: &str,
        params: &[Param],
        columns: usize,
        first_row: &mut (dyn FnMut(Option<i64>) + Send),
    ) -> Result<u64, ErrorClass> {
        // The other modes boxed: the driver's futures nest these, and one
        // future holding every mode's state at once overflowed a test
        // thread's stack in a debug build.
        match self.mode {
            QueryMode::Prepared => {}
            QueryMode::Simple => {
                let text = inline_params(sql, params)?;
                round_trips(1);
                return Box::pin(self.fetch_simple(&text, columns, first_row))
                    .await
                    .map(|(rows, _)| rows);
            }
            QueryMode::Extended => {
                if let Some(client) = self.checkout.tokio_client() {
                    round_trips(1);
                    return Box::pin(fetch_extended(client, sql, params, columns, first_row)).await;
                }
            }
        }
        let extended = self.mode == QueryMode::Extended;
        match &mut self.checkout {
            Checkout::Deadpool(client) => {
                let statement = prepare_counted(client, sql).await?;
                round_trips(1);
                let rows = client
                    .query_raw(&statement, tokio_params(params))
                    .await
                    .map_err(|e| ErrorClass::from_tokio_postgres(&e))?;
                tokio_fetched(rows, columns, first_row).await
            }
            Checkout::Fresh(client, _) => {
                round_trips(2);
                let rows = client
                    .query_raw(sql, tokio_params(params))
                    .await
                    .map_err(|e| ErrorClass::from_tokio_postgres(&e))?;
                tokio_fetched(rows, columns, first_row).await
            }
            Checkout::Sqlx(connection) => {
                use sqlx::Row;
                round_trips(1);
                let rows = sqlx_query(sql, params)
                    .persistent(!extended)
                    .fetch_all(&mut **connection)
                    .await
                    .map_err(|e| ErrorClass::from_sqlx(&e))?;
                if let Some(row) = rows.first() {
                    for i in 0..row.len().min(columns) {
                        first_row(
                            row.try_get::<i64, _>(i)
                                .ok()
                                .or_else(|| row.try_get::<i32, _>(i).ok().map(i64::from)),
                        );
                    }
                }
                Ok(rows.len() as u64)
            }
        }
    }
}

impl Session {
    /// Runs one statement that returns no rows and gives the rows it
    /// affected.
    pub async fn execute(&mut self, sql: &str, params: &[Param]) -> Result<u64, ErrorClass> {
        match self.mode {
            QueryMode::Prepared => {}
            QueryMode::Simple => {
                let text = inline_params(sql, params)?;
                round_trips(1);
                return Box::pin(self.fetch_simple(&text, 0, &mut |_| {}))
                    .await
                    .map(|(_, affected)| affected);
            }
            QueryMode::Extended => {
                if let Some(client) = self.checkout.tokio_client() {
                    round_trips(1);
                    return Box::pin(execute_extended(client, sql, params)).await;
                }
            }
        }
        let extended = self.mode == QueryMode::Extended;
        match &mut self.checkout {
            Checkout::Deadpool(client) => {
                let statement = prepare_counted(client, sql).await?;
                round_trips(1);
                client
                    .execute_raw(&statement, tokio_params(params))
                    .await
                    .map_err(|e| ErrorClass::from_tokio_postgres(&e))
            }
            Checkout::Fresh(client, _) => {
                round_trips(2);
                client
                    .execute_raw(sql, tokio_params(params))
                    .await
                    .map_err(|e| ErrorClass::from_tokio_postgres(&e))
            }
            Checkout::Sqlx(connection) => {
                round_trips(1);
                sqlx_query(sql, params)
                    .persistent(!extended)
                    .execute(&mut **connection)
                    .await
                    .map(|done| done.rows_affected())
                    .map_err(|e| ErrorClass::from_sqlx(&e))
            }
        }
    }
}

/// deadpool's cached prepare, counting a round trip when the cache missed.
async fn prepare_counted(
    client: &deadpool_postgres::ClientWrapper,
    sql: &str,
) -> Result<tokio_postgres::Statement, ErrorClass> {
    let cached = client.statement_cache.size();
    let statement = client
        .prepare_cached(sql)
        .await
        .map_err(|e| ErrorClass::from_tokio_postgres(&e))?;
    if client.statement_cache.size() > cached {
        round_trips(1);
    }
    Ok(statement)
}

impl Session {
    /// The integer columns of the first row a query returns (empty when it
    /// returns none; 0 for a column that is not an integer); for reads of a
    /// few numbers at once.
    pub async fn query_row_ints(&mut self, sql: &str, params: &[Param]) -> Result<Vec<i64>, ErrorClass> {
        let mut first_row = Vec::new();
        self.fetch(sql, params, usize::MAX, &mut |value| first_row.push(value.unwrap_or(0)))
            .await?;
        Ok(first_row)
    }
}

impl Session {
    /// Runs `text` through the simple query protocol: the rows returned
    /// (the first row's first `columns` integer columns handed to
    /// `first_row`) and the rows the last command affected.
    async fn fetch_simple(
        &mut self,
        text: &str,
        columns: usize,
        first_row: &mut (dyn FnMut(Option<i64>) + Send),
    ) -> Result<(u64, u64), ErrorClass> {
        use tokio_postgres::SimpleQueryMessage;
        let messages = match &mut self.checkout {
            Checkout::Sqlx(connection) => {
                use sqlx::{Executor, Row};
                let rows = connection
                    .fetch_all(sqlx::raw_sql(text))
                    .await
                    .map_err(|e| ErrorClass::from_sqlx(&e))?;
                if let Some(row) = rows.first() {
                    for i in 0..row.len().min(columns) {
                        first_row(
                            row.try_get::<i64, _>(i)
                                .ok()
                                .or_else(|| row.try_get::<i32, _>(i).ok().map(i64::from)),
                        );
                    }
                }
                // sqlx's raw fetch gives rows, not the command tag.
                return Ok((rows.len() as u64, rows.len() as u64));
            }
            Checkout::Deadpool(client) => client.simple_query(text).await,
            Checkout::Fresh(client, _) => client.simple_query(text).await,
        }
        .map_err(|e| ErrorClass::from_tokio_postgres(&e))?;
        let (mut rows, mut affected) = (0u64, 0u64);
        for message in &messages {
            match message {
                SimpleQueryMessage::Row(row) => {
                    if rows == 0 {
                        for i in 0..row.len().min(columns) {
                            first_row(row.get(i).and_then(|v| v.parse().ok()));
                        }
                    }
                    rows += 1;
                }
                SimpleQueryMessage::CommandComplete(n) => affected = *n,
                _ => {}
            }
        }
        Ok((rows, affected))
    }
}

/// One query as the unnamed statement (parse, bind, execute, one round
/// trip); see [`Session::fetch`].
async fn fetch_extended(
    client: &tokio_postgres::Client,
    sql: &str,
    params: &[Param],
    columns: usize,
    first_row: &mut (dyn FnMut(Option<i64>) + Send),
) -> Result<u64, ErrorClass> {
    let rows = client
        .query_typed_raw(sql, typed_params(params))
        .await
        .map_err(|e| ErrorClass::from_tokio_postgres(&e))?;
    tokio_fetched(rows, columns, first_row).await
}

/// One statement as the unnamed statement; the rows it affected.
async fn execute_extended(client: &tokio_postgres::Client, sql: &str, params: &[Param]) -> Result<u64, ErrorClass> {
    use futures_util::TryStreamExt;
    let rows = client
        .query_typed_raw(sql, typed_params(params))
        .await
        .map_err(|e| ErrorClass::from_tokio_postgres(&e))?;
    let mut rows = std::pin::pin!(rows);
    while rows
        .as_mut()
        .try_next()
        .await
        .map_err(|e| ErrorClass::from_tokio_postgres(&e))?
        .is_some()
    {}
    Ok(rows.rows_affected().unwrap_or(0))
}

/// `sql` with each `$N` replaced by parameter N as a literal, for the
/// simple protocol: numbers as they print, text single-quoted with quotes
/// doubled (standard_conforming_strings is on from PostgreSQL 9.1). A `$N`
/// inside a quoted literal or identifier is left alone.
fn inline_params(sql: &str, params: &[Param]) -> Result<String, ErrorClass> {
    let mut out = String::with_capacity(sql.len() + params.len() * 8);
    let mut chars = sql.char_indices().peekable();
    let mut quote: Option<char> = None;
    while let Some((_, c)) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => {
                quote = None;
                out.push(c);
            }
            (Some(_), c) => out.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                out.push(c);
            }
            (None, '$') if chars.peek().is_some_and(|(_, d)| d.is_ascii_digit()) => {
                let mut number = 0usize;
                while let Some((_, d)) = chars.peek().copied().filter(|(_, d)| d.is_ascii_digit()) {
                    number = number * 10 + (d as usize - '0' as usize);
                    chars.next();
                }
                let param = number
                    .checked_sub(1)
                    .and_then(|i| params.get(i))
                    .ok_or(ErrorClass::Other)?;
                match param {
                    Param::Int(v) => out.push_str(&v.to_string()),
                    Param::BigInt(v) => out.push_str(&v.to_string()),
                    Param::Untyped(UntypedNumber::Int(v)) => out.push_str(&v.to_string()),
                    Param::Untyped(UntypedNumber::Double(v)) => out.push_str(&format!("{v:?}")),
                    Param::Text(v) => {
                        out.push('\'');
                        out.push_str(&v.replace('\'', "''"));
                        out.push('\'');
                    }
                }
            }
            (None, c) => out.push(c),
        }
    }
    Ok(out)
}

/// Parameters with the types the unnamed statement declares for them:
/// untyped numbers as int8 or float8 (PostgreSQL casts them to an int4 or
/// numeric column on assignment and compares across integer widths).
fn typed_params(params: &[Param]) -> impl Iterator<Item = (&(dyn ToSql + Sync), tokio_postgres::types::Type)> {
    use tokio_postgres::types::Type;
    params.iter().map(|param| match param {
        Param::Int(v) => (v as &(dyn ToSql + Sync), Type::INT4),
        Param::BigInt(v) => (v as &(dyn ToSql + Sync), Type::INT8),
        Param::Text(v) => (v as &(dyn ToSql + Sync), Type::TEXT),
        Param::Untyped(v @ UntypedNumber::Int(_)) => (v as &(dyn ToSql + Sync), Type::INT8),
        Param::Untyped(v @ UntypedNumber::Double(_)) => (v as &(dyn ToSql + Sync), Type::FLOAT8),
    })
}

fn sqlx_query<'q>(
    sql: &'q str,
    params: &[Param],
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let mut query = sqlx::query(sql);
    for param in params {
        query = match param {
            Param::Int(v) => query.bind(*v),
            Param::BigInt(v) => query.bind(*v),
            Param::Text(v) => query.bind(v.clone()),
            Param::Untyped(UntypedNumber::Int(v)) => query.bind(*v),
            Param::Untyped(UntypedNumber::Double(v)) => query.bind(*v),
        };
    }
    query
}

fn tokio_params(params: &[Param]) -> impl ExactSizeIterator<Item = &(dyn ToSql + Sync)> {
    params.iter().map(|param| match param {
        Param::Int(v) => v as &(dyn ToSql + Sync),
        Param::BigInt(v) => v as &(dyn ToSql + Sync),
        Param::Text(v) => v as &(dyn ToSql + Sync),
        Param::Untyped(v) => v as &(dyn ToSql + Sync),
    })
}

/// Counts the rows of a result and hands over its first row's integers.
/// A column is read by its declared type: asking tokio-postgres for an i64
/// out of an int4 builds (and allocates) an error before falling back.
async fn tokio_fetched(
    rows: tokio_postgres::RowStream,
    columns: usize,
    first_row: &mut (dyn FnMut(Option<i64>) + Send),
) -> Result<u64, ErrorClass> {
    use futures_util::TryStreamExt;
    use tokio_postgres::types::Type;
    let mut rows = std::pin::pin!(rows);
    let mut count = 0u64;
    while let Some(row) = rows.try_next().await.map_err(|e| ErrorClass::from_tokio_postgres(&e))? {
        if count == 0 {
            for (i, column) in row.columns().iter().take(columns).enumerate() {
                first_row(match *column.type_() {
                    Type::INT8 => row.try_get::<_, i64>(i).ok(),
                    Type::INT4 => row.try_get::<_, i32>(i).ok().map(i64::from),
                    _ => None,
                });
            }
        }
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_mode_writes_parameters_as_literals() {
        let params = [
            Param::Int(7),
            Param::Text("it's".into()),
            Param::Untyped(UntypedNumber::Double(0.5)),
        ];
        assert_eq!(
            inline_params("SELECT $1, $2, '$1', \"$2\", $3", &params).unwrap(),
            "SELECT 7, 'it''s', '$1', \"$2\", 0.5"
        );
        assert_eq!(inline_params("SELECT $4", &params), Err(ErrorClass::Other));
        assert_eq!(inline_params("SELECT 1", &[]).unwrap(), "SELECT 1");
    }

    #[test]
    fn defaults_are_the_cli_defaults() {
        let settings = PoolSettings::default();
        assert_eq!(settings.kind, PoolKind::Deadpool);
        assert_eq!(settings.size, 10);
        assert_eq!(settings.acquire_timeout, Duration::from_secs(5));
        assert_eq!(settings.connect_timeout, Duration::from_secs(10));
        assert_eq!(settings.statement_timeout, None);
    }

    #[test]
    fn a_bad_url_is_an_error_a_caller_can_match() {
        for kind in [PoolKind::Deadpool, PoolKind::Sqlx, PoolKind::None] {
            let settings = PoolSettings {
                kind,
                ..PoolSettings::default()
            };
            let error = AppPool::new("postgres://contend@127.0.0.1:notaport/db", &settings)
                .err()
                .expect("a port that is not a number is refused");
            assert!(matches!(error, PoolError::Url(_)), "{error:?}");
            assert!(error.to_string().starts_with("bad database URL: "), "{error}");
        }
        // Key-value connection strings are tokio-postgres's, not sqlx's.
        let sqlx = PoolSettings {
            kind: PoolKind::Sqlx,
            ..PoolSettings::default()
        };
        let error = AppPool::new("host=127.0.0.1 user=contend", &sqlx)
            .err()
            .expect("sqlx needs a URL");
        assert!(matches!(error, PoolError::SqlxUrl(_)), "{error:?}");
    }
}
