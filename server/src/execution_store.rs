//! The runtime's [`ExecutionStore`] over the tenant-scoped database handle:
//! executions and their step checkpoints live in the tenant's schema, so a
//! worker can only ever touch its own tenant's executions.
//!
//! Claims lock the execution row with `FOR UPDATE SKIP LOCKED`, so two
//! claims racing for one execution (a wake-up and a worker's start-up scan)
//! never both win. Nothing here leases an execution to a node yet: today
//! every node runs every tenant's worker, so only one node should run at a
//! time against one database until clustering gives each tenant one owner.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use serde_json::{Map, Value};
use tessera_runtime::{
    definition::ConnectionSpec,
    execution::{CallRequest, CallStart, Claimed, Ended, Outcome, StepRecord, StoreError, StoreFuture},
    Connections, ExecutionStore, TenantSpec,
};
use uuid::Uuid;

use crate::{
    database::DbError,
    resources::connections,
    sealing::KeyRing,
    tenancy::{SchemaName, TenantDb, TenantTx},
};

pub struct PgExecutionStore {
    db: TenantDb,
    fence: Fence,
}

impl PgExecutionStore {
    pub fn new(db: TenantDb, fence: Fence) -> Self {
        Self { db, fence }
    }
}

/// This node and the tenant leases it holds (tenant → epoch), kept up to
/// date by the cluster round: the fencing token of every write a worker
/// makes (docs/clustering.md).
#[derive(Clone)]
pub struct Fence {
    pub node: Uuid,
    pub held: Arc<RwLock<HashMap<Uuid, i64>>>,
}

/// Holds the tenant's lease row while the write commits, so a takeover
/// (which locks the row `FOR UPDATE` before changing the epoch) waits for
/// it, and fails once the lease moved. `KEY SHARE`, not `SHARE`: the owner's
/// own renewals (a plain `UPDATE` of `expires_at`) never wait for its writes.
const FENCE: &str = "SELECT 1 FROM platform.tenant_leases \
     WHERE tenant_id = $1 AND node_id = $2 AND epoch = $3 AND expires_at > now() FOR KEY SHARE";

