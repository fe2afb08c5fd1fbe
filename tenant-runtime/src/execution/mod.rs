//! Durable executions: what one execution does, step by step, and the
//! store that makes it durable.
//!
//! The runtime does not know PostgreSQL: the server hands it an
//! [`ExecutionStore`] (implemented over its tenant-scoped database handle).
//! The rules it relies on (docs/engine.md): an execution exists once its
//! `queued` row is committed; each step's checkpoint is committed before the
//! next step starts; a resumed execution skips every step with a committed
//! output, so a finished step never runs twice.

mod call;
mod flow;
mod inline;
mod handlers;
mod retry;
mod publish;
pub mod http;
pub mod io;
pub mod oauth;
mod run;
pub mod sql;
mod sql_types;
mod steps;
pub mod versions;
pub use inline::{is_pure, InlineRun};

use std::{future::Future, panic::AssertUnwindSafe, pin::Pin, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use futures::FutureExt;
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::{amqp::Publishers, definition::ConnectionSpec, triggers::TriggerStore, worker::TenantSpec};

/// What a store call returns: boxed, so the store can be a trait object
/// shared by every worker of the node.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Where executions and their checkpoints are kept. Every call names the
/// tenant, whose schema is the only one it may touch.
pub trait ExecutionStore: Send + Sync + 'static {
    /// The tenant's executions left `queued` or `running` (by a node that
    /// stopped), oldest first; child executions of `call` steps are left
    /// out, because their parent resumes them.
    fn unfinished<'a>(&'a self, tenant: &'a TenantSpec) -> StoreFuture<'a, Vec<Uuid>>;
    /// Mark `id` running and load what running it needs. `None` when it is
    /// finished, unknown, or being claimed by someone else at this moment.
    fn claim<'a>(&'a self, tenant: &'a TenantSpec, id: Uuid) -> StoreFuture<'a, Option<Claimed>>;
    /// Commit one step's record (its checkpoint).
    fn checkpoint<'a>(&'a self, tenant: &'a TenantSpec, id: Uuid, step: &'a StepRecord) -> StoreFuture<'a, ()>;
    /// The checkpoint of a step with no effect outside its execution (a
    /// `transform`, `log` or `fail`, which a resume runs again to the same
    /// result): a store may commit it with the execution's next write
    /// instead of before the next step starts, as long as it commits it no
    /// later than that write. By default, at once.
    fn checkpoint_pure<'a>(&'a self, tenant: &'a TenantSpec, id: Uuid, step: &'a StepRecord) -> StoreFuture<'a, ()> {
        self.checkpoint(tenant, id, step)
    }
    /// Record the final state of a running execution.
    fn finish<'a>(&'a self, tenant: &'a TenantSpec, id: Uuid, outcome: &'a Outcome) -> StoreFuture<'a, ()>;
    /// Record that a `queued` or `running` execution was cancelled (its
    /// task is stopped); finished ones stay as they are. A claim of an
    /// execution whose cancel was requested cancels it the same way.
    fn cancelled<'a>(&'a self, tenant: &'a TenantSpec, id: Uuid) -> StoreFuture<'a, ()>;
    /// The child execution a `call` step runs: created `queued` at the
    /// called integration's current version the first time, found again
    /// (same id) when the parent asks again for the same step and attempt.
    fn start_call<'a>(&'a self, tenant: &'a TenantSpec, call: &'a CallRequest) -> StoreFuture<'a, CallStart>;
    /// How execution `id` ended; `None` while it is unfinished or unknown.
    fn ended<'a>(&'a self, tenant: &'a TenantSpec, id: Uuid) -> StoreFuture<'a, Option<Ended>>;
    /// The tenant's worker has been idle a while: forget that the tenant
    /// has work, unless it has some (an unfinished execution, an enabled
    /// schedule or queue trigger), atomically with whatever stores new work.
    /// `true`: the worker may stop, and starts again when work comes.
    fn retire<'a>(&'a self, tenant: &'a TenantSpec) -> StoreFuture<'a, bool>;
}

/// A `call` step asking for its child execution.
#[derive(Debug, Clone)]
pub struct CallRequest {
    pub parent: Uuid,
    /// The call step's path in the parent.
    pub step: String,
    /// The call step's attempt: each retry runs a child of its own.
    pub attempt: i32,
    pub integration: String,
    /// The child's trigger: `{"kind": "call", "parent": <id>, "body": <input>}`.
    pub trigger: Value,
}

/// What [`ExecutionStore::start_call`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallStart {
    Child(Uuid),
    /// The tenant has no integration of that name.
    Unknown,
    Disabled,
    /// A new child would be over one of the tenant's limits (`stored_executions`).
    OverLimit(crate::limits::LimitExceeded),
}

/// A finished execution's end, as stored.
#[derive(Debug, Clone, PartialEq)]
pub enum Ended {
    Succeeded(Value),
    Failed { code: String, message: String },
}

/// A tenant's connections, their secrets opened, for the steps and
/// triggers that use them. Implemented by the server, which holds the keys
/// that seal them at rest; an opened connection is never stored or logged.
pub trait Connections: Send + Sync + 'static {
    /// The tenant's connection `name`; `None` when it has none of that name.
    fn open<'a>(&'a self, tenant: &'a TenantSpec, name: &'a str) -> OpenFuture<'a>;
}

pub type OpenFuture<'a> = Pin<Box<dyn Future<Output = Result<Option<ConnectionSpec>, OpenError>> + Send + 'a>>;

/// Why a tenant's connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The store failed (the database unreachable or busy): not a failure
    /// of the step that asked, which runs again once the store answers.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored connection cannot be used (sealed with a key this node
    /// does not have, say): the step fails.
    #[error("{0}")]
    Unusable(String),
}

