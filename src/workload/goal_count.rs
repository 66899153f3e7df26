//! goal-count: a challenge service counting a user's goals.
//!
//! `initialize` counts a user's goals in a challenge (`GetUserGoalCount`, a
//! sequential scan until the migration adds an index on (user_id,
//! challenge_id)) and assigns more when below the challenge's limit; `browse`
//! lists a user's latest goals; `progress` reads one goal; `claim` updates
//! one. Users are drawn with Zipf skew, so a few users are hot. The count and
//! the assignment are not atomic, as in the service the incident came from:
//! two concurrent initializes of one user can both assign.

use rand::rngs::SmallRng;
use rand::Rng;
use rand_distr::{Distribution, Zipf};
use serde::{Deserialize, Serialize};

use super::{
    cumulative_weights, in_range, parse_defaults, scaled_rows, weighted_choice, with_literals, zipf, CellContext, DataPlan, OperationResult, Workload, WorkloadDef, WorkloadError,
    WorkloadOverrides, MAX_THINK_TIME_MS,
};
use crate::client::Attempt;
use crate::client::ErrorClass;
use crate::client::Param;
use crate::measure::ExplainQuery;

/// Registry name.
pub const NAME: &str = "goal-count";

const DEFAULTS: &str = include_str!("../../workloads/goal-count.toml");
const SCHEMA: &str = include_str!("../../sql/goal-count/schema.sql");
const MAX_GOAL_ID: &str = include_str!("../../sql/goal-count/max_goal_id.sql");
const SEED: &str = include_str!("../../sql/goal-count/seed.sql");
const INITIALIZE_COUNT: &str = include_str!("../../sql/goal-count/initialize_count.sql");
const INITIALIZE_ASSIGN: &str = include_str!("../../sql/goal-count/initialize_assign.sql");
const BROWSE: &str = include_str!("../../sql/goal-count/browse.sql");
const PROGRESS: &str = include_str!("../../sql/goal-count/progress.sql");
const CLAIM: &str = include_str!("../../sql/goal-count/claim.sql");
const MIGRATION: &str = include_str!("../../sql/goal-count/migration.sql");

const OPERATIONS: &[&str] = &["initialize", "browse", "progress", "claim"];

/// workloads/goal-count.toml.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoalCountDefaults {
    /// Data size.
    pub data: DataSettings,
    /// Client behaviour.
    pub traffic: TrafficSettings,
    /// Operation weights.
    pub mix: Mix,
    /// The count cache.
    pub cache: CacheSettings,
    /// `[slo]`: objectives every run is scored against.
    #[serde(default)]
    pub slo: crate::measure::SloSpec,
}

/// `[data]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSettings {
    /// Users at scale 1.
    pub users_per_scale: u64,
    /// Goals each user starts with.
    pub goals_per_user: u32,
    /// Number of challenges.
    pub challenges: u32,
    /// Goals per (user, challenge) that initialize assigns up to.
    pub goal_limit: u32,
}

/// `[traffic]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficSettings {
    /// Zipf exponent over users; 0 is uniform.
    pub zipf_exponent: f64,
    /// Pause between a client's transactions, milliseconds.
    pub think_time_ms: u64,
}

/// `[cache]`: Redis cache-aside for initialize's count.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSettings {
    /// Whether the cache is on by default (`--cache` turns it on).
    pub enabled: bool,
    /// Seconds a cached count lives.
    pub ttl_s: u64,
}

/// `[mix]`: relative weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mix {
    /// Weight of initialize.
    pub initialize: u32,
    /// Weight of browse.
    pub browse: u32,
    /// Weight of progress.
    pub progress: u32,
    /// Weight of claim.
    pub claim: u32,
}

/// The goal-count workload, configured.
pub struct GoalCount {
    slo: crate::measure::SloSpec,
    defaults: GoalCountDefaults,
    scale: f64,
    users: u64,
    think_time_ms: u64,
    cumulative_mix: [u32; 4],
    user_distribution: Zipf<f64>,
    max_goal_id: i64,
    cache_enabled: bool,
    cache_ttl_s: u64,
    /// Redis keys are prefixed by the cell's database: each cell has fresh
    /// data, and a count cached for another cell would be wrong.
    cache_prefix: String,
}

