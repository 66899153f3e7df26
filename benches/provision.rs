//! What getting servers costs: a whole local start (initdb, postgres,
//! redis-server) and stop, and a `max_connections` change between cells,
//! local (restart on the same data directory) and docker (a fresh
//! container). A sweep pays the change once per `max_connections` value, so
//! this is the overhead it adds.
//!
//! Runs scripts/setup.sh first, so a fresh machine needs nothing else.

use std::time::{Duration, Instant};

use contend::provision::{provision, BackendChoice, ProvisionOptions};
use criterion::{criterion_group, criterion_main, Criterion};

#[path = "support/mod.rs"]
mod support;

fn prepare_machine() {
    support::prepare_machine().expect("preparing the machine");
}

fn options(backend: BackendChoice) -> ProvisionOptions {
    ProvisionOptions {
        backend,
        max_connections: Some(50),
        ..Default::default()
    }
}

fn provisioning(c: &mut Criterion) {
    prepare_machine();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut group = c.benchmark_group("provision");
    group.sample_size(10).warm_up_time(Duration::from_millis(500));

    group.measurement_time(Duration::from_secs(10));
    group.bench_function("local/start_and_stop", |b| {
        b.iter_custom(|iterations| {
            let started = Instant::now();
            for _ in 0..iterations {
                runtime.block_on(async {
                    provision(&options(BackendChoice::Local))
                        .await
                        .unwrap()
                        .shutdown()
                        .await
                });
            }
            started.elapsed()
        })
    });

    for backend in [BackendChoice::Local, BackendChoice::Docker] {
        let name = format!(
            "{}/max_connections_change",
            if backend == BackendChoice::Local {
                "local"
            } else {
                "docker"
            }
        );
        let mut servers = runtime.block_on(provision(&options(backend))).unwrap();
        let mut next = 50;
        // A fresh container runs initdb again: seconds, not milliseconds.
        let seconds = if backend == BackendChoice::Local { 10 } else { 30 };
        group.measurement_time(Duration::from_secs(seconds));
        group.bench_function(&name, |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    next = if next == 50 { 60 } else { 50 };
                    total += runtime.block_on(servers.set_max_connections(next)).unwrap();
                }
                total
            })
        });
        runtime.block_on(servers.shutdown());
    }
    group.finish();
}

criterion_group!(benches, provisioning);
criterion_main!(benches);
