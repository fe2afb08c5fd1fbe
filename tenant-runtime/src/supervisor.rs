//! Starts, stops and restarts tenant workers so that exactly the desired set
//! runs on this node.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex, OnceLock, PoisonError,
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::{
    sync::{mpsc, watch, Notify},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    execution::Engine,
    limits::TenantLimits,
    worker::{self, Drain, RemoteCommand, TenantSpec, WorkerCommand},
};

/// A worker's link to its supervisor: its turn to start, how often it may
/// sweep, and how it retires (it leaves the supervisor, and hands back
/// what commands reached it meanwhile, to a new worker).
pub(crate) struct Link {
    supervisor: Supervisor,
    tenant: Uuid,
    generation: u64,
}

impl Link {
    /// How often the worker may sweep its tenant's executions: every
    /// [`SWEEP_EVERY`], or less often when so many workers run here that
    /// their sweeps together would pass [`NODE_SWEEPS_PER_SECOND`]: the
    /// cost of the safety net stays bounded per node, not per tenant.
    pub(crate) fn sweep_every(&self) -> Duration {
        let live = self.supervisor.live.load(Ordering::Relaxed) as u64;
        SWEEP_EVERY.max(Duration::from_millis(live * 1000 / NODE_SWEEPS_PER_SECOND))
    }

    /// The worker's turn to read its tenant's state at its start: at most
    /// [`STARTING_AT_ONCE`] workers of the node do at once, so a node that
    /// starts thousands (after a restart under load) still answers
    /// requests, whose statements would otherwise queue behind theirs.
    pub(crate) async fn turn_to_start(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.supervisor.starting.clone().acquire_owned().await.ok()
    }

    /// Leave the supervisor, then refuse further commands and pass on the
    /// ones already queued (each starts a new worker of the tenant).
    pub(crate) async fn leave(self, mut commands: mpsc::Receiver<WorkerCommand>) {
        self.supervisor.forget(self.tenant, self.generation);
        commands.close();
        while let Ok(command) = commands.try_recv() {
            self.supervisor.send_here(self.tenant, command).await;
        }
    }
}

/// How often a worker that ran executions lately looks for unfinished
/// ones it does not run (while few workers run here), and how many such
/// sweeps a node makes at most per second over all its workers: 10,000
/// busy tenants sweeping every 10 s would query their schemas 1,000 times
/// a second, more than the executions they run. A wake-up that a sweep
/// would have found is also found when the idle worker checks whether it
/// may retire.
const SWEEP_EVERY: Duration = Duration::from_secs(10);
const NODE_SWEEPS_PER_SECOND: u64 = 20;

const COMMAND_QUEUE: usize = 64;
const STARTING_AT_ONCE: usize = 8;
/// A worker that panics is restarted after this pause, so a crash loop
/// cannot spin a core.
const RESTART_BACKOFF: Duration = Duration::from_millis(500);

/// Counts a worker task while it lives (aborted or ended).
struct Live(Arc<AtomicUsize>);

