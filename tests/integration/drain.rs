//! A graceful drain hands a node's tenants over without failing or
//! interrupting an execution: the node starts nothing new, lets its running
//! executions finish (within `cluster.drain_timeout_ms`), then releases
//! their tenants; work that arrives meanwhile waits in PostgreSQL for the
//! next owner. The same happens when a `tessera serve` process gets SIGTERM,
//! before it exits. Step side effects land in a table of their own, so a
//! step that ran twice would show.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde_json::json;
use tessera_tests::{connect, eventually, target_database, status_and_json, TestApp};
use uuid::Uuid;

use crate::cluster::node_process;

/// An integration whose steps record their side effect, with a nap between.
fn slow_integration(effects_url: &str, nap: &str) -> String {
    let sql = |step: &str| {
        json!({"name": step, "sql": {"connection": "effects", "statement": "INSERT INTO effects (run, step) VALUES ($1, $2)",
            "params": [".trigger.body.run", format!("\"{step}\"")]}})
    };
    let integration = json!({"apiVersion": "tessera.dev/v1", "kind": "Integration", "metadata": {"name": "slow"}, "spec": {
        "triggers": [{"manual": {}}],
        "steps": [sql("before"), {"name": "nap", "delay": {"duration": nap}}, sql("after")]}});
    let connection = json!({"apiVersion": "tessera.dev/v1", "kind": "Connection", "metadata": {"name": "effects"},
        "spec": {"postgres": {"url": effects_url}}});
    format!("{connection}\n---\n{integration}")
}

/// A database for the side effects, with the table the steps write.
async fn effects_database() -> (String, tokio_postgres::Client) {
    let (_, url) = target_database().await;
    let db = connect(&url).await;
    db.batch_execute("CREATE TABLE effects (run text NOT NULL, step text NOT NULL)").await.unwrap();
    (url, db)
}

/// How many times each step of run `run` had its side effect.
async fn effects(db: &tokio_postgres::Client, run: &str) -> Vec<(String, i64)> {
    let sql = "SELECT step, count(*) FROM effects WHERE run = $1 GROUP BY step ORDER BY step";
    db.query(sql, &[&run]).await.unwrap().iter().map(|r| (r.get(0), r.get(1))).collect()
}

fn once_each() -> Vec<(String, i64)> {
    vec![("after".into(), 1), ("before".into(), 1)]
}

/// Start `slow` on the node listening on `port` for run key `run`; its id.
async fn start_slow(app: &TestApp, port: u16, token: &str, run: &str) -> String {
    let request = app.tenant_request_on(port, Method::POST, "acme", "/api/integrations/slow/run").bearer_auth(token).json(&json!({"run": run}));
    let (status, queued) = status_and_json(request).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    queued["id"].as_str().unwrap().to_string()
}

/// One column of execution `id` as text.
async fn execution_field(app: &TestApp, id: &str, column: &str) -> Option<String> {
    let sql = format!("SELECT {column}::text FROM t_acme.executions WHERE id = $1");
    app.db().await.query_opt(&sql, &[&Uuid::parse_str(id).unwrap()]).await.unwrap().and_then(|r| r.get(0))
}

/// A time column of execution `id`.
async fn execution_time(app: &TestApp, id: &str, column: &str) -> Option<DateTime<Utc>> {
    let sql = format!("SELECT {column} FROM t_acme.executions WHERE id = $1");
    app.db().await.query_opt(&sql, &[&Uuid::parse_str(id).unwrap()]).await.unwrap().and_then(|r| r.get(0))
}

/// The `nap` step's record: (attempt, started_at).
async fn nap_of(app: &TestApp, id: &str) -> Option<(i32, DateTime<Utc>)> {
    let sql = "SELECT attempt, started_at FROM t_acme.execution_steps WHERE execution_id = $1 AND path = 'nap' AND state = 'succeeded'";
    app.db().await.query_opt(sql, &[&Uuid::parse_str(id).unwrap()]).await.unwrap().map(|r| (r.get(0), r.get(1)))
}

