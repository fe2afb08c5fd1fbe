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
    pub claims: Mutex<HashMap<Uuid, Claimed>>,
    pub checkpoints: Mutex<Vec<StepRecord>>,
    pub outcomes: Mutex<HashMap<Uuid, Outcome>>,
    pub cancels: Mutex<Vec<Uuid>>,
    /// A checkpoint of this path panics.
    pub panic_on: Option<String>,
    /// Integrations `call` steps may run: name → (enabled, definition).
    pub integrations: Mutex<HashMap<String, (bool, Value)>>,
    /// Child executions by (parent, step path, attempt).
    pub children: Mutex<HashMap<(Uuid, String, i32), Uuid>>,
    /// This many checkpoints fail, as with a database that is away.
    pub failing_checkpoints: Mutex<u32>,
    /// A claim leaves the execution claimable again (a store that keeps it
    /// `running` for the next claim).
    pub claims_stay: bool,
    /// How many times a worker retired.
    pub retired: Mutex<u32>,
    /// Listing the unfinished executions takes this long.
    pub listing_takes: Option<std::time::Duration>,
    /// Listings of unfinished executions in flight now, and at most.
    pub listing: std::sync::atomic::AtomicUsize,
    pub most_listing: std::sync::atomic::AtomicUsize,
}

impl ExecutionStore for MemoryStore {
    fn unfinished<'a>(&'a self, _: &'a TenantSpec) -> StoreFuture<'a, Vec<Uuid>> {
        use std::sync::atomic::Ordering::SeqCst;
        Box::pin(async {
            let now = self.listing.fetch_add(1, SeqCst) + 1;
            self.most_listing.fetch_max(now, SeqCst);
            if let Some(takes) = self.listing_takes {
                tokio::time::sleep(takes).await;
            }
            self.listing.fetch_sub(1, SeqCst);
            Ok(self.claims.lock().unwrap().keys().copied().collect())
        })
    }

    fn claim<'a>(&'a self, _: &'a TenantSpec, id: Uuid) -> StoreFuture<'a, Option<Claimed>> {
        Box::pin(async move {
            let mut claims = self.claims.lock().unwrap();
            Ok(if self.claims_stay { claims.get(&id).cloned() } else { claims.remove(&id) })
        })
    }

    fn checkpoint<'a>(&'a self, _: &'a TenantSpec, _: Uuid, step: &'a StepRecord) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            assert_ne!(self.panic_on.as_deref(), Some(step.path.as_str()), "store exploded");
            let mut failing = self.failing_checkpoints.lock().unwrap();
            if *failing > 0 {
                *failing -= 1;
                return Err(StoreError("the database is away".into()));
            }
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

    fn cancelled<'a>(&'a self, _: &'a TenantSpec, id: Uuid) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.cancels.lock().unwrap().push(id);
            Ok(())
        })
    }

    fn start_call<'a>(&'a self, _: &'a TenantSpec, call: &'a CallRequest) -> StoreFuture<'a, CallStart> {
        Box::pin(async move {
            let Some((enabled, definition)) = self.integrations.lock().unwrap().get(&call.integration).cloned() else {
                return Ok(CallStart::Unknown);
            };
            if !enabled {
                return Ok(CallStart::Disabled);
            }
            let key = (call.parent, call.step.clone(), call.attempt);
            let mut children = self.children.lock().unwrap();
            if let Some(child) = children.get(&key) {
                return Ok(CallStart::Child(*child));
            }
            let child = Uuid::new_v4();
            let claim = Claimed {
                integration: call.integration.clone(),
                version: 1,
                definition,
                trigger: call.trigger.clone(),
                vars: Default::default(),
                done: vec![],
            };
            self.claims.lock().unwrap().insert(child, claim);
            children.insert(key, child);
            Ok(CallStart::Child(child))
        })
    }

    fn ended<'a>(&'a self, _: &'a TenantSpec, id: Uuid) -> StoreFuture<'a, Option<Ended>> {
        Box::pin(async move {
            Ok(self.outcomes.lock().unwrap().get(&id).map(|outcome| match outcome {
                Outcome::Succeeded(output) => Ended::Succeeded(output.clone()),
                Outcome::Failed(f) => Ended::Failed { code: f.code.to_string(), message: f.message.clone() },
            }))
        })
    }

    /// Retires when no execution waits to be claimed.
    fn retire<'a>(&'a self, _: &'a TenantSpec) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let idle = self.claims.lock().unwrap().is_empty();
            if idle {
                *self.retired.lock().unwrap() += 1;
            }
            Ok(idle)
        })
    }
}

/// The unit tests' integrations use no connections.
struct NoConnections;

impl Connections for NoConnections {
    fn open<'a>(&'a self, _: &'a TenantSpec, _: &'a str) -> super::OpenFuture<'a> {
        Box::pin(async { Ok(None) })
    }
}

