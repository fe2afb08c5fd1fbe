//! The batching committer (docs/engine.md, rule 3): owns the node's
//! checkpoint and finish writes, and commits those of all running
//! executions together, one transaction per lane (all the tenants whose
//! home it is) per batch.
//!
//! Why: each checkpoint committed on its own costs a transaction and a WAL
//! flush per step. Here the node's batcher ([`crate::tenancy::batch`]:
//! flush slots, group commit, one transaction per lane) gathers the
//! writes waiting at that moment, and this module supplies the one
//! statement that writes a tenant's group (the lease fence, `INSERT …
//! SELECT FROM unnest(…)` for checkpoints and `UPDATE … FROM unnest(…)`
//! for finishes, as CTEs), so a quiet node adds no delay and a busy one
//! commits more per flush.
//!
//! Durability is unchanged: every caller awaits the commit of its own batch,
//! so a step's checkpoint is still committed before the next step starts.
//! A batch that fails is retried one write at a time through
//! [`PgExecutionStore`], so each caller gets its own result and one bad
//! write cannot fail its neighbours; one that lost the tenant's lease is
//! not retried: every write of it fails the same way. Tenant isolation is
//! unchanged too: each tenant's statement is `@tenant.`-qualified with its
//! own schema and fenced by its own lease, whoever shares its transaction.

use std::{collections::HashMap, sync::{Arc, LazyLock}};

use chrono::{DateTime, Utc};
use serde_json::Value;
use tessera_runtime::{
    execution::{CallRequest, CallStart, Claimed, Ended, Outcome, StepRecord, StoreError, StoreFuture},
    ExecutionStore, TenantSpec,
};
use tokio::sync::oneshot;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::{
    tenancy::batch::{Batcher, TenantBatch},
    cluster::WRITE_LOCK,
    engine::executions::{outcome_columns, Fence, PgExecutionStore},
    database::DbError,
    metrics::Metrics,
    tenancy::{LaneTx, SchemaName, TenantDb},
};

/// Most writes in one batch (all tenants together).
const MAX_BATCH: usize = 512;

/// The runtime's [`ExecutionStore`] with batched checkpoint and finish
/// writes. Claims and listings go straight to the inner store.
pub struct BatchingStore {
    inner: Arc<PgExecutionStore>,
    writes: Batcher<Write>,
}

// Executions started and ended, and steps, are counted here (`Metrics`):
// every claim, checkpoint and finish of the node passes through, once
// committed.

/// One write waiting for its batch, and where its caller awaits the result.
struct Write {
    tenant: TenantSpec,
    schema: SchemaName,
    execution: Uuid,
    kind: WriteKind,
}

enum WriteKind {
    /// Claims ride in the batch too: a claim alone was a transaction per
    /// execution, the largest cost left per execution (docs/performance.md).
    Claim(oneshot::Sender<Result<Option<Claimed>, StoreError>>),
    Checkpoint(StepRecord, oneshot::Sender<Result<(), StoreError>>),
    Finish(Outcome, oneshot::Sender<Result<(), StoreError>>),
}

impl Write {
    /// Answer the caller: `claimed` holds the batch's claims, by execution.
    fn answer(self, result: Result<&mut HashMap<Uuid, Claimed>, StoreError>) {
        match (self.kind, result) {
            (WriteKind::Claim(reply), Ok(claimed)) => drop(reply.send(Ok(claimed.remove(&self.execution)))),
            (WriteKind::Claim(reply), Err(e)) => drop(reply.send(Err(e))),
            (WriteKind::Checkpoint(_, reply) | WriteKind::Finish(_, reply), result) => drop(reply.send(result.map(|_| ()))),
        }
    }

    /// The same write on its own, for when its batch failed.
    async fn alone(self, inner: &PgExecutionStore, metrics: &Metrics) {
        let (tenant, id) = (&self.tenant, self.execution);
        match self.kind {
            WriteKind::Claim(reply) => {
                let claimed = inner.claim(tenant, id).await;
                if let Ok(Some(_)) = claimed {
                    metrics.started(&tenant.slug, 1);
                }
                drop(reply.send(claimed))
            }
            WriteKind::Checkpoint(step, reply) => {
                let written = inner.checkpoint(tenant, id, &step).await;
                if written.is_ok() {
                    count_step(metrics, &step);
                }
                drop(reply.send(written))
            }
            WriteKind::Finish(outcome, reply) => {
                let written = inner.finish(tenant, id, &outcome).await;
                if written.is_ok() {
                    metrics.finished(&tenant.slug, crate::engine::executions::outcome_state(&outcome));
                }
                drop(reply.send(written))
            }
        }
    }
}

