//! The per-tenant batcher: the one engine behind every group commit of the
//! node (the committer's checkpoints, the intake's new executions). It owns
//! the queue, the flush slots, the grouping by tenant and the fallback one
//! request at a time; a use supplies only its statements ([`TenantBatch`]).
//!
//! Why: one commit per request costs a transaction, a WAL flush and a round
//! trip each. Here one task takes every request waiting at that moment (up
//! to the use's most per batch) as soon as a flush slot is free, groups
//! them by tenant and commits each group in one transaction, a few tenants
//! at once. A quiet node commits each request at once (no added wait); a
//! busy one commits many per flush, since requests arriving while a batch
//! commits form the next one.
//!
//! Every request is answered by its use, only once its own commit is done,
//! so accept = commit and durability are the use's as without batching. A
//! group the use cannot commit together comes back unanswered and is
//! committed one request at a time, so one bad request cannot fail its
//! neighbours. A transaction never holds two tenants' requests.

use std::{collections::HashMap, future::Future, sync::Arc};

use futures::StreamExt;
use tokio::sync::{mpsc, Semaphore};
use uuid::Uuid;

/// Batches committing at once. One: requests arriving while a batch
/// commits form the next batch, so batches grow with the load. With four,
/// most batches held one write at 500 executions/s and saved nothing
/// (docs/performance.md 4c).
const FLUSH_SLOTS: usize = 1;
/// Tenant transactions of one batch committing at once.
const TENANTS_AT_ONCE: usize = 4;
/// Requests waiting for a flush; callers wait (back-pressure) beyond this.
const QUEUE: usize = 4096;

/// What a use of the batcher supplies: how to commit one tenant's requests
/// together, and one request alone. Each answers its requests' callers.
pub trait TenantBatch: Send + Sync + 'static {
    type Request: Send + 'static;

    /// The tenant whose transaction `request` belongs in.
    fn tenant(request: &Self::Request) -> Uuid;

    /// Commit one tenant's requests in one transaction and answer each
    /// (success or failure); or give them back unanswered, with why, to be
    /// committed one by one.
    fn together(&self, requests: Vec<Self::Request>) -> impl Future<Output = Result<(), Unanswered<Self::Request>>> + Send;

    /// Commit one request on its own (its batch failed) and answer it.
    fn alone(&self, request: Self::Request) -> impl Future<Output = ()> + Send;
}

/// A tenant's requests whose commit together failed, not yet answered.
pub struct Unanswered<R> {
    pub requests: Vec<R>,
    /// The tenant's slug and the failure, for the log.
    pub tenant: String,
    pub error: String,
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
    pub fn start<B: TenantBatch<Request = R>>(name: &'static str, statements: B, max_batch: usize) -> Self {
        let (queue, waiting) = mpsc::channel(QUEUE);
        tokio::spawn(run(name, waiting, Arc::new(statements), max_batch));
        Self { name, queue }
    }

    /// Queue a request; its answer comes the way the request carries.
    pub async fn submit(&self, request: R) -> Result<(), Stopped> {
        self.queue.send(request).await.map_err(|_| Stopped(self.name))
    }
}

/// Take every request waiting (up to `max_batch`) as soon as a flush slot
/// is free, and flush them in the background.
async fn run<B: TenantBatch>(name: &'static str, mut waiting: mpsc::Receiver<B::Request>, statements: Arc<B>, max_batch: usize) {
    let slots = Arc::new(Semaphore::new(FLUSH_SLOTS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let mut batch = Vec::new();
        if waiting.recv_many(&mut batch, max_batch).await == 0 {
            return; // every handle is gone
        }
        let statements = statements.clone();
        tokio::spawn(async move {
            flush(name, &*statements, batch).await;
            drop(slot);
        });
    }
}

/// Commit one batch: one transaction per tenant, a few tenants at once.
async fn flush<B: TenantBatch>(name: &'static str, statements: &B, batch: Vec<B::Request>) {
    let mut by_tenant: HashMap<Uuid, Vec<B::Request>> = HashMap::new();
    for request in batch {
        by_tenant.entry(B::tenant(&request)).or_default().push(request);
    }
    futures::stream::iter(by_tenant.into_values())
        .for_each_concurrent(TENANTS_AT_ONCE, |requests| commit_tenant(name, statements, requests))
        .await;
}

/// One tenant's requests together; if that fails, one by one, so each
/// caller learns its own result.
async fn commit_tenant<B: TenantBatch>(name: &'static str, statements: &B, requests: Vec<B::Request>) {
    let Err(failed) = statements.together(requests).await else { return };
    let (tenant, count, error) = (&failed.tenant, failed.requests.len(), &failed.error);
    tracing::warn!(tenant = %tenant, requests = count, error = %error, "a batch of the {name} failed; committing its requests one by one");
    for request in failed.requests {
        statements.alone(request).await;
    }
}
