//! Clustering: the nodes of one cluster share one database and behave as
//! one system (docs/clustering.md).
//!
//! This module owns this node's membership (`membership`), the placement
//! of tenants on live nodes (`placement`), the leases that make each
//! tenant's worker run on exactly one node (`leases`), and the loop that
//! ties them to the worker supervisor. Every round (each
//! `cluster.heartbeat_interval_ms`, and at once when tenants change) it
//! renews the heartbeat, computes the placement, settles the leases and
//! runs exactly the workers of the tenants it holds. A draining node
//! (`drain`) keeps only the leases of tenants whose executions still run.

mod drain;
mod leases;
pub mod mail;
mod membership;
mod placement;
pub mod status;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, PoisonError, RwLock},
    time::{Duration, Instant},
};

use deadpool_postgres::Pool;
use tessera_runtime::{Supervisor, TenantSpec};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use leases::LeaseEpochs;
pub use leases::WRITE_LOCK;
pub use membership::NodeIdentity;
use membership::NodeState;

use crate::{config::ClusterConfig, database::DbError};
use mail::broker::Broker;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("no node {0} in this cluster")]
    UnknownNode(Uuid),
    #[error("a node id is a UUID")]
    InvalidNodeId(String),
    #[error("cluster '{0}' is not registered in this database: create it with `tessera cluster create`")]
    UnknownCluster(String),
}

/// A node id as a caller writes it: a UUID.
pub fn parse_node_id(text: &str) -> Result<Uuid, ClusterError> {
    text.parse().map_err(|_| ClusterError::InvalidNodeId(text.to_string()))
}

impl From<tokio_postgres::Error> for ClusterError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Db(e.into())
    }
}

impl From<deadpool_postgres::PoolError> for ClusterError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Db(e.into())
    }
}

/// This node in its cluster.
pub struct Cluster {
    pool: Pool,
    node: NodeIdentity,
    heartbeat: Duration,
    timeout: Duration,
    supervisor: Supervisor,
    /// The leases held after the last successful round, shared with the
    /// execution store, which fences every write with them. Only ever
    /// replaced or cleared whole, so a holder's panic leaves it consistent:
    /// later users recover it (`PoisonError::into_inner`) rather than panic.
    held: Arc<RwLock<LeaseEpochs>>,
    /// Ask for a round now (tenants changed, a drain began).
    wake: Notify,
    /// The live nodes the last round saw; its lock makes one round run at
    /// a time (the loop's and [`Cluster::settle_now`]'s).
    last_live: tokio::sync::Mutex<Vec<Uuid>>,
    /// The broker carrying worker commands, when the cluster has one.
    broker: Option<Broker>,
    drain: drain::Drain,
    /// Tenants placement moved to another node while their executions ran
    /// here, and since when (see [`Cluster::handing_over`]).
    handovers: Mutex<HashMap<Uuid, Instant>>,
    /// Each tenant's effective limits, handed to its worker in its spec.
    limits: crate::limits::LimitBook,
}

impl Cluster {
    /// `held` is shared with the execution store, which fences every write
    /// of a worker with it.
    pub fn new(
        pool: Pool,
        node: NodeIdentity,
        config: &ClusterConfig,
        supervisor: Supervisor,
        held: Arc<RwLock<LeaseEpochs>>,
        broker: Option<Broker>,
        limits: crate::limits::LimitBook,
    ) -> Self {
        Self {
            pool,
            node,
            heartbeat: Duration::from_millis(config.heartbeat_interval_ms),
            timeout: Duration::from_millis(config.node_timeout_ms),
            supervisor,
            held,
            wake: Notify::new(),
            last_live: tokio::sync::Mutex::new(Vec::new()),
            broker,
            drain: drain::Drain::new(Duration::from_millis(config.drain_timeout_ms)),
            handovers: Mutex::new(HashMap::new()),
            limits,
        }
    }

    pub fn node(&self) -> &NodeIdentity {
        &self.node
    }

    /// The broker carrying worker commands, when the cluster has one.
    pub fn broker(&self) -> Option<&Broker> {
        self.broker.as_ref()
    }

    /// The leases this node holds, for fencing its workers' writes.
    pub fn fences(&self) -> Arc<RwLock<LeaseEpochs>> {
        self.held.clone()
    }

