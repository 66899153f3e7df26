//! script: bring-your-own-SQL workloads from pgbench-style script files.
//!
//! Each `--script FILE[@WEIGHT]` is an operation named by the file's stem,
//! chosen by weight as pgbench chooses among `-f` scripts. A script runs as
//! pgbench runs it with `-M prepared`: `\set` evaluated client-side, every
//! SQL statement prepared once per connection with its `:variables` bound as
//! parameters, BEGIN/END sent as the script sends them (a statement outside
//! them runs on its own, not wrapped in a transaction). A `\sleep` before the
//! script's first statement holds no connection (the checkout is lazy); one
//! after it holds the connection, as in pgbench.
//!
//! Data comes from `--init-sql FILE` (run once into the template) or
//! pgbench's standard tables at `--pgbench-scale N`, created the way
//! `pgbench -i -s N` creates them. `:scale` is N, or else the row count of
//! `pgbench_branches` when the data has that table, or else 1.
//!
//! Parsing lives in `parse` (the script language) and `expr` (`\set`
//! expressions); this file owns files, weights, data and running.

pub mod expr;
pub mod parse;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use rand::rngs::SmallRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use self::expr::Value;
use self::parse::{parse_program, Command, LineError, Program, SCALE_SLOT};
use super::{
    parse_defaults, weighted_choice, CellContext, DataPlan, OperationResult, Workload, WorkloadDef, WorkloadError, WorkloadOverrides,
};
use crate::client::Attempt;
use crate::client::ErrorClass;
use crate::client::{Param, UntypedNumber};

/// Registry name.
pub const NAME: &str = "script";

const DEFAULTS: &str = include_str!("../../../workloads/script.toml");
const PGBENCH_SCHEMA: &str = include_str!("../../../sql/script/pgbench-schema.sql");
const PGBENCH_SEED: &str = include_str!("../../../sql/script/pgbench-seed.sql");
const HAS_PGBENCH_BRANCHES: &str = include_str!("../../../sql/script/has_pgbench_branches.sql");
const COUNT_BRANCHES: &str = include_str!("../../../sql/script/count_branches.sql");

/// Scale from which pgbench makes account ids bigint.
const PGBENCH_BIGINT_SCALE: u32 = 20_000;

const NO_SCRIPT: &str =
    "--workload script needs at least one --script FILE[@WEIGHT], e.g. --script sql/script/tpcb-like.sql";

/// workloads/script.toml.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptDefaults {
    /// Client behaviour.
    pub traffic: ScriptTraffic,
}

/// `[traffic]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptTraffic {
    /// Pause between a client's transactions, milliseconds.
    pub think_time_ms: u64,
}

/// What a script workload runs and on which data: part of a cell's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptSettings {
    /// The scripts, in the order given.
    pub scripts: Vec<ScriptFile>,
    /// Where the data comes from.
    pub data: ScriptData,
}

/// One `--script FILE[@WEIGHT]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptFile {
    /// The script file, as given.
    pub path: PathBuf,
    /// Relative weight among the scripts (pgbench's `@WEIGHT`); default 1.
    pub weight: u32,
}

/// The data a script workload's template holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScriptData {
    /// No data: the scripts need none (`SELECT 1`, `pg_sleep`).
    Empty,
    /// A SQL file run once into the template.
    InitSql {
        /// The file, as given.
        path: PathBuf,
    },
    /// pgbench's standard tables, as `pgbench -i -s scale` creates them.
    PgbenchTables {
        /// pgbench's scale factor (100,000 accounts each).
        scale: u32,
    },
}

impl std::str::FromStr for ScriptFile {
    type Err = ScriptError;

