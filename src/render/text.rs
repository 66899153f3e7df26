//! Text for people: the terminal summary of a cell.
//!
//! Reads finished records only; never measures.

use std::fmt::Write;

use crate::driver::{DriverSettings, Load, Ramp};
use crate::record::{Bottleneck, CellRecord, Diagnosis};
use crate::{client::ErrorClass, measure::LatencySummary};

fn ms(us: u64) -> String {
    format!("{:.1}", us as f64 / 1000.0)
}

fn class_of(key: &str) -> ErrorClass {
    match key {
        "pool_timeout" => ErrorClass::PoolTimeout,
        "connection_failed" => ErrorClass::ConnectionFailed,
        "connection_lost" => ErrorClass::ConnectionLost,
        "too_many_open_files" => ErrorClass::ClientOutOfFiles,
        "other" => ErrorClass::Other,
        code => ErrorClass::from_sqlstate(code),
    }
}

fn label_of(key: &str) -> String {
    class_of(key).label()
}

/// Where a transaction's time went in a cell through a pooler, means in
/// milliseconds.
pub(super) struct TimeSplit {
    /// Waiting for the app's own pool (the clients' timings).
    pub app_pool_wait_ms: f64,
    /// Waiting in the pooler for a server connection (its SHOW STATS).
    pub pooler_wait_ms: f64,
    /// On a server connection (its SHOW STATS transaction time less the
    /// wait).
    pub in_db_ms: f64,
    /// The clients' own BEGIN-to-COMMIT time, which holds the last two.
    pub client_in_db_ms: f64,
    /// Transactions PgBouncer counted.
    pub pooled_xacts: u64,
}

/// The [`TimeSplit`] of a cell, when it has attempts and the pooler
/// counted transactions.
pub(super) fn time_split(record: &CellRecord, pooler: &crate::record::PoolerCell) -> Option<TimeSplit> {
    let (mut count, mut pool_wait, mut in_db) = (0u64, 0.0, 0.0);
    for op in &record.metrics.operations {
        count += op.in_db.count;
        pool_wait += op.pool_wait.mean_us * op.pool_wait.count as f64;
        in_db += op.in_db.mean_us * op.in_db.count as f64;
    }
    let totals = &pooler.samples.totals;
    if count == 0 || totals.xacts == 0 {
        return None;
    }
    let pooler_wait = totals.wait_per_xact_us();
    Some(TimeSplit {
        app_pool_wait_ms: pool_wait / count as f64 / 1000.0,
        pooler_wait_ms: pooler_wait / 1000.0,
        in_db_ms: (totals.xact_time_per_xact_us() - pooler_wait).max(0.0) / 1000.0,
        client_in_db_ms: in_db / count as f64 / 1000.0,
        pooled_xacts: totals.xacts,
    })
}

/// The pooler's lines: what it was, its queue, and where a transaction's
/// time went: the app pool's wait from the clients' timings; the pooler's
/// wait and the time on a server connection from its SHOW STATS (its
/// transaction time counts from the client's first query, so it holds the
/// wait, which is taken out).
fn pooler_text(out: &mut String, record: &CellRecord, pooler: &crate::record::PoolerCell) {
    let config = |key: &str| pooler.info.config.get(key).map_or("?", String::as_str);
    let origin = match pooler.info.origin {
        crate::provision::ServerOrigin::External => "external",
        _ => "started by contend",
    };
    let samples = &pooler.samples;
    let _ = writeln!(
        out,
        "\npooler: {} ({origin}) · {} mode · pool {} + reserve {} · max_client_conn {} · {} samples: peak cl_waiting {} · peak maxwait {} ms{}",
        pooler.info.version,
        config("pool_mode"),
        config("default_pool_size"),
        config("reserve_pool_size"),
        config("max_client_conn"),
        samples.samples.len(),
        samples.max_cl_waiting(),
        ms(samples.max_wait_us()),
        pooler.cpu_s.map_or(String::new(), |cpu| format!(" · its CPU {cpu:.2} s")),
    );
    if let Some(split) = time_split(record, pooler) {
        let _ = writeln!(
            out,
            "where a transaction's time went (means): app pool wait {:.2} ms · pooler wait {:.2} ms · in the database {:.2} ms (PgBouncer's SHOW STATS over {} transactions; the clients timed {:.2} ms from BEGIN to COMMIT; the pooler's wait also counts clients logging in while every server connection was busy)",
            split.app_pool_wait_ms, split.pooler_wait_ms, split.in_db_ms, split.pooled_xacts, split.client_in_db_ms,
        );
    }
    if !samples.sampling_errors.is_empty() {
        let _ = writeln!(out, "pooler sampling errors: {}", samples.sampling_errors.join("; "));
    }
}

fn load_text(driver: &DriverSettings) -> String {
    match driver.load {
        Load::Closed { clients } => match driver.ramp {
            Ramp::Herd => format!("{clients} clients, all starting at once"),
            Ramp::Linear { over_s } => format!("{clients} clients started over {over_s} s"),
        },
        Load::Open {
            rate_per_s,
            max_in_flight,
        } => format!("open loop at {rate_per_s}/s (at most {max_in_flight} in flight)"),
    }
}

