//! Data loaded once, copied per cell.
//!
//! A workload's data goes into a template database the first time it is
//! needed (marked `IS_TEMPLATE` only once fully loaded, so an interrupted
//! load is redone rather than trusted); every cell then gets a fresh copy
//! with `CREATE DATABASE … TEMPLATE` (`STRATEGY FILE_COPY` on 15+, which
//! copies files instead of WAL-logging every block). Nothing here runs a
//! workload.

use std::time::{Duration, Instant};

use super::pg_error::{connection_lost, pg_reason};
use crate::provision::tls::{PgTarget, TargetError, TlsError};
use crate::provision::{database_url, mask_url};
use crate::record::TemplateInfo;
use crate::workload::DataPlan;

/// Loading, copying, granting or dropping failed.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The server or the socket refused a step.
    #[error("{step} on {url}: {}", pg_reason(.error))]
    Database {
        /// What was being done, e.g. "copying the template for the cell".
        step: &'static str,
        /// The URL it was done on, password masked.
        url: String,
        /// What the server or the socket said.
        error: tokio_postgres::Error,
    },
    /// The URL's TLS settings cannot be used.
    #[error("connecting to {url}: {error}")]
    Tls {
        /// The URL, password masked.
        url: String,
        /// What is wrong with its settings.
        error: TlsError,
    },
}

