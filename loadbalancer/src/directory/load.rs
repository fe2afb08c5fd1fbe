//! Reading the routing tables whole. Read-only: the load balancer never
//! writes to a Tessera database.

use std::{collections::HashMap, time::Duration};

use sqlx::{postgres::PgPoolOptions, PgPool};
use uuid::Uuid;

use super::{DbKey, Directory, Node, TenantEntry};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// A small pool: one reload at a time needs one connection, and a second
/// lets a reload run while the first reconnects.
pub fn pool(url: &str) -> Result<PgPool, LoadError> {
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(3))
        // Connections are opened on first use, so an unreachable cluster
        // database never stops the others from loading.
        .connect_lazy(url)?;
    Ok(pool)
}

/// Clusters, tenants and verified custom domains from the directory database.
pub async fn directory(pool: &PgPool) -> Result<Directory, LoadError> {
    // The platform's own cluster is the one in the directory database;
    // 'local' first when several are.
    let clusters: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT id, database_url FROM platform.clusters ORDER BY id <> 'local', id").fetch_all(pool).await?;
    let tenants: Vec<(Uuid, String, String)> =
        sqlx::query_as("SELECT id, slug, cluster_id FROM platform.tenants").fetch_all(pool).await?;
    let domains: Vec<(String, String)> = sqlx::query_as(
        "SELECT d.domain, t.slug FROM platform.tenant_domains d JOIN platform.tenants t ON t.id = d.tenant_id \
         WHERE d.verified_at IS NOT NULL",
    )
    .fetch_all(pool)
    .await?;
    let platform_cluster = clusters.iter().find(|(_, url)| url.is_none()).map(|(id, _)| id.clone());
    Ok(Directory {
        tenants: tenants.into_iter().map(|(id, slug, cluster)| (slug, TenantEntry { id, cluster })).collect(),
        domains: domains.into_iter().collect(),
        clusters: clusters.into_iter().collect::<HashMap<String, DbKey>>(),
        platform_cluster,
    })
}

/// A cluster database's live nodes (of every cluster it lists: routing
/// keeps only the nodes of the tenant's cluster) and current lease owners.
pub async fn cluster_db(pool: &PgPool, node_timeout: Duration) -> Result<(Vec<Node>, HashMap<Uuid, Uuid>), LoadError> {
    let nodes: Vec<(Uuid, String, String)> = sqlx::query_as(
        "SELECT id, cluster_id, address FROM platform.nodes \
         WHERE state <> 'stopped' AND heartbeat_at > now() - make_interval(secs => $1) ORDER BY id",
    )
    .bind(node_timeout.as_secs_f64())
    .fetch_all(pool)
    .await?;
    let leases: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT tenant_id, node_id FROM platform.tenant_leases WHERE node_id IS NOT NULL AND expires_at > now()",
    )
    .fetch_all(pool)
    .await?;
    let nodes = nodes
        .into_iter()
        .filter_map(|(id, cluster, address)| {
            let node = Node::new(id, cluster, address.clone());
            if node.is_none() {
                tracing::warn!(%id, address, "a node's address is no host:port; it gets no requests");
            }
            node
        })
        .collect();
    Ok((nodes, leases.into_iter().collect()))
}

/// A `tessera_lease_changes` payload: `'<tenant> <node>'`, the node empty
/// when the lease was released.
pub fn lease_change(payload: &str) -> Option<(Uuid, Option<Uuid>)> {
    let (tenant, node) = payload.split_once(' ').unwrap_or((payload, ""));
    let tenant = Uuid::parse_str(tenant).ok()?;
    match node.trim() {
        "" => Some((tenant, None)),
        node => Some((tenant, Some(Uuid::parse_str(node).ok()?))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_payloads_name_a_new_owner_or_a_release() {
        let (t, n) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(lease_change(&format!("{t} {n}")), Some((t, Some(n))));
        assert_eq!(lease_change(&format!("{t} ")), Some((t, None)));
        assert_eq!(lease_change("nonsense"), None);
    }
}
