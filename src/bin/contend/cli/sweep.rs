//! `contend sweep`: the grid of pool sizes × instances × max_connections
//! (× repeats), checked into a [`SweepPlan`] in run order; and `--resume
//! DIR`, which takes that plan from the run's plan.json and refuses flags
//! beside it that differ from it.

use std::path::{Path, PathBuf};

use clap::Args;

use contend::analysis::RecommendOptions;
use contend::exec::{PlannedCell, SweepPlan};
use contend::provision::{BackendChoice, ExternalPooler, ProvisionOptions};
use contend::record::SweepPlanRecord;

use super::values::{parse_instances, parse_network_ms, parse_pool_size, parse_repeat};
use super::{CellArgs, PoolerArgs, RecommendArgs, ServerArgs};

/// `contend sweep`.
#[derive(Debug, Args)]
#[command(after_help = super::cell::PGBENCH_LETTERS)]
#[command(mut_arg("workload", |arg| arg.required(false).required_unless_present("resume")))]
pub struct SweepCommand {
    /// What each cell runs.
    #[command(flatten)]
    pub cell: CellArgs,
    /// Pool sizes per instance, comma-separated, e.g. 1,2,4,8,16,32,64.
    #[arg(
        long,
        value_delimiter = ',',
        required_unless_present = "resume",
        value_name = "N,N,...",
        value_parser = parse_pool_size
    )]
    pub pool_sizes: Vec<u32>,
    /// Application instance counts, comma-separated.
    #[arg(
        long = "instances",
        value_delimiter = ',',
        default_value = "1",
        value_name = "K,K,...",
        value_parser = parse_instances
    )]
    pub instances: Vec<u32>,
    /// Round trips between the app pools and the server, comma-separated, e.g. 0,0.5ms,2ms: each a cell of its own (see --network-rtt).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "DELAY,DELAY,...",
        conflicts_with = "network_rtt",
        value_parser = parse_network_ms
    )]
    pub network_rtts: Vec<f64>,
    /// A pooler between the app pools and the server.
    #[command(flatten)]
    pub pooler: PoolerArgs,
    /// PgBouncer's default_pool_size values, comma-separated, an axis beside --pool-sizes, --instances and --max-connections [default: 20].
    #[arg(long, value_delimiter = ',', value_name = "N,N,...", requires = "pooler", value_parser = parse_pool_size)]
    pub pooler_pool_sizes: Vec<u32>,
    /// Runs of each cell, each with its own seed (seed, seed + 1, …): the
    /// recommendation takes medians, and the spread shows the noise.
    #[arg(long, default_value_t = 1, value_parser = parse_repeat)]
    pub repeat: u32,
    /// Continue the sweep in this results/<run> directory, running only the
    /// cells it lacks, with the settings it was started with (flags given
    /// beside it must agree with them).
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// Directory under which results/<run>/ is created.
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// Where the servers come from; --max-connections takes a list here.
    #[command(flatten)]
    pub servers: ServerArgs,
    /// How the recommendation printed at the end judges the cells.
    #[command(flatten)]
    pub judging: RecommendArgs,
    /// Ids of the flags given on the command line (not defaulted), filled
    /// by [`super::parse`].
    #[arg(skip)]
    pub given: Vec<String>,
    /// pgbench's aggregate log, one file per cell.
    #[command(flatten)]
    pub log: super::AggregateLogArgs,
    /// Exit 0, not 99, when an objective of the workload's `[slo]` FAILs.
    #[arg(long)]
    pub no_slo_exit: bool,
    /// What stdout gets: text, json (run.json) or csv (a row per cell).
    #[arg(long, value_enum, default_value_t = super::Format::Text)]
    pub format: super::Format,
}

/// A validated `contend sweep`.
#[derive(Debug, Clone)]
pub struct SweepPlanArgs {
    /// The cells, in run order.
    pub plan: SweepPlan,
    /// The servers (max_connections set per cell by the sweep).
    pub provision: ProvisionOptions,
    /// Where results go: a new run directory under this root (unused by a
    /// resume, which writes in the directory it resumes).
    pub results_root: PathBuf,
    /// How the recommendation at the end judges the cells.
    pub recommend: RecommendOptions,
    /// `--progress`: seconds between progress lines.
    pub progress: Option<f64>,
    /// `--aggregate-interval`: pgbench's aggregate log of each cell.
    pub aggregate_log: Option<super::AggregateLog>,
    /// The user's PgBouncer (`--pooler-url`), when the cells go through it.
    pub external_pooler: Option<ExternalPooler>,
}

impl TryFrom<SweepCommand> for SweepPlanArgs {
    type Error = anyhow::Error;

