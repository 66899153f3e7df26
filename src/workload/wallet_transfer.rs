//! wallet-transfer: money moving between wallets, and reads of their history.
//!
//! `transfer` moves a random amount from one wallet to another (never the
//! same), rejected without any change when the source is short, and writes a
//! debit and a credit to the ledger; `history` reads a wallet's latest ledger
//! entries (a scan until the migration adds an index on (wallet_id,
//! created_at)). Wallets are drawn with Zipf skew, so a few are hot. How a
//! transfer protects the two balances is the strategy:
//!
//! - `naive` locks source then destination (`FOR UPDATE`): two opposite
//!   transfers between hot wallets deadlock (40P01), retried by the driver;
//! - `ordered` locks the lower id first, so no lock cycle can form;
//! - `serializable` runs at SERIALIZABLE, reads both balances without locks
//!   and updates; conflicts fail with 40001, retried by the driver.
//!
//! After the run the total balance must be unchanged, no balance negative,
//! and every balance equal to its wallet's ledger sum.

use rand::rngs::SmallRng;
use rand::Rng;
use rand_distr::{Distribution, Zipf};
use serde::{Deserialize, Serialize};

use super::{
    choose_strategy, cumulative_weights, in_range, parse_defaults, scaled_rows, weighted_choice, zipf, with_literals, CellContext, DataPlan, InvariantCheck,
    OperationResult, Workload, WorkloadDef, WorkloadError, WorkloadOverrides, MAX_THINK_TIME_MS,
};
use crate::client::Attempt;
use crate::client::ErrorClass;
use crate::client::Param;
use crate::measure::ExplainQuery;

/// Registry name.
pub const NAME: &str = "wallet-transfer";

/// The ways a transfer can protect the two balances.
pub const STRATEGIES: &[&str] = &["naive", "ordered", "serializable"];

const DEFAULTS: &str = include_str!("../../workloads/wallet-transfer.toml");
const SCHEMA: &str = include_str!("../../sql/wallet-transfer/schema.sql");
const SEED: &str = include_str!("../../sql/wallet-transfer/seed.sql");
const LOCK_BALANCE: &str = include_str!("../../sql/wallet-transfer/lock_balance.sql");
const READ_BALANCE: &str = include_str!("../../sql/wallet-transfer/read_balance.sql");
const ADJUST_BALANCE: &str = include_str!("../../sql/wallet-transfer/adjust_balance.sql");
const RECORD_TRANSFER: &str = include_str!("../../sql/wallet-transfer/record_transfer.sql");
const SET_SERIALIZABLE: &str = include_str!("../../sql/wallet-transfer/set_serializable.sql");
const HISTORY: &str = include_str!("../../sql/wallet-transfer/history.sql");
const TOTAL_BALANCE: &str = include_str!("../../sql/wallet-transfer/total_balance.sql");
const NEGATIVE_BALANCES: &str = include_str!("../../sql/wallet-transfer/negative_balances.sql");
const LEDGER_MISMATCHES: &str = include_str!("../../sql/wallet-transfer/ledger_mismatches.sql");
const MIGRATION: &str = include_str!("../../sql/wallet-transfer/migration.sql");

const OPERATIONS: &[&str] = &["transfer", "history"];

/// Invariant names, as recorded.
pub const TOTAL_UNCHANGED: &str = "total balance is unchanged";
/// Invariant names, as recorded.
pub const NONE_NEGATIVE: &str = "no balance is negative";
/// Invariant names, as recorded.
pub const LEDGER_AGREES: &str = "ledger agrees with balances";

/// Violations listed in an invariant's detail, at most.
const SHOWN: usize = 5;

/// workloads/wallet-transfer.toml.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalletTransferDefaults {
    /// Data size.
    pub data: DataSettings,
    /// Client behaviour.
    pub traffic: TrafficSettings,
    /// Operation weights.
    pub mix: Mix,
    /// The default strategy.
    pub strategy: StrategySettings,
    /// `[slo]`: objectives every run is scored against.
    #[serde(default)]
    pub slo: crate::measure::SloSpec,
}

/// `[data]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSettings {
    /// Wallets at scale 1.
    pub wallets_per_scale: u64,
    /// Balance each wallet starts with.
    pub initial_balance: u32,
    /// Past transfers each wallet sent (and received) before the run.
    pub history_per_wallet: u32,
}

