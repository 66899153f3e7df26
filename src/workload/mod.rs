//! Workloads: what a client does in one transaction, and the data it needs.
//!
//! Each workload is one module here, its SQL under `sql/<name>/` and its
//! defaults in `workloads/<name>.toml`, both compiled in. Adding one is adding
//! those three and its line in the `registry!` invocation below, which
//! declares the module and generates [`WORKLOADS`], [`with_workload`],
//! [`uses_redis`] and [`validate`] from it. A workload never times anything
//! and never opens connections: the driver hands it an [`Attempt`] that
//! checks a connection out (and begins a transaction) when the operation
//! first needs the database.

mod migration;

use std::future::Future;

use rand::rngs::SmallRng;
use serde::{Deserialize, Serialize};

pub use self::migration::{split_statements, Migration, MigrationError, MigrationStatement, StatementKind};

use crate::client::{Attempt, ErrorClass};
use crate::measure::{ExplainQuery, SloSpec};

/// Declares each workload module once, with the type it registers, and
/// generates from that one list the `pub mod`s, [`WORKLOADS`],
/// [`with_workload`] and [`validate`]. Dispatch is a chain of name
/// comparisons that hands the driver the concrete type: no `dyn` anywhere.
macro_rules! registry {
    ($($module:ident::$workload:ident),+ $(,)?) => {
        $(pub mod $module;)+

        /// Names of the registered workloads, in registry order.
        pub const WORKLOADS: &[&str] = &[$(<$module::$workload as WorkloadDef>::NAME),+];

        /// Names of the workloads that ship a migration (what `--migrated`
        /// can apply), in registry order.
        pub fn with_migration() -> Vec<&'static str> {
            let mut names = Vec::new();
            $(
                if <$module::$workload as Workload>::MIGRATION.is_some() {
                    names.push(<$module::$workload as WorkloadDef>::NAME);
                }
            )+
            names
        }

        /// The registry: builds workload `name` with `overrides` and hands it
        /// to `user`.
        pub async fn with_workload<U: WorkloadUser>(
            name: &str,
            overrides: &WorkloadOverrides,
            user: U,
        ) -> Result<U::Output, WorkloadError> {
            $(
                if name == <$module::$workload as WorkloadDef>::NAME {
                    return Ok(user.run(checked::<$module::$workload>(overrides)?).await);
                }
            )+
            Err(WorkloadError::Unknown { name: name.to_string() })
        }

        /// Checks that `name` with `overrides` builds, without any I/O beyond
        /// reading the files it is given (a script workload's scripts and init
        /// SQL): what the command line validates before starting servers.
        pub fn validate(name: &str, overrides: &WorkloadOverrides) -> Result<(), WorkloadError> {
            $(
                if name == <$module::$workload as WorkloadDef>::NAME {
                    return checked::<$module::$workload>(overrides).map(drop);
                }
            )+
            Err(WorkloadError::Unknown { name: name.to_string() })
        }

        /// Whether workload `name` built with `overrides` uses Redis (a
        /// cache, a gate): what decides whether contend starts a Redis.
        pub fn uses_redis(name: &str, overrides: &WorkloadOverrides) -> Result<bool, WorkloadError> {
            $(
                if name == <$module::$workload as WorkloadDef>::NAME {
                    return checked::<$module::$workload>(overrides).map(|w| Workload::uses_redis(&w));
                }
            )+
            Err(WorkloadError::Unknown { name: name.to_string() })
        }
    };
}

// The registry: one line per workload, `module::Type`.
registry! {
    goal_count::GoalCount,
    script::Script,
    seat_reservation::SeatReservation,
    sleep::Sleep,
    wallet_transfer::WalletTransfer,
}

/// `W` built with `overrides`, and refused if they ask for a migration it
/// does not ship.
fn checked<W: WorkloadDef>(overrides: &WorkloadOverrides) -> Result<W, WorkloadError> {
    let workload = W::build(overrides)?;
    if overrides.migrated && W::MIGRATION.is_none() {
        return Err(WorkloadError::NoMigration { workload: W::NAME });
    }
    Ok(workload)
}

