//! One tenant's worker task.

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// What the supervisor needs to know about a tenant to run its worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantSpec {
    pub id: Uuid,
    pub slug: String,
    pub schema: String,
}

/// Messages a worker accepts. The engine adds triggers here.
#[derive(Debug)]
pub enum WorkerCommand {
    /// Answer with the tenant's slug: proves the worker is alive and serving.
    Ping(tokio::sync::oneshot::Sender<String>),
}

/// The worker's main loop: serve commands until cancelled. It holds no
/// resources while idle, so thousands of idle tenants cost little.
pub(crate) async fn run(spec: TenantSpec, mut commands: mpsc::Receiver<WorkerCommand>, cancel: CancellationToken) {
    tracing::debug!(tenant = %spec.slug, "tenant worker started");
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            command = commands.recv() => match command {
                Some(WorkerCommand::Ping(reply)) => {
                    let _ = reply.send(spec.slug.clone());
                }
                None => break,
            },
        }
    }
    tracing::debug!(tenant = %spec.slug, "tenant worker stopped");
}
