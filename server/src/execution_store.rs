//! The runtime's [`ExecutionStore`] over the tenant-scoped database handle:
//! executions and their step checkpoints live in the tenant's schema, so a
//! worker can only ever touch its own tenant's executions.
//!
//! Claims lock the execution row with `FOR UPDATE SKIP LOCKED`, so two
//! claims racing for one execution (a wake-up and a worker's start-up scan)
//! never both win. Nothing here leases an execution to a node yet: today
//! every node runs every tenant's worker, so only one node should run at a
//! time against one database until clustering gives each tenant one owner.

use std::sync::Arc;

use serde_json::{Map, Value};
use tessera_runtime::{
    definition::ConnectionSpec,
    execution::{Claimed, Outcome, StepRecord, StoreError, StoreFuture},
    Connections, ExecutionStore, TenantSpec,
};
use uuid::Uuid;

use crate::{
    database::DbError,
    resources::connections,
    sealing::KeyRing,
    tenancy::{SchemaName, TenantDb, TenantTx},
};

pub struct PgExecutionStore {
    db: TenantDb,
}

impl PgExecutionStore {
    pub fn new(db: TenantDb) -> Self {
        Self { db }
    }
}

#[derive(Debug, thiserror::Error)]
enum StoreFault {
    #[error("tenant {0} has no valid schema name")]
    Schema(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

fn store_error(e: impl Into<StoreFault>) -> StoreError {
    StoreError(Box::new(e.into()))
}

fn schema(tenant: &TenantSpec) -> Result<SchemaName, StoreError> {
    SchemaName::from_stored(tenant.schema.clone()).ok_or_else(|| store_error(StoreFault::Schema(tenant.slug.clone())))
}

const CLAIM: &str = "UPDATE @tenant.executions e SET state = 'running', started_at = coalesce(e.started_at, now()) \
     FROM (SELECT id FROM @tenant.executions WHERE id = $1 AND state IN ('queued', 'running') FOR UPDATE SKIP LOCKED) c \
     WHERE e.id = c.id RETURNING e.integration, e.version, e.trigger";

const CHECKPOINT: &str = "INSERT INTO @tenant.execution_steps \
     (execution_id, path, state, attempt, input, output, error, started_at, finished_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
     ON CONFLICT (execution_id, path) DO UPDATE SET state = EXCLUDED.state, attempt = EXCLUDED.attempt, \
     input = EXCLUDED.input, output = EXCLUDED.output, error = EXCLUDED.error, \
     started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at";

impl PgExecutionStore {
    async fn claim_in(&self, schema: &SchemaName, id: Uuid) -> Result<Option<Claimed>, DbError> {
        let mut tx = self.db.begin_in_schema(schema).await?;
        let Some(row) = tx.query_opt(CLAIM, &[&id]).await? else { return Ok(None) };
        let (integration, version, trigger): (String, i32, Value) = (row.get(0), row.get(1), row.get(2));
        let definition_sql = "SELECT definition FROM @tenant.integration_versions WHERE integration = $1 AND version = $2";
        let definition: Value = tx.query_one(definition_sql, &[&integration, &version]).await?.get(0);
        let done = done_steps(&mut tx, id).await?;
        let vars: Map<String, Value> = tx
            .query("SELECT name, value FROM @tenant.variables", &[])
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        tx.commit().await?;
        Ok(Some(Claimed { integration, version, definition, trigger, vars, done }))
    }
}

async fn done_steps(tx: &mut TenantTx, id: Uuid) -> Result<Vec<(String, Value)>, DbError> {
    let sql = "SELECT path, output FROM @tenant.execution_steps WHERE execution_id = $1 AND state = 'succeeded'";
    let rows = tx.query(sql, &[&id]).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get::<_, Option<Value>>(1).unwrap_or(Value::Null))).collect())
}

fn to_json<T: serde::Serialize>(value: &Option<T>) -> Option<Value> {
    value.as_ref().map(|v| serde_json::to_value(v).expect("records serialise to JSON"))
}

/// An outcome as the `state`, `output` and `error` columns of its execution.
pub(crate) fn outcome_columns(outcome: &Outcome) -> (&'static str, Option<Value>, Option<Value>) {
    match outcome {
        Outcome::Succeeded(output) => ("succeeded", Some(output.clone()), None),
        Outcome::Failed(failure) => ("failed", None, to_json(&Some(failure))),
    }
}

impl ExecutionStore for PgExecutionStore {
    fn unfinished<'a>(&'a self, tenant: &'a TenantSpec) -> StoreFuture<'a, Vec<Uuid>> {
        Box::pin(async move {
            let sql = "SELECT id FROM @tenant.executions WHERE state IN ('queued', 'running') ORDER BY id";
            let rows = self.db.statement_in_schema(&schema(tenant)?, sql, &[]).await.map_err(store_error)?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn claim<'a>(&'a self, tenant: &'a TenantSpec, id: Uuid) -> StoreFuture<'a, Option<Claimed>> {
        Box::pin(async move { self.claim_in(&schema(tenant)?, id).await.map_err(store_error) })
    }

    fn checkpoint<'a>(&'a self, tenant: &'a TenantSpec, id: Uuid, step: &'a StepRecord) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let (state, error) = (step.state.as_str(), to_json(&step.error));
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 9] = [
                &id, &step.path, &state, &step.attempt, &step.input, &step.output, &error, &step.started_at, &step.finished_at,
            ];
            self.db.statement_in_schema(&schema(tenant)?, CHECKPOINT, &params).await.map_err(store_error)?;
            Ok(())
        })
    }

    fn finish<'a>(&'a self, tenant: &'a TenantSpec, id: Uuid, outcome: &'a Outcome) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let (state, output, error) = outcome_columns(outcome);
            let sql = "UPDATE @tenant.executions SET state = $2, output = $3, error = $4, finished_at = now() \
                       WHERE id = $1 AND state = 'running'";
            self.db.statement_in_schema(&schema(tenant)?, sql, &[&id, &state, &output, &error]).await.map_err(store_error)?;
            Ok(())
        })
    }
}

/// The runtime's [`Connections`]: a tenant's sealed connections, opened
/// with the node's key ring when a step or trigger needs one.
pub struct PgConnections {
    db: TenantDb,
    keys: Arc<KeyRing>,
}

impl PgConnections {
    pub fn new(db: TenantDb, keys: Arc<KeyRing>) -> Self {
        Self { db, keys }
    }
}

impl Connections for PgConnections {
    fn open<'a>(&'a self, tenant: &'a TenantSpec, name: &'a str) -> StoreFuture<'a, Option<ConnectionSpec>> {
        Box::pin(async move {
            let opened = connections::open_in(&self.db, &self.keys, tenant.id, &schema(tenant)?, name).await;
            Ok(opened.map_err(|e| StoreError(Box::new(e)))?.map(|c| c.spec))
        })
    }
}
