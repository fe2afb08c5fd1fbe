//! Steps that run other steps side by side: `foreach` (the same steps once
//! per item, at most `concurrency` items at once) and `parallel` (named
//! branches at once).
//!
//! Each item or branch runs in a copy of the enclosing scope: its steps
//! read `.steps.<name>` of their own item/branch and of the scopes around
//! it, never of a sibling. Everything runs inside the execution's own task
//! (jq on blocking threads), so the per-tenant concurrency permit is not
//! taken again and the execution's budget bounds it all.

use futures::{stream, StreamExt};
use serde_json::{Map, Value};

use super::{
    retry::Attempted,
    run::{self, At},
    steps, StoreError,
};
use crate::{
    definition::{ForeachAction, ParallelAction},
    expression::Context,
    limits::LimitExceeded,
};

/// `items` must give an array. Item `i` runs with `.item` and `.index`,
/// its steps checkpointed under `<path>/items[<i>]/<name>`. The output is
/// the array of each item's last output, in item order. The first failing
/// item (in item order) fails the step; items still running then are
/// cancelled (their finished steps stay checkpointed).
pub(super) async fn foreach(
    at: &At<'_>,
    each: &ForeachAction,
    path: &str,
    context: &Context,
) -> Result<Result<Value, Attempted>, StoreError> {
    let items = match steps::evaluate(at.tenant.id, each.items.as_str(), context.to_value()).await {
        Ok(Value::Array(items)) => items,
        Ok(other) => {
            let message = format!("`items` must give an array, but it gave {}", type_name(&other));
            return Ok(Err(Attempted::other(path, "not_a_list", message)));
        }
        Err(e) => return Ok(Err(Attempted::step(path, &e))),
    };
    let limits = &at.tenant.limits;
    if items.len() > limits.foreach_items {
        let e = LimitExceeded::new("too_many_items", "the number of items", items.len(), "foreach_items", limits.foreach_items);
        return Ok(Err(Attempted::other(path, e.code, e.message)));
    }
    // The definition asks; the tenant's limit caps it.
    let concurrency = usize::try_from(each.concurrency.get()).unwrap_or(1).min(limits.foreach_concurrency.max(1));
    let runs = stream::iter(items.into_iter().enumerate())
        .map(|(i, item)| {
            let mut scope = context.clone();
            scope.item = Some(item);
            scope.index = Some(i);
            let prefix = format!("{path}/items[{i}]");
            async move { run::run_steps(at, &each.steps, &prefix, &mut scope).await }
        })
        .buffered(concurrency); // at most `concurrency` at once, results in item order
    futures::pin_mut!(runs);
    let mut outputs = Vec::new();
    while let Some(result) = runs.next().await {
        match result? {
            Ok(output) => outputs.push(output),
            Err(failure) => return Ok(Err(Attempted::nested(failure))),
        }
    }
    Ok(Ok(Value::Array(outputs)))
}

/// All branches run at once, each one's steps checkpointed under
/// `<path>/<branch>/<name>`. The step waits for every branch to finish
/// (a failing branch does not cancel the others: their steps run to their
/// end and stay checkpointed, so a restart does not repeat them); if any
/// failed, the first failing branch in declared order fails the step.
/// The output maps each branch name to its last step's output.
pub(super) async fn parallel(
    at: &At<'_>,
    parallel: &ParallelAction,
    path: &str,
    context: &Context,
) -> Result<Result<Value, Attempted>, StoreError> {
    let runs = parallel.branches.iter().map(|branch| {
        let mut scope = context.clone();
        let prefix = format!("{path}/{}", branch.name.as_str());
        async move { run::run_steps(at, &branch.steps, &prefix, &mut scope).await }
    });
    let results = futures::future::join_all(runs).await;
    let mut outputs = Map::new();
    for (branch, result) in parallel.branches.iter().zip(results) {
        match result? {
            Ok(output) => {
                outputs.insert(branch.name.as_str().to_string(), output);
            }
            Err(failure) => return Ok(Err(Attempted::nested(failure))),
        }
    }
    Ok(Ok(Value::Object(outputs)))
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
