//! The only way to touch a tenant's tables: a transaction bound to its schema.
//!
//! `TenantTx` sets `search_path` with `SET LOCAL` inside its own
//! transaction, so the scope ends with the transaction and a pooled
//! connection can never carry one tenant's schema into another request. The
//! `BEGIN` is pipelined with the first statement, so scoping costs no extra
//! round trip; a one-statement read also pipelines its `COMMIT`
//! (`read_and_end`), so it costs a single round trip in all.

use deadpool_postgres::{Object, Pool};
use tokio_postgres::{types::ToSql, Row};

use super::{SchemaName, Tenant};
use crate::database::DbError;

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Hands out tenant-scoped transactions from the node's single pool.
#[derive(Clone)]
pub struct TenantDb {
    pool: Pool,
}

impl TenantDb {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    pub async fn begin(&self, tenant: &Tenant) -> Result<TenantTx, DbError> {
        TenantTx::begin(&self.pool, &tenant.schema).await
    }

    /// A transaction on a schema that has no directory entry yet (provisioning
    /// checks, tests of the scoping itself).
    pub async fn begin_in_schema(&self, schema: &SchemaName) -> Result<TenantTx, DbError> {
        TenantTx::begin(&self.pool, schema).await
    }
}

/// An open transaction whose unqualified names resolve in one tenant schema.
/// Dropping it without `commit` rolls it back before the connection is reused.
pub struct TenantTx {
    client: Option<Object>,
    /// The `BEGIN` + scope statement, until it has been sent.
    pending_begin: Option<String>,
}

impl TenantTx {
    async fn begin(pool: &Pool, schema: &SchemaName) -> Result<Self, DbError> {
        let client = pool.get().await?;
        // The schema name is validated to [a-z0-9_] (see SchemaName), so it is
        // safe as a quoted identifier; SET LOCAL keeps it to the transaction.
        // (SET is a utility statement: unlike SELECT set_config(..) it is not
        // planned, which saves work on every request.)
        let begin = format!("BEGIN; SET LOCAL search_path TO {}", schema.quoted());
        Ok(Self { client: Some(client), pending_begin: Some(begin) })
    }

    pub async fn query(&mut self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, DbError> {
        let client = self.client.as_ref().expect("transaction is live until consumed");
        let run = async {
            // Preparing after the scope is set (same pipeline) resolves names
            // in the tenant schema; a cached statement is re-analysed by
            // PostgreSQL when search_path differs from when it was prepared.
            let statement = client.prepare_cached(sql).await?;
            client.query(&statement, params).await
        };
        match self.pending_begin.take() {
            Some(begin) => {
                let (began, rows) = tokio::join!(client.batch_execute(&begin), run);
                began?;
                Ok(rows?)
            }
            None => Ok(run.await?),
        }
    }

    pub async fn query_opt(&mut self, sql: &str, params: Params<'_>) -> Result<Option<Row>, DbError> {
        Ok(self.query(sql, params).await?.into_iter().next())
    }

    pub async fn query_one(&mut self, sql: &str, params: Params<'_>) -> Result<Row, DbError> {
        let mut rows = self.query(sql, params).await?.into_iter();
        match (rows.next(), rows.next()) {
            (Some(row), None) => Ok(row),
            _ => Err(DbError::NotExactlyOne),
        }
    }

    /// Run a statement and return the number of rows it touched.
    pub async fn execute(&mut self, sql: &str, params: Params<'_>) -> Result<u64, DbError> {
        let client = self.client.as_ref().expect("transaction is live until consumed");
        let run = async {
            let statement = client.prepare_cached(sql).await?;
            client.execute(&statement, params).await
        };
        match self.pending_begin.take() {
            Some(begin) => {
                let (began, n) = tokio::join!(client.batch_execute(&begin), run);
                began?;
                Ok(n?)
            }
            None => Ok(run.await?),
        }
    }

    pub async fn commit(mut self) -> Result<(), DbError> {
        let client = self.client.take().expect("transaction is live until consumed");
        if self.pending_begin.is_none() {
            client.batch_execute("COMMIT").await?;
        }
        Ok(())
    }

    /// Run one last read and end the transaction with it: the `BEGIN` and
    /// scope (if not sent yet), the statement and `COMMIT` go out in one
    /// pipeline, so a one-statement read costs a single round trip and its
    /// connection goes straight back to the pool. For reads only: it commits.
    pub async fn read_and_end(mut self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, DbError> {
        let begin = self.pending_begin.take();
        let client = self.client.as_ref().expect("transaction is live until consumed");
        let run = async {
            match client.prepare_cached(sql).await {
                // Each is sent on its first poll, in this order, behind the
                // BEGIN: the COMMIT never overtakes the statement.
                Ok(statement) => {
                    let (rows, ended) = tokio::join!(client.query(&statement, params), client.batch_execute("COMMIT"));
                    (rows, ended)
                }
                Err(e) => (Err(e), client.batch_execute("ROLLBACK").await),
            }
        };
        let (began, (rows, ended)) = match begin {
            Some(begin) => tokio::join!(client.batch_execute(&begin), run),
            None => (Ok(()), run.await),
        };
        // Finished here, not in Drop (which still covers a cancelled call).
        let client = self.client.take().expect("transaction is live until consumed");
        if ended.is_err() {
            // Its transaction may still be open: never reuse this session.
            let _ = Object::take(client);
        }
        began?;
        let rows = rows?;
        ended?;
        Ok(rows)
    }
}

impl Drop for TenantTx {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else { return };
        if self.pending_begin.is_some() {
            return; // nothing was sent: the session is clean
        }
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    if client.batch_execute("ROLLBACK").await.is_err() {
                        // A connection that cannot roll back must not be reused.
                        let _ = Object::take(client);
                    }
                });
            }
            Err(_) => {
                let _ = Object::take(client);
            }
        }
    }
}
