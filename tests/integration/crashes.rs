//! Poison pills: an execution whose node dies under it, again and again,
//! is failed with `node_crashed` after `runtime.max_execution_crashes`
//! (default 3) instead of being resumed for ever. Real `tessera serve`
//! processes on a private PostgreSQL, killed with SIGKILL while a step is
//! under way.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use reqwest::Method;
use serde_json::{json, Value};
use tessera_tests::fault::{poll, ClusterOptions, FaultCluster};
use tokio::net::TcpListener;

const SLUG: &str = "pill";
const PASSWORD: &str = "poison-pill-owner-password";
const WAIT: Duration = Duration::from_secs(60);

/// A loopback server that accepts connections and never answers: an http
/// step to it stays under way until its node dies. Counts the connections.
async fn silent_server() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    (port, accepted)
}

fn definition(port: u16) -> String {
    format!(
        "apiVersion: tessera.dev/v1
kind: Integration
metadata: {{name: hang}}
spec:
  triggers: [{{manual: {{}}}}]
  timeout: 1h
  steps:
    - name: call
      http: {{url: 'http://127.0.0.1:{port}/never', timeout: 1h}}
---
apiVersion: tessera.dev/v1
kind: Integration
metadata: {{name: quick}}
spec:
  triggers: [{{manual: {{}}}}]
  steps:
    - name: answer
      transform: {{expression: '{{ok: true}}'}}
"
    )
}

async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let answer = request.send().await.expect("the node answers");
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}

/// The tenant with its two integrations, and an owner's token.
async fn set_up(cluster: &FaultCluster, port: u16) -> String {
    let email = format!("owner@{SLUG}.test");
    cluster
        .platform_post(0, "/api/platform/tenants", &json!({"slug": SLUG, "owner_email": email, "owner_password": PASSWORD}))
        .await
        .expect("create the tenant");
    let login = cluster.tenant_request(0, SLUG, Method::POST, "/api/auth/login").json(&json!({"email": email, "password": PASSWORD}));
    let token = send(login).await.1["token"].as_str().expect("a token").to_owned();
    let apply = cluster
        .tenant_request(0, SLUG, Method::POST, "/api/apply")
        .bearer_auth(&token)
        .header("content-type", "application/yaml")
        .body(definition(port));
    let (status, body) = send(apply).await;
    assert_eq!(status, 200, "{body}");
    token
}

async fn execution(cluster: &FaultCluster, token: &str, id: &str) -> Value {
    send(cluster.tenant_request(0, SLUG, Method::GET, &format!("/api/executions/{id}")).bearer_auth(token)).await.1
}