    fn try_from(mut args: SweepCommand) -> Result<Self, Self::Error> {
        let recommend = RecommendOptions::try_from(&args.judging)?;
        let max_connections = std::mem::take(&mut args.servers.max_connections);
        let mut provision = ProvisionOptions::try_from(args.servers)?;
        for &value in &max_connections {
            contend::provision::validate_max_connections(value, &provision.pg_settings)?;
        }
        provision.max_connections = max_connections.first().copied();
        let mut cells = Vec::new();
        // max_connections outermost: the server restarts only when it changes.
        let budgets: Vec<Option<u32>> = if max_connections.is_empty() {
            vec![None]
        } else {
            max_connections.iter().copied().map(Some).collect()
        };
        let server_known = provision.backend != BackendChoice::External && provision.database_url.is_none();
        // No --pooler-pool-sizes: one pooler pool size (the default), or no pooler.
        let pooler_sizes: Vec<Option<u32>> = match args.pooler_pool_sizes.is_empty() {
            true => vec![None],
            false => args.pooler_pool_sizes.iter().copied().map(Some).collect(),
        };
        // One round trip, --network-rtt's (0 without it), unless --network-rtts.
        let rtts: Vec<Option<f64>> = if args.network_rtts.is_empty() {
            vec![None]
        } else {
            if args.cell.network_rtt.is_none() {
                // --network-jitter's check needs a delay to vary: the axis gives it.
                args.cell.network_rtt = Some(0.0);
            }
            args.network_rtts.iter().copied().map(Some).collect()
        };
        for max_connections in budgets {
            for &rtt in &rtts {
                for &instances in &args.instances {
                    for &pool_size in &args.pool_sizes {
                        for &pooler_size in &pooler_sizes {
                            let mut settings = args.cell.cell_settings(pool_size, instances)?;
                            if let Some(rtt_ms) = rtt {
                                settings.network.rtt_ms = rtt_ms;
                            }
                            settings.pooler = args.pooler.cell_pooler(
                                pooler_size,
                                &settings,
                                max_connections.or(provision.max_connections),
                                server_known,
                                super::pooler::reserved_slots(&provision.pg_settings),
                            )?;
                            for run in 0..u64::from(args.repeat) {
                                let mut settings = settings.clone();
                                settings.driver.seed = settings.driver.seed.wrapping_add(run);
                                cells.push(PlannedCell {
                                    max_connections,
                                    settings,
                                });
                            }
                        }
                    }
                }
            }
        }
        provision.with_redis = contend::exec::cells_need_redis(cells.iter().map(|cell| &cell.settings))?;
        Ok(SweepPlanArgs {
            plan: SweepPlan { cells },
            provision,
            results_root: args.results,
            recommend,
            progress: args.cell.progress,
            aggregate_log: args.log.chosen(),
            external_pooler: args.pooler.external(),
        })
    }
}

/// A setting of the cells and the flags that set it: where it sits in a
/// serialized [`PlannedCell`], and how its value reads.
struct Setting {
    flag: &'static str,
    ids: &'static [&'static str],
    pointer: &'static str,
}

