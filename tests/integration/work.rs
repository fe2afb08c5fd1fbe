//! Workers for the tenants with work only (`platform.tenant_work`): a
//! node starts a tenant's worker when work is stored for it, keeps it while
//! it has executions or schedule and queue triggers, and lets it retire
//! idle; nothing stored is forgotten on the way (docs/engine.md).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tessera_server::tenancy::{work, TenantSlug};
use tessera_tests::{eventually, spawn_app_with, status_and_json, TestApp};
use uuid::Uuid;

const HOOKED: &str = "apiVersion: tessera.dev/v1\nkind: Integration\nmetadata:\n  name: orders\nspec:\n  triggers:\n    - webhook:\n        auth: none\n  steps:\n    - name: total\n      transform:\n        expression: '{total: .trigger.body.cents / 100}'\n";

const YEARLY: &str = "apiVersion: tessera.dev/v1\nkind: Integration\nmetadata:\n  name: yearly\nspec:\n  triggers:\n    - schedule:\n        cron: '0 0 1 1 *'\n  steps:\n    - name: tick\n      transform:\n        expression: .trigger\n";

async fn marked(app: &TestApp, tenant: &str) -> bool {
    let sql = "SELECT count(*) FROM platform.tenant_work w JOIN platform.tenants t ON t.id = w.tenant_id WHERE t.slug = $1";
    app.db().await.query_one(sql, &[&tenant]).await.unwrap().get::<_, i64>(0) == 1
}

fn running(app: &TestApp, tenant: &str) -> bool {
    app.state.supervisor.status().iter().any(|w| w.tenant == tenant)
}

async fn retired(app: &TestApp, tenant: &str) -> bool {
    eventually(Duration::from_secs(10), || async { !running(app, tenant) && !marked(app, tenant).await }).await
}

#[tokio::test]
async fn a_worker_runs_while_its_tenant_has_work_and_retires_when_it_has_none() {
    let app = spawn_app_with(|c| c.runtime.retire_idle_worker_secs = 1).await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    assert!(!running(&app, "acme") && !marked(&app, "acme").await, "a new tenant has no work and no worker");
    assert!(app.state.supervisor.held().iter().any(|t| t.tenant == "acme" && !t.worker), "the node runs acme, with no worker yet");

    // An apply is work: the worker must look at the new triggers. With none, it retires.
    app.apply_yaml("acme", &owner, HOOKED).await;
    assert!(retired(&app, "acme").await, "the worker retired after looking at a webhook-only integration");

    // A webhook's execution starts a worker on demand, and runs.
    let (status, body) = status_and_json(app.tenant_request(Method::POST, "acme", "/hooks/orders").json(&serde_json::json!({"cents": 250}))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let done = eventually(Duration::from_secs(10), || async {
        app.tenant_get("acme", &owner, &format!("/api/executions/{id}")).await.1["state"] == "succeeded"
    })
    .await;
    assert!(done, "the webhook's execution ran");
    assert!(retired(&app, "acme").await, "idle again: the worker retired and the mark went");

    // A schedule keeps the worker and the mark, whatever the idle time.
    app.apply_yaml("acme", &owner, YEARLY).await;
    assert!(eventually(Duration::from_secs(5), || async { running(&app, "acme") }).await);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(running(&app, "acme") && marked(&app, "acme").await, "a tenant with a schedule keeps its worker");
}

#[tokio::test]
async fn a_node_starts_the_workers_of_tenants_with_work_and_finds_what_no_wake_up_reached() {
    let app = spawn_app_with(|c| c.runtime.retire_idle_worker_secs = 1).await;
    let tenants = ["idle-one", "busy", "idle-two"];
    for slug in tenants {
        let tenant = app.create_tenant(slug).await;
        let owner = app.owner_token(&tenant).await;
        app.apply_yaml(slug, &owner, HOOKED).await;
    }
    for slug in tenants {
        assert!(retired(&app, slug).await, "{slug}'s worker retired");
    }

    // Work stored as a node stores it (the execution and the mark, one
    // commit) by a node that died before it woke the worker.
    let db = app.db().await;
    let id = Uuid::now_v7();
    let insert = "INSERT INTO t_busy.executions (id, integration, version, trigger) VALUES ($1, 'orders', 1, '{\"body\": {\"cents\": 100}}')";
    db.execute(insert, &[&id]).await.unwrap();
    db.execute("INSERT INTO platform.tenant_work (tenant_id) SELECT id FROM platform.tenants WHERE slug = 'busy'", &[]).await.unwrap();

    app.state.cluster.settle_now().await;
    assert!(running(&app, "busy"), "the round started the worker of the tenant with work");
    assert!(!running(&app, "idle-one") && !running(&app, "idle-two"), "and no other");
    let state = || async {
        let row = db.query_one("SELECT state FROM t_busy.executions WHERE id = $1", &[&id]).await.unwrap();
        row.get::<_, String>(0)
    };
    assert!(eventually(Duration::from_secs(10), || async { state().await == "succeeded" }).await, "the execution nobody woke ran");
    assert!(retired(&app, "busy").await);
}

/// The retire check waits for a writer in flight, and counts its work: a
/// tenant is never left with a stored execution and no mark.
#[tokio::test]
async fn retiring_waits_for_an_uncommitted_execution_and_keeps_the_mark() {
    let app = spawn_app_with(|c| c.runtime.retire_idle_worker_secs = 3600).await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    app.apply_yaml("acme", &owner, HOOKED).await;
    let tenant: Uuid = acme.id.parse().unwrap();
    let schema = TenantSlug::parse("acme").unwrap().schema_name();
    assert!(marked(&app, "acme").await);

    // A writer's transaction: its execution inserted, its mark (a no-op: the row is there) not yet committed.
    let writer = app.db().await;
    writer.batch_execute("BEGIN").await.unwrap();
    let insert = "INSERT INTO t_acme.executions (id, integration, version, trigger) VALUES ($1, 'orders', 1, '{}')";
    writer.execute(insert, &[&Uuid::now_v7()]).await.unwrap();
    writer.execute(work::MARK, &[&tenant]).await.unwrap();

    let db = app.state.tenant_db.clone();
    let check = tokio::spawn(async move { work::retire(&db, tenant, &schema).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!check.is_finished(), "the check waits for the writer");
    writer.batch_execute("COMMIT").await.unwrap();
    let idle = check.await.unwrap().expect("the check ran");
    assert!(!idle, "the committed execution is work");
    assert!(marked(&app, "acme").await, "the mark stays");
}

#[tokio::test]
async fn the_node_api_lists_the_tenants_it_runs_and_their_running_workers() {
    let app = spawn_app_with(|c| c.runtime.retire_idle_worker_secs = 3600).await;
    let token = app.platform_token().await;
    let acme = app.create_tenant("acme").await;
    app.create_tenant("globex").await;
    let owner = app.owner_token(&acme).await;
    app.apply_yaml("acme", &owner, HOOKED).await;
    let (status, node) = status_and_json(app.platform_request(Method::GET, "/api/platform/node").bearer_auth(&token)).await;
    assert_eq!(status, StatusCode::OK);
    let tenants: Vec<(String, bool)> =
        node["tenants"].as_array().unwrap().iter().map(|t| (t["tenant"].as_str().unwrap().to_string(), t["worker"] == Value::Bool(true))).collect();
    assert_eq!(tenants, vec![("acme".to_string(), true), ("globex".to_string(), false)]);
    let workers: Vec<&str> = node["workers"].as_array().unwrap().iter().map(|w| w["tenant"].as_str().unwrap()).collect();
    assert_eq!(workers, vec!["acme"]);
}