/// `a`, `a and b`, `a, b and c`.
fn and_list(names: &[&str]) -> String {
    match names {
        [] => "none".to_string(),
        [only] => only.to_string(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// A workload the registry can build by name.
pub trait WorkloadDef: Workload + Sized {
    /// Its name: `--workload NAME`, `sql/NAME/`, `workloads/NAME.toml`.
    const NAME: &'static str;
    /// The workload with its compiled-in defaults (or `--workload-file`) and
    /// `overrides`, checked; no I/O beyond reading the files `overrides`
    /// names.
    fn build(overrides: &WorkloadOverrides) -> Result<Self, WorkloadError>;
}

/// What one operation achieved, when it succeeded.
#[derive(Debug, Clone, Copy, Default)]
pub struct OperationResult {
    /// Business-level results worth counting ("assigned", "cache_hit"…).
    pub counted: [Option<&'static str>; 3],
}

impl OperationResult {
    /// A result counting `what`.
    pub fn counting(what: &'static str) -> OperationResult {
        let mut result = OperationResult::default();
        result.count(what);
        result
    }

    /// Adds `what` to the counted results (beyond three, the rest are dropped).
    pub fn count(&mut self, what: &'static str) {
        if let Some(slot) = self.counted.iter_mut().find(|slot| slot.is_none()) {
            *slot = Some(what);
        }
    }
}

/// Data a workload loads into its template database.
#[derive(Debug, Clone)]
pub struct DataPlan {
    /// Template database name, unique per workload, scale and data settings.
    pub template_name: String,
    /// Statements creating the schema.
    pub schema_sql: String,
    /// Statements loading the data.
    pub seed_sql: String,
}

/// What a workload gets to prepare a cell with.
pub struct CellContext<'a> {
    /// A connection to the cell's own copy of the data (outside the pools).
    pub client: &'a tokio_postgres::Client,
    /// The cell database's name: unique per cell, a prefix for Redis keys.
    pub database: &'a str,
    /// A Redis connection, when [`Workload::uses_redis`] and a server exists.
    pub redis: Option<&'a mut redis::aio::MultiplexedConnection>,
}

/// One invariant checked after a cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvariantCheck {
    /// What must hold, e.g. "taken = count(reservations) <= capacity".
    pub name: String,
    /// Whether it held.
    pub holds: bool,
    /// Set when the evidence was gone (Redis killed during the cell): the
    /// check neither holds nor fails, and `detail` says why.
    #[serde(default)]
    pub not_checked: bool,
    /// The evidence: counts checked, or the first violations found.
    pub detail: String,
}

impl InvariantCheck {
    /// A check that could not be made because its evidence was gone.
    pub fn not_checked(name: impl Into<String>, why: impl Into<String>) -> InvariantCheck {
        InvariantCheck {
            name: name.into(),
            holds: false,
            not_checked: true,
            detail: why.into(),
        }
    }

    /// Whether this check fails the cell: it was made and did not hold.
    pub fn violated(&self) -> bool {
        !self.holds && !self.not_checked
    }

    /// PASS, FAIL or NOT CHECKED, as reports print it.
    pub fn verdict(&self) -> &'static str {
        match (self.not_checked, self.holds) {
            (true, _) => "NOT CHECKED",
            (false, true) => "PASS",
            (false, false) => "FAIL",
        }
    }
}

/// A workload the driver can run.
pub trait Workload: Send + Sync + 'static {
    /// Operation names, indexed by the numbers [`Workload::choose_operation`]
    /// returns.
    fn operations(&self) -> &'static [&'static str];
    /// The strategy in use, for workloads that have several.
    fn strategy(&self) -> Option<&'static str> {
        None
    }
    /// Business outcomes (as counted in [`OperationResult`]) that make
    /// goodput, e.g. "reserved"; empty means every successful attempt.
    fn goodput_outcomes(&self) -> &'static [&'static str] {
        &[]
    }
    /// Whether clients need a Redis connection (a cache or a gate).
    fn uses_redis(&self) -> bool {
        false
    }
    /// The template database's name and the SQL that fills it.
    fn data_plan(&self) -> DataPlan;
    /// Reads what the workload needs to know about the cell's data (row
    /// counts, id ranges) and prepares per-cell state (Redis keys).
    fn prepare_cell(&mut self, cell: CellContext<'_>) -> impl Future<Output = Result<(), WorkloadError>> + Send;
    /// Checks the workload's invariants on the cell's data after the run.
    fn check_invariants(&self, cell: CellContext<'_>) -> impl Future<Output = Vec<InvariantCheck>> + Send {
        let _ = cell;
        async { Vec::new() }
    }
    /// The read queries worth an EXPLAIN before and after a migration, with
    /// representative parameters written in (the hottest key the clients
    /// draw, once [`Workload::prepare_cell`] has read the data).
    fn explain_queries(&self) -> Vec<ExplainQuery> {
        Vec::new()
    }
    /// The objectives of its `[slo]` table.
    fn slo(&self) -> SloSpec {
        SloSpec::default()
    }
    /// The migration shipped in `sql/<name>/`: its file name and text.
    /// Default `None`: `--migrated` is refused.
    const MIGRATION: Option<(&'static str, &'static str)> = None;
    /// [`Workload::MIGRATION`], for callers holding a workload (set the
    /// constant, not this).
    fn migration(&self) -> Option<(&'static str, &'static str)> {
        Self::MIGRATION
    }
    /// Picks the next operation by the configured mix.
    fn choose_operation(&self, rng: &mut SmallRng) -> usize;
    /// Client think time between transactions, milliseconds.
    fn think_time_ms(&self) -> u64;
    /// Runs operation `op`; `attempt.db()` checks a connection out and
    /// begins the transaction when the operation first needs it.
    fn run_operation(
        &self,
        op: usize,
        attempt: &mut Attempt<'_>,
        rng: &mut SmallRng,
    ) -> impl Future<Output = Result<OperationResult, ErrorClass>> + Send;
}

