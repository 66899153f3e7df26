//! What runs, in order: the data loaded once and copied per cell
//! (template), the harness every measured cell runs in — its copy, checker
//! and watchdog, pools and sampler — (cell), one cell from copy to record
//! (run), many cells over one set of servers (sweep), a migration under
//! load (migrate), and a run directory assembled into run.json and its
//! report (publish); why any of them could not run (error).
//!
//! The top of the library: it calls every layer below and nothing below
//! calls it. It writes through results and formats nothing itself.

mod cell;
mod error;
mod migrate;
mod pg_error;
mod publish;
mod run;
mod sweep;
mod template;

pub use self::cell::cells_need_redis;
pub use self::error::RunError;
pub use self::migrate::{run_migrate, MigrateError};
pub use self::publish::{assemble_run_file, publish, this_machine};
pub use self::run::{provision_for_run, run_cell};
pub use self::sweep::{run_sweep, SweepEvent, SweepOutcome, SweepPlan};
pub use self::template::{copy_for_cell, drop_database, ensure_template, grant_cell_to, TemplateError};
pub use crate::record::PlannedCell;
