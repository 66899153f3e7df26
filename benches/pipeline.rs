//! `cargo bench`: contend's whole pipeline on this machine's servers.
//!
//! 1. provision PostgreSQL and Redis once (local binaries: a max_connections
//!    change is a restart on the same data, not a fresh container);
//! 2. for each workload, a pool-size sweep at two max_connections settings:
//!    goal-count's under criterion (each criterion sample is one cell on a
//!    fresh copy of the data; "time per iteration" is the time per
//!    successful transaction, 1 / goodput, and the throughput line is
//!    goodput, so `--save-baseline NAME` / `--baseline NAME` track goodput
//!    per cell), the others one cell per size in the quick profile;
//! 3. for goal-count and wallet-transfer, their migration under load:
//!    EXPLAIN ANALYZE before, CREATE INDEX CONCURRENTLY while the workload
//!    runs, validity checked, VACUUM, EXPLAIN after;
//! 4. recommendations and the report (run.json, summary.md, plots,
//!    index.html) in results/<stamp>-bench/, whose index.html path is the
//!    last line printed.
//!
//! The quick profile (default) keeps the whole `cargo bench` within ten
//! minutes on a 2-core machine, compile included; `CONTEND_PROFILE=full`
//! runs full-size data, longer cells, more pool sizes and a third
//! max_connections.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use contend::client::PoolSettings;
use contend::driver::{DriverSettings, LiveCounts, Load, Ramp};
use contend::provision::{provision, BackendChoice, ProvisionOptions, Servers};
use contend::workload::WorkloadOverrides;
use contend::{
    exec::run_cell,
    record::CellSettings,
    results::{append_cell, RunDir},
};
use contend::{exec::run_migrate, record::MigrateSettings, results::write_migration};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use tokio::runtime::Runtime;

#[path = "support/mod.rs"]
mod support;

/// One workload's part of the pipeline.
struct WorkloadPlan {
    name: &'static str,
    scale: f64,
    clients: u32,
    pool_sizes: &'static [u32],
    /// Swept under criterion (ten cells per size, baselines tracked), or
    /// one cell per size.
    criterion: bool,
    /// Scale of the data the migration runs on (bigger, so the build
    /// lasts long enough to be felt); none: no migration.
    migration_scale: Option<f64>,
}

struct Profile {
    name: &'static str,
    workloads: Vec<WorkloadPlan>,
    max_connections: &'static [u32],
    cell_s: f64,
    migration_window_s: f64,
    samples: usize,
}

fn profile() -> Profile {
    match std::env::var("CONTEND_PROFILE").as_deref() {
        Ok("full") => Profile {
            name: "full",
            workloads: vec![
                WorkloadPlan {
                    name: "goal-count",
                    scale: 1.0,
                    clients: 128,
                    pool_sizes: &[1, 2, 4, 8, 16, 32, 64, 128],
                    criterion: true,
                    migration_scale: Some(1.0),
                },
                WorkloadPlan {
                    name: "wallet-transfer",
                    scale: 10.0,
                    clients: 64,
                    pool_sizes: &[1, 2, 4, 8, 16, 32, 64],
                    criterion: true,
                    migration_scale: Some(10.0),
                },
                WorkloadPlan {
                    name: "seat-reservation",
                    scale: 1.0,
                    clients: 64,
                    pool_sizes: &[1, 2, 4, 8, 16, 32, 64],
                    criterion: true,
                    migration_scale: None,
                },
            ],
            max_connections: &[20, 100, 300],
            cell_s: 3.0,
            migration_window_s: 10.0,
            samples: 10,
        },
        _ => Profile {
            name: "quick",
            workloads: vec![
                WorkloadPlan {
                    name: "goal-count",
                    scale: 0.05,
                    clients: 64,
                    pool_sizes: &[1, 4, 16, 64],
                    criterion: true,
                    migration_scale: Some(0.5),
                },
                WorkloadPlan {
                    name: "wallet-transfer",
                    scale: 1.0,
                    clients: 32,
                    pool_sizes: &[2, 8, 32],
                    criterion: false,
                    migration_scale: Some(5.0),
                },
                WorkloadPlan {
                    name: "seat-reservation",
                    scale: 0.5,
                    clients: 32,
                    pool_sizes: &[2, 8, 32],
                    criterion: false,
                    migration_scale: None,
                },
            ],
            max_connections: &[20, 100],
            cell_s: 0.5,
            migration_window_s: 3.0,
            samples: 10,
        },
    }
}

fn prepare_machine() {
    support::prepare_machine().expect("preparing the machine");
}

