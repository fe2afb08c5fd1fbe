//! Starting executions: the one place a new execution is inserted, whatever
//! starts it: a webhook or an API run (through the [`Intake`]), a
//! schedule's tick, a queue message or a `call` step (through the worker's
//! stores, `worker.rs`). A caller says what it starts; this module decides
//! how, and keeps the invariants every start shares:
//!
//! - **What starts.** Only an enabled integration, at the version asked
//!   for or else its current one. A disabled or unknown integration is not
//!   there for its callers: nothing is inserted ([`insert_sql`], the shape
//!   of every insert).
//! - **Limits.** No tenant stores more executions than its limit
//!   `stored_executions`, checked before the insert ([`Starts::admit`]);
//!   webhooks and API runs also wait their turn at the tenant's intake rate
//!   on this node ([`IntakeLimit`]) and are refused while its backlog of
//!   queued executions is full (`queued_executions`).
//! - **At most once.** A repeated request starts nothing new: an
//!   `Idempotency-Key` (webhooks, API runs), a queue message's id, a
//!   tick's expected time (compare-and-set of its schedule) and a `call`
//!   step's (parent, step, attempt) each name one execution.
//! - **Accept = commit, then wake** (docs/engine.md, rule 1). A start is
//!   answered only once its `queued` row is committed. One from outside the
//!   worker (webhook, API run) then wakes the tenant's worker, wherever it
//!   runs: a lost wake-up only delays it, since a worker that starts picks
//!   up every unfinished execution of its tenant. One the worker made
//!   itself (tick, message, call) is handed back to that worker, which
//!   runs it.
//!
//! Must never be bypassed: no other module inserts into `executions`, so a
//! new trigger is a new method here and keeps these invariants for free.

mod inline;
mod intake;
mod worker;

pub use inline::InlineEnded;
pub use intake::{Intake, IntakeLimit, Run, Started, MOST_WAIT};
use tessera_runtime::limits::LimitExceeded;
use uuid::Uuid;

use crate::{
    tenancy::batch::Stopped,
    database::DbError,
    limits::{AdmitError, LimitBook},
    tenancy::{SchemaName, TenantDb},
};

/// Why a webhook or an API run started nothing.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Stopped(#[from] Stopped),
    #[error("this tenant starts executions faster than its limit of {per_second} per second; retry in {retry_after_secs} s")]
    RateLimited { per_second: u32, retry_after_secs: u64 },
    /// Over the tenant's limit `stored_executions`.
    #[error(transparent)]
    Limit(LimitExceeded),
    /// The integration is unknown or disabled.
    #[error("there is no enabled integration '{0}'")]
    NoIntegration(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<AdmitError> for StartError {
    fn from(e: AdmitError) -> Self {
        match e {
            AdmitError::Limit(e) => Self::Limit(e),
            AdmitError::Db(e) => Self::Db(e),
        }
    }
}

/// Inserts new executions into tenants' schemas, within their limits.
#[derive(Clone)]
pub struct Starts {
    db: TenantDb,
    /// The tenants' limits: `stored_executions` is checked here.
    book: LimitBook,
}

impl Starts {
    pub fn new(db: TenantDb, book: LimitBook) -> Self {
        Self { db, book }
    }

    /// May tenant `id` (schema `schema`) store one more execution? Its
    /// limit is read from the book, not from a worker's `TenantSpec`: a
    /// running queue consumer keeps the spec it started with.
    async fn admit(&self, id: Uuid, schema: &SchemaName) -> Result<(), AdmitError> {
        let limit = self.book.of(id).await?.stored_executions;
        self.book.admit_stored(&self.db, id, schema, limit).await
    }
}

/// `insert` (an [`insert_sql`] ending in `RETURNING`) that also marks the
/// tenant, parameter `tenant`, as having work when it inserted a row: for
/// the starts that come from outside the tenant's worker, which may not
/// run (`tenancy::work`). One statement, so its lock on `executions` is
/// taken before the mark, as the protocol wants.
fn marking(insert: &str, tenant: &str) -> String {
    format!(
        "WITH inserted AS ({insert}), \
         marked AS (INSERT INTO platform.tenant_work (tenant_id) SELECT {tenant}::uuid WHERE EXISTS (SELECT 1 FROM inserted) \
                    ON CONFLICT (tenant_id) DO NOTHING) \
         SELECT * FROM inserted"
    )
}

/// The insert every start makes. `requested` is a `FROM` item of rows
/// `r(id, integration, version, trigger, <extra>…)`; one `queued` execution
/// is inserted per row whose integration is enabled, at `r.version` or,
/// when that is null, the integration's current version. `extra` names the
/// further columns a start records (its idempotency key, its parent), and
/// `tail` ends the statement (`ON CONFLICT …`, `RETURNING …`).
fn insert_sql(requested: &str, extra: &[&str], tail: &str) -> String {
    let columns: String = extra.iter().map(|c| format!(", {c}")).collect();
    let values: String = extra.iter().map(|c| format!(", r.{c}")).collect();
    format!(
        "INSERT INTO @tenant.executions (id, integration, version, trigger{columns}) \
         SELECT r.id, i.name, COALESCE(r.version, i.current_version), r.trigger{values} \
         FROM {requested} JOIN @tenant.integrations i ON i.name = r.integration AND i.enabled {tail}"
    )
}