impl Fence {
    /// A transaction in `tenant`'s schema that may write for its worker:
    /// this node holds the tenant's lease, at the epoch it was given.
    pub(crate) async fn begin(&self, db: &TenantDb, tenant: &TenantSpec) -> Result<TenantTx, StoreError> {
        let epoch = self.held.read().expect("leases lock").get(&tenant.id).copied();
        let Some(epoch) = epoch else { return Err(store_error(StoreFault::LeaseLost(tenant.slug.clone()))) };
        let mut tx = db.begin_in_schema(&schema(tenant)?).await.map_err(store_error)?;
        if tx.query_opt(FENCE, &[&tenant.id, &self.node, &epoch]).await.map_err(store_error)?.is_none() {
            return Err(store_error(StoreFault::LeaseLost(tenant.slug.clone())));
        }
        Ok(tx)
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreFault {
    #[error("tenant {0} has no valid schema name")]
    Schema(String),
    /// The worker's writes stop: another node owns the tenant now.
    #[error("this node no longer holds the lease of tenant {0}")]
    LeaseLost(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

pub(crate) fn store_error(e: impl Into<StoreFault>) -> StoreError {
    StoreError(Box::new(e.into()))
}

pub(crate) fn schema(tenant: &TenantSpec) -> Result<SchemaName, StoreError> {
    SchemaName::from_stored(tenant.schema.clone()).ok_or_else(|| store_error(StoreFault::Schema(tenant.slug.clone())))
}

/// A claim honours a requested cancel (one that raced a restart, or was
/// asked while no worker ran it): the execution ends `cancelled` instead.
const CLAIM: &str = "UPDATE @tenant.executions e SET \
     state = CASE WHEN e.cancel_requested THEN 'cancelled' ELSE 'running' END, \
     finished_at = CASE WHEN e.cancel_requested THEN now() END, \
     started_at = coalesce(e.started_at, now()) \
     FROM (SELECT id FROM @tenant.executions WHERE id = $1 AND state IN ('queued', 'running') FOR UPDATE SKIP LOCKED) c \
     WHERE e.id = c.id RETURNING e.integration, e.version, e.trigger, e.state";

const CANCELLED: &str = "UPDATE @tenant.executions SET state = 'cancelled', cancel_requested = true, finished_at = now() \
     WHERE id = $1 AND state IN ('queued', 'running')";

const CHECKPOINT: &str = "INSERT INTO @tenant.execution_steps \
     (execution_id, path, state, attempt, input, output, error, started_at, finished_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
     ON CONFLICT (execution_id, path) DO UPDATE SET state = EXCLUDED.state, attempt = EXCLUDED.attempt, \
     input = EXCLUDED.input, output = EXCLUDED.output, error = EXCLUDED.error, \
     started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at";

impl PgExecutionStore {
    async fn claim_in(&self, mut tx: TenantTx, schema: &SchemaName, id: Uuid) -> Result<Option<Claimed>, DbError> {
        let Some(row) = tx.query_opt(CLAIM, &[&id]).await? else { return Ok(None) };
        if row.get::<_, &str>(3) == "cancelled" {
            tx.commit().await?;
            tracing::info!(schema = %schema.as_str(), execution_id = %id, "execution cancelled at its claim");
            return Ok(None);
        }
        let (integration, version, trigger): (String, i32, Value) = (row.get(0), row.get(1), row.get(2));
        let definition_sql = "SELECT definition FROM @tenant.integration_versions WHERE integration = $1 AND version = $2";
        let definition: Value = tx.query_one(definition_sql, &[&integration, &version]).await?.get(0);
        let done = done_steps(&mut tx, id).await?;
        let vars: Map<String, Value> = tx
            .query("SELECT name, value FROM @tenant.variables", &[])
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        tx.commit().await?;
        Ok(Some(Claimed { integration, version, definition, trigger, vars, done }))
    }
}

/// A child of `call` step, looked up by (parent, step, attempt).
const CHILD: &str = "SELECT id FROM @tenant.executions WHERE parent_id = $1 AND parent_step = $2 AND parent_attempt = $3";

/// Created at the integration's current version, unless it is unknown or
/// disabled, or the child exists already (then nothing is inserted).
const NEW_CHILD: &str = "INSERT INTO @tenant.executions (id, integration, version, trigger, parent_id, parent_step, parent_attempt) \
     SELECT $1, name, current_version, $2, $3, $4, $5 FROM @tenant.integrations WHERE name = $6 AND enabled \
     ON CONFLICT (parent_id, parent_step, parent_attempt) WHERE parent_id IS NOT NULL DO NOTHING";

impl PgExecutionStore {
    async fn start_call_in(&self, schema: &SchemaName, call: &CallRequest) -> Result<CallStart, DbError> {
        let mut tx = self.db.begin_in_schema(schema).await?;
        let key: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&call.parent, &call.step, &call.attempt];
        if let Some(row) = tx.query_opt(CHILD, &key).await? {
            return Ok(CallStart::Child(row.get(0))); // a resumed parent: the same child
        }
        let enabled = tx.query_opt("SELECT enabled FROM @tenant.integrations WHERE name = $1", &[&call.integration]).await?;
        match enabled.map(|r| r.get::<_, bool>(0)) {
            None => return Ok(CallStart::Unknown),
            Some(false) => return Ok(CallStart::Disabled),
            Some(true) => {}
        }
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
            [&Uuid::now_v7(), &call.trigger, &call.parent, &call.step, &call.attempt, &call.integration];
        tx.execute(NEW_CHILD, &params).await?;
        let child = tx.query_one(CHILD, &key).await?.get(0);
        tx.commit().await?;
        Ok(CallStart::Child(child))
    }
}

fn ended_from(state: &str, output: Option<Value>, error: Option<Value>) -> Ended {
    if state == "succeeded" {
        return Ended::Succeeded(output.unwrap_or(Value::Null));
    }
    let error = error.unwrap_or(Value::Null);
    let text = |key: &str, default: &str| error.get(key).and_then(Value::as_str).unwrap_or(default).to_string();
    Ended::Failed { code: text("code", state), message: text("message", "the execution did not succeed") }
}

async fn done_steps(tx: &mut TenantTx, id: Uuid) -> Result<Vec<(String, Value)>, DbError> {
    let sql = "SELECT path, output FROM @tenant.execution_steps WHERE execution_id = $1 AND state = 'succeeded'";
    let rows = tx.query(sql, &[&id]).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get::<_, Option<Value>>(1).unwrap_or(Value::Null))).collect())
}

fn to_json<T: serde::Serialize>(value: &Option<T>) -> Option<Value> {
    value.as_ref().map(|v| serde_json::to_value(v).expect("records serialise to JSON"))
}