#[derive(Debug, thiserror::Error)]
#[error("execution store: {0}")]
pub struct StoreError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// A claimed execution: the version it runs and what it already did.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub integration: String,
    pub version: i32,
    /// The stored resource of that version (`apiVersion`, `kind`, `metadata`, `spec`).
    pub definition: Value,
    /// `{"kind": "manual", "body": …}`
    pub trigger: Value,
    /// The tenant's variables.
    pub vars: Map<String, Value>,
    /// Outputs of the steps whose checkpoint says they succeeded, by path.
    pub done: Vec<(String, Value)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    Succeeded,
    Failed,
}

impl StepState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }
}

/// One step's checkpoint.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    /// The step's place: its name at the top level (`route/branches[0]/notify` inside nesting).
    pub path: String,
    pub state: StepState,
    pub attempt: i32,
    /// What the step read: the execution's data (without the tenant's variables).
    pub input: Value,
    pub output: Option<Value>,
    pub error: Option<Failure>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

/// How an execution ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// With the output of its last step.
    Succeeded(Value),
    Failed(Failure),
}

/// Why a step or an execution failed, as stored in its `error` column.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    /// Stable and machine-readable: `expression_failed`, `fail`, `timeout`,
    /// `unsupported_step`, `invalid_definition`, `panic`, …
    pub code: &'static str,
    pub message: String,
    /// The path of the step that failed, when a step did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
}

impl Failure {
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), step: None }
    }
}

/// The idempotency key of the step run at `path` in `execution`: a UUID
/// (version 8, RFC 9562) made of the first 16 bytes of SHA-256 over the
/// execution id's 16 bytes followed by the path in UTF-8.
///
/// It is derived from nothing else, so every attempt of the step, and every
/// run of it after the execution resumed (on this node or another), has
/// the same key, and any other step run (another step, another `foreach`
/// item, another `parallel` branch, a handler) has another. A digest rather
/// than `<id>/<path>` in clear: a path grows with nesting (up to 128 levels
/// of 63-character names), while APIs cap their keys (Stripe at 255
/// characters, others at 64 or fewer, some ask for a UUID); a UUID is 36
/// characters of hex and hyphens, safe in any header, URL or JSON field.
/// The path is beside it in `.step.path` for whoever reads the logs.
pub fn idempotency_key(execution: Uuid, path: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new().chain_update(execution.as_bytes()).chain_update(path.as_bytes()).finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid().to_string()
}

/// Limits every worker of the node applies (each tenant's own are in its
/// [`TenantSpec`]).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time budget of an execution whose integration sets none.
    pub default_timeout: Duration,
    /// A worker with nothing to run and no schedule or queue trigger stops
    /// after this long idle, so a node holds workers only for tenants with
    /// work (it starts again on the next command).
    pub retire_idle_after: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self { default_timeout: Duration::from_secs(300), retire_idle_after: Duration::from_secs(60) }
    }
}

/// What workers need to run executions: the store, the tenant's
/// connections, the limits and the node's clients for other systems.
#[derive(Clone)]
pub struct Engine {
    pub store: Arc<dyn ExecutionStore>,
    pub connections: Arc<dyn Connections>,
    pub limits: Limits,
    /// What schedule and queue triggers read and write.
    pub triggers: Arc<dyn TriggerStore>,
    /// Publishing channels of `publish` steps, per tenant and connection.
    pub publishers: Publishers,
    /// The HTTP client, OAuth tokens and SQL pools, built once per node.
    pub io: Arc<io::Io>,
    /// Integration versions parsed once, not on every execution.
    pub versions: versions::Versions,
}

/// Run one execution to its end. A panic inside it fails that execution
/// only. A store failure (the database unreachable or too busy to answer
/// in time, or this node's lease of the tenant lost) interrupts it where
/// it is: it stays `queued` or `running`, and runs again from its last
/// checkpoint after a pause, for as long as this worker runs. The retries
/// end with the worker: a node that cannot reach the database for a lease's
/// lifetime stops its workers, and the tenant's next owner resumes the
/// execution when its worker starts.
pub(crate) async fn run_guarded(tenant: &TenantSpec, engine: &Engine, id: Uuid) {
    let mut pause = FIRST_PAUSE;
    loop {
        match AssertUnwindSafe(run::execute(tenant, engine, id, 0)).catch_unwind().await {
            Ok(Ok(())) => return,
            Ok(Err(e)) => {
                tracing::warn!(tenant = %tenant.slug, execution_id = %id, error = %e, ?pause, "execution interrupted; it runs again from its last checkpoint");
                tokio::time::sleep(jittered(pause)).await;
                pause = (pause * 2).min(LAST_PAUSE);
            }
            Err(panic) => {
                let message = panic_message(panic.as_ref());
                tracing::error!(tenant = %tenant.slug, execution_id = %id, panic = %message, "execution panicked");
                let outcome = Outcome::Failed(Failure::new("panic", format!("the execution stopped unexpectedly: {message}")));
                if let Err(e) = engine.store.finish(tenant, id, &outcome).await {
                    tracing::error!(tenant = %tenant.slug, execution_id = %id, error = %e, "cannot record a panicked execution");
                }
                return;
            }
        }
    }
}

/// The pauses before an interrupted execution runs again: doubling from
/// the first to the last.
const FIRST_PAUSE: Duration = Duration::from_millis(250);
const LAST_PAUSE: Duration = Duration::from_secs(5);

/// 50% to 150% of `pause`, so executions interrupted together (a database
/// restart) do not all come back at the same moment.
fn jittered(pause: Duration) -> Duration {
    use rand::Rng;
    pause.mul_f64(rand::rng().random_range(0.5..=1.5))
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod flow_tests;
#[cfg(test)]
mod limits_tests;
#[cfg(test)]
mod step_key_tests;
