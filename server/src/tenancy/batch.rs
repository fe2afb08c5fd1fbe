//! The batcher: the one engine behind every group commit of the node (the
//! committer's claims, checkpoints and finishes, the intake's new
//! executions). It owns the queue, the flush slots, the grouping and the
//! fallbacks; a use supplies only its statements ([`TenantBatch`]).
//!
//! Why: one commit per request costs a transaction, a WAL flush and a round
//! trip each. Here one task takes every request waiting at that moment (up
//! to the use's most per batch) as soon as a flush slot is free, groups
//! them by tenant, and the tenants' groups by their home lane
//! ([`super::Lanes`]): each lane's groups are committed in one transaction
//! on that lane, every tenant's statement in it qualified with its own
//! schema, every lane at once. So a load spread over many tenants still
//! commits many requests per transaction (a transaction per tenant made it
//! a transaction per request once the tenants were many), and each backend
//! sees only the schemas of its lane. A quiet node commits each request at
//! once (no added wait); a busy one commits more per flush, since requests
//! arriving while a batch commits form the next one.
//!
//! Every request is answered by its use, only once its own commit is done,
//! so accept = commit and durability are the use's as without batching.
//! A lane's transaction that fails is tried again one tenant per
//! transaction, and a tenant's that fails, one request at a time, so one
//! bad request cannot fail its neighbours.

use std::{collections::HashMap, future::Future, sync::Arc};

use tokio::sync::{mpsc, Semaphore};
use uuid::Uuid;

use super::{LaneTx, SchemaName, TenantDb};
use crate::{database::DbError, metrics::Metrics};

/// Batches committing at once. One: requests arriving while a batch
/// commits form the next batch, so batches grow with the load. With four,
/// most batches held one write at 500 executions/s and saved nothing
/// (docs/performance.md 4c).
const FLUSH_SLOTS: usize = 1;
/// Requests waiting for a flush; callers wait (back-pressure) beyond this.
const QUEUE: usize = 4096;

/// What a use of the batcher supplies: the statements that write one
/// tenant's requests in a transaction shared with other tenants, how to
/// answer them once it committed, and how to commit one request alone.
pub trait TenantBatch: Send + Sync + 'static {
    type Request: Send + Sync + 'static;
    /// What one tenant's statements returned, for its answers.
    type Written: Send;

    /// The tenant whose statements `request` belongs in, and its schema.
    fn tenant(request: &Self::Request) -> (Uuid, &SchemaName);

    /// Where the transactions run.
    fn db(&self) -> &TenantDb;

    /// Write one tenant's requests in `tx` (not committed yet: answer
    /// nothing here).
    fn write<'a>(&'a self, tx: &'a LaneTx, requests: &'a [Self::Request]) -> impl Future<Output = Result<Self::Written, DbError>> + Send + 'a;

    /// `requests`' statements committed: answer each.
    fn answer(&self, requests: Vec<Self::Request>, written: Self::Written);

    /// Commit one request on its own (its batch failed) and answer it.
    fn alone(&self, request: Self::Request) -> impl Future<Output = ()> + Send;
}

/// The batcher has stopped: the node is shutting down.
#[derive(Debug, thiserror::Error)]
#[error("the {0} has stopped")]
pub struct Stopped(pub &'static str);

/// Where requests wait for their batch; the batcher's task ends when every
/// handle is dropped.
pub struct Batcher<R> {
    name: &'static str,
    queue: mpsc::Sender<R>,
}

impl<R> Clone for Batcher<R> {
    fn clone(&self) -> Self {
        Self { name: self.name, queue: self.queue.clone() }
    }
}

impl<R: Send + 'static> Batcher<R> {
    /// Start the batcher's task: `name` says which in logs and errors,
    /// `max_batch` is the most requests in one batch (all tenants together).
    /// Each batch's size and what it left waiting go to `metrics`.
    pub fn start<B: TenantBatch<Request = R>>(name: &'static str, statements: B, max_batch: usize, metrics: Arc<Metrics>) -> Self {
        let (queue, waiting) = mpsc::channel(QUEUE);
        tokio::spawn(run(name, waiting, Arc::new(statements), max_batch, metrics));
        Self { name, queue }
    }

    /// Queue a request; its answer comes the way the request carries.
    pub async fn submit(&self, request: R) -> Result<(), Stopped> {
        self.queue.send(request).await.map_err(|_| Stopped(self.name))
    }
}

