//! Creating, suspending, resuming and deleting tenants; platform owners;
//! schema migrations.
//!
//! Owns every write to `platform.tenants`. Each change is one transaction
//! that also NOTIFYs the nodes, so no node serves a stale tenant for longer
//! than a round trip, and no failure leaves half a tenant behind.

pub mod migrate;

use std::path::PathBuf;

use deadpool_postgres::Pool;
use serde::Serialize;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use crate::{
    auth::{AuthError, Passwords, Role},
    config::ProvisioningConfig,
    database::DbError,
    tenancy::{Tenant, TenantDirectory, TenantSlug, TenantStatus, SlugError, TENANT_CHANGES_CHANNEL, TENANT_COLUMNS},
};

#[derive(Debug, thiserror::Error)]
pub enum ProvisioningError {
    #[error(transparent)]
    Slug(#[from] SlugError),
    #[error("{0}")]
    Invalid(String),
    #[error("a tenant named '{0}' already exists")]
    SlugTaken(String),
    #[error("there is no tenant '{0}'")]
    NotFound(String),
    #[error("deleting a tenant needs confirm=<its slug>")]
    ConfirmationMismatch,
    #[error("the platform already has an owner")]
    OwnerExists,
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("export failed: {0}")]
    Export(String),
    #[error(transparent)]
    Auth(#[from] AuthError),
}

impl From<tokio_postgres::Error> for ProvisioningError {
    fn from(e: tokio_postgres::Error) -> Self {
        ProvisioningError::Db(e.into())
    }
}

impl From<deadpool_postgres::PoolError> for ProvisioningError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        ProvisioningError::Db(e.into())
    }
}

pub struct NewTenant {
    pub slug: String,
    pub name: Option<String>,
    pub owner_email: String,
    /// Generated (and returned once) when absent.
    pub owner_password: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct CreatedTenant {
    pub tenant: Tenant,
    pub owner_email: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_password: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct DeletedTenant {
    pub slug: String,
    pub export_path: String,
}

/// Checks shared by every place that accepts an email address.
pub fn normalize_email(raw: &str) -> Result<String, String> {
    let email = raw.trim().to_lowercase();
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.starts_with('.') && !domain.ends_with('.')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    valid.then_some(email).ok_or_else(|| format!("'{}' is not a valid email address", raw.trim()))
}

fn generated_password() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 18];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[derive(Clone)]
pub struct Provisioner {
    pool: Pool,
    passwords: Passwords,
    directory: TenantDirectory,
    config: ProvisioningConfig,
    database_url: String,
}

impl Provisioner {
    pub fn new(pool: Pool, passwords: Passwords, directory: TenantDirectory, config: ProvisioningConfig, database_url: String) -> Self {
        Self { pool, passwords, directory, config, database_url }
    }

    pub async fn create_tenant(&self, new: NewTenant) -> Result<CreatedTenant, ProvisioningError> {
        self.create_tenant_at(new, migrate::latest_tenant_version()).await
    }

    /// Create a tenant with its schema at migration `version` (the latest in
    /// normal use; older ones exist to test upgrades). All or nothing: the
    /// tenant row, schema, tables, migration history and owner commit together.
    pub async fn create_tenant_at(&self, new: NewTenant, version: i32) -> Result<CreatedTenant, ProvisioningError> {
        let slug = TenantSlug::parse(new.slug.trim())?;
        let name = new.name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty()).unwrap_or_else(|| slug.to_string());
        if name.chars().count() > 200 {
            return Err(ProvisioningError::Invalid("a tenant name has at most 200 characters".into()));
        }
        let owner_email = normalize_email(&new.owner_email).map_err(ProvisioningError::Invalid)?;
        let (password, initial_password) = match new.owner_password {
            Some(p) => (p, None),
            None => {
                let p = generated_password();
                (p.clone(), Some(p))
            }
        };
        Passwords::check_policy(&password).map_err(ProvisioningError::Invalid)?;
        let password_hash = self.passwords.hash(password).await?;

