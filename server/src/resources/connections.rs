//! A tenant's connections: credentials for external systems, stored sealed
//! (see `sealing`); their secrets are never returned. The API shows what a
//! connection is (kind, description, version) and, for one connection, the
//! fields its kind names as not secret (`ConnectionSpec::settings`), never
//! the rest. Viewers read; editors and above write.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tessera_runtime::definition::{Connection, ConnectionKind, Name, Resource, StoredConnections};
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
    sealing::{KeyRing, Sealed},
    tenancy::{SchemaName, Tenant, TenantDb, TenantTx},
};

/// A connection without its secrets.
#[derive(Debug, Serialize)]
pub struct ConnectionInfo {
    pub name: String,
    pub kind: String,
    pub description: String,
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub(super) const KIND: &str = "connection";
const COLUMNS: &str = "name, kind, description, version, created_at, updated_at";

fn from_row(row: &Row) -> ConnectionInfo {
    ConnectionInfo {
        name: row.get(0),
        kind: row.get(1),
        description: row.get(2),
        version: row.get(3),
        created_at: row.get(4),
        updated_at: row.get(5),
    }
}

pub(super) fn not_found(name: &str) -> ResourceError {
    ResourceError::NotFound { kind: KIND, id: name.to_string() }
}

/// What a sealed connection is bound to: a sealed value moved to another
/// connection or tenant does not open.
fn context(tenant_id: Uuid, name: &str) -> Vec<u8> {
    format!("tessera/connection/{tenant_id}/{name}").into_bytes()
}

/// The connection `name` of `tenant`, opened: for the code that uses its
/// credentials (never for an API answer). `None` if there is no such
/// connection.
pub(crate) async fn open(db: &TenantDb, keys: &KeyRing, tenant: &Tenant, name: &Name) -> Result<Option<Connection>, ResourceError> {
    open_in(db, keys, tenant.id, &tenant.schema, name.as_str()).await
}

/// [`open`] for the runtime, which knows a tenant by id and schema.
pub(crate) async fn open_in(
    db: &TenantDb,
    keys: &KeyRing,
    tenant_id: Uuid,
    schema: &SchemaName,
    name: &str,
) -> Result<Option<Connection>, ResourceError> {
    let sql = "SELECT secret, key_id FROM @tenant.connections WHERE name = $1";
    let rows = db.statement_in_schema(schema, sql, &[&name]).await?;
    let Some(row) = rows.first() else { return Ok(None) };
    let sealed = Sealed { bytes: row.get(0), key_id: row.get(1) };
    let plaintext = keys.open(&sealed, &context(tenant_id, name))?;
    match serde_json::from_slice::<Resource>(&plaintext) {
        Ok(Resource::Connection(connection)) => Ok(Some(connection)),
        // Only a connection is ever sealed into this table; anything else
        // cannot be used as one.
        _ => Ok(None),
    }
}

/// Seal again, with the current key, every connection of `tenant` sealed
/// with an older one (after a key rotation), so the older key can be
/// dropped from `secrets.previous_keys`. Returns how many were re-sealed.
/// One transaction per tenant: a connection applied meanwhile waits.
pub async fn reseal_all(db: &TenantDb, keys: &KeyRing, tenant: &Tenant) -> Result<usize, ResourceError> {
    let mut tx = db.begin(tenant).await?;
    let stale = "SELECT name, secret, key_id FROM @tenant.connections WHERE key_id <> $1 FOR UPDATE";
    let rows = tx.query(stale, &[&keys.current_key_id()]).await?;
    for row in &rows {
        let name: String = row.get(0);
        let sealed = Sealed { bytes: row.get(1), key_id: row.get(2) };
        let fresh = keys.reseal(&sealed, &context(tenant.id, &name))?;
        let update = "UPDATE @tenant.connections SET secret = $2, key_id = $3 WHERE name = $1";
        tx.execute(update, &[&name, &fresh.bytes, &fresh.key_id]).await?;
    }
    tx.commit().await?;
    Ok(rows.len())
}

pub async fn list(db: &TenantDb, caller: &TenantCaller) -> Result<Vec<ConnectionInfo>, ResourceError> {
    let rows = db.statement(&caller.tenant, &format!("SELECT {COLUMNS} FROM @tenant.connections ORDER BY name"), &[]).await?;
    Ok(rows.iter().map(from_row).collect())
}

/// One connection: what [`list`] shows, and the fields of its spec that
/// are not secrets (`ConnectionSpec::settings`), so a form can edit it.
#[derive(Debug, Serialize)]
pub struct ConnectionDetail {
    #[serde(flatten)]
    pub info: ConnectionInfo,
    pub settings: serde_json::Value,
}

pub async fn get(db: &TenantDb, keys: &KeyRing, caller: &TenantCaller, name: &str) -> Result<ConnectionDetail, ResourceError> {
    let name = parse_name(KIND, name)?;
    let sql = format!("SELECT {COLUMNS} FROM @tenant.connections WHERE name = $1");
    let rows = db.statement(&caller.tenant, &sql, &[&name.as_str()]).await?;
    let info = rows.first().map(from_row).ok_or_else(|| not_found(name.as_str()))?;
    let settings = match open(db, keys, &caller.tenant, &name).await? {
        Some(connection) => connection.spec.settings(),
        None => serde_json::json!({}),
    };
    Ok(ConnectionDetail { info, settings })
}

pub async fn delete(db: &TenantDb, changes: &DefinitionChanges, caller: &TenantCaller, name: &str) -> Result<(), ResourceError> {
    caller.require(Role::Editor)?;
    let name = parse_name(KIND, name)?;
    let mut tx = db.begin(&caller.tenant).await?;
    let deleted = tx.query_opt("DELETE FROM @tenant.connections WHERE name = $1 RETURNING kind", &[&name.as_str()]).await?;
    let Some(deleted) = deleted else {
        return Err(not_found(name.as_str()));
    };
    let detail = json!({"kind": deleted.get::<_, String>(0)});
    caller.record(&mut tx, Change::new("connection.delete", "connection", name.as_str()).with(detail)).await?;
    tx.commit().await?;
    changes.connections_changed(caller.tenant.id);
    Ok(())
}

/// The tenant's connections by name and kind, locked against deletion
/// (`FOR KEY SHARE`, which does not block updating them) until `tx` ends.
pub(super) async fn stored_kinds(tx: &mut TenantTx) -> Result<StoredConnections, ResourceError> {
    let rows = tx.query("SELECT name, kind FROM @tenant.connections FOR KEY SHARE", &[]).await?;
    // A row that no longer parses (renamed kind) cannot be referred to.
    Ok(rows
        .iter()
        .filter_map(|row| {
            let name = Name::try_from(row.get::<_, String>(0)).ok()?;
            let kind = row.get::<_, String>(1).parse::<ConnectionKind>().ok()?;
            Some((name, kind))
        })
        .collect())
}

/// Store `connection` sealed in `tx`: created, updated (a new version) if
/// it differs from what is stored, or unchanged.
pub(super) async fn apply(
    tx: &mut TenantTx,
    keys: &KeyRing,
    caller: &TenantCaller,
    connection: &Connection,
) -> Result<Applied, ResourceError> {
    let name = connection.metadata.name.as_str();
    let resource = serde_json::to_value(Resource::Connection(connection.clone())).expect("a resource serialises to JSON");
    let context = context(caller.tenant.id, name);
    let sealed = keys.seal(resource.to_string().as_bytes(), &context);
    let kind = connection.spec.kind().as_str();
    let description = connection.metadata.description.clone().unwrap_or_default();
    let applied = |version, result| Applied { kind: "Connection", name: name.to_string(), version, result };

    let insert = "INSERT INTO @tenant.connections (name, kind, description, secret, key_id) VALUES ($1, $2, $3, $4, $5) \
                  ON CONFLICT (name) DO NOTHING RETURNING version";
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] = [&name, &kind, &description, &sealed.bytes, &sealed.key_id];
    if let Some(row) = tx.query_opt(insert, &params).await? {
        return Ok(applied(row.get(0), Outcome::Created));
    }
    let lock = "SELECT secret, key_id, version FROM @tenant.connections WHERE name = $1 FOR NO KEY UPDATE";
    let row = tx.query_one(lock, &[&name]).await?;
    let stored = Sealed { bytes: row.get(0), key_id: row.get(1) };
    let version: i32 = row.get(2);
    let previous: serde_json::Value = serde_json::from_slice(&keys.open(&stored, &context)?).unwrap_or_default();
    if previous == resource {
        // Unchanged, but an apply is a good moment to move it to the current key.
        if stored.key_id != sealed.key_id {
            let sql = "UPDATE @tenant.connections SET secret = $2, key_id = $3 WHERE name = $1";
            tx.execute(sql, &[&name, &sealed.bytes, &sealed.key_id]).await?;
        }
        return Ok(applied(version, Outcome::Unchanged));
    }
    let update = "UPDATE @tenant.connections SET kind = $2, description = $3, secret = $4, key_id = $5, \
                  version = version + 1, updated_at = now() WHERE name = $1 RETURNING version";
    let row = tx.query_one(update, &params).await?;
    Ok(applied(row.get(0), Outcome::Updated))
}
