//! Which tenants have work (`platform.tenant_work`): the one list a node
//! reads to know which workers to run, so that start-up and idle cost
//! follow the tenants with work, not every tenant (docs/engine.md).
//!
//! The protocol, for nothing to be forgotten:
//! - Whatever stores new work for a tenant (an execution inserted or
//!   queued again, a changed integration) marks the tenant with [`MARK`]
//!   in the same transaction, after its own write, so by then it holds its
//!   table's `ROW EXCLUSIVE` lock.
//! - A worker that found nothing to do for a while [`retire`]s: it takes
//!   `SHARE` locks on the tenant's `executions` and `integrations` (which
//!   wait for every writer in flight and hold new ones back), then, in a
//!   statement whose snapshot follows the locks, removes the mark only if
//!   the tenant has no unfinished execution and no enabled schedule or
//!   queue trigger. A writer that committed before sees its work counted;
//!   one that comes after marks the tenant again.
//! - Marking an already marked tenant is an index probe that writes
//!   nothing (`ON CONFLICT DO NOTHING`).

use uuid::Uuid;

use super::{SchemaName, TenantDb, TenantTx};
use crate::database::DbError;

/// Mark tenant `$1` as having work; after the transaction's own writes.
pub const MARK: &str = "INSERT INTO platform.tenant_work (tenant_id) VALUES ($1) ON CONFLICT (tenant_id) DO NOTHING";

/// Mark `tenant` in `tx`, after the writes that stored its new work.
pub async fn mark(tx: &mut TenantTx, tenant: Uuid) -> Result<(), DbError> {
    tx.execute(MARK, &[&tenant]).await?;
    Ok(())
}

/// The enabled integrations with a schedule or queue trigger at their
/// current version (`i`, `v`: what keeps a tenant's worker running without
/// executions), as a `FROM … WHERE …` to select from.
pub const STANDING_TRIGGERS: &str = "FROM @tenant.integrations i \
     JOIN @tenant.integration_versions v ON v.integration = i.name AND v.version = i.current_version \
     WHERE i.enabled AND EXISTS (SELECT 1 FROM jsonb_array_elements(v.definition -> 'spec' -> 'triggers') t \
                                 WHERE t ? 'schedule' OR t ? 'queue')";

/// Remove `tenant`'s mark if it has no work; `true` when it has none.
pub async fn retire(db: &TenantDb, tenant: Uuid, schema: &SchemaName) -> Result<bool, DbError> {
    static RETIRE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "WITH idle AS (SELECT NOT EXISTS (SELECT 1 FROM @tenant.executions WHERE state IN ('queued', 'running')) \
                           AND NOT EXISTS (SELECT 1 {STANDING_TRIGGERS}) AS yes), \
             gone AS (DELETE FROM platform.tenant_work w WHERE w.tenant_id = $1 AND (SELECT yes FROM idle)) \
             SELECT yes FROM idle"
        )
    });
    let mut tx = db.begin_in_schema(schema).await?;
    // A writer holding its lock long (a large apply) makes this try again later, not wait.
    tx.execute("SET LOCAL lock_timeout = '1s'", &[]).await?;
    tx.execute("LOCK TABLE @tenant.executions, @tenant.integrations IN SHARE MODE", &[]).await?;
    let idle: bool = tx.query_one(&RETIRE, &[&tenant]).await?.get(0);
    tx.commit().await?;
    Ok(idle)
}