/// `[traffic]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficSettings {
    /// Zipf exponent over wallets; 0 is uniform.
    pub zipf_exponent: f64,
    /// Pause between a client's transactions, milliseconds.
    pub think_time_ms: u64,
    /// A transfer moves a uniform amount in 1..=max_amount.
    pub max_amount: u32,
}

/// `[mix]`: relative weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mix {
    /// Weight of transfer.
    pub transfer: u32,
    /// Weight of history.
    pub history: u32,
}

/// `[strategy]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StrategySettings {
    /// Strategy when `--strategy` is not given.
    pub default: String,
}

/// How a transfer protects the two balances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strategy {
    Naive,
    Ordered,
    Serializable,
}

/// The wallet-transfer workload, configured.
pub struct WalletTransfer {
    slo: crate::measure::SloSpec,
    defaults: WalletTransferDefaults,
    strategy_name: &'static str,
    strategy: Strategy,
    wallets: u64,
    think_time_ms: u64,
    cumulative_mix: [u32; 2],
    wallet_distribution: Zipf<f64>,
    /// Sum of the balances when the cell started (the conservation check).
    total_at_start: Option<i64>,
}

impl WalletTransfer {
    /// The workload with its compiled-in defaults and `overrides`.
    pub fn new(overrides: &WorkloadOverrides) -> Result<WalletTransfer, WorkloadError> {
        let defaults: WalletTransferDefaults = parse_defaults(NAME, DEFAULTS, overrides)?;
        defaults.slo.validate().map_err(|e| WorkloadError::Defaults {
            name: NAME.into(),
            reason: e.to_string(),
        })?;
        let strategy_name = choose_strategy(NAME, overrides, &defaults.strategy.default, STRATEGIES)?;
        let strategy = match strategy_name {
            "naive" => Strategy::Naive,
            "ordered" => Strategy::Ordered,
            _ => Strategy::Serializable,
        };
        let scale = overrides.scale.unwrap_or(1.0);
        if !(scale > 0.0 && scale.is_finite()) {
            return Err(WorkloadError::Invalid(format!(
                "--scale {scale}: must be a positive number (1 = default size)"
            )));
        }
        let wallets = scaled_rows("data.wallets_per_scale", defaults.data.wallets_per_scale, scale)?;
        if wallets < 2 {
            return Err(WorkloadError::Invalid(format!(
                "{wallets} wallet: a transfer needs at least 2 (raise data.wallets_per_scale or --scale)"
            )));
        }
        in_range("data.history_per_wallet", defaults.data.history_per_wallet, 0, 10_000, "transfers")?;
        in_range("traffic.think_time_ms", defaults.traffic.think_time_ms, 0, MAX_THINK_TIME_MS, "ms")?;
        if defaults.traffic.max_amount == 0 {
            return Err(WorkloadError::Invalid("traffic.max_amount must be at least 1".into()));
        }
        let mix = &defaults.mix;
        let cumulative_mix = cumulative_weights([mix.transfer, mix.history])?;
        let wallet_distribution = zipf("traffic.zipf_exponent", wallets, defaults.traffic.zipf_exponent)?;
        Ok(WalletTransfer {
            slo: defaults.slo.clone(),
            think_time_ms: overrides.think_time_ms.unwrap_or(defaults.traffic.think_time_ms),
            strategy_name,
            strategy,
            wallets,
            cumulative_mix,
            wallet_distribution,
            total_at_start: None,
            defaults,
        })
    }

    fn wallet(&self, rng: &mut SmallRng) -> i32 {
        (self.wallet_distribution.sample(rng) as u64).clamp(1, self.wallets) as i32
    }

    /// Two different wallets, both drawn with the skew (the destination is
    /// re-drawn a few times, then offset, so hot wallets trade with each other).
    fn pair(&self, rng: &mut SmallRng) -> (i32, i32) {
        let source = self.wallet(rng);
        for _ in 0..8 {
            let destination = self.wallet(rng);
            if destination != source {
                return (source, destination);
            }
        }
        let offset = rng.random_range(1..self.wallets) as i64;
        let destination = (source as i64 - 1 + offset) % self.wallets as i64 + 1;
        (source, destination as i32)
    }

