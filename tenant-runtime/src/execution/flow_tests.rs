//! Control flow against the in-memory store: retries and back-off,
//! `on_error` handlers, `foreach`, `parallel` and `call`.

use std::{sync::Arc, time::Duration};

use serde_json::{json, Value};
use uuid::Uuid;

use super::{
    tests::{claimed, definition, engine, paths, run_one, tenant, MemoryStore},
    *,
};

fn records(store: &MemoryStore, path: &str) -> Vec<StepRecord> {
    store.checkpoints.lock().unwrap().iter().filter(|c| c.path == path).cloned().collect()
}

fn failed(outcome: Outcome) -> Failure {
    match outcome {
        Outcome::Failed(failure) => failure,
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn succeeded(outcome: Outcome) -> Value {
    match outcome {
        Outcome::Succeeded(output) => output,
        other => panic!("expected a success, got {other:?}"),
    }
}

#[test]
fn a_stored_back_off_far_past_the_maximum_waits_its_maximum_without_panicking() {
    let backoff: crate::definition::Backoff =
        serde_json::from_value(json!({"initial": "1s", "max": "500000000000y", "multiplier": 10})).unwrap();
    for attempt in [1, 2, 40, u32::MAX] {
        assert!(retry::wait(&backoff, attempt) <= backoff.max.get());
    }
}

#[tokio::test]
async fn retries_count_attempts_and_stop_at_the_limit() {
    let steps = json!([{"name": "flaky", "fail": {"message": "no"},
        "retry": {"attempts": 3, "on": ["any"], "backoff": {"initial": "1ms", "jitter": false}}}]);
    let (store, outcome) = run_one(MemoryStore::default(), claimed(steps, vec![])).await;
    assert_eq!(failed(outcome).code, "fail");
    let attempts: Vec<_> = records(&store, "flaky").iter().map(|r| (r.attempt, r.state)).collect();
    assert_eq!(attempts, [(1, StepState::Failed), (2, StepState::Failed), (3, StepState::Failed)]);
}

#[tokio::test]
async fn a_failure_the_policy_does_not_match_is_not_retried() {
    // The default `on` lists the transient failures only; a `fail` step is not one.
    let steps = json!([{"name": "flaky", "fail": {"message": "no"}, "retry": {"attempts": 5, "backoff": {"initial": "1ms"}}}]);
    let (store, outcome) = run_one(MemoryStore::default(), claimed(steps, vec![])).await;
    assert_eq!(failed(outcome).code, "fail");
    assert_eq!(records(&store, "flaky").iter().map(|r| r.attempt).collect::<Vec<_>>(), [1]);
}

#[tokio::test]
async fn timeouts_are_retried_with_growing_waits() {
    let steps = json!([{"name": "slow", "delay": {"duration": "10s"}, "timeout": "10ms",
        "retry": {"attempts": 3, "on": ["timeout"], "backoff": {"initial": "20ms", "multiplier": 10, "jitter": false}}}]);
    let (store, outcome) = run_one(MemoryStore::default(), claimed(steps, vec![])).await;
    let failure = failed(outcome);
    assert_eq!((failure.code, failure.step.as_deref()), ("timeout", Some("slow")));
    let tries = records(&store, "slow");
    assert_eq!(tries.iter().map(|r| r.attempt).collect::<Vec<_>>(), [1, 2, 3]);
    let gap = |n: usize| (tries[n].started_at - tries[n - 1].finished_at).to_std().unwrap();
    assert!(gap(1) >= Duration::from_millis(20), "{:?}", gap(1));
    assert!(gap(2) >= Duration::from_millis(200), "{:?}", gap(2));
    assert!(gap(2) > gap(1));
}

#[test]
fn backoff_grows_is_capped_and_jitters_within_half() {
    let backoff: crate::definition::Backoff =
        serde_json::from_value(json!({"initial": "100ms", "max": "1s", "multiplier": 3})).unwrap();
    for _ in 0..50 {
        let first = retry::wait(&backoff, 1);
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(150), "{first:?}");
        assert!(retry::wait(&backoff, 10) <= Duration::from_secs(1));
    }
    let steady = crate::definition::Backoff { jitter: false, ..backoff };
    let waits: Vec<_> = (1..=4).map(|n| retry::wait(&steady, n).as_millis()).collect();
    assert_eq!(waits, [100, 300, 900, 1000]);
}

#[tokio::test]
async fn on_error_handlers_run_and_the_execution_goes_on() {
    let steps = json!([
        {"name": "bad", "fail": {"message": "broken ${{ .trigger.body.items | length }}"}, "on_error": [
            {"name": "seen", "transform": {"expression": ".error"}},
            {"name": "fallback", "transform": {"expression": "\"fallback after \\(.steps.seen.code)\""}},
        ]},
        {"name": "after", "transform": {"expression": ".steps.bad"}},
    ]);
    let (store, outcome) = run_one(MemoryStore::default(), claimed(steps, vec![])).await;
    assert_eq!(succeeded(outcome), "fallback after fail");
    assert_eq!(paths(&store), ["bad", "bad/on_error/seen", "bad/on_error/fallback", "bad", "after"]);
    let seen = &records(&store, "bad/on_error/seen")[0];
    assert_eq!(seen.output, Some(json!({"code": "fail", "message": "broken 2", "step": "bad"})));
    let handled = records(&store, "bad").pop().unwrap();
    assert_eq!((handled.state, handled.output), (StepState::Succeeded, Some(json!("fallback after fail"))));
    assert_eq!(handled.error.map(|e| e.code), Some("fail"), "the handled failure stays on record");
}

#[tokio::test]
async fn a_failing_handler_fails_the_execution() {
    let steps = json!([
        {"name": "bad", "fail": {"message": "broken"}, "on_error": [{"name": "give_up", "fail": {"message": "still ${{ .error.message }}"}}]},
        {"name": "after", "transform": {"expression": "1"}},
    ]);
    let (store, outcome) = run_one(MemoryStore::default(), claimed(steps, vec![])).await;
    let failure = failed(outcome);
    assert_eq!((failure.message.as_str(), failure.step.as_deref()), ("still broken", Some("bad/on_error/give_up")));
    assert!(!paths(&store).contains(&"after".to_string()));
}

#[tokio::test]
async fn the_integration_on_error_runs_when_the_execution_fails() {
    let mut claim = claimed(json!([{"name": "bad", "fail": {"message": "broken"}}]), vec![]);
    claim.definition["spec"]["on_error"] = json!([
        {"name": "notify", "transform": {"expression": "\"\\(.error.step): \\(.error.message)\""}},
        {"name": "also_broken", "fail": {"message": "handler failed"}},
    ]);
    let (store, outcome) = run_one(MemoryStore::default(), claim).await;
    let failure = failed(outcome);
    assert_eq!((failure.code, failure.message.as_str()), ("fail", "broken"), "the original failure stays");
    assert_eq!(paths(&store), ["bad", "on_error/notify", "on_error/also_broken"]);
    assert_eq!(records(&store, "on_error/notify")[0].output, Some(json!("bad: broken")));
    assert_eq!(records(&store, "on_error/also_broken")[0].state, StepState::Failed);
}

#[tokio::test]
async fn the_integration_on_error_runs_when_the_budget_runs_out() {
    let mut claim = claimed(json!([{"name": "nap", "delay": {"duration": "10s"}}]), vec![]);
    claim.definition["spec"]["timeout"] = json!("30ms");
    claim.definition["spec"]["on_error"] = json!([{"name": "notify", "transform": {"expression": ".error.code"}}]);
    let (store, outcome) = run_one(MemoryStore::default(), claim).await;
    assert_eq!(failed(outcome).code, "timeout");
    assert_eq!(records(&store, "on_error/notify")[0].output, Some(json!("timeout")));
}

fn foreach_steps(concurrency: u32) -> Value {
    json!([
        {"name": "each", "foreach": {"items": ".trigger.body.items", "concurrency": concurrency, "steps": [
            // The first item finishes last, so the output order proves it is the item order.
            {"name": "wait", "choice": {"branches": [{"when": ".index == 0", "steps": [{"name": "nap", "delay": {"duration": "60ms"}}]}]}},
            {"name": "double", "transform": {"expression": ".item.qty * 2"}},
            {"name": "tag", "transform": {"expression": "\"\\(.index):\\(.steps.double)\""}},
        ]}},
        {"name": "after", "transform": {"expression": ".steps.each"}},
    ])
}

fn three_items(mut claim: Claimed) -> Claimed {
    claim.trigger = json!({"kind": "manual", "body": {"items": [{"qty": 1}, {"qty": 2}, {"qty": 3}]}});
    claim
}

#[tokio::test]
async fn foreach_runs_items_concurrently_and_keeps_their_order() {
    let (store, outcome) = run_one(MemoryStore::default(), three_items(claimed(foreach_steps(3), vec![]))).await;
    assert_eq!(succeeded(outcome), json!(["0:2", "1:4", "2:6"]));
    let all = paths(&store);
    assert!(all.contains(&"each/items[2]/tag".to_string()), "{all:?}");
    let finished = |p: &str| all.iter().position(|x| x == p).unwrap();
    assert!(finished("each/items[2]/tag") < finished("each/items[0]/tag"), "items ran at once: {all:?}");
    assert_eq!(all.last().map(String::as_str), Some("after"));
}

#[tokio::test]
async fn a_resumed_foreach_skips_the_item_steps_already_checkpointed() {
    let done = vec![("each/items[0]/wait".to_string(), Value::Null), ("each/items[0]/double".to_string(), json!(100))];
    let (store, outcome) = run_one(MemoryStore::default(), three_items(claimed(foreach_steps(2), done))).await;
    assert_eq!(succeeded(outcome), json!(["0:100", "1:4", "2:6"]));
    let all = paths(&store);
    assert!(!all.contains(&"each/items[0]/double".to_string()) && !all.contains(&"each/items[0]/wait".to_string()));
    assert!(all.contains(&"each/items[0]/tag".to_string()) && all.contains(&"each/items[1]/double".to_string()));
}

#[tokio::test]
async fn foreach_over_something_else_than_an_array_fails_clearly() {
    let steps = json!([{"name": "each", "foreach": {"items": ".trigger.body", "steps": [{"name": "x", "transform": {"expression": "1"}}]}}]);
    let (_, outcome) = run_one(MemoryStore::default(), claimed(steps, vec![])).await;
    let failure = failed(outcome);
    assert_eq!((failure.code, failure.step.as_deref()), ("not_a_list", Some("each")));
    assert!(failure.message.contains("an object"), "{}", failure.message);
}

#[tokio::test]
async fn parallel_joins_its_branches() {
    let steps = json!([{"name": "both", "parallel": {"branches": [
        {"name": "left", "steps": [{"name": "pause", "delay": {"duration": "30ms"}}, {"name": "l", "transform": {"expression": "\"L\""}}]},
        {"name": "right", "steps": [{"name": "r", "transform": {"expression": ".trigger.body.items | length"}}]},
    ]}}]);
    let (store, outcome) = run_one(MemoryStore::default(), claimed(steps, vec![])).await;
    assert_eq!(succeeded(outcome), json!({"left": "L", "right": 2}));
    // Branches interleave as they may; within a branch steps keep their order, and the join comes last.
    let paths = paths(&store);
    assert_eq!(paths.len(), 4, "{paths:?}");
    assert!(paths.contains(&"both/right/r".to_string()), "{paths:?}");
    let at = |p: &str| paths.iter().position(|x| x == p).unwrap_or_else(|| panic!("{p} missing from {paths:?}"));
    assert!(at("both/left/pause") < at("both/left/l"), "{paths:?}");
    assert_eq!(paths.last().map(String::as_str), Some("both"));
}

#[tokio::test]
async fn a_failing_branch_fails_parallel_after_the_others_finish() {
    let steps = json!([{"name": "both", "parallel": {"branches": [
        {"name": "left", "steps": [{"name": "pause", "delay": {"duration": "30ms"}}, {"name": "l", "transform": {"expression": "1"}}]},
        {"name": "right", "steps": [{"name": "r", "fail": {"message": "right broke"}}]},
    ]}}]);
    let (store, outcome) = run_one(MemoryStore::default(), claimed(steps, vec![])).await;
    let failure = failed(outcome);
    assert_eq!((failure.message.as_str(), failure.step.as_deref()), ("right broke", Some("both/right/r")));
    assert!(paths(&store).contains(&"both/left/l".to_string()), "the other branch finished");
}

fn with_integration(name: &str, steps: Value) -> MemoryStore {
    let store = MemoryStore::default();
    store.integrations.lock().unwrap().insert(name.into(), (true, definition(name, steps)));
    store
}

#[tokio::test]
async fn call_runs_a_child_and_returns_its_output() {
    let store = with_integration("price", json!([{"name": "quote", "transform": {"expression": "{kind: .trigger.kind, total: (.trigger.body.n * 2)}"}}]));
    let steps = json!([{"name": "ask", "call": {"integration": "price", "input": "{n: 21}"}}]);
    let (store, outcome) = run_one(store, claimed(steps, vec![])).await;
    assert_eq!(succeeded(outcome), json!({"kind": "call", "total": 42}));
    assert_eq!(paths(&store), ["quote", "ask"]);
    assert_eq!(store.children.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn recursion_is_stopped_at_the_call_depth() {
    let steps = json!([{"name": "again", "call": {"integration": "orders"}}]);
    let store = with_integration("orders", steps.clone());
    let (store, outcome) = run_one(store, claimed(steps, vec![])).await;
    assert_eq!(failed(outcome).code, "call_depth_exceeded");
    assert_eq!(store.children.lock().unwrap().len(), call::MAX_CALL_DEPTH as usize);
}

#[tokio::test]
async fn a_resumed_parent_reuses_its_child() {
    let store = with_integration("price", json!([{"name": "quote", "fail": {"message": "must not run again"}}]));
    let (parent, child) = (Uuid::new_v4(), Uuid::new_v4());
    store.children.lock().unwrap().insert((parent, "ask".into(), 1), child);
    store.outcomes.lock().unwrap().insert(child, Outcome::Succeeded(json!(7)));
    store.claims.lock().unwrap().insert(parent, claimed(json!([{"name": "ask", "call": {"integration": "price"}}]), vec![]));
    let store = Arc::new(store);
    run_guarded(&tenant(), &engine(store.clone()), parent).await;
    assert_eq!(succeeded(store.outcomes.lock().unwrap().remove(&parent).unwrap()), 7);
    assert_eq!(paths(&store), ["ask"]);
    assert_eq!(store.children.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn calling_an_unknown_or_disabled_integration_fails_the_step() {
    let store = MemoryStore::default();
    store.integrations.lock().unwrap().insert("off".into(), (false, definition("off", json!([]))));
    let steps = json!([
        {"name": "missing", "call": {"integration": "nope"}, "on_error": [{"name": "m", "transform": {"expression": ".error.message"}}]},
        {"name": "disabled", "call": {"integration": "off"}},
    ]);
    let (store, outcome) = run_one(store, claimed(steps, vec![])).await;
    let failure = failed(outcome);
    assert_eq!((failure.code, failure.message.as_str()), ("call_failed", "integration `off` is disabled"));
    assert_eq!(records(&store, "missing").pop().unwrap().output, Some(json!("there is no integration `nope`")));
}
