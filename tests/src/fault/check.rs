//! What came out of a load: read from the database, not from the nodes.
//!
//! The checker's rules: every accepted webhook is exactly one execution
//! (no execution the driver was not told about either), every execution
//! ended `succeeded`, and the target table holds exactly one row per
//! execution, with that execution's tenant and `seq`: none lost, none
//! doubled.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
};

use uuid::Uuid;

use super::{load::TARGET_DATABASE, Accepted, FaultCluster, FaultError, Workload};

/// The tenant schema of `slug`, as provisioning names it.
fn schema(slug: &str) -> String {
    format!("t_{}", slug.replace('-', "_"))
}

/// Every tenant's executions as one relation: `(tenant, id, state,
/// error code, idempotency key)`.
fn all_executions(workload: &Workload) -> String {
    workload
        .tenants
        .iter()
        .map(|slug| {
            format!(
                "SELECT '{slug}'::text AS tenant, id, state, error->>'code' AS code, idempotency_key FROM \"{}\".executions",
                schema(slug)
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

/// How many executions are still `queued` or `running`, over every tenant.
pub async fn unfinished(cluster: &FaultCluster, workload: &Workload) -> Result<i64, FaultError> {
    let db = cluster.postgres().connect("tessera").await?;
    let sql = format!("SELECT count(*) FROM ({}) e WHERE state IN ('queued', 'running')", all_executions(workload));
    Ok(db.query_one(&sql, &[]).await?.get(0))
}

/// One execution as stored.
struct Stored {
    tenant: String,
    state: String,
    code: Option<String>,
    key: Option<String>,
}

/// One row of the target table.
struct Row {
    tenant: String,
    seq: i32,
    writes: i32,
}

/// The outcome of a load, counted.
#[derive(Debug, Default)]
pub struct Verdict {
    pub accepted: usize,
    pub executions: usize,
    /// Executions by final state (and error code when failed).
    pub by_state: BTreeMap<String, usize>,
    /// Accepted webhooks with no execution of the id they were given.
    pub lost_executions: Vec<String>,
    /// Executions no accepted webhook was answered with.
    pub unexpected_executions: Vec<String>,
    pub rows: usize,
    /// Executions without their row in the target table.
    pub lost_rows: Vec<String>,
    /// Rows of no execution, or with another tenant or `seq` than the
    /// execution's.
    pub wrong_rows: Vec<String>,
    /// Rows whose `sql` step ran more than once (allowed: at least once).
    pub rewritten_rows: usize,
    /// Their executions (tenant and id), to look for in the nodes' logs,
    /// with what tells a rerun on another node from a retry on the same
    /// one: the execution's crash count and last claimer, and the `store`
    /// step's attempt.
    pub rewritten: Vec<String>,
}

impl Verdict {
    /// Nothing lost, nothing doubled, nothing failed.
    pub fn holds(&self) -> bool {
        self.executions == self.accepted
            && self.by_state.keys().all(|s| s == "succeeded")
            && self.lost_executions.is_empty()
            && self.unexpected_executions.is_empty()
            && self.rows == self.accepted
            && self.lost_rows.is_empty()
            && self.wrong_rows.is_empty()
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let few = |list: &Vec<String>| list.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
        write!(
            f,
            "{} accepted, {} executions {:?}, {} rows ({} written more than once [{}]); lost executions {} [{}], \
             unexpected executions {} [{}], lost rows {} [{}], wrong rows {} [{}]",
            self.accepted,
            self.executions,
            self.by_state,
            self.rows,
            self.rewritten_rows,
            few(&self.rewritten),
            self.lost_executions.len(),
            few(&self.lost_executions),
            self.unexpected_executions.len(),
            few(&self.unexpected_executions),
            self.lost_rows.len(),
            few(&self.lost_rows),
            self.wrong_rows.len(),
            few(&self.wrong_rows),
        )
    }
}

/// Count what the load left in the database.
pub async fn verify(cluster: &FaultCluster, workload: &Workload, accepted: &[Accepted]) -> Result<Verdict, FaultError> {
    let executions = read_executions(cluster, workload).await?;
    let rows = read_rows(cluster).await?;
    let mut verdict = Verdict { accepted: accepted.len(), executions: executions.len(), rows: rows.len(), ..Verdict::default() };
    for stored in executions.values() {
        let state = match &stored.code {
            Some(code) => format!("{}({code})", stored.state),
            None => stored.state.clone(),
        };
        *verdict.by_state.entry(state).or_default() += 1;
    }
    let mut told: HashMap<Uuid, &Accepted> = HashMap::new();
    for a in accepted {
        told.insert(a.execution_id, a);
        match executions.get(&a.execution_id) {
            Some(s) if s.tenant == a.tenant && s.key.as_deref() == Some(format!("load-{}", a.seq).as_str()) => {}
            Some(_) => verdict.unexpected_executions.push(format!("{} (seq {}) stored under another tenant or key", a.execution_id, a.seq)),
            None => verdict.lost_executions.push(format!("{} (seq {}, {})", a.execution_id, a.seq, a.tenant)),
        }
        match rows.get(&a.execution_id) {
            Some(row) if row.tenant == a.tenant && row.seq as usize == a.seq => {}
            Some(row) => verdict.wrong_rows.push(format!("{}: row ({}, {}) for ({}, {})", a.execution_id, row.tenant, row.seq, a.tenant, a.seq)),
            None => verdict.lost_rows.push(format!("{} (seq {})", a.execution_id, a.seq)),
        }
    }
    verdict.unexpected_executions.extend(executions.keys().filter(|id| !told.contains_key(id)).map(Uuid::to_string));
    verdict.wrong_rows.extend(rows.keys().filter(|id| !told.contains_key(id)).map(|id| format!("{id}: no such execution")));
    verdict.rewritten_rows = rows.values().filter(|r| r.writes > 1).count();
    let rewritten: Vec<(&Uuid, &Row)> = rows.iter().filter(|(_, r)| r.writes > 1).collect();
    verdict.rewritten = describe_rewritten(cluster, &rewritten).await?;
    Ok(verdict)
}

/// Each rewritten row's execution: tenant, id, crashes, claimed by, and
/// the attempt its `store` step ended on.
async fn describe_rewritten(cluster: &FaultCluster, rewritten: &[(&Uuid, &Row)]) -> Result<Vec<String>, FaultError> {
    let db = cluster.postgres().connect("tessera").await?;
    let mut described = Vec::new();
    for (id, row) in rewritten {
        let sql = format!(
            "SELECT e.crashes, e.claimed_by::text, (SELECT s.attempt FROM \"{0}\".execution_steps s \
             WHERE s.execution_id = e.id AND s.path = 'store') FROM \"{0}\".executions e WHERE e.id = $1",
            schema(&row.tenant)
        );
        let text = match db.query_opt(&sql, &[id]).await? {
            Some(r) => format!(
                "{} {id} (crashes {}, claimed by {}, store attempt {})",
                row.tenant,
                r.get::<_, i32>(0),
                r.get::<_, Option<String>>(1).unwrap_or_default(),
                r.get::<_, Option<i32>>(2).map_or("none".to_string(), |a| a.to_string()),
            ),
            None => format!("{} {id} (no execution)", row.tenant),
        };
        described.push(text);
    }
    Ok(described)
}

async fn read_executions(cluster: &FaultCluster, workload: &Workload) -> Result<HashMap<Uuid, Stored>, FaultError> {
    let db = cluster.postgres().connect("tessera").await?;
    let rows = db.query(&all_executions(workload), &[]).await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(1), Stored { tenant: r.get(0), state: r.get(2), code: r.get(3), key: r.get(4) }))
        .collect())
}

async fn read_rows(cluster: &FaultCluster) -> Result<HashMap<Uuid, Row>, FaultError> {
    let db = cluster.target().connect(TARGET_DATABASE).await?;
    let rows = db.query("SELECT execution_id, tenant, seq, writes FROM public.deliveries", &[]).await?;
    Ok(rows.iter().map(|r| (r.get(0), Row { tenant: r.get(1), seq: r.get(2), writes: r.get(3) })).collect())
}
