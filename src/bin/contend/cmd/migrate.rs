//! `contend migrate`: servers, the migration under load with a progress
//! line, the summary, and results/<run>/migration.json.

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::cli::{MigrateCommand, MigratePlan};
use contend::driver::LiveCounts;
use contend::render::migration_text;
use contend::{
    exec::provision_for_run,
    results::{new_run_dir, prepare_run_dir, remove_if_empty},
};
use contend::{exec::run_migrate, results::write_migration};
use indicatif::{ProgressBar, ProgressStyle};

/// Exit status when the migration failed or left an invalid index.
const MIGRATION_FAILED: u8 = 3;

pub async fn run(args: MigrateCommand) -> anyhow::Result<ExitCode> {
    let plan = MigratePlan::try_from(args).map_err(anyhow::Error::msg)?;
    let dir = new_run_dir(&plan.results_root, &format!("migrate-{}", plan.settings.cell.workload));
    prepare_run_dir(&dir)?;
    let servers = provision_for_run(&dir, &plan.provision).await?;
    let live = Arc::new(LiveCounts::default());
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let ticker = {
        let live = Arc::clone(&live);
        let bar = bar.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(100));
            loop {
                interval.tick().await;
                let (ok, errors) = (live.ok.load(Ordering::Relaxed), live.errors.load(Ordering::Relaxed));
                bar.set_message(format!("migration under load · ok {ok} · errors {errors}"));
                bar.tick();
            }
        })
    };
    let outcome = run_migrate(&plan.settings, &servers, Arc::clone(&live)).await;
    ticker.abort();
    bar.finish_and_clear();
    servers.shutdown().await;
    let record = outcome.inspect_err(|_| remove_if_empty(&dir))?;
    let path = write_migration(&dir, "migration.json", &record)?;
    print!("{}", migration_text(&record));
    eprintln!("contend: migration record written to {}", path.display());
    let (_, written) = contend::exec::publish(&dir, &Default::default())?;
    eprintln!("contend: report: {}", written.index.display());
    if !record.succeeded {
        return Ok(ExitCode::from(MIGRATION_FAILED));
    }
    if record.invariants.iter().any(|c| c.violated()) {
        eprintln!("contend: an invariant was violated (see above)");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
