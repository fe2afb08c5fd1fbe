//! Limits per tenant on the server's side: the effective limits of each
//! tenant (the configured defaults with the platform owner's overrides from
//! `platform.tenant_limits` on top), what the platform API and the CLI show
//! and change, and the checks made where work comes in (request bodies,
//! new executions). The runtime enforces the rest with the limits the
//! cluster round puts in each worker's `TenantSpec`.
//!
//! A change is stored with `NOTIFY tessera_tenant_changes` in the same
//! transaction: every node drops its cached limits, and its cluster round
//! hands the running worker its new ones. No restart.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use deadpool_postgres::Pool;
use moka::sync::Cache;
use serde::Serialize;
use serde_json::{Map, Value};
use tessera_runtime::{
    limits::{LimitError, LimitExceeded},
    LimitOverrides, TenantLimits,
};
use uuid::Uuid;

use crate::{
    config::Config,
    database::DbError,
    tenancy::{SchemaName, TenantDb, TENANT_CHANGES_CHANNEL},
};

const CACHE_TTL: Duration = Duration::from_secs(30);
const CACHE_CAPACITY: u64 = 100_000;
/// How long a tenant's count of stored executions is trusted before it is
/// counted again (between counts, this node adds what it admits): a second
/// near the limit, half a minute while the count is below half of it
/// (other nodes' intake and the retention sweep change it meanwhile).
const COUNT_FRESH_NEAR: Duration = Duration::from_secs(1);
const COUNT_FRESH_FAR: Duration = Duration::from_secs(30);

/// A tenant's stored (or queued) executions as last counted, plus what this
/// node admitted since.
struct StoredCount {
    count: AtomicUsize,
    counted_at: Instant,
}

impl StoredCount {
    fn fresh(&self, limit: usize) -> bool {
        let age = self.counted_at.elapsed();
        age < COUNT_FRESH_NEAR || (age < COUNT_FRESH_FAR && self.count.load(Ordering::Acquire) < limit / 2)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    #[error("there is no tenant '{0}'")]
    NotFound(String),
    #[error(transparent)]
    Invalid(#[from] LimitError),
    #[error("`{name}` must be a whole number or null (to use the default)")]
    NotANumber { name: String },
    #[error("`request_body_bytes` cannot be above this node's maximum of {max} (http.max_body_bytes)")]
    AboveNode { max: usize },
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<tokio_postgres::Error> for LimitsError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Db(e.into())
    }
}

impl From<deadpool_postgres::PoolError> for LimitsError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Db(e.into())
    }
}

/// A tenant's limits as the platform owner sees them.
#[derive(Debug, Clone, Serialize)]
pub struct LimitsView {
    pub tenant: String,
    /// What applies to the tenant.
    pub limits: TenantLimits,
    /// The names of the limits set for this tenant.
    pub overridden: Vec<&'static str>,
    /// What applies without an override (this node's configuration).
    pub defaults: TenantLimits,
}

/// Every tenant's effective limits, cached per node; and the counts of
/// stored and of queued executions each one may not pass.
#[derive(Clone)]
pub struct LimitBook {
    pool: Pool,
    defaults: Arc<TenantLimits>,
    /// `http.max_body_bytes`: no tenant's body limit is above it.
    node_body_max: usize,
    cache: Cache<Uuid, Arc<TenantLimits>>,
    stored: Cache<Uuid, Arc<StoredCount>>,
    queued: Cache<Uuid, Arc<StoredCount>>,
}

impl LimitBook {
    pub fn new(pool: Pool, config: &Config) -> Self {
        Self {
            pool,
            defaults: Arc::new(config.tenant_limits()),
            node_body_max: config.http.max_body_bytes,
            cache: Cache::builder().max_capacity(CACHE_CAPACITY).time_to_live(CACHE_TTL).build(),
            stored: Cache::builder().max_capacity(CACHE_CAPACITY).time_to_live(COUNT_FRESH_FAR).build(),
            queued: Cache::builder().max_capacity(CACHE_CAPACITY).time_to_live(COUNT_FRESH_FAR).build(),
        }
    }

