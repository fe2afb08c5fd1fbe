//! Commands for a tenant's worker that lands on a node that does not run
//! it: an execution accepted here, a cancel, a changed integration. They
//! travel as PostgreSQL notifications on one channel; the node that runs
//! the worker hands them on. PostgreSQL stays the source of truth: a lost
//! notification only delays work, since a worker picks up every unfinished
//! execution when it starts, and every worker of a node looks again when
//! the node's notification connection comes back (`resync`).

use deadpool_postgres::Pool;
use serde::{Deserialize, Serialize};
use tessera_runtime::{Forwarder, RemoteCommand, Supervisor, WorkerCommand};
use uuid::Uuid;

use crate::notifications::Subscriber;

const CHANNEL: &str = "tessera_worker_commands";

#[derive(Debug, Serialize, Deserialize)]
struct Letter {
    tenant: Uuid,
    command: RemoteCommand,
}

/// Sends commands for workers elsewhere in the cluster.
pub struct NotifyForwarder {
    pool: Pool,
}

impl NotifyForwarder {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }
}

impl Forwarder for NotifyForwarder {
    fn forward(&self, tenant: Uuid, command: RemoteCommand) {
        let (pool, payload) = (self.pool.clone(), serde_json::to_string(&Letter { tenant, command }).expect("a letter serialises"));
        tokio::spawn(async move {
            let sent = match pool.get().await {
                Ok(client) => client.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload]).await.map(|_| ()).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = sent {
                tracing::warn!(tenant_id = %tenant, error = %e, "cannot forward a worker command; its owner finds the work on its next start or resync");
            }
        });
    }
}

/// Receives commands for the workers this node runs.
pub struct WorkerMailbox {
    supervisor: Supervisor,
}

impl WorkerMailbox {
    pub fn new(supervisor: Supervisor) -> Self {
        Self { supervisor }
    }
}

impl Subscriber for WorkerMailbox {
    fn channel(&self) -> &'static str {
        CHANNEL
    }

    fn notified(&self, payload: &str) {
        let Ok(letter) = serde_json::from_str::<Letter>(payload) else {
            tracing::warn!(payload, "unreadable worker command");
            return;
        };
        let supervisor = self.supervisor.clone();
        // Only here: a command for a worker that moved meanwhile is not
        // sent round again (its new owner resumed the work when it started).
        tokio::spawn(async move { supervisor.send_here(letter.tenant, letter.command.into()).await });
    }

    fn resync(&self) {
        let supervisor = self.supervisor.clone();
        tokio::spawn(async move {
            for tenant in supervisor.local_tenants() {
                supervisor.send_here(tenant, WorkerCommand::Resume).await;
            }
        });
    }
}
