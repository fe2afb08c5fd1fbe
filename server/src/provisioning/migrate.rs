//! Schema migrations with refinery: the platform schema, and every tenant
//! schema (each with its own history table inside it).
//!
//! Refinery takes no lock, so each run holds an advisory lock named after
//! its schema: two nodes (or a node and the CLI) never migrate one schema at
//! once. Each tenant migration commits on its own and the tenant's
//! `schema_version` is recorded after its run, so an interrupted `migrate`
//! simply continues where it stopped when run again.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, PoisonError},
};

use refinery::Migration;
use tokio_postgres::Client;

use super::ProvisioningError;
use crate::{
    database::{connect, DbError},
    telemetry::with_causes,
    tenancy::SchemaName,
};

mod embedded {
    pub mod platform {
        refinery::embed_migrations!("../migrations/platform");
    }
    pub mod tenant {
        refinery::embed_migrations!("../migrations/tenant");
    }
}

pub const PLATFORM_HISTORY: &str = "platform.refinery_schema_history";

/// The tenants whose schemas are in this database: those of its own
/// clusters. The directory database also lists the tenants of clusters
/// with a database of their own, migrated there.
const SCHEMA_HERE: &str = "cluster_id IN (SELECT id FROM platform.clusters WHERE database_url IS NULL)";
pub const HISTORY_TABLE: &str = "refinery_schema_history";

pub fn tenant_migrations() -> Vec<Migration> {
    let mut all = embedded::tenant::migrations::runner().get_migrations().clone();
    all.sort_by_key(|m| m.version());
    all
}

/// Every tenant migration's version, in order (branches number theirs, so
/// there may be gaps until all of them are merged).
pub fn tenant_versions() -> Vec<i32> {
    tenant_migrations().iter().map(|m| m.version()).collect()
}

pub fn latest_tenant_version() -> i32 {
    tenant_migrations().last().map(|m| m.version()).unwrap_or(0)
}

pub fn latest_platform_version() -> i32 {
    embedded::platform::migrations::runner().get_migrations().iter().map(|m| m.version()).max().unwrap_or(0)
}

fn lock_key(schema: &str) -> String {
    format!("tessera:migrate:{schema}")
}

/// Bring the platform schema to the latest version.
pub async fn migrate_platform(database_url: &str) -> Result<usize, ProvisioningError> {
    let mut client = connect(database_url).await?;
    client
        .execute("SELECT pg_advisory_lock(hashtext($1))", &[&lock_key("platform")])
        .await
        .map_err(DbError::from)?;
    client.batch_execute("CREATE SCHEMA IF NOT EXISTS platform").await.map_err(DbError::from)?;
    let report = embedded::platform::migrations::runner()
        .set_migration_table_name(PLATFORM_HISTORY)
        .run_async(&mut client)
        .await
        .map_err(|e| ProvisioningError::Migration(with_causes(&e)))?;
    Ok(report.applied_migrations().len())
}

/// Apply refinery's migrations to one tenant schema on `client` (a session
/// of its own: it sets search_path for the run).
async fn migrate_one(client: &mut Client, schema: &SchemaName, latest: i32) -> Result<usize, ProvisioningError> {
    let lock = lock_key(schema.as_str());
    client.execute("SELECT pg_advisory_lock(hashtext($1))", &[&lock]).await.map_err(DbError::from)?;
    let result = async {
        client
            .batch_execute(&format!("SET search_path TO {}", schema.quoted()))
            .await
            .map_err(DbError::from)?;
        let report = embedded::tenant::migrations::runner()
            .set_migration_table_name(format!("{}.{HISTORY_TABLE}", schema.quoted()))
            .run_async(client)
            .await
            .map_err(|e| ProvisioningError::Migration(format!("{schema}: {}", with_causes(&e))))?;
        client
            .execute(
                "UPDATE platform.tenants SET schema_version = $2, updated_at = now() \
                 WHERE schema_name = $1 AND schema_version < $2",
                &[&schema.as_str(), &latest],
            )
            .await
            .map_err(DbError::from)?;
        Ok(report.applied_migrations().len())
    }
    .await;
    // Always leave the session as we found it, even after a failure.
    let _ = client.batch_execute("RESET search_path").await;
    let _ = client.execute("SELECT pg_advisory_unlock(hashtext($1))", &[&lock]).await;
    result
}

#[derive(Debug, Clone, Default)]
pub struct MigrateProgress {
    pub total: usize,
    pub done: usize,
    pub failed: usize,
}

