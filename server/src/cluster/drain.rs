//! A graceful drain: the node hands its tenants over without failing or
//! interrupting an execution, so a rolling restart of every node fails
//! none.
//!
//! It begins with `tessera node drain`, `POST /api/platform/nodes/{id}/drain`
//! (the node learns it at its next heartbeat) or a stop signal. From then
//! on the node's workers start no execution: what arrives for its tenants
//! is committed as before and waits, `queued`, for the tenants' next owner.
//! Each round keeps (renews) only the leases of tenants whose workers still
//! run executions and releases the others, so idle tenants move at once
//! and busy ones as soon as their last execution finishes. When
//! `cluster.drain_timeout_ms` has passed, the rest are released too: their
//! running executions stop and their next owners resume them from the last
//! checkpoint (the interrupted step runs again), as after a crash.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex, PoisonError,
    },
    time::{Duration, Instant},
};

use uuid::Uuid;

use super::{mark_draining, Cluster};

/// Where this node's drain stands.
pub(super) struct Drain {
    pub(super) timeout: Duration,
    /// Set when the drain begins; past it, every lease goes.
    deadline: Mutex<Option<Instant>>,
    /// Drained from this process (a stop signal), whatever the database
    /// says: the node drains even when it cannot record it.
    here: AtomicBool,
}

impl Drain {
    pub(super) fn new(timeout: Duration) -> Self {
        Self { timeout, deadline: Mutex::new(None), here: AtomicBool::new(false) }
    }

    pub(super) fn begun_here(&self) -> bool {
        self.here.load(Ordering::Acquire)
    }

    /// The deadline, set the first time it is asked for.
    fn deadline(&self) -> Instant {
        *self.deadline.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert_with(|| Instant::now() + self.timeout)
    }

    fn cut_short(&self) {
        *self.deadline.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }
}

impl Cluster {
    /// Begin draining this node: record it (other nodes stop placing
    /// tenants here), stop starting executions, and run a round.
    pub async fn begin_drain(&self) {
        self.drain.here.store(true, Ordering::Release);
        self.supervisor.begin_drain();
        if let Err(e) = mark_draining(&self.pool, self.node.id).await {
            tracing::warn!(error = %e, "cannot record the drain; the node drains all the same");
        }
        self.wake();
    }

    /// End the drain now: every lease goes at the next round, running
    /// executions included (a second stop signal).
    pub fn cut_drain_short(&self) {
        tracing::warn!("drain cut short: running executions are handed over unfinished");
        self.drain.cut_short();
        self.wake();
    }

    /// Run rounds until this draining node holds no lease, for at most the
    /// drain timeout and two heartbeats (a database that does not answer
    /// cannot hold the stop up for ever: the leases then expire).
    pub async fn drained(&self) {
        let until = self.drain.deadline() + 2 * self.heartbeat;
        loop {
            if let Err(e) = self.round().await {
                tracing::warn!(error = %e, "cluster round failed while draining");
            }
            if self.held.read().unwrap_or_else(PoisonError::into_inner).is_empty() || Instant::now() >= until {
                return;
            }
            tokio::select! {
                _ = self.supervisor.became_idle() => {}
                _ = tokio::time::sleep(self.heartbeat) => {}
            }
        }
    }

    /// Of the tenants held here, those placement now gives another node
    /// (a node joined or came back) whose executions still run here: their
    /// leases are kept while those finish, up to the drain timeout, and
    /// their workers start nothing new meanwhile, as in a drain. So a
    /// rebalancing handover interrupts no step; work that arrives
    /// meanwhile waits, queued, for the next owner, which takes the lease
    /// once it is released.
    pub(super) fn handing_over(&self, assigned: &HashSet<Uuid>, active: &HashMap<Uuid, impl Sized>) -> Vec<Uuid> {
        let held = self.held.read().unwrap_or_else(PoisonError::into_inner).clone();
        let moving: HashSet<Uuid> = held.keys().filter(|t| !assigned.contains(t) && active.contains_key(t)).copied().collect();
        let busy = self.supervisor.hand_over(&moving);
        let mut since = self.handovers.lock().unwrap_or_else(PoisonError::into_inner);
        since.retain(|t, _| moving.contains(t));
        let now = Instant::now();
        let (kept, late): (Vec<Uuid>, Vec<Uuid>) =
            busy.into_iter().partition(|t| now.duration_since(*since.entry(*t).or_insert(now)) < self.drain.timeout);
        if !late.is_empty() {
            tracing::warn!(tenants = late.len(), "handover timeout: handing over tenants with executions still running");
        }
        kept
    }

    /// The leases a draining node keeps this round: those of tenants whose
    /// workers still run executions, until the drain timeout.
    pub(super) fn still_finishing(&self) -> Vec<Uuid> {
        self.supervisor.begin_drain();
        let held = self.held.read().unwrap_or_else(PoisonError::into_inner).clone();
        let busy: Vec<Uuid> = self.supervisor.busy().into_iter().filter(|t| held.contains_key(t)).collect();
        if Instant::now() < self.drain.deadline() {
            return busy;
        }
        if !busy.is_empty() {
            tracing::warn!(tenants = busy.len(), "drain timeout: handing over tenants with executions still running");
        }
        Vec::new()
    }
}
