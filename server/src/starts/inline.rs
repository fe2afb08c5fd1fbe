//! A synchronous run of an integration whose steps are all pure, run
//! where its caller waits and stored once, finished, with its steps, in
//! one statement (docs/engine.md, "Inline runs"). The tenant's intake rate
//! and `stored_executions` limits apply as to any start; the caller is
//! answered only once that statement committed, so what it was told is
//! durable. An execution lost with its node before then was never stored
//! and never answered; it reached nothing outside itself.

use serde_json::Value;
use tessera_runtime::{
    execution::{is_pure, Claimed, Engine, Outcome},
    TenantSpec,
};
use uuid::Uuid;

use super::{Intake, Run, StartError};
use crate::{engine::executions::outcome_columns, tenancy::Tenant};

/// The version to run (`$2`, or the current one), if the integration is
/// enabled, and the tenant's variables.
const CURRENT: &str = "SELECT v.version, v.definition, \
       (SELECT coalesce(jsonb_object_agg(name, value), '{}') FROM @tenant.variables) \
     FROM @tenant.integrations i JOIN @tenant.integration_versions v \
       ON v.integration = i.name AND v.version = coalesce($2::int4, i.current_version) \
     WHERE i.name = $1 AND i.enabled";

/// The execution, finished, and its steps' records, in one statement.
const STORE: &str = "WITH e AS ( \
       INSERT INTO @tenant.executions (id, integration, version, state, trigger, output, error, created_at, started_at, finished_at) \
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, now()) RETURNING id) \
     INSERT INTO @tenant.execution_steps (execution_id, path, state, attempt, input, output, error, started_at, finished_at) \
     SELECT e.id, s.path, s.state, s.attempt, s.input, s.output, s.error, s.started_at, s.finished_at \
     FROM e, unnest($9::text[], $10::text[], $11::int4[], $12::jsonb[], $13::jsonb[], $14::jsonb[], $15::timestamptz[], $16::timestamptz[]) \
       AS s(path, state, attempt, input, output, error, started_at, finished_at)";

/// An inline run's end, stored.
pub struct InlineEnded {
    pub id: Uuid,
    pub outcome: Outcome,
}

impl Intake {
    /// Run `run` inline when the version it runs is pure; `None` when it
    /// is not, or when the run has an idempotency key (whose unique index
    /// decides at the start): start it the usual way.
    pub async fn run_inline(&self, tenant: &Tenant, engine: &Engine, run: &Run) -> Result<Option<InlineEnded>, StartError> {
        if run.key.is_some() {
            return Ok(None);
        }
        let name = run.integration.as_str();
        let rows = self.starts.db.statement(tenant, CURRENT, &[&name, &run.version]).await?;
        let row = rows.first().ok_or_else(|| StartError::NoIntegration(name.to_string()))?;
        let (version, definition): (i32, Value) = (row.get(0), row.get(1));
        let Value::Object(vars) = row.get::<_, Value>(2) else { return Ok(None) };
        match engine.versions.get(tenant.id, name, version, &definition) {
            Ok(integration) if is_pure(&integration) => {}
            _ => return Ok(None),
        }
        self.limit.admit(tenant.id).await?;
        self.starts.admit(tenant.id, &tenant.schema).await?;
        let spec = TenantSpec {
            id: tenant.id,
            slug: tenant.slug.to_string(),
            schema: tenant.schema.as_str().to_string(),
            limits: self.starts.book.of(tenant.id).await?,
        };
        let claimed = Claimed { integration: name.to_string(), version, definition, trigger: run.trigger.clone(), vars, done: Vec::new() };
        let (id, created_at) = (Uuid::now_v7(), chrono::Utc::now());
        self.metrics.started(tenant.slug.as_str(), 1);
        let ran = engine.run_inline(&spec, id, claimed).await;
        self.store(tenant, id, name, version, &run.trigger, created_at, &ran).await?;
        for step in &ran.steps {
            self.metrics.step(step.state.as_str(), (step.finished_at - step.started_at).to_std().unwrap_or_default());
        }
        self.metrics.finished(tenant.slug.as_str(), outcome_columns(&ran.outcome).0);
        Ok(Some(InlineEnded { id, outcome: ran.outcome }))
    }

    #[allow(clippy::too_many_arguments)]
    async fn store(
        &self,
        tenant: &Tenant,
        id: Uuid,
        name: &str,
        version: i32,
        trigger: &Value,
        created_at: chrono::DateTime<chrono::Utc>,
        ran: &tessera_runtime::execution::InlineRun,
    ) -> Result<(), StartError> {
        let (state, output, error) = outcome_columns(&ran.outcome);
        let steps = &ran.steps;
        let paths: Vec<&str> = steps.iter().map(|s| s.path.as_str()).collect();
        let states: Vec<&str> = steps.iter().map(|s| s.state.as_str()).collect();
        let attempts: Vec<i32> = steps.iter().map(|s| s.attempt).collect();
        let inputs: Vec<&Value> = steps.iter().map(|s| &s.input).collect();
        let outputs: Vec<Option<&Value>> = steps.iter().map(|s| s.output.as_ref()).collect();
        let errors: Vec<Option<Value>> = steps.iter().map(|s| s.error.as_ref().map(|e| serde_json::to_value(e).unwrap_or(Value::Null))).collect();
        let started: Vec<_> = steps.iter().map(|s| s.started_at).collect();
        let finished: Vec<_> = steps.iter().map(|s| s.finished_at).collect();
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 16] = [
            &id, &name, &version, &state, trigger, &output, &error, &created_at, &paths, &states, &attempts, &inputs, &outputs, &errors, &started,
            &finished,
        ];
        self.starts.db.statement(tenant, STORE, &params).await?;
        Ok(())
    }
}
