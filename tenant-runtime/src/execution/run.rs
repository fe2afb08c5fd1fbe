//! One execution, from claim to final state: load the definition of its
//! version, run the steps in order (skipping the ones already
//! checkpointed, nested `choice` steps included), commit each step's
//! checkpoint before the next one starts.

use chrono::Utc;
use serde_json::Value;
use tracing::Instrument;
use uuid::Uuid;

use super::{steps, Claimed, Engine, Failure, Outcome, StepRecord, StepState, StoreError};
use crate::{
    definition::{Action, ChoiceAction, Integration, Name, Resource, Step},
    expression::{Context, ExecutionInfo},
    worker::TenantSpec,
};

/// Claim `id` and run it to its end. Returns an error only when the store
/// fails; every failure of the integration itself ends in `failed`.
pub(super) async fn execute(tenant: &TenantSpec, engine: &Engine, id: Uuid) -> Result<(), StoreError> {
    let Some(claimed) = engine.store.claim(tenant, id).await? else {
        return Ok(()); // finished already, or another worker holds it
    };
    let span = tracing::info_span!("execution", tenant = %tenant.slug, execution_id = %id, integration = %claimed.integration);
    async {
        let outcome = match prepare(id, claimed) {
            Ok((integration, context)) => run_within_budget(tenant, engine, id, &integration, context).await?,
            Err(failure) => Outcome::Failed(failure),
        };
        engine.store.finish(tenant, id, &outcome).await
    }
    .instrument(span)
    .await
}

/// The definition to run and the data its expressions read, with the
/// outputs of steps checkpointed before a restart already in place.
fn prepare(id: Uuid, claimed: Claimed) -> Result<(Integration, Context), Failure> {
    let integration = match serde_json::from_value::<Resource>(claimed.definition) {
        Ok(Resource::Integration(integration)) => integration,
        Ok(_) => return Err(Failure::new("invalid_definition", "the stored version is not an integration")),
        Err(e) => return Err(Failure::new("invalid_definition", format!("the stored version cannot be read: {e}"))),
    };
    let info = ExecutionInfo {
        id,
        integration: Name::try_from(claimed.integration).map_err(|e| Failure::new("invalid_definition", e.to_string()))?,
        version: u32::try_from(claimed.version).unwrap_or_default(),
    };
    let mut context = Context::new(claimed.trigger, claimed.vars, info);
    // Outputs are read by step name (names are unique in an integration,
    // nested steps included); the checkpoint's path ends with the name.
    let by_name = claimed.done.into_iter().map(|(path, output)| (path.rsplit('/').next().unwrap_or_default().to_string(), output));
    context.steps.extend(by_name);
    Ok((integration, context))
}

async fn run_within_budget(
    tenant: &TenantSpec,
    engine: &Engine,
    id: Uuid,
    integration: &Integration,
    mut context: Context,
) -> Result<Outcome, StoreError> {
    let budget = integration.spec.timeout.map(|t| t.get()).unwrap_or(engine.limits.default_timeout);
    let at = At { tenant, engine, id };
    match tokio::time::timeout(budget, run_steps(&at, &integration.spec.steps, "", &mut context)).await {
        Ok(Ok(Ok(output))) => Ok(Outcome::Succeeded(output)),
        Ok(Ok(Err(failure))) => Ok(Outcome::Failed(failure)),
        Ok(Err(e)) => Err(e),
        Err(_) => Ok(Outcome::Failed(Failure::new(
            "timeout",
            format!("the execution ran out of its time budget of {}", humantime::format_duration(budget)),
        ))),
    }
}

type Steps<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Result<Value, Failure>, StoreError>> + Send + 'a>>;

