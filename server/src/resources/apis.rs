//! A tenant's managed APIs (`kind: Api`): stored by `apply` like the other
//! resources, listed and deleted through the API. Serving them is
//! `gateway`'s.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use tessera_runtime::definition::{Api, Resource};

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

const KIND: &str = "api";

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiInfo {
    pub name: String,
    pub base_path: String,
    pub version: String,
    pub revision: i32,
    /// The resource as applied.
    pub definition: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "name, base_path, version, revision, definition, created_at, updated_at";

fn from_row(row: &tokio_postgres::Row) -> ApiInfo {
    ApiInfo {
        name: row.get(0),
        base_path: row.get(1),
        version: row.get(2),
        revision: row.get(3),
        definition: row.get(4),
        created_at: row.get(5),
        updated_at: row.get(6),
    }
}

/// Store `api` in `tx`: new, changed (its revision counts up) or the same.
pub(super) async fn apply(tx: &mut TenantTx, api: &Api) -> Result<Applied, ResourceError> {
    let name = api.metadata.name.as_str();
    let (base, version) = (api.spec.base_path.as_str(), api.spec.version.as_str());
    let definition = serde_json::to_value(Resource::Api(api.clone())).expect("a resource serialises to JSON");
    let taken = tx.query_opt("SELECT name FROM @tenant.apis WHERE base_path = $1 AND version = $2 AND name <> $3", &[&base, &version, &name]).await?;
    if let Some(other) = taken {
        let message = format!("/apis/{base}/{version} is already served by API '{}'", other.get::<_, String>(0));
        return Err(ResourceError::invalid("spec.basePath", message));
    }
    let row = tx
        .query_opt(
            "INSERT INTO @tenant.apis (name, base_path, version, definition) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET base_path = excluded.base_path, version = excluded.version, \
             definition = excluded.definition, revision = apis.revision + 1, updated_at = now() \
             WHERE apis.definition IS DISTINCT FROM excluded.definition \
             RETURNING revision, xmax = 0",
            &[&name, &base, &version, &definition],
        )
        .await?;
    let applied = |revision, result| Applied { kind: "Api", name: name.to_string(), version: revision, result };
    Ok(match row {
        Some(row) if row.get::<_, bool>(1) => applied(row.get(0), Outcome::Created),
        Some(row) => applied(row.get(0), Outcome::Updated),
        None => {
            let row = tx.query_one("SELECT revision FROM @tenant.apis WHERE name = $1", &[&name]).await?;
            applied(row.get(0), Outcome::Unchanged)
        }
    })
}

pub async fn list(db: &TenantDb, caller: &TenantCaller) -> Result<Vec<ApiInfo>, ResourceError> {
    let rows = db.statement(&caller.tenant, &format!("SELECT {COLUMNS} FROM @tenant.apis ORDER BY base_path, version"), &[]).await?;
    Ok(rows.iter().map(from_row).collect())
}

pub async fn get(db: &TenantDb, caller: &TenantCaller, name: &str) -> Result<ApiInfo, ResourceError> {
    let name = parse_name(KIND, name)?;
    let rows = db.statement(&caller.tenant, &format!("SELECT {COLUMNS} FROM @tenant.apis WHERE name = $1"), &[&name.as_str()]).await?;
    rows.first().map(from_row).ok_or_else(|| ResourceError::NotFound { kind: KIND, id: name.to_string() })
}

/// `name`'s OpenAPI 3.1 document, as its callers get it.
pub async fn document(db: &TenantDb, caller: &TenantCaller, name: &str) -> Result<Value, ResourceError> {
    let info = get(db, caller, name).await?;
    match serde_json::from_value(info.definition) {
        Ok(Resource::Api(api)) => Ok(super::api_document::document(&api)),
        _ => Err(ResourceError::NotFound { kind: KIND, id: info.name }),
    }
}

/// Stop serving an API; its next call gets 404 (on another node, within
/// the second its copy of the definition lives).
pub async fn delete(db: &TenantDb, changes: &DefinitionChanges, caller: &TenantCaller, name: &str) -> Result<(), ResourceError> {
    caller.require(Role::Editor)?;
    let name = parse_name(KIND, name)?;
    let mut tx = db.begin(&caller.tenant).await?;
    let row = tx.query_opt("DELETE FROM @tenant.apis WHERE name = $1 RETURNING base_path, version, revision", &[&name.as_str()]).await?;
    let Some(row) = row else {
        return Err(ResourceError::NotFound { kind: KIND, id: name.to_string() });
    };
    let detail = json!({"base_path": row.get::<_, String>(0), "version": row.get::<_, String>(1), "previous_version": row.get::<_, i32>(2)});
    caller.record(&mut tx, Change::new("api.delete", KIND, name.as_str()).with(detail)).await?;
    tx.commit().await?;
    changes.apis_changed(caller.tenant.id);
    Ok(())
}

/// `name`'s calls over the last 24 hours (hourly) or 7 days (6-hourly).
pub async fn analytics(db: &TenantDb, caller: &TenantCaller, name: &str, window: super::stats::Window) -> Result<crate::analytics::Report, ResourceError> {
    let api = get(db, caller, name).await?;
    let (label, hours, step) = match window {
        super::stats::Window::Day => ("24h", 24, 1),
        super::stats::Window::Week => ("7d", 24 * 7, 6),
    };
    Ok(crate::analytics::report(db, &caller.tenant, &api.name, label, hours, step).await?)
}
