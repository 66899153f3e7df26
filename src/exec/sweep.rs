//! A sweep: many cells over one set of servers, each appended to
//! `cells.jsonl` as it finishes, resumable.
//!
//! Owns the order of cells (max_connections outermost, so the server
//! restarts only when it changes), which cells a run directory already has,
//! and the loop that runs the rest. Each cell still gets a fresh copy of the
//! template ([`super::run`]). A cell whose server went away — under its load
//! ([`RunError::ServerLost`]) or between two loads (an error that
//! [`RunError::is_connection_loss`]) — goes to `failed.jsonl` and the server
//! is brought back; one restarted in a fresh container simply loads its
//! template again. It never formats output: progress goes to a callback.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::error::RunError;
use super::run::run_cell;
use crate::driver::LiveCounts;
use crate::provision::Servers;
use crate::record::{cell_key, CellRecord, FailedCell, FailureCause, PlannedCell, ServerLoss};
use crate::results::{append_cell, append_failed, finished_cells};

/// The cells of a sweep, in run order.
#[derive(Debug, Clone)]
pub struct SweepPlan {
    /// Cells, max_connections outermost.
    pub cells: Vec<PlannedCell>,
}

/// Progress of a sweep, for a display.
#[derive(Debug, Clone)]
pub enum SweepEvent {
    /// A cell starts (index among the cells still to run, their count).
    Starting {
        /// Position among the cells to run, from 0.
        index: usize,
        /// Cells to run in this invocation.
        of: usize,
        /// The cell's key.
        key: String,
    },
    /// The server restarted with a new max_connections, taking this long.
    Restarted {
        /// The new value.
        max_connections: u32,
        /// Seconds the change took.
        took_s: f64,
    },
    /// A cell finished and was appended.
    Finished {
        /// Its place in the plan, from 1 (the same on a resume).
        number: usize,
        /// The record appended.
        record: Box<CellRecord>,
    },
    /// PostgreSQL went away under a cell (or a task of it panicked); the
    /// cell went to failed.jsonl and the server was brought back (or not:
    /// then the sweep stops).
    Failed {
        /// The record appended to failed.jsonl.
        failed: Box<FailedCell>,
    },
}

/// What one invocation of a sweep did.
#[derive(Debug, Default)]
pub struct SweepOutcome {
    /// Cells measured and appended to cells.jsonl.
    pub finished: usize,
    /// Cells the server died under (or a panic failed), appended to
    /// failed.jsonl; `--resume` runs them again.
    pub failed: usize,
}

/// Runs every cell of `plan` not already in `dir`, appending each as it
/// finishes. `live` counts the running cell's transactions. When
/// PostgreSQL goes away under a cell, the cell is appended to
/// `failed.jsonl` with its reason, the server is brought back
/// ([`Servers::recover_postgres`]) and the sweep goes on.
pub async fn run_sweep(
    plan: &SweepPlan,
    servers: &mut Servers,
    dir: &Path,
    live: Arc<LiveCounts>,
    mut on_event: impl FnMut(SweepEvent),
) -> Result<SweepOutcome, RunError> {
    let finished = finished_cells(dir)?;
    let todo: Vec<&PlannedCell> = plan
        .cells
        .iter()
        .filter(|cell| {
            let max = cell.max_connections.unwrap_or(servers.postgres.max_connections);
            !finished.keys.contains(&cell_key(&cell.settings, max))
        })
        .collect();
    let mut outcome = SweepOutcome::default();
    for (index, cell) in todo.iter().enumerate() {
        if let Some(max) = cell.max_connections {
            if max != servers.postgres.max_connections {
                let took = servers.set_max_connections(max).await?;
                on_event(SweepEvent::Restarted {
                    max_connections: max,
                    took_s: took.as_secs_f64(),
                });
            }
        }
        let key = cell_key(&cell.settings, servers.postgres.max_connections);
        on_event(SweepEvent::Starting {
            index,
            of: todo.len(),
            key: key.clone(),
        });
        live.reset_for_next_cell();
        let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        let started = Instant::now();
        let loss = match run_cell(&cell.settings, servers, Arc::clone(&live)).await {
            Ok(record) => {
                append_cell(dir, &record)?;
                outcome.finished += 1;
                on_event(SweepEvent::Finished {
                    number: plan
                        .cells
                        .iter()
                        .position(|planned| std::ptr::eq(planned, *cell))
                        .map_or(0, |at| at + 1),
                    record: Box::new(record),
                });
                continue;
            }
            // A panic is contend's bug, not the server's: the cell fails,
            // the server needs no recovery, and the sweep goes on.
            Err(error) if error.panic_message().is_some() => {
                let loss = ServerLoss {
                    reason: error.to_string(),
                    after_s: started.elapsed().as_secs_f64(),
                    ok: live.ok.load(Ordering::Relaxed),
                    errors_by_class: Default::default(),
                };
                let max_connections = servers.postgres.max_connections;
                let failed = FailedCell::new(&cell.settings, max_connections, started_at, loss, None)
                    .because(FailureCause::Panic);
                append_failed(dir, &failed)?;
                outcome.failed += 1;
                on_event(SweepEvent::Failed {
                    failed: Box::new(failed),
                });
                continue;
            }
            Err(RunError::ServerLost(loss)) => (*loss, FailureCause::ServerLost),
            // Between two cells' loads (copying the template, connecting to
            // the copy) a dead server shows as a connection of contend's own
            // closed or refused: the error says so, no probe needed. A cell
            // past its deadline is a server that stopped answering.
            Err(error) if error.is_connection_loss() => (
                ServerLoss {
                    reason: error.to_string(),
                    after_s: started.elapsed().as_secs_f64(),
                    ok: live.ok.load(Ordering::Relaxed),
                    errors_by_class: Default::default(),
                },
                if matches!(error, RunError::Unresponsive { .. }) {
                    FailureCause::Unresponsive
                } else {
                    FailureCause::ServerLost
                },
            ),
            Err(error) => return Err(error),
        };
        let (loss, cause) = loss;
        let max_connections = servers.postgres.max_connections;
        let recovery = servers.recover_postgres().await;
        let failed = FailedCell::new(
            &cell.settings,
            max_connections,
            started_at,
            loss,
            recovery.as_ref().ok(),
        )
        .because(cause);
        append_failed(dir, &failed)?;
        outcome.failed += 1;
        on_event(SweepEvent::Failed {
            failed: Box::new(failed),
        });
        if let Err(error) = recovery {
            return Err(RunError::NotRecovered {
                error,
                failed: dir.join("failed.jsonl"),
                dir: dir.to_path_buf(),
            });
        }
    }
    Ok(outcome)
}
