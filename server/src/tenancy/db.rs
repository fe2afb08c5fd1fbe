//! The only way to touch a tenant's tables.
//!
//! Tenant SQL names every table through the [`TENANT`] marker
//! (`SELECT .. FROM @tenant.users`), replaced here by the tenant's quoted
//! schema name, which comes only from a validated [`SchemaName`].
//!
//! Why schema-qualified statements rather than `SET LOCAL search_path`: a
//! scoped transaction costs three extra statements per request, and
//! PostgreSQL re-plans a cached statement each time a connection switches
//! tenant; a qualified statement is a single statement whose plan is cached
//! per tenant (see docs/performance.md). Nothing is set on the session, so
//! nothing can follow a pooled connection into another request; and pooled
//! sessions run with `search_path = pg_catalog`, so a statement that forgot
//! the marker finds no tenant table and fails instead of reading another
//! tenant's rows. A tenant's copy of a statement is prepared on a connection
//! only once it comes back there (`tenancy::kept`): the first run is
//! unnamed, so a backend does not keep one statement per tenant it served.

use tokio_postgres::{types::ToSql, Row};

use super::{lanes::LaneClient, Lanes, SchemaName, Tenant};
use crate::database::DbError;

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Written before a table name in tenant SQL: `@tenant.users`.
pub const TENANT: &str = "@tenant.";

fn qualify(sql: &str, schema: &SchemaName) -> String {
    sql.replace(TENANT, &format!("{}.", schema.quoted()))
}

/// `sql` as `schema`'s statement on `client`: its rows, and how many rows
/// it touched.
async fn query_in(client: &LaneClient, schema: &SchemaName, sql: &str, params: Params<'_>) -> Result<(Vec<Row>, u64), tokio_postgres::Error> {
    let ready = client.ready(sql, qualify(sql, schema)).await?;
    client.run(&ready, params).await
}

/// When a write's commit is flushed to the WAL on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Before the commit returns (`synchronous_commit` as configured).
    Now,
    /// In the background, or with the next flushed commit.
    Later,
}

/// Runs statements against one tenant's tables, on the tenant's lanes.
#[derive(Clone)]
pub struct TenantDb {
    lanes: Lanes,
}

impl TenantDb {
    pub fn new(lanes: Lanes) -> Self {
        Self { lanes }
    }

    /// The lanes, for what commits several tenants' statements together.
    pub fn lanes(&self) -> &Lanes {
        &self.lanes
    }

    /// One statement on its own (its own implicit transaction, committed at
    /// once): for reads, and writes, that need no other statement, in a
    /// single round trip.
    pub async fn statement(&self, tenant: &Tenant, sql: &str, params: Params<'_>) -> Result<Vec<Row>, DbError> {
        self.statement_in_schema(&tenant.schema, sql, params).await
    }

    /// One statement on its own, by schema: for the runtime's execution
    /// store, which knows a tenant by its worker's spec, not a directory
    /// entry. A write through it commits at once.
    pub async fn statement_in_schema(&self, schema: &SchemaName, sql: &str, params: Params<'_>) -> Result<Vec<Row>, DbError> {
        let client = self.lanes.get(schema).await?;
        Ok(query_in(&client, schema, sql, params).await?.0)
    }

    /// One write in a transaction of its own, behind a lock statement:
    /// `BEGIN`, `lock`, `sql`, `COMMIT` sent together, one round trip.
    /// `lock` runs first, so `sql` takes its snapshot once the lock is
    /// granted (READ COMMITTED: one snapshot per statement) and sees every
    /// change committed by whoever held it before. [`Flush::Later`] commits
    /// with `synchronous_commit = off`, only for writes a crash may lose
    /// without harm: the WAL is flushed in order, so the next flushed commit
    /// of any session makes it durable too.
    pub async fn locked_write_in_schema(
        &self,
        schema: &SchemaName,
        lock: (&str, Params<'_>),
        sql: &str,
        params: Params<'_>,
        flush: Flush,
    ) -> Result<Vec<Row>, DbError> {
        let client = self.lanes.get(schema).await?;
        let (lock_statement, statement) = tokio::try_join!(client.prepare_cached(lock.0), client.ready(sql, qualify(sql, schema)))?;
        let begin = match flush {
            Flush::Now => "BEGIN",
            Flush::Later => "BEGIN; SET LOCAL synchronous_commit TO off",
        };
        // Sent in this order on their first poll; a failed statement makes
        // the COMMIT a rollback.
        let (began, locked, rows, committed) = tokio::join!(
            client.batch_execute(begin),
            client.query(&lock_statement, lock.1),
            client.run(&statement, params),
            client.batch_execute("COMMIT"),
        );
        began?;
        locked?;
        let (rows, _) = rows?;
        committed?;
        Ok(rows)
    }

    /// A transaction on lane `lane` for the statements of several tenants
    /// (those of `schemas`, whose home the lane is), committed together:
    /// one commit and one WAL flush for all of them.
    pub async fn begin_lane(&self, lane: usize, schemas: &[&SchemaName]) -> Result<LaneTx, DbError> {
        let client = self.lanes.get_lane(lane, schemas).await?;
        let mut tx = TenantTx { client: Some(client), schema: schemas[0].clone(), begun: true };
        tx.live().batch_execute("BEGIN").await?;
        Ok(LaneTx { tx })
    }

    /// A transaction for work of several statements.
    pub async fn begin(&self, tenant: &Tenant) -> Result<TenantTx, DbError> {
        self.begin_in_schema(&tenant.schema).await
    }

    /// A transaction on a schema that has no directory entry (tests of the
    /// scoping itself).
    pub async fn begin_in_schema(&self, schema: &SchemaName) -> Result<TenantTx, DbError> {
        let client = self.lanes.get(schema).await?;
        Ok(TenantTx { client: Some(client), schema: schema.clone(), begun: false })
    }
}

/// An open transaction holding several tenants' statements, each
/// qualified with its own tenant's schema. Dropping it without `commit`
/// rolls it back.
pub struct LaneTx {
    tx: TenantTx,
}

impl LaneTx {
    /// Run `sql` with `@tenant.` as `schema`'s tables. Statements issued
    /// concurrently are sent in the order they are first polled, and run
    /// in that order.
    pub async fn query(&self, schema: &SchemaName, sql: &str, params: Params<'_>) -> Result<Vec<Row>, DbError> {
        let client = self.tx.client.as_ref().expect("transaction is live until consumed");
        Ok(query_in(client, schema, sql, params).await?.0)
    }