impl TemplateError {
    /// Whether the server stopped answering (see [`RunError::is_connection_loss`]).
    ///
    /// [`RunError::is_connection_loss`]: super::RunError::is_connection_loss
    pub fn is_connection_loss(&self) -> bool {
        match self {
            TemplateError::Database { error, .. } => connection_lost(error),
            TemplateError::Tls { .. } => false,
        }
    }
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, TemplateError> {
    let target = PgTarget::parse(url).map_err(|e| match e {
        TargetError::Url(e) => db_error("connecting", url, e),
        TargetError::Tls(error) => TemplateError::Tls {
            url: mask_url(url),
            error,
        },
    })?;
    let (client, connection) = target.connect().await.map_err(|e| db_error("connecting", url, e))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

fn db_error(step: &'static str, url: &str, error: tokio_postgres::Error) -> TemplateError {
    TemplateError::Database {
        step,
        url: mask_url(url),
        error,
    }
}

/// Makes sure the template of `plan` exists on the server at `admin_url`
/// (any database on it), loading it when missing or incomplete.
pub async fn ensure_template(admin_url: &str, plan: &DataPlan) -> Result<TemplateInfo, TemplateError> {
    ensure_template_then(admin_url, plan, || {}).await
}

/// [`ensure_template`], calling `on_load` just before a load starts (the
/// cell's deadline lifts itself for it: a load may take minutes).
pub(super) async fn ensure_template_then(
    admin_url: &str,
    plan: &DataPlan,
    on_load: impl FnOnce(),
) -> Result<TemplateInfo, TemplateError> {
    let admin = connect(admin_url).await?;
    let existing = admin
        .query_opt(
            "SELECT datistemplate FROM pg_database WHERE datname = $1",
            &[&plan.template_name],
        )
        .await
        .map_err(|e| db_error("looking for the template", admin_url, e))?;
    let name = &plan.template_name;
    if !existing.as_ref().is_some_and(|row| row.get::<_, bool>(0)) {
        on_load();
    }
    if let Some(row) = existing {
        if row.get::<_, bool>(0) {
            let size_bytes = database_size(&admin, name, admin_url).await?;
            return Ok(TemplateInfo {
                name: name.clone(),
                reused: true,
                load_s: 0.0,
                size_bytes,
            });
        }
        eprintln!("contend: template {name} was left half-loaded by an earlier run; loading it again");
        admin
            .batch_execute(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
            .await
            .map_err(|e| db_error("dropping the half-loaded template", admin_url, e))?;
    }
    let started = Instant::now();
    eprintln!("contend: loading {name} (once; later runs copy it)…");
    admin
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .map_err(|e| db_error("creating the template", admin_url, e))?;
    let template_url = database_url(admin_url, name);
    {
        let loader = connect(&template_url).await?;
        loader
            .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .await
            .map_err(|e| db_error("creating pg_stat_statements", &template_url, e))?;
        loader
            .batch_execute(&plan.schema_sql)
            .await
            .map_err(|e| db_error("creating the schema", &template_url, e))?;
        loader
            .batch_execute(&plan.seed_sql)
            .await
            .map_err(|e| db_error("loading the data", &template_url, e))?;
        loader
            .batch_execute("VACUUM (ANALYZE, FREEZE)")
            .await
            .map_err(|e| db_error("vacuuming the loaded data", &template_url, e))?;
    }
    // The loader connection is gone: a template must have no session open
    // while it is copied.
    admin
        .batch_execute(&format!("ALTER DATABASE \"{name}\" IS_TEMPLATE true"))
        .await
        .map_err(|e| db_error("marking the template complete", admin_url, e))?;
    let size_bytes = database_size(&admin, name, admin_url).await?;
    let load_s = started.elapsed().as_secs_f64();
    eprintln!(
        "contend: loaded {name} in {load_s:.1} s ({} MB)",
        size_bytes / (1024 * 1024)
    );
    Ok(TemplateInfo {
        name: name.clone(),
        reused: false,
        load_s,
        size_bytes,
    })
}

async fn database_size(admin: &tokio_postgres::Client, name: &str, url: &str) -> Result<i64, TemplateError> {
    admin
        .query_one("SELECT pg_database_size($1)", &[&name])
        .await
        .map(|row| row.get(0))
        .map_err(|e| db_error("measuring the template", url, e))
}

/// Templates up to this size are copied through the WAL, larger ones file
/// by file. FILE_COPY must checkpoint first (and the DROP after it pays
/// another): measured here with fsync on, a 16 MB copy took 0.35–2.0 s
/// and its drop 0.85 s by FILE_COPY, against 0.2–0.45 s and 0.15 s through
/// the WAL; for 227 MB FILE_COPY took 0.31–1.1 s and the WAL 1.8 s.
const WAL_LOG_COPY_MAX_BYTES: i64 = 64 << 20;

/// Creates `cell_database` as a copy of `template`; returns how long it took.
pub async fn copy_for_cell(
    admin_url: &str,
    template: &TemplateInfo,
    cell_database: &str,
    server_version_num: u32,
) -> Result<Duration, TemplateError> {
    let admin = connect(admin_url).await?;
    // STRATEGY exists from PostgreSQL 15 (before: always file by file).
    let strategy = match (server_version_num >= 15, template.size_bytes <= WAL_LOG_COPY_MAX_BYTES) {
        (false, _) => "",
        (true, true) => " STRATEGY WAL_LOG",
        (true, false) => " STRATEGY FILE_COPY",
    };
    let template = &template.name;
    let started = Instant::now();
    // Two statements: neither may run inside the implicit transaction of a
    // multi-statement query.
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{cell_database}\" WITH (FORCE)"))
        .await
        .map_err(|e| db_error("dropping an old cell database", admin_url, e))?;
    admin
        .batch_execute(&format!(
            "CREATE DATABASE \"{cell_database}\" TEMPLATE \"{template}\"{strategy}"
        ))
        .await
        .map_err(|e| db_error("copying the template for the cell", admin_url, e))?;
    Ok(started.elapsed())
}

/// Lets `role` use everything in the cell's copy: its tables, sequences
/// and functions belong to the admin who loaded the template, and the
/// clients connect as a role that is not a superuser (see
/// [`crate::provision::CLIENT_ROLE`]). `cell_admin_url` is the admin's URL
/// of the cell's database.
pub async fn grant_cell_to(cell_admin_url: &str, role: &str) -> Result<(), TemplateError> {
    let admin = connect(cell_admin_url).await?;
    admin
        .batch_execute(&format!(
            "DO $$DECLARE s text;
             BEGIN
               FOR s IN SELECT nspname FROM pg_namespace
                        WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema' LOOP
                 EXECUTE format('GRANT USAGE, CREATE ON SCHEMA %I TO %I', s, '{role}');
                 EXECUTE format('GRANT ALL ON ALL TABLES IN SCHEMA %I TO %I', s, '{role}');
                 EXECUTE format('GRANT ALL ON ALL SEQUENCES IN SCHEMA %I TO %I', s, '{role}');
                 EXECUTE format('GRANT ALL ON ALL FUNCTIONS IN SCHEMA %I TO %I', s, '{role}');
               END LOOP;
             END$$"
        ))
        .await
        .map_err(|e| db_error("granting the clients' role the cell's tables", cell_admin_url, e))
}

/// Drops a cell's database, ending any session still in it.
pub async fn drop_database(admin_url: &str, database: &str) -> Result<(), TemplateError> {
    let admin = connect(admin_url).await?;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"))
        .await
        .map_err(|e| db_error("dropping the cell database", admin_url, e))
}
