//! The intake: new executions from webhooks and API runs, inserted
//! `queued` and committed in batches (group commit), each request answered
//! only once its own batch has committed (rule 1: accept = commit).
//!
//! Why: every accepted trigger is a committed insert, flushed to the WAL
//! before the answer. One commit per request made the intake cost a WAL
//! flush and a round trip per webhook; here the requests waiting at one
//! moment are inserted together, one statement per tenant (`INSERT …
//! SELECT FROM unnest(…)`), as the batching committer does for checkpoints.
//! A quiet node commits each request at once (no added wait); a busy one
//! commits many per flush.
//!
//! Each tenant starts at most `runtime.intake_per_second` executions per
//! second on a node ([`IntakeLimit`]), so a tenant flooding its webhooks
//! takes a bounded share of the node's CPU and commits, not all of it.
//!
//! Requests with an idempotency key do not come here (`executions`
//! inserts them one at a time, since the unique index decides between
//! them). A batch that fails is retried one request at a time, so one bad
//! request cannot fail its neighbours. Tenant isolation: statements are
//! `@tenant.`-qualified through [`TenantDb`], one tenant's rows per
//! statement.

use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use futures::StreamExt;
use governor::{clock::Clock, DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::{
    database::DbError,
    limits::{AdmitError, LimitBook},
    tenancy::{Tenant, TenantDb},
};

/// Most requests in one batch (all tenants together).
const MAX_BATCH: usize = 256;
/// Batches committing at once: one, so the next batch fills meanwhile.
const FLUSH_SLOTS: usize = 1;
/// Tenant statements of one batch running at once.
const TENANTS_AT_ONCE: usize = 4;
/// Requests waiting for a flush; callers wait (back-pressure) beyond this.
const QUEUE: usize = 4096;

/// One execution to create: `version` pins the version to run, `None` runs
/// the current one.
#[derive(Debug, Clone)]
pub struct NewExecution {
    pub integration: String,
    pub version: Option<i32>,
    pub trigger: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("the intake has stopped")]
    Stopped,
    #[error("this tenant starts executions faster than its limit of {per_second} per second; retry in {retry_after_secs} s")]
    RateLimited { per_second: u32, retry_after_secs: u64 },
    /// Over the tenant's limit `stored_executions`.
    #[error(transparent)]
    Limit(tessera_runtime::limits::LimitExceeded),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<AdmitError> for IntakeError {
    fn from(e: AdmitError) -> Self {
        match e {
            AdmitError::Limit(e) => Self::Limit(e),
            AdmitError::Db(e) => Self::Db(e),
        }
    }
}

struct Request {
    tenant: Tenant,
    id: Uuid,
    new: NewExecution,
    reply: oneshot::Sender<Result<Option<Row>, IntakeError>>,
}

/// Sends requests to the intake task (it ends when every handle is dropped).
#[derive(Clone)]
pub struct Intake {
    requests: mpsc::Sender<Request>,
    limit: IntakeLimit,
    db: TenantDb,
    /// The tenants' limits: `stored_executions` is checked here.
    book: LimitBook,
}

impl Intake {
    pub fn start(db: TenantDb, limit: IntakeLimit, book: LimitBook) -> Self {
        let (requests, queue) = mpsc::channel(QUEUE);
        tokio::spawn(run(queue, db.clone()));
        Self { requests, limit, db, book }
    }

    /// Wait for `tenant`'s turn to start an execution; refused when the
    /// wait would be longer than [`MOST_WAIT`], when the tenant stores as
    /// many executions as its limit `stored_executions` allows, or when as
    /// many wait to start as `queued_executions` allows.
    pub async fn admit(&self, tenant: &Tenant) -> Result<(), IntakeError> {
        self.limit.admit(tenant.id).await?;
        let limits = self.book.of(tenant.id).await?;
        self.admit_queued(tenant, limits.queued_executions).await?;
        Ok(self.book.admit_stored(&self.db, tenant.id, &tenant.schema, limits.stored_executions).await?)
    }

    /// A tenant with a full backlog is answered after [`MOST_WAIT`], when
    /// its backlog is counted again: the refusal then costs a sleeping
    /// request, and a sender that does not wait for `Retry-After` is slowed
    /// to one request per connection per wait instead of flooding the node.
    async fn admit_queued(&self, tenant: &Tenant, limit: usize) -> Result<(), IntakeError> {
        match self.book.admit_queued(&self.db, tenant.id, &tenant.schema, limit).await {
            Err(AdmitError::Limit(_)) => {
                tokio::time::sleep(MOST_WAIT).await;
                Ok(self.book.admit_queued(&self.db, tenant.id, &tenant.schema, limit).await?)
            }
            other => Ok(other?),
        }
    }

    /// Insert and commit a `queued` execution. Returns its row (the columns
    /// of `columns`), or `None` when the integration is unknown or disabled.
    pub async fn insert(&self, tenant: &Tenant, new: NewExecution) -> Result<Option<Row>, IntakeError> {
        let (reply, answer) = oneshot::channel();
        let request = Request { tenant: tenant.clone(), id: Uuid::now_v7(), new, reply };
        self.requests.send(request).await.map_err(|_| IntakeError::Stopped)?;
        answer.await.map_err(|_| IntakeError::Stopped)?
    }
}

/// The longest a request waits for its tenant's turn. Waiting rather than
/// refusing at once slows a sender that ignores `Retry-After` (most wait
/// for the answer before they send again) without spending CPU on it.
pub const MOST_WAIT: Duration = Duration::from_secs(1);

/// Per-tenant rate of new executions on this node (governor's GCRA, one
/// small entry per tenant that sent work lately).
#[derive(Clone)]
pub struct IntakeLimit {
    limiter: Option<Arc<DefaultKeyedRateLimiter<Uuid>>>,
    per_second: u32,
    admitted: Arc<AtomicU64>,
}

impl IntakeLimit {
    /// `per_second` 0: no limit.
    pub fn new(per_second: u32, burst: u32) -> Self {
        let limiter = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(burst.max(per_second)).unwrap_or(rate);
            Arc::new(RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)))
        });
        Self { limiter, per_second, admitted: Arc::new(AtomicU64::new(0)) }
    }

    async fn admit(&self, tenant: Uuid) -> Result<(), IntakeError> {
        let Some(limiter) = &self.limiter else { return Ok(()) };
        // Forget tenants that sent nothing lately, now and then, so the
        // limiter holds only the tenants that are sending.
        if self.admitted.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            limiter.retain_recent();
        }
        let until = tokio::time::Instant::now() + MOST_WAIT;
        loop {
            let Err(not_until) = limiter.check_key(&tenant) else { return Ok(()) };
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            if tokio::time::Instant::now() + wait > until {
                return Err(IntakeError::RateLimited { per_second: self.per_second, retry_after_secs: wait.as_secs().max(1) });
            }
            tokio::time::sleep(wait).await;
        }
    }
}

