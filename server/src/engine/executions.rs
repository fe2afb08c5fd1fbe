//! The runtime's [`ExecutionStore`] over the tenant-scoped database handle:
//! executions and their step checkpoints live in the tenant's schema, so a
//! worker can only ever touch its own tenant's executions.
//!
//! Claims lock the execution row with `FOR UPDATE SKIP LOCKED`, so two
//! claims racing for one execution (a wake-up and a worker's start-up scan)
//! never both win; and every write is fenced by the tenant's lease
//! ([`Fence`]), so a node that lost the tenant writes nothing more.

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock, PoisonError, RwLock},
};

use serde_json::Value;
use tessera_runtime::{
    execution::{CallRequest, CallStart, Claimed, Ended, Outcome, StepRecord, StoreError, StoreFuture},
    Connections, ExecutionStore, OpenError, OpenFuture, TenantSpec,
};
use uuid::Uuid;

use super::endings::Endings;
use crate::{
    database::DbError,
    resources::{connections, cache::ResourceCache, ResourceError},
    sealing::KeyRing,
    starts::Starts,
    cluster::WRITE_LOCK,
    tenancy::{Flush, SchemaName, TenantDb, TenantTx},
};

pub struct PgExecutionStore {
    db: TenantDb,
    fence: Fence,
    /// Where `call` steps start their children.
    starts: Starts,
    /// Told of every end committed here.
    endings: Endings,
}

impl PgExecutionStore {
    pub fn new(db: TenantDb, fence: Fence, starts: Starts, endings: Endings) -> Self {
        Self { db, fence, starts, endings }
    }

    pub(crate) fn endings(&self) -> &Endings {
        &self.endings
    }

    pub(crate) fn db(&self) -> &TenantDb {
        &self.db
    }

    pub(crate) fn fence(&self) -> &Fence {
        &self.fence
    }
}

/// This node and the tenant leases it holds (tenant → epoch), kept up to
/// date by the cluster round: the fencing token of every write a worker
/// makes (docs/clustering.md).
#[derive(Clone)]
pub struct Fence {
    pub node: Uuid,
    pub held: Arc<RwLock<HashMap<Uuid, i64>>>,
    /// When a claim counts a crash, and how many fail an execution.
    pub crashes: CrashLimit,
}

/// Poison pills (docs/engine.md): a claim of a `running` execution whose
/// last claimer is another node, one that is gone (stopped, or silent for
/// half the node timeout: a live node that handed the tenant over still
/// beats every heartbeat interval), counts a crash. The claim that counts
/// the `max`-th fails it with `node_crashed` instead (`max` 0: never).
#[derive(Debug, Clone, Copy)]
pub struct CrashLimit {
    pub max: i32,
    pub silent_secs: f64,
}

/// The configuration's defaults: 3 crashes, a 6 s node timeout.
impl Default for CrashLimit {
    fn default() -> Self {
        Self::new(3, std::time::Duration::from_secs(6))
    }
}

impl CrashLimit {
    pub fn new(max: u32, node_timeout: std::time::Duration) -> Self {
        Self { max: i32::try_from(max).unwrap_or(i32::MAX), silent_secs: node_timeout.as_secs_f64() / 2.0 }
    }
}

/// The claim's crash accounting, shared by the single and the batched
/// claim: `picked` selects (and locks) the rows to claim with `crashed`
/// (this claim resumes one whose node died under it) and `failing` (that
/// crash is the last one allowed). Parameters: `$node`, `$silent`, `$max`.
pub(crate) fn crash_columns(node: &str, silent: &str, max: &str) -> String {
    let crashed = format!(
        "(x.state = 'running' AND x.claimed_by IS NOT NULL AND x.claimed_by <> {node} \
         AND NOT EXISTS (SELECT 1 FROM platform.nodes n WHERE n.id = x.claimed_by AND n.state <> 'stopped' \
           AND n.heartbeat_at > now() - make_interval(secs => {silent})))"
    );
    format!("{crashed} AS crashed, ({crashed} AND {max} > 0 AND x.crashes + 1 >= {max} AND NOT x.cancel_requested) AS failing")
}

