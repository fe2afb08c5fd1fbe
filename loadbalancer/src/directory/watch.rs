//! Keeping the routing state current. One watcher for the directory
//! database and one per distinct cluster database; each LISTENs, reloads
//! whole after (re)connecting, on a debounced notification, and every
//! `reload_interval_ms`. Lease hand-overs are applied from their payload
//! without a reload. A database that is away leaves the last snapshot in
//! place: requests keep flowing on what was known.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use sqlx::{postgres::PgListener, PgPool};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use super::{load, DbKey, Routing};
use crate::config::{ms, Config};

const DIRECTORY_CHANNEL: &str = "tessera_directory_changes";
const NODE_CHANNEL: &str = "tessera_node_changes";
const LEASE_CHANNEL: &str = "tessera_lease_changes";
/// Pause before listening again after a lost or refused connection.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

/// What a watcher does with its database; `run` supplies the loop.
trait Source: Send + Sync + 'static {
    fn channels(&self) -> &'static [&'static str];
    fn reload(&self) -> impl Future<Output = ()> + Send;
    /// Apply a notification; true when it calls for a full reload.
    fn notified(&self, channel: &str, payload: &str) -> bool;
}

/// Timings shared by every watcher.
#[derive(Clone, Copy)]
struct Timing {
    debounce: Duration,
    every: Duration,
}

/// Load the directory and every cluster database once, then keep them
/// current in the background until `shutdown`.
pub async fn start(config: &Config, routing: Arc<Routing>, shutdown: CancellationToken) -> Result<(), load::LoadError> {
    let pool = load::pool(&config.database_url)?;
    routing.set_directory(load::directory(&pool).await?);
    let timing = Timing { debounce: ms(config.reload_debounce_ms), every: ms(config.reload_interval_ms) };
    let directory = Arc::new(DirectorySource {
        pool,
        url: config.database_url.clone(),
        routing,
        node_timeout: ms(config.node_timeout_ms),
        timing,
        clusters: Mutex::new(HashMap::new()),
        shutdown: shutdown.clone(),
    });
    directory.sync_clusters().await;
    tokio::spawn(run(directory.url.clone(), directory, timing, shutdown));
    Ok(())
}

/// Listen, reload, and apply notifications until `shutdown`.
async fn run<S: Source>(url: String, source: Arc<S>, timing: Timing, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        let mut listener = match listen(&url, source.channels()).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for routing changes; retrying");
                pause(&shutdown).await;
                continue;
            }
        };
        // Whatever changed while we were not listening.
        source.reload().await;
        follow(&mut listener, source.as_ref(), timing, &shutdown).await;
    }
}

/// Follow one listening connection until it is lost or `shutdown`.
async fn follow<S: Source>(listener: &mut PgListener, source: &S, timing: Timing, shutdown: &CancellationToken) {
    let mut next_full = Instant::now() + timing.every;
    let mut pending: Option<Instant> = None;
    loop {
        let wake = pending.unwrap_or(next_full).min(next_full);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = sleep_until(wake) => {
                source.reload().await;
                pending = None;
                next_full = Instant::now() + timing.every;
            }
            received = listener.try_recv() => match received {
                Ok(Some(n)) => {
                    if source.notified(n.channel(), n.payload()) && pending.is_none() {
                        pending = Some(Instant::now() + timing.debounce);
                    }
                }
                Ok(None) | Err(_) => {
                    tracing::warn!("lost the routing notifications' connection; listening again");
                    return;
                }
            }
        }
    }
}

async fn listen(url: &str, channels: &[&str]) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen_all(channels.iter().copied()).await?;
    Ok(listener)
}

async fn pause(shutdown: &CancellationToken) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(RECONNECT_PAUSE) => {}
    }
}

/// The directory database: clusters, tenants, domains; and which cluster
/// databases need a watcher of their own.
struct DirectorySource {
    pool: PgPool,
    url: String,
    routing: Arc<Routing>,
    node_timeout: Duration,
    timing: Timing,
    /// A running watcher per cluster database, stopped by its token.
    clusters: Mutex<HashMap<DbKey, CancellationToken>>,
    shutdown: CancellationToken,
}

impl DirectorySource {
    /// Start a watcher for each new cluster database (after loading it
    /// once, so a new cluster routes as soon as the directory names it) and
    /// stop those no cluster uses any more.
    async fn sync_clusters(&self) {
        let wanted: Vec<DbKey> = {
            let mut keys: Vec<DbKey> = self.routing.directory().clusters.values().cloned().collect();
            keys.sort();
            keys.dedup();
            keys
        };
        let new: Vec<DbKey> = {
            let mut running = self.clusters.lock().expect("watchers lock");
            running.retain(|key, token| {
                let keep = wanted.contains(key);
                if !keep {
                    token.cancel();
                    self.routing.forget_database(key);
                }
                keep
            });
            wanted.into_iter().filter(|key| !running.contains_key(key)).collect()
        };
        for key in new {
            self.start_cluster_watch(key).await;
        }
    }

    async fn start_cluster_watch(&self, key: DbKey) {
        let url = key.clone().unwrap_or_else(|| self.url.clone());
        let pool = if key.is_none() { self.pool.clone() } else {
            match load::pool(&url) {
                Ok(pool) => pool,
                Err(error) => {
                    tracing::warn!(%error, "a cluster's database_url is not usable");
                    return;
                }
            }
        };
        let source = Arc::new(ClusterSource { pool, db: key.clone(), routing: self.routing.clone(), node_timeout: self.node_timeout });
        source.reload().await;
        let token = self.shutdown.child_token();
        self.clusters.lock().expect("watchers lock").insert(key, token.clone());
        tokio::spawn(run(url, source, self.timing, token));
    }
}

impl Source for DirectorySource {
    fn channels(&self) -> &'static [&'static str] {
        &[DIRECTORY_CHANNEL]
    }

    async fn reload(&self) {
        match load::directory(&self.pool).await {
            Ok(directory) => {
                self.routing.set_directory(directory);
                self.sync_clusters().await;
            }
            Err(error) => tracing::warn!(%error, "directory reload failed; routing on the last snapshot"),
        }
    }

    fn notified(&self, _channel: &str, _payload: &str) -> bool {
        true
    }
}

/// One cluster database: its nodes and lease owners.
struct ClusterSource {
    pool: PgPool,
    db: DbKey,
    routing: Arc<Routing>,
    node_timeout: Duration,
}

impl Source for ClusterSource {
    fn channels(&self) -> &'static [&'static str] {
        &[NODE_CHANNEL, LEASE_CHANNEL]
    }

    async fn reload(&self) {
        match load::cluster_db(&self.pool, self.node_timeout).await {
            Ok((nodes, leases)) => self.routing.database(&self.db).replace(nodes, leases),
            Err(error) => tracing::warn!(%error, "cluster database reload failed; routing on the last snapshot"),
        }
    }

    fn notified(&self, channel: &str, payload: &str) -> bool {
        if channel != LEASE_CHANNEL {
            return true;
        }
        match load::lease_change(payload) {
            Some((tenant, node)) => {
                self.routing.database(&self.db).set_owner(tenant, node);
                false
            }
            None => true,
        }
    }
}
