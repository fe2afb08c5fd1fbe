//! The routing state: what the directory database and each cluster's
//! database say, kept as snapshots the request path reads without ever
//! waiting on a database. `load` reads the tables, `watch` keeps the
//! snapshots current (notifications, debounced reloads, periodic reloads).

pub mod load;
pub mod watch;

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use arc_swap::ArcSwap;
use hyper::http::uri::Authority;
use uuid::Uuid;

/// Which database a cluster's nodes and leases live in: `None` is the
/// directory database itself.
pub type DbKey = Option<String>;

#[derive(Debug, Clone)]
pub struct TenantEntry {
    pub id: Uuid,
    pub cluster: String,
}

/// The directory database's tables, read whole.
#[derive(Debug, Default)]
pub struct Directory {
    /// slug → placement (suspended tenants included: their nodes answer them).
    pub tenants: HashMap<String, TenantEntry>,
    /// Verified custom domain → slug.
    pub domains: HashMap<String, String>,
    /// cluster id → the database holding its nodes and leases.
    pub clusters: HashMap<String, DbKey>,
    /// The cluster that serves the bare base domain (platform console and API).
    pub platform_cluster: Option<String>,
}

/// A live node: registered, not stopped, heard from within the node timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub id: Uuid,
    pub cluster: String,
    pub address: String,
    /// `address` parsed once, for every request's URI.
    pub authority: Authority,
}

impl Node {
    /// `None` when `address` is no `host:port` (a node registered with a
    /// bad address cannot be sent anything).
    pub fn new(id: Uuid, cluster: String, address: String) -> Option<Self> {
        let authority = address.parse().ok()?;
        Some(Self { id, cluster, address, authority })
    }
}

/// One cluster database's nodes and lease owners.
#[derive(Debug, Default)]
pub struct ClusterDb {
    nodes: ArcSwap<Vec<Arc<Node>>>,
    /// tenant → owning node. A std lock: held for a map operation only,
    /// never across an await.
    leases: RwLock<HashMap<Uuid, Uuid>>,
}

impl ClusterDb {
    pub fn replace(&self, nodes: Vec<Node>, leases: HashMap<Uuid, Uuid>) {
        self.nodes.store(Arc::new(nodes.into_iter().map(Arc::new).collect()));
        *self.leases.write().expect("lease map lock") = leases;
    }

    /// A lease that changed hands (`None`: released).
    pub fn set_owner(&self, tenant: Uuid, node: Option<Uuid>) {
        let mut leases = self.leases.write().expect("lease map lock");
        match node {
            Some(node) => leases.insert(tenant, node),
            None => leases.remove(&tenant),
        };
    }
}

/// Everything the request path needs, shared by the watchers that write it.
#[derive(Debug, Default)]
pub struct Routing {
    directory: ArcSwap<Directory>,
    databases: RwLock<HashMap<DbKey, Arc<ClusterDb>>>,
}

impl Routing {
    pub fn directory(&self) -> Arc<Directory> {
        self.directory.load_full()
    }

    pub fn set_directory(&self, directory: Directory) {
        self.directory.store(Arc::new(directory));
    }

    /// The state of database `key`, created empty on first use.
    pub fn database(&self, key: &DbKey) -> Arc<ClusterDb> {
        if let Some(db) = self.databases.read().expect("databases lock").get(key) {
            return db.clone();
        }
        self.databases.write().expect("databases lock").entry(key.clone()).or_default().clone()
    }

    pub fn forget_database(&self, key: &DbKey) {
        self.databases.write().expect("databases lock").remove(key);
    }

    /// The live nodes of `cluster`, as its own database lists them.
    pub fn nodes_of(&self, cluster: &str) -> Vec<Arc<Node>> {
        let Some(db) = self.existing_db_of(cluster) else { return Vec::new() };
        db.nodes.load().iter().filter(|n| n.cluster == cluster).cloned().collect()
    }

    /// The node holding `tenant`'s lease in `cluster`'s database.
    pub fn lease_owner(&self, cluster: &str, tenant: Uuid) -> Option<Uuid> {
        let db = self.existing_db_of(cluster)?;
        db.leases.read().expect("lease map lock").get(&tenant).copied()
    }

    /// Every live node's address, in every database: what health checks visit.
    pub fn all_addresses(&self) -> Vec<String> {
        let databases = self.databases.read().expect("databases lock");
        let mut all: Vec<String> = databases.values().flat_map(|db| db.nodes.load().iter().map(|n| n.address.clone()).collect::<Vec<_>>()).collect();
        all.sort();
        all.dedup();
        all
    }

    fn existing_db_of(&self, cluster: &str) -> Option<Arc<ClusterDb>> {
        let key = self.directory.load().clusters.get(cluster)?.clone();
        self.databases.read().expect("databases lock").get(&key).cloned()
    }
}
