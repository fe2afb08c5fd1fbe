//! The platform owner's changes to tenants, each with what follows it on
//! this node: after a tenant is created, suspended, resumed or deleted, or
//! its limits change, this node's workers are made to match at once (the
//! answer comes after the tenant's worker runs, or stops, here); after its
//! egress rules change, this node's gate forgets the old ones. Other nodes
//! hear of every change through the NOTIFY of its transaction. The HTTP
//! handlers call these and nothing else; the CLI, which runs no workers,
//! calls the domain operations underneath directly.

use std::sync::Arc;

use deadpool_postgres::Pool;
use serde_json::{Map, Value};
use tessera_runtime::egress::Egress;

use crate::{
    cluster::Cluster,
    egress::{self, Action, EgressError},
    limits::{LimitBook, LimitsError, LimitsView},
    metrics::Metrics,
    provisioning::{moves::MoveReport, CreatedTenant, DeletedTenant, NewTenant, Provisioner, ProvisioningError},
    tenancy::{Tenant, TenantStatus},
};

/// What the platform API changes, and what must hear of it on this node.
#[derive(Clone)]
pub struct Platform {
    pub provisioner: Provisioner,
    pub limits: LimitBook,
    pub egress: Arc<Egress>,
    pub cluster: Arc<Cluster>,
    pub pool: Pool,
    pub metrics: Arc<Metrics>,
}

impl Platform {
    pub async fn create_tenant(&self, new: NewTenant) -> Result<CreatedTenant, ProvisioningError> {
        let created = self.provisioner.create_tenant(new).await?;
        self.cluster.settle_now().await;
        Ok(created)
    }

    pub async fn set_status(&self, slug: &str, status: TenantStatus) -> Result<Tenant, ProvisioningError> {
        let tenant = self.provisioner.set_status(slug, status).await?;
        self.cluster.settle_now().await;
        Ok(tenant)
    }

    pub async fn delete_tenant(&self, slug: &str, confirm: &str, deleted_by: &str) -> Result<DeletedTenant, ProvisioningError> {
        let deleted = self.provisioner.delete(slug, confirm, deleted_by).await?;
        self.cluster.settle_now().await;
        Ok(deleted)
    }

    /// Move a tenant to another cluster (see [`Provisioner::move_tenant`]);
    /// this node's workers match the outcome before the answer.
    pub async fn move_tenant(&self, slug: &str, to: &str) -> Result<MoveReport, ProvisioningError> {
        let moved = self.provisioner.move_tenant(slug, to, |_| {}).await;
        self.metrics.moved(if moved.is_ok() { "moved" } else { "failed" });
        self.cluster.settle_now().await;
        moved
    }

    /// Set or clear limits (see [`LimitBook::update`]); the tenant's worker
    /// here gets them before the answer.
    pub async fn update_limits(&self, slug: &str, changes: &Map<String, Value>) -> Result<LimitsView, LimitsError> {
        let view = self.limits.update(slug, changes).await?;
        self.cluster.settle_now().await;
        Ok(view)
    }

    /// Add or remove egress rules (see [`egress::change`]).
    pub async fn change_egress(&self, slug: &str, action: Action, rules: &[String], remove: bool) -> Result<(), EgressError> {
        let tenant = egress::change(&self.pool, slug, action, rules, remove).await?;
        self.egress.forget(tenant);
        Ok(())
    }
}
