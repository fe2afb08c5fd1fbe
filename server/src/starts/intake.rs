//! The intake: executions started from outside the tenant's worker, by
//! webhooks and API runs. Each is admitted (the tenant's intake rate, its
//! backlog `queued_executions`, then its `stored_executions`), committed
//! `queued`, answered, and only then is the tenant's worker woken (rule 1:
//! accept = commit).
//!
//! Why batches: every accepted request is a committed insert, flushed to
//! the WAL before the answer. One commit per request made the intake cost a
//! WAL flush and a round trip per webhook; here the requests waiting at one
//! moment are inserted together through the node's batcher
//! ([`crate::tenancy::batch`]: one transaction per lane), one statement per tenant (`INSERT … SELECT FROM
//! unnest(…)`). A request with an idempotency key is inserted on its own,
//! since the unique index decides between it and its repeats.
//!
//! Each tenant starts at most `runtime.intake_per_second` executions per
//! second on a node ([`IntakeLimit`]), so a tenant flooding its webhooks
//! takes a bounded share of the node's CPU and commits, not all of it.

use std::{
    collections::HashSet,
    num::NonZeroU32,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, LazyLock,
    },
    time::Duration,
};

use governor::{clock::Clock, DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde_json::Value;
use tessera_runtime::{definition::Name, Supervisor, WorkerCommand};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::{insert_sql, marking, StartError, Starts};
use crate::{
    tenancy::batch::{Batcher, Stopped, TenantBatch},
    database::DbError,
    limits::AdmitError,
    metrics::Metrics,
    tenancy::{LaneTx, SchemaName, Tenant, TenantDb},
};

/// Most requests in one batch (all tenants together).
const MAX_BATCH: usize = 256;

/// One execution to start from a webhook or an API run.
#[derive(Debug, Clone)]
pub struct Run {
    pub integration: Name,
    /// The version to run (the one whose webhook trigger accepted the
    /// request); `None` runs the current one.
    pub version: Option<i32>,
    pub trigger: Value,
    /// The caller's `Idempotency-Key`: a repeat answers with the execution
    /// the first request started.
    pub key: Option<String>,
}

/// The execution a run started, or (`replayed`) the one an earlier request
/// with the same idempotency key started.
#[derive(Debug)]
pub struct Started {
    pub id: Uuid,
    pub state: String,
    pub replayed: bool,
}

/// Starts the executions of webhooks and API runs (the task that batches
/// their inserts ends when every handle is dropped).
#[derive(Clone)]
pub struct Intake {
    pub(super) starts: Starts,
    pub(super) limit: IntakeLimit,
    inserts: Batcher<Request>,
    supervisor: Supervisor,
    /// Inline runs count their executions here; the others count where the engine writes.
    pub(super) metrics: Arc<Metrics>,
}

impl Intake {
    pub fn start(starts: Starts, limit: IntakeLimit, supervisor: Supervisor, metrics: Arc<Metrics>) -> Self {
        let inserts = Batcher::start("intake", Inserts { db: starts.db.clone() }, MAX_BATCH, metrics.clone());
        Self { starts, limit, inserts, supervisor, metrics }
    }

    /// Admit, insert and commit `run` of `tenant`, then wake the tenant's
    /// worker. Refused when the tenant's turn is more than [`MOST_WAIT`]
    /// away, when as many of its executions wait to start as its limit
    /// `queued_executions` allows, when it stores as many as
    /// `stored_executions` allows, or when the integration is unknown or
    /// disabled.
    pub async fn run(&self, tenant: &Tenant, run: Run) -> Result<Started, StartError> {
        self.limit.admit(tenant.id).await?;
        self.admit_queued(tenant).await?;
        self.starts.admit(tenant.id, &tenant.schema).await?;
        let started = match &run.key {
            None => self.batched(tenant, &run).await?,
            Some(key) => self.starts.once(tenant, &run, key).await?,
        };
        let started = started.ok_or_else(|| StartError::NoIntegration(run.integration.to_string()))?;
        if !started.replayed && !self.supervisor.send(tenant.id, WorkerCommand::Execute(started.id)).await {
            tracing::warn!(execution_id = %started.id, "tenant worker not running here; the execution waits for it");
        }
        Ok(started)
    }

    /// A tenant with a full backlog is answered after about [`MOST_WAIT`],
    /// when its backlog is counted again: the refusal then costs a sleeping
    /// request, and a sender that does not wait for `Retry-After` is slowed
    /// to one request per connection per wait instead of flooding the node.
    /// The wait varies by half either way, so a flood's connections do not
    /// all come back, and get what room the backlog has, at one moment.
    async fn admit_queued(&self, tenant: &Tenant) -> Result<(), StartError> {
        let (book, db) = (&self.starts.book, &self.starts.db);
        let limit = book.of(tenant.id).await?.queued_executions;
        match book.admit_queued(db, tenant.id, &tenant.schema, limit).await {
            Err(AdmitError::Limit(_)) => {
                tokio::time::sleep(MOST_WAIT.mul_f64(rand::random_range(0.5..1.5))).await;
                Ok(book.admit_queued(db, tenant.id, &tenant.schema, limit).await?)
            }
            other => Ok(other?),
        }
    }

    /// Insert through the batcher; `None` when the integration is unknown
    /// or disabled.
    async fn batched(&self, tenant: &Tenant, run: &Run) -> Result<Option<Started>, StartError> {
        let (reply, answer) = oneshot::channel();
        let request = Request { tenant: tenant.clone(), id: Uuid::now_v7(), run: run.clone(), reply };
        let id = request.id;
        self.inserts.submit(request).await?;
        let inserted = answer.await.map_err(|_| Stopped("intake"))??;
        Ok(inserted.then(|| Started { id, state: "queued".into(), replayed: false }))
    }
}

/// A keyed run (its key `$5`): the first request inserts; any later one,
/// even concurrent, inserts nothing (the unique index decides, and `ON
/// CONFLICT DO NOTHING` waits for the first to commit), and finds its row.
static KEYED: LazyLock<String> = LazyLock::new(|| {
    let insert = insert_sql(
        "(VALUES ($1::uuid, $2::text, $3::int4, $4::jsonb, $5::text)) AS r(id, integration, version, trigger, idempotency_key)",
        &["idempotency_key"],
        "ON CONFLICT (integration, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id, state",
    );
    marking(&insert, "$6")
});

const EARLIER: &str = "SELECT id, state FROM @tenant.executions WHERE integration = $1 AND idempotency_key = $2";

impl Starts {
    /// Start `run` once per idempotency `key`; `None` when the integration
    /// is unknown or disabled.
    async fn once(&self, tenant: &Tenant, run: &Run, key: &str) -> Result<Option<Started>, StartError> {
        let name = run.integration.as_str();
        // Single statements, no transaction: the insert commits on its own
        // (one round trip), and a conflicting insert waits for the earlier
        // one to commit, so the lookup after it finds that execution.
        let inserted = self.db.statement(tenant, &KEYED, &[&Uuid::now_v7(), &name, &run.version, &run.trigger, &key, &tenant.id]).await?;
        if let Some(row) = inserted.first() {
            return Ok(Some(Started { id: row.get(0), state: row.get(1), replayed: false }));
        }
        let Some(row) = self.db.statement(tenant, EARLIER, &[&name, &key]).await?.into_iter().next() else { return Ok(None) };
        let earlier = Started { id: row.get(0), state: row.get(1), replayed: true };
        tracing::info!(execution_id = %earlier.id, "idempotency key seen before; answering with its execution");
        Ok(Some(earlier))
    }
}

/// One run waiting for its batch; answered whether it was inserted.
struct Request {
    tenant: Tenant,
    id: Uuid,
    run: Run,
    reply: oneshot::Sender<Result<bool, DbError>>,
}

/// The intake's statements, for the batcher.
struct Inserts {
    db: TenantDb,
}

/// A tenant's batch of runs, one array per column.
static BATCHED: LazyLock<String> = LazyLock::new(|| {
    let insert = insert_sql("unnest($1::uuid[], $2::text[], $3::int4[], $4::jsonb[]) AS r(id, integration, version, trigger)", &[], "RETURNING id");
    marking(&insert, "$5")
});

impl Inserts {
    /// `requests` (of one tenant) as the statement's columns.
    fn columns(requests: &[Request]) -> (Vec<Uuid>, Vec<&str>, Vec<Option<i32>>, Vec<&Value>) {
        let ids = requests.iter().map(|r| r.id).collect();
        let names = requests.iter().map(|r| r.run.integration.as_str()).collect();
        let versions = requests.iter().map(|r| r.run.version).collect();
        let triggers = requests.iter().map(|r| &r.run.trigger).collect();
        (ids, names, versions, triggers)
    }
}

impl TenantBatch for Inserts {
    type Request = Request;
    /// The ids inserted (those of an enabled integration).
    type Written = HashSet<Uuid>;

    fn tenant(request: &Request) -> (Uuid, &SchemaName) {
        (request.tenant.id, &request.tenant.schema)
    }

    fn db(&self) -> &TenantDb {
        &self.db
    }

    async fn write(&self, tx: &LaneTx, requests: &[Request]) -> Result<HashSet<Uuid>, DbError> {
        let (ids, names, versions, triggers) = Self::columns(requests);
        let tenant = &requests[0].tenant;
        let rows = tx.query(&tenant.schema, &BATCHED, &[&ids, &names, &versions, &triggers, &tenant.id]).await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    fn answer(&self, requests: Vec<Request>, inserted: HashSet<Uuid>) {
        requests.into_iter().for_each(|r| drop(r.reply.send(Ok(inserted.contains(&r.id)))));
    }

    async fn alone(&self, request: Request) {
        let (ids, names, versions, triggers) = Self::columns(std::slice::from_ref(&request));
        let tenant = &request.tenant;
        let result = self.db.statement(tenant, &BATCHED, &[&ids, &names, &versions, &triggers, &tenant.id]).await;
        let inserted = result.map(|rows| rows.iter().any(|row| row.get::<_, Uuid>(0) == request.id));
        let _ = request.reply.send(inserted);
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

    /// Wait for `tenant`'s turn to start an execution, up to [`MOST_WAIT`].
    pub(super) async fn admit(&self, tenant: Uuid) -> Result<(), StartError> {
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
                return Err(StartError::RateLimited { per_second: self.per_second, retry_after_secs: wait.as_secs().max(1) });
            }
            tokio::time::sleep(wait).await;
        }
    }
}
