//! What `GET /api/platform/cluster` shows: the cluster's nodes with their
//! health, load and (with a broker) the worker commands waiting in their
//! queues, and every tenant's lease.

use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde::Serialize;
use uuid::Uuid;

use super::{mail::broker::Broker, ClusterError};

#[derive(Debug, Serialize)]
pub struct ClusterStatus {
    pub cluster: String,
    pub nodes: Vec<NodeStatus>,
    pub leases: Vec<LeaseStatus>,
}

#[derive(Debug, Serialize)]
pub struct NodeStatus {
    pub id: Uuid,
    pub address: String,
    pub version: String,
    pub state: String,
    /// Heard from within the node timeout.
    pub alive: bool,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    /// Tenants whose lease it holds now.
    pub tenants: i64,
    /// Worker commands waiting in its broker queue; `None` without a
    /// broker, for a dead node, or when the broker could not be asked.
    pub queue_depth: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct LeaseStatus {
    pub tenant: String,
    /// `None` while no node holds it (released, or its node died and no
    /// other node took it yet).
    pub node: Option<Uuid>,
    pub epoch: i64,
    pub expires_at: DateTime<Utc>,
}

pub async fn read(pool: &Pool, cluster: &str, timeout: Duration) -> Result<ClusterStatus, ClusterError> {
    let client = pool.get().await?;
    let nodes_sql = "SELECT n.id, n.address, n.version, n.state, n.heartbeat_at > now() - make_interval(secs => $2), \
                     n.started_at, n.heartbeat_at, \
                     (SELECT count(*) FROM platform.tenant_leases l WHERE l.node_id = n.id AND l.expires_at > now()) \
                     FROM platform.nodes n WHERE n.cluster_id = $1 \
                     AND (n.state <> 'stopped' OR n.heartbeat_at > now() - interval '1 hour') ORDER BY n.started_at";
    let nodes = client.query(nodes_sql, &[&cluster, &timeout.as_secs_f64()]).await?;
    let leases_sql = "SELECT t.slug, CASE WHEN l.expires_at > now() THEN l.node_id END, l.epoch, l.expires_at \
                      FROM platform.tenant_leases l JOIN platform.tenants t ON t.id = l.tenant_id \
                      WHERE t.cluster_id = $1 ORDER BY t.slug";
    let leases = client.query(leases_sql, &[&cluster]).await?;
    Ok(ClusterStatus {
        cluster: cluster.to_string(),
        nodes: nodes
            .iter()
            .map(|r| NodeStatus {
                id: r.get(0),
                address: r.get(1),
                version: r.get(2),
                state: r.get(3),
                alive: r.get(4),
                started_at: r.get(5),
                heartbeat_at: r.get(6),
                tenants: r.get(7),
                queue_depth: None,
            })
            .collect(),
        leases: leases
            .iter()
            .map(|r| LeaseStatus { tenant: r.get(0), node: r.get(1), epoch: r.get(2), expires_at: r.get(3) })
            .collect(),
    })
}

/// Fill in each live node's queue depth from the broker. A broker that
/// cannot be asked (within [`DEPTHS_WAIT`]) leaves them unknown: the rest
/// of the picture still holds. Dead nodes are not asked about: nothing
/// consumes their queues any more, and asking could keep a queue the
/// broker is about to expire.
pub async fn add_queue_depths(status: &mut ClusterStatus, broker: &Broker) {
    let nodes: Vec<Uuid> = status.nodes.iter().filter(|n| n.alive).map(|n| n.id).collect();
    match tokio::time::timeout(DEPTHS_WAIT, broker.queue_depths(&nodes)).await {
        Ok(Ok(depths)) => status.nodes.iter_mut().for_each(|n| n.queue_depth = depths.get(&n.id).copied()),
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot read the nodes' queue depths"),
        Err(_) => tracing::warn!("the broker did not tell the nodes' queue depths in time"),
    }
}

/// How long a status read waits for the broker.
const DEPTHS_WAIT: Duration = Duration::from_secs(2);
