//! seat-reservation: a course-registration rush or flash sale.
//!
//! Sections have a capacity; students reserve a seat in Zipf-popular
//! sections. The request (student, section) is its idempotency key, so a
//! repeated request is answered ("duplicate") without a second seat. Five
//! strategies take the seat:
//! - `conditional-update`: `UPDATE … WHERE taken < capacity`, then the insert;
//! - `for-update`: read the section under `FOR UPDATE`, check, insert, update;
//! - `skip-locked`: claim one free per-seat row with `FOR UPDATE SKIP LOCKED`;
//! - `optimistic`: compare-and-set on a version column, bounded retries;
//! - `redis-gate`: take the seat from a Redis counter first, confirm in the
//!   database, give the seat back (compensation) when the database step
//!   fails; the database step stays conditional, so a lost or wrong Redis
//!   can never oversell.
//!
//! Invariants, checked after every cell: no section holds more reservations
//! than its capacity; each strategy's counter (`taken`, claimed seats, the
//! Redis counters) agrees with the reservations; no student twice in one
//! section.

use rand::rngs::SmallRng;
use rand::Rng;
use rand_distr::{Distribution, Zipf};
use serde::{Deserialize, Serialize};

use super::{
    choose_strategy, in_range, parse_defaults, scaled_rows, zipf, CellContext, DataPlan, InvariantCheck, OperationResult, Workload, WorkloadDef, WorkloadError,
    WorkloadOverrides, MAX_THINK_TIME_MS,
};
use crate::client::Attempt;
use crate::client::ErrorClass;
use crate::client::Param;

/// Registry name.
pub const NAME: &str = "seat-reservation";

/// The strategies, in the order the help lists them.
pub const STRATEGIES: &[&str] = &[
    "conditional-update",
    "for-update",
    "skip-locked",
    "optimistic",
    "redis-gate",
];

const DEFAULTS: &str = include_str!("../../workloads/seat-reservation.toml");
const SCHEMA: &str = include_str!("../../sql/seat-reservation/schema.sql");
const SEED: &str = include_str!("../../sql/seat-reservation/seed.sql");
const FIND_RESERVATION: &str = include_str!("../../sql/seat-reservation/find_reservation.sql");
const INSERT_RESERVATION: &str = include_str!("../../sql/seat-reservation/insert_reservation.sql");
const TAKE_SEAT_IF_FREE: &str = include_str!("../../sql/seat-reservation/take_seat_if_free.sql");
const RELEASE_SEAT: &str = include_str!("../../sql/seat-reservation/release_seat.sql");
const LOCK_SECTION: &str = include_str!("../../sql/seat-reservation/lock_section.sql");
const TAKE_SEAT: &str = include_str!("../../sql/seat-reservation/take_seat.sql");
const CLAIM_FREE_SEAT: &str = include_str!("../../sql/seat-reservation/claim_free_seat.sql");
const ASSIGN_SEAT: &str = include_str!("../../sql/seat-reservation/assign_seat.sql");
const READ_SECTION: &str = include_str!("../../sql/seat-reservation/read_section.sql");
const TAKE_SEAT_AT_VERSION: &str = include_str!("../../sql/seat-reservation/take_seat_at_version.sql");
const INJECTED_FAILURE: &str = include_str!("../../sql/seat-reservation/injected_failure.sql");
const FREE_SEATS: &str = include_str!("../../sql/seat-reservation/free_seats.sql");
const RESERVATIONS_PER_SECTION: &str = include_str!("../../sql/seat-reservation/reservations_per_section.sql");
const CLAIMED_SEATS: &str = include_str!("../../sql/seat-reservation/claimed_seats.sql");
const DOUBLE_RESERVATIONS: &str = include_str!("../../sql/seat-reservation/double_reservations.sql");

const OPERATIONS: &[&str] = &["reserve"];

/// workloads/seat-reservation.toml.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeatDefaults {
    /// Data size.
    pub data: SeatData,
    /// Client behaviour.
    pub traffic: SeatTraffic,
    /// Default strategy.
    pub strategy: StrategyDefault,
    /// Failures injected on purpose.
    pub faults: Faults,
    /// `[slo]`: objectives every run is scored against.
    #[serde(default)]
    pub slo: crate::measure::SloSpec,
}

/// `[data]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeatData {
    /// Sections at scale 1.
    pub sections_per_scale: u32,
    /// Seats per section.
    pub capacity: u32,
    /// Students at scale 1.
    pub students_per_scale: u32,
}