    /// `lock`, then `sql`, both as `schema`'s statements, sent in that
    /// order: whatever either needs prepared is prepared first. Issued
    /// together, a lock statement still to prepare let an unnamed
    /// statement go out before it, so the write could run before its lock
    /// (a lease's fence read before a takeover's wait).
    pub async fn locked_query(&self, schema: &SchemaName, lock: (&str, Params<'_>), sql: &str, params: Params<'_>) -> Result<Vec<Row>, DbError> {
        let client = self.tx.client.as_ref().expect("transaction is live until consumed");
        let (lock_statement, statement) =
            tokio::try_join!(client.ready(lock.0, qualify(lock.0, schema)), client.ready(sql, qualify(sql, schema)))?;
        let (locked, rows) = tokio::join!(biased; client.run(&lock_statement, lock.1), client.run(&statement, params));
        locked?;
        Ok(rows?.0)
    }

    pub async fn commit(self) -> Result<(), DbError> {
        self.tx.commit().await
    }
}

/// An open transaction whose `@tenant.` names are one tenant's tables.
/// `BEGIN` is pipelined with the first statement. Dropping it without
/// `commit` rolls it back before the connection is reused.
pub struct TenantTx {
    client: Option<LaneClient>,
    schema: SchemaName,
    begun: bool,
}

impl TenantTx {
    fn live(&mut self) -> &LaneClient {
        self.client.as_ref().expect("transaction is live until consumed")
    }

    pub async fn query(&mut self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, DbError> {
        Ok(self.run(sql, params).await?.0)
    }

    async fn run(&mut self, sql: &str, params: Params<'_>) -> Result<(Vec<Row>, u64), DbError> {
        let client = self.client.as_ref().expect("transaction is live until consumed");
        let run = query_in(client, &self.schema, sql, params);
        if self.begun {
            return Ok(run.await?);
        }
        // Marked before the first poll sends BEGIN: if this future is
        // dropped mid-flight, `Drop` must still roll back (a ROLLBACK where
        // BEGIN never went out is only a warning).
        self.begun = true;
        // Sent in this order on their first poll: BEGIN always goes first.
        let (began, rows) = tokio::join!(client.batch_execute("BEGIN"), run);
        began?;
        Ok(rows?)
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
        Ok(self.run(sql, params).await?.1)
    }

    /// Commit. The connection stays owned by the transaction until the
    /// COMMIT has been answered: if this future is dropped before that,
    /// `Drop` sends a ROLLBACK after it (a no-op once the COMMIT went
    /// through), so the session never returns to the pool inside a
    /// transaction.
    pub async fn commit(self) -> Result<(), DbError> {
        self.end("COMMIT").await
    }

    /// Roll back, waiting for the answer (dropping the transaction rolls
    /// back too, later and unobserved).
    pub async fn rollback(self) -> Result<(), DbError> {
        self.end("ROLLBACK").await
    }

    async fn end(mut self, statement: &str) -> Result<(), DbError> {
        if self.begun {
            let client = self.client.as_ref().expect("transaction is live until consumed");
            client.batch_execute(statement).await?;
        }
        self.client.take();
        Ok(())
    }
}

impl Drop for TenantTx {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else { return };
        if !self.begun {
            return; // nothing was sent: the session is clean
        }
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    if client.batch_execute("ROLLBACK").await.is_err() {
                        // A connection that cannot roll back must not be reused.
                        client.discard();
                    }
                });
            }
            Err(_) => client.discard(),
        }
    }
}