/// Take every request waiting (up to `max_batch`) as soon as a flush slot
/// is free, and flush them in the background.
async fn run<B: TenantBatch>(name: &'static str, mut waiting: mpsc::Receiver<B::Request>, statements: Arc<B>, max_batch: usize, metrics: Arc<Metrics>) {
    let slots = Arc::new(Semaphore::new(FLUSH_SLOTS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let mut batch = Vec::new();
        if waiting.recv_many(&mut batch, max_batch).await == 0 {
            return; // every handle is gone
        }
        metrics.batch(name, batch.len(), waiting.len());
        let statements = statements.clone();
        tokio::spawn(async move {
            flush(name, &*statements, batch).await;
            drop(slot);
        });
    }
}

/// Commit one batch: one transaction per lane, all lanes at once.
async fn flush<B: TenantBatch>(name: &'static str, statements: &B, batch: Vec<B::Request>) {
    let mut by_tenant: HashMap<Uuid, Vec<B::Request>> = HashMap::new();
    for request in batch {
        by_tenant.entry(B::tenant(&request).0).or_default().push(request);
    }
    let lanes = statements.db().lanes();
    let mut by_lane: HashMap<usize, Vec<Vec<B::Request>>> = HashMap::new();
    for requests in by_tenant.into_values() {
        by_lane.entry(lanes.home(B::tenant(&requests[0]).1)).or_default().push(requests);
    }
    // Every lane at once: their commits share WAL flushes (PostgreSQL's
    // group commit); four at a time made a batch over 16 lanes four
    // flushes long, and a load over 50 tenants slower than over one.
    futures::future::join_all(by_lane.into_iter().map(|(lane, tenants)| commit_lane(name, statements, lane, tenants))).await;
}

/// A lane's tenants together; if that fails, one tenant per transaction.
async fn commit_lane<B: TenantBatch>(name: &'static str, statements: &B, lane: usize, tenants: Vec<Vec<B::Request>>) {
    if tenants.len() == 1 {
        let requests = tenants.into_iter().next().expect("one tenant");
        return commit_tenant(name, statements, lane, requests).await;
    }
    let error = match together(statements, lane, &tenants).await {
        Ok(written) => return tenants.into_iter().zip(written).for_each(|(requests, written)| statements.answer(requests, written)),
        Err(e) => e,
    };
    tracing::warn!(lane, tenants = tenants.len(), error = %error, "a lane batch of the {name} failed; committing it tenant by tenant");
    for requests in tenants {
        commit_tenant(name, statements, lane, requests).await;
    }
}

/// One tenant's requests together; if that fails, one by one, so each
/// caller learns its own result.
async fn commit_tenant<B: TenantBatch>(name: &'static str, statements: &B, lane: usize, requests: Vec<B::Request>) {
    let tenants = [requests];
    let error = match together(statements, lane, &tenants).await {
        Ok(written) => {
            let [requests] = tenants;
            return statements.answer(requests, written.into_iter().next().expect("one tenant written"));
        }
        Err(e) => e,
    };
    let [requests] = tenants;
    tracing::warn!(requests = requests.len(), error = %error, "a batch of the {name} failed; committing its requests one by one");
    for request in requests {
        statements.alone(request).await;
    }
}

/// Write each tenant's requests in one transaction on `lane`, and commit.
async fn together<B: TenantBatch>(statements: &B, lane: usize, tenants: &[Vec<B::Request>]) -> Result<Vec<B::Written>, DbError> {
    let schemas: Vec<&SchemaName> = tenants.iter().map(|requests| B::tenant(&requests[0]).1).collect();
    let tx = statements.db().begin_lane(lane, &schemas).await?;
    let written = futures::future::join_all(tenants.iter().map(|requests| statements.write(&tx, requests))).await;
    let written = written.into_iter().collect::<Result<Vec<_>, _>>()?;
    tx.commit().await?;
    Ok(written)
}
