//! The evaluation pool: the threads every tenant's jq runs on.
//!
//! Why not tokio's blocking pool: an evaluation can hold its thread for
//! seconds, the blocking pool is shared with everything else that blocks
//! (DNS, files), and its threads have small stacks. Here a fixed number of
//! threads with large stacks (committed by the OS only as used) run
//! evaluations, and each tenant holds at most a few of them at once, so one
//! tenant's runaway expressions cannot take every thread of the node: the
//! others' evaluations always find one. A waiter that stops waiting (the
//! step's timeout fired, the execution was cancelled) raises the
//! evaluation's cancel flag, which its meter reads within milliseconds
//! (see `sandbox`): an abandoned evaluation stops instead of burning a core.

use std::{
    collections::HashMap,
    panic::{self, AssertUnwindSafe},
    sync::{
        Arc, Mutex, OnceLock, PoisonError,
        atomic::{AtomicBool, AtomicUsize, Ordering},
        mpsc,
    },
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use super::{sandbox, share::{self, CpuBudget, CpuShare}};

/// The stack of each evaluation thread: an evaluation's recursion may use
/// `sandbox::MAX_EVALUATION_STACK` of it, and dropping the deepest value an
/// evaluation can build within its memory budget (about a million levels of
/// `[.]`, dropped by recursion) needs the rest. Only the pages a thread
/// touches cost memory.
pub const THREAD_STACK: usize = 512 * 1024 * 1024;

/// How many threads, and how many of them one tenant may hold at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSize {
    pub threads: usize,
    pub per_tenant: usize,
}

impl Default for PoolSize {
    /// Twice the cores (at least four) and, for a tenant, half the cores
    /// (at least one): a tenant whose every evaluation runs to its limit
    /// leaves half the cores, and most threads, to the others.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self { threads: (2 * cores).max(4), per_tenant: (cores / 2).max(1) }
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// What one tenant draws on: its slots (threads held at once) and its
/// share of CPU time over time (see `share`).
#[derive(Clone)]
struct TenantSlots {
    slots: Arc<Semaphore>,
    cpu: Arc<CpuShare>,
}

pub struct Pool {
    size: PoolSize,
    queue: Mutex<mpsc::Sender<Job>>,
    receiver: Arc<Mutex<mpsc::Receiver<Job>>>,
    /// Threads started in place of stranded ones (see `sandbox::CountingAllocator`).
    replaced: AtomicUsize,
    tenants: Mutex<HashMap<String, TenantSlots>>,
    busy: Arc<AtomicUsize>,
}

/// Why an evaluation gave no result.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("the evaluation panicked: {0}")]
    Panicked(String),
    #[error("the evaluation pool has stopped")]
    Stopped,
}

static POOL: OnceLock<Pool> = OnceLock::new();

/// Size the node's pool; only the first call (before any evaluation) counts.
pub fn configure(size: PoolSize) {
    let _ = POOL.set(Pool::start(size));
}

/// The node's pool, started with the default size on first use.
pub fn pool() -> &'static Pool {
    POOL.get_or_init(|| Pool::start(PoolSize::default()))
}

impl Pool {
    /// A pool of its own (the node uses one, see [`pool`]).
    pub(crate) fn start(size: PoolSize) -> Self {
        let size = PoolSize { threads: size.threads.max(2), per_tenant: size.per_tenant.clamp(1, size.threads.max(2) - 1) };
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        for n in 0..size.threads {
            spawn_thread(n, receiver.clone());
        }
        let replaced = AtomicUsize::new(sandbox::stranded());
        Self { size, queue: Mutex::new(sender), receiver, replaced, tenants: Mutex::default(), busy: Arc::default() }
    }

    /// A thread in place of each one stranded since the last look.
    fn replace_stranded(&self) {
        let stranded = sandbox::stranded();
        let replaced = self.replaced.swap(stranded, Ordering::Relaxed);
        for n in replaced..stranded {
            tracing::error!("an evaluation allocated past twice its memory budget; its thread is stranded for good, its tenant's slot stays taken");
            spawn_thread(self.size.threads + n, self.receiver.clone());
        }
    }

    pub fn size(&self) -> PoolSize {
        self.size
    }