/// The bottleneck class in a few words.
pub fn bottleneck_name(bottleneck: Bottleneck) -> &'static str {
    match bottleneck {
        Bottleneck::Pool => "the pool",
        Bottleneck::Connections => "connections",
        Bottleneck::ServerLocks => "the server's locks",
        Bottleneck::ServerIo => "the server's I/O",
        Bottleneck::ServerCpu => "the server's CPU",
        Bottleneck::Client => "contend itself (the client)",
        Bottleneck::None => "none",
    }
}

/// The diagnosis in one sentence: the class, then the figures that decided it.
pub fn diagnosis_text(d: &Diagnosis) -> String {
    let pct = |share: f64| format!("{:.0}%", share * 100.0);
    let waits = |kinds: &[&str]| {
        let parts: Vec<String> = kinds
            .iter()
            .filter_map(|k| {
                d.wait_shares
                    .get(*k)
                    .filter(|s| **s > 0.0)
                    .map(|s| format!("{k} {}", pct(*s)))
            })
            .collect();
        parts.join(", ")
    };
    let share_of = |kinds: &[&str]| {
        kinds
            .iter()
            .map(|k| d.wait_shares.get(*k).copied().unwrap_or(0.0))
            .sum::<f64>()
    };
    let held = match d.pool_connections {
        Some(n) => format!("one of {n} pooled connection(s)"),
        None => "a connection".to_string(),
    };
    let why = match d.bottleneck {
        Bottleneck::Pool => format!(
            "{} of each attempt's {:.2} ms waiting for {held}{}, while the database was busy on {:.1} connection(s) on average (throughput × time in the database)",
            pct(d.time_shares.pool_wait),
            d.mean_end_to_end_ms,
            if d.pool_timeout_share > 0.0 {
                format!(", {} of attempts timing out", pct(d.pool_timeout_share))
            } else {
                String::new()
            },
            d.busy_in_db
        ),
        Bottleneck::Connections => {
            let named: Vec<&str> = d
                .refused_classes
                .iter()
                .map(|class| match class.as_str() {
                    "53300" => "53300: the server's max_connections",
                    "too_many_open_files" => "contend out of file descriptors",
                    "connection_failed" => "connections that could not be opened",
                    other => other,
                })
                .collect();
            let why = if named.is_empty() {
                String::new()
            } else {
                format!(" ({})", named.join(", "))
            };
            format!(
                "{} of attempts were refused a connection{why} and opening connections took {} of the time",
                pct(d.refused_share),
                pct(d.time_shares.connect)
            )
        }
        Bottleneck::ServerLocks => format!(
            "{} of active backends waited on locks ({}); {} of the time was in the database",
            pct(share_of(&["Lock", "LWLock"])),
            waits(&["Lock", "LWLock"]),
            pct(d.time_shares.in_db)
        ),
        Bottleneck::ServerIo => format!(
            "{} of active backends waited on I/O; {} of the time was in the database",
            pct(share_of(&["IO"])),
            pct(d.time_shares.in_db)
        ),
        Bottleneck::ServerCpu => format!(
            "{} of the time was in the database with {} of active backends on CPU, {:.1} active on average",
            pct(d.time_shares.in_db),
            pct(share_of(&["CPU"])),
            d.mean_active
        ),
        Bottleneck::Client => format!(
            "its CPU was busy {} of the time on each driver thread, so these figures understate what the server can do (more --driver-threads, or more load machines)",
            pct(d.client_cpu_share.unwrap_or(0.0))
        ),
        Bottleneck::None => format!(
            "nothing saturated: pool wait {}, in the database {}, the client's own time {} of each attempt",
            pct(d.time_shares.pool_wait),
            pct(d.time_shares.in_db),
            pct(d.time_shares.outside)
        ),
    };
    format!("{} — {why}", bottleneck_name(d.bottleneck))
}

/// Where the mean attempt's time went, by clock.
fn time_shares_text(d: &Diagnosis) -> String {
    let t = &d.time_shares;
    let mut text = format!(
        "{:.2} ms an attempt: pool wait {:.0}% · connect {:.0}% · in the database {:.0}% · outside {:.0}% · {:.1} active backends on average",
        d.mean_end_to_end_ms,
        t.pool_wait * 100.0,
        t.connect * 100.0,
        t.in_db * 100.0,
        t.outside * 100.0,
        d.mean_active
    );
    if let Some(share) = d.client_cpu_share {
        let _ = write!(text, " · contend's CPU {:.0}% of its driver threads", share * 100.0);
    }
    text
}