fn cell(plan: &WorkloadPlan, scale: f64, pool_size: u32, clients: u32, duration_s: f64) -> CellSettings {
    CellSettings {
        workload: plan.name.into(),
        overrides: WorkloadOverrides {
            scale: Some(scale),
            ..Default::default()
        },
        pool: PoolSettings {
            size: pool_size,
            ..Default::default()
        },
        driver: DriverSettings {
            load: Load::Closed { clients },
            ramp: Ramp::Herd,
            warmup_s: 0.2,
            duration_s,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn sweep(c: &mut Criterion, runtime: &Runtime, servers: &mut Servers, profile: &Profile, results: &std::path::Path) {
    for plan in profile.workloads.iter().filter(|p| p.criterion) {
        let mut group = c.benchmark_group(plan.name);
        group
            .sample_size(profile.samples)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_millis(1))
            .measurement_time(Duration::from_secs(5))
            .throughput(Throughput::Elements(1));
        for &max_connections in profile.max_connections {
            runtime
                .block_on(servers.set_max_connections(max_connections))
                .expect("restarting PostgreSQL with a new max_connections");
            for &pool_size in plan.pool_sizes {
                let settings = cell(plan, plan.scale, pool_size, plan.clients, profile.cell_s);
                group.bench_function(format!("max_connections={max_connections}/pool={pool_size}"), |b| {
                    b.iter_custom(|iterations| {
                        let record = runtime
                            .block_on(run_cell(&settings, servers, Arc::new(LiveCounts::default())))
                            .expect("running a cell");
                        append_cell(results, &record).expect("appending the cell");
                        // Time per successful transaction in this cell,
                        // times the iterations criterion asked for.
                        let m = &record.metrics;
                        let per_success_s = m.measured_s / (record.business.successes.max(1) as f64);
                        Duration::from_secs_f64(per_success_s * iterations as f64)
                    })
                });
            }
        }
        group.finish();
    }
    // The other workloads: one cell per pool size and max_connections.
    for plan in profile.workloads.iter().filter(|p| !p.criterion) {
        for &max_connections in profile.max_connections {
            runtime
                .block_on(servers.set_max_connections(max_connections))
                .expect("restarting PostgreSQL with a new max_connections");
            for &pool_size in plan.pool_sizes {
                let settings = cell(plan, plan.scale, pool_size, plan.clients, profile.cell_s * 2.0);
                let record = runtime
                    .block_on(run_cell(&settings, servers, Arc::new(LiveCounts::default())))
                    .expect("running a cell");
                append_cell(results, &record).expect("appending the cell");
                println!(
                    "{} · max_connections {max_connections} · pool {pool_size}: goodput {:.1}/s, errors {:?}",
                    plan.name, record.business.goodput_per_s, record.metrics.errors_by_class
                );
            }
        }
    }
}

fn migrations(runtime: &Runtime, servers: &mut Servers, profile: &Profile, results: &std::path::Path) {
    runtime
        .block_on(servers.set_max_connections(100))
        .expect("restarting PostgreSQL for the migrations");
    for plan in &profile.workloads {
        let Some(scale) = plan.migration_scale else { continue };
        let started = Instant::now();
        let settings = MigrateSettings {
            cell: cell(plan, scale, 8, 8, profile.migration_window_s),
            ..Default::default()
        };
        let record = runtime
            .block_on(run_migrate(&settings, servers, Arc::new(LiveCounts::default())))
            .expect("running the migration under load");
        write_migration(results, &format!("migration-{}.json", plan.name), &record).expect("writing the migration");
        print!("{}", contend::render::migration_text(&record));
        println!("({} migration: {:.1} s)\n", plan.name, started.elapsed().as_secs_f64());
    }
}

fn pipeline(c: &mut Criterion) {
    prepare_machine();
    let profile = profile();
    let started = Instant::now();
    let runtime = Runtime::new().expect("starting the async runtime");
    let mut servers = runtime
        .block_on(provision(&ProvisionOptions {
            backend: BackendChoice::Local,
            max_connections: Some(profile.max_connections[0]),
            ..Default::default()
        }))
        .expect("provisioning servers for the bench");
    let run_dir = RunDir::create(&PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/results")), "bench")
        .expect("creating the bench's run directory");
    let results: PathBuf = run_dir.path().to_path_buf();
    println!(
        "contend bench, {} profile: results in {}",
        profile.name,
        results.display()
    );
    sweep(c, &runtime, &mut servers, &profile, &results);
    migrations(&runtime, &mut servers, &profile, &results);
    runtime.block_on(servers.shutdown());

    let (run, written) = contend::exec::publish(&results, &Default::default()).expect("writing the report");
    for recommendation in &run.recommendations {
        print!("{}", contend::render::recommendation_text(recommendation));
    }
    println!(
        "\ncontend bench ({} profile) took {:.0} s; cells: {}",
        profile.name,
        started.elapsed().as_secs_f64(),
        results.join("cells.jsonl").display()
    );
    println!("report: {}", written.index.display());
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
