//! The batching committer (docs/engine.md, rule 3): owns the node's
//! checkpoint and finish writes, and commits those of all running
//! executions together, one transaction per tenant per batch.
//!
//! Why: each checkpoint committed on its own costs a transaction and a WAL
//! flush per step. Here a single task gathers the writes waiting at that
//! moment, groups them by tenant and commits each group with one
//! statement (the lease fence, `INSERT … SELECT FROM unnest(…)` for
//! checkpoints and `UPDATE … FROM unnest(…)` for finishes, as CTEs). It flushes as soon as a flush slot is
//! free (group commit: while one commit is in flight, the next batch
//! fills), so a quiet node adds no delay and a busy one commits more per
//! flush.
//!
//! Durability is unchanged: every caller awaits the commit of its own batch,
//! so a step's checkpoint is still committed before the next step starts.
//! A batch that fails is retried one write at a time, so each caller gets
//! its own result and one bad write cannot fail its neighbours. Tenant
//! isolation is unchanged too: statements are `@tenant.`-qualified through
//! [`TenantDb`], and a transaction holds one tenant's writes only.

use std::{collections::HashMap, sync::Arc};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::Value;
use tessera_runtime::{
    execution::{CallRequest, CallStart, Claimed, Ended, Outcome, StepRecord, StoreError, StoreFuture},
    ExecutionStore, TenantSpec,
};
use tokio::sync::{mpsc, oneshot, Semaphore};
use uuid::Uuid;

use crate::{
    cluster::WRITE_LOCK,
    execution_store::{outcome_columns, Fence, PgExecutionStore},
    tenancy::{Flush, TenantDb},
};

/// Most writes in one batch (all tenants together).
const MAX_BATCH: usize = 512;
/// Batches committing at once. One: writes arriving while a batch commits
/// form the next batch, so batches grow with the load. With four, most
/// batches held one write at 500 executions/s and saved nothing
/// (docs/performance.md 4c).
const FLUSH_SLOTS: usize = 1;
/// Tenant transactions of one batch committing at once.
const TENANTS_AT_ONCE: usize = 4;
/// Writes waiting for a flush; callers wait (back-pressure) beyond this.
const QUEUE: usize = 4096;

/// The runtime's [`ExecutionStore`] with batched checkpoint and finish
/// writes. Claims and listings go straight to the inner store.
pub struct BatchingStore {
    inner: Arc<PgExecutionStore>,
    writes: mpsc::Sender<Write>,
}

/// One write waiting for its batch, and where its caller awaits the result.
struct Write {
    tenant: TenantSpec,
    execution: Uuid,
    kind: WriteKind,
    reply: oneshot::Sender<Result<(), StoreError>>,
}

enum WriteKind {
    Checkpoint(StepRecord),
    Finish(Outcome),
}

#[derive(Debug, thiserror::Error)]
enum CommitterError {
    #[error("the batching committer has stopped")]
    Stopped,
}

impl BatchingStore {
    /// Start the committer task (it ends when the store is dropped).
    /// Every batch is fenced by its tenant's lease, like a single write.
    pub fn start(db: TenantDb, fence: Fence) -> Self {
        let inner = Arc::new(PgExecutionStore::new(db.clone(), fence.clone()));
        let (writes, queue) = mpsc::channel(QUEUE);
        tokio::spawn(run(queue, db, fence, inner.clone()));
        Self { inner, writes }
    }

    async fn submit(&self, tenant: &TenantSpec, execution: Uuid, kind: WriteKind) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        let write = Write { tenant: tenant.clone(), execution, kind, reply };
        let stopped = || StoreError(Box::new(CommitterError::Stopped));
        self.writes.send(write).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

impl ExecutionStore for BatchingStore {
    fn unfinished<'a>(&'a self, tenant: &'a TenantSpec) -> StoreFuture<'a, Vec<Uuid>> {
        self.inner.unfinished(tenant)
    }

    fn claim<'a>(&'a self, tenant: &'a TenantSpec, id: Uuid) -> StoreFuture<'a, Option<Claimed>> {
        self.inner.claim(tenant, id)
    }

    fn checkpoint<'a>(&'a self, tenant: &'a TenantSpec, id: Uuid, step: &'a StepRecord) -> StoreFuture<'a, ()> {
        Box::pin(self.submit(tenant, id, WriteKind::Checkpoint(step.clone())))
    }

    fn finish<'a>(&'a self, tenant: &'a TenantSpec, id: Uuid, outcome: &'a Outcome) -> StoreFuture<'a, ()> {
        Box::pin(self.submit(tenant, id, WriteKind::Finish(outcome.clone())))
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
}

/// The committer loop: take every write waiting (up to `MAX_BATCH`) as
/// soon as a flush slot is free, and flush them in the background.
async fn run(mut queue: mpsc::Receiver<Write>, db: TenantDb, fence: Fence, inner: Arc<PgExecutionStore>) {
    let slots = Arc::new(Semaphore::new(FLUSH_SLOTS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let mut batch = Vec::new();
        if queue.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return; // every sender is gone: the store was dropped
        }
        let (db, fence, inner) = (db.clone(), fence.clone(), inner.clone());
        tokio::spawn(async move {
            flush(&db, &fence, &inner, batch).await;
            drop(slot);
        });
    }
}

