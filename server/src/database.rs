//! The node's one PostgreSQL pool and the connection rules every query obeys.
//!
//! Driver choice: tokio-postgres pooled by deadpool-postgres, migrated by
//! refinery (which has no sqlx driver). See docs/architecture.md.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use deadpool_postgres::{Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use crate::config::DatabaseConfig;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("no database connection available: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
    #[error("invalid database URL: {0}")]
    Url(String),
    #[error("expected exactly one row")]
    NotExactlyOne,
}

impl DbError {
    /// The SQLSTATE of a failed statement, if PostgreSQL sent one.
    pub fn code(&self) -> Option<&tokio_postgres::error::SqlState> {
        match self {
            DbError::Postgres(e) => e.code(),
            _ => None,
        }
    }

    pub fn is_unique_violation(&self) -> bool {
        self.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
    }
}

/// Search path of every pooled session: it holds no tenant tables, so a
/// query that forgot its tenant scope fails instead of reading some other
/// tenant's rows. Platform tables are always schema-qualified.
pub const FAIL_CLOSED_SEARCH_PATH: &str = "pg_catalog";

/// Parse a URL into a tokio-postgres config with Tessera's session defaults.
pub fn pg_config(url: &str) -> Result<tokio_postgres::Config, DbError> {
    let mut cfg: tokio_postgres::Config = url.parse().map_err(|e: tokio_postgres::Error| DbError::Url(e.to_string()))?;
    cfg.options(format!("-c search_path={FAIL_CLOSED_SEARCH_PATH}"));
    if cfg.get_application_name().is_none() {
        cfg.application_name("tessera");
    }
    cfg.connect_timeout(Duration::from_secs(5));
    Ok(cfg)
}

/// Build a pool of `pool_size` connections for the platform's own tables
/// (tenant statements run on [`crate::tenancy::Lanes`]).
pub fn build_pool(db: &DatabaseConfig, url: &str) -> Result<Pool, DbError> {
    pool(db, url, db.pool_size, None)
}

/// One lane of the tenant statements' connections: a pool of one, whose
/// connection is replaced once it has touched too many schemas or lived
/// too long; `on_replace` then forgets what the lane knew of it.
pub fn build_lane(db: &DatabaseConfig, url: &str, touched: Arc<Touched>, on_replace: OnReplace) -> Result<Pool, DbError> {
    pool(db, url, 1, Some((touched, on_replace)))
}

pub type OnReplace = Box<dyn Fn() + Send + Sync>;

/// Opens the pools' connections on the runtime the pool was built on (the
/// node's), wherever the first use comes from. Otherwise a connection first
/// needed by an HTTP handler would live on that HTTP worker's own runtime,
/// and die with it when the server stops at the start of a drain, under
/// the executions the drain lets finish.
struct ConnectOnNodeRuntime {
    runtime: tokio::runtime::Handle,
}

impl deadpool_postgres::Connect for ConnectOnNodeRuntime {
    fn connect(
        &self,
        config: &tokio_postgres::Config,
    ) -> futures::future::BoxFuture<'_, Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>> {
        let (config, fallback) = (config.clone(), config.clone());
        Box::pin(async move {
            let (ready, client) = tokio::sync::oneshot::channel();
            // The socket belongs to the runtime that opens it: the whole
            // connection, handshake included, runs on the node's.
            let task = self.runtime.spawn(async move {
                match config.connect(NoTls).await {
                    Err(e) => drop(ready.send(Err(e))),
                    Ok((client, connection)) => {
                        if ready.send(Ok(client)).is_ok()
                            && let Err(e) = connection.await
                        {
                            tracing::warn!(target: "deadpool.postgres", "Connection error: {}", e);
                        }
                    }
                }
            });
            match client.await {
                Ok(opened) => opened.map(|client| (client, task)),
                // The node's runtime is shutting down: connect here instead.
                Err(_) => deadpool_postgres::ConfigConnectImpl { tls: NoTls }.connect(&fallback).await,
            }
        })
    }
}

fn pool(db: &DatabaseConfig, url: &str, size: usize, lane: Option<(Arc<Touched>, OnReplace)>) -> Result<Pool, DbError> {
    // Sessions carry no state between uses (tenant scope is transaction
    // local), so checking the socket is enough.
    let config = ManagerConfig { recycling_method: RecyclingMethod::Fast };
    let manager = match tokio::runtime::Handle::try_current() {
        Ok(runtime) => Manager::from_connect(pg_config(url)?, ConnectOnNodeRuntime { runtime }, config),
        Err(_) => Manager::from_config(pg_config(url)?, NoTls, config),
    };
    let max_lifetime = Duration::from_secs(db.connection_max_lifetime_secs);
    let max_statements = db.max_cached_statements;
    Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(Duration::from_secs(db.acquire_timeout_secs)))
        .create_timeout(Some(Duration::from_secs(5)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        // Each backend caches the catalog of every schema it touched, for as
        // long as it lives: retire connections so that it stays bounded.
        .pre_recycle(Hook::sync_fn(move |client, metrics| {
            let replace = metrics.age() > max_lifetime;
            match &lane {
                Some((touched, on_replace)) => {
                    if replace || touched.replace_if_over() {
                        touched.forget();
                        on_replace();
                        return Err(HookError::Message("connection reached its maximum lifetime or schemas".into()));
                    }
                }
                None => {
                    if replace {
                        return Err(HookError::Message("connection reached its maximum lifetime".into()));
                    }
                    // The platform's statements are a fixed few; a bound all the same.
                    if client.statement_cache.size() > max_statements {
                        client.statement_cache.clear();
                    }
                }
            }
            Ok(())
        }))
        .build()
        .map_err(|e| DbError::Url(e.to_string()))
}

/// The schemas one connection has touched (by hash), up to a most.
pub struct Touched {
    schemas: Mutex<HashSet<u64>>,
    most: usize,
}

impl Touched {
    pub fn new(most: usize) -> Self {
        Self { schemas: Mutex::new(HashSet::new()), most: most.max(1) }
    }

    pub fn add(&self, schema: u64) {
        self.schemas.lock().unwrap_or_else(PoisonError::into_inner).insert(schema);
    }

    /// Past its most: the connection is to be replaced.
    fn replace_if_over(&self) -> bool {
        self.schemas.lock().unwrap_or_else(PoisonError::into_inner).len() > self.most
    }

    /// The connection is being replaced: the next one has touched nothing.
    fn forget(&self) {
        self.schemas.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}

/// Open one connection outside the pool (migrations, LISTEN).
pub async fn connect(url: &str) -> Result<tokio_postgres::Client, DbError> {
    let (client, connection) = pg_config(url)?.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "database connection closed");
        }
    });
    Ok(client)
}
