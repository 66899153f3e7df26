//! `contend run`: servers, one cell with a progress bar, the summary, and
//! the record appended to results.

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::cli::{RunCommand, RunPlan};
use contend::driver::LiveCounts;
use contend::render::cell_summary;
use contend::{
    exec::{provision_for_run, run_cell, RunError},
    results::{append_cell, new_run_dir, prepare_run_dir, remove_if_empty},
};
use contend::{record::FailedCell, results::append_failed};
use indicatif::{ProgressBar, ProgressStyle};

pub async fn run(args: RunCommand) -> anyhow::Result<ExitCode> {
    let plan = RunPlan::try_from(args).map_err(anyhow::Error::msg)?;
    let dir = new_run_dir(&plan.results_root, &plan.cell.workload);
    prepare_run_dir(&dir)?;
    let servers = provision_for_run(&dir, &plan.provision).await?;
    let live = Arc::new(LiveCounts::default());
    let total_s = plan.cell.driver.warmup_s + plan.cell.driver.duration_s;
    let bar = ProgressBar::new((total_s * 10.0) as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} [{bar:30}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let ticker = {
        let live = Arc::clone(&live);
        let bar = bar.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(100));
            let mut started = None;
            loop {
                interval.tick().await;
                let (ok, errors) = (live.ok.load(Ordering::Relaxed), live.errors.load(Ordering::Relaxed));
                if ok + errors > 0 && started.is_none() {
                    started = Some(std::time::Instant::now());
                }
                if let Some(t) = started {
                    bar.set_position((t.elapsed().as_secs_f64() * 10.0) as u64);
                }
                bar.set_message(format!("ok {ok} · errors {errors}"));
            }
        })
    };
    let started_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let outcome = run_cell(&plan.cell, &servers, Arc::clone(&live)).await;
    ticker.abort();
    bar.finish_and_clear();
    let max_connections = servers.postgres.max_connections;
    servers.shutdown().await;
    let record = match outcome {
        Ok(record) => record,
        Err(RunError::ServerLost(loss)) => {
            let failed = FailedCell::new(&plan.cell, max_connections, started_at, *loss, None);
            let path = append_failed(&dir, &failed)?;
            eprintln!(
                "contend: the cell failed: {}",
                contend::render::failed_cell_line(&failed)
            );
            eprintln!(
                "contend: recorded in {}; nothing of it is a measurement",
                path.display()
            );
            return Ok(ExitCode::from(1));
        }
        Err(error) => {
            remove_if_empty(&dir);
            return Err(error.into());
        }
    };
    let path = append_cell(&dir, &record)?;
    println!("{}", cell_summary(&record));
    eprintln!("contend: cell appended to {}", path.display());
    let (_, written) = contend::exec::publish(&dir, &Default::default())?;
    eprintln!("contend: report: {}", written.index.display());
    if record.invariants_hold() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("contend: an invariant was violated (see above); the cell is recorded as failed");
        Ok(ExitCode::from(1))
    }
}
