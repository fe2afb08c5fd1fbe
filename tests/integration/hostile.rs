//! Hostile input on the request path: each gets a 4xx with a code (or a
//! normal answer), and the node serves on.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tessera_tests::{spawn_app, spawn_app_with, status_and_json, TestApp};

const QUICK: &str = "apiVersion: tessera.dev/v1
kind: Integration
metadata: {name: quick}
spec:
  triggers: [{manual: {}}, {webhook: {auth: none, synchronous: true, timeout: 5m}}]
  steps:
    - name: answer
      transform: {expression: '{ok: true}'}
";

async fn with_quick(app: &TestApp) -> String {
    let tenant = app.create_tenant("acme").await;
    let owner = app.owner_token(&tenant).await;
    app.apply_yaml("acme", &owner, QUICK).await;
    owner
}

/// The node still answers, and runs executions.
async fn still_serves(app: &TestApp, owner: &str) {
    let run = app.tenant_request(Method::POST, "acme", "/api/integrations/quick/run?wait=true").bearer_auth(owner);
    let (status, done) = status_and_json(run).await;
    assert_eq!((status, &done["state"]), (StatusCode::OK, &json!("succeeded")), "{done}");
}

fn nested(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

#[tokio::test]
async fn deeply_nested_json_bodies_to_a_webhook_and_a_run_get_400_invalid_json() {
    let app = spawn_app().await;
    let owner = with_quick(&app).await;
    let hook = app.tenant_request(Method::POST, "acme", "/hooks/quick").header("content-type", "application/json").body(nested(100_000));
    let (status, body) = status_and_json(hook).await;
    assert_eq!((status, &body["error"]["code"]), (StatusCode::BAD_REQUEST, &json!("invalid_json")), "{body}");
    let run = app
        .tenant_request(Method::POST, "acme", "/api/integrations/quick/run")
        .bearer_auth(&owner)
        .header("content-type", "application/json")
        .body(nested(100_000));
    let (status, body) = status_and_json(run).await;
    assert_eq!((status, &body["error"]["code"]), (StatusCode::BAD_REQUEST, &json!("invalid_json")), "{body}");
    still_serves(&app, &owner).await;
}

#[tokio::test]
async fn a_definition_nested_a_hundred_thousand_levels_deep_gets_400_invalid_definition() {
    let app = spawn_app().await;
    let owner = with_quick(&app).await;
    let block: String = (0..1_000).map(|i| format!("{}a:\n", " ".repeat(i))).collect();
    for (media, file) in [("application/json", nested(100_000)), ("application/yaml", "{a: ".repeat(100_000)), ("application/yaml", block)] {
        let apply = app.tenant_request(Method::POST, "acme", "/api/apply").bearer_auth(&owner).header("content-type", media).body(file);
        let (status, body) = status_and_json(apply).await;
        assert_eq!((status, &body["error"]["code"]), (StatusCode::BAD_REQUEST, &json!("invalid_definition")), "{body}");
        assert!(body.to_string().contains("nested more than 128 levels deep"), "{body}");
    }
    still_serves(&app, &owner).await;
}

#[tokio::test]
async fn a_webhook_wait_of_300000000000_years_is_refused_at_apply_and_a_stored_one_does_not_panic() {
    let app = spawn_app().await;
    let owner = with_quick(&app).await;
    let forever = QUICK.replace("timeout: 5m", "timeout: 300000000000y");
    let apply = app.tenant_request(Method::POST, "acme", "/api/apply").bearer_auth(&owner).header("content-type", "application/yaml").body(forever);
    let (status, body) = status_and_json(apply).await;
    assert_eq!((status, &body["error"]["code"]), (StatusCode::BAD_REQUEST, &json!("invalid_definition")), "{body}");
    assert!(body.to_string().contains("spec.triggers[1].webhook.timeout"), "{body}");

    // A version stored before the maximum existed: written directly.
    let db = app.db().await;
    let stored: Value = db.query_one("SELECT definition FROM t_acme.integration_versions WHERE integration = 'quick'", &[]).await.unwrap().get(0);
    let mut definition = stored.clone();
    definition["spec"]["triggers"][1]["webhook"]["timeout"] = json!("300000000000years");
    db.execute("INSERT INTO t_acme.integration_versions (integration, version, definition) VALUES ('quick', 2, $1)", &[&definition])
        .await
        .unwrap();
    db.execute("UPDATE t_acme.integrations SET current_version = 2 WHERE name = 'quick'", &[]).await.unwrap();
    for _ in 0..3 {
        let hook = app.tenant_request(Method::POST, "acme", "/hooks/quick").json(&json!({"n": 1}));
        let (status, body) = status_and_json(hook).await;
        assert_eq!((status, &body), (StatusCode::OK, &json!({"ok": true})));
    }
}

/// The single (unbatched) claim statement, with its crash accounting,
/// runs executions as the batched one does.
#[tokio::test]
async fn executions_run_when_each_write_is_its_own_commit() {
    let app = spawn_app_with(|c| c.runtime.batch_commits = false).await;
    let owner = with_quick(&app).await;
    still_serves(&app, &owner).await;
}