    /// Run a round as soon as possible.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub async fn register(&self) -> Result<(), ClusterError> {
        membership::register(&self.pool, &self.node).await
    }

    /// Rounds until `shutdown`. When rounds fail for as long as a lease
    /// lives, the node assumes it lost its leases and stops its workers:
    /// other nodes may own those tenants by then.
    pub fn spawn(self: Arc<Self>, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut last_settled = Instant::now();
            loop {
                match self.round().await {
                    Ok(()) => last_settled = Instant::now(),
                    Err(e) => {
                        tracing::warn!(error = %e, "cluster round failed");
                        if last_settled.elapsed() + self.heartbeat >= self.timeout {
                            self.stop_all_workers();
                        }
                    }
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = self.wake.notified() => {}
                    // Draining: a tenant whose last execution ended moves now.
                    _ = self.supervisor.became_idle() => {}
                    _ = tokio::time::sleep(self.heartbeat) => {}
                }
            }
        })
    }

    /// Run a round now and wait for it: after a tenant is created or
    /// resumed through this node, its worker runs (here or on its owner)
    /// by the time the request is answered.
    pub async fn settle_now(&self) {
        if let Err(e) = self.round().await {
            tracing::warn!(error = %e, "cluster round failed");
        }
    }

    async fn round(&self) -> Result<(), ClusterError> {
        let mut last_live = self.last_live.lock().await;
        let state = membership::heartbeat(&self.pool, &self.node).await?;
        let tenants = active_tenants(&self.pool, &self.node.cluster, &self.limits).await?;
        let draining = state == NodeState::Draining || self.drain.begun_here();
        let live = if draining { Vec::new() } else { membership::live_nodes(&self.pool, &self.node.cluster, self.timeout).await? };
        let wanted: Vec<Uuid> = if draining {
            self.still_finishing()
        } else {
            // A paused tenant (moving to another cluster) is placed nowhere:
            // its owner hands it over as a rebalanced one (`handing_over`).
            let ids: Vec<Uuid> = tenants.iter().filter(|(_, t)| !t.paused).map(|(id, _)| *id).collect();
            let owners = placement::assign(&ids, &live);
            let assigned: HashSet<Uuid> = owners.into_iter().filter(|(_, node)| *node == self.node.id).map(|(tenant, _)| tenant).collect();
            let finishing = self.handing_over(&assigned, &tenants);
            assigned.into_iter().chain(finishing).collect()
        };
        let held = leases::settle(&self.pool, self.node.id, &wanted, self.timeout).await?;
        let specs = held.keys().filter_map(|id| tenants.get(id).map(|t| t.spec.clone())).collect();
        let with_work = held.keys().filter(|id| tenants.get(id).is_some_and(|t| t.has_work)).copied().collect();
        let previous = std::mem::replace(&mut *self.held.write().unwrap_or_else(PoisonError::into_inner), held.clone());
        self.supervisor.settle(specs, &with_work);
        // A lease lost and taken back under a new epoch: writes made in
        // between were refused, so the worker looks for unfinished work again.
        // A node that died (or left) may have accepted work for tenants run
        // here and died before waking their workers: they all look again.
        let departed = !live.is_empty() && last_live.iter().any(|n| !live.contains(n));
        // Workers not running now start for tenants with work, and look then.
        for (tenant, epoch) in &held {
            if departed || previous.get(tenant).is_some_and(|old| old != epoch) {
                self.supervisor.send_running(*tenant, tessera_runtime::WorkerCommand::Resume).await;
            }
        }
        if !live.is_empty() {
            *last_live = live;
        }
        Ok(())
    }

    fn stop_all_workers(&self) {
        self.held.write().unwrap_or_else(PoisonError::into_inner).clear();
        self.supervisor.settle(Vec::new(), &HashSet::new());
    }

    /// The cluster as the database sees it now.
    pub async fn status(&self) -> Result<status::ClusterStatus, ClusterError> {
        let mut status = status::read(&self.pool, &self.node.cluster, self.timeout).await?;
        if let Some(broker) = &self.broker {
            status::add_queue_depths(&mut status, broker).await;
        }
        Ok(status)
    }

    /// Drain `node` (this one or another of the cluster): placement gives
    /// it no tenant, and from its next round on it hands its tenants over
    /// as their running executions finish (`drain`).
    pub async fn drain(&self, node: Uuid) -> Result<(), ClusterError> {
        mark_draining(&self.pool, node).await?;
        if node == self.node.id {
            self.begin_drain().await;
        }
        Ok(())
    }

    /// Leave the cluster: stop taking tenants, stop the workers, and
    /// release every lease so other nodes take over at their next round.
    pub async fn leave(&self) {
        if let Err(e) = membership::set_state(&self.pool, self.node.id, "stopped").await {
            tracing::warn!(error = %e, "cannot mark this node stopped");
        }
        self.supervisor.shutdown().await;
        self.held.write().unwrap_or_else(PoisonError::into_inner).clear();
        if let Err(e) = leases::release_all(&self.pool, self.node.id).await {
            tracing::warn!(error = %e, "cannot release this node's leases; they expire on their own");
        }
    }
}

/// Mark `node` draining: placement gives it no tenant, and at its next
/// round it begins handing its own over.
pub async fn mark_draining(pool: &Pool, node: Uuid) -> Result<(), ClusterError> {
    if !membership::set_state(pool, node, "draining").await? {
        return Err(ClusterError::UnknownNode(node));
    }
    Ok(())
}

/// An active tenant of the cluster, as the supervisor names it.
struct ActiveTenant {
    spec: TenantSpec,
    /// Listed in `platform.tenant_work`: its worker runs without being asked.
    has_work: bool,
    /// Paused by a move to another cluster (`platform.tenants.paused_until`).
    paused: bool,
}

/// The cluster's active tenants, each with its effective limits (read at
/// every round, so a change reaches the worker at the next one, and at
/// once through the change notification) and whether it has work. One
/// platform query: no tenant's schema is touched to learn it.
async fn active_tenants(pool: &Pool, cluster: &str, limits: &crate::limits::LimitBook) -> Result<HashMap<Uuid, ActiveTenant>, ClusterError> {
    let client = pool.get().await?;
    let sql = "SELECT t.id, t.slug, t.schema_name, l.overrides, w.tenant_id IS NOT NULL, \
               coalesce(t.paused_until > now(), false) FROM platform.tenants t \
               LEFT JOIN platform.tenant_limits l ON l.tenant_id = t.id \
               LEFT JOIN platform.tenant_work w ON w.tenant_id = t.id \
               WHERE t.cluster_id = $1 AND t.status = 'active'";
    let rows = client.query(sql, &[&cluster]).await?;
    let tenant = |r: &tokio_postgres::Row| {
        let limits = Arc::new(limits.effective(&crate::limits::stored_overrides(r.get(3))));
        ActiveTenant { spec: TenantSpec { id: r.get(0), slug: r.get(1), schema: r.get(2), limits }, has_work: r.get(4), paused: r.get(5) }
    };
    Ok(rows.iter().map(|r| (r.get(0), tenant(r))).collect())
}
