//! `contend sweep`: servers once, every cell with a progress bar, a line per
//! finished cell; SIGINT (Ctrl-C), SIGTERM or SIGHUP keeps every finished
//! cell (they are already on disk), stops the servers and says how to
//! resume.

use std::sync::Arc;

use std::path::Path;

use crate::cli::{Format, SweepCommand, SweepPlanArgs};
use crate::cmd::progress::{say, sweep_bar, ProgressLines};
use crate::cmd::signals::Interrupts;
use crate::cmd::{FailedCheck, Outcome};
use contend::driver::LiveCounts;
use contend::exec::provision_for_run;
use contend::exec::{run_sweep, SweepEvent};
use contend::provision::{Backend, BackendChoice};
use contend::record::{SweepPlanRecord, PLAN_SCHEMA};
use contend::results::{changed_inputs, input_files, read_plan, remove_if_empty, write_plan, RunDir, PLAN_FILE};

pub async fn run(args: SweepCommand) -> anyhow::Result<Outcome> {
    let fresh = args.resume.is_none();
    let slo_exit = !args.no_slo_exit;
    let format = args.format;
    let (plan, run_dir) = match args.resume.clone() {
        Some(dir) => resume(args, &dir)?,
        None => start(args)?,
    };
    let dir = run_dir.path().to_path_buf();
    // A line cut by a crash goes before anything is appended after it; the
    // cell it was is measured again.
    if let Some(torn) = contend::results::repair_cells(&dir)? {
        eprintln!("contend: warning: {torn}; removed, and that cell is measured again");
    }
    let mut interrupts = Interrupts::listen()?;
    let mut servers = match provision_for_run(&dir, &plan.provision).await {
        Ok(servers) => servers,
        Err(error) => {
            // A new sweep that never got servers leaves no directory.
            if fresh {
                let _ = std::fs::remove_file(dir.join(PLAN_FILE));
                remove_if_empty(&dir);
            }
            return Err(error.into());
        }
    };
    servers.external_pooler = plan.external_pooler.clone();
    if fresh && plan.provision.backend == BackendChoice::Auto {
        // The plan names the backend auto chose, so a resume measures on
        // the same kind of server even if docker comes or goes meanwhile.
        if let Some(mut record) = read_plan(&dir)? {
            record.provision.backend = match servers.backend {
                Backend::Local => BackendChoice::Local,
                Backend::Docker => BackendChoice::Docker,
                Backend::External => BackendChoice::External,
            };
            write_plan(&dir, &record)?;
        }
    }
    let bar = sweep_bar(plan.plan.cells.len());
    let already = plan.plan.cells.len();
    let mut violated = false;
    let live = Arc::new(LiveCounts::default());
    // Lines inside long cells, above the bar (or alone, without a terminal).
    let lines = plan
        .plan
        .cells
        .first()
        .and_then(|cell| ProgressLines::chosen(plan.progress, &cell.settings))
        .map(|lines| lines.spawn(&live, bar.clone()));
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
        SweepEvent::Finished { number, record } => {
            violated |= !record.invariants_hold();
            if let Some(log) = &plan.aggregate_log {
                match super::aggregate_log::write(log, &dir, Some(number), &record.metrics) {
                    Ok(path) => say(&bar, format!("aggregate log: {}", path.display())),
                    Err(error) => say(
                        &bar,
                        format!("contend: error: aggregate log of cell {number}: {error:#}"),
                    ),
                }
            }
            say(&bar, contend::render::sweep_cell_line(&record));
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
    if let Some(lines) = lines {
        lines.abort();
    }
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
            match format {
                Format::Text => {
                    for recommendation in &run.recommendations {
                        print!("{}", contend::render::recommendation_text(recommendation));
                    }
                    let judging = &plan.recommend;
                    if let Some(pooler) = contend::analysis::recommend_pooler(
                        &run.cells,
                        judging.goodput_share,
                        judging.p99_slo_ms,
                        judging.headroom,
                    ) {
                        print!("{}", contend::render::pooler_recommendation_text(&pooler));
                    }
                }
                Format::Json => super::print_json(&run)?,
                Format::Csv => print!("{}", contend::render::cells_csv(&run.cells)?),
            }
            eprintln!("contend: report: {}", written.index.display());
            Ok(if outcome.failed > 0 {
                Outcome::FailedCheck(FailedCheck::ServerLost)
            } else if violated {
                Outcome::FailedCheck(FailedCheck::Invariant)
            } else {
                // Every cell of the run, those of an earlier invocation too:
                // the sweep's objectives are judged as a whole.
                let failed = run
                    .cells
                    .iter()
                    .flat_map(|c| &c.slo.results)
                    .filter(|r| !r.pass)
                    .count();
                super::slo_outcome(failed, slo_exit)
            })
        }
    }
}

/// A new sweep: its directory, and its plan written there before any
/// server starts.
fn start(args: SweepCommand) -> anyhow::Result<(SweepPlanArgs, RunDir)> {
    let plan = SweepPlanArgs::try_from(args)?;
    let workload = plan
        .plan
        .cells
        .first()
        .map(|c| c.settings.workload.clone())
        .unwrap_or_default();
    let inputs = input_files(&plan.plan.cells)?;
    let run_dir = RunDir::create(&plan.results_root, &format!("sweep-{workload}"))?;
    let record = SweepPlanRecord {
        schema: PLAN_SCHEMA.to_string(),
        contend_version: env!("CARGO_PKG_VERSION").to_string(),
        written_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        cells: plan.plan.cells.clone(),
        // URLs may hold a password: a resume takes them from its own flags.
        provision: contend::provision::ProvisionOptions {
            database_url: None,
            redis_url: None,
            ..plan.provision.clone()
        },
        inputs,
    };
    write_plan(run_dir.path(), &record).inspect_err(|_| remove_if_empty(run_dir.path()))?;
    Ok((plan, run_dir))
}

/// `--resume DIR`: the directory locked, its plan read, the flags beside
/// it and the files its cells read checked against the plan.
fn resume(args: SweepCommand, dir: &Path) -> anyhow::Result<(SweepPlanArgs, RunDir)> {
    let run_dir = RunDir::open(dir)?;
    let Some(run) = read_plan(dir)? else {
        anyhow::bail!(
            "--resume {}: it has no plan.json (not a sweep, or one started by a contend that did not record its plan), so its settings cannot be checked and resuming could mix cells measured differently; start a new sweep (contend report {0} still reports it)",
            dir.display()
        );
    };
    let plan = args.resumed(dir, &run)?;
    let changed = changed_inputs(&run.inputs);
    anyhow::ensure!(
        changed.is_empty(),
        "--resume {}: {}; restore it, or start a new sweep",
        dir.display(),
        changed.join("; ")
    );
    Ok((plan, run_dir))
}