/// A sweep's line for a finished cell: its pools, max_connections,
/// goodput, worst p99 and errors, aligned across cells.
pub fn sweep_cell_line(record: &CellRecord) -> String {
    let mut pools = match record.settings.pool.kind {
        crate::client::PoolKind::None => format!("no pool × {}", record.settings.instances),
        _ => format!("pool {:>3} × {}", record.settings.pool.size, record.settings.instances),
    };
    if let Some(crate::provision::CellPooler::PgBouncer(pooler)) = &record.settings.pooler {
        let _ = write!(pools, " · pgbouncer {}", pooler.pool_size);
    }
    let mut line = format!(
        "{pools} · max_connections {:>4} · goodput {:>8.1}/s · p99 {:>8.1} ms · errors {}",
        record.postgres.max_connections,
        record.business.goodput_per_s,
        record.metrics.worst_p99_ms(),
        errors_text(&record.metrics.errors_by_class)
    );
    if let Some(diagnosis) = &record.diagnosis {
        let _ = write!(line, " · bottleneck: {}", bottleneck_name(diagnosis.bottleneck));
    }
    line
}

/// The pools as the cell had them: `pool deadpool × 2 instance(s) of size
/// 10`, or, with `--pool none`, what a cell without a pool does.
fn pool_text(settings: &crate::record::CellSettings) -> String {
    match settings.pool.kind {
        crate::client::PoolKind::None => format!(
            "no pool: a connection per transaction × {} instance(s)",
            settings.instances
        ),
        kind => format!(
            "pool {kind} × {} instance(s) of size {}",
            settings.instances, settings.pool.size
        ),
    }
}

/// The measured window and the drain after it (what was in flight at the
/// window's end, which rates also divide by), apart: `6.0 s measured + 0.4
/// s drain`; a cell stopped early says so.
fn measured_text(driver: &DriverSettings, measured_s: f64) -> String {
    // Below a millisecond short of the window: stopped before its end.
    if measured_s + 0.001 < driver.duration_s {
        format!(
            "{measured_s:.1} s measured (stopped early; {:.1} s planned)",
            driver.duration_s
        )
    } else {
        format!(
            "{:.1} s measured + {:.1} s drain",
            driver.duration_s,
            (measured_s - driver.duration_s).max(0.0)
        )
    }
}

/// The network line: the round trip the pools saw against what was set
/// and the direct one, and the proxy's cost when one was in the path.
fn network_text(network: &crate::record::NetworkMeasured) -> String {
    let mut line = if network.proxy.is_some() {
        format!(
            "network: RTT {:.2} ms measured (set {} ms; direct {:.2} ms)",
            network.rtt_pooled_ms, network.rtt_set_ms, network.rtt_direct_ms
        )
    } else {
        format!(
            "network: direct, RTT {:.2} ms measured (loopback and server)",
            network.rtt_pooled_ms
        )
    };
    if let Some(proxy) = &network.proxy {
        let jitter = if proxy.jitter_ms > 0.0 {
            format!(", jitter {} ms", proxy.jitter_ms)
        } else {
            String::new()
        };
        let _ = write!(
            line,
            ", proxy CPU {:.2} s{jitter}, its own path {:.2} ms (trimmed off the delay), its timer late {:.0} µs median, {:.0} µs p99",
            proxy.cpu_s, proxy.trimmed_ms, proxy.timer_late_p50_us, proxy.timer_late_p99_us
        );
    }
    line
}