    /// `FILE` or `FILE@WEIGHT`, split at the last `@` as pgbench splits `-f`.
    fn from_str(spec: &str) -> Result<ScriptFile, ScriptError> {
        let Some((path, weight)) = spec.rsplit_once('@') else {
            return Ok(ScriptFile {
                path: PathBuf::from(spec),
                weight: 1,
            });
        };
        let bad_weight = |reason: &str| ScriptError::Weight {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        if path.is_empty() {
            return Err(bad_weight("no file before the @"));
        }
        let weight = weight
            .parse::<u32>()
            .map_err(|_| bad_weight(&format!("`{weight}` is not a whole number from 0 to {}", u32::MAX)))?;
        Ok(ScriptFile {
            path: PathBuf::from(path),
            weight,
        })
    }
}

/// A script workload that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// A script or init SQL file cannot be read.
    #[error("cannot read {what} {path}: {source}; check the path (relative paths start where contend runs)")]
    Read {
        /// "script" or "init SQL".
        what: &'static str,
        /// The file, as given.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A line of a script is wrong.
    #[error("script {file} line {line}: {problem}")]
    Line {
        /// The file, as given.
        file: String,
        /// 1-based line.
        line: usize,
        /// What is wrong and the fix.
        problem: LineError,
    },
    /// A `--script` weight that does not parse.
    #[error("bad weight in `{spec}`: {reason}; write FILE@WEIGHT, e.g. tpcb-like.sql@3")]
    Weight {
        /// The flag's value.
        spec: String,
        /// What is wrong.
        reason: String,
    },
    /// Weights that cannot choose anything.
    #[error(
        "the scripts' weights add up to {total}: give at least one script a weight above 0 (and stay below {})",
        u32::MAX
    )]
    Weights {
        /// Their sum, saturated.
        total: u64,
    },
    /// Two scripts with one operation name.
    #[error("two scripts are named `{name}` (operations are named by file stem): rename or copy one")]
    DuplicateName {
        /// The stem.
        name: String,
    },
    /// A script evaluated before the run failed.
    #[error("script {file} line {line}: {problem} (with :scale = {scale})")]
    Evaluation {
        /// The file, as given.
        file: String,
        /// 1-based line.
        line: usize,
        /// The evaluation error.
        problem: expr::EvalError,
        /// The scale it was evaluated with.
        scale: i64,
    },
}

/// A parsed script, with the name its results carry.
#[derive(Debug, Clone)]
struct NamedProgram {
    file: String,
    program: Program,
}

/// The script workload, configured.
pub struct Script {
    programs: Vec<NamedProgram>,
    operations: &'static [&'static str],
    cumulative_weights: Vec<u32>,
    data: ScriptData,
    /// The init SQL's text, when data comes from a file.
    init_sql: String,
    /// `:scale`, known for pgbench tables, read from the data otherwise.
    scale: i64,
    think_time_ms: u64,
}

impl Script {
    /// Reads and parses the scripts and init SQL that `overrides.script`
    /// names (small reads: what validation of the command line needs).
    pub fn new(overrides: &WorkloadOverrides) -> Result<Script, WorkloadError> {
        let defaults: ScriptDefaults = parse_defaults(NAME, DEFAULTS, overrides)?;
        let settings = overrides
            .script
            .as_ref()
            .ok_or_else(|| WorkloadError::Invalid(NO_SCRIPT.into()))?;
        if let Some(scale) = overrides.scale {
            return Err(WorkloadError::Invalid(format!(
                "--scale {scale} has no meaning for --workload script: use --pgbench-scale N for pgbench's tables"
            )));
        }
        let mut programs = Vec::with_capacity(settings.scripts.len());
        let mut names = Vec::with_capacity(settings.scripts.len());
        for script in &settings.scripts {
            let text = read(&script.path, "script")?;
            let file = script.path.display().to_string();
            let program = parse_program(&text).map_err(|(line, problem)| ScriptError::Line {
                file: file.clone(),
                line,
                problem,
            })?;
            let name = operation_name(&script.path);
            if names.contains(&name) {
                return Err(ScriptError::DuplicateName { name }.into());
            }
            names.push(name);
            programs.push(NamedProgram { file, program });
        }
        if programs.is_empty() {
            return Err(WorkloadError::Invalid(NO_SCRIPT.into()));
        }
        let cumulative_weights = cumulative(settings.scripts.iter().map(|s| s.weight))?;
        let init_sql = match &settings.data {
            ScriptData::InitSql { path } => read(path, "init SQL")?,
            ScriptData::Empty | ScriptData::PgbenchTables { .. } => String::new(),
        };
        let scale = match settings.data {
            ScriptData::PgbenchTables { scale: 0 } => {
                return Err(WorkloadError::Invalid(
                    "--pgbench-scale 0: pgbench's scale is at least 1 (100,000 accounts)".into(),
                ))
            }
            ScriptData::PgbenchTables { scale } => i64::from(scale),
            ScriptData::Empty | ScriptData::InitSql { .. } => 1,
        };
        super::in_range(
            "traffic.think_time_ms",
            defaults.traffic.think_time_ms,
            0,
            super::MAX_THINK_TIME_MS,
            "ms",
        )?;
        Ok(Script {
            programs,
            operations: interned_names(names),
            cumulative_weights,
            data: settings.data.clone(),
            init_sql,
            scale,
            think_time_ms: overrides.think_time_ms.unwrap_or(defaults.traffic.think_time_ms),
        })
    }

