//! One execution, from claim to final state: load the definition of its
//! version, run the steps in order, commit each step's checkpoint before
//! the next one starts.
//!
//! Checkpoints are keyed by the step's full path (`route/branches[0]/x`,
//! `each/items[3]/x`, `both/left/x`, `x/on_error/y`), and so is resuming: a
//! step whose path has a committed output is not run again, its output is
//! put back in its scope. Retries live in `retry`, `on_error` in
//! `handlers`, `foreach`/`parallel` in `flow`, `call` in `call`.

use std::{
    collections::HashMap,
    sync::{atomic::AtomicUsize, Arc},
};

use serde_json::Value;
use tracing::Instrument;
use uuid::Uuid;

use super::{
    call, flow, handlers,
    retry::{self, Attempted},
    steps, Claimed, Engine, Failure, Outcome, StepState, StoreError,
};
use crate::{
    definition::{Action, ChoiceAction, Integration, Name, Step},
    expression::{Context, ExecutionInfo, StepInfo},
    limits::json_size,
    worker::TenantSpec,
};

/// Claim `id` and run it to its end. Returns an error only when the store
/// fails; every failure of the integration itself ends in `failed`.
/// `depth` is how many `call` steps this execution is nested in (0 for one
/// a trigger started).
pub(super) async fn execute(tenant: &TenantSpec, engine: &Engine, id: Uuid, depth: u32) -> Result<(), StoreError> {
    let Some(claimed) = engine.store.claim(tenant, id).await? else {
        return Ok(()); // finished already, or another worker holds it
    };
    let span = tracing::info_span!("execution", tenant = %tenant.slug, execution_id = %id, integration = %claimed.integration);
    async {
        let outcome = match prepare(tenant, engine, id, claimed) {
            Ok((integration, context, done)) => {
                // What a run before a restart recorded counts too (its outputs; inputs are not read back).
                let recorded = AtomicUsize::new(done.values().map(json_size).sum());
                let at = At { tenant, engine, id, done: &done, depth, recorded: &recorded };
                run_within_budget(&at, &integration, context).await?
            }
            Err(failure) => Outcome::Failed(failure),
        };
        engine.store.finish(tenant, id, &outcome).await
    }
    .instrument(span)
    .await
}

/// The definition to run, the data its expressions read, and the outputs
/// of the steps checkpointed before a restart, by path.
fn prepare(tenant: &TenantSpec, engine: &Engine, id: Uuid, claimed: Claimed) -> Result<(Arc<Integration>, Context, HashMap<String, Value>), Failure> {
    let integration = engine.versions.get(tenant.id, &claimed.integration, claimed.version, &claimed.definition)?;
    let info = ExecutionInfo {
        id,
        integration: Name::try_from(claimed.integration).map_err(|e| Failure::new("invalid_definition", e.to_string()))?,
        version: u32::try_from(claimed.version).unwrap_or_default(),
    };
    let context = Context::new(claimed.trigger, claimed.vars, info);
    Ok((integration, context, claimed.done.into_iter().collect()))
}

async fn run_within_budget(at: &At<'_>, integration: &Integration, mut context: Context) -> Result<Outcome, StoreError> {
    let budget = integration.spec.timeout.map(|t| t.get()).unwrap_or(at.engine.limits.default_timeout);
    let failure = match tokio::time::timeout(budget, run_steps(at, &integration.spec.steps, "", &mut context)).await {
        Ok(Ok(Ok(output))) => return Ok(Outcome::Succeeded(output)),
        Ok(Ok(Err(failure))) => failure,
        Ok(Err(e)) => return Err(e),
        Err(_) => Failure::new(
            "timeout",
            format!("the execution ran out of its time budget of {}", humantime::format_duration(budget)),
        ),
    };
    handlers::after_failure(at, &integration.spec.on_error, &failure, context).await?;
    Ok(Outcome::Failed(failure))
}

pub(super) type Steps<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Result<Value, Failure>, StoreError>> + Send + 'a>>;

/// Run `steps` in order, each one's checkpoint committed before the next
/// starts; each output goes into `context.steps` under the step's name, so
/// later steps of this scope (and of scopes nested in it) read it. The
/// result is the last step's output, or the failure that stopped them.
/// Boxed, because nested steps run through it again.
pub(super) fn run_steps<'a>(at: &'a At<'a>, steps: &'a [Step], prefix: &'a str, context: &'a mut Context) -> Steps<'a> {
    Box::pin(async move {
        let mut last = Value::Null;
        for step in steps {
            let name = step.name.as_str();
            let path = if prefix.is_empty() { name.to_string() } else { format!("{prefix}/{name}") };
            let output = match at.done.get(&path) {
                Some(output) => output.clone(), // checkpointed before a restart: never run twice
                None => {
                    let span = tracing::info_span!("step", step = %path);
                    match run_step(at, step, path, context).instrument(span).await? {
                        Ok(output) => output,
                        Err(failure) => return Ok(Err(failure)),
                    }
                }
            };
            context.steps.insert(name.to_string(), output.clone());
            last = output;
        }
        Ok(Ok(last))
    })
}