/// The claim's `SET` for the columns of [`crash_columns`]; `p` is `picked`.
pub(crate) fn crash_updates(node: &str) -> String {
    format!(
        "claimed_by = {node}, crashes = e.crashes + p.crashed::int, \
         error = CASE WHEN p.failing THEN jsonb_build_object('code', 'node_crashed', 'message', \
           format('its node stopped while it ran, %s times: it is failed instead of resumed again', e.crashes + 1)) \
           ELSE e.error END"
    )
}

/// Whether this node still holds the tenant's lease at its epoch. Checked
/// after taking [`WRITE_LOCK`] (shared, until the write commits), so a
/// takeover (which takes it exclusively before it changes the epoch) waits
/// for the write, and every write after the takeover fails here.
const FENCE: &str = "SELECT 1 FROM platform.tenant_leases \
     WHERE tenant_id = $1 AND node_id = $2 AND epoch = $3 AND expires_at > now()";

impl Fence {
    /// A transaction in `tenant`'s schema that may write for its worker:
    /// this node holds the tenant's lease, at the epoch it was given.
    pub(crate) async fn begin(&self, db: &TenantDb, tenant: &TenantSpec) -> Result<TenantTx, StoreError> {
        let epoch = self.epoch(tenant)?;
        let mut tx = db.begin_in_schema(&schema(tenant)?).await.map_err(store_error)?;
        tx.query(WRITE_LOCK, &[&tenant.id]).await.map_err(store_error)?;
        if tx.query_opt(FENCE, &[&tenant.id, &self.node, &epoch]).await.map_err(store_error)?.is_none() {
            return Err(store_error(StoreFault::LeaseLost(tenant.slug.clone())));
        }
        Ok(tx)
    }
}

/// The lease a write must still hold: this node, at this epoch.
pub(crate) struct WriteLease {
    pub node: Uuid,
    pub epoch: i64,
}

impl Fence {
    /// The epoch of `tenant`'s lease as this node last took or renewed it.
    fn epoch(&self, tenant: &TenantSpec) -> Result<i64, StoreError> {
        let epoch = self.held.read().unwrap_or_else(PoisonError::into_inner).get(&tenant.id).copied();
        epoch.ok_or_else(|| self.lost(tenant))
    }

    /// What a single-statement write checks in its `fence` CTE.
    pub(crate) fn write_lease(&self, tenant: &TenantSpec) -> Result<WriteLease, StoreError> {
        Ok(WriteLease { node: self.node, epoch: self.epoch(tenant)? })
    }

