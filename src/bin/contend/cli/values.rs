//! Value parsers for the numbers and durations on the command line, and the
//! bounds they enforce, in one place.
//!
//! Each parser accepts exactly its documented range and refuses anything
//! else (NaN, infinity, overflow, a value that would hang a run or allocate
//! without bound) with one line, while clap parses, before anything starts.
//! Checks that need two flags at once (a rate × duration schedule) are
//! functions here too, called from the conversions. No I/O.

use std::num::IntErrorKind;
use std::time::Duration;

/// Longest duration any flag takes: 7 days. Long enough for any
/// measurement, short enough that no `Instant + Duration` overflows and
/// every millisecond count fits PostgreSQL's 32-bit timeouts.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Most connections per pool. PostgreSQL's max_connections tops out at
/// 262143; a pool beyond this is never a pool-sizing question.
pub const MAX_POOL_SIZE: u32 = 10_000;
/// Most application instances (each has its own pool).
pub const MAX_INSTANCES: u32 = 1_000;
/// Most closed-loop clients.
pub const MAX_CLIENTS: u32 = 100_000;
/// Most open-loop transactions in flight at once.
pub const MAX_IN_FLIGHT: u32 = 1_000_000;
/// Highest open-loop arrival rate, transactions per second.
pub const MAX_RATE_PER_S: f64 = 1_000_000.0;
/// Most arrivals one open-loop run schedules (warmup and measured time
/// together): the schedule is computed up front, 16 bytes an arrival, so
/// this bounds it at 160 MB.
pub const MAX_SCHEDULED: f64 = 10_000_000.0;
/// Most runs of each sweep cell.
pub const MAX_REPEAT: u32 = 1_000;
/// Most driver threads.
pub const MAX_DRIVER_THREADS: u32 = 1_024;
/// Most retries of one transaction.
pub const MAX_RETRIES: u32 = 1_000;
/// Highest pgbench scale (pgbench's int account ids end at 21474).
pub const MAX_PGBENCH_SCALE: u32 = 20_000;
/// Most database cores, spindles or headroom connections a recommendation
/// takes.
pub const MAX_SIZING_INPUT: u32 = 262_143;

/// A non-negative humantime duration of at most [`MAX_DURATION`]: 10s,
/// 500ms, 2m.
pub(super) fn parse_duration(raw: &str) -> Result<Duration, String> {
    if raw.trim_start().starts_with('-') {
        return Err(format!("`{raw}` is negative; give a duration such as 10s, 500ms or 2m"));
    }
    let duration = humantime::parse_duration(raw.trim())
        .map_err(|e| format!("`{raw}` is not a duration ({e}); write it like 10s, 500ms or 2m"))?;
    if duration > MAX_DURATION {
        return Err(format!("`{raw}` is longer than 7 days, the most contend takes"));
    }
    Ok(duration)
}

/// `--startup-timeout`: whole seconds, 1 to 7 days' worth.
pub(super) fn parse_startup_seconds(raw: &str) -> Result<u64, String> {
    let most = MAX_DURATION.as_secs();
    let seconds = whole_number(raw, most, "seconds, 7 days")?;
    if seconds == 0 {
        return Err("give the server at least 1 second to start".into());
    }
    Ok(seconds)
}

/// `--pool-size`, `--pool-sizes`: 1 to [`MAX_POOL_SIZE`].
pub(super) fn parse_pool_size(raw: &str) -> Result<u32, String> {
    count(
        raw,
        1,
        MAX_POOL_SIZE,
        "a pool needs at least one connection",
        "connections per pool (PostgreSQL's max_connections itself tops out at 262143)",
    )
}

/// `--instances`: 1 to [`MAX_INSTANCES`].
pub(super) fn parse_instances(raw: &str) -> Result<u32, String> {
    count(
        raw,
        1,
        MAX_INSTANCES,
        "at least one application instance is needed",
        "application instances",
    )
}

/// `--clients`: 1 to [`MAX_CLIENTS`].
pub(super) fn parse_clients(raw: &str) -> Result<u32, String> {
    count(raw, 1, MAX_CLIENTS, "at least one client is needed", "clients")
}

/// `--max-in-flight`: 1 to [`MAX_IN_FLIGHT`].
pub(super) fn parse_max_in_flight(raw: &str) -> Result<u32, String> {
    count(
        raw,
        1,
        MAX_IN_FLIGHT,
        "at least one transaction must be allowed in flight",
        "transactions in flight",
    )
}

/// `--repeat`: 1 to [`MAX_REPEAT`].
pub(super) fn parse_repeat(raw: &str) -> Result<u32, String> {
    count(raw, 1, MAX_REPEAT, "run each cell at least once", "runs of each cell")
}