/// A workload TOML file given with --workload-file, kept whole in records.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DefaultsFile {
    /// Where it was read from.
    pub path: String,
    /// Its text.
    pub text: String,
}

/// Overrides of a workload's defaults from the command line.
///
/// `WorkloadOverrides::default()` overrides nothing: the workload runs as its
/// compiled-in `workloads/<name>.toml` says, without cache or migration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkloadOverrides {
    /// Data scale factor (1.0 = the defaults' size). Default `None`: the
    /// TOML's size (scale 1).
    pub scale: Option<f64>,
    /// Think time, milliseconds. Default `None`: the TOML's
    /// `[traffic] think_time_ms`.
    pub think_time_ms: Option<u64>,
    /// Use the workload's Redis cache, where it has one. Default `false`.
    #[serde(default)]
    pub cache: bool,
    /// Strategy, for workloads that have several. Default `None`: the TOML's.
    #[serde(default)]
    pub strategy: Option<String>,
    /// Apply the workload's migration (and VACUUM (ANALYZE)) to the cell's
    /// data before measuring. Default `false`.
    #[serde(default)]
    pub migrated: bool,
    /// A `workloads/<name>.toml` of the user's, used instead of the
    /// compiled-in one. Default `None`: the compiled-in file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults_file: Option<DefaultsFile>,
    /// Any TOML default by dotted path (`traffic.zipf_exponent=1.2`), values
    /// parsed as TOML (numbers, booleans, strings), applied in order.
    /// Default empty.
    #[serde(default)]
    pub settings: Vec<(String, String)>,
    /// The script workload's scripts and data. Default `None`, which the
    /// other workloads require and the script workload refuses (it needs at
    /// least one script).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<script::ScriptSettings>,
}

