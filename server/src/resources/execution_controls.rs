//! What a tenant does to an execution after it started: cancel it, retry a
//! failed one from the step that failed; and the idempotency keys that let
//! a trigger's caller repeat a request without starting a second run.
//! Editors and above.
//!
//! The database decides every race: the execution row is locked while its
//! state is read and changed, and the worker is told only after the commit
//! (a lost message only delays the effect: a claim honours a requested
//! cancel, and a worker that starts resumes queued executions).

use std::time::Duration;

use tessera_runtime::{Supervisor, WorkerCommand};
use uuid::Uuid;
use serde_json::json;

use super::{
    executions::{self, Execution},
    parse_id, ResourceError,
};
use crate::{
    audit::Change,
    engine::endings::Endings,
    auth::{Role, TenantCaller},
    tenancy::{TenantDb, TenantTx},
};

/// The longest a cancel of a running execution waits for its worker to
/// record the final state before answering (with the state it then has).
const CANCEL_WAIT: Duration = Duration::from_secs(5);
/// The longest idempotency key accepted (the column's limit too).
pub const MAX_KEY_CHARS: usize = 255;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("execution {id} is already {state}; only queued or running executions can be cancelled")]
    Finished { id: Uuid, state: String },
    #[error("execution {id} is {state}; only failed executions can be retried")]
    NotFailed { id: Uuid, state: String },
    #[error(transparent)]
    Resource(#[from] ResourceError),
}

impl From<crate::database::DbError> for ControlError {
    fn from(e: crate::database::DbError) -> Self {
        ControlError::Resource(e.into())
    }
}

/// A caller's `Idempotency-Key`: 1 to 255 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<Self, ResourceError> {
        let invalid = ResourceError::InvalidIdempotencyKey;
        match raw.chars().count() {
            0 => Err(invalid("must not be empty".into())),
            n if n > MAX_KEY_CHARS => Err(invalid(format!("is {n} characters long; at most {MAX_KEY_CHARS} are allowed"))),
            _ => Ok(Self(raw.to_string())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The state of execution `id`, its row locked until the transaction ends.
async fn locked_state(tx: &mut TenantTx, id: Uuid) -> Result<String, ControlError> {
    let sql = "SELECT state FROM @tenant.executions WHERE id = $1 FOR UPDATE";
    let row = tx.query_opt(sql, &[&id]).await?.ok_or_else(|| executions::not_found(id))?;
    Ok(row.get(0))
}

/// `queued` → `cancelled` at once; `running` → its cancel is recorded and
/// its worker stops it (the answer waits a little for that); finished → 409.
pub async fn cancel(db: &TenantDb, endings: &Endings, supervisor: &Supervisor, caller: &TenantCaller, id: &str) -> Result<Execution, ControlError> {
    caller.require(Role::Editor).map_err(ResourceError::from)?;
    let id = parse_id("execution", id)?;
    let tenant = &caller.tenant;
    let mut tx = db.begin(tenant).await?;
    let state = locked_state(&mut tx, id).await?;
    let sql = match state.as_str() {
        "queued" => "UPDATE @tenant.executions SET state = 'cancelled', cancel_requested = true, finished_at = now() WHERE id = $1",
        "running" => "UPDATE @tenant.executions SET cancel_requested = true WHERE id = $1",
        _ => return Err(ControlError::Finished { id, state }),
    };
    tx.execute(sql, &[&id]).await?;
    caller.record(&mut tx, Change::new("execution.cancel", "execution", id.to_string()).with(json!({"state": state}))).await?;
    tx.commit().await?;
    tracing::info!(execution_id = %id, was = %state, "cancel requested");
    // A queued one may sit in the worker, waiting for a slot: stop that too.
    if !supervisor.send(tenant.id, WorkerCommand::Cancel(id)).await {
        tracing::warn!(execution_id = %id, "tenant worker not running here; its next claim cancels the execution");
    }
    if state == "running" {
        return Ok(executions::wait_for_end(db, endings, tenant, id, CANCEL_WAIT).await?);
    }
    Ok(executions::load(db, tenant, id).await?)
}

/// Checkpoints a retry removes: every one that did not succeed (the failed
/// step, and a `choice` that failed around it) and the error handlers'
/// (`on_error/…` or `…/on_error/…`), which run again if it fails again.
const RETRY_FORGETS: &str = "DELETE FROM @tenant.execution_steps WHERE execution_id = $1 \
     AND (state <> 'succeeded' OR path LIKE 'on_error/%' OR path LIKE '%/on_error/%')";

const REQUEUE: &str = "UPDATE @tenant.executions SET state = 'queued', output = NULL, error = NULL, \
     finished_at = NULL, cancel_requested = false, retries = retries + 1 WHERE id = $1";

/// A failed execution goes back to `queued`, keeping its succeeded steps'
/// checkpoints, so it resumes at the step that failed; then its worker is
/// woken. Anything but `failed` → 409.
pub async fn retry(db: &TenantDb, supervisor: &Supervisor, caller: &TenantCaller, id: &str) -> Result<Execution, ControlError> {
    caller.require(Role::Editor).map_err(ResourceError::from)?;
    let id = parse_id("execution", id)?;
    let tenant = &caller.tenant;
    let mut tx = db.begin(tenant).await?;
    let state = locked_state(&mut tx, id).await?;
    if state != "failed" {
        return Err(ControlError::NotFailed { id, state });
    }
    let forgotten = tx.execute(RETRY_FORGETS, &[&id]).await?;
    tx.execute(REQUEUE, &[&id]).await?;
    crate::tenancy::work::mark(&mut tx, tenant.id).await?;
    caller.record(&mut tx, Change::new("execution.retry", "execution", id.to_string()).with(json!({"steps_forgotten": forgotten}))).await?;
    tx.commit().await?;
    tracing::info!(execution_id = %id, forgotten, "failed execution queued again");
    let execution = executions::load(db, tenant, id).await?;
    if !supervisor.send(tenant.id, WorkerCommand::Execute(id)).await {
        tracing::warn!(execution_id = %id, "tenant worker not running here; the execution waits for it");
    }
    Ok(execution)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_one_to_255_characters() {
        assert!(IdempotencyKey::parse("order-42").is_ok());
        assert!(IdempotencyKey::parse(&"é".repeat(255)).is_ok(), "characters, not bytes");
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
        assert!(IdempotencyKey::parse("").is_err());
    }
}
