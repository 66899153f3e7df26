//! What an application holds: its pools (deadpool, sqlx, or a new
//! connection per transaction), one attempt's lazily checked-out session,
//! its Redis connections, and the classes its errors fall into.
//!
//! Times what a client waits for (a pooled connection, a new one) and
//! classifies what fails; it records nothing (measure does) and never
//! decides what to run (workload and driver do).

mod attempt;
mod cache;
mod error_class;
mod pool;

pub use self::attempt::{Attempt, AttemptTimes};
pub use self::cache::{cache_connections, redis_client, RedisError};
pub use self::error_class::ErrorClass;
pub use self::pool::{
    count_round_trips, AcquireTiming, AppPool, Param, PoolError, PoolKind, PoolSettings, QueryMode, QueryResult,
    Session, TimedManager, UntypedNumber, POOL_APPLICATION_NAME,
};