const fn setting(flag: &'static str, ids: &'static [&'static str], pointer: &'static str) -> Setting {
    Setting { flag, ids, pointer }
}

/// Every setting of a cell a flag sets.
const CELL_SETTINGS: &[Setting] = &[
    setting("--workload", &["workload"], "/settings/workload"),
    setting("--script", &["scripts"], "/settings/overrides/script/scripts"),
    setting(
        "--init-sql/--pgbench-scale",
        &["init_sql", "pgbench_scale"],
        "/settings/overrides/script/data",
    ),
    setting(
        "--workload-file",
        &["workload_file"],
        "/settings/overrides/defaults_file",
    ),
    setting("--set", &["workload_settings"], "/settings/overrides/settings"),
    setting("--scale", &["scale"], "/settings/overrides/scale"),
    setting("--think-time", &["think_time"], "/settings/overrides/think_time_ms"),
    setting("--cache", &["cache"], "/settings/overrides/cache"),
    setting("--strategy", &["strategy"], "/settings/overrides/strategy"),
    setting("--migrated", &["migrated"], "/settings/overrides/migrated"),
    setting("--pool/-C", &["pool", "connect"], "/settings/pool/kind"),
    setting("--pool-sizes", &["pool_sizes"], "/settings/pool/size"),
    setting("--query-mode", &["query_mode"], "/settings/pool/query_mode"),
    setting(
        "--pooler/--pooler-mode/--pooler-max-client-conn/--pooler-reserve/--pooler-pool-sizes",
        &[
            "pooler",
            "pooler_mode",
            "pooler_max_client_conn",
            "pooler_reserve",
            "pooler_pool_sizes",
        ],
        "/settings/pooler",
    ),
    setting(
        "--acquire-timeout",
        &["acquire_timeout"],
        "/settings/pool/acquire_timeout",
    ),
    setting(
        "--statement-timeout",
        &["statement_timeout"],
        "/settings/pool/statement_timeout",
    ),
    setting("--instances", &["instances"], "/settings/instances"),
    setting(
        "--clients/--rate",
        &["clients", "rate", "max_in_flight"],
        "/settings/driver/load",
    ),
    setting("--ramp", &["ramp"], "/settings/driver/ramp"),
    setting("--warmup", &["warmup"], "/settings/driver/warmup_s"),
    setting("--duration", &["duration"], "/settings/driver/duration_s"),
    setting(
        "--max-retries/--max-tries",
        &["max_retries", "max_tries"],
        "/settings/driver/max_retries",
    ),
    setting(
        "--latency-limit",
        &["latency_limit"],
        "/settings/driver/latency_limit_ms",
    ),
    setting("--seed/--repeat", &["seed", "repeat"], "/settings/driver/seed"),
    setting("--driver-threads", &["driver_threads"], "/settings/driver/threads"),
    setting(
        "--network-rtt/--network-rtts",
        &["network_rtt", "network_rtts"],
        "/settings/network/rtt_ms",
    ),
    setting("--network-jitter", &["network_jitter"], "/settings/network/jitter_ms"),
    setting("--max-connections", &["max_connections"], "/max_connections"),
];

/// Settings of the servers that change what is measured.
const SERVER_SETTINGS: &[Setting] = &[
    setting("--backend", &["backend"], "/backend"),
    setting("--pg-setting", &["pg_settings"], "/pg_settings"),
    setting("--pg-image", &["pg_image"], "/pg_image"),
    setting("--redis-image", &["redis_image"], "/redis_image"),
];

/// A value as the flag would give it: seconds with an `s`, durations as
/// humantime writes them, strings bare.
fn shown(pointer: &str, value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Null => "(none)".into(),
        Value::String(text) => text.clone(),
        Value::Number(n) if pointer.ends_with("_s") => format!("{}s", n.as_f64().unwrap_or_default()),
        Value::Array(items) if items.is_empty() => "(none)".into(),
        // --set and --pg-setting pairs, KEY=VALUE as given.
        Value::Array(items) => items
            .iter()
            .map(|item| match item.as_array().map(Vec::as_slice) {
                Some([Value::String(key), Value::String(value)]) => format!("{key}={value}"),
                _ => shown(pointer, item),
            })
            .collect::<Vec<_>>()
            .join(" "),
        Value::Object(map) if map.len() == 2 && map.contains_key("secs") && map.contains_key("nanos") => {
            let secs = map["secs"].as_u64().unwrap_or(0);
            let nanos = map["nanos"].as_u64().unwrap_or(0) as u32;
            humantime::format_duration(std::time::Duration::new(secs, nanos)).to_string()
        }
        other => other.to_string(),
    }
}

/// Each value `setting` takes over `values`, once each, in order.
fn values_of(setting: &Setting, values: &[serde_json::Value]) -> Vec<serde_json::Value> {
    let mut seen: Vec<serde_json::Value> = Vec::new();
    for value in values {
        let at = value.pointer(setting.pointer).cloned().unwrap_or_default();
        if !seen.contains(&at) {
            seen.push(at);
        }
    }
    seen
}

/// One sentence per setting given by a flag in `given` whose value in
/// `asked` is not the one in `run`.
fn differences(
    settings: &[Setting],
    given: &[String],
    asked: &[serde_json::Value],
    run: &[serde_json::Value],
) -> Vec<String> {
    settings
        .iter()
        .filter(|s| s.ids.iter().any(|id| given.iter().any(|g| g == id)))
        .filter_map(|s| {
            let (asked, run) = (values_of(s, asked), values_of(s, run));
            (asked != run).then(|| {
                let show = |values: &[serde_json::Value]| {
                    values.iter().map(|v| shown(s.pointer, v)).collect::<Vec<_>>().join(",")
                };
                format!("{} {} differs from the run's {}", s.flag, show(&asked), show(&run))
            })
        })
        .collect()
}

/// Flag ids beside `--resume` that say where the servers are or how to
/// judge, not what is measured: they may differ from the run's.
const FREE_BESIDE_RESUME: &[&str] = &[
    "resume",
    "results",
    "database_url",
    "redis_url",
    "pooler_url",
    "pooler_admin_url",
    "pg_bin",
    "pg_port",
    "redis_port",
    "startup_timeout",
    "cell_grace",
    "progress",
    "goodput_share",
    "p99_slo_ms",
    "headroom",
    "cores",
    "spindles",
    "formulas",
    "for_rtt",
    "no_slo_exit",
    "format",
    "aggregate_interval",
    "log_prefix",
    "log",
    "log_contend_columns",
];

