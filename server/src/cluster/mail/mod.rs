//! Commands for a tenant's worker that land on a node that does not run
//! it: an execution accepted here, a cancel, a changed integration. The
//! supervisor hands a command to its `Forwarder` only when the worker does
//! not run on this node, so work for a local worker never leaves the
//! process. Two carriers reach the owner node:
//!
//! - `broker`: RabbitMQ, when the cluster names one (`cluster.amqp_url`);
//! - `notify`: PostgreSQL notifications otherwise (a single node, or a
//!   cluster without a broker).
//!
//! Either way PostgreSQL stays the source of truth: every command follows a
//! committed change, and a worker that starts resumes all of its tenant's
//! unfinished executions and reads its triggers, so a lost command only
//! delays work. After a carrier reconnects, every local worker looks again
//! ([`resume_all`]), since commands sent meanwhile may be lost.

pub mod broker;
pub mod notify;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use tessera_runtime::{RemoteCommand, Supervisor, WorkerCommand};
use uuid::Uuid;

/// One command for one tenant's worker, as it travels between nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Letter {
    pub tenant: Uuid,
    pub command: RemoteCommand,
}

impl Letter {
    /// The letter to send when this one could not be: an `Execute` becomes
    /// a `Resume` of its tenant, which finds that execution and any other
    /// one left waiting, so a long outage keeps one letter per tenant.
    pub fn again(self) -> Self {
        match self.command {
            RemoteCommand::Execute(_) => Self { tenant: self.tenant, command: RemoteCommand::Resume },
            _ => self,
        }
    }
}

/// Which carrier this node's worker commands use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Carrier {
    Amqp,
    Notify,
}

/// What this node's mail did since it started (`GET /api/platform/node`).
#[derive(Debug)]
pub struct MailCounters {
    carrier: Carrier,
    /// Letters the carrier accepted (for RabbitMQ: confirmed by the broker).
    sent: AtomicU64,
    /// Letters that could not be sent at once (kept for after a reconnect).
    failed: AtomicU64,
    /// Letters received for this node's workers.
    received: AtomicU64,
    /// Whether the broker mailbox is connected and consuming.
    connected: AtomicBool,
}

#[derive(Debug, Serialize)]
pub struct MailStatus {
    pub carrier: Carrier,
    pub sent: u64,
    pub failed: u64,
    pub received: u64,
    /// Whether the mailbox consumes from the broker now; `None` for
    /// notifications, whose listener reconnects on its own.
    pub connected: Option<bool>,
}

impl MailCounters {
    pub fn new(carrier: Carrier) -> Self {
        Self {
            carrier,
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            received: AtomicU64::new(0),
            connected: AtomicBool::new(false),
        }
    }

    pub fn status(&self) -> MailStatus {
        MailStatus {
            carrier: self.carrier,
            sent: self.sent.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            connected: (self.carrier == Carrier::Amqp).then(|| self.connected.load(Ordering::Relaxed)),
        }
    }

    fn sent(&self, count: usize) {
        self.sent.fetch_add(count as u64, Ordering::Relaxed);
    }

    fn failed(&self, count: usize) {
        self.failed.fetch_add(count as u64, Ordering::Relaxed);
    }

    fn received(&self) {
        self.received.fetch_add(1, Ordering::Relaxed);
    }

    fn connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
    }
}

/// Hand a letter to its worker if it runs here. `false` when it does not
/// (it moved, or has not started yet): the letter is dropped, because a
/// worker that starts resumes its tenant's work from the database.
async fn hand_over(supervisor: &Supervisor, letter: Letter) -> bool {
    let handed = supervisor.send_here(letter.tenant, letter.command.into()).await;
    if !handed {
        tracing::debug!(tenant_id = %letter.tenant, command = ?letter.command, "worker not run here; its owner finds the work in the database");
    }
    handed
}

/// Every local worker looks for unfinished work again: commands sent
/// while the carrier was away may be lost.
async fn resume_all(supervisor: &Supervisor) {
    for tenant in supervisor.local_tenants() {
        supervisor.send_here(tenant, WorkerCommand::Resume).await;
    }
}
