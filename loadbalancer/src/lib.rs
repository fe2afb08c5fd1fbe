//! `tessera-lb`: the load balancer in front of Tessera's clusters.
//!
//! A request for `acme.<base_domain>` (or a verified custom domain of
//! acme's) goes to the node holding acme's lease in acme's cluster when that
//! node is healthy, else to another healthy node of that cluster (nodes
//! forward internally); the bare base domain goes to the directory's own
//! cluster. The load balancer keeps no state but caches, so several can run
//! side by side.
//!
//! Modules, in the order a request meets them:
//!
//! - [`server`]: listeners (HTTP, and HTTPS via [`tls`]), HTTP/1.1 and
//!   HTTP/2, graceful shutdown.
//! - [`proxy`]: one request: route, forwarded headers and request id, body
//!   limit, attempts and retries, streamed answers.
//! - [`route`]: Host → destination (through `tessera_hosts::classify`, so the
//!   load balancer refuses exactly what nodes refuse) → the nodes to try.
//! - [`health`]: active `/readyz` checks and passive ejection.
//! - [`directory`]: the routing snapshot (`Routing`), loaded from the
//!   directory database and each cluster's database (`load`) and kept
//!   current by LISTEN/NOTIFY and periodic reloads (`watch`).
//! - [`error`]: every refusal as `{"error":{"code","message"}}`.
//! - [`config`], [`telemetry`].
//!
//! Why hyper rather than pingora: pingora brings about 270 crates and a
//! cmake build (BoringSSL or OpenSSL) for features Tessera does not need
//! here; hyper 1, hyper-util's pooled client and connection builders,
//! rustls and tokio are mostly in the workspace already, and the proxy on
//! top of them is a few hundred lines that the integration tests cover.

pub mod config;
pub mod directory;
pub mod error;
pub mod health;
pub mod proxy;
pub mod route;
pub mod server;
pub mod telemetry;
pub mod tls;

use std::{net::SocketAddr, sync::Arc};

use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

pub use config::Config;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("cannot load the directory: {0}")]
    Directory(#[from] directory::load::LoadError),
    #[error("cannot listen on {address}: {source}")]
    Bind { address: String, source: std::io::Error },
    #[error("TLS: {0}")]
    Tls(#[from] tls::TlsError),
}

/// A running load balancer. Dropping it leaves it running; `stop` ends it.
pub struct LoadBalancer {
    http_addr: SocketAddr,
    https_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    servers: Vec<JoinHandle<()>>,
}

impl LoadBalancer {
    /// Load the directory and every cluster's nodes, start the watchers and
    /// health checks, bind the listeners and serve. Fails when the
    /// directory database cannot be read or a listener cannot be bound.
    pub async fn start(config: Config) -> Result<Self, StartError> {
        config.validate()?;
        let shutdown = CancellationToken::new();
        let routing = Arc::new(directory::Routing::default());
        directory::watch::start(&config, routing.clone(), shutdown.clone()).await?;
        let health = Arc::new(health::Health::new(&config.health));
        health::spawn(health.clone(), routing.clone(), config.health.clone(), shutdown.clone());
        let listener = server::Listener {
            proxy: Arc::new(proxy::Proxy::new(&config, routing, health)),
            tls: None,
            header_read_timeout: config::ms(config.http.header_read_timeout_ms),
            shutdown_timeout: config::ms(config.http.shutdown_timeout_ms),
        };
        let (http_addr, http) = bind(&config.listen).await?;
        let mut servers = vec![tokio::spawn(listener.clone().serve(http, shutdown.clone()))];
        let mut https_addr = None;
        if let Some(tls) = &config.tls {
            let (addr, https) = bind(&tls.listen).await?;
            let secure = server::Listener { tls: Some(tls::acceptor(tls)?), ..listener };
            servers.push(tokio::spawn(secure.serve(https, shutdown.clone())));
            https_addr = Some(addr);
        }
        tracing::info!(%http_addr, ?https_addr, "load balancer listening");
        Ok(Self { http_addr, https_addr, shutdown, servers })
    }

    /// The plain HTTP listener's address (the real port when `listen` had port 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https_addr
    }

    /// Stop accepting, let in-flight requests finish (up to
    /// `http.shutdown_timeout_ms`), stop the watchers and health checks.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for server in self.servers {
            let _ = server.await;
        }
    }
}

async fn bind(address: &str) -> Result<(SocketAddr, TcpListener), StartError> {
    let bind_error = |source| StartError::Bind { address: address.to_string(), source };
    let listener = TcpListener::bind(address).await.map_err(bind_error)?;
    let local = listener.local_addr().map_err(bind_error)?;
    Ok((local, listener))
}