/// A recorded step's duration, by its state.
fn count_step(metrics: &Metrics, step: &StepRecord) {
    let took = (step.finished_at - step.started_at).to_std().unwrap_or_default();
    metrics.step(step.state.as_str(), took);
}

impl BatchingStore {
    /// Start the committer task (it ends when the store is dropped).
    /// Every batch is fenced by its tenant's lease, like a single write.
    /// `inner` commits what a failed batch held, one write at a time.
    pub fn start(inner: PgExecutionStore, metrics: Arc<Metrics>) -> Self {
        let inner = Arc::new(inner);
        let statements = Statements { inner: inner.clone(), metrics: metrics.clone() };
        let writes = Batcher::start("batching committer", statements, MAX_BATCH, metrics);
        Self { inner, writes }
    }

    /// Queue a write made by `kind` around its reply, and await the answer.
    async fn submit<T>(
        &self,
        tenant: &TenantSpec,
        execution: Uuid,
        kind: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> WriteKind,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        let schema = crate::engine::executions::schema(tenant)?;
        let write = Write { tenant: tenant.clone(), schema, execution, kind: kind(reply) };
        self.writes.submit(write).await.map_err(|e| StoreError(Box::new(e)))?;
        answer.await.map_err(|_| StoreError(Box::new(crate::tenancy::batch::Stopped("batching committer"))))?
    }
}

impl ExecutionStore for BatchingStore {
    fn unfinished<'a>(&'a self, tenant: &'a TenantSpec) -> StoreFuture<'a, Vec<Uuid>> {
        self.inner.unfinished(tenant)
    }

    fn claim<'a>(&'a self, tenant: &'a TenantSpec, id: Uuid) -> StoreFuture<'a, Option<Claimed>> {
        Box::pin(self.submit(tenant, id, WriteKind::Claim))
    }

    fn checkpoint<'a>(&'a self, tenant: &'a TenantSpec, id: Uuid, step: &'a StepRecord) -> StoreFuture<'a, ()> {
        Box::pin(self.submit(tenant, id, |reply| WriteKind::Checkpoint(step.clone(), reply)))
    }

    /// Queued, not awaited: the batcher takes writes in the order they
    /// came, one batch after another, so the execution's next write (which
    /// is awaited) commits in the same batch as this one or after it.
    fn checkpoint_pure<'a>(&'a self, tenant: &'a TenantSpec, id: Uuid, step: &'a StepRecord) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            let schema = crate::engine::executions::schema(tenant)?;
            let write = Write { tenant: tenant.clone(), schema, execution: id, kind: WriteKind::Checkpoint(step.clone(), reply) };
            self.writes.submit(write).await.map_err(|e| StoreError(Box::new(e)))?;
            let (slug, path) = (tenant.slug.clone(), step.path.clone());
            // Nobody waits for it; a failure (a lost lease fails the next
            // write too) is only logged, and a resume runs the step again.
            tokio::spawn(async move {
                if let Ok(Err(e)) = answer.await {
                    tracing::warn!(tenant = %slug, execution_id = %id, step = %path, error = %e, "a pure step's checkpoint was not written");
                }
            });
            Ok(())
        })
    }

    fn finish<'a>(&'a self, tenant: &'a TenantSpec, id: Uuid, outcome: &'a Outcome) -> StoreFuture<'a, ()> {
        Box::pin(self.submit(tenant, id, |reply| WriteKind::Finish(outcome.clone(), reply)))
    }

    fn cancelled<'a>(&'a self, tenant: &'a TenantSpec, id: Uuid) -> StoreFuture<'a, ()> {
        self.inner.cancelled(tenant, id)
    }

    fn start_call<'a>(&'a self, tenant: &'a TenantSpec, call: &'a CallRequest) -> StoreFuture<'a, CallStart> {
        self.inner.start_call(tenant, call)
    }

    fn ended<'a>(&'a self, tenant: &'a TenantSpec, id: Uuid) -> StoreFuture<'a, Option<Ended>> {
        self.inner.ended(tenant, id)
    }

    fn retire<'a>(&'a self, tenant: &'a TenantSpec) -> StoreFuture<'a, bool> {
        self.inner.retire(tenant)
    }
}

/// The committer's statements, for the batcher.
struct Statements {
    inner: Arc<PgExecutionStore>,
    metrics: Arc<Metrics>,
}

impl TenantBatch for Statements {
    type Request = Write;
    /// The batch statement's rows, or why it wrote nothing (this node does
    /// not hold the tenant's lease).
    type Written = Result<Vec<Row>, StoreError>;

