//! One tenant's worker task: it runs the tenant's executions, at most its
//! limit `running_executions` at once, each as its own task, and owns the
//! tenant's schedule and queue triggers (`crate::triggers`).

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::{
    sync::{mpsc, watch, Notify, OwnedSemaphorePermit, Semaphore},
    time::Instant,
    task::{self, AbortHandle, JoinError, JoinSet},
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    execution::{self, Engine},
    expression::{pool, share::CpuBudget},
    limits::TenantLimits,
    supervisor::Link,
    triggers::Triggers,
};

/// What the supervisor needs to know about a tenant to run its worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantSpec {
    pub id: Uuid,
    pub slug: String,
    pub schema: String,
    /// The tenant's effective limits. A change reaches the running worker
    /// (no restart): executions that start afterwards run under the new ones.
    pub limits: Arc<TenantLimits>,
}

impl TenantSpec {
    /// The same tenant, the same worker: only the limits may differ.
    pub fn same_worker(&self, other: &TenantSpec) -> bool {
        self.id == other.id && self.slug == other.slug && self.schema == other.schema
    }
}

/// Messages a worker accepts.
#[derive(Debug)]
pub enum WorkerCommand {
    /// Answer with the tenant's slug: proves the worker is alive and serving.
    Ping(tokio::sync::oneshot::Sender<String>),
    /// Run this (committed, `queued`) execution. Only a wake-up call: the
    /// database is the source of truth, and a worker that starts picks up
    /// every unfinished execution of its tenant.
    Execute(Uuid),
    /// Stop this execution (its cancel is committed) and record it
    /// `cancelled`. Checkpoints already committed stay.
    Cancel(Uuid),
    /// The tenant's integrations changed (applied, rolled back, enabled,
    /// disabled, deleted): re-read the schedule and queue triggers.
    Reload,
    /// Look for unfinished executions again: wake-ups may have been lost
    /// (the node's notification connection dropped).
    Resume,
}

impl WorkerCommand {
    /// The command as it travels to another node; `None` for `Ping`, which
    /// answers on a channel of this process.
    pub fn to_remote(&self) -> Option<RemoteCommand> {
        match self {
            Self::Ping(_) => None,
            Self::Execute(id) => Some(RemoteCommand::Execute(*id)),
            Self::Cancel(id) => Some(RemoteCommand::Cancel(*id)),
            Self::Reload => Some(RemoteCommand::Reload),
            Self::Resume => Some(RemoteCommand::Resume),
        }
    }
}

/// A [`WorkerCommand`] that can cross nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoteCommand {
    Execute(Uuid),
    Cancel(Uuid),
    Reload,
    Resume,
}

impl From<RemoteCommand> for WorkerCommand {
    fn from(command: RemoteCommand) -> Self {
        match command {
            RemoteCommand::Execute(id) => Self::Execute(id),
            RemoteCommand::Cancel(id) => Self::Cancel(id),
            RemoteCommand::Reload => Self::Reload,
            RemoteCommand::Resume => Self::Resume,
        }
    }
}

/// How a worker takes part in its node's drain.
pub(crate) struct Drain {
    /// Cancelled when the node drains or the tenant is handed over to
    /// another node: start no execution any more.
    pub begun: CancellationToken,
    /// What the worker has in hand, for the supervisor to read.
    pub in_flight: Arc<AtomicUsize>,
    /// Poked when the worker, draining, has nothing left in hand.
    pub idle: Arc<Notify>,
}

impl Drain {
    fn report(&self, in_flight: usize) {
        self.in_flight.store(in_flight, Ordering::Release);
        if in_flight == 0 && self.begun.is_cancelled() {
            self.idle.notify_waiters();
        }
    }
}