impl Live {
    fn count(live: &Arc<AtomicUsize>) -> Self {
        live.fetch_add(1, Ordering::Relaxed);
        Self(live.clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Running {
    spec: TenantSpec,
    cancel: CancellationToken,
    commands: mpsc::Sender<WorkerCommand>,
    /// The worker's limits: a change is sent here, not by a restart.
    limits: watch::Sender<Arc<TenantLimits>>,
    handle: JoinHandle<()>,
    started_at: DateTime<Utc>,
    restarts: u32,
    /// Executions the worker has in hand (running, or waiting for a slot).
    in_flight: Arc<AtomicUsize>,
    /// Cancelled when this worker must start nothing new: its node drains,
    /// or its tenant is being handed over to another node.
    begun: CancellationToken,
    /// Which start of a worker this is: a retiring worker removes its own
    /// entry only, never the one of a worker started after it.
    generation: u64,
}

/// The tenants this node may run (it holds their leases) and the workers
/// running now: a worker runs for a held tenant that has work, from when
/// it is wanted or a command comes for it until it retires idle.
#[derive(Default)]
struct Workers {
    running: HashMap<Uuid, Running>,
    held: HashMap<Uuid, TenantSpec>,
    /// Tenants handed over to another node (see [`Supervisor::hand_over`]).
    handing_over: HashSet<Uuid>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkerStatus {
    pub tenant_id: Uuid,
    pub tenant: String,
    pub started_at: DateTime<Utc>,
    pub restarts: u32,
}

/// A tenant this node runs (holds the lease of), and whether its worker
/// runs now (it runs while the tenant has work).
#[derive(Debug, Clone, Serialize)]
pub struct HeldTenant {
    pub tenant_id: Uuid,
    pub tenant: String,
    pub worker: bool,
}

/// Carries commands for tenants whose worker runs on another node of the
/// cluster (the server implements it over its cluster's message path).
pub trait Forwarder: Send + Sync + 'static {
    fn forward(&self, tenant: Uuid, command: RemoteCommand);
}

#[derive(Clone)]
pub struct Supervisor {
    /// The workers running here. Every change is an insert, a removal or a
    /// retain of whole entries, so the map is consistent whenever a holder
    /// panics (say `spawn` outside a runtime): later callers take it as it
    /// is (`PoisonError::into_inner`) rather than panic in turn, and the
    /// next `reconcile` starts whatever is missing.
    workers: Arc<Mutex<Workers>>,
    generations: Arc<AtomicU64>,
    shutdown: CancellationToken,
    engine: Engine,
    forwarder: Arc<OnceLock<Arc<dyn Forwarder>>>,
    /// Cancelled when the node drains: no worker starts an execution any
    /// more (workers started later, restarts included, start draining).
    draining: CancellationToken,
    /// Poked when a draining worker has no execution left in hand.
    idle: Arc<Notify>,
    /// Worker tasks alive on this node.
    live: Arc<AtomicUsize>,
    /// Turns of workers reading their tenant's state as they start.
    starting: Arc<tokio::sync::Semaphore>,
    /// The runtime the supervisor was built on (the node's), where every
    /// worker runs, wherever the call that starts it comes from. A worker
    /// started from an HTTP handler would otherwise live on that HTTP
    /// worker's runtime, and die with it, executions and all, when the
    /// server stops at the start of a drain.
    runtime: Option<tokio::runtime::Handle>,
}

impl Supervisor {
    pub fn new(shutdown: CancellationToken, engine: Engine) -> Self {
        Self {
            workers: Arc::new(Mutex::new(Workers::default())),
            generations: Arc::new(AtomicU64::new(0)),
            shutdown,
            engine,
            forwarder: Arc::new(OnceLock::new()),
            draining: CancellationToken::new(),
            idle: Arc::new(Notify::new()),
            live: Arc::new(AtomicUsize::new(0)),
            starting: Arc::new(tokio::sync::Semaphore::new(STARTING_AT_ONCE)),
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }

    /// Where [`Supervisor::send`] puts commands for tenants not run here.
    /// Set once, when the node starts.
    pub fn set_forwarder(&self, forwarder: Arc<dyn Forwarder>) {
        let _ = self.forwarder.set(forwarder);
    }

    /// Run a worker for every tenant of `desired` (tests, and nodes that
    /// want every held tenant's worker running).
    pub fn reconcile(&self, desired: Vec<TenantSpec>) {
        let all = desired.iter().map(|s| s.id).collect();
        self.settle(desired, &all);
    }

    /// Converge: `held` are the tenants this node may run, `with_work`
    /// those of them with work stored (`platform.tenant_work`). Start the
    /// missing workers of tenants with work, restart the ones that died,
    /// stop those of tenants no longer held. A held tenant without work
    /// gets a worker when a command comes for it ([`Supervisor::send_here`]).
    pub fn settle(&self, held: Vec<TenantSpec>, with_work: &HashSet<Uuid>) {
        let mut workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        workers.held = held.into_iter().map(|s| (s.id, s)).collect();
        let Workers { running, held, handing_over } = &mut *workers;
        let draining = self.draining.is_cancelled();
        running.retain(|id, running| {
            let Some(spec) = held.get(id).filter(|spec| spec.same_worker(&running.spec)) else {
                running.cancel.cancel();
                return false;
            };
            // Its handover was called off (placement gave the tenant back):
            // it would start nothing new, so once it has finished what it
            // had in hand (stopping it sooner would interrupt a step), a
            // new worker takes over.
            let idle = running.in_flight.load(Ordering::Acquire) == 0;
            if running.begun.is_cancelled() && !draining && !handing_over.contains(id) && idle {
                running.cancel.cancel();
                return false;
            }
            if spec.limits != running.spec.limits {
                running.spec.limits = spec.limits.clone();
                running.limits.send_replace(spec.limits.clone());
            }
            true
        });
        for (id, spec) in held.iter() {
            let restarts = match running.get(id) {
                Some(running) if !running.handle.is_finished() => continue,
                // A worker that retires removes its entry: one left finished died.
                Some(running) => {
                    tracing::warn!(tenant = %spec.slug, "tenant worker died; restarting");
                    running.restarts + 1
                }
                None if with_work.contains(id) => 0,
                None => continue,
            };
            let worker = self.spawn(spec.clone(), restarts, handing_over.contains(id));
            running.insert(*id, worker);
        }
    }

    /// A worker for `spec`. One started while its tenant is handed over
    /// starts nothing either: the node may be releasing the tenant's lease
    /// this very moment, and an execution begun here would run again on
    /// the next owner, which resumes it from its last checkpoint.
    fn spawn(&self, spec: TenantSpec, restarts: u32, handing_over: bool) -> Running {
        let cancel = self.shutdown.child_token();
        let (commands, rx) = mpsc::channel(COMMAND_QUEUE);
        let (limits, limits_rx) = watch::channel(spec.limits.clone());
        let task_spec = spec.clone();
        let task_cancel = cancel.clone();
        let engine = self.engine.clone();
        let in_flight = Arc::new(AtomicUsize::new(0));
        // Its own token under the node's: the node's drain stops every
        // worker's starts, a handover only this one's.
        let begun = self.draining.child_token();
        if handing_over {
            begun.cancel();
        }
        let drain = Drain { begun: begun.clone(), in_flight: in_flight.clone(), idle: self.idle.clone() };
        let generation = self.generations.fetch_add(1, Ordering::Relaxed);
        let link = Link { supervisor: self.clone(), tenant: spec.id, generation };
        let live = Live::count(&self.live);
        let task = async move {
            let _live = live;
            if restarts > 0 {
                tokio::time::sleep(RESTART_BACKOFF).await;
            }
            worker::run(task_spec, engine, rx, limits_rx, task_cancel, drain, link).await
        };
        let handle = match &self.runtime {
            Some(runtime) => runtime.spawn(task),
            None => tokio::spawn(task),
        };
        Running { spec, cancel, commands, limits, handle, started_at: Utc::now(), restarts, in_flight, begun, generation }
    }

    /// A retired worker leaves: its entry goes (only its own, by
    /// generation), so the next command for its tenant starts a new one.
    fn forget(&self, tenant: Uuid, generation: u64) {
        let mut workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        if workers.running.get(&tenant).is_some_and(|r| r.generation == generation) {
            workers.running.remove(&tenant);
        }
    }

    /// Drain this node: from now on no worker starts an execution (what
    /// arrives stays queued in the database for the tenant's next owner);
    /// the running ones go on to their end. Lasts as long as the node.
    pub fn begin_drain(&self) {
        self.draining.cancel();
    }

    /// Whether the node drains: its workers start no execution.
    pub fn is_draining(&self) -> bool {
        self.draining.is_cancelled()
    }

    /// `tenants` are moving to another node: their workers start nothing
    /// new from now on and finish what they have in hand, as in a drain.
    /// Returns those of them still busy, whose leases the node keeps until
    /// they finish. A tenant left out of a later call is no longer handed
    /// over: its worker is replaced at the next [`Supervisor::settle`].
    pub fn hand_over(&self, tenants: &HashSet<Uuid>) -> Vec<Uuid> {
        let mut workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        workers.handing_over = tenants.clone();
        let mut busy = Vec::new();
        for (id, running) in workers.running.iter().filter(|(id, _)| tenants.contains(id)) {
            running.begun.cancel();
            if !running.handle.is_finished() && running.in_flight.load(Ordering::SeqCst) > 0 {
                busy.push(*id);
            }
        }
        busy
    }

    /// The tenants whose workers still have executions in hand.
    pub fn busy(&self) -> Vec<Uuid> {
        let workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        let running = workers.running.iter();
        running.filter(|(_, r)| !r.handle.is_finished() && r.in_flight.load(Ordering::SeqCst) > 0).map(|(id, _)| *id).collect()
    }

    /// Resolves when a draining worker has finished its last execution
    /// (only for those already waiting: look at [`Supervisor::busy`] too).
    pub async fn became_idle(&self) {
        self.idle.notified().await;
    }

    pub fn status(&self) -> Vec<WorkerStatus> {
        let workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        let mut list: Vec<WorkerStatus> = workers
            .running
            .iter()
            .filter(|(_, r)| !r.handle.is_finished())
            .map(|(id, r)| WorkerStatus { tenant_id: *id, tenant: r.spec.slug.clone(), started_at: r.started_at, restarts: r.restarts })
            .collect();
        list.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        list
    }

    /// The tenants this node runs, by slug.
    /// How many tenants this node holds, and how many workers run.
    pub fn counts(&self) -> (usize, usize) {
        let workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        (workers.held.len(), workers.running.len())
    }

    pub fn held(&self) -> Vec<HeldTenant> {
        let workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        let mut list: Vec<HeldTenant> = workers
            .held
            .values()
            .map(|spec| HeldTenant {
                tenant_id: spec.id,
                tenant: spec.slug.clone(),
                worker: workers.running.get(&spec.id).is_some_and(|r| !r.handle.is_finished()),
            })
            .collect();
        list.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        list
    }

    /// Send a command to a tenant's worker: here if it runs here, else
    /// through the forwarder to whichever node runs it. `false` when it
    /// could go nowhere (the database still holds the work: the worker
    /// finds it when it starts).
    pub async fn send(&self, tenant: Uuid, command: WorkerCommand) -> bool {
        let remote = command.to_remote();
        if self.send_here(tenant, command).await {
            return true;
        }
        match (self.forwarder.get(), remote) {
            (Some(forwarder), Some(remote)) => {
                forwarder.forward(tenant, remote);
                true
            }
            _ => false,
        }
    }

    /// Send a command to a tenant's worker if this node runs the tenant:
    /// to its worker, started for it when none runs (it retired idle).
    pub async fn send_here(&self, tenant: Uuid, mut command: WorkerCommand) -> bool {
        // A worker retiring meanwhile refuses it: the next try starts a new one.
        for _ in 0..3 {
            let Some(sender) = self.sender(tenant, true) else { return false };
            match sender.send(command).await {
                Ok(()) => return true,
                Err(mpsc::error::SendError(back)) => command = back,
            }
        }
        false
    }

    /// Send a command only to a worker running now (none is started).
    pub async fn send_running(&self, tenant: Uuid, command: WorkerCommand) -> bool {
        match self.sender(tenant, false) {
            Some(sender) => sender.send(command).await.is_ok(),
            None => false,
        }
    }

    /// The command channel of `tenant`'s running worker; with `start`, a
    /// held tenant without one gets a worker.
    fn sender(&self, tenant: Uuid, start: bool) -> Option<mpsc::Sender<WorkerCommand>> {
        let mut workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        let restarts = match workers.running.get(&tenant) {
            Some(running) if !running.handle.is_finished() && !running.commands.is_closed() => return Some(running.commands.clone()),
            Some(running) => running.restarts + 1,
            None => 0,
        };
        if !start || self.shutdown.is_cancelled() {
            return None;
        }
        let spec = workers.held.get(&tenant)?.clone();
        let worker = self.spawn(spec, restarts, workers.handing_over.contains(&tenant));
        let sender = worker.commands.clone();
        workers.running.insert(tenant, worker);
        Some(sender)
    }

    /// The tenants whose worker runs here.
    pub fn local_tenants(&self) -> Vec<Uuid> {
        self.workers.lock().unwrap_or_else(PoisonError::into_inner).running.keys().copied().collect()
    }

    /// Stop every worker and wait for them to finish.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        let handles: Vec<JoinHandle<()>> = {
            let mut workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
            workers.held.clear();
            workers.running.drain().map(|(_, r)| r.handle).collect()
        };
        for handle in handles {
            let _ = handle.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(slug: &str) -> TenantSpec {
        TenantSpec { id: Uuid::new_v4(), slug: slug.into(), schema: format!("t_{slug}"), limits: Default::default() }
    }

    async fn ping(sup: &Supervisor, id: Uuid) -> Option<String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if !sup.send(id, WorkerCommand::Ping(tx)).await {
            return None;
        }
        rx.await.ok()
    }

    #[tokio::test]
    async fn converges_on_the_desired_set() {
        let sup = Supervisor::new(CancellationToken::new(), crate::execution::tests::engine(Default::default()));
        let (a, b) = (spec("alpha"), spec("beta"));
        sup.reconcile(vec![a.clone(), b.clone()]);
        assert_eq!(ping(&sup, a.id).await.as_deref(), Some("alpha"));
        assert_eq!(ping(&sup, b.id).await.as_deref(), Some("beta"));
        sup.reconcile(vec![b.clone()]);
        assert_eq!(ping(&sup, a.id).await, None);
        assert_eq!(sup.status().iter().map(|s| s.tenant.as_str()).collect::<Vec<_>>(), vec!["beta"]);
        sup.shutdown().await;
        assert!(sup.status().is_empty());
    }

    #[tokio::test]
    async fn a_panic_while_holding_the_workers_lock_does_not_break_later_calls() {
        let mut sup = Supervisor::new(CancellationToken::new(), crate::execution::tests::engine(Default::default()));
        // Not bound to a runtime: outside one, starting a worker panics.
        sup.runtime = None;
        let a = spec("alpha");
        // Outside a tokio runtime, starting a worker panics, with the lock held.
        let outside = std::thread::spawn({
            let (sup, a) = (sup.clone(), a.clone());
            move || sup.reconcile(vec![a])
        });
        assert!(outside.join().is_err(), "reconcile panicked outside a runtime");
        assert!(sup.workers.is_poisoned(), "the panic happened while holding the lock");
        assert!(sup.status().is_empty() && sup.busy().is_empty());
        sup.reconcile(vec![a.clone()]);
        assert_eq!(ping(&sup, a.id).await.as_deref(), Some("alpha"));
        assert_eq!(sup.local_tenants(), vec![a.id]);
        sup.shutdown().await;
        assert!(sup.status().is_empty());
    }

    #[tokio::test]
    async fn a_draining_worker_finishes_what_runs_and_starts_nothing_new() {
        use crate::execution::tests::{claimed, MemoryStore};
        let store = Arc::new(MemoryStore::default());
        let (running, arriving) = (Uuid::now_v7(), Uuid::now_v7());
        let nap = || claimed(serde_json::json!([{"name": "nap", "delay": {"duration": "300ms"}}]), vec![]);
        store.claims.lock().unwrap().insert(running, nap());
        let sup = Supervisor::new(CancellationToken::new(), crate::execution::tests::engine(store.clone()));
        let a = spec("alpha");
        sup.reconcile(vec![a.clone()]);
        let until = tokio::time::Instant::now() + Duration::from_secs(5);
        while sup.busy() != vec![a.id] && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(sup.busy(), vec![a.id], "the resumed execution runs");

        sup.begin_drain();
        store.claims.lock().unwrap().insert(arriving, nap());
        assert!(sup.send(a.id, WorkerCommand::Execute(arriving)).await);
        assert_eq!(ping(&sup, a.id).await.as_deref(), Some("alpha"), "a draining worker still serves commands");
        while !sup.busy().is_empty() && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(sup.busy().is_empty(), "the running execution never finished");
        assert!(store.outcomes.lock().unwrap().contains_key(&running), "the running execution finished");
        assert!(store.claims.lock().unwrap().contains_key(&arriving), "nothing new started while draining");
        sup.shutdown().await;
    }

    /// A tenant handed over whose worker had retired: a command that comes
    /// for it meanwhile starts a worker that starts nothing, since the node
    /// may be releasing the tenant's lease at that very moment (the next
    /// owner would run the execution again from its last checkpoint).
    #[tokio::test]
    async fn a_worker_started_during_a_handover_starts_nothing() {
        use crate::execution::tests::{claimed, MemoryStore};
        let store = Arc::new(MemoryStore::default());
        let sup = Supervisor::new(CancellationToken::new(), crate::execution::tests::engine(store.clone()));
        let a = spec("alpha");
        sup.settle(vec![a.clone()], &HashSet::new());
        assert!(sup.status().is_empty(), "no work, no worker");
        assert!(sup.hand_over(&HashSet::from([a.id])).is_empty(), "nothing in hand: the lease may go");
        let arriving = Uuid::now_v7();
        let say = claimed(serde_json::json!([{"name": "say", "log": {"message": "hi"}}]), vec![]);
        store.claims.lock().unwrap().insert(arriving, say);
        assert!(sup.send(a.id, WorkerCommand::Execute(arriving)).await, "a worker starts for the command");
        assert_eq!(ping(&sup, a.id).await.as_deref(), Some("alpha"));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!store.outcomes.lock().unwrap().contains_key(&arriving), "nothing started during the handover");
        assert!(store.claims.lock().unwrap().contains_key(&arriving), "left for the next owner");
        assert!(sup.busy().is_empty());
        sup.shutdown().await;
    }

    /// An execution no wake-up reached is found by the worker's sweep while
    /// its tenant is active; an idle worker does not sweep.
    #[tokio::test(start_paused = true)]
    async fn an_active_worker_finds_an_execution_no_wake_up_reached() {
        use crate::execution::tests::{claimed, MemoryStore};
        let store = Arc::new(MemoryStore::default());
        let quick = || claimed(serde_json::json!([{"name": "say", "log": {"message": "hi"}}]), vec![]);
        let sup = Supervisor::new(CancellationToken::new(), crate::execution::tests::engine(store.clone()));
        let a = spec("alpha");
        sup.reconcile(vec![a.clone()]);
        assert_eq!(ping(&sup, a.id).await.as_deref(), Some("alpha"));

        // Idle since it started: an execution stored without a wake-up waits.
        let unwoken = Uuid::now_v7();
        store.claims.lock().unwrap().insert(unwoken, quick());
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(!store.outcomes.lock().unwrap().contains_key(&unwoken), "an idle worker does not sweep");

        // Once it has run something, the next sweep finds it.
        let woken = Uuid::now_v7();
        store.claims.lock().unwrap().insert(woken, quick());
        assert!(sup.send(a.id, WorkerCommand::Execute(woken)).await);
        // Steps evaluate on the evaluation pool's threads, in real time, while
        // the paused clock jumps ahead whenever the runtime idles: advance it
        // in small steps, giving the pool real time in between.
        for _ in 0..110 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            std::thread::sleep(Duration::from_millis(2));
        }
        let outcomes = store.outcomes.lock().unwrap();
        assert!(outcomes.contains_key(&woken) && outcomes.contains_key(&unwoken), "the sweep ran the execution nobody woke");
        drop(outcomes);
        sup.shutdown().await;
    }

    /// A held tenant without work has no worker until a command comes; an
    /// idle worker retires once the store agrees, and the tenant's next
    /// command, or work found at a settle, starts a new one.
    #[tokio::test(start_paused = true)]
    async fn workers_run_for_tenants_with_work_and_retire_idle() {
        use crate::execution::tests::MemoryStore;
        let store = Arc::new(MemoryStore::default());
        let mut engine = crate::execution::tests::engine(store.clone());
        engine.limits.retire_idle_after = Duration::from_secs(5);
        let sup = Supervisor::new(CancellationToken::new(), engine);
        let (a, b) = (spec("alpha"), spec("beta"));
        sup.settle(vec![a.clone(), b.clone()], &HashSet::from([b.id]));
        let workers = |sup: &Supervisor| sup.status().into_iter().map(|w| w.tenant).collect::<Vec<_>>();
        assert_eq!(workers(&sup), vec!["beta"], "only the tenant with work has a worker");
        assert_eq!(sup.held().iter().map(|t| (t.tenant.as_str(), t.worker)).collect::<Vec<_>>(), vec![("alpha", false), ("beta", true)]);

        assert_eq!(ping(&sup, a.id).await.as_deref(), Some("alpha"), "a command starts a held tenant's worker");
        assert_eq!(workers(&sup), vec!["alpha", "beta"]);
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert!(workers(&sup).is_empty(), "both retired idle");
        assert_eq!(*store.retired.lock().unwrap(), 2);

        assert_eq!(ping(&sup, a.id).await.as_deref(), Some("alpha"), "and start again on the next command");
        assert!(!sup.send_running(b.id, WorkerCommand::Resume).await, "send_running starts nothing");
        sup.settle(vec![a.clone()], &HashSet::new());
        assert_eq!(ping(&sup, b.id).await, None, "a tenant no longer held gets no worker");
        sup.shutdown().await;
    }

    /// A worker that ran an execution sweeps for missed ones while it stays
    /// (every `SWEEP_EVERY`); the sweeps are not activity, so it still
    /// retires once idle for `retire_idle_after`, even when that is longer
    /// than the sweep period.
    #[tokio::test(start_paused = true)]
    async fn a_sweeping_worker_still_retires_when_idle() {
        use crate::execution::tests::{claimed, MemoryStore};
        let store = Arc::new(MemoryStore::default());
        let mut engine = crate::execution::tests::engine(store.clone());
        engine.limits.retire_idle_after = SWEEP_EVERY * 5 / 2;
        let sup = Supervisor::new(CancellationToken::new(), engine);
        let alpha = spec("alpha");
        sup.settle(vec![alpha.clone()], &HashSet::from([alpha.id]));
        let id = Uuid::now_v7();
        store.claims.lock().unwrap().insert(id, claimed(serde_json::json!([{"name": "nap", "delay": {"duration": "10ms"}}]), vec![]));
        assert!(sup.send(alpha.id, WorkerCommand::Execute(id)).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(store.outcomes.lock().unwrap().contains_key(&id), "the execution ran");
        tokio::time::sleep(SWEEP_EVERY * 2).await;
        assert_eq!(sup.status().len(), 1, "not idle long enough yet");
        tokio::time::sleep(SWEEP_EVERY).await;
        assert!(sup.status().is_empty(), "retired {:?} after its execution, sweeping meanwhile", SWEEP_EVERY * 3);
        assert_eq!(*store.retired.lock().unwrap(), 1);
        sup.shutdown().await;
    }

    /// A node that starts many workers at once (after a restart under load)
    /// lets only a few read their tenant's state at a time.
    #[tokio::test(start_paused = true)]
    async fn workers_starting_together_read_their_state_a_few_at_a_time() {
        use crate::execution::tests::MemoryStore;
        use std::sync::atomic::Ordering::SeqCst;
        let store = Arc::new(MemoryStore { listing_takes: Some(Duration::from_millis(100)), ..Default::default() });
        let sup = Supervisor::new(CancellationToken::new(), crate::execution::tests::engine(store.clone()));
        let tenants: Vec<TenantSpec> = (0..30).map(|i| spec(&format!("tenant-{i}"))).collect();
        sup.settle(tenants.clone(), &tenants.iter().map(|t| t.id).collect());
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(store.listing.load(SeqCst), 0, "every worker has read its state");
        assert_eq!(store.most_listing.load(SeqCst), STARTING_AT_ONCE, "a few at a time, and as many as allowed");
        assert_eq!(sup.status().len(), 30);
        sup.shutdown().await;
    }

    /// A new `running_executions` reaches the running worker: no restart,
    /// and the next executions run under it, lowered or raised.
    #[tokio::test(start_paused = true)]
    async fn a_worker_takes_new_limits_without_a_restart() {
        use crate::execution::tests::{claimed, MemoryStore};
        let store = Arc::new(MemoryStore::default());
        let sup = Supervisor::new(CancellationToken::new(), crate::execution::tests::engine(store.clone()));
        let one_at_a_time = TenantSpec { limits: Arc::new(TenantLimits { running_executions: 1, ..Default::default() }), ..spec("alpha") };
        sup.reconcile(vec![one_at_a_time.clone()]);
        let started_at = sup.status()[0].started_at;
        let naps = |n: usize| -> Vec<Uuid> {
            (0..n)
                .map(|_| {
                    let id = Uuid::now_v7();
                    let nap = claimed(serde_json::json!([{"name": "nap", "delay": {"duration": "300ms"}}]), vec![]);
                    store.claims.lock().unwrap().insert(id, nap);
                    id
                })
                .collect()
        };
        let finished = |ids: &[Uuid]| ids.iter().filter(|id| store.outcomes.lock().unwrap().contains_key(id)).count();

        let first = naps(2);
        for id in &first {
            assert!(sup.send(one_at_a_time.id, WorkerCommand::Execute(*id)).await);
        }
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert_eq!(finished(&first), 1, "one at a time");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(finished(&first), 2);

        let three_at_once = TenantSpec { limits: Arc::new(TenantLimits { running_executions: 3, ..Default::default() }), ..one_at_a_time.clone() };
        sup.reconcile(vec![three_at_once.clone()]);
        let second = naps(3);
        for id in &second {
            assert!(sup.send(three_at_once.id, WorkerCommand::Execute(*id)).await);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Lowered while three run: their slots go away as they end, and what comes next runs one at a time.
        sup.reconcile(vec![one_at_a_time.clone()]);
        let third = naps(2);
        for id in &third {
            assert!(sup.send(one_at_a_time.id, WorkerCommand::Execute(*id)).await);
        }
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(finished(&second), 3, "three at once after the raise");
        assert_eq!(finished(&third), 0);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(finished(&third), 1, "one at a time again after the lowering");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(finished(&third), 2);
        assert_eq!(sup.status()[0].started_at, started_at, "the worker was never restarted");
        sup.shutdown().await;
    }

    /// The tenant's `expression_cpu_*` limits reach the evaluation pool when
    /// its worker starts and whenever they change, with no restart.
    #[tokio::test]
    async fn a_worker_gives_the_evaluation_pool_its_tenant_s_cpu_budget() {
        use crate::expression::{pool, share::CpuBudget};
        let store = Arc::new(crate::execution::tests::MemoryStore::default());
        let sup = Supervisor::new(CancellationToken::new(), crate::execution::tests::engine(store));
        let budget = |millicores, burst_ms| TenantLimits { expression_cpu_millicores: millicores, expression_cpu_burst_ms: burst_ms, ..Default::default() };
        let tenant = TenantSpec { limits: Arc::new(budget(20, 0)), ..spec("gamma") };
        let key = tenant.id.to_string();
        sup.reconcile(vec![tenant.clone()]);
        let seen = |want: CpuBudget| {
            let key = key.clone();
            async move {
                for _ in 0..100 {
                    if pool::pool().cpu_budget(&key) == want {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                panic!("the pool never got {want:?}");
            }
        };
        seen(CpuBudget { burst: Duration::ZERO, share: 0.02 }).await;
        sup.reconcile(vec![TenantSpec { limits: Arc::new(budget(2000, 250)), ..tenant.clone() }]);
        seen(CpuBudget { burst: Duration::from_millis(250), share: 2.0 }).await;
        sup.shutdown().await;
    }
}