impl SweepCommand {
    /// The sweep `--resume DIR` continues: `run`'s plan (read from DIR),
    /// with the servers' URLs, ports and timeouts from these flags and the
    /// recommendation judged as they say. Every other flag given must agree
    /// with the run; when any does not, the error names each that differs.
    pub fn resumed(mut self, dir: &Path, run: &SweepPlanRecord) -> anyhow::Result<SweepPlanArgs> {
        let recommend = RecommendOptions::try_from(&self.judging)?;
        let given = std::mem::take(&mut self.given);
        let mut servers = self.servers.clone();
        servers.max_connections.truncate(1);
        let current = ProvisionOptions::try_from(servers)?;
        let mut provision = ProvisionOptions {
            database_url: current.database_url.clone(),
            redis_url: current.redis_url.clone(),
            ..run.provision.clone()
        };
        let is_given = |id: &str| given.iter().any(|g| g == id);
        if is_given("pg_bin") {
            provision.pg_bin = current.pg_bin.clone();
        }
        if is_given("pg_port") {
            provision.pg_port = current.pg_port;
        }
        if is_given("redis_port") {
            provision.redis_port = current.redis_port;
        }
        if is_given("startup_timeout") {
            provision.startup_timeout = current.startup_timeout;
        }
        let results_root = self.results.clone();
        let progress = self.cell.progress;
        let aggregate_log = self.log.chosen();
        let external_pooler = self.pooler.external();
        let mut cells = run.cells.clone();
        // How long a stalled cell is waited for is not what a cell measures.
        if is_given("cell_grace") {
            for cell in &mut cells {
                cell.settings.driver.grace_s = self.cell.cell_grace.as_secs_f64();
            }
        }
        if given.iter().any(|id| !FREE_BESIDE_RESUME.contains(&id.as_str())) {
            self.check_against(dir, run, &given)?;
        }
        Ok(SweepPlanArgs {
            plan: SweepPlan { cells },
            provision,
            results_root,
            recommend,
            progress,
            aggregate_log,
            external_pooler,
        })
    }

    /// Builds the plan these flags describe — what they leave out taken
    /// from the run — and refuses it naming every given flag that differs.
    fn check_against(mut self, dir: &Path, run: &SweepPlanRecord, given: &[String]) -> anyhow::Result<()> {
        let first = run.cells.first().map(|c| &c.settings);
        if self.cell.workload.is_none() {
            self.cell.workload = first.map(|s| s.workload.clone());
        }
        if self.pool_sizes.is_empty() {
            for cell in &run.cells {
                if !self.pool_sizes.contains(&cell.settings.pool.size) {
                    self.pool_sizes.push(cell.settings.pool.size);
                }
            }
        }
        if let Some(script) = first.and_then(|s| s.overrides.script.as_ref()) {
            if self.cell.scripts.is_empty() {
                self.cell.scripts = script.scripts.clone();
            }
            if self.cell.init_sql.is_none() && self.cell.pgbench_scale.is_none() {
                match &script.data {
                    contend::workload::script::ScriptData::InitSql { path } => self.cell.init_sql = Some(path.clone()),
                    contend::workload::script::ScriptData::PgbenchTables { scale } => {
                        self.cell.pgbench_scale = Some(*scale)
                    }
                    contend::workload::script::ScriptData::Empty => {}
                }
            }
        }
        let mut asked = SweepPlanArgs::try_from(self)?;
        // auto agrees with whatever it chose when the sweep started.
        if asked.provision.backend == contend::provision::BackendChoice::Auto {
            asked.provision.backend = run.provision.backend;
        }
        let asked_cells: Vec<_> = asked.plan.cells.iter().map(json).collect();
        let run_cells: Vec<_> = run.cells.iter().map(json).collect();
        let mut differ = differences(CELL_SETTINGS, given, &asked_cells, &run_cells);
        differ.extend(differences(
            SERVER_SETTINGS,
            given,
            &[json(&asked.provision)],
            &[json(&run.provision)],
        ));
        anyhow::ensure!(
            differ.is_empty(),
            "--resume {}: {}; give the run's settings, or none (contend sweep --resume {0})",
            dir.display(),
            differ.join("; ")
        );
        Ok(())
    }
}

/// `value` as JSON, to compare settings field by field.
fn json(value: &impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_default()
}
