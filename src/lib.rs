//! contend: a PostgreSQL contention and connection-pool-sizing lab.
//!
//! It starts real servers, replays contended workloads under many pool sizes
//! and `max_connections` settings, measures both sides of the pool, and says
//! which pool size and `max_connections` to run with, and why.
//!
//! # Layout
//!
//! ```text
//! cli        clap flags → validated options (the only module that knows clap)
//!  │
//!  ▼
//! provision  options → Servers { PgServer, RedisServer }
//!            backends: local (initdb/postgres, redis-server), docker
//!            (testcontainers), external (URLs); auto picks one
//! secret     generated passwords; masking them out of every output
//!  │
//!  ▼
//! workload   one module per workload (+ sql/<name>/, workloads/<name>.toml);
//!            workload::script runs pgbench-style scripts given by the user
//! template   data loaded once into a template database, copied per cell
//! pool       deadpool | sqlx | none → a checked-out Session, acquire timing
//! attempt    one attempt's lazily checked-out session (+ BEGIN) and cache
//! driver     clients (closed or open loop), instances dealt over driver
//!            threads → metrics::Recorder per thread, merged
//! metrics    HdrHistograms per operation, errors by SQLSTATE, timeline
//! sampler    the server's side meanwhile: pg_stat_activity, pg_locks,
//!            pg_stat_database and pg_stat_statements deltas, Redis INFO
//! run        one cell: template → copy → pools → driver → CellRecord → cells.jsonl
//! sweep      many cells over one server, max_connections outermost, resumable
//! failure    cells the server died under → failed.jsonl; the sweep goes on
//! recommend  a sweep's records → knee, USL fit, Little's law, max_connections, formula verdicts
//! usl        Universal Scalability Law fit (pure maths)
//! report     CellRecord, Recommendation → text for people
//! ```
//!
//! Data flows top to bottom; nothing below `cli` prints except short
//! `contend: …` progress lines on stderr, and nothing measures and formats in
//! the same place.

#![deny(unsafe_code)]

pub mod attempt;
pub mod cli;
pub mod compare;
pub mod driver;
pub mod explain;
pub mod failure;
pub mod formula;
pub mod metrics;
pub mod migrate;
pub mod migration;
pub mod plots;
pub mod pool;
pub mod provision;
pub mod recommend;
pub mod report;
pub mod run;
pub mod runfile;
pub mod sampler;
pub mod secret;
pub mod site;
pub mod slo;
pub mod sweep;
pub mod template;
pub mod usl;
pub mod workload;