/// Commit one batch: one transaction per tenant, a few tenants at once.
async fn flush(db: &TenantDb, fence: &Fence, inner: &PgExecutionStore, batch: Vec<Write>) {
    let mut by_tenant: HashMap<Uuid, Vec<Write>> = HashMap::new();
    for write in batch {
        by_tenant.entry(write.tenant.id).or_default().push(write);
    }
    futures::stream::iter(by_tenant.into_values())
        .for_each_concurrent(TENANTS_AT_ONCE, |writes| commit_tenant(db, fence, inner, writes))
        .await;
}

/// Commit one tenant's writes together; if that fails, one by one, so
/// each caller learns its own result.
async fn commit_tenant(db: &TenantDb, fence: &Fence, inner: &PgExecutionStore, writes: Vec<Write>) {
    let tenant = &writes[0].tenant;
    let together = commit_together(db, fence, tenant, &writes).await;
    match together {
        Ok(()) => writes.into_iter().for_each(|w| {
            let _ = w.reply.send(Ok(()));
        }),
        // Not worth a retry: every write of the batch would fail the same way.
        Err(e) if crate::execution_store::is_lease_lost(&e) => writes.into_iter().for_each(|w| {
            let _ = w.reply.send(Err(fence.lost(&w.tenant)));
        }),
        Err(e) => {
            tracing::warn!(tenant = %tenant.slug, writes = writes.len(), error = %e, "batched commit failed; committing its writes one by one");
            for write in writes {
                let result = match &write.kind {
                    WriteKind::Checkpoint(step) => inner.checkpoint(&write.tenant, write.execution, step).await,
                    WriteKind::Finish(outcome) => inner.finish(&write.tenant, write.execution, outcome).await,
                };
                let _ = write.reply.send(result);
            }
        }
    }
}

/// A tenant's whole batch in one statement (after the lease's write lock,
/// in the same round trip), so one commit: the fence (this node holds the
/// tenant's lease at `$3`; without it nothing is written),
/// the checkpoints (`INSERT … FROM unnest`), then the finishes. The result
/// says whether the fence held.
///
/// `clock_timestamp()`, not `now()`, for `finished_at`: the statement may
/// start after some of its executions finished, never before. An
/// execution still to finish is told by `finished_at IS NULL` (a cancel
/// sets it), not by `state = 'running'`: that made the planner scan the
/// state index, whose `running` entries pile up (one per execution, until
/// vacuum) much faster than its statistics say, instead of the primary key.
const BATCH: &str = "WITH fence AS (SELECT 1 FROM platform.tenant_leases \
       WHERE tenant_id = $1 AND node_id = $2 AND epoch = $3 AND expires_at > now()), \
     steps AS (INSERT INTO @tenant.execution_steps \
       (execution_id, path, state, attempt, input, output, error, started_at, finished_at) \
       SELECT * FROM unnest($4::uuid[], $5::text[], $6::text[], $7::int4[], $8::jsonb[], $9::jsonb[], $10::jsonb[], \
                            $11::timestamptz[], $12::timestamptz[]) \
       WHERE EXISTS (SELECT 1 FROM fence) \
       ON CONFLICT (execution_id, path) DO UPDATE SET state = EXCLUDED.state, attempt = EXCLUDED.attempt, \
       input = EXCLUDED.input, output = EXCLUDED.output, error = EXCLUDED.error, \
       started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at), \
     ends AS (UPDATE @tenant.executions e SET state = f.state, output = f.output, error = f.error, \
       finished_at = clock_timestamp() \
       FROM unnest($13::uuid[], $14::text[], $15::jsonb[], $16::jsonb[]) AS f(id, state, output, error) \
       WHERE e.id = f.id AND e.finished_at IS NULL AND EXISTS (SELECT 1 FROM fence)) \
     SELECT EXISTS (SELECT 1 FROM fence)";

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

async fn commit_together(db: &TenantDb, fence: &Fence, tenant: &TenantSpec, writes: &[Write]) -> Result<(), StoreError> {
    let (mut steps, mut ends) = (CheckpointColumns::default(), FinishColumns::default());
    for write in writes {
        match &write.kind {
            WriteKind::Checkpoint(step) => {
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
            WriteKind::Finish(outcome) => {
                let (state, output, error) = outcome_columns(outcome);
                ends.ids.push(write.execution);
                ends.states.push(state);
                ends.outputs.push(output);
                ends.errors.push(error);
            }
        }
    }
    let held = fence.held(tenant)?;
    let (s, e) = (&steps, &ends);
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 16] = [
        &tenant.id, &held.node, &held.epoch,
        &s.ids, &s.paths, &s.states, &s.attempts, &s.inputs, &s.outputs, &s.errors, &s.started, &s.finished,
        &e.ids, &e.states, &e.outputs, &e.errors,
    ];
    let schema = crate::execution_store::schema(tenant)?;
    let lock: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&tenant.id];
    let rows = db
        .locked_write_in_schema(&schema, (WRITE_LOCK, &lock), BATCH, &params, Flush::Now)
        .await
        .map_err(crate::execution_store::store_error)?;
    match rows.first().map(|r| r.get::<_, bool>(0)) {
        Some(true) => Ok(()),
        _ => Err(fence.lost(tenant)),
    }
}
