//! Host → destination → the nodes to try, in order. Pure decisions over
//! the routing snapshot: no I/O, no waiting.

use std::sync::Arc;

use tessera_hosts::{classify, HostError, HostTarget};
use uuid::Uuid;

use crate::{
    directory::{Directory, Node, Routing},
    health::Health,
};

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("invalid host: {0}")]
    InvalidHost(#[from] HostError),
    #[error("no tenant is served at this host")]
    TenantNotFound,
    #[error("no cluster serves the platform")]
    NoPlatformCluster,
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Platform { cluster: String },
    Tenant {
        slug: String,
        id: Uuid,
        cluster: String,
        /// Arrived on a verified custom domain: the node gets the canonical
        /// host, since nodes serve only their own names.
        custom_domain: bool,
    },
}

impl Destination {
    pub fn cluster(&self) -> &str {
        match self {
            Self::Platform { cluster } | Self::Tenant { cluster, .. } => cluster,
        }
    }

    pub fn tenant_slug(&self) -> Option<&str> {
        match self {
            Self::Tenant { slug, .. } => Some(slug),
            Self::Platform { .. } => None,
        }
    }

    /// The Host header the node must see, when not the client's own.
    pub fn canonical_host(&self, base_domain: &str) -> Option<String> {
        match self {
            Self::Tenant { slug, custom_domain: true, .. } => Some(format!("{slug}.{base_domain}")),
            _ => None,
        }
    }

    /// What rendezvous hashing spreads on: the tenant, so its requests
    /// concentrate on one node when its lease owner is away.
    fn affinity(&self) -> [u8; 16] {
        match self {
            Self::Tenant { id, .. } => *id.as_bytes(),
            Self::Platform { .. } => [0; 16],
        }
    }
}

/// Classify the host as the nodes do; a foreign domain may still be a
/// tenant's verified custom domain.
pub fn resolve(host: Option<&str>, base_domain: &str, directory: &Directory) -> Result<Destination, RouteError> {
    match classify(host, base_domain) {
        Ok(HostTarget::Platform) => {
            let cluster = directory.platform_cluster.clone().ok_or(RouteError::NoPlatformCluster)?;
            Ok(Destination::Platform { cluster })
        }
        Ok(HostTarget::Tenant(slug)) => tenant(directory, slug.as_str(), false),
        Err(HostError::NotATenant(_)) => Err(RouteError::TenantNotFound),
        Err(HostError::ForeignDomain) => {
            let name = bare_name(host.unwrap_or_default());
            let slug = directory.domains.get(&name).ok_or(HostError::ForeignDomain)?;
            tenant(directory, slug, true)
        }
        Err(refused) => Err(refused.into()),
    }
}

fn tenant(directory: &Directory, slug: &str, custom_domain: bool) -> Result<Destination, RouteError> {
    let entry = directory.tenants.get(slug).ok_or(RouteError::TenantNotFound)?;
    Ok(Destination::Tenant { slug: slug.to_string(), id: entry.id, cluster: entry.cluster.clone(), custom_domain })
}

/// A host as sent (`classify` already accepted its shape) without port or
/// trailing dot, lowercase: how custom domains are stored.
fn bare_name(host: &str) -> String {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The healthy live nodes of the destination's cluster, best first: the
/// tenant's lease owner, then the rest by rendezvous hash on the tenant.
pub fn candidates(routing: &Routing, health: &Health, destination: &Destination) -> Vec<Arc<Node>> {
    let mut nodes: Vec<Arc<Node>> = routing.nodes_of(destination.cluster()).into_iter().filter(|n| health.is_healthy(&n.address)).collect();
    let key = destination.affinity();
    nodes.sort_by_key(|n| std::cmp::Reverse(rendezvous(&key, n.id.as_bytes())));
    if let Destination::Tenant { id, cluster, .. } = destination
        && let Some(owner) = routing.lease_owner(cluster, *id)
        && let Some(at) = nodes.iter().position(|n| n.id == owner)
    {
        let owner = nodes.remove(at);
        nodes.insert(0, owner);
    }
    nodes
}

/// FNV-1a over key and node: stable across processes and versions, so
/// load balancers side by side choose alike.
fn rendezvous(key: &[u8], node: &[u8]) -> u64 {
    key.iter().chain(node).fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::TenantEntry;

    fn directory() -> Directory {
        let mut d = Directory { platform_cluster: Some("local".into()), ..Default::default() };
        d.tenants.insert("acme".into(), TenantEntry { id: Uuid::nil(), cluster: "b".into() });
        d.domains.insert("hooks.acme.example".into(), "acme".into());
        d
    }

    #[test]
    fn hosts_resolve_as_the_nodes_classify_them() {
        let d = directory();
        assert!(matches!(resolve(Some("acme.localhost:8000"), "localhost", &d), Ok(Destination::Tenant { custom_domain: false, .. })));
        assert_eq!(resolve(Some("localhost"), "localhost", &d).unwrap(), Destination::Platform { cluster: "local".into() });
        assert!(matches!(resolve(Some("other.localhost"), "localhost", &d), Err(RouteError::TenantNotFound)));
        assert!(matches!(resolve(Some("www.localhost"), "localhost", &d), Err(RouteError::TenantNotFound)));
        assert!(matches!(resolve(Some("evil.example"), "localhost", &d), Err(RouteError::InvalidHost(_))));
        assert!(matches!(resolve(Some("a b"), "localhost", &d), Err(RouteError::InvalidHost(_))));
        let custom = resolve(Some("Hooks.Acme.Example:443"), "localhost", &d).unwrap();
        assert_eq!(custom.canonical_host("localhost").as_deref(), Some("acme.localhost"));
    }

    #[test]
    fn rendezvous_is_stable_and_spreads() {
        let a = rendezvous(b"tenant-1", Uuid::from_u128(1).as_bytes());
        assert_eq!(a, rendezvous(b"tenant-1", Uuid::from_u128(1).as_bytes()));
        assert_ne!(a, rendezvous(b"tenant-1", Uuid::from_u128(2).as_bytes()));
    }
}