/// The worker's main loop: resume what a stopped node left unfinished,
/// then serve commands until cancelled, or until it has been idle for
/// `retire_idle_after` with no trigger of its own and the store agrees the
/// tenant has no work ([`crate::ExecutionStore::retire`]): then it retires, and
/// the next command for the tenant starts a new worker. So a node runs
/// workers for the tenants with work, not for all it holds. Once its
/// node drains it starts no execution (schedule ticks and queue messages
/// are still committed, for the tenant's next owner to run) and lets the
/// running ones finish.
pub(crate) async fn run(
    spec: TenantSpec,
    engine: Engine,
    mut commands: mpsc::Receiver<WorkerCommand>,
    mut limits: watch::Receiver<Arc<TenantLimits>>,
    cancel: CancellationToken,
    drain: Drain,
    link: Link,
) {
    tracing::debug!(tenant = %spec.slug, "tenant worker started");
    let retire_after = engine.limits.retire_idle_after;
    let mut executions = Executions::new(spec.clone(), engine.clone(), drain.begun.clone(), drain.in_flight.clone());
    let (queued_tx, mut queued) = mpsc::unbounded_channel();
    let mut triggers = Triggers::new(executions.spec.clone(), engine, queued_tx, cancel.child_token());
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = async {
            let _turn = link.turn_to_start().await;
            executions.resume().await;
            triggers.reload().await
        } => {}
    }
    let mut sweep = Sweep::new();
    let mut idle_since = Instant::now();
    loop {
        drain.report(executions.tasks.len());
        // One timer for all the tenant's schedules: the earliest due one.
        let due = sleep_until(triggers.wake_at());
        let idle = executions.tasks.is_empty() && triggers.is_empty();
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep_until(idle_since + retire_after), if idle => {
                match executions.engine.store.retire(&executions.spec).await {
                    Ok(true) => {
                        tracing::debug!(tenant = %spec.slug, "tenant worker retired: nothing to run");
                        drop((executions, triggers));
                        return link.leave(commands).await;
                    }
                    // Work it does not run (a wake-up that missed it): run it.
                    Ok(false) => executions.resume().await,
                    Err(e) => tracing::warn!(tenant = %spec.slug, error = %e, "cannot tell whether the tenant has work; the worker stays"),
                }
            }
            _ = sweep.due(link.sweep_every()) => {
                sweep.done();
                executions.resume().await;
                // A sweep is not activity: a worker whose sweeps find
                // nothing still retires once idle long enough.
                continue;
            }
            Some(done) = executions.tasks.join_next_with_id() => {
                sweep.active();
                executions.finished(done);
            }
            _ = due => triggers.fire_due().await.into_iter().for_each(|id| executions.start(id)),
            Some(id) = queued.recv() => executions.start(id),
            Ok(()) = limits.changed() => {
                let new = limits.borrow_and_update().clone();
                tracing::info!(tenant = %spec.slug, limits = ?new, "tenant limits changed");
                executions.set_limits(new);
                triggers.set_spec(executions.spec.clone());
                triggers.reload().await;
            }
            command = commands.recv() => match command {
                Some(WorkerCommand::Ping(reply)) => {
                    let _ = reply.send(spec.slug.clone());
                }
                Some(WorkerCommand::Execute(id)) => executions.start(id),
                Some(WorkerCommand::Cancel(id)) => executions.cancel(id),
                Some(WorkerCommand::Reload) => triggers.reload().await,
                Some(WorkerCommand::Resume) => executions.resume().await,
                None => break,
            },
        }
        idle_since = Instant::now();
    }
    // Dropping the join set aborts running executions: they stay `running`
    // in the database and resume, from their last checkpoint, when a
    // worker of this tenant starts again.
    tracing::debug!(tenant = %spec.slug, "tenant worker stopped");
}

/// For how long after its last activity a worker keeps looking for
/// unfinished executions it does not run (how often: `Link::sweep_every`).
const SWEEP_WHILE: Duration = Duration::from_secs(300);

