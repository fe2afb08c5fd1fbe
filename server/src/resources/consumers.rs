//! An API's consumers: partners and applications that call a tenant's
//! managed APIs, each on a plan, each with keys (shown once, as many as
//! needed so a key can be rotated without a gap, each revocable). Admins
//! and owners manage them. A revoked key fails its next call on every
//! node: calls look their key up in the database, nothing caches it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{parse_id, ResourceError};
use crate::{
    audit::Change,
    auth::{api_keys, Role, TenantCaller},
    tenancy::{TenantDb, TenantTx},
};

/// What a consumer's keys start with: never taken for a tenant's own API key.
pub const CONSUMER_KEY_PREFIX: &str = "tck_";
const KIND: &str = "consumer";

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Consumer {
    pub id: Uuid,
    pub name: String,
    pub plan: String,
    pub description: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Every key, revoked ones included, never a secret.
    pub keys: Vec<ConsumerKey>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConsumerKey {
    pub id: Uuid,
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A new key: the only answer that holds its secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedConsumerKey {
    #[serde(flatten)]
    pub key: ConsumerKey,
    pub secret: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewConsumer {
    pub name: String,
    pub plan: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsumerChanges {
    pub plan: Option<String>,
    pub description: Option<String>,
}

const COLUMNS: &str = "id, name, plan, description, created_at, updated_at";
const KEY_COLUMNS: &str = "id, prefix, created_at, last_used_at, revoked_at";

fn key_from_row(row: &Row) -> ConsumerKey {
    ConsumerKey { id: row.get(0), prefix: row.get(1), created_at: row.get(2), last_used_at: row.get(3), revoked_at: row.get(4) }
}

fn from_row(row: &Row, keys: Vec<ConsumerKey>) -> Consumer {
    Consumer { id: row.get(0), name: row.get(1), plan: row.get(2), description: row.get(3), created_at: row.get(4), updated_at: row.get(5), keys }
}

fn not_found(id: impl ToString) -> ResourceError {
    ResourceError::NotFound { kind: KIND, id: id.to_string() }
}

fn check_description(description: &str) -> Result<(), ResourceError> {
    if description.chars().count() > 500 {
        return Err(ResourceError::invalid("description", "at most 500 characters"));
    }
    Ok(())
}

/// The plan named `plan`, locked against deletion until the transaction ends.
async fn lock_plan(tx: &mut TenantTx, plan: &str) -> Result<(), ResourceError> {
    let found = tx.query_opt("SELECT 1 FROM @tenant.api_plans WHERE name = $1 FOR KEY SHARE", &[&plan]).await?;
    found.map(|_| ()).ok_or_else(|| ResourceError::invalid("plan", format!("there is no plan '{plan}'")))
}

pub async fn list(db: &TenantDb, caller: &TenantCaller) -> Result<Vec<Consumer>, ResourceError> {
    caller.require(Role::Admin)?;
    let consumers = db.statement(&caller.tenant, &format!("SELECT {COLUMNS} FROM @tenant.api_consumers ORDER BY name"), &[]).await?;
    let keys = db
        .statement(&caller.tenant, &format!("SELECT consumer_id, {KEY_COLUMNS} FROM @tenant.api_consumer_keys ORDER BY created_at"), &[])
        .await?;
    Ok(consumers
        .iter()
        .map(|c| {
            let id: Uuid = c.get(0);
            let own = keys.iter().filter(|k| k.get::<_, Uuid>(0) == id).map(|k| ConsumerKey {
                id: k.get(1),
                prefix: k.get(2),
                created_at: k.get(3),
                last_used_at: k.get(4),
                revoked_at: k.get(5),
            });
            from_row(c, own.collect())
        })
        .collect())
}

pub async fn get(db: &TenantDb, caller: &TenantCaller, id: &str) -> Result<Consumer, ResourceError> {
    caller.require(Role::Admin)?;
    let id = parse_id(KIND, id)?;
    let rows = db.statement(&caller.tenant, &format!("SELECT {COLUMNS} FROM @tenant.api_consumers WHERE id = $1"), &[&id]).await?;
    let row = rows.first().ok_or_else(|| not_found(id))?;
    let keys = db
        .statement(&caller.tenant, &format!("SELECT {KEY_COLUMNS} FROM @tenant.api_consumer_keys WHERE consumer_id = $1 ORDER BY created_at"), &[&id])
        .await?;
    Ok(from_row(row, keys.iter().map(key_from_row).collect()))
}

/// A new consumer on `plan`, with a full bucket and an empty quota window.
pub async fn create(db: &TenantDb, caller: &TenantCaller, new: NewConsumer) -> Result<Consumer, ResourceError> {
    caller.require(Role::Admin)?;
    let name = tessera_runtime::definition::Name::try_from(new.name.clone())
        .map_err(|_| ResourceError::invalid("name", "lowercase letters, digits and dashes, starting with a letter"))?;
    check_description(&new.description)?;
    let mut tx = db.begin(&caller.tenant).await?;
    lock_plan(&mut tx, &new.plan).await?;
    let row = tx
        .query_opt(
            &format!(
                "INSERT INTO @tenant.api_consumers (id, name, plan, description) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (name) DO NOTHING RETURNING {COLUMNS}"
            ),
            &[&Uuid::now_v7(), &name.as_str(), &new.plan, &new.description],
        )
        .await?
        .ok_or_else(|| ResourceError::Conflict { kind: KIND, id: name.to_string() })?;
    let consumer = from_row(&row, Vec::new());
    tx.execute(
        "INSERT INTO @tenant.api_consumer_usage (consumer_id, tokens, refilled_at) \
         SELECT $1, burst, now() FROM @tenant.api_plans WHERE name = $2",
        &[&consumer.id, &new.plan],
    )
    .await?;
    let detail = json!({"id": consumer.id, "plan": new.plan});
    caller.record(&mut tx, Change::new("consumer.create", KIND, name.as_str()).with(detail)).await?;
    tx.commit().await?;
    Ok(consumer)
}

/// Move a consumer to another plan (held to it from its next call) or
/// change its description.
pub async fn update(db: &TenantDb, caller: &TenantCaller, id: &str, changes: ConsumerChanges) -> Result<Consumer, ResourceError> {
    caller.require(Role::Admin)?;
    let id = parse_id(KIND, id)?;
    if let Some(description) = &changes.description {
        check_description(description)?;
    }
    let mut tx = db.begin(&caller.tenant).await?;
    if let Some(plan) = &changes.plan {
        lock_plan(&mut tx, plan).await?;
    }
    let row = tx
        .query_opt(
            &format!(
                "UPDATE @tenant.api_consumers SET plan = coalesce($2, plan), description = coalesce($3, description), updated_at = now() \
                 WHERE id = $1 RETURNING {COLUMNS}"
            ),
            &[&id, &changes.plan, &changes.description],
        )
        .await?
        .ok_or_else(|| not_found(id))?;
    let consumer = from_row(&row, Vec::new());
    let detail = json!({"id": id, "plan": changes.plan, "description_changed": changes.description.is_some()});
    caller.record(&mut tx, Change::new("consumer.update", KIND, &consumer.name).with(detail)).await?;
    tx.commit().await?;
    get(db, caller, &id.to_string()).await
}

pub async fn delete(db: &TenantDb, caller: &TenantCaller, id: &str) -> Result<(), ResourceError> {
    caller.require(Role::Admin)?;
    let id = parse_id(KIND, id)?;
    let mut tx = db.begin(&caller.tenant).await?;
    let row = tx.query_opt("DELETE FROM @tenant.api_consumers WHERE id = $1 RETURNING name", &[&id]).await?.ok_or_else(|| not_found(id))?;
    let name: String = row.get(0);
    caller.record(&mut tx, Change::new("consumer.delete", KIND, name).with(json!({"id": id}))).await?;
    tx.commit().await?;
    Ok(())
}

/// A new key for the consumer; its secret is in this answer only. Rotate
/// by adding a key, moving callers to it, then revoking the old one.
pub async fn create_key(db: &TenantDb, caller: &TenantCaller, consumer: &str) -> Result<CreatedConsumerKey, ResourceError> {
    caller.require(Role::Admin)?;
    let consumer = parse_id(KIND, consumer)?;
    let key = api_keys::generate_with(CONSUMER_KEY_PREFIX);
    let mut tx = db.begin(&caller.tenant).await?;
    let owner = tx.query_opt("SELECT name FROM @tenant.api_consumers WHERE id = $1 FOR KEY SHARE", &[&consumer]).await?.ok_or_else(|| not_found(consumer))?;
    let row = tx
        .query_one(
            &format!("INSERT INTO @tenant.api_consumer_keys (id, consumer_id, prefix, key_hash) VALUES ($1, $2, $3, $4) RETURNING {KEY_COLUMNS}"),
            &[&Uuid::now_v7(), &consumer, &key.display_prefix, &key.digest],
        )
        .await?;
    let created = key_from_row(&row);
    let detail = json!({"consumer_id": consumer, "key_id": created.id, "prefix": created.prefix});
    caller.record(&mut tx, Change::new("consumer.key_create", KIND, owner.get::<_, String>(0)).with(detail)).await?;
    tx.commit().await?;
    Ok(CreatedConsumerKey { key: created, secret: key.secret })
}

/// Revoke a key: its next call fails, on every node.
pub async fn revoke_key(db: &TenantDb, caller: &TenantCaller, consumer: &str, key: &str) -> Result<ConsumerKey, ResourceError> {
    caller.require(Role::Admin)?;
    let consumer = parse_id(KIND, consumer)?;
    let key = parse_id("consumer key", key)?;
    let mut tx = db.begin(&caller.tenant).await?;
    let row = tx
        .query_opt(
            &format!(
                "UPDATE @tenant.api_consumer_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 AND consumer_id = $2 \
                 RETURNING {KEY_COLUMNS}, (SELECT name FROM @tenant.api_consumers WHERE id = $2)"
            ),
            &[&key, &consumer],
        )
        .await?
        .ok_or_else(|| ResourceError::NotFound { kind: "consumer key", id: key.to_string() })?;
    let revoked = key_from_row(&row);
    let detail = json!({"consumer_id": consumer, "key_id": key, "prefix": revoked.prefix});
    caller.record(&mut tx, Change::new("consumer.key_revoke", KIND, row.get::<_, String>(5)).with(detail)).await?;
    tx.commit().await?;
    Ok(revoked)
}
