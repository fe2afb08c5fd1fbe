//! Starts a tenant's worker makes itself: a schedule's tick, a queue
//! message, a `call` step's child. Each returns what it started to the
//! worker (through its `TriggerStore` or `ExecutionStore`), which runs it:
//! no wake-up is needed.
//!
//! Over the tenant's `stored_executions`, a tick or a message starts
//! nothing and says so (it is logged here; neither fails nor tries again
//! in a loop), and a `call` step fails with the limit's code.

use std::sync::LazyLock;

use tessera_runtime::{
    execution::{CallRequest, CallStart},
    triggers::{Enqueued, Fired, QueueMessage, Tick},
    TenantSpec,
};
use uuid::Uuid;

use super::{insert_sql, Starts};
use crate::{database::DbError, limits::AdmitError, tenancy::SchemaName};

/// Compare-and-set of the schedule's next time, and its execution in the
/// same statement: a racer whose expected time is stale advances no row and
/// so inserts nothing. A null trigger (`$6`) advances without an execution.
static TICK: LazyLock<String> = LazyLock::new(|| {
    let queued = insert_sql(
        "(SELECT $5::uuid, a.integration, NULL::int4, $6::jsonb FROM advanced a WHERE $6::jsonb IS NOT NULL) AS r(id, integration, version, trigger)",
        &[],
        "RETURNING id",
    );
    format!(
        "WITH advanced AS ( \
           UPDATE @tenant.schedules SET next_at = $4 WHERE integration = $1 AND trigger_index = $2 AND next_at = $3 \
           RETURNING integration), \
         queued AS ({queued}) \
         SELECT (SELECT count(*) FROM advanced), (SELECT id FROM queued)"
    )
});

static MESSAGE: LazyLock<String> = LazyLock::new(|| {
    insert_sql("(VALUES ($1::uuid, $3::text, NULL::int4, $2::jsonb)) AS r(id, integration, version, trigger)", &[], "RETURNING id")
});

/// A redelivered message (same message id) finds its row here.
const REMEMBER_MESSAGE: &str = "INSERT INTO @tenant.queue_messages (integration, message_id, execution_id) \
     VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";

/// A `call` step's child, at the integration's current version; nothing
/// when the child exists already (a racing start of the same call).
static CHILD: LazyLock<String> = LazyLock::new(|| {
    insert_sql(
        "(VALUES ($1::uuid, $6::text, NULL::int4, $2::jsonb, $3::uuid, $4::text, $5::int4)) \
         AS r(id, integration, version, trigger, parent_id, parent_step, parent_attempt)",
        &["parent_id", "parent_step", "parent_attempt"],
        "ON CONFLICT (parent_id, parent_step, parent_attempt) WHERE parent_id IS NOT NULL DO NOTHING RETURNING id",
    )
});

/// The child of a `call` step's attempt, if it has one, and whether the
/// integration to call is enabled (null: there is none).
const CHILD_OF: &str = "SELECT (SELECT id FROM @tenant.executions WHERE parent_id = $1 AND parent_step = $2 AND parent_attempt = $3), \
     (SELECT enabled FROM @tenant.integrations WHERE name = $4)";

impl Starts {
    /// Fire a schedule's tick. Over the limit, the tick still advances
    /// (no execution): the schedule goes on.
    pub async fn tick(&self, tenant: &TenantSpec, schema: &SchemaName, tick: &Tick) -> Result<Fired, DbError> {
        let admitted = tick.trigger.is_none() || self.admitted(tenant, schema, &tick.integration).await?;
        let trigger = tick.trigger.as_ref().filter(|_| admitted);
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
            [&tick.integration, &tick.index, &tick.expected, &tick.next, &Uuid::now_v7(), &trigger];
        let rows = self.db.statement_in_schema(schema, &TICK, &params).await?;
        let (advanced, queued): (i64, Option<Uuid>) = (rows[0].get(0), rows[0].get(1));
        Ok(match (advanced, queued) {
            (0, _) => Fired::Lost,
            (_, Some(id)) => Fired::Queued(id),
            (_, None) => Fired::Advanced,
        })
    }

    /// Start a queue message's execution, once per message id.
    pub async fn message(&self, tenant: &TenantSpec, schema: &SchemaName, message: &QueueMessage) -> Result<Enqueued, DbError> {
        if !self.admitted(tenant, schema, &message.integration).await? {
            return Ok(Enqueued::OverLimit);
        }
        let id = Uuid::now_v7();
        let mut tx = self.db.begin_in_schema(schema).await?;
        if tx.query_opt(&MESSAGE, &[&id, &message.trigger, &message.integration]).await?.is_none() {
            return Ok(Enqueued::NotEnabled);
        }
        if let Some(message_id) = &message.message_id
            && tx.execute(REMEMBER_MESSAGE, &[&message.integration, message_id, &id]).await? == 0
        {
            return Ok(Enqueued::Duplicate); // dropping the transaction rolls the execution back
        }
        tx.commit().await?;
        Ok(Enqueued::Queued(id))
    }

    /// Start the child of a `call` step's attempt, or find the one it
    /// started before (a resumed parent calls the same child again). A new
    /// child counts against `stored_executions` like any execution.
    pub async fn child(&self, tenant: &TenantSpec, schema: &SchemaName, call: &CallRequest) -> Result<CallStart, DbError> {
        let key: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&call.parent, &call.step, &call.attempt];
        let found = self.db.statement_in_schema(schema, CHILD_OF, &[key[0], key[1], key[2], &call.integration]).await?;
        match (found[0].get::<_, Option<Uuid>>(0), found[0].get::<_, Option<bool>>(1)) {
            (Some(child), _) => return Ok(CallStart::Child(child)),
            (None, None) => return Ok(CallStart::Unknown),
            (None, Some(false)) => return Ok(CallStart::Disabled),
            (None, Some(true)) => {}
        }
        match self.admit(tenant.id, schema).await {
            Ok(()) => {}
            Err(AdmitError::Limit(e)) => return Ok(CallStart::OverLimit(e)),
            Err(AdmitError::Db(e)) => return Err(e),
        }
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
            [&Uuid::now_v7(), &call.trigger, &call.parent, &call.step, &call.attempt, &call.integration];
        if let Some(row) = self.db.statement_in_schema(schema, &CHILD, &params).await?.first() {
            return Ok(CallStart::Child(row.get(0)));
        }
        // Inserted meanwhile by a racing start of the same call; none only
        // when the integration was disabled in between.
        let found = self.db.statement_in_schema(schema, CHILD_OF, &[key[0], key[1], key[2], &call.integration]).await?;
        Ok(found[0].get::<_, Option<Uuid>>(0).map_or(CallStart::Disabled, CallStart::Child))
    }

    /// May a trigger of the worker start one more execution? One that may
    /// not is logged, and starts nothing.
    async fn admitted(&self, tenant: &TenantSpec, schema: &SchemaName, integration: &str) -> Result<bool, DbError> {
        match self.admit(tenant.id, schema).await {
            Ok(()) => Ok(true),
            Err(AdmitError::Limit(e)) => {
                tracing::warn!(tenant = %tenant.slug, integration, code = e.code, "{e}; the trigger starts no execution");
                Ok(false)
            }
            Err(AdmitError::Db(e)) => Err(e),
        }
    }
}