    /// The defaults with `overrides` on top (a stored body limit above
    /// this node's maximum is held to it).
    pub fn effective(&self, overrides: &LimitOverrides) -> TenantLimits {
        let mut limits = self.defaults.with(overrides);
        limits.request_body_bytes = limits.request_body_bytes.min(self.node_body_max);
        limits
    }

    /// The effective limits of tenant `id`.
    pub async fn of(&self, id: Uuid) -> Result<Arc<TenantLimits>, DbError> {
        if let Some(hit) = self.cache.get(&id) {
            return Ok(hit);
        }
        let client = self.pool.get().await?;
        let row = client.query_opt("SELECT overrides FROM platform.tenant_limits WHERE tenant_id = $1", &[&id]).await?;
        let limits = Arc::new(self.effective(&stored_overrides(row.map(|r| r.get(0)))));
        self.cache.insert(id, limits.clone());
        Ok(limits)
    }

    /// The most bytes a request body of tenant `id` may have.
    pub async fn body_limit(&self, id: Uuid) -> usize {
        match self.of(id).await {
            Ok(limits) => limits.request_body_bytes,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read a tenant's limits; the node's body limit applies");
                self.node_body_max
            }
        }
    }

    pub async fn show(&self, slug: &str) -> Result<LimitsView, LimitsError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT l.overrides FROM platform.tenants t LEFT JOIN platform.tenant_limits l ON l.tenant_id = t.id WHERE t.slug = $1",
                &[&slug],
            )
            .await?
            .ok_or_else(|| LimitsError::NotFound(slug.to_string()))?;
        Ok(self.view(slug, &stored_overrides(row.get(0))))
    }

    /// Set (a number) or clear (`null`) the limits named in `changes`; the
    /// others stay as they are. All or nothing: one bad value changes none.
    pub async fn update(&self, slug: &str, changes: &Map<String, Value>) -> Result<LimitsView, LimitsError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let row = tx
            .query_opt(
                "SELECT t.id, l.overrides FROM platform.tenants t LEFT JOIN platform.tenant_limits l ON l.tenant_id = t.id \
                 WHERE t.slug = $1 FOR UPDATE OF t",
                &[&slug],
            )
            .await?
            .ok_or_else(|| LimitsError::NotFound(slug.to_string()))?;
        let id: Uuid = row.get(0);
        let mut overrides = stored_overrides(row.get(1));
        for (name, value) in changes {
            let value = match value {
                Value::Null => None,
                other => Some(other.as_u64().and_then(|v| usize::try_from(v).ok()).ok_or_else(|| LimitsError::NotANumber { name: name.clone() })?),
            };
            overrides.set(name, value)?;
        }
        if overrides.request_body_bytes.is_some_and(|bytes| bytes > self.node_body_max) {
            return Err(LimitsError::AboveNode { max: self.node_body_max });
        }
        let stored = serde_json::to_value(&overrides).expect("limits serialise");
        store_overrides(&*tx, id, slug, &stored).await?;
        // A tenant on a cluster with a database of its own: its nodes read
        // its limits there.
        if let Some(url) = crate::provisioning::clusters::database_of(&*tx, id).await? {
            store_overrides(&crate::database::connect(&url).await?, id, slug, &stored).await?;
        }
        tx.commit().await?;
        self.cache.invalidate(&id);
        tracing::info!(tenant = %slug, overridden = ?overrides.names(), "tenant limits changed");
        Ok(self.view(slug, &overrides))
    }

    fn view(&self, slug: &str, overrides: &LimitOverrides) -> LimitsView {
        LimitsView {
            tenant: slug.to_string(),
            limits: self.effective(overrides),
            overridden: overrides.names(),
            defaults: (*self.defaults).clone(),
        }
    }

    /// Admit one new execution of tenant `id` (schema `schema`) against its
    /// limit `stored_executions`.
    pub async fn admit_stored(&self, db: &TenantDb, id: Uuid, schema: &SchemaName, limit: usize) -> Result<(), AdmitError> {
        admit_counted(&self.stored, Counted::Stored, db, id, schema, limit).await
    }

    /// Admit one new execution of tenant `id` against its limit
    /// `queued_executions`: a tenant that sends faster than its worker runs
    /// is refused before its backlog costs the node more (docs/security.md).
    pub async fn admit_queued(&self, db: &TenantDb, id: Uuid, schema: &SchemaName, limit: usize) -> Result<(), AdmitError> {
        admit_counted(&self.queued, Counted::Queued, db, id, schema, limit).await
    }
}