impl GoalCount {
    /// The workload with its compiled-in defaults and `overrides`.
    pub fn new(overrides: &WorkloadOverrides) -> Result<GoalCount, WorkloadError> {
        let defaults: GoalCountDefaults = parse_defaults(NAME, DEFAULTS, overrides)?;
        defaults.slo.validate().map_err(|e| WorkloadError::Defaults {
            name: NAME.into(),
            reason: e.to_string(),
        })?;
        let scale = overrides.scale.unwrap_or(1.0);
        if !(scale > 0.0 && scale.is_finite()) {
            return Err(WorkloadError::Invalid(format!(
                "--scale {scale}: must be a positive number (1 = default size)"
            )));
        }
        let users = scaled_rows("data.users_per_scale", defaults.data.users_per_scale, scale)?;
        let data = &defaults.data;
        let int_max = i32::MAX as u32;
        in_range("data.challenges", data.challenges, 1, int_max, "challenges")?;
        in_range("data.goal_limit", data.goal_limit, 0, int_max, "goals")?;
        in_range("data.goals_per_user", data.goals_per_user, 0, 10_000, "goals")?;
        in_range("traffic.think_time_ms", defaults.traffic.think_time_ms, 0, MAX_THINK_TIME_MS, "ms")?;
        in_range("cache.ttl_s", defaults.cache.ttl_s, 1, 365 * 24 * 3600, "seconds")?;
        let mix = &defaults.mix;
        let cumulative_mix = cumulative_weights([mix.initialize, mix.browse, mix.progress, mix.claim])?;
        let user_distribution = zipf("traffic.zipf_exponent", users, defaults.traffic.zipf_exponent)?;
        Ok(GoalCount {
            slo: defaults.slo.clone(),
            think_time_ms: overrides.think_time_ms.unwrap_or(defaults.traffic.think_time_ms),
            scale,
            users,
            cumulative_mix,
            user_distribution,
            max_goal_id: users as i64 * defaults.data.goals_per_user as i64,
            cache_enabled: overrides.cache || defaults.cache.enabled,
            cache_ttl_s: defaults.cache.ttl_s,
            cache_prefix: String::new(),
            defaults,
        })
    }

    fn user(&self, rng: &mut SmallRng) -> i32 {
        self.user_distribution.sample(rng) as i32
    }

    fn challenge(&self, rng: &mut SmallRng) -> i32 {
        rng.random_range(1..=self.defaults.data.challenges as i32)
    }

    fn goal(&self, rng: &mut SmallRng) -> i64 {
        rng.random_range(1..=self.max_goal_id.max(1))
    }
}

impl WorkloadDef for GoalCount {
    const NAME: &'static str = NAME;

    fn build(overrides: &WorkloadOverrides) -> Result<GoalCount, WorkloadError> {
        GoalCount::new(overrides)
    }
}

impl Workload for GoalCount {
    fn slo(&self) -> crate::measure::SloSpec {
        self.slo.clone()
    }

    fn operations(&self) -> &'static [&'static str] {
        OPERATIONS
    }

    fn explain_queries(&self) -> Vec<ExplainQuery> {
        // User 1 is the hottest the Zipf draw picks; the seed gives it goals
        // in challenge 1 + (1 × 31 + 1 × 17) % challenges.
        let user = 1;
        let challenge = 1 + (31 + 17) % self.defaults.data.challenges;
        vec![
            ExplainQuery {
                name: "initialize (count)".into(),
                sql: with_literals(INITIALIZE_COUNT, &[&user.to_string(), &challenge.to_string()]),
            },
            ExplainQuery {
                name: "browse".into(),
                sql: with_literals(BROWSE, &[&user.to_string()]),
            },
        ]
    }

    const MIGRATION: Option<(&'static str, &'static str)> = Some(("sql/goal-count/migration.sql", MIGRATION));

    fn data_plan(&self) -> DataPlan {
        let data = &self.defaults.data;
        let seed_sql = SEED
            .replace("{users}", &self.users.to_string())
            .replace("{goals_per_user}", &data.goals_per_user.to_string())
            .replace("{challenges}", &data.challenges.to_string())
            .replace("{goal_limit}", &data.goal_limit.to_string());
        DataPlan {
            template_name: format!(
                "contend_tmpl_goal_count_u{}_g{}_c{}",
                self.users, data.goals_per_user, data.challenges
            ),
            schema_sql: SCHEMA.to_string(),
            seed_sql,
        }
    }

    fn uses_redis(&self) -> bool {
        self.cache_enabled
    }

    async fn prepare_cell(&mut self, cell: CellContext<'_>) -> Result<(), WorkloadError> {
        self.cache_prefix = cell.database.to_string();
        let row = cell
            .client
            .query_one(MAX_GOAL_ID, &[])
            .await
            .map_err(|source| WorkloadError::CellData {
                workload: NAME,
                what: "reading the goal id range",
                source,
            })?;
        self.max_goal_id = row.get(0);
        let _ = self.scale;
        Ok(())
    }

    fn choose_operation(&self, rng: &mut SmallRng) -> usize {
        weighted_choice(&self.cumulative_mix, rng)
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
        match OPERATIONS[op] {
            "initialize" => self.initialize(attempt, rng).await,
            "browse" => {
                attempt.db().await?.query(BROWSE, &[Param::Int(self.user(rng))]).await?;
                Ok(OperationResult::default())
            }
            "progress" => {
                let goal = Param::BigInt(self.goal(rng));
                attempt.db().await?.query(PROGRESS, &[goal]).await?;
                Ok(OperationResult::default())
            }
            _ => {
                let goal = Param::BigInt(self.goal(rng));
                let claimed = attempt.db().await?.execute(CLAIM, &[goal]).await?;
                Ok(OperationResult::counting(if claimed == 1 {
                    "claimed"
                } else {
                    "already_claimed"
                }))
            }
        }
    }
}