    /// Runs every `\set` and `\sleep` amount of every script once, without
    /// SQL: a script that cannot evaluate with this data's `:scale` fails
    /// setup, naming its line, instead of failing every transaction.
    fn dry_run(&self) -> Result<(), ScriptError> {
        let mut rng = SmallRng::seed_from_u64(0);
        for named in &self.programs {
            let mut variables = self.initial_variables(&named.program);
            for command in &named.program.commands {
                let (line, evaluated) = match command {
                    Command::Set { line, slot, expr } => (
                        *line,
                        expr.evaluate(&variables, &mut rng)
                            .map(|value| variables[*slot] = value),
                    ),
                    Command::Sleep { line, amount, unit_us } => {
                        (*line, parse::sleep_us(*amount, *unit_us, &variables).map(drop))
                    }
                    Command::Sql { .. } => continue,
                };
                evaluated.map_err(|problem| ScriptError::Evaluation {
                    file: named.file.clone(),
                    line,
                    problem,
                    scale: self.scale,
                })?;
            }
        }
        Ok(())
    }

    fn initial_variables(&self, program: &Program) -> Vec<Value> {
        let mut variables = vec![Value::Int(0); program.variables.len()];
        variables[SCALE_SLOT] = Value::Int(self.scale);
        variables
    }
}

fn read(path: &Path, what: &'static str) -> Result<String, ScriptError> {
    std::fs::read_to_string(path).map_err(|source| ScriptError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// A script's operation name: its file stem, as pgbench names `-f` scripts.
fn operation_name(path: &Path) -> String {
    path.file_stem()
        .map(|stem| stem.to_string_lossy().to_string())
        .filter(|stem| !stem.is_empty())
        .unwrap_or_else(|| path.display().to_string())
}

fn cumulative(weights: impl Iterator<Item = u32>) -> Result<Vec<u32>, ScriptError> {
    let mut total: u64 = 0;
    let mut edges = Vec::new();
    for weight in weights {
        total += u64::from(weight);
        edges.push(u32::try_from(total).map_err(|_| ScriptError::Weights { total })?);
    }
    if total == 0 {
        return Err(ScriptError::Weights { total });
    }
    Ok(edges)
}

/// Operation names for the driver and metrics, which keep `&'static str`
/// names; a script's name is only known at run time. Each distinct list is
/// leaked once per process (a sweep builds the workload again per cell).
fn interned_names(names: Vec<String>) -> &'static [&'static str] {
    static INTERNED: OnceLock<Mutex<HashMap<Vec<String>, &'static [&'static str]>>> = OnceLock::new();
    let mut interned = INTERNED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    interned.entry(names.clone()).or_insert_with(|| {
        let leaked: Vec<&'static str> = names
            .into_iter()
            .map(|name| &*Box::leak(name.into_boxed_str()))
            .collect();
        Box::leak(leaked.into_boxed_slice())
    })
}

