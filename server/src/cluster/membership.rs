//! This node's row in `platform.nodes`: registered at start, its heartbeat
//! renewed every round, marked `draining` or `stopped` when it leaves.
//! Liveness is judged by the database's clock only.

use std::time::Duration;

use deadpool_postgres::Pool;
use uuid::Uuid;

use super::ClusterError;

/// Who this node is in its cluster.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    pub id: Uuid,
    pub cluster: String,
    pub address: String,
    pub version: String,
}

/// What a heartbeat learns about this node's own row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    Active,
    Draining,
}

pub(super) async fn register(pool: &Pool, node: &NodeIdentity) -> Result<(), ClusterError> {
    let sql = "INSERT INTO platform.nodes (id, cluster_id, address, version) VALUES ($1, $2, $3, $4) \
               ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), state = 'active'";
    let client = pool.get().await?;
    match client.execute(sql, &[&node.id, &node.cluster, &node.address, &node.version]).await {
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION) => {
            Err(ClusterError::UnknownCluster(node.cluster.clone()))
        }
        other => other.map(|_| ()).map_err(Into::into),
    }
}

/// Renew the heartbeat; a node whose row vanished (deleted by hand)
/// registers again.
pub(super) async fn heartbeat(pool: &Pool, node: &NodeIdentity) -> Result<NodeState, ClusterError> {
    let client = pool.get().await?;
    let sql = "UPDATE platform.nodes SET heartbeat_at = now() WHERE id = $1 RETURNING state";
    match client.query_opt(sql, &[&node.id]).await? {
        Some(row) if row.get::<_, &str>(0) == "draining" => Ok(NodeState::Draining),
        Some(_) => Ok(NodeState::Active),
        None => {
            drop(client);
            register(pool, node).await?;
            Ok(NodeState::Active)
        }
    }
}

/// The cluster's nodes that take tenants: active, and heard from within
/// `timeout`.
pub(super) async fn live_nodes(pool: &Pool, cluster: &str, timeout: Duration) -> Result<Vec<Uuid>, ClusterError> {
    let client = pool.get().await?;
    let sql = "SELECT id FROM platform.nodes WHERE cluster_id = $1 AND state = 'active' \
               AND heartbeat_at > now() - make_interval(secs => $2) ORDER BY id";
    let rows = client.query(sql, &[&cluster, &timeout.as_secs_f64()]).await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

pub(super) async fn set_state(pool: &Pool, node: Uuid, state: &str) -> Result<bool, ClusterError> {
    let client = pool.get().await?;
    let sql = "UPDATE platform.nodes SET state = $2 WHERE id = $1 AND state <> 'stopped'";
    Ok(client.execute(sql, &[&node, &state]).await? == 1)
}
