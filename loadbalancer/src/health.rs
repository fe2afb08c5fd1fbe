//! Which nodes take requests. Active checks: every node's `GET /readyz`
//! each interval; `unhealthy_after` failures in a row (a timeout is a
//! failure) take a node out, one success brings it back. Passive ejection:
//! a refused connection takes a node out at once, until its next good check.
//! A node never checked yet counts as healthy, so a new node takes requests
//! as soon as it registers (a refused connection is retried elsewhere).

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU32, Ordering},
        Arc, RwLock,
    },
    time::Duration,
};

use bytes::Bytes;
use http_body_util::Empty;
use hyper::{Request, Uri};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use tokio_util::sync::CancellationToken;

use crate::{
    config::{ms, HealthConfig},
    directory::Routing,
};

#[derive(Debug, Default)]
struct NodeHealth {
    healthy: AtomicBool,
    failures: AtomicU32,
}

#[derive(Debug)]
pub struct Health {
    nodes: RwLock<HashMap<String, Arc<NodeHealth>>>,
    unhealthy_after: u32,
}

impl Health {
    pub fn new(config: &HealthConfig) -> Self {
        Self { nodes: RwLock::default(), unhealthy_after: config.unhealthy_after }
    }

    pub fn is_healthy(&self, address: &str) -> bool {
        self.nodes.read().expect("health lock").get(address).is_none_or(|n| n.healthy.load(Ordering::Relaxed))
    }

    /// A connection to the node failed: no requests until a check succeeds.
    pub fn eject(&self, address: &str) {
        let node = self.entry(address);
        if node.healthy.swap(false, Ordering::Relaxed) {
            tracing::warn!(node = address, "node ejected after a failed connection");
        }
    }

    fn record(&self, address: &str, ok: bool) {
        let node = self.entry(address);
        if ok {
            node.failures.store(0, Ordering::Relaxed);
            if !node.healthy.swap(true, Ordering::Relaxed) {
                tracing::info!(node = address, "node healthy");
            }
            return;
        }
        let failures = node.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= self.unhealthy_after && node.healthy.swap(false, Ordering::Relaxed) {
            tracing::warn!(node = address, failures, "node unhealthy");
        }
    }

    fn entry(&self, address: &str) -> Arc<NodeHealth> {
        if let Some(node) = self.nodes.read().expect("health lock").get(address) {
            return node.clone();
        }
        let fresh = NodeHealth { healthy: AtomicBool::new(true), failures: AtomicU32::new(0) };
        self.nodes.write().expect("health lock").entry(address.to_string()).or_insert_with(|| Arc::new(fresh)).clone()
    }

    /// Forget nodes no database lists any more.
    fn retain(&self, addresses: &[String]) {
        self.nodes.write().expect("health lock").retain(|address, _| addresses.contains(address));
    }
}

/// Check every live node each interval until `shutdown`.
pub fn spawn(health: Arc<Health>, routing: Arc<Routing>, config: HealthConfig, shutdown: CancellationToken) {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(ms(config.timeout_ms)));
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(1).build(connector);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(ms(config.interval_ms));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticks.tick() => round(&health, &routing, &client, ms(config.timeout_ms)).await,
            }
        }
    });
}

async fn round(health: &Health, routing: &Routing, client: &Client<HttpConnector, Empty<Bytes>>, timeout: Duration) {
    let addresses = routing.all_addresses();
    health.retain(&addresses);
    let checks = addresses.iter().map(|address| async move {
        let ok = check(client, address, timeout).await;
        health.record(address, ok);
    });
    futures::future::join_all(checks).await;
}

async fn check(client: &Client<HttpConnector, Empty<Bytes>>, address: &str, timeout: Duration) -> bool {
    let Ok(uri) = format!("http://{address}/readyz").parse::<Uri>() else { return false };
    let Ok(request) = Request::get(uri).body(Empty::new()) else { return false };
    match tokio::time::timeout(timeout, client.request(request)).await {
        Ok(Ok(response)) => response.status().is_success(),
        _ => false,
    }
}