/// The worker's safety net: PostgreSQL holds every accepted execution, and
/// wake-ups are only a shortcut to it. A wake-up can miss (sent to a node
/// that was handing the tenant over, or lost with its node), and each
/// handover makes the next owner scan; a busy tenant's worker also scans
/// every few seconds, so an execution no wake-up reached waits seconds, not
/// until the next handover. Idle tenants do not scan: they have nothing in
/// flight to lose, and thousands of them would cost a query each.
struct Sweep {
    last: Instant,
    /// When an execution of this worker last ended; `None`: never.
    active: Option<Instant>,
}

impl Sweep {
    fn new() -> Self {
        Self { last: Instant::now(), active: None }
    }

    fn active(&mut self) {
        self.active = Some(Instant::now());
    }

    fn done(&mut self) {
        self.last = Instant::now();
    }

    async fn due(&self, every: Duration) {
        match self.active {
            Some(at) if at.elapsed() <= SWEEP_WHILE => tokio::time::sleep_until(self.last + every).await,
            _ => std::future::pending().await,
        }
    }
}

/// Sleep until `at` (at once when it has passed); forever without a time.
async fn sleep_until(at: Option<chrono::DateTime<chrono::Utc>>) {
    match at {
        Some(at) => tokio::time::sleep((at - chrono::Utc::now()).to_std().unwrap_or_default()).await,
        None => std::future::pending().await,
    }
}

/// The executions this worker runs. Owned by the worker's task, so
/// stopping the worker stops them too.
struct Executions {
    spec: Arc<TenantSpec>,
    engine: Engine,
    /// The per-tenant concurrency limit.
    permits: Arc<Semaphore>,
    /// Slots to take away once running executions give them back (a
    /// lowered limit, when more than the new one run).
    owed: Arc<AtomicUsize>,
    tasks: JoinSet<Uuid>,
    /// So a wake-up for an execution already running here does not start
    /// it twice.
    running: HashSet<Uuid>,
    by_task: HashMap<task::Id, Uuid>,
    /// How to stop each running execution's task (cancel).
    aborts: HashMap<Uuid, AbortHandle>,
    /// Executions stopped by a cancel: once their task is gone, they are
    /// recorded `cancelled`.
    cancelling: HashSet<Uuid>,
    /// The node drains (or this tenant is handed over): start nothing new.
    draining: CancellationToken,
    /// What the worker has in hand, as its supervisor reads it.
    in_flight: Arc<AtomicUsize>,
}

impl Executions {
    fn new(spec: TenantSpec, engine: Engine, draining: CancellationToken, in_flight: Arc<AtomicUsize>) -> Self {
        let permits = Arc::new(Semaphore::new(spec.limits.running_executions.max(1)));
        pool::pool().set_cpu_budget(&spec.id.to_string(), CpuBudget::of(&spec.limits));
        Self {
            spec: Arc::new(spec),
            engine,
            permits,
            owed: Arc::new(AtomicUsize::new(0)),
            tasks: JoinSet::new(),
            running: HashSet::new(),
            by_task: HashMap::new(),
            aborts: HashMap::new(),
            cancelling: HashSet::new(),
            draining,
            in_flight,
        }
    }

    /// New limits: executions that start from now on run under them, and
    /// the number of slots follows `running_executions` (a lowered limit
    /// takes slots away as running executions end).
    fn set_limits(&mut self, limits: Arc<TenantLimits>) {
        let (old, new) = (self.spec.limits.running_executions.max(1), limits.running_executions.max(1));
        if new > old {
            let mut more = new - old;
            // Slots still owed from an earlier lowering are forgiven first.
            while more > 0 && self.owed.fetch_update(Ordering::AcqRel, Ordering::Acquire, |o| o.checked_sub(1)).is_ok() {
                more -= 1;
            }
            self.permits.add_permits(more);
        } else if new < old {
            let fewer = old - new;
            let forgotten = self.permits.forget_permits(fewer);
            self.owed.fetch_add(fewer - forgotten, Ordering::AcqRel);
        }
        pool::pool().set_cpu_budget(&self.spec.id.to_string(), CpuBudget::of(&limits));
        self.spec = Arc::new(TenantSpec { limits, ..(*self.spec).clone() });
    }

