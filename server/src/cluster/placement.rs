//! Which live node owns each tenant. Every node computes the same answer
//! from the same inputs (the cluster's active tenants and live nodes), so
//! nodes agree on the owner without talking to each other; the leases
//! (`leases.rs`) settle the moments when their views differ.
//!
//! Rendezvous hashing with bounded loads: each tenant prefers nodes in the
//! order of a hash of (tenant, node), and takes the first that still has
//! room. Every node has room for ⌊tenants / nodes⌋ or ⌈tenants / nodes⌉
//! (the rounding remainder goes to the nodes with the lowest ids), so the
//! capacities add up to the tenants exactly and loads differ by one at
//! most. Plain rendezvous hashing moves few tenants when a node joins or
//! leaves, but with tens of tenants its loads differ by a third.

use std::collections::HashMap;

use uuid::Uuid;

/// The owner of every tenant, or nothing when no node is live.
pub fn assign(tenants: &[Uuid], nodes: &[Uuid]) -> HashMap<Uuid, Uuid> {
    if nodes.is_empty() {
        return HashMap::new();
    }
    let mut ordered = tenants.to_vec();
    ordered.sort_unstable();
    ordered.dedup();
    let mut by_id = nodes.to_vec();
    by_id.sort_unstable();
    by_id.dedup();
    let (base, remainder) = (ordered.len() / by_id.len(), ordered.len() % by_id.len());
    let mut room: HashMap<Uuid, usize> =
        by_id.iter().enumerate().map(|(i, n)| (*n, base + usize::from(i < remainder))).collect();
    let nodes = &by_id[..];
    let mut owners = HashMap::with_capacity(ordered.len());
    for tenant in ordered {
        let mut ranked: Vec<Uuid> = nodes.to_vec();
        ranked.sort_unstable_by_key(|node| std::cmp::Reverse((weight(tenant, *node), *node)));
        let owner = ranked.into_iter().find(|node| room[node] > 0).expect("the rooms add up to the tenants");
        *room.get_mut(&owner).expect("a live node") -= 1;
        owners.insert(tenant, owner);
    }
    owners
}

/// A hash of (tenant, node) that every build of Tessera computes alike, so
/// nodes of two versions agree during a rolling upgrade (`std`'s hasher
/// makes no such promise).
fn weight(tenant: Uuid, node: Uuid) -> u64 {
    let (t1, t2) = tenant.as_u64_pair();
    let (n1, n2) = node.as_u64_pair();
    mix(mix(t1 ^ mix(n1)) ^ mix(t2 ^ mix(n2 ^ 0x9e37_79b9_7f4a_7c15)))
}

/// The 64-bit finaliser of MurmurHash3: every input bit flips about half of
/// the output bits.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<Uuid> {
        (0..n).map(|_| Uuid::now_v7()).collect()
    }

    fn loads(owners: &HashMap<Uuid, Uuid>, nodes: &[Uuid]) -> Vec<usize> {
        nodes.iter().map(|n| owners.values().filter(|o| *o == n).count()).collect()
    }

    #[test]
    fn every_tenant_gets_one_owner_and_loads_stay_within_twenty_percent() {
        for (tenants, nodes) in [(50, 3), (1000, 3), (10_000, 7), (51, 5)] {
            let (tenants, nodes) = (ids(tenants), ids(nodes));
            let owners = assign(&tenants, &nodes);
            assert_eq!(owners.len(), tenants.len());
            let mean = tenants.len() as f64 / nodes.len() as f64;
            for load in loads(&owners, &nodes) {
                assert!((load as f64 - mean).abs() < 1.0, "load {load} vs mean {mean}");
                assert!((load as f64 - mean).abs() <= 0.2 * mean, "load {load} vs mean {mean}");
            }
        }
    }

    #[test]
    fn the_answer_depends_only_on_the_sets_not_their_order() {
        let (tenants, mut nodes) = (ids(200), ids(4));
        let first = assign(&tenants, &nodes);
        nodes.reverse();
        let mut shuffled = tenants.clone();
        shuffled.rotate_left(77);
        assert_eq!(first, assign(&shuffled, &nodes));
    }

    #[test]
    fn a_node_leaving_moves_mostly_its_own_tenants() {
        let (tenants, nodes) = (ids(3000), ids(4));
        let before = assign(&tenants, &nodes);
        let after = assign(&tenants, &nodes[..3]);
        let moved_elsewhere = tenants.iter().filter(|t| before[t] != nodes[3] && before[t] != after[t]).count();
        // Its tenants must move; the bound moves a few others (far from a reshuffle).
        assert!(moved_elsewhere < tenants.len() / 10, "{moved_elsewhere} tenants of surviving nodes moved");
        assert!(after.values().all(|n| *n != nodes[3]));
    }

    #[test]
    fn no_live_node_means_no_owner() {
        assert!(assign(&ids(3), &[]).is_empty());
    }
}