/// `[traffic]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeatTraffic {
    /// Zipf exponent over sections; 0 is uniform.
    pub zipf_exponent: f64,
    /// Pause between a client's transactions, milliseconds.
    pub think_time_ms: u64,
    /// optimistic: compare-and-set attempts per reservation.
    pub optimistic_attempts: u32,
}

/// `[strategy]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StrategyDefault {
    /// Strategy used without `--strategy`.
    pub default: String,
}

/// `[faults]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// redis-gate: share of database confirmations failed on purpose.
    pub confirm_failure_rate: f64,
}

/// The seat-reservation workload, configured.
pub struct SeatReservation {
    slo: crate::measure::SloSpec,
    strategy: &'static str,
    sections: u32,
    capacity: u32,
    students: u32,
    think_time_ms: u64,
    optimistic_attempts: u32,
    confirm_failure_rate: f64,
    section_distribution: Zipf<f64>,
    /// Redis keys are prefixed by the cell database: each cell's data is fresh.
    redis_prefix: String,
}

impl SeatReservation {
    /// The workload with its compiled-in defaults and `overrides`.
    pub fn new(overrides: &WorkloadOverrides) -> Result<SeatReservation, WorkloadError> {
        let defaults: SeatDefaults = parse_defaults(NAME, DEFAULTS, overrides)?;
        defaults.slo.validate().map_err(|e| WorkloadError::Defaults {
            name: NAME.into(),
            reason: e.to_string(),
        })?;
        let strategy = choose_strategy(NAME, overrides, &defaults.strategy.default, STRATEGIES)?;
        let scale = overrides.scale.unwrap_or(1.0);
        if !(scale > 0.0 && scale.is_finite()) {
            return Err(WorkloadError::Invalid(format!(
                "--scale {scale}: must be a positive number (1 = default size)"
            )));
        }
        let data = &defaults.data;
        let sections = scaled_rows("data.sections_per_scale", u64::from(data.sections_per_scale), scale)? as u32;
        let students = scaled_rows("data.students_per_scale", u64::from(data.students_per_scale), scale)? as u32;
        in_range("data.capacity", data.capacity, 0, i32::MAX as u32, "seats")?;
        in_range("traffic.think_time_ms", defaults.traffic.think_time_ms, 0, MAX_THINK_TIME_MS, "ms")?;
        in_range("traffic.optimistic_attempts", defaults.traffic.optimistic_attempts, 0, 1_000, "attempts")?;
        let rate = defaults.faults.confirm_failure_rate;
        if !(0.0..=1.0).contains(&rate) {
            return Err(WorkloadError::Invalid(format!(
                "faults.confirm_failure_rate {rate}: give a share between 0 and 1"
            )));
        }
        let section_distribution = zipf("traffic.zipf_exponent", u64::from(sections), defaults.traffic.zipf_exponent)?;
        Ok(SeatReservation {
            slo: defaults.slo.clone(),
            strategy,
            sections,
            capacity: defaults.data.capacity,
            students,
            think_time_ms: overrides.think_time_ms.unwrap_or(defaults.traffic.think_time_ms),
            optimistic_attempts: defaults.traffic.optimistic_attempts.max(1),
            confirm_failure_rate: rate,
            section_distribution,
            redis_prefix: String::new(),
        })
    }

    fn gate_key(&self, section: i32) -> String {
        format!("{}:seats:{section}", self.redis_prefix)
    }