    pub(crate) fn lost(&self, tenant: &TenantSpec) -> StoreError {
        store_error(StoreFault::LeaseLost(tenant.slug.clone()))
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreFault {
    #[error("tenant {0} has no valid schema name")]
    Schema(String),
    /// The worker's writes stop: another node owns the tenant now.
    #[error("this node no longer holds the lease of tenant {0}")]
    LeaseLost(String),
    #[error("a claimed execution's checkpoints do not read back: {0}")]
    Decode(serde_json::Error),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Did this write fail because the node no longer holds the tenant's lease?
pub(crate) fn is_lease_lost(e: &StoreError) -> bool {
    matches!(e.0.downcast_ref::<StoreFault>(), Some(StoreFault::LeaseLost(_)))
}

pub(crate) fn store_error(e: impl Into<StoreFault>) -> StoreError {
    StoreError(Box::new(e.into()))
}

pub(crate) fn schema(tenant: &TenantSpec) -> Result<SchemaName, StoreError> {
    SchemaName::from_stored(tenant.schema.clone()).ok_or_else(|| store_error(StoreFault::Schema(tenant.slug.clone())))
}

/// A claim honours a requested cancel (one that raced a restart, or was
/// asked while no worker ran it): the execution ends `cancelled` instead.
///
/// One statement (after [`WRITE_LOCK`], in the same round trip), so one
/// commit: the fence (this node holds the tenant's lease at `$4`), the
/// state change, and what running the execution needs (its
/// version's definition, the outputs of its finished steps, the tenant's
/// variables). The first column says whether the fence held: without it no
/// row is updated. A claim costs what a checkpoint does, not six round trips.
static CLAIM: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH fence AS (SELECT 1 FROM platform.tenant_leases \
           WHERE tenant_id = $2 AND node_id = $3 AND epoch = $4 AND expires_at > now()), \
         picked AS (SELECT x.id, {crash} FROM @tenant.executions x \
           WHERE x.id = $1 AND x.state IN ('queued', 'running') FOR UPDATE OF x SKIP LOCKED), \
         claimed AS (UPDATE @tenant.executions e SET \
           state = CASE WHEN e.cancel_requested THEN 'cancelled' WHEN p.failing THEN 'failed' ELSE 'running' END, \
           finished_at = CASE WHEN e.cancel_requested OR p.failing THEN now() END, \
           started_at = coalesce(e.started_at, now()), {updates} \
           FROM picked p WHERE e.id = p.id AND EXISTS (SELECT 1 FROM fence) \
           RETURNING e.integration, e.version, e.trigger, e.state) \
         {CLAIM_ANSWER}",
        crash = crash_columns("$3", "$5", "$6"),
        updates = crash_updates("$3"),
    )
});

const CLAIM_ANSWER: &str = "SELECT EXISTS (SELECT 1 FROM fence), c.integration, c.version, c.trigger, c.state, v.definition, \
       (SELECT coalesce(jsonb_agg(jsonb_build_array(s.path, s.output)), '[]') FROM @tenant.execution_steps s \
         WHERE s.execution_id = $1 AND s.state = 'succeeded'), \
       (SELECT coalesce(jsonb_object_agg(name, value), '{}') FROM @tenant.variables) \
     FROM (SELECT 1) one LEFT JOIN claimed c ON true \
     LEFT JOIN @tenant.integration_versions v ON v.integration = c.integration AND v.version = c.version";

const CANCELLED: &str = "UPDATE @tenant.executions SET state = 'cancelled', cancel_requested = true, finished_at = now() \
     WHERE id = $1 AND state IN ('queued', 'running')";

const CHECKPOINT: &str = "INSERT INTO @tenant.execution_steps \
     (execution_id, path, state, attempt, input, output, error, started_at, finished_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
     ON CONFLICT (execution_id, path) DO UPDATE SET state = EXCLUDED.state, attempt = EXCLUDED.attempt, \
     input = EXCLUDED.input, output = EXCLUDED.output, error = EXCLUDED.error, \
     started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at";

