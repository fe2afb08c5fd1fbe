//! The workload of the fault tests and the driver that sends it.
//!
//! Every tenant gets the same integration, `deliver`: a webhook (no auth)
//! whose execution shapes the body, naps (so that executions are in flight
//! when a fault strikes), and writes one row to the `deliveries` table of
//! a target database through an `sql` step, keyed by the execution's id:
//!
//! ```sql
//! INSERT … ON CONFLICT (execution_id) DO UPDATE SET writes = writes + 1
//! ```
//!
//! A step that runs again (at least once, after a failover) never adds a
//! second row, and `writes` counts how often the side effect happened.
//!
//! The driver posts webhook `seq` to tenant `seq % tenants` on node
//! `seq % nodes`, with `Idempotency-Key: load-<seq>`. A request that finds
//! its node dead, or answering 5xx, is sent again with the same key to the
//! next node, as a sender would, until it is accepted or its deadline
//! passes; so each `seq` is one execution, whatever the faults.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use futures::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::{task::JoinHandle, time::Instant};
use uuid::Uuid;

use super::{cluster::expect_json, poll, FaultCluster, FaultError};
use crate::BASE_DOMAIN;

/// The database the `sql` steps write to, on the cluster's PostgreSQL.
pub const TARGET_DATABASE: &str = "fault_target";
const OWNER_PASSWORD: &str = "fault-tenant-owner-password";
/// Tenants set up at once.
const SETUP_PARALLELISM: usize = 4;

/// The tenants of a fault test, each with the `deliver` integration.
#[derive(Debug, Clone)]
pub struct Workload {
    pub tenants: Vec<String>,
}

impl Workload {
    /// Create the target table, `tenants` tenants (through the platform
    /// API, spread over the nodes) and apply `deliver` in each. `nap` is
    /// how long each execution sleeps before its write.
    pub async fn install(cluster: &FaultCluster, tenants: usize, nap: Duration) -> Result<Self, FaultError> {
        create_target(cluster).await?;
        let slugs: Vec<String> = (0..tenants).map(|i| format!("fault-{i:02}")).collect();
        let nodes = cluster.ports().len();
        let results: Vec<Result<(), FaultError>> = futures::stream::iter(slugs.iter().enumerate())
            .map(|(i, slug)| set_up_tenant(cluster, i % nodes, slug, nap))
            .buffer_unordered(SETUP_PARALLELISM)
            .collect()
            .await;
        results.into_iter().collect::<Result<(), _>>()?;
        Ok(Self { tenants: slugs })
    }

    /// Start sending `drive.executions` webhooks in the background.
    pub fn drive(&self, cluster: &FaultCluster, drive: Drive) -> Load {
        let progress = Arc::new(Progress::default());
        let sender = Sender { http: cluster.http.clone(), ports: cluster.ports().to_vec(), tenants: self.tenants.clone(), drive, progress: progress.clone() };
        Load { progress, task: tokio::spawn(sender.run()) }
    }
}

async fn create_target(cluster: &FaultCluster) -> Result<(), FaultError> {
    let pg = cluster.target();
    pg.create_database(TARGET_DATABASE).await?;
    pg.connect(TARGET_DATABASE)
        .await?
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS public.deliveries (
                 execution_id uuid PRIMARY KEY,
                 tenant text NOT NULL,
                 seq integer NOT NULL,
                 writes integer NOT NULL DEFAULT 1,
                 first_written_at timestamptz NOT NULL DEFAULT clock_timestamp()
             )",
        )
        .await?;
    Ok(())
}

