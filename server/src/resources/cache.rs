//! Short-lived copies of the resources read on every webhook, every step
//! that uses a connection and every call of a managed API: a webhook
//! trigger (which version accepts, and how callers authenticate), an opened
//! connection, and a managed API's definition (by base path and version).
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

use std::{sync::Arc, time::Duration};

use moka::sync::Cache;

use tessera_runtime::definition::{Api, ConnectionSpec, WebhookTrigger};
use uuid::Uuid;

const TTL: Duration = Duration::from_secs(1);
const CAPACITY: u64 = 10_000;

/// Tenant and resource name.
type Key = (Uuid, String);

#[derive(Clone)]
pub struct ResourceCache {
    webhooks: Cache<Key, (i32, WebhookTrigger)>,
    connections: Cache<Key, ConnectionSpec>,
    /// By `<base path>/<version>`; `None`: there is no such API.
    apis: Cache<Key, Option<Arc<Api>>>,
}

impl Default for ResourceCache {
    fn default() -> Self {
        Self { webhooks: cache(), connections: cache(), apis: cache() }
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

    pub fn api(&self, tenant: Uuid, base_path: &str, version: &str) -> Option<Option<Arc<Api>>> {
        self.apis.get(&(tenant, format!("{base_path}/{version}")))
    }

    pub fn keep_api(&self, tenant: Uuid, base_path: &str, version: &str, api: Option<Arc<Api>>) {
        self.apis.insert((tenant, format!("{base_path}/{version}")), api);
    }

    /// Something of `tenant` was applied, rolled back or deleted here.
    pub fn forget(&self, tenant: Uuid) {
        // Only fails when closures are not supported, which `default` enables.
        let _ = self.webhooks.invalidate_entries_if(move |(t, _), _| *t == tenant);
        let _ = self.connections.invalidate_entries_if(move |(t, _), _| *t == tenant);
        let _ = self.apis.invalidate_entries_if(move |(t, _), _| *t == tenant);
    }
}