        let schema = slug.schema_name();
        let tenant_id = Uuid::now_v7();
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let inserted = tx
            .execute(
                "INSERT INTO platform.tenants (id, slug, schema_name, name, status, schema_version) \
                 VALUES ($1, $2, $3, $4, 'active', $5)",
                &[&tenant_id, &slug.as_str(), &schema.as_str(), &name, &version],
            )
            .await;
        match inserted {
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => return Err(ProvisioningError::SlugTaken(slug.to_string())),
            other => other?,
        };
        let created = tx
            .batch_execute(&format!("CREATE SCHEMA {q}; SET LOCAL search_path TO {q}", q = schema.quoted()))
            .await;
        match created {
            // A schema of that name without a tenant row: never adopt it.
            Err(e) if e.code() == Some(&SqlState::DUPLICATE_SCHEMA) => return Err(ProvisioningError::SlugTaken(slug.to_string())),
            other => other?,
        };
        let applied = migrate::apply_in_transaction(&tx, version).await?;
        if applied < 1 {
            return Err(ProvisioningError::Migration("no tenant migration to apply".into()));
        }
        tx.execute(
            "INSERT INTO users (id, email, display_name, password_hash, role) VALUES ($1, $2, '', $3, $4)",
            &[&Uuid::now_v7(), &owner_email, &password_hash, &Role::Owner.as_str()],
        )
        .await?;
        tx.execute("SELECT pg_notify($1, $2)", &[&TENANT_CHANGES_CHANNEL, &slug.as_str()]).await?;
        let row = tx
            .query_one(&format!("SELECT {TENANT_COLUMNS} FROM platform.tenants WHERE id = $1"), &[&tenant_id])
            .await?;
        tx.commit().await?;
        self.directory.invalidate(slug.as_str());
        let tenant = Tenant::from_row(&row).ok_or_else(|| ProvisioningError::Invalid("stored tenant is invalid".into()))?;
        tracing::info!(tenant = %slug, "tenant created");
        Ok(CreatedTenant { tenant, owner_email, initial_password })
    }