    /// conditional-update: the seat first, only while one is free.
    async fn conditional_update(
        &self,
        attempt: &mut Attempt<'_>,
        request: &Request,
    ) -> Result<&'static str, ErrorClass> {
        let db = attempt.db().await?;
        if db.query(FIND_RESERVATION, &[request.key()]).await?.rows > 0 {
            return Ok("duplicate");
        }
        if db.query(TAKE_SEAT_IF_FREE, &[request.section()]).await?.rows == 0 {
            return Ok("full");
        }
        if db.query(INSERT_RESERVATION, &request.row()).await?.rows == 0 {
            // A concurrent copy of this request won: give the seat back.
            db.execute(RELEASE_SEAT, &[request.section()]).await?;
            return Ok("duplicate");
        }
        Ok("reserved")
    }

    /// for-update: the section row locked while deciding.
    async fn for_update(&self, attempt: &mut Attempt<'_>, request: &Request) -> Result<&'static str, ErrorClass> {
        let db = attempt.db().await?;
        let free = db
            .query(LOCK_SECTION, &[request.section()])
            .await?
            .first_int
            .unwrap_or(0);
        if free <= 0 {
            return Ok("full");
        }
        if db.query(INSERT_RESERVATION, &request.row()).await?.rows == 0 {
            return Ok("duplicate");
        }
        db.execute(TAKE_SEAT, &[request.section()]).await?;
        Ok("reserved")
    }

    /// skip-locked: one seat row claimed without waiting for the others.
    async fn skip_locked(&self, attempt: &mut Attempt<'_>, request: &Request) -> Result<&'static str, ErrorClass> {
        let db = attempt.db().await?;
        let Some(seat) = db.query(CLAIM_FREE_SEAT, &[request.section()]).await?.first_int else {
            return Ok("full");
        };
        if db.query(INSERT_RESERVATION, &request.row()).await?.rows == 0 {
            return Ok("duplicate");
        }
        db.execute(ASSIGN_SEAT, &[Param::BigInt(seat), Param::Int(request.student)])
            .await?;
        Ok("reserved")
    }

    /// optimistic: compare-and-set on the section's version, retried.
    async fn optimistic(&self, attempt: &mut Attempt<'_>, request: &Request) -> Result<&'static str, ErrorClass> {
        let db = attempt.db().await?;
        if db.query(FIND_RESERVATION, &[request.key()]).await?.rows > 0 {
            return Ok("duplicate");
        }
        for tries in 0..self.optimistic_attempts {
            let read = db.query_row_ints(READ_SECTION, &[request.section()]).await?;
            let (free, version) = (read.first().copied().unwrap_or(0), read.get(1).copied().unwrap_or(0));
            if free <= 0 {
                return Ok("full");
            }
            if db
                .execute(TAKE_SEAT_AT_VERSION, &[request.section(), Param::BigInt(version)])
                .await?
                == 1
            {
                if db.query(INSERT_RESERVATION, &request.row()).await?.rows == 0 {
                    db.execute(RELEASE_SEAT, &[request.section()]).await?;
                    return Ok("duplicate");
                }
                return Ok(if tries == 0 {
                    "reserved"
                } else {
                    "reserved_after_conflict"
                });
            }
        }
        Ok("gave_up")
    }

    /// redis-gate: the Redis counter decides first; the database confirms
    /// (conditionally, so Redis can never oversell) and a failed
    /// confirmation gives the seat back.
    async fn redis_gate(
        &self,
        attempt: &mut Attempt<'_>,
        request: &Request,
        inject: bool,
    ) -> Result<&'static str, ErrorClass> {
        let key = self.gate_key(request.section);
        let gate = match attempt.cache() {
            Some(redis) => redis::AsyncCommands::decr::<_, _, i64>(redis, &key, 1).await.ok(),
            None => None,
        };
        let Some(remaining) = gate else {
            // Redis is gone: the database alone decides, as conditional-update.
            attempt.count("gate_unavailable");
            return self.conditional_update(attempt, request).await;
        };
        if remaining < 0 {
            self.compensate(attempt, &key, false).await;
            return Ok("full");
        }
        let confirmed = self.confirm_in_database(attempt, request, inject).await;
        match confirmed {
            Ok("reserved") => Ok("reserved"),
            Ok(other) => {
                self.compensate(attempt, &key, true).await;
                Ok(other)
            }
            Err(class) => {
                self.compensate(attempt, &key, true).await;
                Err(class)
            }
        }
    }

    /// The gate's database step: conditional-update (a failure injected
    /// first, when asked).
    async fn confirm_in_database(
        &self,
        attempt: &mut Attempt<'_>,
        request: &Request,
        inject: bool,
    ) -> Result<&'static str, ErrorClass> {
        if inject {
            attempt.db().await?.query(INJECTED_FAILURE, &[]).await?;
        }
        self.conditional_update(attempt, request).await
    }

    /// Gives a seat back to the gate; counts the compensation when the
    /// database step had been reached.
    async fn compensate(&self, attempt: &mut Attempt<'_>, key: &str, after_database: bool) {
        if after_database {
            attempt.count("compensation_attempted");
        }
        let given_back = match attempt.cache() {
            Some(redis) => redis::AsyncCommands::incr::<_, _, i64>(redis, key, 1).await.is_ok(),
            None => false,
        };
        if after_database {
            attempt.count(if given_back {
                "compensation_succeeded"
            } else {
                "compensation_failed"
            });
        }
    }
}

/// One reservation request.
struct Request {
    student: i32,
    section: i32,
    key: String,
}