/// What a count-bounded limit counts.
#[derive(Clone, Copy)]
enum Counted {
    Stored,
    Queued,
}

impl Counted {
    /// At most `$1` rows are counted, so a large table costs no more than
    /// the limit's worth of index (`executions_by_state` for the queued).
    fn sql(self) -> &'static str {
        match self {
            Self::Stored => "SELECT count(*) FROM (SELECT 1 FROM @tenant.executions LIMIT $1) s",
            Self::Queued => "SELECT count(*) FROM (SELECT 1 FROM @tenant.executions WHERE state = 'queued' LIMIT $1) s",
        }
    }

    fn refused(self, limit: usize) -> AdmitError {
        let (code, what, name) = match self {
            Self::Stored => ("too_many_stored_executions", "the number of stored executions", "stored_executions"),
            Self::Queued => ("too_many_queued_executions", "the number of executions waiting to start", "queued_executions"),
        };
        AdmitError::Limit(LimitExceeded::new(code, what, limit + 1, name, limit))
    }
}

/// Admit one against a count of `counted`. The count is read again only
/// when it is stale (see [`StoredCount::fresh`]); in between this node adds
/// what it admits, so between counts it can only overestimate.
async fn admit_counted(
    cache: &Cache<Uuid, Arc<StoredCount>>,
    counted: Counted,
    db: &TenantDb,
    id: Uuid,
    schema: &SchemaName,
    limit: usize,
) -> Result<(), AdmitError> {
    let stored = match cache.get(&id).filter(|stored| stored.fresh(limit)) {
        Some(stored) => stored,
        None => {
            let rows = db.statement_in_schema(schema, counted.sql(), &[&i64::try_from(limit).unwrap_or(i64::MAX)]).await?;
            let count = AtomicUsize::new(usize::try_from(rows[0].get::<_, i64>(0)).unwrap_or(0));
            let stored = Arc::new(StoredCount { count, counted_at: Instant::now() });
            cache.insert(id, stored.clone());
            stored
        }
    };
    if stored.count.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < limit).then_some(n + 1)).is_err() {
        return Err(counted.refused(limit));
    }
    Ok(())
}

/// Why a new execution was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    #[error(transparent)]
    Limit(LimitExceeded),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Store a tenant's overrides in one database's `platform.tenant_limits`,
/// announced to that database's nodes.
async fn store_overrides(client: &impl tokio_postgres::GenericClient, id: Uuid, slug: &str, stored: &Value) -> Result<(), LimitsError> {
    client
        .execute(
            "INSERT INTO platform.tenant_limits (tenant_id, overrides) VALUES ($1, $2) \
             ON CONFLICT (tenant_id) DO UPDATE SET overrides = EXCLUDED.overrides, updated_at = now()",
            &[&id, stored],
        )
        .await?;
    client.execute("SELECT pg_notify($1, $2)", &[&TENANT_CHANGES_CHANNEL, &slug]).await?;
    Ok(())
}

/// The overrides as stored; a name this version does not know (written by
/// a newer one) or a value out of range is left out, not trusted.
pub fn stored_overrides(stored: Option<Value>) -> LimitOverrides {
    let mut overrides = LimitOverrides::default();
    let Some(Value::Object(fields)) = stored else { return overrides };
    for (name, value) in fields {
        let value = value.as_u64().and_then(|v| usize::try_from(v).ok());
        if let Err(e) = overrides.set(&name, value) {
            tracing::warn!(limit = %name, error = %e, "a stored tenant limit is ignored");
        }
    }
    overrides
}

impl crate::notifications::Subscriber for LimitBook {
    fn channel(&self) -> &'static str {
        TENANT_CHANGES_CHANNEL
    }

    /// The payload names the tenant by slug; limits are cached by id, and
    /// changes are rare: forget them all.
    fn notified(&self, _slug: &str) {
        self.cache.invalidate_all();
    }

    fn resync(&self) {
        self.cache.invalidate_all();
    }
}
