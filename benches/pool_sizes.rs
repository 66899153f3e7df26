//! goal-count across pool sizes under criterion: one server provisioned
//! once, data loaded once, and for each pool size a series of short cells,
//! each a fresh copy of the data. criterion's "time per iteration" is the
//! time per successful transaction (1 / goodput) of a cell, and its
//! throughput line is goodput, so `--save-baseline` / `--baseline` track
//! goodput per pool size across commits. Every cell is also appended to
//! results/<run>/cells.jsonl, like `contend run` does.
//!
//! `CONTEND_PROFILE=full` runs the full-size data (2 million goals) with
//! longer cells; the default quick profile keeps the whole bench to minutes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use contend::driver::{DriverSettings, LiveCounts, Load, Ramp};
use contend::pool::{PoolKind, PoolSettings};
use contend::provision::{provision, ProvisionOptions};
use contend::run::{append_cell, new_run_dir, run_cell, CellSettings};
use contend::workload::WorkloadOverrides;
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};

const POOL_SIZES: &[u32] = &[1, 2, 4, 8, 16, 32];
const CLIENTS: u32 = 64;

struct Profile {
    scale: f64,
    cell_s: f64,
    samples: usize,
}

fn profile() -> Profile {
    match std::env::var("CONTEND_PROFILE").as_deref() {
        Ok("full") => Profile {
            scale: 1.0,
            cell_s: 5.0,
            samples: 10,
        },
        _ => Profile {
            scale: 0.05,
            cell_s: 1.0,
            samples: 10,
        },
    }
}

fn prepare_machine() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/setup.sh");
    let status = std::process::Command::new("bash")
        .arg(script)
        .status()
        .expect("running scripts/setup.sh");
    assert!(status.success(), "scripts/setup.sh failed");
}

fn cell(pool_size: u32, profile: &Profile) -> CellSettings {
    CellSettings {
        workload: "goal-count".into(),
        overrides: WorkloadOverrides {
            scale: Some(profile.scale),
            ..Default::default()
        },
        pool: PoolSettings {
            kind: PoolKind::Deadpool,
            size: pool_size,
            acquire_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            statement_timeout: None,
        },
        instances: 1,
        driver: DriverSettings {
            load: Load::Closed { clients: CLIENTS },
            ramp: Ramp::Herd,
            warmup_s: 0.3,
            duration_s: profile.cell_s,
            max_retries: 3,
            seed: 1,
        },
    }
}

fn pool_sizes(c: &mut Criterion) {
    prepare_machine();
    let profile = profile();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let servers = runtime
        .block_on(provision(&ProvisionOptions {
            max_connections: Some(100),
            ..Default::default()
        }))
        .expect("provisioning servers for the bench");
    let results_dir: PathBuf = new_run_dir(
        &PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/results")),
        "bench-goal-count",
    );
    let mut summary = Vec::new();

    let mut group = c.benchmark_group("goal-count/deadpool");
    group
        .sample_size(profile.samples)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Elements(1));
    for &size in POOL_SIZES {
        let settings = cell(size, &profile);
        let mut goodputs = Vec::new();
        let mut p99s = Vec::new();
        group.bench_function(format!("pool_size/{size}"), |b| {
            b.iter_custom(|iterations| {
                let record = runtime
                    .block_on(run_cell(&settings, &servers, Arc::new(LiveCounts::default())))
                    .expect("running a cell");
                append_cell(&results_dir, &record).expect("appending the cell");
                let m = &record.metrics;
                goodputs.push(m.goodput_per_s);
                p99s.push(m.operations.iter().map(|op| op.end_to_end.p99_us).max().unwrap_or(0));
                // Time per successful transaction in this cell, times the
                // iterations criterion asked for.
                let per_transaction_s = m.measured_s / (m.ok.max(1) as f64);
                Duration::from_secs_f64(per_transaction_s * iterations as f64)
            })
        });
        summary.push((size, median(&mut goodputs), median_u64(&mut p99s)));
    }
    group.finish();
    runtime.block_on(servers.shutdown());

    println!(
        "\ngoal-count, deadpool, {CLIENTS} clients, scale {}: median per pool size",
        profile.scale
    );
    println!("{:>9} {:>14} {:>12}", "pool size", "goodput /s", "p99 ms");
    for (size, goodput, p99) in summary {
        println!("{size:>9} {goodput:>14.1} {:>12.1}", p99 as f64 / 1000.0);
    }
    println!("cells: {}", results_dir.join("cells.jsonl").display());
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn median_u64(values: &mut [u64]) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

criterion_group!(benches, pool_sizes);
criterion_main!(benches);
