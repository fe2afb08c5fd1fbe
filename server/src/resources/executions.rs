//! A tenant's executions: starting a manual run (through `crate::starts`,
//! which owns every start and its rules), and the record of every execution
//! with its steps' checkpoints. Viewers read; editors and above run.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio_postgres::Row;
use uuid::Uuid;

pub use super::execution_controls::IdempotencyKey;
use super::{parse_id, parse_name, ResourceError};
use crate::{
    audit::Change,
    auth::{Role, TenantCaller},
    engine::endings::Endings,
    starts::{Intake, Run, Started},
    tenancy::{Tenant, TenantDb},
};

/// The longest a `?wait=true` run waits for the final state.
pub const MAX_WAIT: Duration = Duration::from_secs(30);
const MAX_LIMIT: i64 = 100;
const STATES: [&str; 5] = ["queued", "running", "succeeded", "failed", "cancelled"];
const FINAL_STATES: [&str; 3] = ["succeeded", "failed", "cancelled"];

/// An execution; `steps` only when one execution is asked for.
#[derive(Debug, Serialize)]
pub struct Execution {
    pub id: Uuid,
    pub integration: String,
    pub version: i32,
    pub state: String,
    pub trigger: Value,
    pub output: Option<Value>,
    pub error: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The execution whose `call` step started this one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<Uuid>,
    /// A cancel was asked for while it ran; it ends `cancelled`.
    pub cancel_requested: bool,
    /// How often it was retried after failing.
    pub retries: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<ExecutionStep>>,
    /// The executions this one's `call` steps started; only when one execution is asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub children: Option<Vec<ChildExecution>>,
}

#[derive(Debug, Serialize)]
pub struct ChildExecution {
    pub id: Uuid,
    /// The path of the `call` step that started it, and its attempt.
    pub step: String,
    pub attempt: i32,
    pub state: String,
}

#[derive(Debug, Serialize)]
pub struct ExecutionStep {
    pub path: String,
    pub state: String,
    pub attempt: i32,
    pub input: Option<Value>,
    pub output: Option<Value>,
    pub error: Option<Value>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl Execution {
    pub fn is_final(&self) -> bool {
        FINAL_STATES.contains(&self.state.as_str())
    }
}

/// A page of executions, newest first; `next_cursor` continues it.
#[derive(Debug, Serialize)]
pub struct ExecutionPage {
    pub items: Vec<Execution>,
    pub next_cursor: Option<Uuid>,
}

/// `GET /api/executions` filters.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExecutionFilter {
    pub integration: Option<String>,
    pub state: Option<String>,
    /// Only executions created at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only executions created before this time.
    pub until: Option<DateTime<Utc>>,
    /// At most this many (default and maximum 100).
    pub limit: Option<i64>,
    /// The last id of the previous page.
    pub cursor: Option<Uuid>,
}

const COLUMNS: &str = "id, integration, version, state, trigger, output, error, created_at, started_at, finished_at, \
     cancel_requested, retries, parent_id";

fn from_row(row: &Row) -> Execution {
    Execution {
        id: row.get(0),
        integration: row.get(1),
        version: row.get(2),
        state: row.get(3),
        trigger: row.get(4),
        output: row.get(5),
        error: row.get(6),
        created_at: row.get(7),
        started_at: row.get(8),
        finished_at: row.get(9),
        cancel_requested: row.get(10),
        retries: row.get(11),
        parent_id: row.get(12),
        steps: None,
        children: None,
    }
}

pub(super) fn not_found(id: impl ToString) -> ResourceError {
    ResourceError::NotFound { kind: "execution", id: id.to_string() }
}

/// Start a run of integration `name`'s current version with `payload` as
/// its trigger body (committed before the answer, then the tenant's worker
/// is woken). A repeated `key` answers with the execution it started first.
/// The run is recorded in the audit trail once its execution is stored
/// (the intake commits starts in batches of many callers').
pub async fn run(
    db: &TenantDb,
    intake: &Intake,
    caller: &TenantCaller,
    name: &str,
    payload: Option<Value>,
    key: Option<&IdempotencyKey>,
) -> Result<Started, ResourceError> {
    caller.require(Role::Editor)?;
    let integration = parse_name("integration", name)?;
    let trigger = json!({"kind": "manual", "body": payload.unwrap_or(Value::Null)});
    let key = key.map(|k| k.as_str().to_string());
    let started = intake.run(&caller.tenant, Run { integration: integration.clone(), version: None, trigger, key }).await?;
    if !started.replayed {
        let mut tx = db.begin(&caller.tenant).await?;
        let detail = json!({"integration": integration.as_str()});
        caller.record(&mut tx, Change::new("execution.run", "execution", started.id.to_string()).with(detail)).await?;
        tx.commit().await?;
    }
    Ok(started)
}

/// The execution once it is final, or as it is when `limit` runs out.
pub async fn wait_for_end(db: &TenantDb, endings: &Endings, tenant: &Tenant, id: Uuid, limit: Duration) -> Result<Execution, ResourceError> {
    wait_for_final(db, endings, tenant, id, limit).await?;
    load(db, tenant, id).await
}