#[derive(Debug, Default)]
pub struct MigrateReport {
    pub total: usize,
    pub migrated: usize,
    pub failures: Vec<(String, String)>,
}

/// Bring every tenant schema behind the latest version up to it, `parallelism`
/// schemas at a time, calling `progress` after each.
pub async fn migrate_tenants(
    database_url: &str,
    parallelism: usize,
    progress: impl Fn(&MigrateProgress) + Send + Sync + 'static,
) -> Result<MigrateReport, ProvisioningError> {
    let latest = latest_tenant_version();
    let behind: VecDeque<SchemaName> = {
        let client = connect(database_url).await?;
        let rows = client
            .query(
                &format!("SELECT schema_name FROM platform.tenants WHERE schema_version < $1 AND {SCHEMA_HERE} ORDER BY slug"),
                &[&latest],
            )
            .await
            .map_err(DbError::from)?;
        rows.into_iter().filter_map(|r| SchemaName::from_stored(r.get(0))).collect()
    };
    let total = behind.len();
    let queue = Arc::new(Mutex::new(behind));
    let state = Arc::new(Mutex::new((MigrateProgress { total, ..Default::default() }, MigrateReport { total, ..Default::default() })));
    let progress = Arc::new(progress);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..parallelism.min(total.max(1)) {
        let (queue, state, progress, url) = (queue.clone(), state.clone(), progress.clone(), database_url.to_string());
        workers.spawn(async move {
            let mut client = connect(&url).await?;
            loop {
                let Some(schema) = queue.lock().unwrap_or_else(PoisonError::into_inner).pop_front() else { return Ok(()) };
                let outcome = migrate_one(&mut client, &schema, latest).await;
                let mut guard = state.lock().unwrap_or_else(PoisonError::into_inner);
                let (p, report) = &mut *guard;
                p.done += 1;
                match outcome {
                    Ok(_) => report.migrated += 1,
                    Err(e) => {
                        p.failed += 1;
                        report.failures.push((schema.to_string(), e.to_string()));
                    }
                }
                progress(p);
            }
        });
    }
    while let Some(joined) = workers.join_next().await {
        let result: Result<(), ProvisioningError> = joined.map_err(|e| ProvisioningError::Migration(e.to_string()))?;
        result?;
    }
    let report = std::mem::take(&mut state.lock().unwrap_or_else(PoisonError::into_inner).1);
    Ok(report)
}

/// Tenants whose schema is behind the latest version (for readiness).
pub async fn tenants_behind(client: &Client) -> Result<i64, DbError> {
    let row = client
        .query_one(
            &format!("SELECT count(*) FROM platform.tenants WHERE schema_version < $1 AND {SCHEMA_HERE}"),
            &[&latest_tenant_version()],
        )
        .await?;
    Ok(row.get(0))
}

/// Whether the platform schema has every embedded migration.
pub async fn platform_current(client: &Client) -> Result<bool, DbError> {
    let sql = format!("SELECT coalesce(max(version), 0) FROM {PLATFORM_HISTORY}");
    match client.query_one(&sql, &[]).await {
        Ok(row) => Ok(row.get::<_, i32>(0) >= latest_platform_version()),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The provisioning fast path: run the tenant migrations' SQL inside the
/// caller's transaction (whose search_path is the new schema) and record them
/// in refinery's history table exactly as refinery would, so later
/// `migrate` runs see the schema at this version.
pub async fn apply_in_transaction(
    tx: &tokio_postgres::Transaction<'_>,
    up_to: i32,
) -> Result<i32, DbError> {
    tx.batch_execute(&format!(
        "CREATE TABLE {HISTORY_TABLE} (version INT4 PRIMARY KEY, name VARCHAR(255), \
         applied_on VARCHAR(255), checksum VARCHAR(255))"
    ))
    .await?;
    let applied_on = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut version = 0;
    for migration in tenant_migrations().into_iter().filter(|m| m.version() <= up_to) {
        tx.batch_execute(migration.sql().unwrap_or_default()).await?;
        tx.execute(
            &format!("INSERT INTO {HISTORY_TABLE} (version, name, applied_on, checksum) VALUES ($1, $2, $3, $4)"),
            &[&migration.version(), &migration.name(), &applied_on, &migration.checksum().to_string()],
        )
        .await?;
        version = migration.version();
    }
    Ok(version)
}
