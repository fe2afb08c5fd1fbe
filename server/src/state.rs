//! The node's services, built once: the pools, the tenant directory,
//! authentication, provisioning, the worker supervisor and the cluster,
//! and the caches and gates they share. [`AppState`] is what a request
//! handler may use.
//!
//! Depends only on the domain and on tenancy/database, never on `routes`,
//! `error` or `startup`: every handler imports this module, so it must not
//! lead back to the HTTP layer or to the code that builds the application.

use std::{sync::Arc, time::Duration};

use deadpool_postgres::Pool;
use tessera_runtime::{egress::Egress, Engine, Limits, Supervisor};
use tokio_util::sync::CancellationToken;

use crate::{
    analytics::Analytics,
    gateway::Outbound,
    audit::Trail,
    auth::{AccountStanding, AuthService, LoginLimiter, Passwords, TokenKeys},
    cluster::{
        mail::{broker::{Broker, BrokerError}, Carrier, MailCounters},
        Cluster, NodeIdentity,
    },
    config::Config,
    database::{build_pool, DbError},
    engine::{
        endings::Endings,
        executions::{CrashLimit, Fence},
    },
    limits::LimitBook,
    metrics::Metrics,
    platform::Platform,
    starts::{Intake, IntakeLimit, Starts},
    provisioning::Provisioner,
    resources::{changes::DefinitionChanges, cache::ResourceCache},
    sealing::KeyRing,
    tenancy::{Lanes, TenantDb, TenantDirectory},
};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("token key: {0}")]
    Key(String),
    #[error("secrets key: {0}")]
    Sealing(#[from] crate::sealing::SealingError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// Everything a request handler may use, built once per node.
pub struct AppState {
    pub config: Arc<Config>,
    pub pool: Pool,
    pub tenant_db: TenantDb,
    pub directory: TenantDirectory,
    pub auth: AuthService,
    pub provisioner: Provisioner,
    pub supervisor: Supervisor,
    /// This node's membership and tenant leases.
    pub cluster: Arc<Cluster>,
    /// Seals and opens connection secrets.
    pub sealing: Arc<KeyRing>,
    /// What the worker commands sent to and from other nodes did.
    pub mail: Arc<MailCounters>,
    /// Starts the executions of webhooks and API runs.
    pub intake: Intake,
    /// Waiters for executions' ends, told by this node's store.
    pub endings: Endings,
    /// Webhook triggers and opened connections, kept for a second.
    pub hot: ResourceCache,
    /// What follows a committed change to integrations or connections.
    pub changes: DefinitionChanges,
    /// Every tenant's limits (defaults and the platform owner's overrides).
    pub limits: LimitBook,
    /// The egress gate every outbound connection of a tenant goes through.
    pub egress: Arc<Egress>,
    /// The platform owner's changes to tenants, with their follow-ups here.
    pub platform: Platform,
    /// What `GET /metrics` shows.
    pub metrics: Arc<Metrics>,
    /// Signs and checks the audit trails (the platform's and each tenant's).
    pub audit: Trail,
    /// Managed APIs' calls counted on this node, written every second.
    pub analytics: Analytics,
    /// Managed API routes' backends and identity providers, reached through the egress gate.
    pub outbound: Arc<Outbound>,
    /// The runtime's engine, for the runs a managed API's call makes where it waits (`starts::inline`).
    pub engine: tessera_runtime::execution::Engine,
}

fn token_keys(config: &Config) -> Result<TokenKeys, StateError> {
    let secret = match (&config.jwt_secret, &config.jwt_key_file) {
        (Some(secret), _) => secret.as_bytes().to_vec(),
        (None, Some(path)) => std::fs::read(path).map_err(|e| StateError::Key(format!("{}: {e}", path.display())))?,
        (None, None) => {
            return Err(StateError::Key(
                "no token key configured: set TESSERA_JWT_SECRET (32+ bytes) or TESSERA_JWT_KEY_FILE".into(),
            ))
        }
    };
    let secret = String::from_utf8_lossy(&secret).trim().as_bytes().to_vec();
    TokenKeys::from_secret(&secret, config.auth.token_ttl_secs).map_err(StateError::Key)
}

/// The runtime's engine: executions stored in tenant schemas, under the
/// configured limits; and who waits for their ends on this node.
/// What the engine is built from.
struct EngineParts {
    db: TenantDb,
    keys: Arc<KeyRing>,
    fence: Fence,
    hot: ResourceCache,
    starts: Starts,
    egress: Arc<Egress>,
}

fn engine(config: &Config, parts: EngineParts, metrics: Arc<Metrics>) -> (Engine, Endings) {
    let EngineParts { db, keys, fence, hot, starts, egress } = parts;
    let limits = Limits {
        default_timeout: Duration::from_secs(config.runtime.execution_timeout_secs.max(1)),
        retire_idle_after: Duration::from_secs(config.runtime.retire_idle_worker_secs.max(1)),
    };
    let connections = Arc::new(crate::engine::executions::PgConnections::new(db.clone(), keys, hot));
    let triggers = Arc::new(crate::engine::triggers::PgTriggerStore::new(db.clone(), starts.clone()));
    let endings = Endings::default();
    let store = crate::engine::executions::PgExecutionStore::new(db, fence, starts, endings.clone());
    let store: Arc<dyn tessera_runtime::ExecutionStore> =
        if config.runtime.batch_commits { Arc::new(crate::engine::committer::BatchingStore::start(store, metrics)) } else { Arc::new(store) };
    let io = Arc::new(tessera_runtime::execution::io::Io::new(egress));
    (Engine { store, connections, limits, triggers, publishers: Default::default(), io, versions: Default::default() }, endings)
}

fn auth_service(config: &Config, passwords: Passwords) -> Result<AuthService, StateError> {
    Ok(AuthService {
        tokens: token_keys(config)?,
        passwords,
        limiter: LoginLimiter::new(config.auth.login_per_account_per_minute, config.auth.login_per_address_per_minute),
        standing: AccountStanding::default(),
    })
}

impl AppState {
    pub fn build(config: Config, shutdown: CancellationToken, address: String, listen: std::net::SocketAddr) -> Result<Self, StateError> {
        let url = config.require_database_url()?.to_string();
        let pool = build_pool(&crate::config::DatabaseConfig { pool_size: config.database.platform_pool_size, ..config.database.clone() }, &url)?;
        let directory = TenantDirectory::new(pool.clone(), config.cluster.id.clone());
        let passwords = Passwords::new(4);
        passwords.warm_up();
        let auth = auth_service(&config, passwords.clone())?;
        let sealing = Arc::new(KeyRing::from_config(&config.secrets)?);
        let provisioner = Provisioner::new(
            pool.clone(),
            passwords,
            directory.clone(),
            config.provisioning.clone(),
            url.clone(),
            config.cluster.id.clone(),
        );
        let tenant_db = TenantDb::new(Lanes::build(&config.database, &url)?);
        let node_id = uuid::Uuid::now_v7();
        let crashes = CrashLimit::new(config.runtime.max_execution_crashes, Duration::from_millis(config.cluster.node_timeout_ms));
        let fence = Fence { node: node_id, held: Default::default(), crashes };
        let hot = ResourceCache::default();
        let limits = LimitBook::new(pool.clone(), &config);
        let egress = crate::egress::gate(&config, listen, pool.clone());
        let starts = Starts::new(tenant_db.clone(), limits.clone());
        let metrics = Arc::new(Metrics::new(config.metrics.max_tenant_labels));
        let parts = EngineParts { db: tenant_db.clone(), keys: sealing.clone(), fence: fence.clone(), hot: hot.clone(), starts: starts.clone(), egress: egress.clone() };
        let (engine, endings) = engine(&config, parts, metrics.clone());
        let supervisor = Supervisor::new(shutdown, engine.clone());
        let engine_handle = engine;
        let node = NodeIdentity {
            id: node_id,
            cluster: config.cluster.id.clone(),
            address: config.cluster.advertise_address.clone().unwrap_or(address),
            version: env!("CARGO_PKG_VERSION").to_string(),
        };
        // Heartbeats and leases get connections of their own: a node busy
        // enough to use its whole pool must still renew its leases in time.
        let cluster_pool = build_pool(&crate::config::DatabaseConfig { pool_size: 2, ..config.database.clone() }, &url)?;
        let timeout = Duration::from_millis(config.cluster.node_timeout_ms);
        let broker = config.cluster.amqp_url.as_deref().map(|url| Broker::new(url, &config.cluster.id, timeout)).transpose()?;
        let mail = Arc::new(MailCounters::new(if broker.is_some() { Carrier::Amqp } else { Carrier::Notify }));
        let cluster = Arc::new(Cluster::new(cluster_pool, node, &config.cluster, supervisor.clone(), fence.held, broker, limits.clone()));
        let intake_limit = IntakeLimit::new(config.runtime.intake_per_second, config.runtime.intake_burst);
        let platform = Platform {
            provisioner: provisioner.clone(),
            limits: limits.clone(),
            egress: egress.clone(),
            cluster: cluster.clone(),
            pool: pool.clone(),
            metrics: metrics.clone(),
            audit: Trail::new(sealing.clone()),
        };
        Ok(Self {
            audit: Trail::new(sealing.clone()),
            analytics: Analytics::default(),
            outbound: Arc::new(Outbound::new(egress.clone())),
            engine: engine_handle,
            platform,
            intake: Intake::start(starts, intake_limit, supervisor.clone(), metrics.clone()),
            changes: DefinitionChanges::new(hot.clone(), supervisor.clone()),
            supervisor,
            cluster,
            endings,
            hot,
            limits,
            egress,
            tenant_db,
            config: Arc::new(config),
            pool,
            directory,
            auth,
            provisioner,
            sealing,
            mail,
            metrics,
        })
    }

    /// Make this node's workers match the tenants it owns, at once (see
    /// `cluster`): after a tenant is created or resumed, its worker runs
    /// by the time the request is answered.
    pub async fn reconcile_workers(&self) {
        self.cluster.settle_now().await;
    }
}