/// What the cache said about a count.
enum CacheAnswer {
    Hit(i64),
    Miss,
    Failed,
    Off,
}

impl GoalCount {
    /// Counts the user's goals in a challenge (from the cache when it has
    /// them) and assigns up to the limit, invalidating the cached count.
    async fn initialize(&self, attempt: &mut Attempt<'_>, rng: &mut SmallRng) -> Result<OperationResult, ErrorClass> {
        let (user, challenge) = (self.user(rng), self.challenge(rng));
        let key = self
            .cache_enabled
            .then(|| format!("{}:goals:{user}:{challenge}", self.cache_prefix));
        let answer = match (attempt.cache(), &key) {
            (Some(cache), Some(key)) => match redis::AsyncCommands::get::<_, Option<i64>>(cache, key).await {
                Ok(Some(count)) => CacheAnswer::Hit(count),
                Ok(None) => CacheAnswer::Miss,
                Err(_) => CacheAnswer::Failed,
            },
            _ => CacheAnswer::Off,
        };
        let mut result = OperationResult::default();
        let count = match answer {
            CacheAnswer::Hit(count) => {
                result.count("cache_hit");
                count
            }
            other => {
                let count = attempt
                    .db()
                    .await?
                    .query(INITIALIZE_COUNT, &[Param::Int(user), Param::Int(challenge)])
                    .await?
                    .first_int
                    .unwrap_or(0);
                match other {
                    CacheAnswer::Miss => {
                        result.count("cache_miss");
                        if let (Some(cache), Some(key)) = (attempt.cache(), &key) {
                            let stored: redis::RedisResult<()> =
                                redis::AsyncCommands::set_ex(cache, key, count, self.cache_ttl_s).await;
                            if stored.is_err() {
                                result.count("cache_error");
                            }
                        }
                    }
                    CacheAnswer::Failed => result.count("cache_error"),
                    _ => {}
                }
                count
            }
        };
        let limit = i64::from(self.defaults.data.goal_limit);
        if count >= limit {
            result.count("at_limit");
            return Ok(result);
        }
        let missing = (limit - count) as i32;
        attempt
            .db()
            .await?
            .execute(
                INITIALIZE_ASSIGN,
                &[Param::Int(user), Param::Int(challenge), Param::Int(missing)],
            )
            .await?;
        result.count("assigned");
        if let (Some(cache), Some(key)) = (attempt.cache(), &key) {
            // Invalidate before COMMIT: a reader between the two re-caches
            // the old count for at most the TTL, the usual cache-aside race.
            let removed: redis::RedisResult<()> = redis::AsyncCommands::del(cache, key).await;
            if removed.is_err() {
                result.count("cache_error");
            }
        }
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_scale_sizes_the_data() {
        let workload = GoalCount::new(&WorkloadOverrides {
            scale: Some(0.01),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(workload.users, 2_000);
        let plan = workload.data_plan();
        assert!(plan.seed_sql.contains("generate_series(1, 2000)"), "{}", plan.seed_sql);
        assert!(
            !plan.seed_sql.contains('{'),
            "every placeholder filled: {}",
            plan.seed_sql
        );
        assert!(plan.template_name.contains("u2000"));
    }

    #[test]
    fn scale_must_be_positive() {
        let zero = WorkloadOverrides {
            scale: Some(0.0),
            ..Default::default()
        };
        assert!(GoalCount::new(&zero).is_err());
    }
}