/// An outcome as the `state`, `output` and `error` columns of its execution.
pub(crate) fn outcome_columns(outcome: &Outcome) -> (&'static str, Option<Value>, Option<Value>) {
    match outcome {
        Outcome::Succeeded(output) => ("succeeded", Some(output.clone()), None),
        Outcome::Failed(failure) => ("failed", None, to_json(&Some(failure))),
    }
}

impl ExecutionStore for PgExecutionStore {
    fn unfinished<'a>(&'a self, tenant: &'a TenantSpec) -> StoreFuture<'a, Vec<Uuid>> {
        Box::pin(async move {
            // Children of `call` steps are resumed by their parent, inline.
            let sql = "SELECT id FROM @tenant.executions WHERE state IN ('queued', 'running') AND parent_id IS NULL ORDER BY id";
            let rows = self.db.statement_in_schema(&schema(tenant)?, sql, &[]).await.map_err(store_error)?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn claim<'a>(&'a self, tenant: &'a TenantSpec, id: Uuid) -> StoreFuture<'a, Option<Claimed>> {
        Box::pin(async move {
            let tx = self.fence.begin(&self.db, tenant).await?;
            self.claim_in(tx, &schema(tenant)?, id).await.map_err(store_error)
        })
    }

    fn checkpoint<'a>(&'a self, tenant: &'a TenantSpec, id: Uuid, step: &'a StepRecord) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let (state, error) = (step.state.as_str(), to_json(&step.error));
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 9] = [
                &id, &step.path, &state, &step.attempt, &step.input, &step.output, &error, &step.started_at, &step.finished_at,
            ];
            let mut tx = self.fence.begin(&self.db, tenant).await?;
            tx.execute(CHECKPOINT, &params).await.map_err(store_error)?;
            tx.commit().await.map_err(store_error)
        })
    }

    fn finish<'a>(&'a self, tenant: &'a TenantSpec, id: Uuid, outcome: &'a Outcome) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let (state, output, error) = outcome_columns(outcome);
            let sql = "UPDATE @tenant.executions SET state = $2, output = $3, error = $4, finished_at = now() \
                       WHERE id = $1 AND state = 'running'";
            let mut tx = self.fence.begin(&self.db, tenant).await?;
            tx.execute(sql, &[&id, &state, &output, &error]).await.map_err(store_error)?;
            tx.commit().await.map_err(store_error)
        })
    }

    fn cancelled<'a>(&'a self, tenant: &'a TenantSpec, id: Uuid) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.db.statement_in_schema(&schema(tenant)?, CANCELLED, &[&id]).await.map_err(store_error)?;
            Ok(())
        })
    }

    fn start_call<'a>(&'a self, tenant: &'a TenantSpec, call: &'a CallRequest) -> StoreFuture<'a, CallStart> {
        Box::pin(async move { self.start_call_in(&schema(tenant)?, call).await.map_err(store_error) })
    }

    fn ended<'a>(&'a self, tenant: &'a TenantSpec, id: Uuid) -> StoreFuture<'a, Option<Ended>> {
        Box::pin(async move { self.ended_in(&schema(tenant)?, id).await.map_err(store_error) })
    }
}

impl PgExecutionStore {
    async fn ended_in(&self, schema: &SchemaName, id: Uuid) -> Result<Option<Ended>, DbError> {
        let sql = "SELECT state, output, error FROM @tenant.executions \
                   WHERE id = $1 AND state IN ('succeeded', 'failed', 'cancelled')";
        let rows = self.db.statement_in_schema(schema, sql, &[&id]).await?;
        Ok(rows.first().map(|r| ended_from(r.get(0), r.get(1), r.get(2))))
    }
}

/// The runtime's [`Connections`]: a tenant's sealed connections, opened
/// with the node's key ring when a step or trigger needs one.
pub struct PgConnections {
    db: TenantDb,
    keys: Arc<KeyRing>,
}

impl PgConnections {
    pub fn new(db: TenantDb, keys: Arc<KeyRing>) -> Self {
        Self { db, keys }
    }
}

impl Connections for PgConnections {
    fn open<'a>(&'a self, tenant: &'a TenantSpec, name: &'a str) -> StoreFuture<'a, Option<ConnectionSpec>> {
        Box::pin(async move {
            let opened = connections::open_in(&self.db, &self.keys, tenant.id, &schema(tenant)?, name).await;
            Ok(opened.map_err(|e| StoreError(Box::new(e)))?.map(|c| c.spec))
        })
    }
}