/// Run `steps` in order, each one's checkpoint committed before the next
/// starts; the result is the last step's output, or the failure that
/// stopped them. Boxed, because a `choice` runs its branch through it.
fn run_steps<'a>(
    at: &'a At<'a>,
    steps: &'a [Step],
    prefix: &'a str,
    context: &'a mut Context,
) -> Steps<'a> {
    Box::pin(async move {
        let mut last = Value::Null;
        for step in steps {
            let name = step.name.as_str();
            if let Some(output) = context.steps.get(name) {
                last = output.clone(); // checkpointed before a restart: never run twice
                continue;
            }
            let path = if prefix.is_empty() { name.to_string() } else { format!("{prefix}/{name}") };
            let record = match &step.action {
                Action::Choice(choice) => run_choice(at, choice, path, context).await?,
                _ => run_step(at, step, path, context).instrument(tracing::info_span!("step", step = %name)).await,
            };
            at.engine.store.checkpoint(at.tenant, at.id, &record).await?;
            match (record.state, record.output, record.error) {
                (StepState::Succeeded, Some(output), _) => {
                    context.steps.insert(name.to_string(), output.clone());
                    last = output;
                }
                (_, _, error) => return Ok(Err(error.unwrap_or_else(|| Failure::new("internal", "the step failed")))),
            }
        }
        Ok(Ok(last))
    })
}

/// Which execution the steps belong to.
struct At<'a> {
    tenant: &'a TenantSpec,
    engine: &'a Engine,
    id: Uuid,
}

/// The data a step saw, as recorded in its checkpoint.
fn recorded_input(data: &Value) -> Value {
    let mut input = data.clone();
    if let Some(fields) = input.as_object_mut() {
        fields.remove("vars"); // the same in every step; not worth a copy per checkpoint
    }
    input
}

fn step_failure(path: &str, e: &steps::StepError) -> Failure {
    Failure { code: e.code(), message: e.to_string(), step: Some(path.to_string()) }
}

/// Run one step under its own timeout and describe how it went.
async fn run_step(at: &At<'_>, step: &Step, path: String, context: &Context) -> StepRecord {
    let started_at = Utc::now();
    let data = context.to_value();
    let input = recorded_input(&data);
    let who = steps::Who {
        tenant: &at.tenant.slug,
        execution_id: at.id,
        step: step.name.as_str(),
        path: &path,
        spec: at.tenant,
        engine: at.engine,
    };
    let result = match step.timeout {
        Some(limit) => tokio::time::timeout(limit.get(), steps::perform(step, data, &who))
            .await
            .unwrap_or_else(|_| Err(steps::StepError::Timeout(limit.get()))),
        None => steps::perform(step, data, &who).await,
    };
    let (state, output, error) = match result {
        Ok(output) => (StepState::Succeeded, Some(output), None),
        Err(e) => (StepState::Failed, None, Some(step_failure(&path, &e))),
    };
    StepRecord { path, state, attempt: 1, input, output, error, started_at, finished_at: Utc::now() }
}

/// A `choice`: the steps of the first branch whose `when` holds (or of
/// `otherwise`), each checkpointed under the choice's path. Its output is
/// the last of those steps' output (`null` when none ran). A resumed choice
/// takes the same branch: its conditions read only checkpointed data.
async fn run_choice(at: &At<'_>, choice: &ChoiceAction, path: String, context: &mut Context) -> Result<StepRecord, StoreError> {
    let started_at = Utc::now();
    let data = context.to_value();
    let input = recorded_input(&data);
    let record = |result: Result<Value, Failure>| {
        let (state, output, error) = match result {
            Ok(output) => (StepState::Succeeded, Some(output), None),
            Err(failure) => (StepState::Failed, None, Some(failure)),
        };
        StepRecord { path: path.clone(), state, attempt: 1, input: input.clone(), output, error, started_at, finished_at: Utc::now() }
    };
    let mut chosen = None;
    for (i, branch) in choice.branches.iter().enumerate() {
        match steps::holds(branch.when.as_str(), data.clone()).await {
            Ok(true) => {
                chosen = Some((format!("{path}/branches[{i}]"), &branch.steps[..]));
                break;
            }
            Ok(false) => {}
            Err(e) => return Ok(record(Err(step_failure(&path, &e)))),
        }
    }
    let (prefix, steps) = chosen.unwrap_or_else(|| (format!("{path}/otherwise"), &choice.otherwise[..]));
    let result = run_steps(at, steps, &prefix, context).await?;
    Ok(record(result))
}
