//! `contend migrate`: servers, the migration under load with a progress
//! line, the summary, and results/<run>/migration.json. SIGINT, SIGTERM or
//! SIGHUP abandons the migration (nothing is recorded) and stops the
//! servers.

use std::sync::Arc;

use crate::cli::{MigrateCommand, MigratePlan};
use crate::cmd::progress::{LiveBar, ProgressLines};
use crate::cmd::signals::Interrupts;
use crate::cmd::{FailedCheck, Outcome};
use contend::driver::LiveCounts;
use contend::render::{migration_text, scorecard_text};
use contend::{
    exec::provision_for_run,
    results::{remove_if_empty, RunDir},
};
use contend::{exec::run_migrate, results::write_migration};

pub async fn run(args: MigrateCommand) -> anyhow::Result<Outcome> {
    let slo_exit = !args.no_slo_exit;
    let plan = MigratePlan::try_from(args)?;
    let run_dir = RunDir::create(&plan.results_root, &format!("migrate-{}", plan.settings.cell.workload))?;
    let dir = run_dir.path().to_path_buf();
    let mut interrupts = Interrupts::listen()?;
    let servers = provision_for_run(&dir, &plan.provision).await?;
    let live = Arc::new(LiveCounts::default());
    let progress = LiveBar::spinner(
        &live,
        "migration under load · ",
        ProgressLines::chosen(plan.progress, &plan.settings.cell),
    );
    let outcome = tokio::select! {
        outcome = run_migrate(&plan.settings, &servers, Arc::clone(&live)) => Ok(outcome),
        signal = interrupts.received() => Err(signal),
    };
    progress.finish();
    servers.shutdown().await;
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(signal) => {
            remove_if_empty(&dir);
            eprintln!("contend: interrupted by {signal}; servers stopped; nothing of the migration is recorded");
            return Ok(Outcome::Interrupted(signal));
        }
    };
    let record = outcome.inspect_err(|_| remove_if_empty(&dir))?;
    let path = write_migration(&dir, "migration.json", &record)?;
    print!("{}", migration_text(&record));
    if !record.slo.results.is_empty() {
        println!(
            "\nSLO scorecard over the whole foreground run (workloads/{}.toml [slo]):",
            record.settings.cell.workload
        );
        print!("{}", scorecard_text(&record.slo.results));
    }
    eprintln!("contend: migration record written to {}", path.display());
    let (_, written) = contend::exec::publish(&dir, &Default::default())?;
    eprintln!("contend: report: {}", written.index.display());
    if !record.succeeded {
        return Ok(Outcome::MigrationFailed);
    }
    if record.invariants.iter().any(|c| c.violated()) {
        eprintln!("contend: an invariant was violated (see above)");
        return Ok(Outcome::FailedCheck(FailedCheck::Invariant));
    }
    Ok(super::slo_outcome(
        record.slo.results.iter().filter(|r| !r.pass).count(),
        slo_exit,
    ))
}