/// The unit tests' integrations have no schedule or queue triggers.
struct NoTriggers;

impl crate::triggers::TriggerStore for NoTriggers {
    fn active<'a>(&'a self, _: &'a TenantSpec) -> StoreFuture<'a, Vec<crate::triggers::ActiveIntegration>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn sync_schedules<'a>(
        &'a self,
        _: &'a TenantSpec,
        _: &'a [crate::triggers::WantedSchedule],
    ) -> StoreFuture<'a, Vec<crate::triggers::StoredSchedule>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn fire<'a>(&'a self, _: &'a TenantSpec, _: &'a crate::triggers::Tick) -> StoreFuture<'a, crate::triggers::Fired> {
        Box::pin(async { Ok(crate::triggers::Fired::Lost) })
    }

    fn enqueue_message<'a>(
        &'a self,
        _: &'a TenantSpec,
        _: &'a crate::triggers::QueueMessage,
    ) -> StoreFuture<'a, crate::triggers::Enqueued> {
        Box::pin(async { Ok(crate::triggers::Enqueued::NotEnabled) })
    }
}

pub(crate) fn engine(store: Arc<MemoryStore>) -> Engine {
    Engine {
        store,
        connections: Arc::new(NoConnections),
        limits: Limits::default(),
        triggers: Arc::new(NoTriggers),
        publishers: Default::default(),
        io: Default::default(),
        versions: Default::default(),
    }
}

pub(crate) fn tenant() -> TenantSpec {
    TenantSpec { id: Uuid::new_v4(), slug: "acme".into(), schema: "t_acme".into(), limits: Default::default() }
}

pub(crate) fn definition(name: &str, steps: Value) -> Value {
    json!({"apiVersion": "tessera.dev/v1", "kind": "Integration", "metadata": {"name": name}, "spec": {"steps": steps}})
}

pub(crate) fn claimed(steps: Value, done: Vec<(String, Value)>) -> Claimed {
    Claimed {
        integration: "orders".into(),
        version: 1,
        definition: definition("orders", steps),
        trigger: json!({"kind": "manual", "body": {"items": [{"qty": 2}, {"qty": 3}]}}),
        vars: Default::default(),
        done,
    }
}

pub(crate) async fn run_one(store: MemoryStore, claim: Claimed) -> (Arc<MemoryStore>, Outcome) {
    let id = Uuid::new_v4();
    store.claims.lock().unwrap().insert(id, claim);
    let store = Arc::new(store);
    run_guarded(&tenant(), &engine(store.clone()), id).await;
    let outcome = store.outcomes.lock().unwrap().remove(&id).expect("the execution finished");
    (store, outcome)
}

pub(crate) fn paths(store: &MemoryStore) -> Vec<String> {
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

#[tokio::test]
async fn a_cancel_stops_a_running_execution_and_keeps_its_checkpoints() {
    let steps = json!([
        {"name": "first", "transform": {"expression": "1"}},
        {"name": "nap", "delay": {"duration": "60s"}},
    ]);
    let (store, id, tenant) = (Arc::new(MemoryStore::default()), Uuid::new_v4(), tenant());
    store.claims.lock().unwrap().insert(id, claimed(steps, vec![]));
    let supervisor = crate::Supervisor::new(tokio_util::sync::CancellationToken::new(), engine(store.clone()));
    // The worker resumes the unfinished execution on start.
    supervisor.reconcile(vec![tenant.clone()]);
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while paths(&store).is_empty() {
        assert!(tokio::time::Instant::now() < until, "the first step never ran");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(supervisor.send(tenant.id, crate::WorkerCommand::Cancel(id)).await);
    while store.cancels.lock().unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < until, "the cancel was never recorded");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(*store.cancels.lock().unwrap(), [id]);
    assert!(store.outcomes.lock().unwrap().is_empty(), "a cancelled execution records no other outcome");
    assert_eq!(paths(&store), ["first"], "the checkpoint before the cancel stays");
    supervisor.shutdown().await;
}

#[tokio::test]
async fn an_execution_interrupted_by_the_store_runs_again_from_its_last_checkpoint() {
    let store = MemoryStore { failing_checkpoints: Mutex::new(2), claims_stay: true, ..MemoryStore::default() };
    let steps = json!([
        {"name": "first", "transform": {"expression": "1"}},
        {"name": "second", "transform": {"expression": ".steps.first + 1"}},
    ]);
    let (store, outcome) = run_one(store, claimed(steps, vec![])).await;
    assert!(matches!(&outcome, Outcome::Succeeded(v) if *v == json!(2)), "{outcome:?}");
    assert_eq!(paths(&store), ["first", "second"], "the two refused checkpoints were written on the third run");
}