/// Failures to set up a workload.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// Not in the registry.
    #[error("unknown workload `{name}`: choose one of {}", WORKLOADS.join(", "))]
    Unknown {
        /// The name given.
        name: String,
    },
    /// A --workload-file does not parse.
    #[error("--workload-file {path}: {reason}")]
    DefaultsFile {
        /// The file given.
        path: String,
        /// What is wrong, with line and column.
        reason: String,
    },
    /// Its defaults file does not parse.
    #[error("workloads/{name}.toml: {reason}")]
    Defaults {
        /// Workload name.
        name: String,
        /// What is wrong, with line and column.
        reason: String,
    },
    /// An override is out of range.
    #[error("{0}")]
    Invalid(String),
    /// A `--set PATH=VALUE` that names no default or has the wrong type.
    #[error("--set {path}={raw}: {problem}")]
    Set {
        /// The dotted path given.
        path: String,
        /// The value given.
        raw: String,
        /// What is wrong with it.
        problem: SetError,
    },
    /// A strategy the workload does not have.
    #[error("unknown strategy `{strategy}` for {workload}: choose one of {}", choices.join(", "))]
    UnknownStrategy {
        /// Workload name.
        workload: String,
        /// The strategy given.
        strategy: String,
        /// The workload's strategies.
        choices: &'static [&'static str],
    },
    /// A script workload's scripts, weights or init SQL.
    #[error(transparent)]
    Script(Box<script::ScriptError>),
    /// `--migrated` for a workload that ships no migration.
    #[error(
        "--migrated: {workload} ships no migration ({} do)",
        and_list(&with_migration())
    )]
    NoMigration {
        /// Workload name.
        workload: &'static str,
    },
    /// Reading what the workload needs from the cell's data failed.
    #[error("{workload}: {what}: {source}")]
    CellData {
        /// Workload name.
        workload: &'static str,
        /// What it was doing, e.g. "reading the goal id range".
        what: &'static str,
        /// The database's error.
        source: tokio_postgres::Error,
    },
    /// Preparing the workload's per-cell state in Redis failed.
    #[error("{workload}: {what}: {source}")]
    CellRedis {
        /// Workload name.
        workload: &'static str,
        /// What it was doing, e.g. "seeding the gate's counters in Redis".
        what: &'static str,
        /// Redis's error.
        source: redis::RedisError,
    },
    /// The workload needs a Redis server and the cell has none.
    #[error("{workload}: {needed_by} needs a Redis server")]
    NoRedis {
        /// Workload name.
        workload: &'static str,
        /// The part of the workload that needs it, e.g. "redis-gate".
        needed_by: &'static str,
    },
    /// The cell's data cannot carry the workload.
    #[error("{workload}: {reason}")]
    CellUnfit {
        /// Workload name.
        workload: &'static str,
        /// What is missing, e.g. "the cell database has 1 wallets: a transfer needs 2".
        reason: String,
    },
}

/// Why a `--set PATH=VALUE` cannot apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    /// The path has no dot.
    #[error("name a key as section.key, e.g. traffic.zipf_exponent")]
    NotDotted,
    /// The defaults have no such table.
    #[error("no section [{section}] in the defaults")]
    NoSection {
        /// The section named.
        section: String,
    },
    /// The table has no such key (`--set` replaces, never adds).
    #[error("no key `{key}` in [{section}]")]
    NoKey {
        /// The section named.
        section: String,
        /// The key named.
        key: String,
    },
    /// The value's TOML type is not the default's.
    #[error("expected a {expected} like the default {default}")]
    WrongType {
        /// The default's TOML type ("integer", "float"…).
        expected: &'static str,
        /// The default, as TOML.
        default: String,
    },
}

/// Something that runs with any workload: [`with_workload`] builds the named
/// workload and calls [`WorkloadUser::run`] with it, statically typed.
pub trait WorkloadUser {
    /// What the use returns.
    type Output;
    /// Uses the workload.
    fn run<W: Workload>(self, workload: W) -> impl Future<Output = Self::Output>;
}

