//! A pooler between the app pools and the server, shared by `run` and
//! `sweep`: [`PoolerArgs`] → [`CellPooler`] for one pooler pool size, and
//! the configurations refused before anything starts (what the server or
//! the pooler would do with them, said as such).

use clap::{Args, ValueEnum};

use contend::client::PoolKind;
use contend::driver::Load;
use contend::provision::{CellPooler, ExternalPooler, PoolMode, PoolerSettings};
use contend::record::CellSettings;

use super::values::parse_pool_size;

/// PostgreSQL's default `superuser_reserved_connections`: slots the app
/// pools' role cannot take.
const DEFAULT_RESERVED: u32 = 3;

/// Slots the clients' role cannot take on a server contend starts:
/// `superuser_reserved_connections` (+ `reserved_connections`, 16+) as
/// `--pg-setting` gives them, else PostgreSQL's default.
pub fn reserved_slots(pg_settings: &[(String, String)]) -> u32 {
    let given = |key: &str| {
        pg_settings
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.trim().parse::<u32>().ok())
    };
    given("superuser_reserved_connections").unwrap_or(DEFAULT_RESERVED) + given("reserved_connections").unwrap_or(0)
}

/// PostgreSQL's default `max_connections`.
const DEFAULT_MAX_CONNECTIONS: u32 = 100;

/// The pooler flags of `run` and `sweep`.
#[derive(Debug, Args)]
pub struct PoolerArgs {
    /// A pooler between the app pools and the server: pgbouncer, started by contend in front of each cell's database (contend's own connections still go to the server directly).
    #[arg(long, value_enum, conflicts_with = "pooler_url")]
    pub pooler: Option<PoolerArg>,
    /// PgBouncer's pool_mode: session, transaction or statement [default: transaction].
    #[arg(long, value_enum, requires = "pooler")]
    pub pooler_mode: Option<PoolModeArg>,
    /// PgBouncer's max_client_conn: client connections it accepts, past which clients are refused [default: 1000].
    #[arg(long, value_name = "N", requires = "pooler", value_parser = parse_pool_size)]
    pub pooler_max_client_conn: Option<u32>,
    /// PgBouncer's reserve_pool_size: extra server connections for a pool whose clients waited 5 s [default: 0].
    #[arg(long, value_name = "N", requires = "pooler", value_parser = clap::value_parser!(u32).range(0..=10000))]
    pub pooler_reserve: Option<u32>,
    /// A PgBouncer of your own in front of the server (--database-url): the app pools connect here, with the cell's database name (route every database to the server: a `* = host=…` entry).
    #[arg(long, value_name = "URL", requires = "pooler_admin_url")]
    pub pooler_url: Option<String>,
    /// That PgBouncer's admin console (database pgbouncer), sampled each second.
    #[arg(long, value_name = "URL", requires = "pooler_url")]
    pub pooler_admin_url: Option<String>,
}

/// `--pooler` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PoolerArg {
    /// PgBouncer, started by contend.
    Pgbouncer,
}

/// `--pooler-mode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PoolModeArg {
    /// A server connection per client, until it disconnects.
    Session,
    /// A server connection per transaction.
    Transaction,
    /// A server connection per statement (no multi-statement transactions).
    Statement,
}

impl PoolerArgs {
    /// The user's PgBouncer, when given.
    pub fn external(&self) -> Option<ExternalPooler> {
        Some(ExternalPooler {
            url: self.pooler_url.clone()?,
            admin_url: self.pooler_admin_url.clone()?,
        })
    }

    /// The pooler of `cell` with `pool_size` (`None`: PgBouncer's default,
    /// 20), checked against the cell and the server's `max_connections`
    /// (`None`: PostgreSQL's default, 100; unknown for an external server,
    /// which is then not checked).
    pub fn cell_pooler(
        &self,
        pool_size: Option<u32>,
        cell: &CellSettings,
        max_connections: Option<u32>,
        server_known: bool,
        reserved: u32,
    ) -> anyhow::Result<Option<CellPooler>> {
        if self.pooler_url.is_some() {
            anyhow::ensure!(
                pool_size.is_none(),
                "--pooler-pool-size(s) are for --pooler pgbouncer: the PgBouncer at --pooler-url has its own settings (recorded from its SHOW CONFIG)"
            );
            check_statement_timeout(cell)?;
            return Ok(Some(CellPooler::External));
        }
        let Some(PoolerArg::Pgbouncer) = self.pooler else {
            anyhow::ensure!(pool_size.is_none(), "--pooler-pool-size(s) need --pooler pgbouncer");
            return Ok(None);
        };
        let defaults = PoolerSettings::default();
        let settings = PoolerSettings {
            mode: match self.pooler_mode {
                None => defaults.mode,
                Some(PoolModeArg::Session) => PoolMode::Session,
                Some(PoolModeArg::Transaction) => PoolMode::Transaction,
                Some(PoolModeArg::Statement) => PoolMode::Statement,
            },
            pool_size: pool_size.unwrap_or(defaults.pool_size),
            max_client_conn: self.pooler_max_client_conn.unwrap_or(defaults.max_client_conn),
            reserve_pool_size: self.pooler_reserve.unwrap_or(defaults.reserve_pool_size),
        };
        check_statement_timeout(cell)?;
        let clients = app_connections(cell);
        anyhow::ensure!(
            settings.max_client_conn >= clients,
            "--pooler-max-client-conn {} is below the {clients} connections the app pools open ({}): PgBouncer would refuse {} of them (\"no more connections allowed (max_client_conn)\"); raise it to at least {clients}",
            settings.max_client_conn,
            connections_said(cell),
            clients - settings.max_client_conn,
        );
        if server_known {
            let max_connections = max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
            let usable = max_connections.saturating_sub(reserved);
            anyhow::ensure!(
                settings.server_connections() <= usable,
                "PgBouncer's pool ({} + reserve {}) exceeds max_connections {max_connections} less {reserved} superuser-reserved slots: the server would refuse its connections past {usable} (53300) and PgBouncer would wait 15 s (server_login_retry) before trying again; lower --pooler-pool-size(s) or raise --max-connections",
                settings.pool_size,
                settings.reserve_pool_size,
            );
        }
        Ok(Some(CellPooler::PgBouncer(settings)))
    }
}

/// PgBouncer 1.18 refuses the `options` startup parameter contend sets
/// statement_timeout with.
fn check_statement_timeout(cell: &CellSettings) -> anyhow::Result<()> {
    anyhow::ensure!(
        cell.pool.statement_timeout.is_none(),
        "--statement-timeout with a pooler: PgBouncer refuses the startup parameter that carries it (\"unsupported startup parameter: options\"); set it on the server instead, e.g. --pg-setting statement_timeout=5s"
    );
    Ok(())
}

/// Client connections the app side opens at most: the pools' sizes, or
/// with no pool, one per client (or transaction in flight).
fn app_connections(cell: &CellSettings) -> u32 {
    match cell.pool.kind {
        PoolKind::None => match cell.driver.load {
            Load::Closed { clients } => clients,
            Load::Open { max_in_flight, .. } => max_in_flight,
        },
        _ => cell.instances.saturating_mul(cell.pool.size),
    }
}

fn connections_said(cell: &CellSettings) -> String {
    match cell.pool.kind {
        PoolKind::None => "one per client, --pool none".into(),
        _ => format!("{} instances × pool {}", cell.instances, cell.pool.size),
    }
}
