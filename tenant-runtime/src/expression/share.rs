//! Each tenant's share of the CPU its evaluations may use.
//!
//! Why: the sandbox stops an evaluation at its budget, but a tenant that
//! sends one runaway expression after another keeps a thread busy all the
//! time, and on a small node that is a core the other tenants' requests,
//! the engine and PostgreSQL no longer have (docs/performance.md, 6c). So
//! the CPU time of a tenant's evaluations is drawn from a token bucket: a
//! burst (the limit `expression_cpu_burst_ms`), refilled at a share of a
//! core (`expression_cpu_millicores`), both per tenant (see
//! `limits::TenantLimits`). A tenant past it is paced, not failed: the
//! meter's periodic check (every few thousand filter steps, so a short
//! evaluation is never paced) charges the thread's CPU time since the last
//! check, and an evaluation in debt sleeps until its tenant is back within
//! its share (in short naps, so a cancel or the deadline still stops it at
//! once). Only that tenant waits; its evaluations still end at their
//! deadline, so a runaway one fails sooner.

use std::{
    cell::{Cell, RefCell},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use crate::limits::TenantLimits;

/// The longest single nap, so the meter checks cancel and deadline often.
const NAP: Duration = Duration::from_millis(20);

/// How much CPU time a tenant's evaluations get: `burst` at once, then
/// `share` of one core.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuBudget {
    pub burst: Duration,
    pub share: f64,
}

impl CpuBudget {
    /// The budget `limits` give.
    pub fn of(limits: &TenantLimits) -> Self {
        Self {
            burst: Duration::from_millis(limits.expression_cpu_burst_ms as u64),
            share: limits.expression_cpu_millicores as f64 / 1000.0,
        }
    }
}

impl Default for CpuBudget {
    fn default() -> Self {
        Self::of(&TenantLimits::default())
    }
}

/// One tenant's bucket of evaluation CPU time.
#[derive(Debug)]
pub struct CpuShare {
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    budget: CpuBudget,
    /// CPU time the tenant may still use at once; negative is debt.
    tokens: f64,
    refilled: Instant,
}

impl CpuShare {
    pub fn new(budget: CpuBudget) -> Self {
        let budget = CpuBudget { share: budget.share.max(0.001), ..budget };
        Self { state: Mutex::new(Bucket { budget, tokens: budget.burst.as_secs_f64(), refilled: Instant::now() }) }
    }

    /// A new budget from now on (the tenant's limits changed); what the
    /// tenant used or owes so far stays, within the new burst.
    pub fn set(&self, budget: CpuBudget) {
        let mut bucket = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        bucket.refill(Instant::now());
        bucket.budget = CpuBudget { share: budget.share.max(0.001), ..budget };
        bucket.tokens = bucket.tokens.min(budget.burst.as_secs_f64());
    }

    pub fn budget(&self) -> CpuBudget {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).budget
    }

    /// Charge `used` CPU time; how long to wait before going on (zero while within the share).
    fn charge(&self, used: Duration) -> Duration {
        let mut bucket = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        bucket.refill(Instant::now());
        bucket.tokens -= used.as_secs_f64();
        if bucket.tokens >= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(-bucket.tokens / bucket.budget.share) }
    }
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        let earned = now.duration_since(self.refilled).as_secs_f64() * self.budget.share;
        self.tokens = (self.tokens + earned).min(self.budget.burst.as_secs_f64());
        self.refilled = now;
    }
}

impl Default for CpuShare {
    fn default() -> Self {
        Self::new(CpuBudget::default())
    }
}

thread_local! {
    /// The share the evaluation on this thread draws from, and the thread's CPU time when last charged.
    static CURRENT: RefCell<Option<Arc<CpuShare>>> = const { RefCell::new(None) };
    static CHARGED_AT: Cell<Duration> = const { Cell::new(Duration::ZERO) };
}

/// Run `work` with this thread's evaluations drawing on `share`. A tenant
/// in debt first waits until it is back within its share, for at most
/// `longest_wait` (an evaluation's own deadline: a tenant whose share is
/// tiny and whose debt is large must not hold the thread for hours; past
/// it the meter paces the evaluation until its deadline stops it), and not
/// once `cancel` is raised. Whatever `work` used is charged when it ends, so
/// short evaluations, the conversion of a result and the drop of what an
/// evaluation built count too.
pub(crate) fn drawing_on<T>(share: Arc<CpuShare>, cancel: &AtomicBool, longest_wait: Duration, work: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    loop {
        let owed = share.charge(Duration::ZERO);
        let left = longest_wait.saturating_sub(started.elapsed());
        if owed.is_zero() || left.is_zero() || cancel.load(Ordering::Relaxed) {
            break;
        }
        std::thread::sleep(owed.min(NAP).min(left));
    }
    CHARGED_AT.set(thread_cpu_time());
    let before = CURRENT.replace(Some(share));
    struct Settle(Option<Arc<CpuShare>>);
    impl Drop for Settle {
        fn drop(&mut self) {
            pace();
            CURRENT.set(self.0.take());
        }
    }
    let _settle = Settle(before);
    work()
}