/// Parses a workload's compiled-in TOML defaults, with `--set` overrides
/// applied by dotted path first.
pub(crate) fn parse_defaults<T: serde::de::DeserializeOwned>(
    name: &str,
    compiled_in: &str,
    overrides: &WorkloadOverrides,
) -> Result<T, WorkloadError> {
    let settings = &overrides.settings;
    let (text, file) = match &overrides.defaults_file {
        Some(file) => (file.text.as_str(), Some(file.path.clone())),
        None => (compiled_in, None),
    };
    let defaults_error = |reason: String| {
        let reason = reason
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        match &file {
            Some(path) => WorkloadError::DefaultsFile {
                path: path.clone(),
                reason,
            },
            None => WorkloadError::Defaults {
                name: name.to_string(),
                reason,
            },
        }
    };
    let mut table: toml::Table = toml::from_str(text).map_err(|e| defaults_error(e.to_string()))?;
    for (path, raw) in settings {
        set_by_path(&mut table, path, raw).map_err(|problem| WorkloadError::Set {
            path: path.clone(),
            raw: raw.clone(),
            problem,
        })?;
    }
    T::deserialize(table).map_err(|e| {
        if settings.is_empty() {
            defaults_error(e.to_string())
        } else {
            WorkloadError::Invalid(format!(
                "--set: {}",
                e.to_string().lines().collect::<Vec<_>>().join(" ")
            ))
        }
    })
}

/// Replaces an existing key of `table` at `path` (`section.key`) with `raw`
/// parsed as a TOML value (a bare word is taken as a string).
fn set_by_path(table: &mut toml::Table, path: &str, raw: &str) -> Result<(), SetError> {
    let (section, key) = path.split_once('.').ok_or(SetError::NotDotted)?;
    let section_table = table
        .get_mut(section)
        .and_then(toml::Value::as_table_mut)
        .ok_or_else(|| SetError::NoSection {
            section: section.to_string(),
        })?;
    let slot = section_table.get_mut(key).ok_or_else(|| SetError::NoKey {
        section: section.to_string(),
        key: key.to_string(),
    })?;
    let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut parsed| parsed.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    if std::mem::discriminant(slot) != std::mem::discriminant(&value) && !(slot.is_float() && value.is_integer()) {
        return Err(SetError::WrongType {
            expected: slot.type_str(),
            default: slot.to_string(),
        });
    }
    *slot = match (slot.is_float(), value) {
        (true, toml::Value::Integer(i)) => toml::Value::Float(i as f64),
        (_, value) => value,
    };
    Ok(())
}

/// Highest Zipf exponent a workload takes. rand_distr's sampler is fast for
/// every finite exponent but loops forever on an infinite one; from 20 up,
/// all but one draw in a million are rank 1 already, so 100 loses nothing.
pub const MAX_ZIPF_EXPONENT: f64 = 100.0;

/// Longest think time a workload's defaults take (milliseconds): 7 days,
/// the command line's bound on every duration.
pub const MAX_THINK_TIME_MS: u64 = 7 * 24 * 3600 * 1000;

/// A Zipf distribution over `1..=n` for `setting` (e.g.
/// "traffic.zipf_exponent"), refusing a NaN, infinite, negative or huge
/// exponent.
pub(crate) fn zipf(setting: &str, n: u64, exponent: f64) -> Result<rand_distr::Zipf<f64>, WorkloadError> {
    if !(0.0..=MAX_ZIPF_EXPONENT).contains(&exponent) {
        return Err(WorkloadError::Invalid(format!(
            "{setting} {exponent:?}: give a finite exponent from 0 (uniform) to {MAX_ZIPF_EXPONENT}"
        )));
    }
    rand_distr::Zipf::new(n as f64, exponent).map_err(|e| WorkloadError::Invalid(format!("{setting} {exponent}: {e}")))
}

/// `value` of `setting` checked against `low..=high`; `unit` says what is
/// counted ("rows", "ms"), for the message.
pub(crate) fn in_range<T>(setting: &str, value: T, low: T, high: T, unit: &str) -> Result<T, WorkloadError>
where
    T: PartialOrd + std::fmt::Display + Copy,
{
    if value < low || value > high {
        return Err(WorkloadError::Invalid(format!(
            "{setting} {value}: give {low} to {high} {unit}"
        )));
    }
    Ok(value)
}