    async fn resume(&mut self) {
        match self.engine.store.unfinished(&self.spec).await {
            Ok(ids) => {
                if !ids.is_empty() {
                    tracing::info!(tenant = %self.spec.slug, count = ids.len(), "resuming unfinished executions");
                }
                ids.into_iter().for_each(|id| self.start(id));
            }
            // Warn, not error: a tenant whose schema is not migrated yet has
            // no executions table, and it has nothing to resume either.
            Err(e) => tracing::warn!(tenant = %self.spec.slug, error = %e, "cannot list unfinished executions"),
        }
    }

    fn start(&mut self, id: Uuid) {
        if self.draining.is_cancelled() {
            // It stays queued (or running, from a stopped node) in the
            // database: the tenant's next owner resumes it.
            tracing::debug!(tenant = %self.spec.slug, execution_id = %id, "draining: left for the next owner");
            return;
        }
        if !self.running.insert(id) {
            return;
        }
        // Counted before its task can begin: a handover or drain that stops
        // starts after this sees it in hand (and keeps the lease) or stops
        // it before it begins, never neither.
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let (spec, engine, permits, draining) = (self.spec.clone(), self.engine.clone(), self.permits.clone(), self.draining.clone());
        let owed = self.owed.clone();
        let handle = self.tasks.spawn(async move {
            // Waiting for a slot holds nothing but this small task; a
            // drain that begins meanwhile leaves the execution unstarted.
            let permit = tokio::select! {
                biased;
                _ = draining.cancelled() => None,
                permit = permits.acquire_owned() => permit.ok(),
            };
            if let Some(permit) = permit {
                let _slot = Slot { permit: Some(permit), owed };
                execution::run_guarded(&spec, &engine, id).await;
            }
            id
        });
        self.by_task.insert(handle.id(), id);
        self.aborts.insert(id, handle);
    }

    /// Stop execution `id`. The final state is written only once its task
    /// is gone (`finished`), so no step of it can commit afterwards. One
    /// that does not run here has no task to stop: it is recorded at once
    /// (a node runs all of its tenant's executions).
    fn cancel(&mut self, id: Uuid) {
        match self.aborts.get(&id) {
            Some(handle) => {
                handle.abort();
                self.cancelling.insert(id);
            }
            None => self.record_cancel(id),
        }
    }

    /// Record the cancel as a task of the join set: a worker that stops
    /// meanwhile leaves the execution `running` with its cancel requested,
    /// and the next claim cancels it.
    fn record_cancel(&mut self, id: Uuid) {
        let (spec, engine) = (self.spec.clone(), self.engine.clone());
        self.tasks.spawn(async move {
            match engine.store.cancelled(&spec, id).await {
                Ok(()) => tracing::info!(tenant = %spec.slug, execution_id = %id, "execution cancelled"),
                Err(e) => tracing::error!(tenant = %spec.slug, execution_id = %id, error = %e, "cannot record a cancel; the next claim does"),
            }
            id
        });
    }

    fn finished(&mut self, done: Result<(task::Id, Uuid), JoinError>) {
        let task = match &done {
            Ok((task, _)) => *task,
            Err(e) => e.id(),
        };
        if let Some(id) = self.by_task.remove(&task) {
            self.running.remove(&id);
            self.aborts.remove(&id);
            if self.cancelling.remove(&id) {
                self.record_cancel(id);
            }
        }
    }
}

/// An execution's slot. Given back when the execution ends, however it
/// ends (a cancel aborts its task), unless a lowered limit still owes one:
/// then the slot goes away.
struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    owed: Arc<AtomicUsize>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take()
            && self.owed.fetch_update(Ordering::AcqRel, Ordering::Acquire, |o| o.checked_sub(1)).is_ok()
        {
            permit.forget();
        }
    }
}
