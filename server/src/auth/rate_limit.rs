//! Login throttling per account and per client address (governor's GCRA).

use std::{
    num::NonZeroU32,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use governor::{clock::Clock, DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::AuthError;

#[derive(Clone)]
pub struct LoginLimiter {
    per_account: Arc<DefaultKeyedRateLimiter<String>>,
    per_address: Arc<DefaultKeyedRateLimiter<String>>,
    checks: Arc<AtomicU64>,
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n.max(1)).expect("at least one"))
}

impl LoginLimiter {
    pub fn new(per_account_per_minute: u32, per_address_per_minute: u32) -> Self {
        Self {
            per_account: Arc::new(RateLimiter::keyed(per_minute(per_account_per_minute))),
            per_address: Arc::new(RateLimiter::keyed(per_minute(per_address_per_minute))),
            checks: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Count one attempt for `account` (already scoped to a tenant or the
    /// platform) from `address`; refuse when either is over its quota.
    pub fn check(&self, account: &str, address: &str) -> Result<(), AuthError> {
        // Forget idle keys now and then so the maps stay bounded.
        if self.checks.fetch_add(1, Ordering::Relaxed) % 1024 == 1023 {
            self.per_account.retain_recent();
            self.per_address.retain_recent();
        }
        for (limiter, key) in [(&self.per_address, address), (&self.per_account, account)] {
            if let Err(not_until) = limiter.check_key(&key.to_string()) {
                let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
                return Err(AuthError::RateLimited { retry_after_secs: wait.as_secs().max(1) });
            }
        }
        Ok(())
    }
}