    /// One transfer by the strategy; "insufficient_funds" changes nothing.
    async fn transfer(&self, attempt: &mut Attempt<'_>, rng: &mut SmallRng) -> Result<OperationResult, ErrorClass> {
        let (source, destination) = self.pair(rng);
        let amount = i64::from(rng.random_range(1..=self.defaults.traffic.max_amount));
        let (low, high) = (source.min(destination), source.max(destination));
        let balance = |result: crate::client::QueryResult| result.first_int.ok_or(ErrorClass::Other);
        let source_balance = match self.strategy {
            Strategy::Naive => {
                let session = attempt.db().await?;
                let source_balance = balance(session.query(LOCK_BALANCE, &[Param::Int(source)]).await?)?;
                session.query(LOCK_BALANCE, &[Param::Int(destination)]).await?;
                source_balance
            }
            Strategy::Ordered | Strategy::Serializable => {
                let session = attempt.db().await?;
                let read = if self.strategy == Strategy::Ordered {
                    LOCK_BALANCE
                } else {
                    session.simple(SET_SERIALIZABLE).await?;
                    READ_BALANCE
                };
                let low_balance = balance(session.query(read, &[Param::Int(low)]).await?)?;
                let high_balance = balance(session.query(read, &[Param::Int(high)]).await?)?;
                if source == low {
                    low_balance
                } else {
                    high_balance
                }
            }
        };
        if source_balance < amount {
            return Ok(OperationResult::counting("insufficient_funds"));
        }
        let session = attempt.db().await?;
        // Updates in id order: under SERIALIZABLE (no locks taken yet) two
        // opposite transfers then conflict as 40001 rather than deadlock;
        // under the locking strategies both rows are already held.
        for wallet in [low, high] {
            let delta = if wallet == source { -amount } else { amount };
            session
                .execute(ADJUST_BALANCE, &[Param::Int(wallet), Param::BigInt(delta)])
                .await?;
        }
        session
            .execute(
                RECORD_TRANSFER,
                &[Param::Int(source), Param::Int(destination), Param::BigInt(amount)],
            )
            .await?;
        Ok(OperationResult::counting("transferred"))
    }
}

impl WorkloadDef for WalletTransfer {
    const NAME: &'static str = NAME;

    fn build(overrides: &WorkloadOverrides) -> Result<WalletTransfer, WorkloadError> {
        WalletTransfer::new(overrides)
    }
}

impl Workload for WalletTransfer {
    fn slo(&self) -> crate::measure::SloSpec {
        self.slo.clone()
    }

