//! The runtime's [`TriggerStore`] over the tenant-scoped database handle
//! (schedules, ticks, queue messages in the tenant's schema). What tells a
//! tenant's worker to re-read its triggers after a committed change is
//! `resources::changes`.

use serde_json::Value;
use tessera_runtime::{
    execution::{StoreError, StoreFuture},
    triggers::{ActiveIntegration, Enqueued, Fired, QueueMessage, StoredSchedule, Tick, WantedSchedule},
    TenantSpec, TriggerStore,
};
use uuid::Uuid;

use crate::{
    database::DbError,
    limits::{AdmitError, LimitBook},
    execution_store::{schema, store_error},
    tenancy::{SchemaName, TenantDb},
};

pub struct PgTriggerStore {
    db: TenantDb,
    /// Holds new executions to each tenant's `stored_executions`; `None`: no limit.
    limits: Option<LimitBook>,
}

impl PgTriggerStore {
    pub fn new(db: TenantDb) -> Self {
        Self { db, limits: None }
    }

    pub fn limited_by(self, limits: LimitBook) -> Self {
        Self { limits: Some(limits), ..self }
    }

    /// May `tenant` store one more execution? A trigger that may not logs
    /// it and moves on: it neither fails nor tries again in a loop.
    async fn admit(&self, tenant: &TenantSpec, schema: &SchemaName, integration: &str) -> Result<bool, StoreError> {
        let Some(book) = &self.limits else { return Ok(true) };
        // Read from the book, not the spec: a running queue consumer keeps the spec it started with.
        let limit = book.of(tenant.id).await.map_err(db_error)?.stored_executions;
        match book.admit_stored(&self.db, tenant.id, schema, limit).await {
            Ok(()) => Ok(true),
            Err(AdmitError::Limit(e)) => {
                tracing::warn!(tenant = %tenant.slug, integration, code = e.code, "{e}; the trigger starts no execution");
                Ok(false)
            }
            Err(AdmitError::Db(e)) => Err(db_error(e)),
        }
    }
}

const ACTIVE: &str = "SELECT i.name, v.definition FROM @tenant.integrations i \
     JOIN @tenant.integration_versions v ON v.integration = i.name AND v.version = i.current_version \
     WHERE i.enabled AND EXISTS (SELECT 1 FROM jsonb_array_elements(v.definition -> 'spec' -> 'triggers') t \
                                 WHERE t ? 'schedule' OR t ? 'queue')";

const DROP_UNWANTED: &str = "DELETE FROM @tenant.schedules s WHERE NOT EXISTS \
     (SELECT 1 FROM unnest($1::text[], $2::int[], $3::text[]) w(integration, idx, spec) \
      WHERE w.integration = s.integration AND w.idx = s.trigger_index AND w.spec = s.spec)";

// An integration deleted meanwhile has no row to refer to: nothing to schedule.
const ADD_MISSING: &str = "INSERT INTO @tenant.schedules (integration, trigger_index, spec, next_at) \
     SELECT w.* FROM unnest($1::text[], $2::int[], $3::text[], $4::timestamptz[]) w(integration, idx, spec, next_at) \
     WHERE EXISTS (SELECT 1 FROM @tenant.integrations i WHERE i.name = w.integration) \
     ON CONFLICT (integration, trigger_index) DO NOTHING";

/// Compare-and-set of the next time, and the execution in the same
/// statement: a racer whose expected time is stale updates no row and so
/// inserts nothing.
const FIRE: &str = "WITH advanced AS ( \
       UPDATE @tenant.schedules SET next_at = $4 WHERE integration = $1 AND trigger_index = $2 AND next_at = $3 \
       RETURNING integration), \
     queued AS ( \
       INSERT INTO @tenant.executions (id, integration, version, trigger) \
       SELECT $5, i.name, i.current_version, $6 FROM @tenant.integrations i JOIN advanced a ON a.integration = i.name \
       WHERE i.enabled AND $6::jsonb IS NOT NULL RETURNING id) \
     SELECT (SELECT count(*) FROM advanced), (SELECT id FROM queued)";

const ENQUEUE: &str = "INSERT INTO @tenant.executions (id, integration, version, trigger) \
     SELECT $1, name, current_version, $2 FROM @tenant.integrations WHERE name = $3 AND enabled RETURNING id";

const REMEMBER_MESSAGE: &str = "INSERT INTO @tenant.queue_messages (integration, message_id, execution_id) \
     VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";

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

    async fn enqueue_in(&self, schema: &SchemaName, message: &QueueMessage) -> Result<Enqueued, DbError> {
        let id = Uuid::now_v7();
        let mut tx = self.db.begin_in_schema(schema).await?;
        if tx.query_opt(ENQUEUE, &[&id, &message.trigger, &message.integration]).await?.is_none() {
            return Ok(Enqueued::NotEnabled);
        }
        if let Some(message_id) = &message.message_id
            && tx.execute(REMEMBER_MESSAGE, &[&message.integration, message_id, &id]).await? == 0 {
                return Ok(Enqueued::Duplicate); // dropping the transaction rolls the execution back
            }
        tx.commit().await?;
        Ok(Enqueued::Queued(id))
    }
}

fn db_error(e: DbError) -> StoreError {
    store_error(e)
}

impl TriggerStore for PgTriggerStore {
    fn active<'a>(&'a self, tenant: &'a TenantSpec) -> StoreFuture<'a, Vec<ActiveIntegration>> {
        Box::pin(async move {
            let rows = self.db.statement_in_schema(&schema(tenant)?, ACTIVE, &[]).await.map_err(db_error)?;
            Ok(rows.iter().map(|r| ActiveIntegration { name: r.get(0), definition: r.get::<_, Value>(1) }).collect())
        })
    }

    fn sync_schedules<'a>(&'a self, tenant: &'a TenantSpec, wanted: &'a [WantedSchedule]) -> StoreFuture<'a, Vec<StoredSchedule>> {
        Box::pin(async move { self.sync_in(&schema(tenant)?, wanted).await.map_err(db_error) })
    }

    fn fire<'a>(&'a self, tenant: &'a TenantSpec, tick: &'a Tick) -> StoreFuture<'a, Fired> {
        Box::pin(async move {
            let schema = schema(tenant)?;
            // Over the limit, the tick still advances (no execution): the schedule goes on.
            let admitted = tick.trigger.is_none() || self.admit(tenant, &schema, &tick.integration).await?;
            let trigger = tick.trigger.as_ref().filter(|_| admitted);
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
                [&tick.integration, &tick.index, &tick.expected, &tick.next, &Uuid::now_v7(), &trigger];
            let rows = self.db.statement_in_schema(&schema, FIRE, &params).await.map_err(db_error)?;
            let (advanced, queued): (i64, Option<Uuid>) = (rows[0].get(0), rows[0].get(1));
            Ok(match (advanced, queued) {
                (0, _) => Fired::Lost,
                (_, Some(id)) => Fired::Queued(id),
                (_, None) => Fired::Advanced,
            })
        })
    }

    fn enqueue_message<'a>(&'a self, tenant: &'a TenantSpec, message: &'a QueueMessage) -> StoreFuture<'a, Enqueued> {
        Box::pin(async move {
            let schema = schema(tenant)?;
            if !self.admit(tenant, &schema, &message.integration).await? {
                return Ok(Enqueued::OverLimit);
            }
            self.enqueue_in(&schema, message).await.map_err(db_error)
        })
    }
}