/// FNV-1a, 64 bits: a template name that changes when the init SQL does,
/// stable across builds and Rust versions.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl From<ScriptError> for WorkloadError {
    fn from(error: ScriptError) -> WorkloadError {
        WorkloadError::Script(Box::new(error))
    }
}

impl From<Value> for UntypedNumber {
    fn from(value: Value) -> UntypedNumber {
        match value {
            Value::Int(i) => UntypedNumber::Int(i),
            Value::Double(d) => UntypedNumber::Double(d),
        }
    }
}

impl WorkloadDef for Script {
    const NAME: &'static str = NAME;

    fn build(overrides: &WorkloadOverrides) -> Result<Script, WorkloadError> {
        Script::new(overrides)
    }
}

impl Workload for Script {
    fn operations(&self) -> &'static [&'static str] {
        self.operations
    }

    fn data_plan(&self) -> DataPlan {
        match &self.data {
            ScriptData::Empty => DataPlan {
                template_name: "contend_tmpl_script_empty".into(),
                schema_sql: String::new(),
                seed_sql: String::new(),
            },
            ScriptData::InitSql { .. } => DataPlan {
                template_name: format!("contend_tmpl_script_{:016x}", fnv1a(&self.init_sql)),
                schema_sql: self.init_sql.clone(),
                seed_sql: String::new(),
            },
            ScriptData::PgbenchTables { scale } => {
                let aid_type = if *scale >= PGBENCH_BIGINT_SCALE {
                    "bigint"
                } else {
                    "int"
                };
                let scale = u64::from(*scale);
                DataPlan {
                    template_name: format!("contend_tmpl_pgbench_s{scale}"),
                    schema_sql: PGBENCH_SCHEMA.replace("{aid_type}", aid_type),
                    seed_sql: PGBENCH_SEED
                        .replace("{scale}", &scale.to_string())
                        .replace("{branches}", &scale.to_string())
                        .replace("{tellers}", &(10 * scale).to_string())
                        .replace("{accounts}", &(100_000 * scale).to_string()),
                }
            }
        }
    }

    async fn prepare_cell(&mut self, cell: CellContext<'_>) -> Result<(), WorkloadError> {
        if !matches!(self.data, ScriptData::PgbenchTables { .. }) {
            // As pgbench does for its built-in scripts: the scale is the
            // number of branches, when the data has pgbench's tables.
            let has_branches: bool = cell
                .client
                .query_one(HAS_PGBENCH_BRANCHES, &[])
                .await
                .map_err(|source| WorkloadError::CellData {
                    workload: NAME,
                    what: "looking for pgbench_branches",
                    source,
                })?
                .get(0);
            if has_branches {
                let branches: i64 = cell
                    .client
                    .query_one(COUNT_BRANCHES, &[])
                    .await
                    .map_err(|source| WorkloadError::CellData {
                        workload: NAME,
                        what: "counting pgbench_branches for :scale",
                        source,
                    })?
                    .get(0);
                self.scale = branches.max(1);
            }
        }
        Ok(self.dry_run()?)
    }

    fn choose_operation(&self, rng: &mut SmallRng) -> usize {
        weighted_choice(&self.cumulative_weights, rng)
    }

    fn think_time_ms(&self) -> u64 {
        self.think_time_ms
    }

    async fn run_operation(
        &self,
        op: usize,
        attempt: &mut Attempt<'_>,
        rng: &mut SmallRng,
    ) -> Result<OperationResult, ErrorClass> {
        let program = &self.programs[op].program;
        let mut variables = self.initial_variables(program);
        let mut params = Vec::new();
        for command in &program.commands {
            match command {
                Command::Set { slot, expr, .. } => match expr.evaluate(&variables, rng) {
                    Ok(value) => variables[*slot] = value,
                    Err(problem) => return Err(evaluation_failed(attempt, &problem)),
                },
                Command::Sleep { amount, unit_us, .. } => match parse::sleep_us(*amount, *unit_us, &variables) {
                    Ok(us) => tokio::time::sleep(std::time::Duration::from_micros(us)).await,
                    Err(problem) => return Err(evaluation_failed(attempt, &problem)),
                },
                Command::Sql {
                    text, params: slots, ..
                } => {
                    params.clear();
                    params.extend(slots.iter().map(|slot| Param::Untyped(variables[*slot].into())));
                    attempt.db_autocommit().await?.query(text, &params).await?;
                }
            }
        }
        Ok(OperationResult::default())
    }
}