/// A readable summary of one cell.
pub fn cell_summary(record: &CellRecord) -> String {
    let s = &record.settings;
    let m = &record.metrics;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} · {} · {} · max_connections {} · {}",
        s.workload,
        pool_text(s),
        load_text(&s.driver),
        record.postgres.max_connections,
        measured_text(&s.driver, m.measured_s)
    );
    let _ = writeln!(
        out,
        "server: PostgreSQL {} ({}), template {} ({}), copy {:.0} ms",
        record.postgres.version,
        record.backend,
        record.template.name,
        if record.template.reused { "reused" } else { "loaded" },
        record.copy_ms
    );
    let _ = writeln!(
        out,
        "clients: as {} · driven by {} thread(s)",
        record
            .postgres
            .client_role
            .as_deref()
            .map_or("the URL's user".to_string(), |role| format!("{role} (not a superuser)")),
        s.driver.threads
    );
    if let Some(tls) = &record.tls {
        let plain = match tls.plain_sessions {
            0 => String::new(),
            n => format!(" · {n} session(s) plain"),
        };
        let _ = writeln!(
            out,
            "tls: {} · {} · sslmode={}{plain}",
            tls.version, tls.cipher, tls.mode
        );
    }
    if let Some(network) = &record.network {
        let per_op: Vec<String> = m
            .operations
            .iter()
            .filter(|op| op.round_trips_per_attempt > 0.0)
            .map(|op| format!("{} {:.1}", op.name, op.round_trips_per_attempt))
            .collect();
        let round_trips = if per_op.is_empty() {
            String::new()
        } else {
            format!(" · round trips per transaction: {}", per_op.join(", "))
        };
        let _ = writeln!(out, "{}{round_trips}", network_text(network));
    }
    if let Some(strategy) = &record.strategy {
        let _ = writeln!(out, "strategy: {strategy}");
    }
    let goodput = if record.business.outcomes.is_empty() {
        format!("{:.1}/s", record.business.goodput_per_s)
    } else {
        format!(
            "{:.1}/s ({})",
            record.business.goodput_per_s,
            record.business.outcomes.join(", ")
        )
    };
    let _ = writeln!(
        out,
        "throughput {:.1}/s · goodput {goodput} · attempts {} (retries {}) · ok {} · errors {} ({:.2}%)",
        m.throughput_per_s,
        m.attempts,
        m.retries,
        m.ok,
        m.errors,
        m.error_rate * 100.0
    );
    if let Some(limit_ms) = s.driver.latency_limit_ms {
        let skipped = match s.driver.load {
            Load::Open { .. } => format!(
                " · skipped {} (already {limit_ms} ms behind schedule when they could be sent; not sent)",
                m.skipped
            ),
            Load::Closed { .. } => String::new(),
        };
        let _ = writeln!(
            out,
            "latency limit {limit_ms} ms · late {} (took longer){skipped}",
            m.late
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<12} {:>8} {:>8} {:>7} {:>9} {:>9} {:>9} {:>9} {:>11} {:>10} {:>10}",
        "operation",
        "attempts",
        "ok",
        "errors",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "pool p99",
        "conn p99",
        "in-db p99"
    );
    for op in &m.operations {
        let errors: u64 = op.errors_by_class.values().sum();
        let e2e: &LatencySummary = &op.end_to_end;
        let _ = writeln!(
            out,
            "{:<12} {:>8} {:>8} {:>7} {:>9} {:>9} {:>9} {:>9} {:>11} {:>10} {:>10}",
            op.name,
            op.first_attempts + op.retries,
            op.ok,
            errors,
            ms(e2e.p50_us),
            ms(e2e.p95_us),
            ms(e2e.p99_us),
            ms(e2e.max_us),
            ms(op.pool_wait.p99_us),
            ms(op.connect.p99_us),
            ms(op.in_db.p99_us)
        );
    }
    if let Some(schedule) = &record.schedule {
        let _ = writeln!(
            out,
            "schedule: {} arrivals at {:.1}/s asked, {:.1}/s started · lag p50 {} ms, p99 {} ms, max {} ms",
            schedule.scheduled,
            schedule.target_rate_per_s,
            schedule.achieved_rate_per_s,
            ms(schedule.lag.p50_us),
            ms(schedule.lag.p99_us),
            ms(schedule.lag.max_us)
        );
    }
    if !m.errors_by_class.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "errors:");
        for (key, count) in &m.errors_by_class {
            let _ = writeln!(out, "  {count:>8}  {}", label_of(key));
        }
        let mut explained = std::collections::BTreeSet::new();
        for key in m.errors_by_class.keys() {
            if let Some(why) = class_of(key).explanation() {
                if explained.insert(why) {
                    let _ = writeln!(out, "  why: {why}");
                }
            }
        }
    }
    if let Some(pooler) = &record.pooler {
        pooler_text(&mut out, record, pooler);
    }
    let server = &record.server;
    if !server.samples.is_empty() {
        let peak = |f: &dyn Fn(&crate::measure::ActivitySample) -> u32| server.samples.iter().map(f).max().unwrap_or(0);
        let mut waits: std::collections::BTreeMap<&str, u32> = std::collections::BTreeMap::new();
        for sample in &server.samples {
            for (kind, n) in &sample.by_wait_event_type {
                let entry = waits.entry(kind.as_str()).or_default();
                *entry = (*entry).max(*n);
            }
        }
        let waits: Vec<String> = waits.iter().map(|(kind, n)| format!("{kind} {n}")).collect();
        let _ = writeln!(
            out,
            "\nserver ({} samples every {} ms): peak connections {} · peak active {} · peak lock waiters {} · active by wait (peak): {}",
            server.samples.len(),
            server.interval_ms,
            peak(&|s| s.connections),
            peak(&|s| s.by_state.get("active").copied().unwrap_or(0)),
            peak(&|s| s.lock_waiters),
            if waits.is_empty() { "none".to_string() } else { waits.join(", ") }
        );
    }
    let db = &server.database;
    let reads = db.blks_hit + db.blks_read;
    let _ = writeln!(
        out,
        "database: {} commits · {} rollbacks · {} deadlocks · buffer hit ratio {}",
        db.xact_commit,
        db.xact_rollback,
        db.deadlocks,
        if reads > 0 {
            format!("{:.1}%", 100.0 * db.blks_hit as f64 / reads as f64)
        } else {
            "n/a".into()
        }
    );
    for statement in server.top_statements.iter().take(3) {
        // The SQL files open with a comment saying what the statement is
        // for; the statement itself is what identifies it here.
        let text: String = statement
            .query
            .lines()
            .filter(|line| !line.trim_start().starts_with("--"))
            .flat_map(str::split_whitespace)
            .collect::<Vec<_>>()
            .join(" ");
        let text = if text.chars().count() > 70 {
            format!("{}…", text.chars().take(70).collect::<String>())
        } else {
            text
        };
        let _ = writeln!(
            out,
            "  {:>9.1} ms total · {:>7} calls · {:>7.2} ms mean · {text}",
            statement.total_exec_ms, statement.calls, statement.mean_exec_ms
        );
    }
    if let Some(redis) = &server.redis {
        let _ = writeln!(
            out,
            "redis: {} hits · {} misses · {} commands",
            redis.keyspace_hits, redis.keyspace_misses, redis.commands_processed
        );
    }
    if !server.sampling_errors.is_empty() {
        let _ = writeln!(out, "sampling errors: {}", server.sampling_errors.join("; "));
    }
    if let Some(diagnosis) = &record.diagnosis {
        let _ = writeln!(out, "\nbottleneck: {}", diagnosis_text(diagnosis));
        let _ = writeln!(out, "time: {}", time_shares_text(diagnosis));
    }
    if !record.invariants.is_empty() {
        let _ = writeln!(out, "\ninvariants:");
        for check in &record.invariants {
            let _ = writeln!(out, "  {}  {} — {}", check.verdict(), check.name, check.detail);
        }
    }
    if !record.slo.results.is_empty() {
        let _ = writeln!(out, "\nSLO scorecard (workloads/{}.toml [slo]):", s.workload);
        let _ = write!(out, "{}", scorecard_text(&record.slo.results));
    }
    let counted: Vec<String> = m
        .operations
        .iter()
        .flat_map(|op| {
            op.counts
                .iter()
                .map(move |(what, n)| format!("{} {what}: {n}", op.name))
        })
        .collect();
    if !counted.is_empty() {
        let _ = writeln!(out, "\noutcomes: {}", counted.join(" · "));
    }
    out
}