async fn step_done(app: &TestApp, id: &str, path: &str) -> bool {
    let sql = "SELECT 1 FROM t_acme.execution_steps WHERE execution_id = $1 AND path = $2 AND state = 'succeeded'";
    app.db().await.query_opt(sql, &[&Uuid::parse_str(id).unwrap(), &path]).await.unwrap().is_some()
}

/// The tenant's lease: (node, acquired_at), `None` while no node holds it.
async fn lease(app: &TestApp) -> Option<(Uuid, DateTime<Utc>)> {
    let sql = "SELECT node_id, acquired_at FROM platform.tenant_leases l JOIN platform.tenants t ON t.id = l.tenant_id \
               WHERE t.slug = 'acme' AND l.node_id IS NOT NULL AND l.expires_at > now()";
    app.db().await.query_opt(sql, &[]).await.unwrap().map(|r| (r.get(0), r.get(1)))
}

async fn db_now(app: &TestApp) -> DateTime<Utc> {
    app.db().await.query_one("SELECT now()", &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn a_drained_node_finishes_its_running_execution_before_its_tenant_moves() {
    // Leases that outlive a stall of this busy test process: the tenant must
    // move by the drain, never because a lease expired (that is failover,
    // tested in `cluster`).
    let app = tessera_tests::spawn_app_with(|c| c.cluster.node_timeout_ms = 10_000).await;
    let b = app.add_node().await;
    let db = app.db().await;
    let both = eventually(Duration::from_secs(20), || async {
        let sql = "SELECT count(*) FROM platform.nodes WHERE state = 'active' AND heartbeat_at > now() - interval '2 seconds'";
        db.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) == 2
    })
    .await;
    assert!(both, "the second node never joined");
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let (effects_url, effects_db) = effects_database().await;
    app.apply_yaml("acme", &owner, &slow_integration(&effects_url, "3s")).await;
    assert!(eventually(Duration::from_secs(20), || async { lease(&app).await.is_some() }).await, "no node took the tenant");
    let (draining, _) = lease(&app).await.unwrap();
    let (stays, stays_port) = if draining == app.state.cluster.node().id { (&b.state, b.port) } else { (&app.state, app.port) };

    let id = start_slow(&app, stays_port, &owner, "in-flight").await;
    assert!(eventually(Duration::from_secs(20), || async { step_done(&app, &id, "before").await }).await, "the execution never started");
    let drain_at = db_now(&app).await;
    let token = app.platform_token().await;
    let drain = app
        .http
        .post(format!("http://127.0.0.1:{stays_port}/api/platform/nodes/{draining}/drain"))
        .header("host", format!("localhost:{stays_port}"))
        .bearer_auth(&token);
    let (status, body) = status_and_json(drain).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    // The drained node learns it at its next heartbeat.
    let draining_port = if draining == app.state.cluster.node().id { app.port } else { b.port };
    let began = eventually(Duration::from_secs(10), || async {
        let node = app.http.get(format!("http://127.0.0.1:{draining_port}/api/platform/node")).header("host", format!("localhost:{draining_port}"));
        status_and_json(node.bearer_auth(&token)).await.1["draining"] == true
    })
    .await;
    assert!(began, "the drained node never began its drain");
    // Work that arrives during the drain is accepted and waits for the next owner.
    let arrived = start_slow(&app, stays_port, &owner, "arrived").await;

    let moved = eventually(Duration::from_secs(30), || async { lease(&app).await.is_some_and(|(node, _)| node == stays.cluster.node().id) }).await;
    assert!(moved, "the tenant never moved off the drained node");
    let (_, moved_at) = lease(&app).await.unwrap();
    assert_eq!(execution_field(&app, &id, "state").await.as_deref(), Some("succeeded"), "the in-flight execution finished before the handover");
    let finished_at = execution_time(&app, &id, "finished_at").await.unwrap();
    assert!(finished_at <= moved_at, "it finished ({finished_at}) under the drained node's lease, before the move ({moved_at})");
    let (attempt, nap_started) = nap_of(&app, &id).await.unwrap();
    assert!(attempt == 1 && nap_started < drain_at, "the nap ran once, from before the drain ({nap_started} vs {drain_at})");
    assert_eq!(effects(&effects_db, "in-flight").await, once_each(), "each step's side effect happened once");

    let done = eventually(Duration::from_secs(30), || async { execution_field(&app, &arrived, "state").await.as_deref() == Some("succeeded") }).await;
    assert!(done, "the work accepted during the drain was lost");
    let started_at = execution_time(&app, &arrived, "started_at").await.unwrap();
    assert!(started_at >= moved_at, "it started on the new owner, not on the draining node");
    assert_eq!(effects(&effects_db, "arrived").await, once_each());
    let drained = if draining == app.state.cluster.node().id { &app.state } else { &b.state };
    assert!(drained.supervisor.status().is_empty(), "the drained node still runs workers");
}

#[tokio::test]
async fn a_drain_that_times_out_hands_the_running_execution_over_to_resume_elsewhere() {
    let app = tessera_tests::spawn_app_with(|c| c.cluster.drain_timeout_ms = 500).await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let (effects_url, effects_db) = effects_database().await;
    app.apply_yaml("acme", &owner, &slow_integration(&effects_url, "4s")).await;
    let id = start_slow(&app, app.port, &owner, "long").await;
    assert!(eventually(Duration::from_secs(20), || async { step_done(&app, &id, "before").await }).await, "the execution never started");

    // The only node stops: its drain gives up after half a second, and the next node resumes the execution.
    app.stop().await;
    assert_eq!(execution_field(&app, &id, "state").await.as_deref(), Some("running"), "the nap outlasted the drain");
    let next = app.add_node().await;
    let done = eventually(Duration::from_secs(30), || async { execution_field(&app, &id, "state").await.as_deref() == Some("succeeded") }).await;
    assert!(done, "the handed-over execution never finished on the next node");
    assert_eq!(effects(&effects_db, "long").await, once_each(), "the step finished before the handover did not run again");
    assert!(next.state.supervisor.status().iter().any(|w| w.tenant == "acme"));
}

#[tokio::test]
async fn sigterm_lets_a_node_process_finish_its_executions_before_it_exits() {
    let app = tessera_tests::spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let (effects_url, effects_db) = effects_database().await;
    app.apply_yaml("acme", &owner, &slow_integration(&effects_url, "3s")).await;

    // The process node becomes the tenant's only owner.
    let (mut child, port) = node_process(&app);
    assert!(eventually(Duration::from_secs(30), || async { app.http.get(format!("http://127.0.0.1:{port}/healthz")).send().await.is_ok() }).await);
    app.stop().await;
    let process_owns = || async {
        let sql = "SELECT n.address FROM platform.tenant_leases l JOIN platform.nodes n ON n.id = l.node_id WHERE l.expires_at > now()";
        app.db().await.query_opt(sql, &[]).await.unwrap().is_some_and(|r| r.get::<_, String>(0).ends_with(&format!(":{port}")))
    };
    assert!(eventually(Duration::from_secs(15), process_owns).await, "the process node never took the tenant");

    let id = start_slow(&app, port, &owner, "sigterm").await;
    assert!(eventually(Duration::from_secs(20), || async { step_done(&app, &id, "before").await }).await, "the execution never started");
    let signalled_at = db_now(&app).await;
    let pid = child.id().expect("a running process").to_string();
    let kill = tokio::process::Command::new("kill").args(["-TERM", &pid]).status().await.unwrap();
    assert!(kill.success());
    let exited = tokio::time::timeout(Duration::from_secs(60), child.wait()).await.expect("the node never exited").unwrap();
    assert!(exited.success(), "the node exited with {exited}");

    // No other node ran: the process finished the execution before it exited.
    assert_eq!(execution_field(&app, &id, "state").await.as_deref(), Some("succeeded"));
    let (attempt, nap_started) = nap_of(&app, &id).await.unwrap();
    assert!(attempt == 1 && nap_started < signalled_at, "the nap ran once, from before the signal");
    assert_eq!(effects(&effects_db, "sigterm").await, once_each());
    assert!(lease(&app).await.is_none(), "the stopped node released its lease");
    let state: String = app.db().await.query_one("SELECT state FROM platform.nodes WHERE address LIKE $1", &[&format!("%:{port}")]).await.unwrap().get(0);
    assert_eq!(state, "stopped");
}

/// The lease holder of tenant `slug` and since when.
async fn lease_of(app: &TestApp, slug: &str) -> Option<(Uuid, DateTime<Utc>)> {
    let sql = "SELECT node_id, acquired_at FROM platform.tenant_leases l JOIN platform.tenants t ON t.id = l.tenant_id \
               WHERE t.slug = $1 AND l.node_id IS NOT NULL AND l.expires_at > now()";
    app.db().await.query_opt(sql, &[&slug]).await.unwrap().map(|r| (r.get(0), r.get(1)))
}

#[tokio::test]
async fn a_tenant_moving_to_a_node_that_joins_finishes_its_running_execution_first() {
    // Leases that outlive a stall of this busy test process: tenants move
    // by placement, never because a lease expired.
    let app = tessera_tests::spawn_app_with(|c| c.cluster.node_timeout_ms = 10_000).await;
    let (effects_url, effects_db) = effects_database().await;
    let mut runs = Vec::new();
    for slug in ["acme", "globex"] {
        let tenant = app.create_tenant(slug).await;
        let owner = app.owner_token(&tenant).await;
        app.apply_yaml(slug, &owner, &slow_integration(&effects_url, "3s")).await;
        let request = app.tenant_request(Method::POST, slug, "/api/integrations/slow/run").bearer_auth(&owner).json(&json!({"run": slug}));
        let (status, queued) = status_and_json(request).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
        runs.push((slug, Uuid::parse_str(queued["id"].as_str().unwrap()).unwrap()));
    }
    let step_done = |slug: &'static str, id: Uuid| {
        let app = &app;
        async move {
            let sql = format!("SELECT 1 FROM t_{slug}.execution_steps WHERE execution_id = $1 AND path = 'before' AND state = 'succeeded'");
            app.db().await.query_opt(&sql, &[&id]).await.unwrap().is_some()
        }
    };
    for (slug, id) in &runs {
        assert!(eventually(Duration::from_secs(20), || step_done(slug, *id)).await, "{slug}'s execution never started");
    }

    // A second node joins: placement (bounded loads) gives it one of the
    // two tenants, whose execution is in its nap on the first node.
    let joined_at = db_now(&app).await;
    let b = app.add_node().await;
    let b_id = b.state.cluster.node().id;
    let mut moved = None;
    for _ in 0..300 {
        for (slug, _) in &runs {
            if lease_of(&app, slug).await.is_some_and(|(node, _)| node == b_id) {
                moved = Some(*slug);
            }
        }
        if moved.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let moved = moved.expect("the joining node never took a tenant");
    let (_, moved_at) = lease_of(&app, moved).await.unwrap();
    let (_, id) = *runs.iter().find(|(slug, _)| *slug == moved).unwrap();
    let row = app
        .db()
        .await
        .query_one(&format!("SELECT state, finished_at FROM t_{moved}.executions WHERE id = $1"), &[&id])
        .await
        .unwrap();
    let (state, finished_at): (String, Option<DateTime<Utc>>) = (row.get(0), row.get(1));
    assert_eq!(state, "succeeded", "{moved}'s execution finished on the first node before its tenant moved");
    assert!(finished_at.is_some_and(|f| f <= moved_at), "finished {finished_at:?}, moved {moved_at}");
    assert!(moved_at > joined_at, "moved after the join");
    for (slug, id) in &runs {
        let done = eventually(Duration::from_secs(30), || async {
            let sql = format!("SELECT state FROM t_{slug}.executions WHERE id = $1");
            app.db().await.query_one(&sql, &[id]).await.unwrap().get::<_, String>(0) == "succeeded"
        })
        .await;
        assert!(done, "{slug}'s execution never finished");
        assert_eq!(effects(&effects_db, slug).await, once_each(), "each step of {slug}'s run had its side effect once");
    }
    b.stop().await;
}
