//! contend: a PostgreSQL contention and connection-pool-sizing lab.
//!
//! It starts real servers, replays contended workloads under many pool sizes
//! and `max_connections` settings, measures both sides of the pool, and says
//! which pool size and `max_connections` to run with, and why.
//!
//! # Layout
//!
//! The folders are the pipeline, and imports point one way: each layer uses
//! only the layers above it in this list (tests/integration/layers.rs checks
//! it, and that every module is named here).
//!
//! ```text
//! provision  servers and their lifetimes: local (initdb/postgres,
//!            redis-server), docker (testcontainers), external (URLs);
//!            a PgBouncer per cell (or the user's); generated passwords,
//!            URLs masked in every output; tls/:
//!            libpq's sslmode settings read once into the connector every
//!            PostgreSQL connection uses, certificates for --tls servers
//! network    the network between app pools and server: a delaying TCP
//!            proxy on threads of its own (--network-rtt), its timer and
//!            what it cost
//! client     what an application holds: pools (deadpool | sqlx | none),
//!            one attempt's lazily checked-out session, Redis connections,
//!            error classes
//! measure    recorder → CellMetrics (HdrHistograms, errors, timeline); the
//!            server (and PgBouncer's admin console) sampled meanwhile; SLO
//!            scoring; EXPLAIN plans
//! workload   the trait, the registry, one module per workload (+ sql/<name>/,
//!            workloads/<name>.toml), script/ for pgbench-style scripts,
//!            migration files parsed into statements
//! driver     load generation: closed or open loop, instances over driver
//!            threads, one Recorder per thread merged
//! record     serde schemas of what is written: cell, failed cell,
//!            migration, cell keys (no I/O)
//! analysis   pure functions of records: recommend (knee, USL, Little's law,
//!            budget, formulas), compare (the regression gate)
//! results    a run directory on disk: whole-file writes, cells.jsonl and
//!            failed.jsonl, run.json (records plus recommendations)
//! render     records → text, summary.md, SVG plots, index.html
//! exec       what runs in order: template, the one cell harness (copy,
//!            checker/watchdog, pools, sampler) shared by run and migrate,
//!            one cell, a sweep, a migration under load, a run directory
//!            published
//! ```
//!
//! The binary (src/bin/contend/) holds clap and every exit code; nothing in
//! the library prints except short `contend: …` progress lines on stderr,
//! and nothing measures and formats in the same place.

#![deny(unsafe_code)]

pub mod provision;

pub mod network;

pub mod client;

pub mod measure;

pub mod workload;

pub mod driver;

pub mod record;

pub mod analysis;

pub mod results;

pub mod render;

pub mod exec;