/// Rows a workload seeds from a per-scale count: `per_scale × scale`,
/// rounded, at least 1, refused above `i32::MAX` (ids are `int` columns
/// and the clients draw them as i32).
pub(crate) fn scaled_rows(setting: &str, per_scale: u64, scale: f64) -> Result<u64, WorkloadError> {
    let rows = (per_scale as f64 * scale).round();
    if rows.is_nan() || rows > f64::from(i32::MAX) {
        return Err(WorkloadError::Invalid(format!(
            "{setting} {per_scale} at --scale {scale:?} is {rows:.3e} rows: at most {} (an int id); lower --scale or {setting}",
            i32::MAX
        )));
    }
    Ok((rows as u64).max(1))
}

/// Cumulative weights of a `[mix]`, refused when all are 0 or their sum
/// overflows.
pub(crate) fn cumulative_weights<const N: usize>(weights: [u32; N]) -> Result<[u32; N], WorkloadError> {
    let mut cumulative = [0u32; N];
    let mut total: u32 = 0;
    for (slot, weight) in cumulative.iter_mut().zip(weights) {
        total = total.checked_add(weight).ok_or_else(|| {
            WorkloadError::Invalid(format!(
                "[mix] weights add up to more than {}: use smaller ones",
                u32::MAX
            ))
        })?;
        *slot = total;
    }
    if total == 0 {
        return Err(WorkloadError::Invalid("[mix] gives every operation weight 0".into()));
    }
    Ok(cumulative)
}

/// The strategy `overrides` asks for, or `default`, checked against `choices`.
pub(crate) fn choose_strategy(
    workload: &str,
    overrides: &WorkloadOverrides,
    default: &str,
    choices: &'static [&'static str],
) -> Result<&'static str, WorkloadError> {
    let wanted = overrides.strategy.as_deref().unwrap_or(default);
    choices
        .iter()
        .find(|choice| **choice == wanted)
        .copied()
        .ok_or_else(|| WorkloadError::UnknownStrategy {
            workload: workload.to_string(),
            strategy: wanted.to_string(),
            choices,
        })
}

/// `sql` with `$1`, `$2`, … replaced by `literals` (highest number first,
/// so `$1` does not eat `$10`), for an EXPLAIN with representative values.
pub(crate) fn with_literals(sql: &str, literals: &[&str]) -> String {
    let mut out = sql.to_string();
    for (i, literal) in literals.iter().enumerate().rev() {
        out = out.replace(&format!("${}", i + 1), literal);
    }
    out
}

