//! The slug → tenant directory: a read-through cache over `platform.tenants`.
//!
//! Every change to a tenant row is announced with `NOTIFY` on
//! [`TENANT_CHANGES_CHANNEL`] in the same transaction; each node LISTENs and
//! drops the entry, so a suspension made on any node or by the CLI takes
//! effect everywhere within a round trip. The TTL only bounds staleness if
//! the listener is down.

use std::{sync::Arc, time::Duration};

use deadpool_postgres::Pool;
use futures::StreamExt;
use moka::sync::Cache;
use tokio::sync::{mpsc, watch};
use tokio_postgres::{AsyncMessage, NoTls};
use tokio_util::sync::CancellationToken;

use super::{Tenant, TenantSlug, TENANT_COLUMNS};
use crate::database::{pg_config, DbError};

pub const TENANT_CHANGES_CHANNEL: &str = "tessera_tenant_changes";

const CACHE_TTL: Duration = Duration::from_secs(30);
const CACHE_CAPACITY: u64 = 100_000;

#[derive(Clone)]
pub struct TenantDirectory {
    pool: Pool,
    /// `None` caches "no such tenant", so random subdomains cost one query each
    /// per TTL rather than one per request.
    cache: Cache<TenantSlug, Option<Arc<Tenant>>>,
    /// Bumped on every change notification; the worker supervisor watches it.
    generation: Arc<watch::Sender<u64>>,
}

impl TenantDirectory {
    pub fn new(pool: Pool) -> Self {
        let cache = Cache::builder().max_capacity(CACHE_CAPACITY).time_to_live(CACHE_TTL).build();
        let (generation, _) = watch::channel(0);
        Self { pool, cache, generation: Arc::new(generation) }
    }

    pub async fn lookup(&self, slug: &TenantSlug) -> Result<Option<Arc<Tenant>>, DbError> {
        if let Some(hit) = self.cache.get(slug) {
            return Ok(hit);
        }
        let client = self.pool.get().await?;
        let sql = format!("SELECT {TENANT_COLUMNS} FROM platform.tenants WHERE slug = $1");
        let statement = client.prepare_cached(&sql).await?;
        let found = client
            .query_opt(&statement, &[&slug.as_str()])
            .await?
            .and_then(|row| Tenant::from_row(&row))
            .map(Arc::new);
        self.cache.insert(slug.clone(), found.clone());
        Ok(found)
    }

    /// All tenants whose workers should run (status active).
    pub async fn list_active(&self) -> Result<Vec<Tenant>, DbError> {
        let client = self.pool.get().await?;
        let sql = format!("SELECT {TENANT_COLUMNS} FROM platform.tenants WHERE status = 'active' ORDER BY slug");
        let rows = client.query(&sql, &[]).await?;
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

    /// Follow change notifications until `shutdown`, reconnecting on loss.
    pub fn spawn_listener(&self, database_url: String, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let directory = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    result = directory.listen_once(&database_url) => {
                        if let Err(e) = result {
                            tracing::warn!(error = %e, "tenant change listener lost its connection; retrying");
                        }
                    }
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        })
    }

    async fn listen_once(&self, database_url: &str) -> Result<(), DbError> {
        let (client, mut connection) = pg_config(database_url)?.connect(NoTls).await?;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(n)) => {
                        if tx.send(n.payload().to_string()).is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "listener connection ended");
                        break;
                    }
                }
            }
        });
        client.batch_execute(&format!("LISTEN {TENANT_CHANGES_CHANNEL}")).await?;
        // Anything may have changed while we were not listening.
        self.invalidate_all();
        while let Some(slug) = rx.recv().await {
            self.invalidate(&slug);
        }
        driver.abort();
        Ok(())
    }
}
