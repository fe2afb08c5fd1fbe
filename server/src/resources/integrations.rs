//! A tenant's integrations as immutable versions: applying a changed
//! definition adds a version, an identical one adds nothing, and a rollback
//! adds a version holding an older definition. Viewers read; editors and
//! above write.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tessera_runtime::definition::{Integration, Resource};
use tokio_postgres::Row;
use uuid::Uuid;
use serde_json::json;

use super::{
    apply::{Applied, Outcome},
    changes::DefinitionChanges,
    parse_name, ResourceError,
};
use crate::{
    audit::Change,
    auth::{Role, TenantCaller},
    tenancy::{TenantDb, TenantTx},
};

#[derive(Debug, Serialize)]
pub struct IntegrationSummary {
    pub name: String,
    pub enabled: bool,
    pub current_version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The newest execution, if any: `{id, state, created_at}`.
    pub last_run: Option<Value>,
}

/// An integration with its current definition.
#[derive(Debug, Serialize)]
pub struct CurrentIntegration {
    pub name: String,
    pub enabled: bool,
    pub version: i32,
    pub definition: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize)]
pub struct VersionSummary {
    pub version: i32,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize)]
pub struct IntegrationVersion {
    pub name: String,
    pub version: i32,
    pub definition: Value,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

const KIND: &str = "integration";

const CURRENT: &str = "SELECT i.name, i.enabled, i.current_version, v.definition, i.created_at, i.updated_at \
     FROM @tenant.integrations i \
     JOIN @tenant.integration_versions v ON v.integration = i.name AND v.version = i.current_version \
     WHERE i.name = $1";

fn not_found(name: &str) -> ResourceError {
    ResourceError::NotFound { kind: KIND, id: name.to_string() }
}

fn version_not_found(name: &str, version: i32) -> ResourceError {
    ResourceError::NotFound { kind: "integration version", id: format!("{name}@{version}") }
}

fn current_from_row(row: &Row) -> CurrentIntegration {
    CurrentIntegration {
        name: row.get(0),
        enabled: row.get(1),
        version: row.get(2),
        definition: row.get(3),
        created_at: row.get(4),
        updated_at: row.get(5),
    }
}

pub async fn list(db: &TenantDb, caller: &TenantCaller) -> Result<Vec<IntegrationSummary>, ResourceError> {
    // The newest execution of each through `executions_by_integration`: one index probe per integration.
    let sql = "SELECT i.name, i.enabled, i.current_version, i.created_at, i.updated_at, \
         (SELECT jsonb_build_object('id', e.id, 'state', e.state, 'created_at', e.created_at) \
            FROM @tenant.executions e WHERE e.integration = i.name ORDER BY e.id DESC LIMIT 1) \
         FROM @tenant.integrations i ORDER BY i.name";
    let rows = db.statement(&caller.tenant, sql, &[]).await?;
    Ok(rows
        .iter()
        .map(|r| IntegrationSummary {
            name: r.get(0),
            enabled: r.get(1),
            current_version: r.get(2),
            created_at: r.get(3),
            updated_at: r.get(4),
            last_run: r.get(5),
        })
        .collect())
}

pub async fn get(db: &TenantDb, caller: &TenantCaller, name: &str) -> Result<CurrentIntegration, ResourceError> {
    let name = parse_name(KIND, name)?;
    let rows = db.statement(&caller.tenant, CURRENT, &[&name.as_str()]).await?;
    rows.first().map(current_from_row).ok_or_else(|| not_found(name.as_str()))
}

/// Every version, newest first. An integration always has at least one,
/// so none means there is no such integration.
pub async fn versions(db: &TenantDb, caller: &TenantCaller, name: &str) -> Result<Vec<VersionSummary>, ResourceError> {
    let name = parse_name(KIND, name)?;
    let sql = "SELECT version, created_by, created_at FROM @tenant.integration_versions \
               WHERE integration = $1 ORDER BY version DESC";
    let rows = db.statement(&caller.tenant, sql, &[&name.as_str()]).await?;
    if rows.is_empty() {
        return Err(not_found(name.as_str()));
    }
    Ok(rows.iter().map(|r| VersionSummary { version: r.get(0), created_by: r.get(1), created_at: r.get(2) }).collect())
}

pub async fn version(
    db: &TenantDb,
    caller: &TenantCaller,
    name: &str,
    version: i32,
) -> Result<IntegrationVersion, ResourceError> {
    let name = parse_name(KIND, name)?;
    let sql = "SELECT definition, created_by, created_at FROM @tenant.integration_versions \
               WHERE integration = $1 AND version = $2";
    let rows = db.statement(&caller.tenant, sql, &[&name.as_str(), &version]).await?;
    let row = rows.first().ok_or_else(|| version_not_found(name.as_str(), version))?;
    Ok(IntegrationVersion {
        name: name.to_string(),
        version,
        definition: row.get(0),
        created_by: row.get(1),
        created_at: row.get(2),
    })
}

/// Make version `version`'s definition current again, as a new version:
/// history only ever grows.
pub async fn rollback(
    db: &TenantDb,
    changes: &DefinitionChanges,
    caller: &TenantCaller,
    name: &str,
    version: i32,
) -> Result<CurrentIntegration, ResourceError> {
    caller.require(Role::Editor)?;
    let name = parse_name(KIND, name)?;
    let name = name.as_str();
    let mut tx = db.begin(&caller.tenant).await?;
    let current = lock_current(&mut tx, name).await?.ok_or_else(|| not_found(name))?;
    let sql = "SELECT definition FROM @tenant.integration_versions WHERE integration = $1 AND version = $2";
    let row = tx.query_opt(sql, &[&name, &version]).await?.ok_or_else(|| version_not_found(name, version))?;
    let definition: Value = row.get(0);
    let enabled = definition["spec"]["enabled"].as_bool().unwrap_or(true);
    add_version(&mut tx, caller, name, current + 1, &definition, enabled).await?;
    let row = tx.query_one(CURRENT, &[&name]).await?;
    let detail = json!({"version": current + 1, "previous_version": current, "restored_version": version});
    caller.record(&mut tx, Change::new("integration.rollback", "integration", name).with(detail)).await?;
    changes.commit_integrations(tx, caller.tenant.id).await?;
    Ok(current_from_row(&row))
}

/// Delete an integration with all its versions.
pub async fn delete(db: &TenantDb, changes: &DefinitionChanges, caller: &TenantCaller, name: &str) -> Result<(), ResourceError> {
    caller.require(Role::Editor)?;
    let name = parse_name(KIND, name)?;
    let mut tx = db.begin(&caller.tenant).await?;
    let deleted = tx.query_opt("DELETE FROM @tenant.integrations WHERE name = $1 RETURNING current_version", &[&name.as_str()]).await?;
    let Some(deleted) = deleted else {
        return Err(not_found(name.as_str()));
    };
    let detail = json!({"previous_version": deleted.get::<_, i32>(0)});
    caller.record(&mut tx, Change::new("integration.delete", "integration", name.as_str()).with(detail)).await?;
    changes.commit_integrations(tx, caller.tenant.id).await?;
    Ok(())
}

/// Store `integration` in `tx`: a first version, a new version if its
/// definition differs from the current one, or nothing.
pub(super) async fn apply(tx: &mut TenantTx, caller: &TenantCaller, integration: &Integration) -> Result<Applied, ResourceError> {
    let name = integration.metadata.name.as_str();
    let enabled = integration.spec.enabled;
    let definition = serde_json::to_value(Resource::Integration(integration.clone())).expect("a resource serialises to JSON");
    let applied = |version, result| Applied { kind: "Integration", name: name.to_string(), version, result };
    // ON CONFLICT DO NOTHING: a concurrent apply of a new name waits here
    // for the other one, then takes the "existing" path.
    let insert = "INSERT INTO @tenant.integrations (name, enabled, current_version) VALUES ($1, $2, 1) \
                  ON CONFLICT (name) DO NOTHING RETURNING name";
    if tx.query_opt(insert, &[&name, &enabled]).await?.is_some() {
        insert_version(tx, caller, name, 1, &definition).await?;
        return Ok(applied(1, Outcome::Created));
    }
    let current = lock_current(tx, name).await?.ok_or_else(|| not_found(name))?;
    // Compared as jsonb: key order and number spelling do not make a change.
    let same_sql = "SELECT definition = $3 FROM @tenant.integration_versions WHERE integration = $1 AND version = $2";
    let same: bool = tx.query_one(same_sql, &[&name, &current, &definition]).await?.get(0);
    if same {
        return Ok(applied(current, Outcome::Unchanged));
    }
    add_version(tx, caller, name, current + 1, &definition, enabled).await?;
    Ok(applied(current + 1, Outcome::Updated))
}

/// The current version, with the integration locked until commit so that
/// concurrent changes number their versions one after the other.
async fn lock_current(tx: &mut TenantTx, name: &str) -> Result<Option<i32>, ResourceError> {
    let sql = "SELECT current_version FROM @tenant.integrations WHERE name = $1 FOR NO KEY UPDATE";
    Ok(tx.query_opt(sql, &[&name]).await?.map(|row| row.get(0)))
}

async fn insert_version(
    tx: &mut TenantTx,
    caller: &TenantCaller,
    name: &str,
    version: i32,
    definition: &Value,
) -> Result<(), ResourceError> {
    let sql = "INSERT INTO @tenant.integration_versions (integration, version, definition, created_by) \
               VALUES ($1, $2, $3, $4)";
    tx.execute(sql, &[&name, &version, definition, &caller.user_id()]).await?;
    Ok(())
}

/// Store `version` and make it current.
async fn add_version(
    tx: &mut TenantTx,
    caller: &TenantCaller,
    name: &str,
    version: i32,
    definition: &Value,
    enabled: bool,
) -> Result<(), ResourceError> {
    insert_version(tx, caller, name, version, definition).await?;
    let sql = "UPDATE @tenant.integrations SET current_version = $2, enabled = $3, updated_at = now() WHERE name = $1";
    tx.execute(sql, &[&name, &version, &enabled]).await?;
    Ok(())
}