    fn tenant(write: &Write) -> (Uuid, &SchemaName) {
        (write.tenant.id, &write.schema)
    }

    fn db(&self) -> &TenantDb {
        self.inner.db()
    }

    async fn write(&self, tx: &LaneTx, writes: &[Write]) -> Result<Self::Written, DbError> {
        write_together(tx, self.inner.fence(), writes).await
    }

    fn answer(&self, writes: Vec<Write>, written: Self::Written) {
        let (tenant, fence) = (&writes[0].tenant, self.inner.fence());
        let claimed = written.and_then(|rows| match rows.first().map(|r| r.get::<_, bool>(0)) {
            Some(true) => claimed_rows(&rows),
            _ => Err(fence.lost(tenant)),
        });
        match claimed {
            Ok(mut claimed) => {
                let endings = self.inner.endings();
                self.count(tenant, &writes, claimed.len());
                writes.iter().filter(|w| matches!(w.kind, WriteKind::Finish(..))).for_each(|w| endings.ended(w.execution));
                writes.into_iter().for_each(|w| w.answer(Ok(&mut claimed)));
            }
            // Every write of the batch fails the same way.
            Err(e) if crate::engine::executions::is_lease_lost(&e) => {
                let tenant = tenant.clone();
                writes.into_iter().for_each(|w| w.answer(Err(fence.lost(&tenant))));
            }
            Err(e) => {
                let why = e.to_string();
                writes.into_iter().for_each(|w| w.answer(Err(StoreError(why.clone().into()))));
            }
        }
    }

    async fn alone(&self, write: Write) {
        write.alone(&self.inner, &self.metrics).await
    }
}

impl Statements {
    /// A committed batch of `tenant`'s, in the metrics.
    fn count(&self, tenant: &TenantSpec, writes: &[Write], claimed: usize) {
        if claimed > 0 {
            self.metrics.started(&tenant.slug, claimed as u64);
        }
        for write in writes {
            match &write.kind {
                WriteKind::Checkpoint(step, _) => count_step(&self.metrics, step),
                WriteKind::Finish(outcome, _) => self.metrics.finished(&tenant.slug, crate::engine::executions::outcome_state(outcome)),
                WriteKind::Claim(_) => {}
            }
        }
    }
}

/// Which writes a tenant's batch holds: its statement has only their
/// parts. Planning the whole statement cost five times its execution, and
/// with thousands of tenants a tenant's statement is rarely still prepared
/// on its lane, so it is planned at almost every batch; most batches hold
/// one kind of write.
#[derive(Clone, Copy)]
struct Parts {
    checkpoints: bool,
    finishes: bool,
    claims: bool,
}

impl Parts {
    fn index(self) -> usize {
        usize::from(self.checkpoints) | usize::from(self.finishes) << 1 | usize::from(self.claims) << 2
    }
}

/// A tenant's whole batch in one statement (after the lease's write lock,
/// in the same round trip), so one commit: the fence (this node holds the
/// tenant's lease at `$3`; without it nothing is written), the checkpoints
/// (`INSERT … FROM unnest`), the finishes, then the claims, each part only
/// when the batch holds such writes. The first column says whether the
/// fence held; with claims, there is a row per claimed execution (one row
/// with a null id when none was).
///
/// `clock_timestamp()`, not `now()`, for `finished_at`: the statement may
/// start after some of its executions finished, never before. An
/// execution still to finish is told by `finished_at IS NULL` (a cancel
/// sets it), not by `state = 'running'`: that made the planner scan the
/// state index, whose `running` entries pile up (one per execution, until
/// vacuum) much faster than its statistics say, instead of the primary key.
///
/// A claim is the single claim of `engine/executions.rs` over an array: no
/// execution is claimed, checkpointed or finished twice in one batch (its
/// worker awaits each write before the next), so the CTEs never touch the
/// same row. Each version's definition is sent once per batch, and the
/// variables once.
///
/// The statement of each combination of [`Parts`], by [`Parts::index`].
/// Parameters: `$1..$3` the fence, then the checkpoints' nine columns, the
/// finishes' four, the claims' ids and crash limits, each only when present.
static BATCH: LazyLock<Vec<String>> = LazyLock::new(|| {
    (0..8)
        .map(|i| batch_sql(Parts { checkpoints: i & 1 != 0, finishes: i & 2 != 0, claims: i & 4 != 0 }))
        .collect()
});

