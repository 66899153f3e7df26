//! One attempt's connections: a database session checked out only when the
//! operation first needs it (then a transaction is begun on it), and the
//! client's Redis connection when a cache is in use.
//!
//! Lazy checkout is what lets a cache hit skip the pool entirely, as it does
//! in an application. The driver creates an attempt, hands it to the
//! workload, then finishes it (COMMIT on success, ROLLBACK on failure) and
//! reads how long the checkout and the transaction took. Nothing here
//! decides what to run or records anything.

use std::time::Instant;

use super::pool::AcquireTiming;
use super::pool::AppPool;
use super::pool::Session;
use crate::client::ErrorClass;

/// The connections of one attempt.
pub struct Attempt<'a> {
    pool: &'a AppPool,
    session: Option<Session>,
    acquire: AcquireTiming,
    in_db_started: Option<Instant>,
    checked_out: bool,
    /// Whether [`Attempt::db`] sent BEGIN (so finishing COMMITs).
    transaction_begun: bool,
    cache: Option<&'a mut redis::aio::MultiplexedConnection>,
    counted: [Option<&'static str>; 4],
}

/// How long an attempt spent getting a connection and inside the database.
#[derive(Debug, Clone, Copy, Default)]
pub struct AttemptTimes {
    /// Pool wait and connect time of the checkout (zero when the attempt
    /// never needed the database).
    pub acquire: AcquireTiming,
    /// From BEGIN sent (or, without one, the checkout) to COMMIT or
    /// ROLLBACK answered (or the operation's end), microseconds.
    pub in_db_us: u64,
    /// Whether the attempt asked the pool for a connection.
    pub checked_out: bool,
    /// Events counted with [`Attempt::count`].
    pub counted: [Option<&'static str>; 4],
}

impl<'a> Attempt<'a> {
    /// An attempt that will check out from `pool` when the workload asks.
    pub fn new(pool: &'a AppPool, cache: Option<&'a mut redis::aio::MultiplexedConnection>) -> Attempt<'a> {
        Attempt {
            pool,
            session: None,
            acquire: AcquireTiming::default(),
            in_db_started: None,
            checked_out: false,
            transaction_begun: false,
            cache,
            counted: [None; 4],
        }
    }

    /// The database session, checked out and inside a transaction; the
    /// first call checks out and sends BEGIN.
    pub async fn db(&mut self) -> Result<&mut Session, ErrorClass> {
        if self.session.is_none() {
            self.checked_out = true;
            let (session, acquire) = self.pool.acquire().await;
            self.acquire = acquire;
            let mut session = session?;
            self.in_db_started = Some(Instant::now());
            session.simple("BEGIN").await?;
            self.transaction_begun = true;
            self.session = Some(session);
        }
        Ok(self.session.as_mut().expect("checked out above"))
    }

    /// The database session, checked out on the first call but with no
    /// transaction begun: for an operation that sends its own BEGIN and END,
    /// or runs statements on their own, as a pgbench script does. An
    /// attempt uses this or [`Attempt::db`], not both.
    pub async fn db_autocommit(&mut self) -> Result<&mut Session, ErrorClass> {
        if self.session.is_none() {
            self.checked_out = true;
            let (session, acquire) = self.pool.acquire().await;
            self.acquire = acquire;
            let session = session?;
            self.in_db_started = Some(Instant::now());
            self.session = Some(session);
        }
        Ok(self.session.as_mut().expect("checked out above"))
    }

    /// The client's Redis connection, when the cell uses a cache.
    pub fn cache(&mut self) -> Option<&mut redis::aio::MultiplexedConnection> {
        self.cache.as_deref_mut()
    }

    /// Counts a business-level event whatever the attempt's outcome (a
    /// compensation runs because the attempt is failing). Beyond four per
    /// attempt, the rest are dropped.
    pub fn count(&mut self, what: &'static str) {
        if let Some(slot) = self.counted.iter_mut().find(|slot| slot.is_none()) {
            *slot = Some(what);
        }
    }

    /// Ends the transaction, if one was begun: COMMIT when the operation
    /// succeeded (a failing COMMIT fails the attempt), ROLLBACK otherwise
    /// (also after [`Attempt::db_autocommit`], whose operation may have
    /// begun one itself).
    pub async fn finish(mut self, operation_succeeded: bool) -> (AttemptTimes, Result<(), ErrorClass>) {
        let mut outcome = Ok(());
        if let Some(session) = self.session.as_mut() {
            if operation_succeeded && self.transaction_begun {
                outcome = session.simple("COMMIT").await;
            } else if !operation_succeeded {
                // Without a BEGIN of ours, the operation may have left its
                // own transaction open; ROLLBACK outside one only warns.
                let _ = session.simple("ROLLBACK").await;
            }
        }
        let in_db_us = self
            .in_db_started
            .map_or(0, |started| started.elapsed().as_micros() as u64);
        (
            AttemptTimes {
                acquire: self.acquire,
                in_db_us,
                checked_out: self.checked_out,
                counted: self.counted,
            },
            outcome,
        )
    }
}