/// A script that fails to evaluate fails its transaction, counted under the
/// error's key so the results say why (pgbench would abort the client).
fn evaluation_failed(attempt: &mut Attempt<'_>, problem: &expr::EvalError) -> ErrorClass {
    attempt.count(problem.key());
    ErrorClass::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn overrides(scripts: Vec<ScriptFile>, data: ScriptData) -> WorkloadOverrides {
        WorkloadOverrides {
            script: Some(ScriptSettings { scripts, data }),
            ..Default::default()
        }
    }

    fn shipped(name: &str, weight: u32) -> ScriptFile {
        ScriptFile {
            path: Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/script").join(name),
            weight,
        }
    }

    #[test]
    fn script_specs_split_at_the_last_at_sign() {
        let plain: ScriptFile = "tpcb.sql".parse().unwrap();
        assert_eq!((plain.path.to_str(), plain.weight), (Some("tpcb.sql"), 1));
        let weighted: ScriptFile = "dir@x/tpcb.sql@7".parse().unwrap();
        assert_eq!((weighted.path.to_str(), weighted.weight), (Some("dir@x/tpcb.sql"), 7));
        let zero: ScriptFile = "a.sql@0".parse().unwrap();
        assert_eq!(zero.weight, 0);
        for bad in [
            "a.sql@",
            "a.sql@-1",
            "a.sql@1.5",
            "a.sql@lots",
            "@3",
            "a.sql@99999999999",
        ] {
            let error = bad.parse::<ScriptFile>().unwrap_err().to_string();
            assert!(
                error.contains("bad weight") && error.contains("FILE@WEIGHT"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn shipped_scripts_build_with_pgbench_tables_and_are_named_by_stem() {
        let workload = Script::new(&overrides(
            vec![shipped("tpcb-like.sql", 3), shipped("select-only.sql", 1)],
            ScriptData::PgbenchTables { scale: 10 },
        ))
        .unwrap();
        assert_eq!(workload.operations, ["tpcb-like", "select-only"]);
        assert_eq!(workload.cumulative_weights, [3, 4]);
        assert_eq!(workload.scale, 10);
        let plan = workload.data_plan();
        assert_eq!(plan.template_name, "contend_tmpl_pgbench_s10");
        assert!(plan.schema_sql.contains("aid int NOT NULL"), "{}", plan.schema_sql);
        assert!(
            plan.seed_sql.contains("generate_series(1, 1000000)"),
            "{}",
            plan.seed_sql
        );
        assert!(
            plan.seed_sql.contains("generate_series(1, 100) AS tid"),
            "{}",
            plan.seed_sql
        );
        assert!(!plan.seed_sql.contains('{') && !plan.schema_sql.contains('{'));
        workload.dry_run().unwrap();
        let big = Script::new(&overrides(
            vec![shipped("select-only.sql", 1)],
            ScriptData::PgbenchTables { scale: 20_000 },
        ))
        .unwrap();
        assert!(big.data_plan().schema_sql.contains("aid bigint NOT NULL"));
    }

    #[test]
    fn init_sql_names_its_template_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let script = file(dir.path(), "read.sql", "SELECT count(*) FROM t;");
        let init = file(dir.path(), "init.sql", "CREATE TABLE t (id int);");
        let build = || {
            Script::new(&overrides(
                vec![ScriptFile {
                    path: script.clone(),
                    weight: 1,
                }],
                ScriptData::InitSql { path: init.clone() },
            ))
            .unwrap()
            .data_plan()
        };
        let first = build();
        assert_eq!(first.schema_sql, "CREATE TABLE t (id int);");
        assert_eq!(first.template_name, build().template_name, "stable");
        std::fs::write(&init, "CREATE TABLE t (id bigint);").unwrap();
        assert_ne!(first.template_name, build().template_name, "follows the content");
    }

    #[test]
    fn bad_scripts_are_refused_with_file_line_and_fix() {
        let dir = tempfile::tempdir().unwrap();
        let bad = file(
            dir.path(),
            "tpcb.sql",
            "\\set aid 1\nBEGIN;\nSELECT :aid;\n\\gset\nEND;\n",
        );
        let error = Script::new(&overrides(
            vec![ScriptFile {
                path: bad.clone(),
                weight: 1,
            }],
            ScriptData::Empty,
        ))
        .err()
        .unwrap()
        .to_string();
        assert_eq!(
            error,
            format!(
                "script {} line 4: \\gset is not supported; contend supports \\set and \\sleep",
                bad.display()
            )
        );
        let missing = Script::new(&overrides(
            vec![ScriptFile {
                path: dir.path().join("nope.sql"),
                weight: 1,
            }],
            ScriptData::Empty,
        ))
        .err()
        .unwrap()
        .to_string();
        assert!(
            missing.starts_with("cannot read script ") && missing.contains("nope.sql"),
            "{missing}"
        );
    }

    #[test]
    fn weights_names_and_flags_are_checked() {
        let zero = Script::new(&overrides(vec![shipped("select-only.sql", 0)], ScriptData::Empty));
        assert!(zero.err().unwrap().to_string().contains("add up to 0"));
        let twice = Script::new(&overrides(
            vec![shipped("select-only.sql", 1), shipped("select-only.sql", 1)],
            ScriptData::Empty,
        ));
        assert!(twice
            .err()
            .unwrap()
            .to_string()
            .contains("two scripts are named `select-only`"));
        let overflow = Script::new(&overrides(
            vec![shipped("select-only.sql", u32::MAX), shipped("tpcb-like.sql", 1)],
            ScriptData::Empty,
        ));
        assert!(overflow.err().unwrap().to_string().contains("add up to 4294967296"));
        let none = Script::new(&WorkloadOverrides::default());
        assert!(none.err().unwrap().to_string().contains("needs at least one --script"));
        let scaled = Script::new(&WorkloadOverrides {
            scale: Some(2.0),
            ..overrides(vec![shipped("select-only.sql", 1)], ScriptData::Empty)
        });
        assert!(scaled.err().unwrap().to_string().contains("--pgbench-scale"));
        let scale_zero = Script::new(&overrides(
            vec![shipped("select-only.sql", 1)],
            ScriptData::PgbenchTables { scale: 0 },
        ));
        assert!(scale_zero.err().unwrap().to_string().contains("--pgbench-scale 0"));
    }

    #[test]
    fn dry_run_catches_what_only_the_scale_reveals() {
        let dir = tempfile::tempdir().unwrap();
        let script = file(dir.path(), "ratio.sql", "\\set per 10 / (:scale - 1)\nSELECT :per;\n");
        let mut workload = Script::new(&overrides(
            vec![ScriptFile {
                path: script,
                weight: 1,
            }],
            ScriptData::Empty,
        ))
        .unwrap();
        let error = workload.dry_run().unwrap_err().to_string();
        assert!(error.ends_with("line 1: division by zero (with :scale = 1)"), "{error}");
        workload.scale = 3;
        workload.dry_run().unwrap();
    }

    #[test]
    fn operation_names_are_interned_once() {
        let first = interned_names(vec!["a".into(), "b".into()]);
        let second = interned_names(vec!["a".into(), "b".into()]);
        assert!(std::ptr::eq(first, second));
        assert_eq!(first, ["a", "b"]);
    }
}