fn batch_sql(parts: Parts) -> String {
    let mut next = 4;
    let mut take = |n: usize| {
        let first = next;
        next += n;
        first
    };
    let mut ctes = vec!["fence AS (SELECT 1 FROM platform.tenant_leases \
       WHERE tenant_id = $1 AND node_id = $2 AND epoch = $3 AND expires_at > now())"
        .to_string()];
    if parts.checkpoints {
        let p = take(9);
        let a: Vec<String> = (p..p + 9).map(|n| format!("${n}")).collect();
        ctes.push(format!(
            "steps AS (INSERT INTO @tenant.execution_steps \
       (execution_id, path, state, attempt, input, output, error, started_at, finished_at) \
       SELECT * FROM unnest({}::uuid[], {}::text[], {}::text[], {}::int4[], {}::jsonb[], {}::jsonb[], {}::jsonb[], \
                            {}::timestamptz[], {}::timestamptz[]) \
       WHERE EXISTS (SELECT 1 FROM fence) \
       ON CONFLICT (execution_id, path) DO UPDATE SET state = EXCLUDED.state, attempt = EXCLUDED.attempt, \
       input = EXCLUDED.input, output = EXCLUDED.output, error = EXCLUDED.error, \
       started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at)",
            a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8]
        ));
    }
    if parts.finishes {
        let p = take(4);
        ctes.push(format!(
            "ends AS (UPDATE @tenant.executions e SET state = f.state, output = f.output, error = f.error, \
       finished_at = clock_timestamp() \
       FROM unnest(${}::uuid[], ${}::text[], ${}::jsonb[], ${}::jsonb[]) AS f(id, state, output, error) \
       WHERE e.id = f.id AND e.finished_at IS NULL AND EXISTS (SELECT 1 FROM fence))",
            p, p + 1, p + 2, p + 3
        ));
    }
    if !parts.claims {
        return format!("WITH {} SELECT EXISTS (SELECT 1 FROM fence)", ctes.join(", "));
    }
    let p = take(3);
    let (ids, silent, max) = (format!("${p}"), format!("${}", p + 1), format!("${}", p + 2));
    ctes.push(format!(
        "picked AS (SELECT x.id, {crash} FROM @tenant.executions x WHERE x.id = ANY({ids}::uuid[]) \
       AND x.state IN ('queued', 'running') AND EXISTS (SELECT 1 FROM fence) FOR UPDATE OF x SKIP LOCKED)",
        crash = crate::engine::executions::crash_columns("$2", &silent, &max),
    ));
    ctes.push(format!(
        "claimed AS (UPDATE @tenant.executions e SET \
       state = CASE WHEN e.cancel_requested THEN 'cancelled' WHEN p.failing THEN 'failed' ELSE 'running' END, \
       finished_at = CASE WHEN e.cancel_requested OR p.failing THEN now() END, \
       started_at = coalesce(e.started_at, now()), {updates} \
       FROM picked p WHERE e.id = p.id RETURNING e.id, e.integration, e.version, e.trigger, e.state)",
        updates = crate::engine::executions::crash_updates("$2"),
    ));
    format!("WITH {} {BATCH_ANSWER}", ctes.join(", "))
}

const BATCH_ANSWER: &str = "SELECT EXISTS (SELECT 1 FROM fence), c.id, c.integration, c.version, c.trigger, c.state, \
       CASE WHEN row_number() OVER (PARTITION BY c.integration, c.version) = 1 THEN v.definition END, \
       (SELECT coalesce(jsonb_agg(jsonb_build_array(s.path, s.output)), '[]') FROM @tenant.execution_steps s \
         WHERE s.execution_id = c.id AND s.state = 'succeeded'), \
       CASE WHEN c.id IS NOT NULL THEN (SELECT coalesce(jsonb_object_agg(name, value), '{}') FROM @tenant.variables) END \
     FROM (SELECT 1) one LEFT JOIN claimed c ON true \
     LEFT JOIN @tenant.integration_versions v ON v.integration = c.integration AND v.version = c.version";

/// The columns of a batch's checkpoints, one array per column.
#[derive(Default)]
struct CheckpointColumns<'a> {
    ids: Vec<Uuid>,
    paths: Vec<&'a str>,
    states: Vec<&'static str>,
    attempts: Vec<i32>,
    inputs: Vec<&'a Value>,
    outputs: Vec<Option<&'a Value>>,
    errors: Vec<Option<Value>>,
    started: Vec<DateTime<Utc>>,
    finished: Vec<DateTime<Utc>>,
}

#[derive(Default)]
struct FinishColumns {
    ids: Vec<Uuid>,
    states: Vec<&'static str>,
    outputs: Vec<Option<Value>>,
    errors: Vec<Option<Value>>,
}

