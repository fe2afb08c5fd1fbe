//! The `sql` step: one statement on a tenant's `postgres` connection, its
//! `$1..$n` taken from jq expressions and converted to the types
//! PostgreSQL infers for them; the rows come back as JSON objects.
//!
//! Each tenant's connection gets a small pool of its own, built on first
//! use and rebuilt when the connection's URL changes (a re-applied
//! connection); pools are keyed by tenant and connection name, so the URL,
//! which holds a password, is never a key, a label or a log field.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures::{pin_mut, TryStreamExt};
use serde_json::{Map, Value};
use tokio_postgres::{types::ToSql, NoTls, Row, Statement};
use uuid::Uuid;

use super::{
    io::{scrub, IoError},
    sql_types::{column_value, to_param},
    steps::{StepError, Who},
};
use crate::{
    definition::{ConnectionSpec, SqlAction},
    expression::{Expression, ExpressionError},
};

/// The most rows one step returns.
pub const MAX_ROWS: usize = 10_000;
/// Sessions one tenant's connection holds open at most, on this node.
const POOL_SIZE: usize = 4;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The node's pools for `sql` steps, by tenant and connection name.
#[derive(Default)]
pub struct SqlPools {
    pools: Mutex<HashMap<(Uuid, String), (String, Pool)>>,
}

impl SqlPools {
    /// The pool of `name`, built for `url`, or rebuilt when `url` changed.
    fn pool(&self, tenant: Uuid, name: &str, url: &str) -> Result<Pool, IoError> {
        let mut pools = self.pools.lock().expect("sql pools");
        let key = (tenant, name.to_string());
        if let Some((built_for, pool)) = pools.get(&key)
            && built_for == url
        {
            return Ok(pool.clone());
        }
        let pool = build_pool(url).map_err(|e| IoError::ConnectionUnavailable(format!("the connection `{name}`: {e}")))?;
        // Replacing the entry drops the old pool: its idle sessions close,
        // the busy ones close when their step returns them.
        pools.insert(key, (url.to_string(), pool.clone()));
        Ok(pool)
    }
}

fn build_pool(url: &str) -> Result<Pool, String> {
    let mut config: tokio_postgres::Config =
        url.parse().map_err(|_| "the URL is not a valid PostgreSQL connection URL".to_string())?;
    config.connect_timeout(CONNECT_TIMEOUT);
    if config.get_application_name().is_none() {
        config.application_name("tessera-sql-step");
    }
    let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(manager)
        .max_size(POOL_SIZE)
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
    let pool = who.engine.io.sql.pool(who.spec.id, name, &url)?;
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
