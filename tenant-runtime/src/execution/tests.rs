//! The execution loop against an in-memory store: order, checkpoints,
//! resume, failures and a panic that fails one execution only.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use serde_json::{json, Value};
use uuid::Uuid;

use super::*;

#[derive(Default)]
pub(crate) struct MemoryStore {
    claims: Mutex<HashMap<Uuid, Claimed>>,
    pub checkpoints: Mutex<Vec<StepRecord>>,
    pub outcomes: Mutex<HashMap<Uuid, Outcome>>,
    /// A checkpoint of this path panics.
    panic_on: Option<String>,
}

impl ExecutionStore for MemoryStore {
    fn unfinished<'a>(&'a self, _: &'a TenantSpec) -> StoreFuture<'a, Vec<Uuid>> {
        Box::pin(async { Ok(self.claims.lock().unwrap().keys().copied().collect()) })
    }

    fn claim<'a>(&'a self, _: &'a TenantSpec, id: Uuid) -> StoreFuture<'a, Option<Claimed>> {
        Box::pin(async move { Ok(self.claims.lock().unwrap().remove(&id)) })
    }

    fn checkpoint<'a>(&'a self, _: &'a TenantSpec, _: Uuid, step: &'a StepRecord) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            assert_ne!(self.panic_on.as_deref(), Some(step.path.as_str()), "store exploded");
            self.checkpoints.lock().unwrap().push(step.clone());
            Ok(())
        })
    }

    fn finish<'a>(&'a self, _: &'a TenantSpec, id: Uuid, outcome: &'a Outcome) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.outcomes.lock().unwrap().insert(id, outcome.clone());
            Ok(())
        })
    }
}

/// The unit tests' integrations use no connections.
struct NoConnections;

impl Connections for NoConnections {
    fn open<'a>(&'a self, _: &'a TenantSpec, _: &'a str) -> StoreFuture<'a, Option<ConnectionSpec>> {
        Box::pin(async { Ok(None) })
    }
}

pub(crate) fn engine(store: Arc<MemoryStore>) -> Engine {
    Engine { store, connections: Arc::new(NoConnections), limits: Limits::default(), io: Default::default() }
}

fn tenant() -> TenantSpec {
    TenantSpec { id: Uuid::new_v4(), slug: "acme".into(), schema: "t_acme".into() }
}

fn claimed(steps: Value, done: Vec<(String, Value)>) -> Claimed {
    Claimed {
        integration: "orders".into(),
        version: 1,
        definition: json!({"apiVersion": "tessera.dev/v1", "kind": "Integration", "metadata": {"name": "orders"}, "spec": {"steps": steps}}),
        trigger: json!({"kind": "manual", "body": {"items": [{"qty": 2}, {"qty": 3}]}}),
        vars: Default::default(),
        done,
    }
}

async fn run_one(store: MemoryStore, claim: Claimed) -> (Arc<MemoryStore>, Outcome) {
    let id = Uuid::new_v4();
    store.claims.lock().unwrap().insert(id, claim);
    let store = Arc::new(store);
    run_guarded(&tenant(), &engine(store.clone()), id).await;
    let outcome = store.outcomes.lock().unwrap().remove(&id).expect("the execution finished");
    (store, outcome)
}

fn paths(store: &MemoryStore) -> Vec<String> {
    store.checkpoints.lock().unwrap().iter().map(|c| c.path.clone()).collect()
}

#[tokio::test]
async fn steps_run_in_order_and_each_is_checkpointed() {
    let steps = json!([
        {"name": "total", "transform": {"expression": "[.trigger.body.items[].qty] | add"}},
        {"name": "say", "log": {"message": "total ${{ .steps.total }}"}},
    ]);
    let (store, outcome) = run_one(MemoryStore::default(), claimed(steps, vec![])).await;
    assert!(matches!(outcome, Outcome::Succeeded(ref v) if v == "total 5"), "{outcome:?}");
    assert_eq!(paths(&store), ["total", "say"]);
    assert_eq!(store.checkpoints.lock().unwrap()[1].input["steps"]["total"], 5);
}

#[tokio::test]
async fn a_resumed_execution_skips_checkpointed_steps() {
    let steps = json!([
        {"name": "first", "fail": {"message": "must not run again"}},
        {"name": "second", "transform": {"expression": ".steps.first + 1"}},
    ]);
    let (store, outcome) = run_one(MemoryStore::default(), claimed(steps, vec![("first".into(), json!(41))])).await;
    assert!(matches!(outcome, Outcome::Succeeded(ref v) if v == 42), "{outcome:?}");
    assert_eq!(paths(&store), ["second"]);
}

#[tokio::test]
async fn unsupported_steps_fail_the_execution() {
    let steps = json!([{"name": "later", "call": {"integration": "other"}}]);
    let (_, outcome) = run_one(MemoryStore::default(), claimed(steps, vec![])).await;
    let Outcome::Failed(failure) = outcome else { panic!("{outcome:?}") };
    assert_eq!((failure.code, failure.step.as_deref()), ("unsupported_step", Some("later")));
}

#[tokio::test]
async fn a_panic_fails_that_execution_only() {
    let steps = json!([{"name": "boom", "transform": {"expression": "1"}}]);
    let store = MemoryStore { panic_on: Some("boom".into()), ..Default::default() };
    let (_, outcome) = run_one(store, claimed(steps, vec![])).await;
    let Outcome::Failed(failure) = outcome else { panic!("{outcome:?}") };
    assert_eq!(failure.code, "panic");
}

#[tokio::test]
async fn the_time_budget_fails_a_slow_execution() {
    let mut claim = claimed(json!([{"name": "nap", "delay": {"duration": "10s"}}]), vec![]);
    claim.definition["spec"]["timeout"] = json!("50ms");
    let (_, outcome) = run_one(MemoryStore::default(), claim).await;
    let Outcome::Failed(failure) = outcome else { panic!("{outcome:?}") };
    assert_eq!(failure.code, "timeout");
}

#[tokio::test]
async fn a_choice_runs_the_first_matching_branch_under_its_path() {
    let steps = json!([
        {"name": "route", "choice": {
            "branches": [
                {"when": ".trigger.body.items | length > 5", "steps": [{"name": "bulk", "transform": {"expression": "\"bulk\""}}]},
                {"when": ".trigger.body.items | length > 0", "steps": [
                    {"name": "count", "transform": {"expression": ".trigger.body.items | length"}},
                    {"name": "small", "transform": {"expression": "\"small:\\(.steps.count)\""}},
                ]},
            ],
            "otherwise": [{"name": "empty", "fail": {"message": "no items"}}],
        }},
        {"name": "after", "transform": {"expression": ".steps.route"}},
    ]);
    let (store, outcome) = run_one(MemoryStore::default(), claimed(steps.clone(), vec![])).await;
    assert!(matches!(outcome, Outcome::Succeeded(ref v) if v == "small:2"), "{outcome:?}");
    assert_eq!(paths(&store), ["route/branches[1]/count", "route/branches[1]/small", "route", "after"]);

    // Resumed inside the branch: the checkpointed nested step is not run again.
    let done = vec![("route/branches[1]/count".to_string(), json!(7))];
    let (store, outcome) = run_one(MemoryStore::default(), claimed(steps, done)).await;
    assert!(matches!(outcome, Outcome::Succeeded(ref v) if v == "small:7"), "{outcome:?}");
    assert_eq!(paths(&store), ["route/branches[1]/small", "route", "after"]);
}