async fn write_together(tx: &LaneTx, fence: &Fence, writes: &[Write]) -> Result<Result<Vec<Row>, StoreError>, DbError> {
    let tenant = &writes[0].tenant;
    let (mut steps, mut ends, mut claims) = (CheckpointColumns::default(), FinishColumns::default(), Vec::new());
    for write in writes {
        match &write.kind {
            WriteKind::Claim(_) => claims.push(write.execution),
            WriteKind::Checkpoint(step, _) => {
                steps.ids.push(write.execution);
                steps.paths.push(&step.path);
                steps.states.push(step.state.as_str());
                steps.attempts.push(step.attempt);
                steps.inputs.push(&step.input);
                steps.outputs.push(step.output.as_ref());
                steps.errors.push(step.error.as_ref().map(|e| serde_json::to_value(e).expect("failures serialise")));
                steps.started.push(step.started_at);
                steps.finished.push(step.finished_at);
            }
            WriteKind::Finish(outcome, _) => {
                let (state, output, error) = outcome_columns(outcome);
                ends.ids.push(write.execution);
                ends.states.push(state);
                ends.outputs.push(output);
                ends.errors.push(error);
            }
        }
    }
    let held = match fence.write_lease(tenant) {
        Ok(held) => held,
        Err(e) => return Ok(Err(e)),
    };
    let (s, e) = (&steps, &ends);
    let crashes = &fence.crashes;
    let parts = Parts { checkpoints: !s.ids.is_empty(), finishes: !e.ids.is_empty(), claims: !claims.is_empty() };
    type Param<'a> = &'a (dyn tokio_postgres::types::ToSql + Sync);
    let mut params: Vec<Param> = vec![&tenant.id, &held.node, &held.epoch];
    if parts.checkpoints {
        let columns: [Param; 9] = [&s.ids, &s.paths, &s.states, &s.attempts, &s.inputs, &s.outputs, &s.errors, &s.started, &s.finished];
        params.extend(columns);
    }
    if parts.finishes {
        let columns: [Param; 4] = [&e.ids, &e.states, &e.outputs, &e.errors];
        params.extend(columns);
    }
    if parts.claims {
        let columns: [Param; 3] = [&claims, &crashes.silent_secs, &crashes.max];
        params.extend(columns);
    }
    let lock: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&tenant.id];
    // The lock first: the batch's snapshot follows it (see `TenantDb::locked_write_in_schema`).
    let rows = tx.locked_query(&writes[0].schema, (WRITE_LOCK, &lock), &BATCH[parts.index()], &params).await?;
    Ok(Ok(rows))
}

/// The claims of a batch's result, by execution. A claim that comes back
/// `cancelled` (a cancel asked before it ran) or `failed` (`node_crashed`)
/// is no claim: its execution has ended.
fn claimed_rows(rows: &[tokio_postgres::Row]) -> Result<HashMap<Uuid, Claimed>, StoreError> {
    let decode = |e| crate::engine::executions::store_error(crate::engine::executions::StoreFault::Decode(e));
    let mut definitions: HashMap<(String, i32), Value> = HashMap::new();
    let mut claimed = HashMap::new();
    let mut pending = Vec::new();
    for row in rows {
        // A batch without claims answers the fence's column only.
        let Some(id) = row.columns().get(1).and_then(|_| row.get::<_, Option<Uuid>>(1)) else { continue };
        let (integration, version): (String, i32) = (row.get(2), row.get(3));
        if let Some(definition) = row.get::<_, Option<Value>>(6) {
            definitions.insert((integration.clone(), version), definition);
        }
        match row.get::<_, &str>(5) {
            "cancelled" => {
                tracing::info!(execution_id = %id, "execution cancelled at its claim");
                continue;
            }
            "failed" => {
                tracing::warn!(execution_id = %id, "execution failed at its claim: node_crashed");
                continue;
            }
            _ => {}
        }
        let done: Vec<(String, Value)> = serde_json::from_value(row.get(7)).map_err(decode)?;
        let Value::Object(vars) = row.get(8) else { return Err(crate::engine::executions::store_error(crate::database::DbError::NotExactlyOne)) };
        pending.push((id, integration, version, row.get::<_, Value>(4), vars, done));
    }
    for (id, integration, version, trigger, vars, done) in pending {
        // Sent with the first claim of its version in the batch only.
        let definition = definitions.get(&(integration.clone(), version)).cloned().unwrap_or(Value::Null);
        claimed.insert(id, Claimed { integration, version, trigger, definition, vars, done });
    }
    Ok(claimed)
}
