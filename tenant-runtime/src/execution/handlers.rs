//! `on_error` handlers: a step's own (run when it fails for good, after its
//! retries; the execution then goes on) and the integration's (run when the
//! execution fails; it stays failed).
//!
//! Handlers see the failure as `.error = {code, message, step}` in a copy of
//! the failed step's scope, so `.error` is gone again after them.

use chrono::Utc;
use serde_json::Value;

use super::{
    run::{self, At},
    Failure, StepRecord, StepState, StoreError,
};
use crate::{definition::Step, expression::Context};

/// `step` failed for good (its failed checkpoint is committed). Without
/// `on_error` steps, that fails its scope. Otherwise they run, each
/// checkpointed under `<path>/on_error/<name>`; a failing one fails the
/// scope with its own failure. When they succeed, the last one's output
/// becomes the step's output, and the step's checkpoint is committed again
/// as `succeeded` with that output, keeping the handled `error` beside it,
/// so a resumed execution does not run the step again.
pub(super) async fn on_step_failure(
    at: &At<'_>,
    step: &Step,
    record: StepRecord,
    context: &Context,
) -> Result<Result<Value, Failure>, StoreError> {
    let failure = record.error.clone().unwrap_or_else(|| Failure::new("internal", "the step failed"));
    if step.on_error.is_empty() {
        return Ok(Err(failure));
    }
    let mut scope = context.clone();
    scope.error = Some(error_value(&failure));
    let prefix = format!("{}/on_error", record.path);
    let output = match run::run_steps(at, &step.on_error, &prefix, &mut scope).await? {
        Ok(output) => output,
        Err(handler_failure) => return Ok(Err(handler_failure)),
    };
    let handled = StepRecord { state: StepState::Succeeded, output: Some(output.clone()), finished_at: Utc::now(), ..record };
    at.engine.store.checkpoint(at.tenant, at.id, &handled).await?;
    Ok(Ok(output))
}

/// The execution failed with `failure`: run the integration's `on_error`
/// steps, checkpointed under `on_error/<name>`, within a budget of their
/// own (the node's default execution budget), since the execution's may
/// be spent. Their own failure is recorded in their checkpoints and logged;
/// it never replaces the execution's failure.
pub(super) async fn after_failure(at: &At<'_>, handlers: &[Step], failure: &Failure, mut context: Context) -> Result<(), StoreError> {
    if handlers.is_empty() {
        return Ok(());
    }
    context.error = Some(error_value(failure));
    let budget = at.engine.limits.default_timeout;
    let (tenant, execution_id) = (&at.tenant.slug, at.id);
    match tokio::time::timeout(budget, run::run_steps(at, handlers, "on_error", &mut context)).await {
        Ok(Ok(Ok(_))) => tracing::info!(%tenant, %execution_id, "the integration's on_error steps ran"),
        Ok(Ok(Err(handler))) => {
            tracing::warn!(%tenant, %execution_id, code = handler.code, step = ?handler.step, message = %handler.message, "the integration's on_error steps failed")
        }
        Ok(Err(e)) => return Err(e),
        Err(_) => tracing::warn!(%tenant, %execution_id, "the integration's on_error steps ran out of their time budget"),
    }
    Ok(())
}

fn error_value(failure: &Failure) -> Value {
    serde_json::json!({ "code": failure.code, "message": failure.message, "step": failure.step })
}
