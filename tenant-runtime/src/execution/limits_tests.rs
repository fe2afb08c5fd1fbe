//! The tenant's limits inside an execution: output and record sizes,
//! `foreach` items and concurrency.

use std::sync::Arc;

use serde_json::{json, Value};
use uuid::Uuid;

use super::{
    tests::{claimed, engine, paths, tenant, MemoryStore},
    *,
};
use crate::limits::TenantLimits;

async fn run_limited(limits: TenantLimits, claim: Claimed) -> (Arc<MemoryStore>, Outcome) {
    let id = Uuid::new_v4();
    let store = Arc::new(MemoryStore::default());
    store.claims.lock().unwrap().insert(id, claim);
    let tenant = TenantSpec { limits: Arc::new(limits), ..tenant() };
    run_guarded(&tenant, &engine(store.clone()), id).await;
    let outcome = store.outcomes.lock().unwrap().remove(&id).expect("the execution finished");
    (store, outcome)
}

fn failure(outcome: Outcome) -> Failure {
    match outcome {
        Outcome::Failed(failure) => failure,
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn record(store: &MemoryStore, path: &str) -> StepRecord {
    store.checkpoints.lock().unwrap().iter().rev().find(|c| c.path == path).cloned().expect("a checkpoint")
}

#[tokio::test]
async fn a_step_output_over_the_limit_fails_the_step_and_is_not_stored() {
    let steps = json!([{"name": "big", "transform": {"expression": "[range(100)] | map(\"0123456789\")"}},
                       {"name": "after", "log": {"message": "never"}}]);
    let limits = TenantLimits { step_output_bytes: 500, ..Default::default() };
    let (store, outcome) = run_limited(limits, claimed(steps, vec![])).await;
    let failure = failure(outcome);
    assert_eq!((failure.code, failure.step.as_deref()), ("output_too_large", Some("big")));
    assert!(failure.message.contains("step_output_bytes") && failure.message.contains("500"), "{}", failure.message);
    let big = record(&store, "big");
    assert_eq!((big.state, big.output), (StepState::Failed, None), "nothing of the output is kept");
    assert_eq!(paths(&store), ["big"]);
}

#[tokio::test]
async fn an_execution_record_over_the_limit_fails_it_without_storing_the_step_that_passed_it() {
    // Each step's output is ~300 bytes, and each step's input holds the outputs before it.
    let step = |name: &str| json!({"name": name, "transform": {"expression": "[range(30)] | map(\"abcdefgh\")"}});
    let steps = json!([step("one"), step("two"), step("three"), step("four")]);
    let limits = TenantLimits { execution_record_bytes: 1500, ..Default::default() };
    let (store, outcome) = run_limited(limits, claimed(steps, vec![])).await;
    let failure = failure(outcome);
    assert_eq!(failure.code, "execution_too_large");
    assert!(failure.message.contains("execution_record_bytes"), "{}", failure.message);
    let last = record(&store, failure.step.as_deref().unwrap());
    assert_eq!((last.state, last.output, last.input), (StepState::Failed, None, Value::Null));
    let kept: usize = store.checkpoints.lock().unwrap().iter().map(|c| {
        crate::limits::json_size(&c.input) + c.output.as_ref().map_or(0, crate::limits::json_size)
    }).sum();
    assert!(kept <= 1500, "what is stored stays within the limit: {kept}");
}

#[tokio::test]
async fn foreach_over_the_item_limit_fails_and_runs_no_item() {
    let steps = json!([{"name": "each", "foreach": {"items": "[range(11)]", "steps": [{"name": "x", "transform": {"expression": ".item"}}]}}]);
    let limits = TenantLimits { foreach_items: 10, ..Default::default() };
    let (store, outcome) = run_limited(limits, claimed(steps, vec![])).await;
    let failure = failure(outcome);
    assert_eq!(failure.code, "too_many_items");
    assert!(failure.message.contains("foreach_items"), "{}", failure.message);
    assert_eq!(paths(&store), ["each"]);
}

#[tokio::test]
async fn the_tenant_caps_a_foreach_s_own_concurrency() {
    // Asked for 3 at once, but the tenant allows 1: the slow first item finishes first.
    let steps = json!([{"name": "each", "foreach": {"items": "[0, 1, 2]", "concurrency": 3, "steps": [
        {"name": "wait", "choice": {"branches": [{"when": ".index == 0", "steps": [{"name": "nap", "delay": {"duration": "60ms"}}]}]}},
        {"name": "tag", "transform": {"expression": ".index"}}]}}]);
    let limits = TenantLimits { foreach_concurrency: 1, ..Default::default() };
    let (store, outcome) = run_limited(limits, claimed(steps, vec![])).await;
    assert!(matches!(outcome, Outcome::Succeeded(_)), "{outcome:?}");
    let all = paths(&store);
    let at = |p: &str| all.iter().position(|x| x == p).unwrap();
    assert!(at("each/items[0]/tag") < at("each/items[2]/tag"), "one item at a time: {all:?}");
}
