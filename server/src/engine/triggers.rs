//! The runtime's [`TriggerStore`] over the tenant-scoped database handle
//! (schedules in the tenant's schema; the executions of ticks and queue
//! messages start through [`Starts`]). What tells a tenant's worker to
//! re-read its triggers after a committed change is `resources::changes`.

use serde_json::Value;
use tessera_runtime::{
    execution::{StoreError, StoreFuture},
    triggers::{ActiveIntegration, Enqueued, Fired, QueueMessage, StoredSchedule, Tick, WantedSchedule},
    TenantSpec, TriggerStore,
};

use crate::{
    database::DbError,
    engine::executions::{schema, store_error},
    starts::Starts,
    tenancy::{SchemaName, TenantDb},
};

pub struct PgTriggerStore {
    db: TenantDb,
    /// Where ticks and queue messages start their executions.
    starts: Starts,
}

impl PgTriggerStore {
    pub fn new(db: TenantDb, starts: Starts) -> Self {
        Self { db, starts }
    }
}

static ACTIVE: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("SELECT i.name, v.definition {}", crate::tenancy::work::STANDING_TRIGGERS));

const DROP_UNWANTED: &str = "DELETE FROM @tenant.schedules s WHERE NOT EXISTS \
     (SELECT 1 FROM unnest($1::text[], $2::int[], $3::text[]) w(integration, idx, spec) \
      WHERE w.integration = s.integration AND w.idx = s.trigger_index AND w.spec = s.spec)";

// An integration deleted meanwhile has no row to refer to: nothing to schedule.
const ADD_MISSING: &str = "INSERT INTO @tenant.schedules (integration, trigger_index, spec, next_at) \
     SELECT w.* FROM unnest($1::text[], $2::int[], $3::text[], $4::timestamptz[]) w(integration, idx, spec, next_at) \
     WHERE EXISTS (SELECT 1 FROM @tenant.integrations i WHERE i.name = w.integration) \
     ON CONFLICT (integration, trigger_index) DO NOTHING";

impl PgTriggerStore {
    async fn sync_in(&self, schema: &SchemaName, wanted: &[WantedSchedule]) -> Result<Vec<StoredSchedule>, DbError> {
        let names: Vec<&str> = wanted.iter().map(|w| w.integration.as_str()).collect();
        let indexes: Vec<i32> = wanted.iter().map(|w| w.index).collect();
        let specs: Vec<&str> = wanted.iter().map(|w| w.spec.as_str()).collect();
        let firsts: Vec<_> = wanted.iter().map(|w| w.first_at).collect();
        let mut tx = self.db.begin_in_schema(schema).await?;
        tx.execute(DROP_UNWANTED, &[&names, &indexes, &specs]).await?;
        tx.execute(ADD_MISSING, &[&names, &indexes, &specs, &firsts]).await?;
        let rows = tx.query("SELECT integration, trigger_index, next_at FROM @tenant.schedules", &[]).await?;
        tx.commit().await?;
        Ok(rows.iter().map(|r| StoredSchedule { integration: r.get(0), index: r.get(1), next_at: r.get(2) }).collect())
    }
}

fn db_error(e: DbError) -> StoreError {
    store_error(e)
}

impl TriggerStore for PgTriggerStore {
    fn active<'a>(&'a self, tenant: &'a TenantSpec) -> StoreFuture<'a, Vec<ActiveIntegration>> {
        Box::pin(async move {
            let rows = self.db.statement_in_schema(&schema(tenant)?, &ACTIVE, &[]).await.map_err(db_error)?;
            Ok(rows.iter().map(|r| ActiveIntegration { name: r.get(0), definition: r.get::<_, Value>(1) }).collect())
        })
    }

    fn sync_schedules<'a>(&'a self, tenant: &'a TenantSpec, wanted: &'a [WantedSchedule]) -> StoreFuture<'a, Vec<StoredSchedule>> {
        Box::pin(async move { self.sync_in(&schema(tenant)?, wanted).await.map_err(db_error) })
    }

    fn fire<'a>(&'a self, tenant: &'a TenantSpec, tick: &'a Tick) -> StoreFuture<'a, Fired> {
        Box::pin(async move { self.starts.tick(tenant, &schema(tenant)?, tick).await.map_err(db_error) })
    }

    fn enqueue_message<'a>(&'a self, tenant: &'a TenantSpec, message: &'a QueueMessage) -> StoreFuture<'a, Enqueued> {
        Box::pin(async move { self.starts.message(tenant, &schema(tenant)?, message).await.map_err(db_error) })
    }
}