impl PgExecutionStore {
    async fn claim_in(&self, tenant: &TenantSpec, id: Uuid) -> Result<Option<Claimed>, StoreError> {
        let epoch = self.fence.epoch(tenant)?;
        let schema = schema(tenant)?;
        // Not flushed: a claim lost in a crash leaves the execution unfinished,
        // to be claimed again, and its first checkpoint flushes it anyway.
        let crashes = &self.fence.crashes;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
            [&id, &tenant.id, &self.fence.node, &epoch, &crashes.silent_secs, &crashes.max];
        let lock: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&tenant.id];
        let rows = self.db.locked_write_in_schema(&schema, (WRITE_LOCK, &lock), &CLAIM, &params, Flush::Later).await.map_err(store_error)?;
        let row = rows.first().ok_or_else(|| store_error(DbError::NotExactlyOne))?;
        if !row.get::<_, bool>(0) {
            return Err(store_error(StoreFault::LeaseLost(tenant.slug.clone())));
        }
        let Some(state) = row.get::<_, Option<&str>>(4) else { return Ok(None) }; // finished, or claimed elsewhere
        if state == "cancelled" {
            tracing::info!(schema = %schema.as_str(), execution_id = %id, "execution cancelled at its claim");
            return Ok(None);
        }
        if state == "failed" {
            tracing::warn!(schema = %schema.as_str(), execution_id = %id, "execution failed at its claim: node_crashed");
            return Ok(None);
        }
        let done: Vec<(String, Value)> = serde_json::from_value(row.get(6)).map_err(|e| store_error(StoreFault::Decode(e)))?;
        let Value::Object(vars) = row.get(7) else { return Err(store_error(DbError::NotExactlyOne)) };
        Ok(Some(Claimed { integration: row.get(1), version: row.get(2), trigger: row.get(3), definition: row.get(5), vars, done }))
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

fn to_json<T: serde::Serialize>(value: &Option<T>) -> Option<Value> {
    value.as_ref().map(|v| serde_json::to_value(v).expect("records serialise to JSON"))
}

/// An outcome as the `state`, `output` and `error` columns of its execution.
pub(crate) fn outcome_columns(outcome: &Outcome) -> (&'static str, Option<Value>, Option<Value>) {
    match outcome {
        Outcome::Succeeded(output) => (outcome_state(outcome), Some(output.clone()), None),
        Outcome::Failed(failure) => (outcome_state(outcome), None, to_json(&Some(failure))),
    }
}

/// The `state` column of an outcome.
pub(crate) fn outcome_state(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Succeeded(_) => "succeeded",
        Outcome::Failed(_) => "failed",
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
        Box::pin(self.claim_in(tenant, id))
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
                       WHERE id = $1 AND finished_at IS NULL";
            let mut tx = self.fence.begin(&self.db, tenant).await?;
            tx.execute(sql, &[&id, &state, &output, &error]).await.map_err(store_error)?;
            tx.commit().await.map_err(store_error)?;
            self.endings.ended(id);
            Ok(())
        })
    }

    fn cancelled<'a>(&'a self, tenant: &'a TenantSpec, id: Uuid) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.db.statement_in_schema(&schema(tenant)?, CANCELLED, &[&id]).await.map_err(store_error)?;
            self.endings.ended(id);
            Ok(())
        })
    }

    fn start_call<'a>(&'a self, tenant: &'a TenantSpec, call: &'a CallRequest) -> StoreFuture<'a, CallStart> {
        Box::pin(async move { self.starts.child(tenant, &schema(tenant)?, call).await.map_err(store_error) })
    }

    fn ended<'a>(&'a self, tenant: &'a TenantSpec, id: Uuid) -> StoreFuture<'a, Option<Ended>> {
        Box::pin(async move { self.ended_in(&schema(tenant)?, id).await.map_err(store_error) })
    }

    fn retire<'a>(&'a self, tenant: &'a TenantSpec) -> StoreFuture<'a, bool> {
        Box::pin(async move { crate::tenancy::work::retire(&self.db, tenant.id, &schema(tenant)?).await.map_err(store_error) })
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
    hot: ResourceCache,
}

impl PgConnections {
    pub fn new(db: TenantDb, keys: Arc<KeyRing>, hot: ResourceCache) -> Self {
        Self { db, keys, hot }
    }
}

impl Connections for PgConnections {
    fn open<'a>(&'a self, tenant: &'a TenantSpec, name: &'a str) -> OpenFuture<'a> {
        Box::pin(async move {
            if let Some(spec) = self.hot.connection(tenant.id, name) {
                return Ok(Some(spec));
            }
            let spec = match connections::open_in(&self.db, &self.keys, tenant.id, &schema(tenant)?, name).await {
                Ok(opened) => opened.map(|c| c.spec),
                // The database failed: the step waits for it rather than fail.
                Err(e @ ResourceError::Db(_)) => return Err(OpenError::Store(StoreError(Box::new(e)))),
                Err(e) => {
                    tracing::error!(tenant = %tenant.slug, connection = name, error = %e, "a stored connection cannot be opened");
                    return Err(OpenError::Unusable("its stored secret cannot be read on this node".into()));
                }
            };
            if let Some(spec) = &spec {
                self.hot.keep_connection(tenant.id, name, spec.clone());
            }
            Ok(spec)
        })
    }
}