    fn operations(&self) -> &'static [&'static str] {
        OPERATIONS
    }

    fn strategy(&self) -> Option<&'static str> {
        Some(self.strategy_name)
    }

    fn goodput_outcomes(&self) -> &'static [&'static str] {
        &["transferred", "history_read"]
    }

    fn data_plan(&self) -> DataPlan {
        let data = &self.defaults.data;
        let seed_sql = SEED
            .replace("{wallets}", &self.wallets.to_string())
            .replace("{initial_balance}", &data.initial_balance.to_string())
            .replace("{history_per_wallet}", &data.history_per_wallet.to_string());
        DataPlan {
            template_name: format!(
                "contend_tmpl_wallet_transfer_w{}_b{}_h{}",
                self.wallets, data.initial_balance, data.history_per_wallet
            ),
            schema_sql: SCHEMA.to_string(),
            seed_sql,
        }
    }

    fn explain_queries(&self) -> Vec<ExplainQuery> {
        // Wallet 1 is the hottest the Zipf draw picks.
        vec![ExplainQuery {
            name: "history".into(),
            sql: with_literals(HISTORY, &["1"]),
        }]
    }

    const MIGRATION: Option<(&'static str, &'static str)> = Some(("sql/wallet-transfer/migration.sql", MIGRATION));

    async fn prepare_cell(&mut self, cell: CellContext<'_>) -> Result<(), WorkloadError> {
        let row = cell
            .client
            .query_one(TOTAL_BALANCE, &[])
            .await
            .map_err(|source| WorkloadError::CellData {
                workload: NAME,
                what: "reading the wallets' total balance",
                source,
            })?;
        let (count, total): (i64, i64) = (row.get(0), row.get(1));
        if count < 2 {
            return Err(WorkloadError::CellUnfit {
                workload: NAME,
                reason: format!("the cell database has {count} wallets: a transfer needs 2"),
            });
        }
        if count as u64 != self.wallets {
            self.wallets = count as u64;
            self.wallet_distribution = zipf("traffic.zipf_exponent", self.wallets, self.defaults.traffic.zipf_exponent)?;
        }
        self.total_at_start = Some(total);
        Ok(())
    }

    async fn check_invariants(&self, cell: CellContext<'_>) -> Vec<InvariantCheck> {
        let client = cell.client;
        let failed = |name: &str, what: &str, e: tokio_postgres::Error| InvariantCheck {
            name: name.to_string(),
            holds: false,
            not_checked: false,
            detail: format!("could not check ({what}): {e}"),
        };
        let mut checks = Vec::with_capacity(3);

        checks.push(match client.query_one(TOTAL_BALANCE, &[]).await {
            Ok(row) => {
                let total: i64 = row.get(1);
                match self.total_at_start {
                    Some(start) => InvariantCheck {
                        name: TOTAL_UNCHANGED.into(),
                        holds: total == start,
                        not_checked: false,
                        detail: format!("sum(balance) {start} at start, {total} now ({:+})", total - start),
                    },
                    None => InvariantCheck {
                        name: TOTAL_UNCHANGED.into(),
                        holds: false,
                        not_checked: false,
                        detail: format!("sum(balance) {total} now; the total at start was never read"),
                    },
                }
            }
            Err(e) => failed(TOTAL_UNCHANGED, "summing balances", e),
        });

        checks.push(match client.query(NEGATIVE_BALANCES, &[]).await {
            Ok(rows) => {
                let shown: Vec<String> = rows
                    .iter()
                    .take(SHOWN)
                    .map(|row| format!("wallet {} at {}", row.get::<_, i32>(0), row.get::<_, i64>(1)))
                    .collect();
                InvariantCheck {
                    name: NONE_NEGATIVE.into(),
                    holds: rows.is_empty(),
                    not_checked: false,
                    detail: if rows.is_empty() {
                        "0 wallets with balance < 0".into()
                    } else {
                        format!("{} wallets with balance < 0: {}", rows.len(), shown.join(", "))
                    },
                }
            }
            Err(e) => failed(NONE_NEGATIVE, "finding negative balances", e),
        });

        checks.push(match client.query(LEDGER_MISMATCHES, &[]).await {
            Ok(rows) => {
                let shown: Vec<String> = rows
                    .iter()
                    .take(SHOWN)
                    .map(|row| {
                        format!(
                            "wallet {}: balance {}, ledger {}",
                            row.get::<_, i32>(0),
                            row.get::<_, i64>(1),
                            row.get::<_, i64>(2)
                        )
                    })
                    .collect();
                InvariantCheck {
                    name: LEDGER_AGREES.into(),
                    holds: rows.is_empty(),
                    not_checked: false,
                    detail: if rows.is_empty() {
                        format!("every wallet's balance = sum(ledger.amount) ({} wallets)", self.wallets)
                    } else {
                        format!(
                            "{} wallets where balance <> sum(ledger.amount): {}",
                            rows.len(),
                            shown.join("; ")
                        )
                    },
                }
            }
            Err(e) => failed(LEDGER_AGREES, "comparing balances with the ledger", e),
        });
        checks
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
            "transfer" => self.transfer(attempt, rng).await,
            _ => {
                let wallet = Param::Int(self.wallet(rng));
                attempt.db().await?.query(HISTORY, &[wallet]).await?;
                Ok(OperationResult::counting("history_read"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn build(overrides: WorkloadOverrides) -> Result<WalletTransfer, WorkloadError> {
        WalletTransfer::new(&overrides)
    }

    #[test]
    fn defaults_parse_and_scale_sizes_the_data() {
        let defaults: WalletTransferDefaults = parse_defaults(NAME, DEFAULTS, &WorkloadOverrides::default()).unwrap();
        assert_eq!(defaults.data.wallets_per_scale, 10_000);
        assert_eq!(defaults.data.initial_balance, 1000);
        assert_eq!(defaults.data.history_per_wallet, 5);
        assert_eq!(defaults.traffic.zipf_exponent, 1.1);
        assert_eq!(defaults.traffic.max_amount, 100);
        assert_eq!((defaults.mix.transfer, defaults.mix.history), (80, 20));
        assert_eq!(defaults.strategy.default, "ordered");

        let workload = build(WorkloadOverrides {
            scale: Some(0.01),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(workload.wallets, 100);
        assert_eq!(workload.strategy(), Some("ordered"));
        let plan = workload.data_plan();
        assert!(plan.seed_sql.contains("generate_series(1, 100)"), "{}", plan.seed_sql);
        assert!(
            !plan.seed_sql.contains('{'),
            "every placeholder filled: {}",
            plan.seed_sql
        );
        assert_eq!(plan.template_name, "contend_tmpl_wallet_transfer_w100_b1000_h5");
        let statements: String = plan.schema_sql.lines().filter(|l| !l.starts_with("--")).collect();
        assert!(!statements.to_lowercase().contains("check"), "no CHECK on balance");
        assert!(
            !statements.to_lowercase().contains("index"),
            "no index on the ledger yet"
        );
    }

    #[test]
    fn every_sql_file_starts_with_a_comment() {
        for sql in [
            SCHEMA,
            SEED,
            LOCK_BALANCE,
            READ_BALANCE,
            ADJUST_BALANCE,
            RECORD_TRANSFER,
            SET_SERIALIZABLE,
            HISTORY,
            TOTAL_BALANCE,
            NEGATIVE_BALANCES,
            LEDGER_MISMATCHES,
        ] {
            assert!(sql.starts_with("-- "), "{sql}");
        }
    }

    #[test]
    fn settings_and_strategies_are_chosen_and_checked() {
        let workload = build(WorkloadOverrides {
            strategy: Some("naive".into()),
            settings: vec![
                ("data.wallets_per_scale".into(), "20".into()),
                ("data.initial_balance".into(), "50".into()),
            ],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(workload.strategy(), Some("naive"));
        assert_eq!(workload.wallets, 20);
        assert_eq!(
            workload.data_plan().template_name,
            "contend_tmpl_wallet_transfer_w20_b50_h5"
        );

        let error = build(WorkloadOverrides {
            strategy: Some("optimistic".into()),
            ..Default::default()
        })
        .err()
        .unwrap()
        .to_string();
        assert!(error.contains("unknown strategy `optimistic`"), "{error}");
        assert!(error.contains("naive, ordered, serializable"), "{error}");

        let unknown = build(WorkloadOverrides {
            settings: vec![("traffic.speed".into(), "1".into())],
            ..Default::default()
        });
        assert!(unknown.is_err());
        let one_wallet = build(WorkloadOverrides {
            settings: vec![("data.wallets_per_scale".into(), "1".into())],
            ..Default::default()
        });
        assert!(one_wallet.err().unwrap().to_string().contains("at least 2"));
        assert!(build(WorkloadOverrides {
            scale: Some(0.0),
            ..Default::default()
        })
        .is_err());
    }

    #[test]
    fn unknown_keys_in_the_defaults_are_refused() {
        let text = DEFAULTS.replace("[mix]", "[mix]\nrefund = 3");
        let error = parse_defaults::<WalletTransferDefaults>(NAME, &text, &WorkloadOverrides::default())
            .unwrap_err()
            .to_string();
        assert!(error.contains("refund"), "{error}");
    }

    #[test]
    fn pairs_are_two_different_wallets_in_range_and_skewed() {
        let workload = build(WorkloadOverrides {
            settings: vec![
                ("data.wallets_per_scale".into(), "3".into()),
                ("traffic.zipf_exponent".into(), "3".into()),
            ],
            ..Default::default()
        })
        .unwrap();
        let mut rng = SmallRng::seed_from_u64(11);
        let mut counts = [0u32; 4];
        for _ in 0..10_000 {
            let (source, destination) = workload.pair(&mut rng);
            assert_ne!(source, destination);
            assert!((1..=3).contains(&source) && (1..=3).contains(&destination));
            counts[source as usize] += 1;
        }
        assert!(counts[1] > counts[2] && counts[2] > counts[3], "{counts:?}");
    }

    #[test]
    fn the_mix_follows_the_weights() {
        let workload = build(WorkloadOverrides::default()).unwrap();
        let mut rng = SmallRng::seed_from_u64(3);
        let history = (0..10_000).filter(|_| workload.choose_operation(&mut rng) == 1).count();
        assert!((1_700..2_300).contains(&history), "{history}");
    }
}
