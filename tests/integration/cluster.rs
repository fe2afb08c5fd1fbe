//! Several nodes on one database behave as one cluster: every active
//! tenant's worker runs on exactly one live node, tenants spread evenly,
//! and when a node stops, drains or dies its tenants move to the others
//! within the node timeout. The status API shows the true picture.

use std::{
    collections::HashSet,
    process::Stdio,
    time::{Duration, Instant},
};

use reqwest::Method;
use serde_json::Value;
use tessera_tests::{eventually, holders, status_and_json, TestApp};
use uuid::Uuid;

use crate::cli::tessera_bin;

/// The cluster status as a platform owner sees it through `node`'s port.
fn held_count(status: &Value) -> usize {
    holders(status).values().map(Vec::len).sum()
}

/// The tenants a node runs (holds the leases of), by slug.
fn workers(state: &tessera_server::state::AppState) -> HashSet<String> {
    state.supervisor.held().into_iter().map(|t| t.tenant).collect()
}

async fn create_tenants(app: &TestApp, count: usize) -> Vec<String> {
    let mut slugs = Vec::new();
    for i in 0..count {
        let slug = format!("tenant-{i:02}");
        app.create_tenant(&slug).await;
        slugs.push(slug);
    }
    slugs
}

#[tokio::test]
async fn three_nodes_share_the_tenants_evenly_and_each_worker_runs_once() {
    let app = tessera_tests::spawn_app().await;
    let token = app.platform_token().await;
    let (b, c) = (app.add_node().await, app.add_node().await);
    let slugs = create_tenants(&app, 30).await;

    let settled = eventually(Duration::from_secs(20), || async {
        let status = app.cluster_status(&token).await;
        let by_node = holders(&status);
        held_count(&status) == 30 && by_node.len() == 3 && by_node.values().all(|t| (8..=12).contains(&t.len()))
    })
    .await;
    let status = app.cluster_status(&token).await;
    assert!(settled, "tenants did not settle evenly on three nodes: {status}");
    assert_eq!(status["nodes"].as_array().unwrap().iter().filter(|n| n["alive"] == true).count(), 3);

    // What each node runs is what the leases say, and no worker runs twice.
    let runs = [workers(&app.state), workers(&b.state), workers(&c.state)];
    let all: Vec<&String> = runs.iter().flatten().collect();
    assert_eq!(all.len(), 30, "every tenant's worker runs exactly once: {runs:?}");
    assert_eq!(all.into_iter().cloned().collect::<HashSet<_>>(), slugs.into_iter().collect());
    let by_node = holders(&status);
    for (node, ran) in [(&app.state, &runs[0]), (&b.state, &runs[1]), (&c.state, &runs[2])] {
        let held: HashSet<String> = by_node[&node.cluster.node().id.to_string()].iter().cloned().collect();
        assert_eq!(&held, ran, "a node runs exactly the tenants it holds");
    }
}

#[tokio::test]
async fn a_stopped_or_drained_node_hands_its_tenants_to_the_others() {
    let app = tessera_tests::spawn_app().await;
    let token = app.platform_token().await;
    let (b, c) = (app.add_node().await, app.add_node().await);
    create_tenants(&app, 12).await;
    assert!(eventually(Duration::from_secs(20), || async { holders(&app.cluster_status(&token).await).len() == 3 }).await);

    b.stop().await;
    let b_id = b.state.cluster.node().id.to_string();
    let moved = eventually(Duration::from_secs(10), || async {
        let status = app.cluster_status(&token).await;
        held_count(&status) == 12 && !holders(&status).contains_key(&b_id)
    })
    .await;
    assert!(moved, "the stopped node's tenants were not taken over: {}", app.cluster_status(&token).await);
    assert!(workers(&b.state).is_empty(), "a stopped node runs no worker");

    let c_id = c.state.cluster.node().id;
    let (status, _) =
        status_and_json(app.platform_request(Method::POST, &format!("/api/platform/nodes/{c_id}/drain")).bearer_auth(&token)).await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED);
    let drained = eventually(Duration::from_secs(10), || async {
        let status = app.cluster_status(&token).await;
        held_count(&status) == 12 && holders(&status).keys().all(|n| *n == app.state.cluster.node().id.to_string())
    })
    .await;
    assert!(drained, "the drained node kept tenants: {}", app.cluster_status(&token).await);
    assert!(eventually(Duration::from_secs(5), || async { workers(&c.state).is_empty() }).await);
    assert_eq!(workers(&app.state).len(), 12);

    let unknown = Uuid::now_v7();
    let (status, body) =
        status_and_json(app.platform_request(Method::POST, &format!("/api/platform/nodes/{unknown}/drain")).bearer_auth(&token)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (reqwest::StatusCode::NOT_FOUND, Some("node_not_found")));
    let (status, body) = status_and_json(app.platform_request(Method::POST, "/api/platform/nodes/not-a-node/drain").bearer_auth(&token)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (reqwest::StatusCode::BAD_REQUEST, Some("invalid_node_id")));
}

