//! Build the application on the node's services (`state`): the HTTP
//! server with its middleware and routes, the node's background tasks
//! (cluster rounds, notifications, retention), binding and running until
//! stopped.

use std::{net::TcpListener, sync::Arc, time::Duration};

use actix_web::{
    body::{BoxBody, EitherBody, MessageBody},
    dev::{Server, ServerHandle, ServiceRequest, ServiceResponse},
    http::header::{self, HeaderValue},
    middleware::{from_fn, Next},
    web, App, HttpMessage, HttpServer,
};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing_actix_web::{RequestId, TracingLogger};

use crate::{
    cluster::mail::notify::{NotifyForwarder, WorkerMailbox},
    config::Config,
    error::{self, ApiError},
    provisioning::{migrate, ProvisioningError},
    retention::Sweeper,
    routes,
    state::{AppState, StateError},
    telemetry::RequestSpan,
    tenancy::{classify, HostTarget},
};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Provisioning(#[from] ProvisioningError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
}

/// A cluster round at every heartbeat, and at once on every tenant change
/// notification.
fn spawn_cluster(state: web::Data<AppState>, shutdown: CancellationToken) {
    state.cluster.clone().spawn(shutdown.clone());
    let mut changes = state.directory.subscribe();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = changes.changed() => match changed {
                    Ok(()) => state.cluster.wake(),
                    Err(_) => return,
                },
            }
        }
    });
}

/// Give the supervisor its way to workers on other nodes: the broker when
/// the cluster has one (and then only the broker, so a command never
/// arrives twice by two paths), else PostgreSQL notifications, whose
/// receiving side is returned to join the node's listener.
fn start_mail(state: &AppState, shutdown: CancellationToken) -> Option<Arc<dyn crate::notifications::Subscriber>> {
    let (supervisor, counters) = (state.supervisor.clone(), state.mail.clone());
    match state.cluster.broker() {
        Some(broker) => {
            let node = state.cluster.node().id;
            supervisor.set_forwarder(Arc::new(broker.start(node, state.pool.clone(), supervisor.clone(), counters, shutdown)));
            None
        }
        None => {
            supervisor.set_forwarder(Arc::new(NotifyForwarder::new(state.pool.clone(), counters.clone())));
            Some(Arc::new(WorkerMailbox::new(supervisor, counters)))
        }
    }
}

/// Classify the host before anything else runs, so hostile or foreign hosts
/// are refused before any database work. Probes answer on any host. Every
/// response, refusals included, carries the request's id.
async fn host_guard(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody, BoxBody>>, actix_web::Error> {
    let request_id = req.extensions().get::<RequestId>().map(|id| id.to_string());
    let mut response = match resolve_host(&req) {
        Ok(()) => next.call(req).await?.map_into_left_body(),
        Err(refused) => req.error_response(refused).map_into_right_body(),
    };
    if let Some(id) = request_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
        response.headers_mut().insert(header::HeaderName::from_static("x-request-id"), id);
    }
    Ok(response)
}

/// Record which part of the platform the request is for (`HostTarget`).
fn resolve_host(req: &ServiceRequest) -> Result<(), ApiError> {
    let path = req.path();
    if path == "/healthz" || path == "/readyz" || path.starts_with("/bench/") {
        return Ok(());
    }
    let state = req.app_data::<web::Data<AppState>>().expect("AppState is registered");
    let host = match req.headers().get(header::HOST) {
        Some(value) => Some(value.to_str().map_err(|_| ApiError::from(crate::tenancy::HostError::Malformed))?),
        None => req.uri().authority().map(|a| a.as_str()),
    };
    let target = classify(host, &state.config.base_domain)?;
    if let HostTarget::Tenant(slug) = &target {
        tracing::Span::current().record("tenant", slug.as_str());
    }
    req.extensions_mut().insert(target);
    Ok(())
}


pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
    shutdown: CancellationToken,
    metrics_address: Option<std::net::SocketAddr>,
}

