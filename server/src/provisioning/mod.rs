//! Creating, suspending, resuming and deleting tenants; platform owners;
//! schema migrations.
//!
//! Owns every write to `platform.tenants`. Each change is one transaction
//! that also NOTIFYs the nodes, so no node serves a stale tenant for longer
//! than a round trip, and no failure leaves half a tenant behind.

pub mod clusters;
pub mod domains;
pub mod migrate;
pub mod moves;

use std::path::PathBuf;

use deadpool_postgres::Pool;
use serde::Serialize;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use self::clusters::{ClustersError, Placement};
use crate::{
    auth::{AuthError, Passwords, Role},
    config::ProvisioningConfig,
    database::{connect, DbError},
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
    #[error(transparent)]
    Cluster(#[from] ClustersError),
    #[error("tenant '{0}' is being moved already")]
    MoveInProgress(String),
    #[error("the tenant's running executions did not finish within the pause a move may take ({waited_ms} ms); it stays where it was")]
    MoveTimedOut { waited_ms: u64 },
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
    /// The cluster to place it on; none: see [`clusters::place`].
    pub cluster: Option<String>,
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
    /// The cluster of the node or operator: where new tenants go by default.
    home_cluster: String,
}

/// What is written for a new tenant, in the directory and in its cluster's
/// database alike.
struct TenantRow<'a> {
    id: Uuid,
    slug: &'a TenantSlug,
    name: &'a str,
    version: i32,
    cluster: &'a str,
}

impl TenantRow<'_> {
    async fn insert(&self, tx: &tokio_postgres::Transaction<'_>) -> Result<(), ProvisioningError> {
        let inserted = tx
            .execute(
                "INSERT INTO platform.tenants (id, slug, schema_name, name, status, schema_version, cluster_id) \
                 VALUES ($1, $2, $3, $4, 'active', $5, $6)",
                &[&self.id, &self.slug.as_str(), &self.slug.schema_name().as_str(), &self.name, &self.version, &self.cluster],
            )
            .await;
        match inserted {
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => Err(ProvisioningError::SlugTaken(self.slug.to_string())),
            other => other.map(|_| ()).map_err(Into::into),
        }
    }

    /// The schema, its tables at `version`, and the first owner.
    async fn build(&self, tx: &tokio_postgres::Transaction<'_>, owner_email: &str, password_hash: &str) -> Result<(), ProvisioningError> {
        let schema = self.slug.schema_name();
        let created = tx
            .batch_execute(&format!("CREATE SCHEMA {q}; SET LOCAL search_path TO {q}", q = schema.quoted()))
            .await;
        match created {
            // A schema of that name without a tenant row: never adopt it.
            Err(e) if e.code() == Some(&SqlState::DUPLICATE_SCHEMA) => return Err(ProvisioningError::SlugTaken(self.slug.to_string())),
            other => other?,
        };
        let applied = migrate::apply_in_transaction(tx, self.version).await?;
        if applied < 1 {
            return Err(ProvisioningError::Migration("no tenant migration to apply".into()));
        }
        tx.execute(
            "INSERT INTO users (id, email, display_name, password_hash, role) VALUES ($1, $2, '', $3, $4)",
            &[&Uuid::now_v7(), &owner_email, &password_hash, &Role::Owner.as_str()],
        )
        .await?;
        tx.execute("SELECT pg_notify($1, $2)", &[&TENANT_CHANGES_CHANNEL, &self.slug.as_str()]).await?;
        Ok(())
    }
}

impl Provisioner {
    pub fn new(
        pool: Pool,
        passwords: Passwords,
        directory: TenantDirectory,
        config: ProvisioningConfig,
        database_url: String,
        home_cluster: String,
    ) -> Self {
        Self { pool, passwords, directory, config, database_url, home_cluster }
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

        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let Placement { cluster, database_url } = clusters::place(&*tx, new.cluster.as_deref(), &self.home_cluster).await?;
        let row = TenantRow { id: Uuid::now_v7(), slug: &slug, name: &name, version, cluster: &cluster };
        row.insert(&tx).await?;
        // `build` announces the tenant in the database it builds in; one
        // built elsewhere is announced here too, for the directory's readers.
        match &database_url {
            None => row.build(&tx, &owner_email, &password_hash).await?,
            Some(url) => {
                self.build_elsewhere(&row, url, &owner_email, &password_hash).await?;
                tx.execute("SELECT pg_notify($1, $2)", &[&TENANT_CHANGES_CHANNEL, &slug.as_str()]).await?;
            }
        }
        let stored = tx
            .query_one(&format!("SELECT {TENANT_COLUMNS} FROM platform.tenants WHERE id = $1"), &[&row.id])
            .await?;
        if let Err(e) = tx.commit().await {
            if let Some(url) = &database_url {
                let _ = self.drop_elsewhere(url, &slug).await;
            }
            return Err(e.into());
        }
        self.directory.invalidate(slug.as_str());
        let tenant = Tenant::from_row(&stored).ok_or_else(|| ProvisioningError::Invalid("stored tenant is invalid".into()))?;
        tracing::info!(tenant = %slug, cluster = %cluster, "tenant created");
        Ok(CreatedTenant { tenant, owner_email, initial_password })
    }

