//! The slug → tenant directory: a read-through cache over `platform.tenants`.
//!
//! Every change to a tenant row is announced with `NOTIFY` on
//! [`TENANT_CHANGES_CHANNEL`] in the same transaction; each node LISTENs and
//! drops the entry, so a suspension made on any node or by the CLI takes
//! effect everywhere within a round trip. The TTL only bounds staleness if
//! the listener is down.

use std::{sync::Arc, time::Duration};

use deadpool_postgres::Pool;
use moka::sync::Cache;
use tokio::sync::watch;

use super::{Tenant, TenantSlug, TENANT_COLUMNS};
use crate::database::DbError;

pub const TENANT_CHANGES_CHANNEL: &str = "tessera_tenant_changes";

const CACHE_TTL: Duration = Duration::from_secs(30);
const CACHE_CAPACITY: u64 = 100_000;

#[derive(Clone)]
pub struct TenantDirectory {
    pool: Pool,
    /// This node's cluster: a tenant placed on another cluster is not served
    /// here (the directory database lists every cluster's tenants).
    cluster: Arc<str>,
    /// `None` caches "no such tenant", so random subdomains cost one query each
    /// per TTL rather than one per request.
    cache: Cache<TenantSlug, Option<Arc<Tenant>>>,
    /// Bumped on every change notification; the worker supervisor watches it.
    generation: Arc<watch::Sender<u64>>,
}

impl TenantDirectory {
    pub fn new(pool: Pool, cluster: String) -> Self {
        let cache = Cache::builder().max_capacity(CACHE_CAPACITY).time_to_live(CACHE_TTL).build();
        let (generation, _) = watch::channel(0);
        Self { pool, cluster: cluster.into(), cache, generation: Arc::new(generation) }
    }

    /// The tenant named `slug` if this node's cluster serves it.
    pub async fn lookup(&self, slug: &TenantSlug) -> Result<Option<Arc<Tenant>>, DbError> {
        Ok(self.find(slug).await?.filter(|t| self.serves(t)))
    }

    /// Whether this node's cluster serves `tenant`.
    pub fn serves(&self, tenant: &Tenant) -> bool {
        *tenant.cluster == *self.cluster
    }

    /// Like [`Self::lookup`], and also a tenant that moved from this
    /// cluster to another in the last minute: requests that reach this
    /// node meanwhile (a load balancer that has not heard yet) are told to
    /// come again, not that the tenant does not exist.
    pub async fn find(&self, slug: &TenantSlug) -> Result<Option<Arc<Tenant>>, DbError> {
        if let Some(hit) = self.cache.get(slug) {
            return Ok(hit);
        }
        let client = self.pool.get().await?;
        let sql = format!(
            "SELECT {TENANT_COLUMNS} FROM platform.tenants t WHERE slug = $1 AND (cluster_id = $2 OR EXISTS \
             (SELECT 1 FROM platform.tenant_moves m WHERE m.tenant_id = t.id AND m.from_cluster = $2 \
              AND m.state IN ('switching', 'done') AND coalesce(m.finished_at, now()) > now() - interval '1 minute'))"
        );
        let statement = client.prepare_cached(&sql).await?;
        let found = client
            .query_opt(&statement, &[&slug.as_str(), &&*self.cluster])
            .await?
            .and_then(|row| Tenant::from_row(&row))
            .map(Arc::new);
        self.cache.insert(slug.clone(), found.clone());
        Ok(found)
    }

    /// All tenants whose workers should run (status active).
    pub async fn list_active(&self) -> Result<Vec<Tenant>, DbError> {
        let client = self.pool.get().await?;
        let sql = format!("SELECT {TENANT_COLUMNS} FROM platform.tenants WHERE status = 'active' AND cluster_id = $1 ORDER BY slug");
        let rows = client.query(&sql, &[&&*self.cluster]).await?;
        Ok(rows.iter().filter_map(Tenant::from_row).collect())
    }

    pub fn invalidate(&self, slug: &str) {
        if let Ok(slug) = TenantSlug::parse(slug) {
            self.cache.invalidate(&slug);
        }
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn invalidate_all(&self) {
        self.cache.invalidate_all();
        self.generation.send_modify(|g| *g += 1);
    }

    /// Fires whenever some tenant changed.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }
}

impl crate::notifications::Subscriber for TenantDirectory {
    fn channel(&self) -> &'static str {
        TENANT_CHANGES_CHANNEL
    }

    fn notified(&self, slug: &str) {
        self.invalidate(slug);
    }

    fn resync(&self) {
        self.invalidate_all();
    }
}