/// The connection to the target database and the `deliver` integration.
fn definition(target_url: &str, slug: &str, nap: Duration) -> String {
    let nap = format!("{}ms", nap.as_millis());
    format!(
        r#"apiVersion: tessera.dev/v1
kind: Connection
metadata:
  name: target
spec:
  postgres:
    url: {target_url}
---
apiVersion: tessera.dev/v1
kind: Integration
metadata:
  name: deliver
spec:
  triggers:
    - webhook:
        auth: none
  steps:
    - name: shape
      transform:
        expression: "{{seq: .trigger.body.seq}}"
    - name: nap
      delay:
        duration: {nap}
    - name: store
      sql:
        connection: target
        statement: >-
          INSERT INTO public.deliveries (execution_id, tenant, seq) VALUES ($1::uuid, $2, $3)
          ON CONFLICT (execution_id) DO UPDATE SET writes = deliveries.writes + 1
        params: [.execution.id, '"{slug}"', .steps.shape.seq]
      retry:
        attempts: 20
        backoff:
          initial: 200ms
          max: 2s
    - name: done
      transform:
        expression: .steps.store.row_count
"#
    )
}

async fn set_up_tenant(cluster: &FaultCluster, node: usize, slug: &str, nap: Duration) -> Result<(), FaultError> {
    let email = format!("owner@{slug}.test");
    let body = json!({"slug": slug, "owner_email": email, "owner_password": OWNER_PASSWORD});
    cluster.platform_post(node, "/api/platform/tenants", &body).await?;
    let login = json!({"email": email, "password": OWNER_PASSWORD});
    let answer = expect_json("tenant login", cluster.tenant_request(node, slug, Method::POST, "/api/auth/login").json(&login)).await?;
    let token = answer["token"].as_str().ok_or_else(|| FaultError::Missing(format!("no token for {slug}")))?;
    let yaml = definition(&cluster.target().url(TARGET_DATABASE), slug, nap);
    let apply = cluster
        .tenant_request(node, slug, Method::POST, "/api/apply")
        .bearer_auth(token)
        .header("content-type", "application/yaml")
        .body(yaml);
    expect_json(&format!("apply in {slug}"), apply).await?;
    Ok(())
}

/// How to send the load.
#[derive(Debug, Clone)]
pub struct Drive {
    pub executions: usize,
    /// Webhooks started per second at most; `None`: as fast as they are
    /// accepted.
    pub per_second: Option<u32>,
    /// Requests open at once.
    pub in_flight: usize,
    /// How long one webhook is retried before the driver gives up on it.
    pub give_up_after: Duration,
}

impl Drive {
    /// `executions` webhooks, as fast as the nodes take them.
    pub fn flat_out(executions: usize) -> Self {
        Self { executions, per_second: None, in_flight: 32, give_up_after: Duration::from_secs(90) }
    }

    /// `executions` webhooks at `per_second`, with enough requests open
    /// at once to keep that pace while the nodes answer slowly.
    pub fn paced(executions: usize, per_second: u32) -> Self {
        Self { per_second: Some(per_second), in_flight: 128, ..Self::flat_out(executions) }
    }
}

/// A webhook the cluster accepted.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub seq: usize,
    pub tenant: String,
    pub execution_id: Uuid,
    /// Requests it took (1: accepted at once).
    pub attempts: u32,
    pub first_sent: std::time::Instant,
    pub accepted_at: std::time::Instant,
}

/// What the driver has done so far.
#[derive(Debug, Default)]
pub struct Progress {
    accepted: AtomicUsize,
    /// Requests that failed and were sent again.
    failed_attempts: AtomicUsize,
    /// Why the latest of them failed.
    last_refusal: std::sync::Mutex<String>,
}

impl Progress {
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }

    pub fn failed_attempts(&self) -> usize {
        self.failed_attempts.load(Ordering::Relaxed)
    }

    pub fn last_refusal(&self) -> String {
        self.last_refusal.lock().expect("refusal lock").clone()
    }
}

/// A load being sent.
pub struct Load {
    progress: Arc<Progress>,
    task: JoinHandle<Result<Vec<Accepted>, FaultError>>,
}

impl Load {
    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// Wait until at least `count` webhooks were accepted.
    pub async fn accepted(&self, count: usize, within: Duration) -> Result<(), FaultError> {
        let progress = self.progress.clone();
        poll(&format!("{count} webhooks accepted"), within, Duration::from_millis(20), || {
            let done = progress.accepted() >= count;
            async move { done.then_some(()) }
        })
        .await
    }

