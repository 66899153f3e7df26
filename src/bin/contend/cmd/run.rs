//! `contend run`: servers, one cell with a progress bar, the summary, and
//! the record appended to results. SIGINT, SIGTERM or SIGHUP abandons the
//! cell (nothing of it is recorded) and stops the servers.

use std::sync::Arc;

use crate::cli::{Format, RunCommand, RunPlan};
use crate::cmd::progress::{LiveBar, ProgressLines};
use crate::cmd::signals::Interrupts;
use crate::cmd::{FailedCheck, Outcome};
use contend::driver::LiveCounts;
use contend::render::{cell_summary, cells_csv};
use contend::{
    exec::{provision_for_run, run_cell, RunError},
    results::{append_cell, remove_if_empty, RunDir},
};
use contend::{
    record::{FailedCell, FailureCause, ServerLoss},
    results::append_failed,
};

pub async fn run(args: RunCommand) -> anyhow::Result<Outcome> {
    let slo_exit = !args.no_slo_exit;
    let format = args.format;
    let plan = RunPlan::try_from(args)?;
    let run_dir = RunDir::create(&plan.results_root, &plan.cell.workload)?;
    let dir = run_dir.path().to_path_buf();
    let mut interrupts = Interrupts::listen()?;
    let mut servers = provision_for_run(&dir, &plan.provision).await?;
    servers.external_pooler = plan.external_pooler.clone();
    let live = Arc::new(LiveCounts::default());
    let progress = LiveBar::timed(
        &live,
        plan.cell.driver.warmup_s + plan.cell.driver.duration_s,
        ProgressLines::chosen(plan.progress, &plan.cell),
    );
    let started_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let cell_started = std::time::Instant::now();
    let outcome = tokio::select! {
        outcome = run_cell(&plan.cell, &servers, Arc::clone(&live)) => Ok(outcome),
        signal = interrupts.received() => Err(signal),
    };
    progress.finish();
    let max_connections = servers.postgres.max_connections;
    servers.shutdown().await;
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(signal) => {
            remove_if_empty(&dir);
            eprintln!("contend: interrupted by {signal}; servers stopped; nothing of the cell is recorded");
            return Ok(Outcome::Interrupted(signal));
        }
    };
    let record = match outcome {
        Ok(record) => record,
        Err(error) if error.panic_message().is_some() => {
            let loss = ServerLoss {
                reason: error.to_string(),
                after_s: cell_started.elapsed().as_secs_f64(),
                ok: live.ok.load(std::sync::atomic::Ordering::Relaxed),
                errors_by_class: Default::default(),
            };
            let failed =
                FailedCell::new(&plan.cell, max_connections, started_at, loss, None).because(FailureCause::Panic);
            let path = append_failed(&dir, &failed)?;
            if format == Format::Json {
                super::print_json(&failed)?;
            }
            eprintln!(
                "contend: the cell failed: {}",
                contend::render::failed_cell_line(&failed)
            );
            eprintln!(
                "contend: recorded in {}; nothing of it is a measurement",
                path.display()
            );
            return Ok(Outcome::FailedCheck(FailedCheck::Panicked));
        }
        Err(error @ (RunError::ServerLost(_) | RunError::Unresponsive { .. })) => {
            let (loss, cause) = match error {
                RunError::ServerLost(loss) => (*loss, FailureCause::ServerLost),
                error => (
                    ServerLoss {
                        reason: error.to_string(),
                        after_s: cell_started.elapsed().as_secs_f64(),
                        ok: live.ok.load(std::sync::atomic::Ordering::Relaxed),
                        errors_by_class: Default::default(),
                    },
                    FailureCause::Unresponsive,
                ),
            };
            let failed = FailedCell::new(&plan.cell, max_connections, started_at, loss, None).because(cause);
            let path = append_failed(&dir, &failed)?;
            if format == Format::Json {
                super::print_json(&failed)?;
            }
            eprintln!(
                "contend: the cell failed: {}",
                contend::render::failed_cell_line(&failed)
            );
            eprintln!(
                "contend: recorded in {}; nothing of it is a measurement",
                path.display()
            );
            return Ok(Outcome::FailedCheck(FailedCheck::ServerLost));
        }
        Err(error) => {
            remove_if_empty(&dir);
            return Err(error.into());
        }
    };
    let path = append_cell(&dir, &record)?;
    match format {
        Format::Text => println!("{}", cell_summary(&record)),
        Format::Json => super::print_json(&record)?,
        Format::Csv => print!("{}", cells_csv(std::slice::from_ref(&record))?),
    }
    eprintln!("contend: cell appended to {}", path.display());
    if let Some(log) = &plan.aggregate_log {
        let written = super::aggregate_log::write(log, &dir, None, &record.metrics)?;
        eprintln!("contend: aggregate log: {}", written.display());
    }
    let (_, written) = contend::exec::publish(&dir, &Default::default())?;
    eprintln!("contend: report: {}", written.index.display());
    if !record.invariants_hold() {
        let failed_slos = record.slo.results.iter().filter(|r| !r.pass).count();
        let also = if failed_slos > 0 {
            format!("; {failed_slos} objective(s) of the workload's [slo] FAILed too (exit status 1 beats 99)")
        } else {
            String::new()
        };
        eprintln!("contend: an invariant was violated (see above); the cell is recorded as failed{also}");
        return Ok(Outcome::FailedCheck(FailedCheck::Invariant));
    }
    Ok(super::slo_outcome(
        record.slo.results.iter().filter(|r| !r.pass).count(),
        slo_exit,
    ))
}
