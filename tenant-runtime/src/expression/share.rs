//! Each tenant's share of the CPU its evaluations may use.
//!
//! Why: the sandbox stops an evaluation at its budget, but a tenant that
//! sends one runaway expression after another keeps a thread busy all the
//! time, and on a small node that is a core the other tenants' requests,
//! the engine and PostgreSQL no longer have (docs/performance.md, 6c). So
//! the CPU time of a tenant's evaluations is drawn from a token bucket: a
//! burst of [`BURST`] (no real transform comes near it), refilled at
//! [`SHARE`] of a core. A tenant past it is paced, not failed: the meter's
//! periodic check (every few thousand filter steps) charges the thread's CPU
//! time since the last check, and an evaluation in debt sleeps until its
//! tenant is back within its share (in short naps, so a cancel or the
//! deadline still stops it at once). Only that tenant waits; its
//! evaluations still end at their deadline, so a runaway one fails sooner.

use std::{
    cell::{Cell, RefCell},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

/// The CPU time a tenant's evaluations may use in a burst.
pub const BURST: Duration = Duration::from_secs(1);
/// The fraction of one core a tenant's evaluations get once past the burst.
pub const SHARE: f64 = 0.25;
/// The longest single nap, so the meter checks cancel and deadline often.
const NAP: Duration = Duration::from_millis(20);

/// One tenant's bucket of evaluation CPU time.
#[derive(Debug)]
pub struct CpuShare {
    burst: Duration,
    share: f64,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// CPU time the tenant may still use at once; negative is debt.
    tokens: f64,
    refilled: Instant,
}

impl CpuShare {
    pub fn new(burst: Duration, share: f64) -> Self {
        let state = Mutex::new(Bucket { tokens: burst.as_secs_f64(), refilled: Instant::now() });
        Self { burst, share, state }
    }

    /// Charge `used` CPU time; how long to wait before going on (zero while within the share).
    fn charge(&self, used: Duration) -> Duration {
        let mut bucket = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let earned = now.duration_since(bucket.refilled).as_secs_f64() * self.share;
        bucket.tokens = (bucket.tokens + earned).min(self.burst.as_secs_f64()) - used.as_secs_f64();
        bucket.refilled = now;
        if bucket.tokens >= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(-bucket.tokens / self.share) }
    }
}

impl Default for CpuShare {
    fn default() -> Self {
        Self::new(BURST, SHARE)
    }
}

thread_local! {
    /// The share the evaluation on this thread draws from, and the thread's CPU time when last charged.
    static CURRENT: RefCell<Option<Arc<CpuShare>>> = const { RefCell::new(None) };
    static CHARGED_AT: Cell<Duration> = const { Cell::new(Duration::ZERO) };
}

/// Run `work` with this thread's evaluations drawing on `share`.
pub(crate) fn drawing_on<T>(share: Arc<CpuShare>, work: impl FnOnce() -> T) -> T {
    CHARGED_AT.set(thread_cpu_time());
    let before = CURRENT.replace(Some(share));
    struct Restore(Option<Arc<CpuShare>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.set(self.0.take());
        }
    }
    let _restore = Restore(before);
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
fn thread_cpu_time() -> Duration {
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
        let share = CpuShare::new(Duration::from_millis(100), 0.5);
        assert_eq!(share.charge(Duration::from_millis(60)), Duration::ZERO);
        // 20 ms in debt at half a core: about 40 ms to earn it back.
        let wait = share.charge(Duration::from_millis(60));
        assert!(wait > Duration::from_millis(30) && wait <= Duration::from_millis(40), "{wait:?}");
    }

    #[test]
    fn a_busy_loop_drawing_on_a_small_share_is_paced_to_it() {
        let share = Arc::new(CpuShare::new(Duration::from_millis(20), 0.25));
        let started = Instant::now();
        let cpu_before = thread_cpu_time();
        drawing_on(share, || {
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
