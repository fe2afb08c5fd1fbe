//! Tenant variables: named JSON values that integrations will read.
//! Viewers read them; editors and above write them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use serde_json::json;

use super::ResourceError;
use crate::{
    audit::Change,
    auth::{Role, TenantCaller},
    tenancy::TenantDb,
};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Variable {
    pub name: String,
    pub value: serde_json::Value,
    pub description: String,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VariableInput {
    pub value: serde_json::Value,
    #[serde(default)]
    pub description: String,
}

const COLUMNS: &str = "name, value, description, updated_at";
/// Largest serialized value; variables are configuration, not storage.
const MAX_VALUE_BYTES: usize = 64 * 1024;

fn from_row(row: &Row) -> Variable {
    Variable { name: row.get(0), value: row.get(1), description: row.get(2), updated_at: row.get(3) }
}

fn check_name(name: &str) -> Result<(), ResourceError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || name.len() > 64 || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(ResourceError::invalid("name", "a letter or '_', then letters, digits or '_' (at most 64)"));
    }
    Ok(())
}

fn not_found(name: &str) -> ResourceError {
    ResourceError::NotFound { kind: "variable", id: name.to_string() }
}

pub async fn list(db: &TenantDb, caller: &TenantCaller) -> Result<Vec<Variable>, ResourceError> {
    let rows = db.statement(&caller.tenant, &format!("SELECT {COLUMNS} FROM @tenant.variables ORDER BY name"), &[]).await?;
    Ok(rows.iter().map(from_row).collect())
}

pub async fn get(db: &TenantDb, caller: &TenantCaller, name: &str) -> Result<Variable, ResourceError> {
    check_name(name).map_err(|_| not_found(name))?;
    let rows = db.statement(&caller.tenant, &format!("SELECT {COLUMNS} FROM @tenant.variables WHERE name = $1"), &[&name]).await?;
    rows.first().map(from_row).ok_or_else(|| not_found(name))
}

/// Create or replace a variable.
pub async fn put(db: &TenantDb, caller: &TenantCaller, name: &str, input: VariableInput) -> Result<Variable, ResourceError> {
    caller.require(Role::Editor)?;
    check_name(name)?;
    if serde_json::to_vec(&input.value).map(|v| v.len()).unwrap_or(usize::MAX) > MAX_VALUE_BYTES {
        return Err(ResourceError::invalid("value", format!("at most {MAX_VALUE_BYTES} bytes of JSON")));
    }
    if input.description.chars().count() > 500 {
        return Err(ResourceError::invalid("description", "at most 500 characters"));
    }
    let mut tx = db.begin(&caller.tenant).await?;
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO @tenant.variables (name, value, description, updated_by) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value, description = excluded.description, \
                 updated_by = excluded.updated_by, updated_at = now() RETURNING {COLUMNS}, xmax = 0"
            ),
            &[&name, &input.value, &input.description, &caller.user_id()],
        )
        .await?;
    // Variables are configuration, not secrets, but their values are the
    // tenant's: the trail says that one changed, not to what.
    let created: bool = row.get(4);
    caller.record(&mut tx, Change::new("variable.put", "variable", name).with(json!({"created": created}))).await?;
    tx.commit().await?;
    Ok(from_row(&row))
}

pub async fn delete(db: &TenantDb, caller: &TenantCaller, name: &str) -> Result<(), ResourceError> {
    caller.require(Role::Editor)?;
    check_name(name).map_err(|_| not_found(name))?;
    let mut tx = db.begin(&caller.tenant).await?;
    let n = tx.execute("DELETE FROM @tenant.variables WHERE name = $1", &[&name]).await?;
    if n == 0 {
        return Err(not_found(name));
    }
    caller.record(&mut tx, Change::new("variable.delete", "variable", name)).await?;
    tx.commit().await?;
    Ok(())
}
