//! `contend sweep`: servers once, every cell with a progress bar, a line per
//! finished cell; SIGINT (Ctrl-C), SIGTERM or SIGHUP keeps every finished
//! cell (they are already on disk), stops the servers and says how to
//! resume.

use std::sync::Arc;

use crate::cli::{SweepCommand, SweepPlanArgs};
use crate::cmd::progress::{say, sweep_bar};
use crate::cmd::signals::Interrupts;
use crate::cmd::{FailedCheck, Outcome};
use contend::driver::LiveCounts;
use contend::exec::{run_sweep, SweepEvent};
use contend::{
    exec::provision_for_run,
    results::{new_run_dir, prepare_run_dir},
};

pub async fn run(args: SweepCommand) -> anyhow::Result<Outcome> {
    let plan = SweepPlanArgs::try_from(args)?;
    let workload = plan
        .plan
        .cells
        .first()
        .map(|c| c.settings.workload.clone())
        .unwrap_or_default();
    let dir = plan
        .resume
        .clone()
        .unwrap_or_else(|| new_run_dir(&plan.results_root, &format!("sweep-{workload}")));
    prepare_run_dir(&dir)?;
    let mut interrupts = Interrupts::listen()?;
    let mut servers = provision_for_run(&dir, &plan.provision).await?;
    let bar = sweep_bar(plan.plan.cells.len());
    let already = plan.plan.cells.len();
    let mut violated = false;
    let live = Arc::new(LiveCounts::default());
    let sweep = run_sweep(&plan.plan, &mut servers, &dir, live, |event| match event {
        SweepEvent::Starting { index, of, key } => {
            if index == 0 {
                bar.set_position((already - of) as u64);
            }
            bar.set_message(key);
        }
        SweepEvent::Restarted {
            max_connections,
            took_s,
        } => {
            say(
                &bar,
                format!("server restarted with max_connections {max_connections} in {took_s:.2} s"),
            );
        }
        SweepEvent::Finished { record } => {
            violated |= !record.invariants_hold();
            say(
                &bar,
                format!(
                    "pool {:>3} × {} · max_connections {:>4} · goodput {:>8.1}/s · p99 {:>8.1} ms · errors {}",
                    record.settings.pool.size,
                    record.settings.instances,
                    record.postgres.max_connections,
                    record.business.goodput_per_s,
                    record.metrics.worst_p99_ms(),
                    contend::render::errors_text(&record.metrics.errors_by_class)
                ),
            );
            bar.inc(1);
        }
        SweepEvent::Failed { failed } => {
            say(&bar, format!("FAILED {}", contend::render::failed_cell_line(&failed)));
            bar.inc(1);
        }
    });
    let outcome = tokio::select! {
        outcome = sweep => Ok(outcome),
        signal = interrupts.received() => Err(signal),
    };
    bar.finish_and_clear();
    servers.shutdown().await;
    match outcome {
        Err(signal) => {
            eprintln!(
                "contend: interrupted by {signal}; servers stopped; finished cells are in {}; continue with --resume {}",
                dir.join("cells.jsonl").display(),
                dir.display()
            );
            Ok(Outcome::Interrupted(signal))
        }
        Ok(result) => {
            let outcome = result?;
            if outcome.failed > 0 {
                eprintln!(
                    "contend: sweep done but {} cell(s) failed (see {}); run them again with --resume {}",
                    outcome.failed,
                    dir.join("failed.jsonl").display(),
                    dir.display()
                );
            } else {
                eprintln!("contend: sweep complete: {}", dir.join("cells.jsonl").display());
            }
            let (run, written) = contend::exec::publish(&dir, &plan.recommend)?;
            for recommendation in &run.recommendations {
                print!("{}", contend::render::recommendation_text(recommendation));
            }
            eprintln!("contend: report: {}", written.index.display());
            Ok(if outcome.failed > 0 {
                Outcome::FailedCheck(FailedCheck::ServerLost)
            } else if violated {
                Outcome::FailedCheck(FailedCheck::Invariant)
            } else {
                Outcome::Ok
            })
        }
    }
}