    pub async fn list(&self) -> Result<Vec<Tenant>, ProvisioningError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(&format!("SELECT {TENANT_COLUMNS} FROM platform.tenants ORDER BY slug"), &[])
            .await?;
        Ok(rows.iter().filter_map(Tenant::from_row).collect())
    }

    pub async fn get(&self, slug: &str) -> Result<Tenant, ProvisioningError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(&format!("SELECT {TENANT_COLUMNS} FROM platform.tenants WHERE slug = $1"), &[&slug])
            .await?;
        row.as_ref().and_then(Tenant::from_row).ok_or_else(|| ProvisioningError::NotFound(slug.to_string()))
    }

    pub async fn set_status(&self, slug: &str, status: TenantStatus) -> Result<Tenant, ProvisioningError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let row = tx
            .query_opt(
                &format!(
                    "UPDATE platform.tenants SET status = $2, updated_at = now(), \
                     suspended_at = CASE WHEN $2 = 'suspended' THEN coalesce(suspended_at, now()) END \
                     WHERE slug = $1 RETURNING {TENANT_COLUMNS}"
                ),
                &[&slug, &status.as_str()],
            )
            .await?
            .ok_or_else(|| ProvisioningError::NotFound(slug.to_string()))?;
        tx.execute("SELECT pg_notify($1, $2)", &[&TENANT_CHANGES_CHANNEL, &slug]).await?;
        tx.commit().await?;
        self.directory.invalidate(slug);
        tracing::info!(tenant = %slug, status = status.as_str(), "tenant status changed");
        Tenant::from_row(&row).ok_or_else(|| ProvisioningError::Invalid("stored tenant is invalid".into()))
    }

    /// Delete a tenant: suspend it, export its schema, then drop it. Nothing
    /// is dropped unless the export was written.
    pub async fn delete(&self, slug: &str, confirm: &str, deleted_by: &str) -> Result<DeletedTenant, ProvisioningError> {
        let tenant = self.get(slug).await?;
        if confirm != tenant.slug.as_str() {
            return Err(ProvisioningError::ConfirmationMismatch);
        }
        if tenant.status != TenantStatus::Suspended {
            self.set_status(slug, TenantStatus::Suspended).await?;
        }
        let export_path = self.export(&tenant).await?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute("DELETE FROM platform.tenants WHERE id = $1", &[&tenant.id]).await?;
        tx.batch_execute(&format!("DROP SCHEMA {} CASCADE", tenant.schema.quoted())).await?;
        tx.execute(
            "INSERT INTO platform.tenant_deletions (tenant_id, slug, export_path, deleted_by) VALUES ($1, $2, $3, $4)",
            &[&tenant.id, &slug, &export_path.display().to_string(), &deleted_by],
        )
        .await?;
        tx.execute("SELECT pg_notify($1, $2)", &[&TENANT_CHANGES_CHANNEL, &slug]).await?;
        tx.commit().await?;
        self.directory.invalidate(slug);
        tracing::info!(tenant = %slug, export = %export_path.display(), "tenant deleted");
        Ok(DeletedTenant { slug: slug.to_string(), export_path: export_path.display().to_string() })
    }

    /// Dump one tenant's schema (only that schema) with pg_dump.
    async fn export(&self, tenant: &Tenant) -> Result<PathBuf, ProvisioningError> {
        let dir = &self.config.export_dir;
        tokio::fs::create_dir_all(dir).await.map_err(|e| ProvisioningError::Export(format!("{}: {e}", dir.display())))?;
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        let path = dir.join(format!("{}-{}-{stamp}.sql", tenant.slug, tenant.id));
        let pg_dump = self.config.pg_dump.clone().unwrap_or_else(find_pg_dump);
        let output = tokio::process::Command::new(&pg_dump)
            .arg("--schema")
            .arg(tenant.schema.as_str())
            .args(["--no-owner", "--no-privileges", "--file"])
            .arg(&path)
            .arg("--dbname")
            .arg(&self.database_url)
            .output()
            .await
            .map_err(|e| ProvisioningError::Export(format!("cannot run {}: {e}", pg_dump.display())))?;
        if !output.status.success() {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(ProvisioningError::Export(String::from_utf8_lossy(&output.stderr).trim().to_string()));
        }
        Ok(path)
    }

    /// Create the first platform owner; refused once any owner exists.
    pub async fn init_platform(&self, email: &str, password: String) -> Result<(), ProvisioningError> {
        let email = normalize_email(email).map_err(ProvisioningError::Invalid)?;
        Passwords::check_policy(&password).map_err(ProvisioningError::Invalid)?;
        let hash = self.passwords.hash(password).await?;
        let client = self.pool.get().await?;
        let inserted = client
            .execute(
                "INSERT INTO platform.owners (id, email, password_hash) \
                 SELECT $1, $2, $3 WHERE NOT EXISTS (SELECT 1 FROM platform.owners)",
                &[&Uuid::now_v7(), &email, &hash],
            )
            .await?;
        if inserted == 0 {
            return Err(ProvisioningError::OwnerExists);
        }
        Ok(())
    }

    /// Create or reset a platform owner (the local demo uses this).
    pub async fn upsert_platform_owner(&self, email: &str, password: String) -> Result<(), ProvisioningError> {
        let email = normalize_email(email).map_err(ProvisioningError::Invalid)?;
        let hash = self.passwords.hash(password).await?;
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO platform.owners (id, email, password_hash) VALUES ($1, $2, $3) \
                 ON CONFLICT (email) DO UPDATE SET password_hash = excluded.password_hash",
                &[&Uuid::now_v7(), &email, &hash],
            )
            .await?;
        Ok(())
    }
}

/// pg_dump on PATH, else the newest one under Debian's PostgreSQL install.
pub fn find_pg_dump() -> PathBuf {
    crate::local_postgres::find_bin_dir()
        .map(|dir| dir.join("pg_dump"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("pg_dump"))
}