/// A result's measured value in its objective's unit and precision.
pub fn slo_measured_text(result: &crate::measure::SloResult) -> String {
    match result.unit() {
        crate::measure::SloUnit::Share => format!("{:.2}%", result.measured * 100.0),
        crate::measure::SloUnit::PerS => format!("{:.1}/s", result.measured),
        crate::measure::SloUnit::Ms => format!("{:.1} ms", result.measured),
    }
}

/// One line per objective: PASS or FAIL, the objective, the measured
/// value; then how many of them were met.
pub fn scorecard_text(results: &[crate::measure::SloResult]) -> String {
    let mut out = String::new();
    for result in results {
        let verdict = if result.pass { "PASS" } else { "FAIL" };
        let _ = writeln!(
            out,
            "  {verdict}  {:<32} measured {}",
            result.objective,
            slo_measured_text(result)
        );
    }
    if !results.is_empty() {
        let met = results.iter().filter(|r| r.pass).count();
        let _ = writeln!(out, "  {met} of {} objectives met", results.len());
    }
    out
}

/// Which network a recommendation is for: the pool it names holds
/// connections for that many round trips.
fn network_of_recommendation(rec: &crate::analysis::Recommendation) -> String {
    let measured = if rec.network_rtt_measured_ms > 0.0 {
        format!(" (clients measured {:.2} ms a round trip)", rec.network_rtt_measured_ms)
    } else {
        String::new()
    };
    if rec.network_rtt_ms > 0.0 {
        format!(
            "- made for a network RTT of {} ms between the app and the database{measured}",
            rec.network_rtt_ms
        )
    } else {
        format!(
            "- made for loopback{measured}: an application across a network holds each connection longer per round trip; try --for-rtt, or sweep with --network-rtts"
        )
    }
}