/// `--driver-threads`: 1 to [`MAX_DRIVER_THREADS`].
pub(super) fn parse_driver_threads(raw: &str) -> Result<u32, String> {
    count(
        raw,
        1,
        MAX_DRIVER_THREADS,
        "at least one thread must drive the clients",
        "driver threads",
    )
}

/// `--max-retries`: 0 to [`MAX_RETRIES`].
pub(super) fn parse_max_retries(raw: &str) -> Result<u32, String> {
    count(raw, 0, MAX_RETRIES, "", "retries")
}

/// `--max-tries`: pgbench's count of tries, 1 to [`MAX_RETRIES`] + 1.
pub(super) fn parse_max_tries(raw: &str) -> Result<u32, String> {
    count(
        raw,
        1,
        MAX_RETRIES + 1,
        "a transaction is tried at least once (pgbench's 0, unlimited, is not offered)",
        "tries",
    )
}

/// `--latency-limit`: milliseconds as pgbench takes them (a positive
/// number), or a duration such as 50ms.
pub(super) fn parse_latency_limit(raw: &str) -> Result<f64, String> {
    let ms = match raw.trim().parse::<f64>() {
        Ok(ms) => ms,
        Err(_) => parse_duration(raw)?.as_secs_f64() * 1000.0,
    };
    if !(ms.is_finite() && ms > 0.0) {
        return Err(format!("`{raw}`: give the limit in milliseconds, more than 0, e.g. 50"));
    }
    if ms > MAX_DURATION.as_secs_f64() * 1000.0 {
        return Err(format!(
            "`{raw}` milliseconds is longer than 7 days, the most contend takes"
        ));
    }
    Ok(ms)
}

/// `--progress`: seconds between progress lines, 0.1 to a day.
pub(super) fn parse_progress(raw: &str) -> Result<f64, String> {
    let seconds = finite(raw)?;
    if !(0.1..=86_400.0).contains(&seconds) {
        return Err(format!(
            "{seconds}: give the seconds between progress lines, 0.1 to 86400"
        ));
    }
    Ok(seconds)
}

/// `--aggregate-interval`: whole seconds, 1 to 86400 (pgbench's unit).
pub(super) fn parse_aggregate_interval(raw: &str) -> Result<u32, String> {
    count(
        raw,
        1,
        86_400,
        "an interval is at least one second (pgbench's --aggregate-interval counts whole seconds)",
        "seconds per interval",
    )
}

/// `--pgbench-scale`: 1 to [`MAX_PGBENCH_SCALE`].
pub(super) fn parse_pgbench_scale(raw: &str) -> Result<u32, String> {
    count(
        raw,
        1,
        MAX_PGBENCH_SCALE,
        "pgbench's scale starts at 1",
        "(pgbench's scale; 20000 is already 2 billion accounts)",
    )
}

/// `--cores`: 1 to [`MAX_SIZING_INPUT`].
pub(super) fn parse_cores(raw: &str) -> Result<u32, String> {
    count(raw, 1, MAX_SIZING_INPUT, "a server has at least one core", "cores")
}

/// `--spindles`, `--headroom`: 0 to [`MAX_SIZING_INPUT`].
pub(super) fn parse_sizing_count(raw: &str) -> Result<u32, String> {
    count(raw, 0, MAX_SIZING_INPUT, "", "(PostgreSQL's own connection limit)")
}

/// `--rate`: a finite number of transactions per second above 0 and at
/// most [`MAX_RATE_PER_S`].
pub(super) fn parse_rate(raw: &str) -> Result<f64, String> {
    let rate = finite(raw)?;
    if rate <= 0.0 {
        return Err(format!("{rate}: give a positive number of transactions per second"));
    }
    if rate > MAX_RATE_PER_S {
        return Err(format!(
            "{rate} is more than {MAX_RATE_PER_S:.0} transactions per second, the most contend schedules"
        ));
    }
    Ok(rate)
}

/// A finite number above 0 (`--scale`, `--p99-slo-ms`).
pub(super) fn parse_positive(raw: &str) -> Result<f64, String> {
    let value = finite(raw)?;
    if value <= 0.0 {
        return Err(format!("{value}: give a number above 0"));
    }
    Ok(value)
}

/// A finite number (`--goodput-share`, `--confidence`; their range is
/// checked with the flag's own message).
pub(super) fn parse_finite(raw: &str) -> Result<f64, String> {
    finite(raw)
}