impl Application {
    /// Migrate the platform schema, build the state and bind the listener.
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let url = config.require_database_url()?;
        migrate::migrate_platform(url).await?;
        // A node under a cluster id its database does not list would run
        // no tenant and say so only in its round's warnings.
        crate::provisioning::clusters::require(url, &config.cluster.id).await.map_err(ProvisioningError::from)?;
        let listener = TcpListener::bind(&config.listen).map_err(|source| StartupError::Bind { addr: config.listen.clone(), source })?;
        Self::build_with_listener(config, listener)
    }

    pub fn build_with_listener(config: Config, listener: TcpListener) -> Result<Self, StartupError> {
        let port = listener.local_addr().map_err(|source| StartupError::Bind { addr: config.listen.clone(), source })?.port();
        let shutdown = CancellationToken::new();
        let url = config.require_database_url()?.to_string();
        let listen = listener.local_addr().map_err(|source| StartupError::Bind { addr: config.listen.clone(), source })?;
        let address = format!("{}:{port}", listen.ip());
        let state = web::Data::new(AppState::build(config, shutdown.clone(), address, listen)?);
        let mut subscribers: Vec<Arc<dyn crate::notifications::Subscriber>> = vec![
            Arc::new(state.directory.clone()),
            Arc::new(state.auth.standing.clone()),
            Arc::new(state.limits.clone()),
            Arc::new(crate::egress::Changes { egress: state.egress.clone(), supervisor: state.supervisor.clone() }),
        ];
        subscribers.extend(start_mail(&state, shutdown.clone()));
        crate::notifications::spawn_listener(url, subscribers, shutdown.clone());
        spawn_cluster(state.clone(), shutdown.clone());
        Sweeper::new(state.directory.clone(), state.tenant_db.clone(), &state.config.runtime).spawn(shutdown.clone());
        state.analytics.clone().spawn(state.tenant_db.clone(), shutdown.clone());
        let every = Duration::from_millis(state.config.cluster.heartbeat_interval_ms.max(1000));
        crate::egress::spawn_peer_watch(state.pool.clone(), state.egress.clone(), every, shutdown.clone());
        let server = http_server(state.clone(), listener)?;
        let metrics_address = metrics_server(state.clone(), shutdown.clone())?;
        Ok(Self { port, server, state, shutdown, metrics_address })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where `GET /metrics` answers (`metrics.listen`), if anywhere.
    pub fn metrics_address(&self) -> Option<std::net::SocketAddr> {
        self.metrics_address
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serve until `handle().stop()`, then leave the cluster gracefully:
    /// in-flight requests finish, the node drains (its running executions
    /// finish, within `cluster.drain_timeout_ms`, while nothing new starts),
    /// and only then do its workers stop and its leases go.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        self.state.cluster.begin_drain().await;
        self.state.cluster.drained().await;
        self.shutdown.cancel();
        self.state.cluster.leave().await;
        tracing::info!("node stopped");
        result
    }

    /// [`Application::run_until_stopped`], stopped by SIGTERM or SIGINT.
    /// The drain begins at the signal, while the HTTP server finishes its
    /// requests; a second signal cuts the drain short (running executions
    /// are handed over unfinished, to resume elsewhere).
    pub async fn run_until_signalled(self) -> std::io::Result<()> {
        let mut signals = StopSignals::listen()?;
        let (cluster, server) = (self.state.cluster.clone(), self.handle());
        tokio::spawn(async move {
            signals.next().await;
            tracing::info!("stop signal: draining");
            cluster.begin_drain().await;
            tokio::spawn(async move { server.stop(true).await });
            signals.next().await;
            cluster.cut_drain_short();
        });
        self.run_until_stopped().await
    }
}

/// SIGTERM and SIGINT (Ctrl-C), listened to from the start so that none
/// is missed between the first and the second.
struct StopSignals {
    terminate: Signal,
    interrupt: Signal,
}

impl StopSignals {
    fn listen() -> std::io::Result<Self> {
        Ok(Self { terminate: signal(SignalKind::terminate())?, interrupt: signal(SignalKind::interrupt())? })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}

/// `GET /metrics` on `metrics.listen`, apart from the API (see
/// `crate::metrics`), until the node shuts down; its bound address.
fn metrics_server(state: web::Data<AppState>, shutdown: CancellationToken) -> Result<Option<std::net::SocketAddr>, StartupError> {
    let Some(addr) = state.config.metrics.listen.clone() else { return Ok(None) };
    let bind = |source| StartupError::Bind { addr: addr.clone(), source };
    let listener = TcpListener::bind(&addr).map_err(bind)?;
    let bound = listener.local_addr().map_err(bind)?;
    let server = HttpServer::new(move || App::new().app_data(state.clone()).route("/metrics", web::get().to(routes::metrics::metrics)))
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)
        .map_err(bind)?
        .run();
    let handle = server.handle();
    tokio::spawn(server);
    tokio::spawn(async move {
        shutdown.cancelled().await;
        handle.stop(false).await;
    });
    tracing::info!(%bound, "metrics at /metrics");
    Ok(Some(bound))
}

fn http_server(state: web::Data<AppState>, listener: TcpListener) -> Result<Server, StartupError> {
    let config = state.config.clone();
    let json = web::JsonConfig::default().limit(config.http.max_body_bytes).error_handler(error::json_error);
    let mut server = HttpServer::new(move || {
        App::new()
            .wrap(from_fn(host_guard))
            // Inside the logger, so a panic's 500 is logged in its request's span.
            .wrap(from_fn(routes::catch_panics))
            // Outside the panic catcher, so a panic's 500 is counted.
            .wrap(from_fn(routes::metrics::count_requests))
            .wrap(TracingLogger::<RequestSpan>::new())
            .app_data(state.clone())
            .app_data(json.clone())
            .app_data(web::PathConfig::default().error_handler(error::path_error))
            .app_data(web::QueryConfig::default().error_handler(error::query_error))
            .configure(|cfg| routes::configure(cfg, state.config.bench_routes))
            .default_service(web::to(routes::panel::fallback))
    })
    .shutdown_timeout(config.http.shutdown_timeout_secs)
    // Signals are handled in `run_until_signalled`, which drains the node
    // as the server stops.
    .disable_signals();
    if config.http.workers > 0 {
        server = server.workers(config.http.workers);
    }
    let addr = config.listen.clone();
    Ok(server.listen(listener).map_err(|source| StartupError::Bind { addr, source })?.run())
}