/// A readable recommendation: every figure with the cells it came from.
pub fn recommendation_text(rec: &crate::analysis::Recommendation) -> String {
    let cells = |list: &[usize]| -> String {
        let shown: Vec<String> = list.iter().take(8).map(|c| format!("#{c}")).collect();
        let more = list.len().saturating_sub(8);
        if more > 0 {
            format!("cells {} and {more} more", shown.join(" "))
        } else {
            format!("cells {}", shown.join(" "))
        }
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Recommendation for {} from {} cells (cell #n = line n of cells.jsonl)",
        rec.workload,
        rec.cells.len()
    );
    // Cells from before the network was recorded say nothing of it, and
    // their recommendations read as they always did.
    if rec.network_rtt_ms > 0.0 || rec.network_rtt_measured_ms > 0.0 {
        let _ = writeln!(out, "{}", network_of_recommendation(rec));
    }
    if let Some(projection) = &rec.projection {
        let per_instance: Vec<String> = projection
            .pool_per_instance
            .iter()
            .map(|(instances, pool)| format!("{pool} per instance with {instances} instance(s)"))
            .collect();
        let _ = writeln!(
            out,
            "- projection (Little's law, not measured): at RTT {} ms the same throughput needs total pool ≈ {} ({}): {:.1}/s × ({:.2} ms in the database, {:.2} ms of it the server's, + {:.1} round trips × {:+.2} ms) = {:.1} connections busy (the knee's pool {} had {:.1} busy), plus the knee's spare connections × √ of that growth — from {}; a sweep with --network-rtt {}ms checks it",
            projection.for_rtt_ms,
            projection.total_pool,
            per_instance.join(", "),
            projection.throughput_per_s,
            projection.in_db_ms,
            projection.server_ms,
            projection.round_trips_per_attempt,
            projection.for_rtt_ms - projection.from_rtt_ms,
            projection.projected_busy,
            projection.knee_total_pool,
            projection.busy_at_knee,
            cells(&projection.cells),
            projection.for_rtt_ms,
        );
    } else if let Some(for_rtt_ms) = rec.options.for_rtt_ms {
        let _ = writeln!(
            out,
            "- projection for RTT {for_rtt_ms} ms: none (no knee, or its cells counted no round trips: recorded before contend counted them)"
        );
    }
    match &rec.knee {
        Some(knee) => {
            let per_instance: Vec<String> = knee
                .pool_per_instance
                .iter()
                .map(|(instances, pool)| format!("{pool} per instance with {instances} instance(s)"))
                .collect();
            // Judged on the curve, its peak is the curve's and may sit on
            // another group than the best measured: both, by name.
            let peak = match &knee.best_measured {
                Some(best) if best.cells != knee.peak_cells => format!(
                    "the curve peaks at {}, measured {:.1}/s; best measured: total pool {}, {:.1}/s, {}",
                    cells(&knee.peak_cells),
                    knee.peak_goodput_per_s,
                    best.total_pool,
                    best.goodput_per_s,
                    cells(&best.cells)
                ),
                _ => format!(
                    "peak cell(s) {:.1}/s, {}",
                    knee.peak_goodput_per_s,
                    cells(&knee.peak_cells)
                ),
            };
            let _ = writeln!(
                out,
                "- knee: total pool {} ({}) reaches {:.0}% of peak goodput, judged on {}; measured there {:.1}/s ({peak}), p99 {:.1} ms — {}",
                knee.total_pool,
                per_instance.join(", "),
                rec.options.goodput_share * 100.0,
                knee.basis,
                knee.goodput_per_s,
                knee.p99_ms,
                cells(&knee.cells)
            );
            if let Some((ms, source)) = &rec.p99_bound {
                let _ = writeln!(out, "  (p99 had to stay within {ms} ms: {source})");
            }
            if let Some(verdict) = &rec.knee_verdict {
                let side = |name: &str, side: &Option<crate::analysis::SideVerdict>| {
                    side.as_ref().map(|s| {
                        format!(
                            "{name} {}: {} (lock waits {:.0}% of active backends)",
                            cells(&s.cells),
                            bottleneck_name(s.bottleneck),
                            s.lock_wait_share * 100.0
                        )
                    })
                };
                let parts: Vec<String> = [
                    side("below it", &verdict.below),
                    side("at it", &verdict.at),
                    side("above it", &verdict.above),
                ]
                .into_iter()
                .flatten()
                .collect();
                let _ = writeln!(out, "- why the knee is there: {}", parts.join("; "));
            }
        }
        None => {
            let _ = writeln!(
                out,
                "- knee: none — no cell stayed within max_connections{}",
                rec.p99_bound
                    .as_ref()
                    .map_or(String::new(), |(ms, source)| format!(" and p99 ≤ {ms} ms ({source})"))
            );
        }
    }
    match &rec.usl {
        Some(usl) => {
            let f = &usl.fit;
            let _ = writeln!(
                out,
                "- USL fit: σ = {:.4} (contention), κ = {:.6} (coherency), λ = {:.1}/s, peak N* = {}, R² = {:.3} over {} points — {}",
                f.sigma,
                f.kappa,
                f.lambda,
                f.peak_concurrency.map_or("none (still rising)".into(), |n| format!("{n:.1}")),
                f.r_squared,
                f.points,
                cells(&usl.cells)
            );
        }
        None => {
            let _ = writeln!(out, "- USL fit: needs at least three pool sizes within budget");
        }
    }
    for check in rec.littles_law.iter().take(12) {
        let _ = writeln!(
            out,
            "- Little's law #{}: throughput × time in DB = {:.1} busy connections; sampler saw {:.1} active (pool {})",
            check.cell, check.predicted_busy, check.observed_busy, check.total_pool
        );
    }
    if let Some(budget) = &rec.max_connections {
        let _ = writeln!(
            out,
            "- max_connections: {} = {} instance(s) × {} + {} reserved + {} headroom",
            budget.recommended, budget.instances, budget.pool_per_instance, budget.reserved, budget.headroom
        );
        for over in &budget.over_budget {
            let _ = writeln!(
                out,
                "  over budget #{}: pools of {} against {} available → {} × 53300, {} pool timeouts, {:.1}% errors",
                over.cell,
                over.total_pool,
                over.available,
                over.refused,
                over.pool_timeouts,
                over.error_rate * 100.0
            );
        }
    }
    for verdict in &rec.formulas {
        let _ = writeln!(
            out,
            "- formula {}: {:.0} {}; nearest measured {}: goodput {:.1}/s, p99 {:.1} ms; {:+.0} from the recommendation",
            verdict.formula,
            verdict.value,
            verdict.sizes,
            verdict.nearest_cell.map_or("none".into(), |c| format!("#{c}")),
            verdict.goodput_per_s,
            verdict.p99_ms,
            verdict.distance_from_recommended
        );
    }
    out
}

fn window_row(out: &mut String, name: &str, w: &crate::measure::WindowSummary) {
    if w.attempts == 0 {
        let _ = writeln!(out, "  {name:<44} (no whole second, or no attempt, inside it)");
        return;
    }
    let _ = writeln!(
        out,
        "  {name:<44} {:>9} {:>9} {:>7} {:>8} {:>8} {:>8} {:>8}",
        format!("{}–{}", w.from_second, w.to_second),
        w.attempts,
        w.errors,
        ms(w.end_to_end.p50_us),
        ms(w.end_to_end.p95_us),
        ms(w.end_to_end.p99_us),
        ms(w.end_to_end.max_us),
    );
}

/// A readable summary of a migration run under load.
pub fn migration_text(record: &crate::record::MigrationRecord) -> String {
    let s = &record.settings.cell;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "migration {} under {} · {} · {}",
        record.migration.source,
        s.workload,
        pool_text(s),
        load_text(&s.driver)
    );
    let _ = writeln!(
        out,
        "server: PostgreSQL {} ({}), template {}",
        record.postgres.version, record.backend, record.template.name
    );
    let _ = writeln!(
        out,
        "statements (own session, each on its own unless the file opens a block):"
    );
    for run in &record.statements {
        let first_line = run.statement.sql.lines().next().unwrap_or_default();
        let outcome = match (&run.error, &run.error_code) {
            (Some(error), code) => format!("FAILED ({}): {error}", code.as_deref().unwrap_or("?")),
            (None, _) => "ok".into(),
        };
        let _ = writeln!(
            out,
            "  line {:<4} {first_line}: {:.2} s, {outcome}",
            run.statement.line,
            (run.finished_ms - run.started_ms) / 1000.0
        );
    }
    let skipped = record.migration.statements.len() - record.statements.len();
    if skipped > 0 {
        let _ = writeln!(out, "  ({skipped} statement(s) after the failure not run)");
    }
    let _ = writeln!(out, "phases (seconds since measurement began):");
    for phase in &record.phases {
        let _ = writeln!(
            out,
            "  {:<44} {:>7.2} – {:>7.2}  ({:.2} s)",
            phase.name,
            phase.from_ms / 1000.0,
            phase.to_ms / 1000.0,
            (phase.to_ms - phase.from_ms) / 1000.0
        );
    }
    let waits = record
        .build_progress
        .iter()
        .filter(|p| p.migration_waits_on.as_deref().is_some_and(|w| w.starts_with("Lock")))
        .count();
    let blocked = record
        .build_progress
        .iter()
        .map(|p| p.foreground_lock_waiters)
        .max()
        .unwrap_or(0);
    let _ = writeln!(
        out,
        "locks: the migration waited on a lock in {waits} of {} samples; at most {blocked} foreground session(s) waited on a lock at once",
        record.build_progress.len()
    );
    let _ = writeln!(out, "indexes created:");
    if record.indexes.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for index in &record.indexes {
        let state = match (index.valid, index.dropped) {
            (true, _) => "valid".to_string(),
            (false, true) => "INVALID, dropped (DROP INDEX CONCURRENTLY)".to_string(),
            (false, false) => "INVALID, kept (--keep-invalid): drop it or REINDEX it".to_string(),
        };
        let _ = writeln!(out, "  {} on {}: {state}", index.name, index.table);
        if let Some(reason) = &index.reason {
            let _ = writeln!(out, "    why: {reason}");
        }
    }
    if !record.vacuumed.is_empty() {
        let _ = writeln!(
            out,
            "vacuumed: VACUUM (ANALYZE) {} (index-only scans need the visibility map)",
            record.vacuumed.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "foreground latency, all operations, end to end (ms; whole seconds inside each stretch):"
    );
    let _ = writeln!(
        out,
        "  {:<44} {:>9} {:>9} {:>7} {:>8} {:>8} {:>8} {:>8}",
        "window", "seconds", "attempts", "errors", "p50", "p95", "p99", "max"
    );
    window_row(&mut out, "before", &record.foreground.before);
    window_row(&mut out, "during", &record.foreground.during);
    window_row(&mut out, "after", &record.foreground.after);
    for phase in &record.foreground.by_phase {
        window_row(&mut out, &format!("  {}", phase.phase), &phase.window);
    }
    let _ = writeln!(out, "plans (EXPLAIN ANALYZE, BUFFERS, load off; warm cache):");
    for diff in &record.plan_diffs {
        let _ = writeln!(
            out,
            "  {}: {} → {}",
            diff.query,
            diff.scans_before.join(", "),
            diff.scans_after.join(", ")
        );
        let speed = if diff.speedup >= 1.0 {
            format!("{:.1}× faster", diff.speedup)
        } else {
            format!("{:.1}× slower", 1.0 / diff.speedup)
        };
        let _ = writeln!(
            out,
            "    execution {:.3} → {:.3} ms ({speed}); planning {:.3} → {:.3} ms",
            diff.execution_ms.0, diff.execution_ms.1, diff.planning_ms.0, diff.planning_ms.1
        );
        let _ = writeln!(
            out,
            "    rows {} → {}; removed by filter {} → {}; shared buffers hit {} → {}, read {} → {}; heap fetches {} → {}",
            diff.rows.0,
            diff.rows.1,
            diff.rows_removed_by_filter.0,
            diff.rows_removed_by_filter.1,
            diff.shared_hit_blocks.0,
            diff.shared_hit_blocks.1,
            diff.shared_read_blocks.0,
            diff.shared_read_blocks.1,
            diff.heap_fetches.0,
            diff.heap_fetches.1
        );
    }
    for check in &record.invariants {
        let _ = writeln!(
            out,
            "invariant {}: {} ({})",
            check.name,
            match check.verdict() {
                "PASS" => "holds",
                "FAIL" => "VIOLATED",
                _ => "not checked",
            },
            check.detail
        );
    }
    let _ = writeln!(
        out,
        "result: {}",
        if record.succeeded {
            "the migration succeeded and every new index is valid"
        } else {
            "the migration FAILED (see above)"
        }
    );
    out
}

/// The recommendation across the layers of a sweep through PgBouncer.
pub fn pooler_recommendation_text(rec: &crate::analysis::PoolerRecommendation) -> String {
    let cells = |cells: &[usize]| cells.iter().map(|n| format!("#{n}")).collect::<Vec<_>>().join(" ");
    let mut out = String::new();
    let _ = writeln!(out, "\nthrough PgBouncer:");
    let _ = writeln!(
        out,
        "  default_pool_size {}: goodput {:.1}/s, p99 {:.1} ms (cells {}); the best, {:.1}/s, at {} (cells {})",
        rec.pool_size,
        rec.goodput_per_s,
        rec.p99_ms,
        cells(&rec.cells),
        rec.best_goodput_per_s,
        rec.best_pool_size,
        cells(&rec.best_cells),
    );
    let _ = writeln!(
        out,
        "  app pool per instance {} × {} instance(s): the shortest pooler queue at that size (peak cl_waiting {}); connections past the pooler's pool only wait in it",
        rec.app_pool_size, rec.instances, rec.peak_cl_waiting,
    );
    let _ = writeln!(
        out,
        "  max_connections >= {} = 1 pooler pool × {} + reserve {} + {} reserved + headroom {}",
        rec.max_connections, rec.pool_size, rec.reserve_pool_size, rec.reserved_connections, rec.headroom,
    );
    out
}

/// Errors by class as one short phrase: "connection_lost×2 53300×5", or
/// "none".
pub fn errors_text(errors_by_class: &std::collections::BTreeMap<String, u64>) -> String {
    if errors_by_class.is_empty() {
        return "none".to_string();
    }
    errors_by_class
        .iter()
        .map(|(class, n)| format!("{class}×{n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One line for a cell the server died under: which cell, when, why, what
/// it had done, and how the server came back.
pub fn failed_cell_line(failed: &crate::record::FailedCell) -> String {
    let what = match failed.cause {
        crate::record::FailureCause::ServerLost => "PostgreSQL went away",
        crate::record::FailureCause::Unresponsive => "PostgreSQL stopped answering",
        crate::record::FailureCause::Panic => "contend panicked",
    };
    let mut line = format!(
        "{} — {what} {:.1} s in: {} ({} ok, errors {})",
        failed.key,
        failed.loss.after_s,
        failed.loss.reason,
        failed.loss.ok,
        errors_text(&failed.loss.errors_by_class)
    );
    if let (Some(how), Some(took)) = (&failed.recovery, failed.recovered_in_s) {
        line.push_str(&format!("; {how} in {took:.2} s"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first cell of a sweep recorded by an earlier build.
    fn recorded_cell() -> CellRecord {
        let cells = include_str!("../../tests/fixtures/results-7f0d7fe/sweep-sleep/cells.jsonl");
        serde_json::from_str(cells.lines().next().unwrap()).unwrap()
    }

    #[test]
    fn a_sweep_line_names_the_pool_as_the_cell_had_it() {
        let mut record = recorded_cell();
        let pooled = sweep_cell_line(&record);
        assert!(
            pooled.starts_with(&format!(
                "pool {:>3} × {} · max_connections",
                record.settings.pool.size, record.settings.instances
            )),
            "{pooled}"
        );
        record.settings.pool.kind = crate::client::PoolKind::None;
        let unpooled = sweep_cell_line(&record);
        assert!(
            unpooled.starts_with(&format!("no pool × {} · max_connections", record.settings.instances)),
            "{unpooled}"
        );
        assert_eq!(
            pooled.split(" · ").skip(1).collect::<Vec<_>>(),
            unpooled.split(" · ").skip(1).collect::<Vec<_>>()
        );
    }
}