/// Refuses an open-loop schedule of more than [`MAX_SCHEDULED`] arrivals:
/// `rate_per_s` over `span` (warmup and measured time together).
pub(super) fn check_schedule(rate_per_s: f64, span: Duration) -> Result<(), String> {
    let scheduled = rate_per_s * span.as_secs_f64();
    if scheduled > MAX_SCHEDULED {
        let span = humantime::format_duration(Duration::from_secs(span.as_secs().max(1)));
        return Err(format!(
            "--rate {rate_per_s} for {span} schedules {scheduled:.1e} transactions; the most is {MAX_SCHEDULED:.0e}: lower --rate or --duration"
        ));
    }
    Ok(())
}

/// Longest network delay `--network-rtt` and `--network-jitter` take.
const MAX_NETWORK_MS: f64 = 1000.0;

/// `--network-rtt`, `--network-rtts`, `--network-jitter`: a delay with a
/// unit (`us`, `µs`, `ms`, `s`; fractions allowed: 0.5ms), or a bare 0;
/// milliseconds, 0 to 1 s.
pub(super) fn parse_network_ms(raw: &str) -> Result<f64, String> {
    let text = raw.trim();
    let (number, per_unit_ms) = [("us", 0.001), ("µs", 0.001), ("ms", 1.0), ("s", 1000.0)]
        .iter()
        .find_map(|(unit, scale)| text.strip_suffix(unit).map(|number| (number, *scale)))
        .unwrap_or((text, 0.0));
    let value = finite(number).map_err(|_| format!("`{raw}` is not a delay; write it like 2ms, 0.5ms or 300us"))?;
    if value < 0.0 {
        return Err(format!("`{raw}` is negative; a network adds time, give e.g. 2ms"));
    }
    if per_unit_ms == 0.0 && value != 0.0 {
        return Err(format!("`{raw}` has no unit: write {value}ms or {value}us"));
    }
    let ms = value * per_unit_ms;
    if ms > MAX_NETWORK_MS {
        return Err(format!("`{raw}` is over 1 s, the longest round trip contend models"));
    }
    Ok(ms)
}

fn finite(raw: &str) -> Result<f64, String> {
    let value: f64 = raw.trim().parse().map_err(|_| format!("`{raw}` is not a number"))?;
    if !value.is_finite() {
        return Err(format!("`{raw}` is not a finite number"));
    }
    Ok(value)
}

/// A whole number in `low..=high`; `below` says why a smaller one is
/// refused, `what` names the unit counted above the bound.
fn count(raw: &str, low: u32, high: u32, below: &str, what: &str) -> Result<u32, String> {
    let value = whole_number(raw, u64::from(high), what)?;
    if value < u64::from(low) {
        return Err(below.to_string());
    }
    Ok(value as u32)
}