/// Which execution the steps belong to, and what it did before a restart.
pub(super) struct At<'a> {
    pub tenant: &'a TenantSpec,
    pub engine: &'a Engine,
    pub id: Uuid,
    /// Outputs of the steps checkpointed before a restart, by path.
    pub done: &'a HashMap<String, Value>,
    /// How many `call` steps deep this execution runs.
    pub depth: u32,
    /// Bytes of the execution's step records so far, held to the tenant's
    /// limit `execution_record_bytes`.
    pub recorded: &'a AtomicUsize,
}

/// One step: its attempts (each failed one checkpointed, the last one
/// too), then its `on_error` steps if it failed for good.
async fn run_step(at: &At<'_>, step: &Step, path: String, context: &mut Context) -> Result<Result<Value, Failure>, StoreError> {
    let record = retry::run_attempts(at, step, path, context).await?;
    match record.state {
        StepState::Succeeded => Ok(Ok(record.output.unwrap_or(Value::Null))),
        StepState::Failed => handlers::on_step_failure(at, step, record, context).await,
    }
}

/// One attempt of `step`: its expressions read which step and attempt
/// this is in `.step`, for this attempt only (nested steps set their own,
/// and it is gone from the scope afterwards).
pub(super) async fn perform(
    at: &At<'_>,
    step: &Step,
    path: &str,
    attempt: i32,
    context: &mut Context,
) -> Result<Result<Value, Attempted>, StoreError> {
    context.step = Some(StepInfo {
        name: step.name.as_str().to_string(),
        path: path.to_string(),
        idempotency_key: super::idempotency_key(at.id, path),
        attempt: u32::try_from(attempt).unwrap_or(1),
    });
    let result = perform_action(at, step, path, attempt, context).await;
    context.step = None;
    result
}

/// One attempt of `step`'s action. Steps that nest others are run here;
/// the rest in `steps::perform`.
async fn perform_action(
    at: &At<'_>,
    step: &Step,
    path: &str,
    attempt: i32,
    context: &mut Context,
) -> Result<Result<Value, Attempted>, StoreError> {
    match &step.action {
        Action::Choice(choice) => Ok(run_choice(at, choice, path, context).await?.map_err(Attempted::nested)),
        Action::Foreach(each) => flow::foreach(at, each, path, context).await,
        Action::Parallel(parallel) => flow::parallel(at, parallel, path, context).await,
        Action::Call(action) => call::call(at, action, path, attempt, context).await,
        _ => {
            let who = steps::Who {
                tenant: &at.tenant.slug,
                execution_id: at.id,
                step: step.name.as_str(),
                path,
                spec: at.tenant,
                engine: at.engine,
            };
            match steps::perform(step, context.to_value(), &who).await {
                Ok(output) => Ok(Ok(output)),
                Err(e) => match e.into_store_error() {
                    Ok(store) => Err(store),
                    Err(e) => Ok(Err(Attempted::step(path, &e))),
                },
            }
        }
    }
}

/// The data a step saw, as recorded in its checkpoint (and given to a
/// called integration without an `input`).
pub(super) fn recorded_input(data: &Value) -> Value {
    let mut input = data.clone();
    if let Some(fields) = input.as_object_mut() {
        fields.remove("vars"); // the same in every step; not worth a copy per checkpoint
        fields.remove("step"); // the checkpoint's own path and attempt; derived, not data
    }
    input
}

pub(super) fn step_failure(path: &str, e: &steps::StepError) -> Failure {
    Failure { code: e.code(), message: e.to_string(), step: Some(path.to_string()) }
}

/// A `choice`: the steps of the first branch whose `when` holds (or of
/// `otherwise`), each checkpointed under the choice's path and sharing the
/// choice's scope (only one branch runs, so later steps may read them).
/// Its output is the last of those steps' output (`null` when none ran).
/// A resumed choice takes the same branch: its conditions read only
/// checkpointed data.
async fn run_choice(at: &At<'_>, choice: &ChoiceAction, path: &str, context: &mut Context) -> Result<Result<Value, Failure>, StoreError> {
    let data = context.to_value();
    let mut chosen = None;
    for (i, branch) in choice.branches.iter().enumerate() {
        match steps::holds(at.tenant.id, branch.when.as_str(), data.clone()).await {
            Ok(true) => {
                chosen = Some((format!("{path}/branches[{i}]"), &branch.steps[..]));
                break;
            }
            Ok(false) => {}
            Err(e) => return Ok(Err(step_failure(path, &e))),
        }
    }
    let (prefix, steps) = chosen.unwrap_or_else(|| (format!("{path}/otherwise"), &choice.otherwise[..]));
    run_steps(at, steps, &prefix, context).await
}