/// Charge the CPU time used since the last charge; the nap to take first if
/// the tenant is past its share (at most [`NAP`]; the caller checks again).
pub(super) fn pace() -> Duration {
    CURRENT.with_borrow(|share| {
        let Some(share) = share else { return Duration::ZERO };
        let now = thread_cpu_time();
        let used = now.saturating_sub(CHARGED_AT.replace(now));
        share.charge(used).min(NAP)
    })
}

/// CPU time this thread has used (Linux: `CLOCK_THREAD_CPUTIME_ID`).
pub(crate) fn thread_cpu_time() -> Duration {
    let mut time = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: writes only into `time`, which outlives the call.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut time) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(time.tv_sec.max(0) as u64, time.tv_nsec.clamp(0, 999_999_999) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_within_its_burst_never_waits_and_one_past_it_waits_for_its_share() {
        let share = CpuShare::new(CpuBudget { burst: Duration::from_millis(100), share: 0.5 });
        assert_eq!(share.charge(Duration::from_millis(60)), Duration::ZERO);
        // 20 ms in debt at half a core: about 40 ms to earn it back.
        let wait = share.charge(Duration::from_millis(60));
        assert!(wait > Duration::from_millis(30) && wait <= Duration::from_millis(40), "{wait:?}");
    }

    #[test]
    fn a_new_budget_applies_from_now_on_and_keeps_what_is_owed() {
        let share = CpuShare::new(CpuBudget { burst: Duration::from_millis(100), share: 1.0 });
        // 50 ms in debt at a full core: 50 ms to earn it back.
        let wait = share.charge(Duration::from_millis(150));
        assert!(wait > Duration::from_millis(40) && wait <= Duration::from_millis(50), "{wait:?}");
        // The same debt at a tenth of a core takes ten times as long.
        share.set(CpuBudget { burst: Duration::from_millis(100), share: 0.1 });
        let wait = share.charge(Duration::ZERO);
        assert!(wait > Duration::from_millis(400) && wait <= Duration::from_millis(500), "{wait:?}");
        // A smaller burst caps what is saved up; no burst: every charge waits.
        share.set(CpuBudget { burst: Duration::ZERO, share: 0.5 });
        std::thread::sleep(Duration::from_millis(30));
        assert!(share.charge(Duration::from_millis(10)) > Duration::ZERO);
    }

    #[test]
    fn a_tenant_deep_in_debt_waits_no_longer_than_its_longest_wait() {
        // A thousandth of a core, a second owed: paying it would take 1,000 s.
        let share = Arc::new(CpuShare::new(CpuBudget { burst: Duration::ZERO, share: 0.001 }));
        share.charge(Duration::from_secs(1));
        let started = Instant::now();
        assert_eq!(drawing_on(share.clone(), &AtomicBool::new(false), Duration::from_millis(100), || 7), 7);
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(100) && waited < Duration::from_secs(2), "{waited:?}");
        // A cancel ends the wait at once.
        let started = Instant::now();
        drawing_on(share, &AtomicBool::new(true), Duration::from_secs(60), || ());
        assert!(started.elapsed() < Duration::from_millis(50));
    }

    #[test]
    fn a_busy_loop_drawing_on_a_small_share_is_paced_to_it() {
        let share = Arc::new(CpuShare::new(CpuBudget { burst: Duration::from_millis(20), share: 0.25 }));
        let started = Instant::now();
        let cpu_before = thread_cpu_time();
        drawing_on(share, &AtomicBool::new(false), Duration::from_secs(1), || {
            while started.elapsed() < Duration::from_millis(400) {
                let nap = pace();
                if nap.is_zero() {
                    std::hint::black_box((0..10_000u64).sum::<u64>());
                } else {
                    std::thread::sleep(nap);
                }
            }
        });
        let used = thread_cpu_time() - cpu_before;
        // The burst plus a quarter of the wall time, with room for the last
        // charge and a loaded machine; unpaced it would be the full 400 ms.
        assert!(used < Duration::from_millis(200), "used {used:?} of CPU in 400 ms");
    }
}