/// A whole number of at most `high`.
fn whole_number(raw: &str, high: u64, what: &str) -> Result<u64, String> {
    let too_many = || format!("`{}` is more than {high} {what}, the most contend takes", raw.trim());
    let value = match raw.trim().parse::<u64>() {
        Ok(value) => value,
        Err(e) if *e.kind() == IntErrorKind::PosOverflow => return Err(too_many()),
        Err(_) => return Err(format!("`{raw}` is not a whole number")),
    };
    if value > high {
        return Err(too_many());
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn network_delays_take_fractions_and_units() {
        assert_eq!(parse_network_ms("0"), Ok(0.0));
        assert_eq!(parse_network_ms("2ms"), Ok(2.0));
        assert_eq!(parse_network_ms("0.5ms"), Ok(0.5));
        assert_eq!(parse_network_ms("300us"), Ok(0.3));
        assert_eq!(parse_network_ms("0.001s"), Ok(1.0));
        assert!(parse_network_ms("2").unwrap_err().contains("no unit"));
        assert!(parse_network_ms("-1ms").unwrap_err().contains("negative"));
        assert!(parse_network_ms("2s").unwrap_err().contains("over 1 s"));
        assert!(parse_network_ms("fast").unwrap_err().contains("not a delay"));
        assert!(parse_network_ms("NaNms").is_err());
    }

    type Parser = fn(&str) -> Result<u32, String>;

    /// Every count parser with its documented range.
    const COUNTS: &[(&str, Parser, u32, u32)] = &[
        ("pool size", parse_pool_size, 1, MAX_POOL_SIZE),
        ("instances", parse_instances, 1, MAX_INSTANCES),
        ("clients", parse_clients, 1, MAX_CLIENTS),
        ("max in flight", parse_max_in_flight, 1, MAX_IN_FLIGHT),
        ("repeat", parse_repeat, 1, MAX_REPEAT),
        ("driver threads", parse_driver_threads, 1, MAX_DRIVER_THREADS),
        ("max retries", parse_max_retries, 0, MAX_RETRIES),
        ("pgbench scale", parse_pgbench_scale, 1, MAX_PGBENCH_SCALE),
        ("cores", parse_cores, 1, MAX_SIZING_INPUT),
        ("spindles", parse_sizing_count, 0, MAX_SIZING_INPUT),
    ];

    #[test]
    fn counts_take_their_bounds_and_refuse_one_beyond() {
        for &(name, parse, low, high) in COUNTS {
            assert_eq!(parse(&low.to_string()), Ok(low), "{name}");
            assert_eq!(parse(&high.to_string()), Ok(high), "{name}");
            assert!(parse(&(u64::from(high) + 1).to_string()).is_err(), "{name}");
            if low > 0 {
                assert!(parse(&(low - 1).to_string()).is_err(), "{name}");
            }
            assert!(
                parse("99999999999999999999999").unwrap_err().contains("the most"),
                "{name}"
            );
            assert!(parse("-1").is_err(), "{name}");
            assert!(parse("1.5").is_err(), "{name}");
        }
    }

    #[test]
    fn floats_refuse_nan_and_infinity() {
        for raw in ["NaN", "nan", "inf", "-inf", "infinity", "1e400"] {
            assert!(parse_rate(raw).is_err(), "{raw}");
            assert!(parse_positive(raw).is_err(), "{raw}");
            assert!(parse_finite(raw).is_err(), "{raw}");
        }
        assert_eq!(parse_rate("1e6"), Ok(1e6));
        assert!(parse_rate("1e9").unwrap_err().contains("the most"));
        assert!(parse_rate("0").is_err());
        assert_eq!(parse_positive("0.5"), Ok(0.5));
    }

    #[test]
    fn durations_are_capped_at_seven_days() {
        assert_eq!(parse_duration("7days"), Ok(MAX_DURATION));
        assert!(parse_duration("8days").unwrap_err().contains("longer than 7 days"));
        assert!(parse_duration("1000y").is_err());
        assert!(parse_duration("99999999999999999999s").is_err());
        assert!(parse_duration("-1s").is_err());
        assert_eq!(parse_startup_seconds("604800"), Ok(604_800));
        assert!(parse_startup_seconds("604801").is_err());
        assert!(parse_startup_seconds("0").is_err());
        assert!(parse_startup_seconds("18446744073709551615").is_err());
    }

    #[test]
    fn schedules_beyond_the_bound_are_refused_with_both_numbers() {
        let refused = check_schedule(1e6, Duration::from_secs(3600)).unwrap_err();
        assert!(
            refused.contains("--rate 1000000 for 1h schedules 3.6e9 transactions; the most is 1e7"),
            "{refused}"
        );
        assert!(check_schedule(1000.0, Duration::from_secs(12)).is_ok());
    }

    /// A value as someone might type it, or mistype it: counts, floats
    /// (NaN, infinities, exponents), durations with units, and junk.
    fn typed_value() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<u64>().prop_map(|n| n.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|x| x.to_string()),
            (
                0u64..100_000_000,
                prop::sample::select(vec!["ms", "s", "m", "h", "days", "weeks", "y", ""])
            )
                .prop_map(|(n, unit)| format!("{n}{unit}")),
            prop::sample::select(vec!["NaN", "inf", "-inf", "1e308", "1e-320", "-0", "0x10", "", " 5 "])
                .prop_map(str::to_string),
            "\\PC{0,12}",
        ]
    }

    /// Every numeric flag of `contend run` and `contend sweep`.
    const RUN_FLAGS: &[&str] = &[
        "--pool-size",
        "--instances",
        "--clients",
        "--rate",
        "--duration",
        "--warmup",
        "--think-time",
        "--acquire-timeout",
        "--statement-timeout",
        "--scale",
        "--max-retries",
        "--driver-threads",
        "--startup-timeout",
        "--max-connections",
        "--seed",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        // The whole command line, as `contend run` and `contend sweep`
        // parse and convert it: never a panic, and a plan that is accepted
        // stays within every bound.
        #[test]
        fn command_lines_never_panic_and_accepted_plans_are_bounded(
            flags in prop::collection::vec((prop::sample::select(RUN_FLAGS), typed_value()), 1..4),
            sweep in any::<bool>(),
        ) {
            use clap::Parser;
            use contend::driver::Load;
            use crate::cli::{Cli, Command};
            let mut args: Vec<String> = ["contend", if sweep { "sweep" } else { "run" }, "--workload", "sleep"]
                .iter().map(|s| s.to_string()).collect();
            args.extend(["--backend", "external", "--database-url", "postgres://u@127.0.0.1/db"].map(String::from));
            if sweep {
                args.extend(["--pool-sizes", "1,2"].map(String::from));
            }
            for (flag, value) in &flags {
                // A flag and its value in one word, as `--rate=-5` would be.
                let flag = if *flag == "--pool-size" && sweep { "--pool-sizes" } else { flag };
                args.push(format!("{flag}={value}"));
            }
            let Ok(cli) = Cli::try_parse_from(&args) else { return Ok(()) };
            let cells = match cli.command {
                Command::Run(run) => match super::super::RunPlan::try_from(*run) {
                    Ok(plan) => vec![plan.cell],
                    Err(_) => return Ok(()),
                },
                Command::Sweep(sweep) => match super::super::SweepPlanArgs::try_from(*sweep) {
                    Ok(plan) => plan.plan.cells.into_iter().map(|c| c.settings).collect(),
                    Err(_) => return Ok(()),
                },
                _ => unreachable!("run or sweep"),
            };
            for cell in cells {
                let driver = &cell.driver;
                prop_assert!((1..=MAX_POOL_SIZE).contains(&cell.pool.size));
                prop_assert!((1..=MAX_INSTANCES).contains(&cell.instances));
                prop_assert!(driver.duration_s > 0.0 && driver.duration_s <= MAX_DURATION.as_secs_f64());
                prop_assert!(driver.warmup_s >= 0.0 && driver.warmup_s <= MAX_DURATION.as_secs_f64());
                prop_assert!(cell.pool.acquire_timeout <= MAX_DURATION);
                match driver.load {
                    Load::Closed { clients } => prop_assert!((1..=MAX_CLIENTS).contains(&clients)),
                    Load::Open { rate_per_s, max_in_flight } => {
                        prop_assert!(rate_per_s > 0.0 && rate_per_s <= MAX_RATE_PER_S);
                        prop_assert!(rate_per_s * (driver.warmup_s + driver.duration_s) <= MAX_SCHEDULED);
                        prop_assert!((1..=MAX_IN_FLIGHT).contains(&max_in_flight));
                    }
                }
                if let Some(scale) = cell.overrides.scale {
                    prop_assert!(scale.is_finite() && scale > 0.0);
                }
            }
        }

        // Any text at all: no parser panics, and what one accepts is in
        // its documented range.
        #[test]
        fn no_parser_panics_on_any_text(raw in "\\PC{0,30}") {
            for &(_, parse, low, high) in COUNTS {
                if let Ok(value) = parse(&raw) {
                    prop_assert!((low..=high).contains(&value));
                }
            }
            if let Ok(rate) = parse_rate(&raw) {
                prop_assert!(rate > 0.0 && rate <= MAX_RATE_PER_S);
            }
            if let Ok(value) = parse_positive(&raw) {
                prop_assert!(value > 0.0 && value.is_finite());
            }
            if let Ok(duration) = parse_duration(&raw) {
                prop_assert!(duration <= MAX_DURATION);
            }
            let _ = parse_startup_seconds(&raw);
        }

        // Numbers written as numbers: accepted exactly when in range.
        #[test]
        fn counts_accept_exactly_their_range(value in any::<u64>()) {
            for &(name, parse, low, high) in COUNTS {
                let in_range = (u64::from(low)..=u64::from(high)).contains(&value);
                prop_assert_eq!(parse(&value.to_string()).is_ok(), in_range, "{} {}", name, value);
            }
        }

        #[test]
        fn floats_accept_exactly_finite_positive_values(value in any::<f64>()) {
            let raw = value.to_string();
            let expected = value.is_finite() && value > 0.0;
            prop_assert_eq!(parse_positive(&raw).is_ok(), expected);
            prop_assert_eq!(parse_rate(&raw).is_ok(), expected && value <= MAX_RATE_PER_S);
        }

        #[test]
        fn durations_accept_exactly_up_to_seven_days(seconds in 0u64..2_000_000, millis in 0u64..1000) {
            let raw = format!("{seconds}s {millis}ms");
            let duration = Duration::from_secs(seconds) + Duration::from_millis(millis);
            prop_assert_eq!(parse_duration(&raw).is_ok(), duration <= MAX_DURATION);
        }

        #[test]
        fn schedules_never_panic(rate in any::<f64>(), seconds in 0u64..=MAX_DURATION.as_secs()) {
            let _ = check_schedule(rate, Duration::from_secs(seconds));
        }
    }
}
