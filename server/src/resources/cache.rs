//! Short-lived copies of the two resources read on every webhook and every
//! step that uses a connection: a webhook trigger (which version accepts,
//! and how callers authenticate) and an opened connection.
//!
//! Why: at hundreds of executions a second these two reads were two of the
//! seven statements each execution cost PostgreSQL (docs/performance.md),
//! for data that changes only when a tenant applies something. Entries
//! live one second at most, and a change applied or deleted through this
//! node drops its tenant's entries at once; a change made through another
//! node is seen here within that second, as the rest of the cluster sees
//! a change (docs/clustering.md). What an entry may not do is enable what
//! was turned off: an execution is inserted only for an enabled integration
//! (`intake`), whatever this copy says. Opened connections stay in this
//! process only, like the SQL pools and OAuth tokens built from them.

use std::time::Duration;

use moka::sync::Cache;
use tessera_runtime::definition::{ConnectionSpec, WebhookTrigger};
use uuid::Uuid;

const TTL: Duration = Duration::from_secs(1);
const CAPACITY: u64 = 10_000;

/// Tenant and resource name.
type Key = (Uuid, String);

#[derive(Clone)]
pub struct ResourceCache {
    webhooks: Cache<Key, (i32, WebhookTrigger)>,
    connections: Cache<Key, ConnectionSpec>,
}

impl Default for ResourceCache {
    fn default() -> Self {
        Self { webhooks: cache(), connections: cache() }
    }
}

fn cache<V: Clone + Send + Sync + 'static>() -> Cache<Key, V> {
    Cache::builder().max_capacity(CAPACITY).time_to_live(TTL).support_invalidation_closures().build()
}

impl ResourceCache {
    pub fn webhook(&self, tenant: Uuid, name: &str) -> Option<(i32, WebhookTrigger)> {
        self.webhooks.get(&(tenant, name.to_string()))
    }

    pub fn keep_webhook(&self, tenant: Uuid, name: &str, found: (i32, WebhookTrigger)) {
        self.webhooks.insert((tenant, name.to_string()), found);
    }

    pub fn connection(&self, tenant: Uuid, name: &str) -> Option<ConnectionSpec> {
        self.connections.get(&(tenant, name.to_string()))
    }

    pub fn keep_connection(&self, tenant: Uuid, name: &str, spec: ConnectionSpec) {
        self.connections.insert((tenant, name.to_string()), spec);
    }

    /// Something of `tenant` was applied, rolled back or deleted here.
    pub fn forget(&self, tenant: Uuid) {
        // Only fails when closures are not supported, which `default` enables.
        let _ = self.webhooks.invalidate_entries_if(move |(t, _), _| *t == tenant);
        let _ = self.connections.invalidate_entries_if(move |(t, _), _| *t == tenant);
    }
}
