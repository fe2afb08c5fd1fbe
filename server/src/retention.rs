//! Retention: deleting finished executions (and, by cascade, their step
//! checkpoints) that their integration's `retention` no longer keeps:
//! older than `days` (default `runtime.retention_days`), or beyond the
//! newest `executions`. Queued and running executions are never deleted.
//!
//! A sweeper task per node runs every `runtime.retention_sweep_secs` over
//! the active tenants. Every statement deletes at most `BATCH` rows in its
//! own transaction, so a sweep never holds many locks, nor for long.

use std::time::Duration;

use serde_json::Value;
use tessera_runtime::definition::Retention;
use tokio_util::sync::CancellationToken;

use crate::{
    config::RuntimeConfig,
    database::DbError,
    tenancy::{Tenant, TenantDb, TenantDirectory},
};

/// Rows deleted by one statement.
const BATCH: i64 = 1_000;
/// Statements per integration and rule in one sweep; what is left waits
/// for the next sweep, so one huge backlog cannot occupy the sweeper.
const MAX_BATCHES: usize = 100;

const BY_AGE: &str = "DELETE FROM @tenant.executions WHERE state IN ('succeeded', 'failed', 'cancelled') AND id IN (\
     SELECT id FROM @tenant.executions WHERE integration = $1 AND state IN ('succeeded', 'failed', 'cancelled') \
     AND created_at < now() - make_interval(days => $2) LIMIT $3)";

/// The state is checked again on the row deleted: a retry may have made a
/// failed execution queued since the subquery read it.
const BEYOND_NEWEST: &str = "DELETE FROM @tenant.executions WHERE state IN ('succeeded', 'failed', 'cancelled') AND id IN (\
     SELECT id FROM @tenant.executions WHERE integration = $1 AND state IN ('succeeded', 'failed', 'cancelled') \
     ORDER BY id DESC OFFSET $2 LIMIT $3)";

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    pub tenants: usize,
    pub deleted: u64,
}

/// A node's retention sweeps, over the active tenants of the directory.
#[derive(Clone)]
pub struct Sweeper {
    directory: TenantDirectory,
    db: TenantDb,
    /// `runtime.retention_days`; `None` (0): kept until a rule says otherwise.
    default_days: Option<u32>,
    /// `runtime.retention_sweep_secs`; 0: no sweeper task.
    every_secs: u64,
}

impl Sweeper {
    pub fn new(directory: TenantDirectory, db: TenantDb, runtime: &RuntimeConfig) -> Self {
        let default_days = Some(runtime.retention_days).filter(|d| *d > 0);
        Self { directory, db, default_days, every_secs: runtime.retention_sweep_secs }
    }

    /// Sweep every active tenant once. A tenant that fails (its schema not
    /// migrated yet, say) is logged and skipped.
    pub async fn sweep(&self) -> Result<SweepReport, DbError> {
        let mut report = SweepReport::default();
        for tenant in self.directory.list_active().await? {
            match sweep_tenant(&self.db, &tenant, self.default_days).await {
                Ok(deleted) => {
                    report.tenants += 1;
                    report.deleted += deleted;
                    if deleted > 0 {
                        tracing::info!(tenant = %tenant.slug, deleted, "old executions deleted");
                    }
                }
                Err(e) => tracing::warn!(tenant = %tenant.slug, error = %e, "cannot sweep old executions"),
            }
        }
        Ok(report)
    }

    /// The node's sweeper: one sweep every `runtime.retention_sweep_secs`
    /// (none when 0), until shutdown.
    pub fn spawn(self, shutdown: CancellationToken) -> Option<tokio::task::JoinHandle<()>> {
        if self.every_secs == 0 {
            return None;
        }
        Some(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(self.every_secs)) => {}
                }
                // A sweep cut short by shutdown only rolls back its current batch.
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    result = self.sweep() => if let Err(e) = result {
                        tracing::warn!(error = %e, "retention sweep failed; trying again next time");
                    },
                }
            }
        }))
    }
}

/// Apply each integration's retention (its current version's) in one tenant.
pub async fn sweep_tenant(db: &TenantDb, tenant: &Tenant, default_days: Option<u32>) -> Result<u64, DbError> {
    let sql = "SELECT i.name, v.definition -> 'spec' -> 'retention' FROM @tenant.integrations i \
               JOIN @tenant.integration_versions v ON v.integration = i.name AND v.version = i.current_version";
    let mut deleted = 0;
    for row in db.statement(tenant, sql, &[]).await? {
        let (name, retention): (String, Option<Value>) = (row.get(0), row.get(1));
        let retention: Retention = retention.and_then(|v| serde_json::from_value(v).ok()).unwrap_or(Retention { days: None, executions: None });
        if let Some(days) = retention.days.map(|d| d.get()).or(default_days) {
            let days = i32::try_from(days).unwrap_or(i32::MAX);
            deleted += in_batches(db, tenant, BY_AGE, &name, &days).await?;
        }
        if let Some(keep) = retention.executions {
            deleted += in_batches(db, tenant, BEYOND_NEWEST, &name, &i64::from(keep.get())).await?;
        }
    }
    Ok(deleted)
}

/// Run a bounded delete until it deletes less than a batch.
async fn in_batches(
    db: &TenantDb,
    tenant: &Tenant,
    sql: &str,
    integration: &str,
    limit: &(dyn tokio_postgres::types::ToSql + Sync),
) -> Result<u64, DbError> {
    let mut deleted = 0;
    for _ in 0..MAX_BATCHES {
        let mut tx = db.begin(tenant).await?;
        let n = tx.execute(sql, &[&integration, limit, &BATCH]).await?;
        tx.commit().await?;
        deleted += n;
        if n < BATCH as u64 {
            break;
        }
    }
    Ok(deleted)
}