#[tokio::test]
async fn a_killed_node_loses_its_tenants_to_the_live_nodes_within_the_timeout() {
    let app = tessera_tests::spawn_app().await;
    let token = app.platform_token().await;
    create_tenants(&app, 10).await;
    let (mut child, _port) = node_process(&app);
    let shared = eventually(Duration::from_secs(30), || async { holders(&app.cluster_status(&token).await).len() == 2 }).await;
    assert!(shared, "the process node never took tenants: {}", app.cluster_status(&token).await);
    let ours = app.state.cluster.node().id.to_string();
    let theirs = holders(&app.cluster_status(&token).await).into_keys().find(|n| *n != ours).unwrap();

    child.start_kill().expect("kill -9"); // SIGKILL: no goodbye, its leases simply stop being renewed
    child.wait().await.unwrap();
    let killed_at = Instant::now();
    let taken = eventually(Duration::from_secs(15), || async {
        let status = app.cluster_status(&token).await;
        held_count(&status) == 10 && holders(&status).keys().all(|n| *n == ours)
    })
    .await;
    let failover = killed_at.elapsed();
    let status = app.cluster_status(&token).await;
    assert!(taken, "the killed node's tenants were not taken over: {status}");
    assert_eq!(workers(&app.state).len(), 10);
    let dead = status["nodes"].as_array().unwrap().iter().find(|n| n["id"] == theirs.as_str()).unwrap();
    assert_eq!(dead["alive"], false, "the status shows the killed node as dead: {dead}");
    eprintln!("failover after kill -9: {failover:?} (node timeout {} ms)", app.config.cluster.node_timeout_ms);

    // The operator's view from the command line agrees.
    let status = tokio::process::Command::new(tessera_bin())
        .args(["status", "--json"])
        .env("TESSERA_DATABASE_URL", &app.database_url)
        .env("TESSERA_CLUSTER__NODE_TIMEOUT_MS", app.config.cluster.node_timeout_ms.to_string())
        .env("TESSERA_CLUSTER__HEARTBEAT_INTERVAL_MS", app.config.cluster.heartbeat_interval_ms.to_string())
        .output()
        .await
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    let nodes = status["nodes"].as_array().unwrap();
    assert!(nodes.iter().any(|n| n["id"] == theirs.as_str() && n["alive"] == false), "{status}");
    assert!(nodes.iter().any(|n| n["id"] == ours.as_str() && n["alive"] == true && n["tenants"] == 10), "{status}");
}

#[tokio::test]
async fn work_and_changes_reach_the_owner_whichever_node_they_land_on() {
    let app = tessera_tests::spawn_app().await;
    let token = app.platform_token().await;
    let b = app.add_node().await;
    let mut tenants = Vec::new();
    for slug in ["north", "south", "east", "west"] {
        tenants.push(app.create_tenant(slug).await);
    }
    assert!(eventually(Duration::from_secs(20), || async { holders(&app.cluster_status(&token).await).len() == 2 }).await);
    let owners = app.cluster_status(&token).await;
    let a_id = app.state.cluster.node().id.to_string();
    let integration = "apiVersion: tessera.dev/v1\nkind: Integration\nmetadata:\n  name: tick\nspec:\n  triggers:\n    - manual: {}\n    - schedule:\n        every: 1s\n  steps:\n    - name: kind\n      transform:\n        expression: .trigger.kind\n";

    for tenant in &tenants {
        let slug = tenant.slug.as_str();
        let lease = owners["leases"].as_array().unwrap().iter().find(|l| l["tenant"] == slug).unwrap();
        // Everything goes through the node that does NOT run the tenant's worker.
        let other = if lease["node"] == a_id.as_str() { b.port } else { app.port };
        let owner = app.owner_token(tenant).await;
        let applied = app.tenant_request_on(other, Method::POST, slug, "/api/apply")
            .bearer_auth(&owner)
            .header("content-type", "application/yaml")
            .body(integration)
            .send()
            .await
            .unwrap();
        assert!(applied.status().is_success(), "{}", applied.text().await.unwrap());
        let (status, run) =
            status_and_json(app.tenant_request_on(other, Method::POST, slug, "/api/integrations/tick/run?wait=true").bearer_auth(&owner)).await;
        assert_eq!((status, &run["output"]), (reqwest::StatusCode::OK, &Value::from("manual")), "{slug}: {run}");
        // The schedule applied through the other node runs on the owner.
        let scheduled = eventually(Duration::from_secs(10), || async {
            let (_, page) = status_and_json(app.tenant_request_on(other, Method::GET, slug, "/api/executions?integration=tick").bearer_auth(&owner)).await;
            page["items"].as_array().is_some_and(|items| items.iter().any(|e| e["output"] == "schedule"))
        })
        .await;
        assert!(scheduled, "{slug}: the schedule never fired on its owner");
    }
}