/// Where an execution stands: its state and, once final, its output or error.
pub struct Standing {
    pub state: String,
    pub output: Option<Value>,
    pub error: Option<Value>,
}

impl Standing {
    pub fn is_final(&self) -> bool {
        FINAL_STATES.contains(&self.state.as_str())
    }
}

/// How the execution ended, or where it stands when `limit` runs out: one
/// read once told of its end, for a caller that needs its result only
/// (a managed API's call), not its steps.
pub async fn wait_for_final(db: &TenantDb, endings: &Endings, tenant: &Tenant, id: Uuid, limit: Duration) -> Result<Standing, ResourceError> {
    let now = tokio::time::Instant::now();
    let until = now.checked_add(limit).unwrap_or(now + MAX_WAIT);
    let mut pause = Duration::from_millis(50);
    loop {
        // Watched before the state is read: an end committed in between still wakes us.
        let mut end = endings.watch(id);
        let rows = db.statement(tenant, "SELECT state, output, error FROM @tenant.executions WHERE id = $1", &[&id]).await?;
        let row = rows.first().ok_or_else(|| not_found(id))?;
        let standing = Standing { state: row.get(0), output: row.get(1), error: row.get(2) };
        if standing.is_final() || tokio::time::Instant::now() >= until {
            return Ok(standing);
        }
        // Told at once when it ends on this node; polled, more and more
        // slowly, for an execution that runs on another node.
        tokio::select! {
            _ = end.ended() => {}
            _ = tokio::time::sleep(pause.min(until - tokio::time::Instant::now())) => pause = (pause * 2).min(Duration::from_secs(1)),
        }
    }
}

pub async fn list(db: &TenantDb, caller: &TenantCaller, filter: ExecutionFilter) -> Result<ExecutionPage, ResourceError> {
    if let Some(state) = filter.state.as_deref().filter(|s| !STATES.contains(s)) {
        return Err(ResourceError::Invalid { field: "state", message: format!("`{state}` is not one of {}", STATES.join(", ")) });
    }
    let limit = filter.limit.unwrap_or(MAX_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ResourceError::Invalid { field: "limit", message: format!("must be between 1 and {MAX_LIMIT}") });
    }
    // UUIDv7 ids sort by creation time: the id is both the order and the cursor.
    let sql = format!(
        "SELECT {COLUMNS} FROM @tenant.executions \
         WHERE ($1::text IS NULL OR integration = $1) AND ($2::text IS NULL OR state = $2) \
         AND ($3::timestamptz IS NULL OR created_at >= $3) AND ($4::uuid IS NULL OR id < $4) \
         AND ($6::timestamptz IS NULL OR created_at < $6) \
         ORDER BY id DESC LIMIT $5"
    );
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
        [&filter.integration, &filter.state, &filter.since, &filter.cursor, &limit, &filter.until];
    let items: Vec<Execution> = db.statement(&caller.tenant, &sql, &params).await?.iter().map(from_row).collect();
    let next_cursor = if items.len() as i64 == limit { items.last().map(|e| e.id) } else { None };
    Ok(ExecutionPage { items, next_cursor })
}

/// One execution with every step's checkpoint, in the order they ran.
pub async fn get(db: &TenantDb, caller: &TenantCaller, id: &str) -> Result<Execution, ResourceError> {
    let id = parse_id("execution", id)?;
    load(db, &caller.tenant, id).await
}

pub(super) async fn load(db: &TenantDb, tenant: &Tenant, id: Uuid) -> Result<Execution, ResourceError> {
    let mut tx = db.begin(tenant).await?;
    let sql = format!("SELECT {COLUMNS} FROM @tenant.executions WHERE id = $1");
    let mut execution = tx.query_opt(&sql, &[&id]).await?.map(|r| from_row(&r)).ok_or_else(|| not_found(id))?;
    let steps_sql = "SELECT path, state, attempt, input, output, error, started_at, finished_at \
                     FROM @tenant.execution_steps WHERE execution_id = $1 ORDER BY started_at, path";
    let steps = tx.query(steps_sql, &[&id]).await?;
    let children_sql = "SELECT id, parent_step, parent_attempt, state FROM @tenant.executions WHERE parent_id = $1 ORDER BY id";
    let children = tx.query(children_sql, &[&id]).await?;
    tx.commit().await?;
    execution.children =
        Some(children.iter().map(|r| ChildExecution { id: r.get(0), step: r.get(1), attempt: r.get(2), state: r.get(3) }).collect());
    execution.steps = Some(
        steps
            .iter()
            .map(|r| ExecutionStep {
                path: r.get(0),
                state: r.get(1),
                attempt: r.get(2),
                input: r.get(3),
                output: r.get(4),
                error: r.get(5),
                started_at: r.get(6),
                finished_at: r.get(7),
            })
            .collect(),
    );
    Ok(execution)
}
