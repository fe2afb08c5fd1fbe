//! A tenant's users: who may sign in, with which role.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use uuid::Uuid;
use serde_json::json;

use super::{parse_id, ResourceError};
use crate::{
    audit::Change,
    auth::{announce_change, AuthService, Passwords, Role, TenantCaller},
    database::DbError,
    provisioning::normalize_email,
    tenancy::{TenantDb, TenantTx},
};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, email, display_name, role, disabled, created_at, updated_at";

/// A user as stored; a role this version does not know fails the read.
fn from_row(row: &Row) -> Result<User, DbError> {
    Ok(User {
        id: row.get(0),
        email: row.get(1),
        display_name: row.get(2),
        role: row.try_get(3)?,
        disabled: row.get(4),
        created_at: row.get(5),
        updated_at: row.get(6),
    })
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub email: String,
    pub password: String,
    pub role: Role,
    #[serde(default)]
    pub display_name: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserChanges {
    pub role: Option<Role>,
    pub display_name: Option<String>,
    pub disabled: Option<bool>,
    pub password: Option<String>,
}

fn check_display_name(name: &str) -> Result<(), ResourceError> {
    if name.chars().count() > 200 {
        return Err(ResourceError::invalid("display_name", "at most 200 characters"));
    }
    Ok(())
}

/// Nobody grants a role above their own.
fn check_grant(caller: &TenantCaller, role: Role) -> Result<(), ResourceError> {
    caller.require(Role::Admin)?;
    caller.require(role)?;
    Ok(())
}

pub async fn list(db: &TenantDb, caller: &TenantCaller) -> Result<Vec<User>, ResourceError> {
    let rows = db.statement(&caller.tenant, &format!("SELECT {COLUMNS} FROM @tenant.users ORDER BY email"), &[]).await?;
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}

pub async fn get(db: &TenantDb, caller: &TenantCaller, id: &str) -> Result<User, ResourceError> {
    let id = parse_id("user", id)?;
    let rows = db.statement(&caller.tenant, &format!("SELECT {COLUMNS} FROM @tenant.users WHERE id = $1"), &[&id]).await?;
    let row = rows.first().ok_or(ResourceError::NotFound { kind: "user", id: id.to_string() })?;
    Ok(from_row(row)?)
}

pub async fn create(db: &TenantDb, passwords: &Passwords, caller: &TenantCaller, new: NewUser) -> Result<User, ResourceError> {
    check_grant(caller, new.role)?;
    let email = normalize_email(&new.email).map_err(|m| ResourceError::invalid("email", m))?;
    check_display_name(&new.display_name)?;
    Passwords::check_policy(&new.password).map_err(|m| ResourceError::invalid("password", m))?;
    let hash = passwords.hash(new.password).await?;
    let mut tx = db.begin(&caller.tenant).await?;
    let row = tx
        .query_opt(
            &format!(
                "INSERT INTO @tenant.users (id, email, display_name, password_hash, role) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (email) DO NOTHING RETURNING {COLUMNS}"
            ),
            &[&Uuid::now_v7(), &email, &new.display_name, &hash, &new.role.as_str()],
        )
        .await?
        .ok_or_else(|| ResourceError::Conflict { kind: "user", id: email.clone() })?;
    let user = from_row(&row)?;
    let detail = json!({"id": user.id, "role": new.role.as_str()});
    caller.record(&mut tx, Change::new("user.create", "user", &email).with(detail)).await?;
    tx.commit().await?;
    Ok(user)
}

/// Fail unless, after the change, the tenant still has an enabled owner.
async fn ensure_an_owner_remains(tx: &mut TenantTx) -> Result<(), ResourceError> {
    let row = tx.query_one("SELECT count(*) FROM @tenant.users WHERE role = 'owner' AND NOT disabled", &[]).await?;
    if row.get::<_, i64>(0) == 0 {
        return Err(ResourceError::LastOwner);
    }
    Ok(())
}

/// Change a user; their standing on this node is dropped at once after the
/// commit (other nodes hear of it through the NOTIFY of `announce_change`).
pub async fn update(
    db: &TenantDb,
    auth: &AuthService,
    caller: &TenantCaller,
    id: &str,
    changes: UserChanges,
) -> Result<User, ResourceError> {
    caller.require(Role::Admin)?;
    let id = parse_id("user", id)?;
    if let Some(role) = changes.role {
        check_grant(caller, role)?;
    }
    if let Some(name) = &changes.display_name {
        check_display_name(name)?;
    }
    let hash = match changes.password {
        Some(p) => {
            Passwords::check_policy(&p).map_err(|m| ResourceError::invalid("password", m))?;
            Some(auth.passwords.hash(p).await?)
        }
        None => None,
    };
    let mut tx = db.begin(&caller.tenant).await?;
    // Lock the row: concurrent demotions must not both pass the owner check.
    tx.query("SELECT 1 FROM @tenant.users WHERE role = 'owner' FOR UPDATE", &[]).await?;
    let current = tx
        .query_opt("SELECT role FROM @tenant.users WHERE id = $1 FOR UPDATE", &[&id])
        .await?
        .ok_or(ResourceError::NotFound { kind: "user", id: id.to_string() })?;
    // Only an owner may change an owner.
    if current.try_get::<_, Role>(0).map_err(DbError::from)? == Role::Owner {
        caller.require(Role::Owner)?;
    }
    let row = tx
        .query_one(
            &format!(
                "UPDATE @tenant.users SET role = coalesce($2, role), display_name = coalesce($3, display_name), \
                 disabled = coalesce($4, disabled), password_hash = coalesce($5, password_hash), updated_at = now() \
                 WHERE id = $1 RETURNING {COLUMNS}"
            ),
            &[&id, &changes.role.map(Role::as_str), &changes.display_name, &changes.disabled, &hash],
        )
        .await?;
    let user = from_row(&row)?;
    ensure_an_owner_remains(&mut tx).await?;
    announce_change(&mut tx, caller.tenant.id, id).await?;
    // What changed, never the password itself.
    let detail = json!({
        "id": id,
        "role": changes.role.map(Role::as_str),
        "display_name": changes.display_name,
        "disabled": changes.disabled,
        "password_changed": hash.is_some(),
    });
    caller.record(&mut tx, Change::new("user.update", "user", &user.email).with(detail)).await?;
    tx.commit().await?;
    auth.standing.invalidate(caller.tenant.id, id);
    Ok(user)
}

/// Delete a user; returns the id of the user deleted. Their standing goes
/// as in [`update`].
pub async fn delete(db: &TenantDb, auth: &AuthService, caller: &TenantCaller, id: &str) -> Result<Uuid, ResourceError> {
    caller.require(Role::Admin)?;
    let id = parse_id("user", id)?;
    let mut tx = db.begin(&caller.tenant).await?;
    tx.query("SELECT 1 FROM @tenant.users WHERE role = 'owner' FOR UPDATE", &[]).await?;
    let current = tx
        .query_opt("DELETE FROM @tenant.users WHERE id = $1 RETURNING role, email", &[&id])
        .await?
        .ok_or(ResourceError::NotFound { kind: "user", id: id.to_string() })?;
    if current.try_get::<_, Role>(0).map_err(DbError::from)? == Role::Owner {
        caller.require(Role::Owner)?;
    }
    ensure_an_owner_remains(&mut tx).await?;
    announce_change(&mut tx, caller.tenant.id, id).await?;
    let email: String = current.get(1);
    caller.record(&mut tx, Change::new("user.delete", "user", email).with(json!({"id": id}))).await?;
    tx.commit().await?;
    auth.standing.invalidate(caller.tenant.id, id);
    Ok(id)
}
