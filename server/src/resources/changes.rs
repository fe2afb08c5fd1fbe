//! What follows a committed change to a tenant's integrations or
//! connections, so that nothing goes on using the old definition: this
//! node drops its short-lived copies of the tenant's resources (`hot`; other
//! nodes' copies expire within a second), and the tenant's worker re-reads
//! its triggers, on whichever node runs it (the supervisor carries the
//! command there).
//!
//! The domain operations that change integrations or connections take a
//! [`DefinitionChanges`] and call it after their commit; handlers never do,
//! so a new caller of those operations cannot forget it.

use tessera_runtime::{Supervisor, WorkerCommand};
use uuid::Uuid;

use super::cache::ResourceCache;
use crate::{
    database::DbError,
    tenancy::{work, TenantTx},
};

#[derive(Clone)]
pub struct DefinitionChanges {
    hot: ResourceCache,
    supervisor: Supervisor,
}

impl DefinitionChanges {
    pub fn new(hot: ResourceCache, supervisor: Supervisor) -> Self {
        Self { hot, supervisor }
    }

    /// Commit `tx`, a change to `tenant`'s integrations (apply, rollback,
    /// delete, enable, disable), marking the tenant as having work in it
    /// (its worker must look at the new triggers, even after a crash before
    /// the worker heard of it), then do the follow-up.
    pub(crate) async fn commit_integrations(&self, mut tx: TenantTx, tenant: Uuid) -> Result<(), DbError> {
        work::mark(&mut tx, tenant).await?;
        tx.commit().await?;
        self.integrations_changed(tenant).await;
        Ok(())
    }

    /// After a committed change to `tenant`'s integrations: the next
    /// webhook reads the new version, and the worker runs the new triggers.
    async fn integrations_changed(&self, tenant: Uuid) {
        self.hot.forget(tenant);
        if !self.supervisor.send(tenant, WorkerCommand::Reload).await {
            tracing::debug!(tenant_id = %tenant, "tenant worker not running here; it reads its triggers when it starts");
        }
    }

    /// After a managed API of `tenant` was deleted: its next call on this
    /// node reads the definitions again.
    pub(crate) fn apis_changed(&self, tenant: Uuid) {
        self.hot.forget(tenant);
    }

    /// After a committed change to `tenant`'s connections only: the next
    /// step that uses one on this node reads it again.
    pub(crate) fn connections_changed(&self, tenant: Uuid) {
        self.hot.forget(tenant);
    }
}
