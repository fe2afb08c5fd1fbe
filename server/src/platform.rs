//! The platform owner's changes to tenants, each with what follows it on
//! this node: after a tenant is created, suspended, resumed or deleted, or
//! its limits change, this node's workers are made to match at once (the
//! answer comes after the tenant's worker runs, or stops, here); after its
//! egress rules change, this node's gate forgets the old ones. Other nodes
//! hear of every change through the NOTIFY of its transaction. Each change
//! is then recorded in the platform's audit trail. The HTTP handlers call
//! these and nothing else; the CLI, which runs no workers, calls the domain
//! operations underneath directly and records them itself.

use std::sync::Arc;

use deadpool_postgres::Pool;
use serde_json::{json, Map, Value};
use tessera_runtime::egress::Egress;
use uuid::Uuid;

use crate::{
    audit::{Actor, Change, Trail},
    cluster::{Cluster, ClusterError},
    egress::{self, Action, EgressError},
    limits::{LimitBook, LimitsError, LimitsView},
    metrics::Metrics,
    provisioning::{
        clusters::{self, ClustersError, NewCluster},
        domains::{self, DomainsError, TenantDomain},
        moves::MoveReport,
        CreatedTenant, DeletedTenant, NewTenant, Provisioner, ProvisioningError,
    },
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
    pub audit: Trail,
}

impl Platform {
    /// Record a change that has been made. Its transaction has committed,
    /// so a record that cannot be written does not undo it: it is logged
    /// as an error for the operator instead.
    async fn record(&self, actor: &Actor, change: Change) {
        if let Err(error) = self.audit.record_platform(&self.pool, actor, change.clone()).await {
            tracing::error!(error = %crate::telemetry::with_causes(&error), action = %change.action, resource = %change.name, "a platform change could not be recorded in the audit trail");
        }
    }

    pub async fn create_tenant(&self, actor: &Actor, new: NewTenant) -> Result<CreatedTenant, ProvisioningError> {
        let created = self.provisioner.create_tenant(new).await?;
        let detail = json!({"cluster": created.tenant.cluster, "owner_email": created.owner_email});
        self.record(actor, Change::new("tenant.create", "tenant", created.tenant.slug.as_str()).with(detail)).await;
        self.cluster.settle_now().await;
        Ok(created)
    }

    pub async fn set_status(&self, actor: &Actor, slug: &str, status: TenantStatus) -> Result<Tenant, ProvisioningError> {
        let tenant = self.provisioner.set_status(slug, status).await?;
        let action = if status == TenantStatus::Suspended { "tenant.suspend" } else { "tenant.resume" };
        self.record(actor, Change::new(action, "tenant", slug)).await;
        self.cluster.settle_now().await;
        Ok(tenant)
    }

    pub async fn delete_tenant(&self, actor: &Actor, slug: &str, confirm: &str) -> Result<DeletedTenant, ProvisioningError> {
        let deleted = self.provisioner.delete(slug, confirm, &actor.name).await?;
        self.record(actor, Change::new("tenant.delete", "tenant", slug).with(json!({"export": deleted.export_path}))).await;
        self.cluster.settle_now().await;
        Ok(deleted)
    }

    /// Move a tenant to another cluster (see [`Provisioner::move_tenant`]);
    /// this node's workers match the outcome before the answer.
    pub async fn move_tenant(&self, actor: &Actor, slug: &str, to: &str) -> Result<MoveReport, ProvisioningError> {
        let moved = self.provisioner.move_tenant(slug, to, |_| {}).await;
        self.metrics.moved(if moved.is_ok() { "moved" } else { "failed" });
        if let Ok(report) = &moved {
            let detail = json!({"from": report.from, "to": report.to, "move": report.id});
            self.record(actor, Change::new("tenant.move", "tenant", slug).with(detail)).await;
        }
        self.cluster.settle_now().await;
        moved
    }

    /// Set or clear limits (see [`LimitBook::update`]); the tenant's worker
    /// here gets them before the answer.
    pub async fn update_limits(&self, actor: &Actor, slug: &str, changes: &Map<String, Value>) -> Result<LimitsView, LimitsError> {
        let view = self.limits.update(slug, changes).await?;
        self.record(actor, Change::new("tenant.limits", "tenant", slug).with(json!({"changes": changes}))).await;
        self.cluster.settle_now().await;
        Ok(view)
    }

    /// Add or remove egress rules (see [`egress::change`]).
    pub async fn change_egress(&self, actor: &Actor, slug: &str, action: Action, rules: &[String], remove: bool) -> Result<(), EgressError> {
        let tenant = egress::change(&self.pool, slug, action, rules, remove).await?;
        self.egress.forget(tenant);
        let detail = json!({"action": action.as_str(), "rules": rules, "removed": remove});
        self.record(actor, Change::new("tenant.egress", "tenant", slug).with(detail)).await;
        Ok(())
    }

    pub async fn add_domain(&self, actor: &Actor, base_domain: &str, slug: &str, domain: &str) -> Result<TenantDomain, DomainsError> {
        let added = domains::add(&self.pool, base_domain, slug, domain).await?;
        self.record(actor, Change::new("domain.add", "domain", &added.domain).with(json!({"tenant": slug}))).await;
        Ok(added)
    }

    pub async fn verify_domain(&self, actor: &Actor, servers: &[std::net::SocketAddr], slug: &str, domain: &str) -> Result<TenantDomain, DomainsError> {
        let verified = domains::verify(&self.pool, servers, slug, domain).await?;
        self.record(actor, Change::new("domain.verify", "domain", &verified.domain).with(json!({"tenant": slug}))).await;
        Ok(verified)
    }

    pub async fn remove_domain(&self, actor: &Actor, slug: &str, domain: &str) -> Result<(), DomainsError> {
        domains::remove(&self.pool, slug, domain).await?;
        self.record(actor, Change::new("domain.remove", "domain", domain).with(json!({"tenant": slug}))).await;
        Ok(())
    }

    /// Register a cluster; its database and broker addresses are not
    /// recorded (they may carry credentials).
    pub async fn create_cluster(&self, actor: &Actor, new: NewCluster) -> Result<clusters::Cluster, ClustersError> {
        let created = clusters::create(&self.pool, new).await?;
        let detail = json!({"kind": created.kind, "partner": created.partner});
        self.record(actor, Change::new("cluster.create", "cluster", &created.id).with(detail)).await;
        Ok(created)
    }

    pub async fn set_cluster_state(&self, actor: &Actor, id: &str, draining: bool) -> Result<clusters::Cluster, ClustersError> {
        let cluster = clusters::set_state(&self.pool, id, draining).await?;
        let action = if draining { "cluster.drain" } else { "cluster.activate" };
        self.record(actor, Change::new(action, "cluster", id)).await;
        Ok(cluster)
    }

    pub async fn drain_node(&self, actor: &Actor, node: Uuid) -> Result<(), ClusterError> {
        self.cluster.drain(node).await?;
        self.record(actor, Change::new("node.drain", "node", node.to_string())).await;
        Ok(())
    }
}