async fn run(mut queue: mpsc::Receiver<Request>, db: TenantDb) {
    let slots = Arc::new(Semaphore::new(FLUSH_SLOTS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let mut batch = Vec::new();
        if queue.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        let db = db.clone();
        tokio::spawn(async move {
            flush(&db, batch).await;
            drop(slot);
        });
    }
}

async fn flush(db: &TenantDb, batch: Vec<Request>) {
    let mut by_tenant: HashMap<Uuid, Vec<Request>> = HashMap::new();
    for request in batch {
        by_tenant.entry(request.tenant.id).or_default().push(request);
    }
    futures::stream::iter(by_tenant.into_values()).for_each_concurrent(TENANTS_AT_ONCE, |requests| insert_tenant(db, requests)).await;
}

/// A disabled integration does not run: to its callers it is not there, so
/// its requests get no row.
fn insert_sql(columns: &str) -> String {
    format!(
        "INSERT INTO @tenant.executions (id, integration, version, trigger) \
         SELECT r.id, i.name, COALESCE(r.version, i.current_version), r.trigger \
         FROM unnest($1::uuid[], $2::text[], $3::int4[], $4::jsonb[]) AS r(id, integration, version, trigger) \
         JOIN @tenant.integrations i ON i.name = r.integration AND i.enabled \
         RETURNING {columns}"
    )
}

async fn insert_tenant(db: &TenantDb, requests: Vec<Request>) {
    let tenant = requests[0].tenant.clone();
    match insert_together(db, &tenant, &requests).await {
        Ok(mut rows) => requests.into_iter().for_each(|r| {
            let _ = r.reply.send(Ok(rows.remove(&r.id)));
        }),
        Err(e) if requests.len() > 1 => {
            tracing::warn!(tenant = %tenant.slug, requests = requests.len(), error = %e, "batched intake failed; inserting its requests one by one");
            for request in requests {
                let result = insert_together(db, &tenant, std::slice::from_ref(&request)).await;
                let _ = request.reply.send(result.map(|mut rows| rows.remove(&request.id)).map_err(IntakeError::from));
            }
        }
        Err(e) => {
            if let Some(request) = requests.into_iter().next() {
                let _ = request.reply.send(Err(e.into()));
            }
        }
    }
}

async fn insert_together(db: &TenantDb, tenant: &Tenant, requests: &[Request]) -> Result<HashMap<Uuid, Row>, DbError> {
    let ids: Vec<Uuid> = requests.iter().map(|r| r.id).collect();
    let names: Vec<&str> = requests.iter().map(|r| r.new.integration.as_str()).collect();
    let versions: Vec<Option<i32>> = requests.iter().map(|r| r.new.version).collect();
    let triggers: Vec<&Value> = requests.iter().map(|r| &r.new.trigger).collect();
    let sql = insert_sql(crate::resources::executions::COLUMNS);
    let rows = db.read(tenant, &sql, &[&ids, &names, &versions, &triggers]).await?;
    Ok(rows.into_iter().map(|row| (row.get::<_, Uuid>(0), row)).collect())
}