#[tokio::test]
async fn a_worker_that_lost_its_lease_cannot_write_until_it_takes_the_lease_back() {
    let app = tessera_tests::spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let steps = "    - name: first\n      transform:\n        expression: '1'\n    - name: nap\n      delay:\n        duration: 1s\n    - name: last\n      transform:\n        expression: '.steps.first + 1'\n";
    let integration = format!("apiVersion: tessera.dev/v1\nkind: Integration\nmetadata:\n  name: slow\nspec:\n  triggers:\n    - manual: {{}}\n  steps:\n{steps}");
    app.apply_yaml("acme", &owner, &integration).await;
    let (_, queued) = status_and_json(app.tenant_request(Method::POST, "acme", "/api/integrations/slow/run").bearer_auth(&owner)).await;
    let id = queued["id"].as_str().unwrap().to_string();
    let db = app.db().await;
    let checkpoint = |path: &'static str| {
        let db = &db;
        async move {
            db.query_opt("SELECT finished_at FROM t_acme.execution_steps WHERE path = $1", &[&path])
                .await
                .unwrap()
                .map(|r| r.get::<_, chrono::DateTime<chrono::Utc>>(0))
        }
    };
    assert!(eventually(Duration::from_secs(10), || async { checkpoint("first").await.is_some() }).await);

    // Another node takes the lease over (a new epoch) for three seconds, while `nap` sleeps.
    let intruder = Uuid::now_v7();
    db.execute("INSERT INTO platform.nodes (id, cluster_id, address, version) VALUES ($1, 'local', 'elsewhere', 'x')", &[&intruder])
        .await
        .unwrap();
    let until: chrono::DateTime<chrono::Utc> = db
        .query_one(
            "UPDATE platform.tenant_leases SET node_id = $1, epoch = epoch + 1, expires_at = now() + interval '3 seconds' \
             WHERE tenant_id = $2 RETURNING expires_at",
            &[&intruder, &Uuid::parse_str(&acme.id).unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    db.execute("UPDATE platform.nodes SET heartbeat_at = now() - interval '1 hour' WHERE id = $1", &[&intruder]).await.unwrap();

    // While the other node holds the lease, the old owner's checkpoint is refused.
    let wrote = eventually(Duration::from_millis(2500), || async { checkpoint("nap").await.is_some() }).await;
    assert!(!wrote, "a worker wrote a checkpoint without holding its tenant's lease");
    let state: String = db.query_one("SELECT state FROM t_acme.executions", &[]).await.unwrap().get(0);
    assert_eq!(state, "running");

    // Once that lease expires the node takes it back and the execution resumes from its last checkpoint.
    let path = format!("/api/executions/{id}");
    let done = eventually(Duration::from_secs(15), || async { app.tenant_get("acme", &owner, &path).await.1["state"] == "succeeded" }).await;
    let execution = app.tenant_get("acme", &owner, &path).await.1;
    assert!(done, "{execution}");
    assert_eq!(execution["output"], 2);
    assert!(checkpoint("nap").await.unwrap() > until, "the step ran again under the node's new lease");
}

/// `tessera serve` as a separate process on `app`'s database and keys.
pub(crate) fn node_process(app: &TestApp) -> (tokio::process::Child, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let env = [
        ("TESSERA_DATABASE_URL", app.database_url.clone()),
        ("TESSERA_LISTEN", format!("127.0.0.1:{port}")),
        ("TESSERA_JWT_SECRET", app.config.jwt_secret.clone().unwrap()),
        ("TESSERA_SECRETS__KEY", app.config.secrets.key.clone().unwrap()),
        ("TESSERA_LOG__LEVEL", "error".into()),
        ("TESSERA_CLUSTER__HEARTBEAT_INTERVAL_MS", app.config.cluster.heartbeat_interval_ms.to_string()),
        ("TESSERA_CLUSTER__NODE_TIMEOUT_MS", app.config.cluster.node_timeout_ms.to_string()),
        ("TESSERA_EGRESS__ALLOW_LOOPBACK", app.config.egress.allow_loopback.to_string()),
    ];
    let child = tokio::process::Command::new(tessera_bin())
        .arg("serve")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env_remove("TESSERA_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start a node process");
    (child, port)
}

#[tokio::test]
async fn an_execution_survives_kill_9_of_its_node_without_running_a_finished_step_again() {
    let app = tessera_tests::spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let steps = "    - name: first\n      transform:\n        expression: '.trigger.body.n * 2'\n    - name: nap\n      delay:\n        duration: 3s\n    - name: last\n      transform:\n        expression: '{doubled: .steps.first}'\n";
    let integration = format!("apiVersion: tessera.dev/v1\nkind: Integration\nmetadata:\n  name: slow\nspec:\n  triggers:\n    - manual: {{}}\n  steps:\n{steps}");
    app.apply_yaml("acme", &owner, &integration).await;

    // The process node becomes the tenant's only owner.
    let (mut child, port) = node_process(&app);
    assert!(eventually(Duration::from_secs(30), || async { app.http.get(format!("http://127.0.0.1:{port}/healthz")).send().await.is_ok() }).await);
    app.stop().await;
    let db = app.db().await;
    let owned_by_process = eventually(Duration::from_secs(15), || async {
        let sql = "SELECT n.address FROM platform.tenant_leases l JOIN platform.nodes n ON n.id = l.node_id WHERE l.expires_at > now()";
        db.query_opt(sql, &[]).await.unwrap().is_some_and(|r| r.get::<_, String>(0).ends_with(&format!(":{port}")))
    })
    .await;
    assert!(owned_by_process, "the process node never took the tenant");

    let (status, queued) = status_and_json(
        app.tenant_request_on(port, Method::POST, "acme", "/api/integrations/slow/run").bearer_auth(&owner).json(&serde_json::json!({"n": 21})),
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{queued}");
    let id = queued["id"].as_str().unwrap().to_string();
    let first = || async {
        db.query_opt("SELECT finished_at::text FROM t_acme.execution_steps WHERE path = 'first'", &[])
            .await
            .unwrap()
            .map(|r| r.get::<_, String>(0))
    };
    assert!(eventually(Duration::from_secs(15), || async { first().await.is_some() }).await, "the first step never ran");
    let before = first().await;

    child.start_kill().expect("kill -9");
    child.wait().await.unwrap();
    let next = app.add_node().await;
    let fetch = || async {
        status_and_json(app.tenant_request_on(next.port, Method::GET, "acme", &format!("/api/executions/{id}")).bearer_auth(&owner)).await.1
    };
    let done = eventually(Duration::from_secs(30), || async { fetch().await["state"] == "succeeded" }).await;
    let execution = fetch().await;
    assert!(done, "the execution never finished after the kill: {execution}");
    assert_eq!(execution["output"], serde_json::json!({"doubled": 42}));
    assert_eq!(first().await, before, "the step finished before the kill did not run again");
}

/// A takeover waits for the old owner's writes in flight: while a write
/// holds the tenant's write lock, the expired lease is not taken (its epoch
/// stays); once that write ends, it is.
#[tokio::test]
async fn a_takeover_waits_for_writes_in_flight() {
    let app = tessera_tests::spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let tenant = Uuid::parse_str(&acme.id).unwrap();
    let db = app.db().await;
    let epoch = || {
        let db = &db;
        async move { db.query_one("SELECT epoch FROM platform.tenant_leases WHERE tenant_id = $1", &[&tenant]).await.unwrap().get::<_, i64>(0) }
    };
    assert!(eventually(Duration::from_secs(5), || async { epoch().await >= 1 }).await);
    let before = epoch().await;

    // A write of the (now gone) previous owner is in flight on its own session.
    let (mut writer, connection) = tokio_postgres::connect(&app.database_url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let write = writer.transaction().await.unwrap();
    write.execute(tessera_server::cluster::WRITE_LOCK, &[&tenant]).await.unwrap();
    let gone = Uuid::now_v7();
    db.execute("INSERT INTO platform.nodes (id, cluster_id, address, version) VALUES ($1, 'local', 'elsewhere', 'x')", &[&gone]).await.unwrap();
    db.execute("UPDATE platform.tenant_leases SET node_id = $1, expires_at = now() - interval '1 second' WHERE tenant_id = $2", &[&gone, &tenant])
        .await
        .unwrap();

    // The node's rounds want the expired lease back, but wait for the write.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(epoch().await, before, "a lease changed hands while a write of its old owner was in flight");

    write.commit().await.unwrap();
    assert!(eventually(Duration::from_secs(5), || async { epoch().await == before + 1 }).await, "the lease was not taken once the write ended");
}
