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
//! ```
//!
//! Data flows top to bottom; nothing below `cli` prints except short
//! `contend: …` progress lines on stderr, and nothing measures and formats in
//! the same place.

#![deny(unsafe_code)]

pub mod cli;
pub mod provision;
pub mod secret;