    /// Wait until every webhook was accepted (or given up on).
    pub async fn finish(self, within: Duration) -> Result<Vec<Accepted>, FaultError> {
        let task = self.task;
        let abort = task.abort_handle();
        match tokio::time::timeout(within, task).await {
            Ok(joined) => joined.map_err(|e| FaultError::Missing(format!("the load driver stopped: {e}")))?,
            Err(_) => {
                abort.abort();
                Err(FaultError::deadline("sending the load", within))
            }
        }
    }
}

/// The driver's task.
struct Sender {
    http: reqwest::Client,
    ports: Vec<u16>,
    tenants: Vec<String>,
    drive: Drive,
    progress: Arc<Progress>,
}

/// Why one request was not accepted.
enum Refusal {
    /// Worth sending again: no answer, or a 5xx.
    Transient(String),
    /// A 4xx: sending it again would change nothing.
    Final(String),
}

impl Sender {
    async fn run(self) -> Result<Vec<Accepted>, FaultError> {
        let start = Instant::now();
        let pace = self.drive.per_second.map(|rate| Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
        let me = &self;
        let results: Vec<Result<Accepted, FaultError>> = futures::stream::iter(0..self.drive.executions)
            .map(|seq| async move {
                if let Some(pace) = pace {
                    tokio::time::sleep_until(start + pace * seq as u32).await;
                }
                me.deliver(seq).await
            })
            .buffer_unordered(self.drive.in_flight)
            .collect()
            .await;
        results.into_iter().collect()
    }

    /// Send webhook `seq` until a node accepts it.
    async fn deliver(&self, seq: usize) -> Result<Accepted, FaultError> {
        let tenant = &self.tenants[seq % self.tenants.len()];
        let first_sent = std::time::Instant::now();
        let until = first_sent + self.drive.give_up_after;
        let mut attempts = 0u32;
        loop {
            let node = (seq + attempts as usize) % self.ports.len();
            attempts += 1;
            match self.post(node, tenant, seq).await {
                Ok(execution_id) => {
                    self.progress.accepted.fetch_add(1, Ordering::Relaxed);
                    let accepted_at = std::time::Instant::now();
                    return Ok(Accepted { seq, tenant: tenant.clone(), execution_id, attempts, first_sent, accepted_at });
                }
                Err(Refusal::Transient(why)) if std::time::Instant::now() < until => {
                    self.progress.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    *self.progress.last_refusal.lock().expect("refusal lock") = why;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(Refusal::Transient(why) | Refusal::Final(why)) => {
                    return Err(FaultError::Missing(format!("webhook {seq} for {tenant} not accepted after {attempts} attempts: {why}")));
                }
            }
        }
    }

    async fn post(&self, node: usize, tenant: &str, seq: usize) -> Result<Uuid, Refusal> {
        let port = self.ports[node];
        let response = self
            .http
            .post(format!("http://127.0.0.1:{port}/hooks/deliver"))
            .header("host", format!("{tenant}.{BASE_DOMAIN}:{port}"))
            .header("idempotency-key", format!("load-{seq}"))
            .json(&json!({"seq": seq}))
            .send()
            .await
            .map_err(|e| Refusal::Transient(format!("node {node}: {e}")))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        // A node too busy to read the request in time (408) or shedding load
        // (429) refused nothing for good: the idempotency key makes a resend safe.
        let busy = status == reqwest::StatusCode::REQUEST_TIMEOUT || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
        if status.is_server_error() || busy {
            return Err(Refusal::Transient(format!("node {node}: {status} {body}")));
        }
        if !status.is_success() {
            return Err(Refusal::Final(format!("node {node}: {status} {body}")));
        }
        body["id"]
            .as_str()
            .and_then(|id| Uuid::parse_str(id).ok())
            .ok_or_else(|| Refusal::Final(format!("node {node}: {status} without an execution id: {body}")))
    }
}