    /// Create the tenant in its cluster's own database, committed there
    /// while the directory's row waits uncommitted: a failure there leaves
    /// nothing in the directory, and a failed directory commit is undone
    /// there ([`Self::drop_elsewhere`]).
    async fn build_elsewhere(&self, row: &TenantRow<'_>, url: &str, owner_email: &str, password_hash: &str) -> Result<(), ProvisioningError> {
        let unreachable = |e: DbError| ClustersError::Unreachable { cluster: row.cluster.to_string(), detail: e.to_string() };
        let mut remote = connect(url).await.map_err(unreachable)?;
        let tx = remote.transaction().await?;
        row.insert(&tx).await?;
        row.build(&tx, owner_email, password_hash).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn drop_elsewhere(&self, url: &str, slug: &TenantSlug) -> Result<(), ProvisioningError> {
        let mut remote = connect(url).await?;
        let tx = remote.transaction().await?;
        tx.execute("DELETE FROM platform.tenants WHERE slug = $1", &[&slug.as_str()]).await?;
        tx.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", slug.schema_name().quoted())).await?;
        tx.execute("SELECT pg_notify($1, $2)", &[&TENANT_CHANGES_CHANNEL, &slug.as_str()]).await?;
        tx.commit().await?;
        Ok(())
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
        let row = set_status_in(&*tx, slug, status).await?.ok_or_else(|| ProvisioningError::NotFound(slug.to_string()))?;
        let tenant = Tenant::from_row(&row).ok_or_else(|| ProvisioningError::Invalid("stored tenant is invalid".into()))?;
        // A tenant on a cluster with its own database: its nodes read the
        // row there, so it changes there too, before the directory commits.
        if let Some(url) = clusters::database_url(&*tx, &tenant.cluster).await? {
            let remote = connect(&url).await?;
            set_status_in(&remote, slug, status).await?;
        }
        tx.commit().await?;
        self.directory.invalidate(slug);
        tracing::info!(tenant = %slug, status = status.as_str(), "tenant status changed");
        Ok(tenant)
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
        let mut client = self.pool.get().await?;
        let elsewhere = clusters::database_url(&**client, &tenant.cluster).await?;
        let export_path = self.export(&tenant, elsewhere.as_deref().unwrap_or(&self.database_url)).await?;
        let tx = client.transaction().await?;
        tx.execute("DELETE FROM platform.tenants WHERE id = $1", &[&tenant.id]).await?;
        match &elsewhere {
            None => tx.batch_execute(&format!("DROP SCHEMA {} CASCADE", tenant.schema.quoted())).await?,
            Some(url) => self.drop_elsewhere(url, &tenant.slug).await?,
        }
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
    async fn export(&self, tenant: &Tenant, database_url: &str) -> Result<PathBuf, ProvisioningError> {
        self.export_schema(tenant.schema.as_str(), &format!("{}-{}", tenant.slug, tenant.id), database_url).await
    }

    /// Dump `schema` alone to `<export_dir>/<label>-<time>.sql`.
    async fn export_schema(&self, schema: &str, label: &str, database_url: &str) -> Result<PathBuf, ProvisioningError> {
        let dir = &self.config.export_dir;
        tokio::fs::create_dir_all(dir).await.map_err(|e| ProvisioningError::Export(format!("{}: {e}", dir.display())))?;
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        let path = dir.join(format!("{label}-{stamp}.sql"));
        let pg_dump = self.config.pg_dump.clone().unwrap_or_else(find_pg_dump);
        let output = tokio::process::Command::new(&pg_dump)
            .arg("--schema")
            .arg(schema)
            .args(["--no-owner", "--no-privileges", "--file"])
            .arg(&path)
            .arg("--dbname")
            .arg(database_url)
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

/// Set a tenant's status in one database's `platform.tenants`, announced
/// to that database's nodes; the row as stored, if there is one.
async fn set_status_in(
    client: &impl tokio_postgres::GenericClient,
    slug: &str,
    status: TenantStatus,
) -> Result<Option<tokio_postgres::Row>, ProvisioningError> {
    let row = client
        .query_opt(
            &format!(
                "UPDATE platform.tenants SET status = $2, updated_at = now(), \
                 suspended_at = CASE WHEN $2 = 'suspended' THEN coalesce(suspended_at, now()) END \
                 WHERE slug = $1 RETURNING {TENANT_COLUMNS}"
            ),
            &[&slug, &status.as_str()],
        )
        .await?;
    client.execute("SELECT pg_notify($1, $2)", &[&TENANT_CHANGES_CHANNEL, &slug]).await?;
    Ok(row)
}

/// pg_dump on PATH, else the newest one under Debian's PostgreSQL install.
pub fn find_pg_dump() -> PathBuf {
    crate::local_postgres::find_bin_dir()
        .map(|dir| dir.join("pg_dump"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("pg_dump"))
}