/// Wait until the silent server has seen `count` connections: the step is
/// under way for the `count`-th time.
async fn step_under_way(accepted: &AtomicUsize, count: usize) {
    poll(&format!("attempt {count} of the step under way"), WAIT, Duration::from_millis(50), || async {
        (accepted.load(Ordering::SeqCst) >= count).then_some(())
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn an_execution_whose_node_dies_under_it_three_times_fails_with_node_crashed_and_the_tenant_runs_on() {
    let (port, accepted) = silent_server().await;
    let options = ClusterOptions {
        nodes: 1,
        heartbeat_ms: 250,
        node_timeout_ms: 2000,
        env: vec![("TESSERA_EGRESS__ALLOW_LOOPBACK", "true".into())],
        ..ClusterOptions::default()
    };
    let mut cluster = FaultCluster::start(options).await.expect("start a node");
    let token = set_up(&cluster, port).await;
    let run = cluster.tenant_request(0, SLUG, Method::POST, "/api/integrations/hang/run").bearer_auth(&token);
    let (status, started) = send(run).await;
    assert_eq!(status, 202, "{started}");
    let id = started["id"].as_str().unwrap().to_owned();

    // Three times: the step is under way, and its node dies.
    for crash in 1..=3 {
        step_under_way(&accepted, crash).await;
        cluster.kill(0).await.unwrap();
        cluster.restart(0).await.unwrap();
    }
    let failed = poll("the execution failed", WAIT, Duration::from_millis(200), || async {
        let record = execution(&cluster, &token, &id).await;
        (record["state"] == "failed").then_some(record)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; logs in {}", cluster.log_dir().display()));
    assert_eq!(failed["error"]["code"], "node_crashed", "{failed}");
    assert!(failed["error"]["message"].as_str().unwrap().contains("3 times"), "{failed}");

    // Not resumed a fourth time, and the tenant's other executions run.
    let quick = cluster.tenant_request(0, SLUG, Method::POST, "/api/integrations/quick/run?wait=true").bearer_auth(&token);
    let (status, done) = send(quick).await;
    assert_eq!((status, &done["state"], &done["output"]), (200, &json!("succeeded"), &json!({"ok": true})), "{done}");
    assert_eq!(accepted.load(Ordering::SeqCst), 3, "the failed execution ran again");
    assert!(cluster.running(0));
}

/// Which claims count a crash, for the batched and the single claim alike:
/// only a `running` execution last claimed by another node that is gone
/// (stopped, or silent), and the claim that counts the third fails it.
#[tokio::test]
async fn a_claim_counts_a_crash_only_when_the_last_claimer_is_another_node_that_is_gone() {
    use tessera_runtime::{ExecutionStore, TenantSpec};
    use tessera_server::{
        engine::committer::BatchingStore,
        engine::executions::{Fence, PgExecutionStore},
        starts::Starts,
    };
    use uuid::Uuid;

    let app = tessera_tests::spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    let owner = app.owner_token(&tenant).await;
    app.apply_yaml("acme", &owner, &definition(9)).await;
    let spec = TenantSpec { id: tenant.id.parse().unwrap(), slug: "acme".into(), schema: "t_acme".into(), limits: Default::default() };
    let me = app.state.cluster.node().id;
    let fence = || Fence { node: me, held: app.state.cluster.fences(), crashes: Default::default() };
    let db = app.db().await;
    let cluster = app.state.cluster.node().cluster.clone();
    let (live, stopped, silent, vanished) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    for (id, state, silence) in [(live, "active", 0.0), (stopped, "stopped", 0.0), (silent, "active", 60.0)] {
        db.execute(
            "INSERT INTO platform.nodes (id, cluster_id, address, version, state, heartbeat_at) \
             VALUES ($1, $2, 'elsewhere', 'test', $3, now() - make_interval(secs => $4))",
            &[&id, &cluster, &state, &silence],
        )
        .await
        .unwrap();
    }
    // (state, last claimer, crashes before) → (claimed, crashes after, final state)
    type Case<'a> = (&'a str, Option<Uuid>, i32, bool, i32, &'a str);
    let cases: [Case; 8] = [
        ("queued", None, 0, true, 0, "running"),
        ("running", None, 0, true, 0, "running"),
        ("running", Some(me), 2, true, 2, "running"),
        ("running", Some(live), 2, true, 2, "running"),
        ("running", Some(stopped), 0, true, 1, "running"),
        ("running", Some(silent), 1, true, 2, "running"),
        ("running", Some(vanished), 2, false, 3, "failed"),
        ("running", Some(stopped), 5, false, 6, "failed"),
    ];
    let store = || PgExecutionStore::new(app.state.tenant_db.clone(), fence(), Starts::new(app.state.tenant_db.clone(), app.state.limits.clone()), Default::default());
    let stores: [Box<dyn ExecutionStore>; 2] = [Box::new(BatchingStore::start(store(), app.state.metrics.clone())), Box::new(store())];
    for store in &stores {
        for (state, claimer, before, claimed, after, end) in cases {
            let id = Uuid::now_v7();
            db.execute(
                "INSERT INTO t_acme.executions (id, integration, version, trigger, state, claimed_by, crashes) \
                 VALUES ($1, 'quick', 1, '{}', $2, $3, $4)",
                &[&id, &state, &claimer, &before],
            )
            .await
            .unwrap();
            let claim = store.claim(&spec, id).await.unwrap();
            let row = db.query_one("SELECT state, crashes, claimed_by, error FROM t_acme.executions WHERE id = $1", &[&id]).await.unwrap();
            let case = format!("{state} claimed by {claimer:?} after {before} crashes");
            assert_eq!(claim.is_some(), claimed, "{case}");
            assert_eq!((row.get::<_, i32>(1), row.get::<_, &str>(0)), (after, end), "{case}");
            assert_eq!(row.get::<_, Option<Uuid>>(2), Some(me), "{case}");
            if end == "failed" {
                let error: Value = row.get(3);
                assert_eq!(error["code"], "node_crashed", "{case}: {error}");
            }
        }
    }
}
