//! Integration tests against real PostgreSQL and Redis: one test binary, so
//! the crate links once and the machine is prepared once.

mod aggregate_log;
mod bad_input;
mod compare;
mod completions;
mod diagnosis;
mod docker;
mod errors;
mod exposure;
mod external;
mod faults;
mod first_run;
mod formats;
mod layers;
mod local;
mod migrate;
mod network;
mod old_results;
mod panics;
mod pgbench_flags;
mod pooler;
mod report;
mod run;
mod run_dirs;
mod sampler;
mod script;
mod seats;
mod signals;
mod stalls;
mod sweep;
mod threads;
mod tls;
mod util;
mod wallet;