/// Picks an index by relative weights.
pub(crate) fn weighted_choice(cumulative: &[u32], rng: &mut SmallRng) -> usize {
    use rand::Rng;
    let total = *cumulative.last().unwrap_or(&1);
    let draw = rng.random_range(0..total.max(1));
    cumulative.iter().position(|&edge| draw < edge).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn with_file(text: &str) -> WorkloadOverrides {
        WorkloadOverrides {
            defaults_file: Some(DefaultsFile {
                path: "my.toml".into(),
                text: text.into(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_malformed_workload_file_is_named_with_line_and_column() {
        let err = validate("goal-count", &with_file("[data]\nusers_per_scale = = 3\n"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("--workload-file my.toml: "), "{err}");
        assert!(err.contains("line 2, column"), "{err}");
        assert!(!err.contains('\n'), "one line: {err}");
        let err = validate("goal-count", &with_file("[nosuch]\nx = 1\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("nosuch"), "{err}");
    }

    /// The loaders of every workload: whatever text or --set they get, an
    /// error or a value, never a panic.
    fn load_everything(overrides: &WorkloadOverrides) {
        for name in WORKLOADS {
            let _ = validate(name, overrides);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

        #[test]
        fn any_workload_file_is_an_error_or_a_workload(text in "(\\PC|\n){0,300}") {
            load_everything(&with_file(&text));
        }

        #[test]
        fn a_damaged_real_file_is_an_error_or_a_workload(cut in 0usize..1200, len in 0usize..40, insert in "(\\PC|\n){0,12}") {
            let real = include_str!("../../workloads/goal-count.toml");
            let chars: Vec<char> = real.chars().collect();
            let at = cut.min(chars.len());
            let end = (at + len).min(chars.len());
            let damaged: String = chars[..at].iter().chain(insert.chars().collect::<Vec<_>>().iter()).chain(chars[end..].iter()).collect();
            load_everything(&with_file(&damaged));
        }

        #[test]
        fn any_set_is_an_error_or_a_workload(path in "[a-z_.]{0,24}", raw in "\\PC{0,24}") {
            load_everything(&WorkloadOverrides {
                settings: vec![(path, raw)],
                ..Default::default()
            });
        }
    }

    #[test]
    fn set_replaces_existing_keys_only_with_the_same_type() {
        let text = "[traffic]\nzipf_exponent = 1.0\nthink_time_ms = 0\n[mix]\nread = 1\n";
        let mut table: toml::Table = toml::from_str(text).unwrap();
        set_by_path(&mut table, "traffic.zipf_exponent", "2").unwrap();
        assert_eq!(table["traffic"]["zipf_exponent"].as_float(), Some(2.0));
        set_by_path(&mut table, "mix.read", "7").unwrap();
        assert_eq!(table["mix"]["read"].as_integer(), Some(7));
        assert!(set_by_path(&mut table, "mix.read", "lots")
            .unwrap_err()
            .to_string()
            .contains("expected a integer"));
        assert_eq!(
            set_by_path(&mut table, "mix.write", "1"),
            Err(SetError::NoKey {
                section: "mix".into(),
                key: "write".into()
            })
        );
        assert!(set_by_path(&mut table, "nothing", "1")
            .unwrap_err()
            .to_string()
            .contains("section.key"));
    }

    /// Each registered name is unique and has its TOML and SQL folder, as
    /// `--workload-file` and the docs promise; every SQL file says first
    /// what it is for.
    #[test]
    fn every_registered_workload_has_its_files() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        for (i, name) in WORKLOADS.iter().enumerate() {
            assert!(!WORKLOADS[..i].contains(name), "{name} registered twice");
            assert!(
                root.join(format!("workloads/{name}.toml")).is_file(),
                "workloads/{name}.toml"
            );
            let sql = root.join(format!("sql/{name}"));
            for entry in std::fs::read_dir(&sql).unwrap_or_else(|e| panic!("sql/{name}/: {e}")) {
                let path = entry.unwrap().path();
                let text = std::fs::read_to_string(&path).unwrap();
                assert!(text.starts_with("--"), "{} starts without a comment", path.display());
            }
        }
    }

    #[test]
    fn migrated_is_refused_for_a_workload_without_a_migration() {
        let migrated = WorkloadOverrides {
            migrated: true,
            ..Default::default()
        };
        assert_eq!(with_migration(), ["goal-count", "wallet-transfer"]);
        assert_eq!(
            validate("sleep", &migrated).unwrap_err().to_string(),
            "--migrated: sleep ships no migration (goal-count and wallet-transfer do)"
        );
        validate("goal-count", &migrated).unwrap();
        assert_eq!(and_list(&["a", "b", "c"]), "a, b and c");
    }

    #[test]
    fn weighted_choice_follows_weights() {
        let cumulative = [40, 60, 85, 100];
        let mut rng = SmallRng::seed_from_u64(7);
        let mut counts = [0u32; 4];
        for _ in 0..100_000 {
            counts[weighted_choice(&cumulative, &mut rng)] += 1;
        }
        let shares: Vec<f64> = counts.iter().map(|&c| c as f64 / 100_000.0).collect();
        for (share, expected) in shares.iter().zip([0.40, 0.20, 0.25, 0.15]) {
            assert!((share - expected).abs() < 0.01, "{shares:?}");
        }
    }
}