impl Request {
    fn section(&self) -> Param {
        Param::Int(self.section)
    }

    fn key(&self) -> Param {
        Param::Text(self.key.clone())
    }

    fn row(&self) -> [Param; 3] {
        [self.section(), Param::Int(self.student), self.key()]
    }
}

impl WorkloadDef for SeatReservation {
    const NAME: &'static str = NAME;

    fn build(overrides: &WorkloadOverrides) -> Result<SeatReservation, WorkloadError> {
        SeatReservation::new(overrides)
    }
}

impl Workload for SeatReservation {
    fn slo(&self) -> crate::measure::SloSpec {
        self.slo.clone()
    }

    fn operations(&self) -> &'static [&'static str] {
        OPERATIONS
    }

    fn strategy(&self) -> Option<&'static str> {
        Some(self.strategy)
    }

    fn goodput_outcomes(&self) -> &'static [&'static str] {
        &["reserved", "reserved_after_conflict"]
    }

    fn uses_redis(&self) -> bool {
        self.strategy == "redis-gate"
    }

    fn data_plan(&self) -> DataPlan {
        DataPlan {
            template_name: format!("contend_tmpl_seat_reservation_s{}_c{}", self.sections, self.capacity),
            schema_sql: SCHEMA.to_string(),
            seed_sql: SEED
                .replace("{sections}", &self.sections.to_string())
                .replace("{capacity}", &self.capacity.to_string()),
        }
    }

    async fn prepare_cell(&mut self, cell: CellContext<'_>) -> Result<(), WorkloadError> {
        self.redis_prefix = cell.database.to_string();
        if self.strategy != "redis-gate" {
            return Ok(());
        }
        let redis = cell.redis.ok_or(WorkloadError::NoRedis {
            workload: NAME,
            needed_by: "redis-gate",
        })?;
        let rows = cell
            .client
            .query(FREE_SEATS, &[])
            .await
            .map_err(|source| WorkloadError::CellData {
                workload: NAME,
                what: "reading free seats for the gate",
                source,
            })?;
        let counters: Vec<(String, i32)> = rows.iter().map(|row| (self.gate_key(row.get(0)), row.get(1))).collect();
        redis::AsyncCommands::mset::<_, _, ()>(redis, &counters)
            .await
            .map_err(|source| WorkloadError::CellRedis {
                workload: NAME,
                what: "seeding the gate's counters in Redis",
                source,
            })
    }

    fn choose_operation(&self, _rng: &mut SmallRng) -> usize {
        0
    }

    fn think_time_ms(&self) -> u64 {
        self.think_time_ms
    }

    async fn run_operation(
        &self,
        _op: usize,
        attempt: &mut Attempt<'_>,
        rng: &mut SmallRng,
    ) -> Result<OperationResult, ErrorClass> {
        let section = self.section_distribution.sample(rng) as i32;
        let student = rng.random_range(1..=self.students as i32);
        let request = Request {
            student,
            section,
            key: format!("s{student}-c{section}"),
        };
        let outcome = match self.strategy {
            "conditional-update" => self.conditional_update(attempt, &request).await?,
            "for-update" => self.for_update(attempt, &request).await?,
            "skip-locked" => self.skip_locked(attempt, &request).await?,
            "optimistic" => self.optimistic(attempt, &request).await?,
            _ => {
                let inject = self.confirm_failure_rate > 0.0 && rng.random_bool(self.confirm_failure_rate);
                self.redis_gate(attempt, &request, inject).await?
            }
        };
        Ok(OperationResult::counting(outcome))
    }

    async fn check_invariants(&self, cell: CellContext<'_>) -> Vec<InvariantCheck> {
        let mut checks = Vec::new();
        match cell.client.query(RESERVATIONS_PER_SECTION, &[]).await {
            Ok(rows) => {
                let sections: Vec<(i32, i32, i32, i32)> =
                    rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect();
                let held: i64 = sections.iter().map(|s| i64::from(s.3)).sum();
                let oversold: Vec<String> = sections
                    .iter()
                    .filter(|s| s.3 > s.1)
                    .take(5)
                    .map(|s| format!("section {} holds {} of {}", s.0, s.3, s.1))
                    .collect();
                checks.push(InvariantCheck {
                    name: "no section oversold: count(reservations) <= capacity".into(),
                    holds: oversold.is_empty(),
                    not_checked: false,
                    detail: if oversold.is_empty() {
                        format!("{held} reservations in {} sections, none over capacity", sections.len())
                    } else {
                        oversold.join("; ")
                    },
                });
                if self.strategy != "skip-locked" {
                    let off: Vec<String> = sections
                        .iter()
                        .filter(|s| s.2 != s.3)
                        .take(5)
                        .map(|s| format!("section {} taken {} but {} reservations", s.0, s.2, s.3))
                        .collect();
                    checks.push(InvariantCheck {
                        name: "taken = count(reservations) per section".into(),
                        holds: off.is_empty(),
                        not_checked: false,
                        detail: if off.is_empty() {
                            format!("{} sections agree", sections.len())
                        } else {
                            off.join("; ")
                        },
                    });
                }
                if self.strategy == "redis-gate" {
                    checks.push(self.check_gate(cell.redis, &sections).await);
                }
            }
            Err(e) => checks.push(failed_check("no section oversold: count(reservations) <= capacity", e)),
        }
        if self.strategy == "skip-locked" {
            checks.push(match cell.client.query_one(CLAIMED_SEATS, &[]).await {
                Ok(row) => {
                    let (seats, reservations): (i64, i64) = (row.get(0), row.get(1));
                    InvariantCheck {
                        name: "claimed seats = count(reservations)".into(),
                        holds: seats == reservations,
                        not_checked: false,
                        detail: format!("{seats} seats claimed, {reservations} reservations"),
                    }
                }
                Err(e) => failed_check("claimed seats = count(reservations)", e),
            });
        }
        checks.push(match cell.client.query_one(DOUBLE_RESERVATIONS, &[]).await {
            Ok(row) => {
                let doubles: i64 = row.get(0);
                InvariantCheck {
                    name: "no student twice in one section".into(),
                    holds: doubles == 0,
                    not_checked: false,
                    detail: format!("{doubles} (section, student) pairs held twice"),
                }
            }
            Err(e) => failed_check("no student twice in one section", e),
        });
        checks
    }
}

