//! The `sql` step: one statement on a tenant's `postgres` connection, its
//! `$1..$n` taken from jq expressions and converted to the types
//! PostgreSQL infers for them; the rows come back as JSON objects.
//!
//! Each tenant's connection gets a small pool of its own, built on first
//! use and rebuilt when the connection's URL changes (a re-applied
//! connection); pools are keyed by tenant and connection name, so the URL,
//! which holds a password, is never a key, a label or a log field.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::Duration,
};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures::{pin_mut, TryStreamExt};
use serde_json::{Map, Value};
use tokio_postgres::{config::Host, types::ToSql, NoTls, Row, Statement};
use uuid::Uuid;

use super::{
    io::{scrub, IoError},
    sql_types::{column_value, to_param},
    steps::{StepError, Who},
};
use crate::{
    definition::{ConnectionSpec, SqlAction},
    egress::{Denied, Egress, TenantGate},
    expression::{Expression, ExpressionError},
    limits::LimitExceeded,
    worker::TenantSpec,
};

/// The most rows one step returns.
pub const MAX_ROWS: usize = 10_000;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The node's pools for `sql` steps, by tenant and connection name.
#[derive(Default)]
pub struct SqlPools {
    pools: Mutex<HashMap<(Uuid, String), Built>>,
}

/// A pool and what it was built for: a changed URL, a changed limit of
/// sessions or a change of the tenant's egress rules builds it anew (and
/// checks the address again).
struct Built {
    url: String,
    size: usize,
    generation: u64,
    pool: Pool,
}

impl SqlPools {
    /// The pool of `name`, built for `url` with the tenant's limit
    /// `sql_connections` as its size, or rebuilt when either or the
    /// tenant's egress rules changed. A new pool beyond the tenant's limit
    /// `sql_pools` is refused.
    async fn pool(&self, egress: &Egress, tenant: &TenantSpec, name: &str, url: &str) -> Result<Pool, IoError> {
        let gate = egress.tenant(tenant.id).await.map_err(IoError::Store)?;
        let key = (tenant.id, name.to_string());
        let size = tenant.limits.sql_connections.max(1);
        {
            let pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(built) = pools.get(&key)
                && built.url == url
                && built.size == size
                && built.generation == gate.generation
            {
                return Ok(built.pool.clone());
            }
            let held = pools.keys().filter(|(id, other)| *id == tenant.id && other != name).count();
            if held >= tenant.limits.sql_pools {
                let e = LimitExceeded::new("sql_pool_limit", "the number of SQL pools (connections used by sql steps)", held + 1, "sql_pools", tenant.limits.sql_pools);
                return Err(IoError::Limit(e));
            }
        }
        let config = gated_config(&gate, url).await?;
        let pool = build_pool(config, size).map_err(|e| IoError::ConnectionUnavailable(format!("the connection `{name}`: {e}")))?;
        // Replacing the entry drops the old pool: its idle sessions close,
        // the busy ones close when their step returns them.
        let built = Built { url: url.to_string(), size, generation: gate.generation, pool: pool.clone() };
        self.pools.lock().unwrap_or_else(PoisonError::into_inner).insert(key, built);
        Ok(pool)
    }
}

/// The PostgreSQL configuration of `url`, pinned to addresses the gate
/// checked: each host name is resolved by the gate and its checked address
/// set as the host's `hostaddr` (the name stays, for TLS and messages), so
/// the driver never resolves it again. Addresses written as `hostaddr` are
/// checked as they are. Unix sockets (`host=/var/run/postgresql`) are refused.
pub async fn gated_config(gate: &TenantGate, url: &str) -> Result<tokio_postgres::Config, IoError> {
    let mut config: tokio_postgres::Config =
        url.parse().map_err(|_| IoError::ConnectionUnavailable("the URL is not a valid PostgreSQL connection URL".into()))?;
    let hosts = config.get_hosts().to_vec();
    if hosts.is_empty() {
        return Err(IoError::ConnectionUnavailable("the URL names no host".into()));
    }
    let ports = config.get_ports().to_vec();
    let port = |i: usize| ports.get(i).or(if ports.len() == 1 { ports.first() } else { None }).copied().unwrap_or(5432);
    let mut names = Vec::new();
    for host in &hosts {
        match host {
            Host::Tcp(name) => names.push(name.clone()),
            Host::Unix(path) => {
                let (host, address) = (path.display().to_string(), "a Unix socket".to_string());
                return Err(IoError::EgressDenied(Denied { host, address, rule: "a Unix socket, never allowed".into() }));
            }
        }
    }
    let written = config.get_hostaddrs().to_vec();
    if !written.is_empty() {
        if written.len() != names.len() {
            return Err(IoError::ConnectionUnavailable("the URL gives a `hostaddr` for some hosts and not for others".into()));
        }
        for (i, ip) in written.iter().enumerate() {
            gate.check(None, *ip, port(i)).map_err(IoError::EgressDenied)?;
        }
        return Ok(config);
    }
    for (i, name) in names.iter().enumerate() {
        let checked = gate.resolve(name, port(i)).await?;
        config.hostaddr(checked[0].ip());
    }
    Ok(config)
}

fn build_pool(mut config: tokio_postgres::Config, size: usize) -> Result<Pool, String> {
    config.connect_timeout(CONNECT_TIMEOUT);
    if config.get_application_name().is_none() {
        config.application_name("tessera-sql-step");
    }
    let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(CONNECT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| e.to_string())
}