    /// Run `work` (which evaluates the expressions of `tenant`, the tenant's
    /// id) on the pool once
    /// one of the tenant's slots is free. Dropping the returned future
    /// cancels the evaluation: it stops at its next check.
    pub async fn run<T: Send + 'static>(&self, tenant: &str, work: impl FnOnce() -> T + Send + 'static) -> Result<T, PoolError> {
        self.replace_stranded();
        let TenantSlots { slots, cpu } = self.tenant(tenant);
        let slot = slots.acquire_owned().await.map_err(|_| PoolError::Stopped)?;
        let cancel = Arc::new(AtomicBool::new(false));
        let _raise = RaiseOnDrop(cancel.clone());
        let (sender, receiver) = oneshot::channel();
        let job = self.job(slot, cpu, cancel, work, sender);
        self.queue.lock().unwrap_or_else(PoisonError::into_inner).send(job).map_err(|_| PoolError::Stopped)?;
        receiver.await.map_err(|_| PoolError::Stopped)?
    }

    fn job<T: Send + 'static>(
        &self,
        slot: OwnedSemaphorePermit,
        cpu: Arc<CpuShare>,
        cancel: Arc<AtomicBool>,
        work: impl FnOnce() -> T + Send + 'static,
        reply: oneshot::Sender<Result<T, PoolError>>,
    ) -> Job {
        let busy = self.busy.clone();
        Box::new(move || {
            // Held until the evaluation ends, abandoned or not: the tenant's
            // slot is free only once its thread is.
            let _slot = slot;
            if cancel.load(Ordering::Relaxed) {
                return; // abandoned while queued
            }
            busy.fetch_add(1, Ordering::Relaxed);
            let flag = cancel.clone();
            let result = panic::catch_unwind(AssertUnwindSafe(|| share::drawing_on(cpu, &flag, sandbox::MAX_TIME, || sandbox::cancelled_by(cancel, work))));
            busy.fetch_sub(1, Ordering::Relaxed);
            let _ = reply.send(result.map_err(|panic| PoolError::Panicked(panic_text(panic.as_ref()))));
        })
    }

    /// Give `tenant`'s evaluations `budget` of CPU from now on (its limits
    /// `expression_cpu_*`; the tenant's worker sets them when it starts and
    /// when they change). Until then a tenant draws on the default budget.
    pub fn set_cpu_budget(&self, tenant: &str, budget: CpuBudget) {
        let cpu = self.tenant(tenant).cpu;
        if cpu.budget() != budget {
            cpu.set(budget);
        }
    }

    /// The CPU budget `tenant`'s evaluations draw on now.
    pub fn cpu_budget(&self, tenant: &str) -> CpuBudget {
        self.tenant(tenant).cpu.budget()
    }

    fn tenant(&self, tenant: &str) -> TenantSlots {
        let mut tenants = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
        let new = || TenantSlots { slots: Arc::new(Semaphore::new(self.size.per_tenant)), cpu: Arc::default() };
        tenants.entry(tenant.to_string()).or_insert_with(new).clone()
    }

    /// Threads running an evaluation now, all tenants together.
    pub fn busy(&self) -> usize {
        self.busy.load(Ordering::Relaxed)
    }

    /// Slots `tenant` holds now: evaluations queued or running for it.
    pub fn held_by(&self, tenant: &str) -> usize {
        let tenants = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
        tenants.get(tenant).map_or(0, |t| self.size.per_tenant - t.slots.available_permits())
    }
}

fn spawn_thread(n: usize, receiver: Arc<Mutex<mpsc::Receiver<Job>>>) {
    let spawned = std::thread::Builder::new().name(format!("tessera-eval-{n}")).stack_size(THREAD_STACK).spawn(move || {
        loop {
            // The lock is held only while waiting for the next job.
            let job = receiver.lock().unwrap_or_else(PoisonError::into_inner).recv();
            match job {
                Ok(job) => job(),
                Err(_) => return,
            }
            if sandbox::demoted() {
                // Still at the lowest priority after a long evaluation: a fresh thread takes over.
                spawn_thread(n, receiver);
                return;
            }
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start an evaluation thread");
    }
}

struct RaiseOnDrop(Arc<AtomicBool>);

impl Drop for RaiseOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned()).unwrap_or_else(|| "panic".into())
}
