//! Tenant leases: the rows of `platform.tenant_leases` that say which node
//! owns each tenant's worker, until when, and under which epoch.
//!
//! A node renews the leases it keeps, releases the ones placement gave to
//! another node, and takes the ones placement gives it when they are free
//! (never held, released, or expired because their node died). Taking a
//! lease adds one to its epoch; a worker writes only while its epoch is the
//! lease's current one (see `engine/executions.rs`), so a node that lost a
//! lease without knowing it (a long pause, a partition) cannot write over
//! the new owner's work.

use std::{collections::HashMap, time::Duration};

use deadpool_postgres::Pool;
use uuid::Uuid;

use super::ClusterError;

/// Taken (shared) by every write a tenant's worker makes, before it checks
/// its lease's epoch, and held until that write commits. A takeover takes
/// the same lock exclusively ([`TAKEOVER_LOCK`]) before it changes the
/// epoch, so it waits for the old owner's writes in flight, and every write
/// after it sees the new epoch and fails (the fence,
/// `engine::executions::Fence`). An advisory lock, not a row lock on the lease:
/// many transactions sharing a row lock make PostgreSQL build a multixact
/// per new locker, which cost most of a write's time under load
/// (docs/performance.md). A key shared by two tenants (a hash collision)
/// only makes one wait for the other's takeover.
pub const WRITE_LOCK: &str = "SELECT pg_advisory_xact_lock_shared(hashtextextended($1::uuid::text, 0))";

/// The exclusive side of [`WRITE_LOCK`], for those tenants of `$2` whose
/// lease no other live node holds, in key order (so two nodes taking
/// overlapping sets cannot deadlock). Returns the tenants it locked: only
/// those may be taken, so no lease changes hands without the wait.
const TAKEOVER_LOCK: &str = "SELECT t, pg_advisory_xact_lock(k) FROM \
     (SELECT t, hashtextextended(t::text, 0) AS k FROM unnest($2::uuid[]) t \
      WHERE NOT EXISTS (SELECT 1 FROM platform.tenant_leases l WHERE l.tenant_id = t \
                        AND l.node_id IS NOT NULL AND l.node_id <> $1 AND l.expires_at > now()) \
      ORDER BY k) keys";

/// Tenant → epoch of the leases this node holds.
pub type LeaseEpochs = HashMap<Uuid, i64>;

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Extend every lease of `node` that is in `keep`, release the others of
/// `node`, and take the free ones of `wanted`. Returns what `node` holds
/// afterwards. One transaction, so a crash between the steps leaves
/// nothing half done.
pub(super) async fn settle(pool: &Pool, node: Uuid, wanted: &[Uuid], ttl: Duration) -> Result<LeaseEpochs, ClusterError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let release = "UPDATE platform.tenant_leases SET node_id = NULL, expires_at = now() \
                   WHERE node_id = $1 AND NOT (tenant_id = ANY($2))";
    tx.execute(release, &[&node, &wanted]).await?;
    let renew = "UPDATE platform.tenant_leases SET expires_at = now() + make_interval(secs => $2) \
                 WHERE node_id = $1 AND expires_at > now() RETURNING tenant_id, epoch";
    let mut held: LeaseEpochs = tx.query(renew, &[&node, &secs(ttl)]).await?.iter().map(|r| (r.get(0), r.get(1))).collect();
    let missing: Vec<Uuid> = wanted.iter().filter(|t| !held.contains_key(t)).copied().collect();
    if !missing.is_empty() {
        // Taking a lease waits for the writes the previous owner has in
        // flight (they hold `WRITE_LOCK`); only then does the epoch change.
        let free: Vec<Uuid> = tx.query(TAKEOVER_LOCK, &[&node, &missing]).await?.iter().map(|r| r.get(0)).collect();
        // Only tenants that still exist, active and not paused by a move; a lease held by a
        // live node stays with it until that node releases it or dies.
        let take = "INSERT INTO platform.tenant_leases AS l (tenant_id, node_id, epoch, expires_at, acquired_at) \
                    SELECT t.id, $1, 1, now() + make_interval(secs => $3), now() \
                    FROM platform.tenants t WHERE t.id = ANY($2) AND t.status = 'active' \
                      AND NOT coalesce(t.paused_until > now(), false) \
                    ON CONFLICT (tenant_id) DO UPDATE SET node_id = $1, epoch = l.epoch + 1, \
                        expires_at = EXCLUDED.expires_at, acquired_at = now() \
                    WHERE l.node_id IS NULL OR l.expires_at <= now() OR l.node_id = $1 \
                    RETURNING tenant_id, epoch";
        held.extend(tx.query(take, &[&node, &free, &secs(ttl)]).await?.iter().map(|r| (r.get::<_, Uuid>(0), r.get::<_, i64>(1))));
    }
    tx.commit().await?;
    Ok(held)
}

/// Give up every lease of `node` at once (a clean stop or the end of a
/// drain), so the other nodes take its tenants at their next round instead
/// of after the leases expire.
pub(super) async fn release_all(pool: &Pool, node: Uuid) -> Result<(), ClusterError> {
    let client = pool.get().await?;
    let sql = "UPDATE platform.tenant_leases SET node_id = NULL, expires_at = now() WHERE node_id = $1";
    client.execute(sql, &[&node]).await?;
    Ok(())
}

/// The node that holds each of `tenants`' leases now; tenants without a
/// live lease are left out. The worker commands of the broker carrier are
/// addressed with it: the lease table is the one record of ownership
/// every node can read, a node's own view knows only its own leases.
pub(in crate::cluster) async fn owners(pool: &Pool, tenants: &[Uuid]) -> Result<HashMap<Uuid, Uuid>, ClusterError> {
    let client = pool.get().await?;
    let sql = "SELECT tenant_id, node_id FROM platform.tenant_leases \
               WHERE tenant_id = ANY($1) AND node_id IS NOT NULL AND expires_at > now()";
    let rows = client.query(sql, &[&tenants]).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