pub(super) async fn perform(action: &SqlAction, data: Value, who: &Who<'_>) -> Result<Value, StepError> {
    let values = evaluate_params(who.spec.id, action.params.clone(), data).await?;
    let name = action.connection.as_str();
    let url = postgres_url(who, name).await?;
    let secrets = super::io::url_secrets(&url);
    let io = &who.engine.io;
    let pool = io.sql.pool(&io.egress, who.spec, name, &url).await?;
    let client = pool.get().await.map_err(|e| IoError::ConnectionFailed(scrub(&format!("cannot connect: {}", super::oauth::chain(&e)), &secrets)))?;
    let statement = client.prepare_cached(&action.statement).await.map_err(|e| db_error(&e, &secrets))?;
    let params = params_for(&statement, &values)?;
    let stream = client
        .query_raw(&statement, params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)))
        .await
        .map_err(|e| db_error(&e, &secrets))?;
    pin_mut!(stream);
    let mut rows = Vec::new();
    while let Some(row) = stream.try_next().await.map_err(|e| db_error(&e, &secrets))? {
        if rows.len() == MAX_ROWS {
            return Err(IoError::TooManyRows(MAX_ROWS).into());
        }
        rows.push(row_json(&row)?);
    }
    let row_count = stream.rows_affected().unwrap_or(rows.len() as u64);
    Ok(serde_json::json!({"rows": rows, "row_count": row_count}))
}

async fn evaluate_params(tenant: uuid::Uuid, params: Vec<crate::definition::Expression>, data: Value) -> Result<Vec<Value>, StepError> {
    let work = move || -> Result<Vec<Value>, ExpressionError> {
        params.iter().map(|p| Expression::compile_cached(p.as_str())?.evaluate(&data)).collect()
    };
    super::steps::on_pool(tenant, work).await
}

/// The URL of the tenant's `postgres` connection `name`.
async fn postgres_url(who: &Who<'_>, name: &str) -> Result<String, IoError> {
    let spec = super::io::open_connection(who, name).await?;
    match spec {
        ConnectionSpec::Postgres(c) => Ok(c.url.expose().to_string()),
        other => Err(IoError::ConnectionUnavailable(format!(
            "the connection `{name}` is a {} connection; an sql step needs a postgres connection",
            other.kind()
        ))),
    }
}

fn params_for(statement: &Statement, values: &[Value]) -> Result<Vec<Box<dyn ToSql + Sync + Send>>, IoError> {
    let types = statement.params();
    if types.len() != values.len() {
        return Err(IoError::SqlFailed(format!(
            "the statement has {} parameter(s) but the step gives {}",
            types.len(),
            values.len()
        )));
    }
    types.iter().zip(values).enumerate().map(|(i, (ty, value))| to_param(i + 1, ty, value)).collect()
}

fn row_json(row: &Row) -> Result<Value, IoError> {
    let mut object = Map::new();
    for (i, column) in row.columns().iter().enumerate() {
        object.insert(column.name().to_string(), column_value(row, i)?);
    }
    Ok(Value::Object(object))
}

/// The database's own message when it refused the statement; a lost or
/// refused connection otherwise.
fn db_error(e: &tokio_postgres::Error, secrets: &[String]) -> StepError {
    match e.as_db_error() {
        Some(db) => {
            let mut message = format!("{} ({})", db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                message.push_str(&format!(": {detail}"));
            }
            IoError::SqlFailed(scrub(&message, secrets)).into()
        }
        None => IoError::ConnectionFailed(scrub(&super::oauth::chain(e), secrets)).into(),
    }
}

#[cfg(test)]
mod tests {
    use std::{net::IpAddr, sync::Arc};

    use super::*;
    use crate::egress::{EgressPolicy, PlatformEndpoint};

    async fn gate(policy: EgressPolicy) -> TenantGate {
        Egress::new(policy, Arc::new(crate::egress::NoRules)).tenant(Uuid::nil()).await.unwrap()
    }

    fn denied(result: Result<tokio_postgres::Config, IoError>) -> Denied {
        match result {
            Err(IoError::EgressDenied(denied)) => denied,
            other => panic!("not refused by the gate: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_checked_connection_is_pinned_to_the_address_the_gate_checked() {
        let open = gate(EgressPolicy { allow_loopback: true, ..Default::default() }).await;
        let config = gated_config(&open, "postgres://app:pw@localhost:6543/orders").await.unwrap();
        assert!(config.get_hostaddrs().iter().all(IpAddr::is_loopback) && config.get_hostaddrs().len() == 1);
        assert!(matches!(&config.get_hosts()[0], Host::Tcp(name) if name == "localhost"), "the name stays, for TLS");
    }

    #[tokio::test]
    async fn unix_sockets_the_platforms_database_and_written_addresses_are_checked() {
        let platform = PlatformEndpoint { ip: Some("127.0.0.1".parse().unwrap()), port: 5432, what: "the platform's database".into() };
        let open = gate(EgressPolicy { allow_loopback: true, platform: vec![platform], ..Default::default() }).await;
        let socket = denied(gated_config(&open, "postgres://postgres@localhost/tessera?host=/var/run/postgresql").await);
        assert_eq!((socket.host.as_str(), socket.rule.contains("Unix socket")), ("/var/run/postgresql", true));
        assert!(denied(gated_config(&open, "postgres://postgres@127.0.0.1:5432/tessera").await).rule.contains("the platform's database"));
        let written = "host=allowed.example.com hostaddr=127.0.0.1 port=5432 user=postgres";
        assert!(denied(gated_config(&open, written).await).rule.contains("the platform's database"), "a written hostaddr is what is checked");
        assert!(gated_config(&open, "postgres://postgres@127.0.0.1:5433/other").await.is_ok());
        let strict = gate(EgressPolicy::default()).await;
        assert!(denied(gated_config(&strict, "postgres://postgres@127.0.0.1:5433/other").await).rule.contains("loopback"));
    }
}