impl SeatReservation {
    /// The gate's counters against the database: remaining = capacity - taken.
    async fn check_gate(
        &self,
        redis: Option<&mut redis::aio::MultiplexedConnection>,
        sections: &[(i32, i32, i32, i32)],
    ) -> InvariantCheck {
        let name = "Redis counters agree with the database (remaining = capacity - taken)".to_string();
        let Some(redis) = redis else {
            return InvariantCheck::not_checked(name, "no Redis connection to check with");
        };
        let keys: Vec<String> = sections.iter().map(|s| self.gate_key(s.0)).collect();
        match redis::AsyncCommands::mget::<_, Vec<Option<i64>>>(redis, &keys).await {
            Ok(values) => {
                let off: Vec<String> = sections
                    .iter()
                    .zip(values)
                    .filter(|(s, v)| *v != Some(i64::from(s.1 - s.2)))
                    .take(5)
                    .map(|(s, v)| format!("section {}: Redis {:?}, database {}", s.0, v, s.1 - s.2))
                    .collect();
                InvariantCheck {
                    name,
                    holds: off.is_empty(),
                    not_checked: false,
                    detail: if off.is_empty() {
                        format!("{} counters agree", sections.len())
                    } else {
                        off.join("; ")
                    },
                }
            }
            // Redis went away (killed, restarted empty): its counters are
            // gone, so agreement can be neither claimed nor refuted. The
            // database's own checks above still decide the cell.
            Err(e) => InvariantCheck::not_checked(name, format!("Redis could not be read: {e}")),
        }
    }
}

fn failed_check(name: &str, error: tokio_postgres::Error) -> InvariantCheck {
    InvariantCheck {
        name: name.to_string(),
        holds: false,
        not_checked: false,
        detail: format!("could not be checked: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_strategies_are_checked() {
        let workload = SeatReservation::new(&WorkloadOverrides::default()).unwrap();
        assert_eq!(workload.strategy, "conditional-update");
        assert_eq!(workload.sections, 200);
        let bad = WorkloadOverrides {
            strategy: Some("yolo".into()),
            ..Default::default()
        };
        let error = SeatReservation::new(&bad).err().unwrap().to_string();
        assert!(
            error.contains("unknown strategy `yolo`") && error.contains("redis-gate"),
            "{error}"
        );
    }

    #[test]
    fn fault_rate_must_be_a_share() {
        let bad = WorkloadOverrides {
            settings: vec![("faults.confirm_failure_rate".into(), "1.5".into())],
            ..Default::default()
        };
        assert!(SeatReservation::new(&bad).is_err());
    }
}
