//! Managing a tenant's API keys: create (the secret is shown once), list,
//! revoke.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use uuid::Uuid;
use serde_json::json;

use super::{parse_id, ResourceError};
use crate::{
    audit::Change,
    auth::{api_keys, Role, TenantCaller},
    database::DbError,
    tenancy::TenantDb,
};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiKey {
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    pub role: Role,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedApiKey {
    #[serde(flatten)]
    pub key: ApiKey,
    /// The only time the secret is ever returned.
    pub secret: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    pub name: String,
    pub role: Role,
}

const COLUMNS: &str = "id, name, prefix, role, created_by, created_at, last_used_at, revoked_at";

/// A key as stored; a role this version does not know fails the read.
fn from_row(row: &Row) -> Result<ApiKey, DbError> {
    Ok(ApiKey {
        id: row.get(0),
        name: row.get(1),
        prefix: row.get(2),
        role: row.try_get(3)?,
        created_by: row.get(4),
        created_at: row.get(5),
        last_used_at: row.get(6),
        revoked_at: row.get(7),
    })
}

pub async fn create(db: &TenantDb, caller: &TenantCaller, new: NewApiKey) -> Result<CreatedApiKey, ResourceError> {
    caller.require(Role::Admin)?;
    caller.require(new.role)?;
    let name = new.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ResourceError::invalid("name", "1 to 100 characters"));
    }
    let key = api_keys::generate();
    let mut tx = db.begin(&caller.tenant).await?;
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO @tenant.api_keys (id, name, prefix, key_hash, role, created_by) VALUES ($1, $2, $3, $4, $5, $6) \
                 RETURNING {COLUMNS}"
            ),
            &[&Uuid::now_v7(), &name, &key.display_prefix, &key.digest, &new.role.as_str(), &caller.user_id()],
        )
        .await?;
    let created = from_row(&row)?;
    let detail = json!({"id": created.id, "role": new.role.as_str(), "prefix": key.display_prefix});
    caller.record(&mut tx, Change::new("api_key.create", "api_key", &name).with(detail)).await?;
    tx.commit().await?;
    Ok(CreatedApiKey { key: created, secret: key.secret })
}

pub async fn list(db: &TenantDb, caller: &TenantCaller) -> Result<Vec<ApiKey>, ResourceError> {
    caller.require(Role::Admin)?;
    let rows = db.statement(&caller.tenant, &format!("SELECT {COLUMNS} FROM @tenant.api_keys ORDER BY created_at"), &[]).await?;
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}

pub async fn revoke(db: &TenantDb, caller: &TenantCaller, id: &str) -> Result<ApiKey, ResourceError> {
    caller.require(Role::Admin)?;
    let id = parse_id("api key", id)?;
    let mut tx = db.begin(&caller.tenant).await?;
    let row = tx
        .query_opt(
            &format!("UPDATE @tenant.api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 RETURNING {COLUMNS}"),
            &[&id],
        )
        .await?
        .ok_or(ResourceError::NotFound { kind: "api key", id: id.to_string() })?;
    let key = from_row(&row)?;
    caller.record(&mut tx, Change::new("api_key.revoke", "api_key", &key.name).with(json!({"id": id}))).await?;
    tx.commit().await?;
    Ok(key)
}
