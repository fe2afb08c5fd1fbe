//! Worker commands as PostgreSQL notifications on one channel, for a
//! cluster without a broker: every node listens, and the one that runs the
//! worker hands the command on. A notification is fire-and-forget: one sent
//! while the owner's listener is reconnecting is lost, and the listener's
//! `resync` makes every local worker look again.

use std::sync::Arc;

use deadpool_postgres::Pool;
use tessera_runtime::{Forwarder, RemoteCommand, Supervisor};
use uuid::Uuid;

use super::{hand_over, resume_all, Letter, MailCounters};
use crate::notifications::Subscriber;

const CHANNEL: &str = "tessera_worker_commands";

/// Sends commands for workers elsewhere in the cluster.
pub struct NotifyForwarder {
    pool: Pool,
    counters: Arc<MailCounters>,
}

impl NotifyForwarder {
    pub fn new(pool: Pool, counters: Arc<MailCounters>) -> Self {
        Self { pool, counters }
    }
}

impl Forwarder for NotifyForwarder {
    fn forward(&self, tenant: Uuid, command: RemoteCommand) {
        let (pool, counters) = (self.pool.clone(), self.counters.clone());
        let payload = serde_json::to_string(&Letter { tenant, command }).expect("a letter serialises");
        tokio::spawn(async move {
            let mut pause = std::time::Duration::from_millis(200);
            for attempt in 1..=SENDS {
                match send(&pool, &payload).await {
                    Ok(()) => return counters.sent(1),
                    Err(e) if attempt == SENDS => {
                        counters.failed(1);
                        tracing::warn!(tenant_id = %tenant, error = %e, "cannot forward a worker command; its owner finds the work on its next start or resync");
                    }
                    Err(_) => {
                        tokio::time::sleep(pause).await;
                        pause *= 2;
                    }
                }
            }
        });
    }
}

/// Tries at sending one command: a busy pool or a database restart
/// usually passes within them (about 3 s), and a command lost past them
/// waits for the owner's next start or resync.
const SENDS: u32 = 5;

async fn send(pool: &Pool, payload: &str) -> Result<(), String> {
    let client = pool.get().await.map_err(|e| e.to_string())?;
    client.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload]).await.map(|_| ()).map_err(|e| e.to_string())
}

/// Receives commands for the workers this node runs.
pub struct WorkerMailbox {
    supervisor: Supervisor,
    counters: Arc<MailCounters>,
}

impl WorkerMailbox {
    pub fn new(supervisor: Supervisor, counters: Arc<MailCounters>) -> Self {
        Self { supervisor, counters }
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
        self.counters.received();
        let supervisor = self.supervisor.clone();
        // Only here: a command for a worker that moved meanwhile is not
        // sent round again (its new owner resumed the work when it started).
        tokio::spawn(async move { hand_over(&supervisor, letter).await });
    }

    fn resync(&self) {
        let supervisor = self.supervisor.clone();
        tokio::spawn(async move { resume_all(&supervisor).await });
    }
}
