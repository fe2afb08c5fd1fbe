//! Tenant jq runs in a sandbox, through the real server: an expression that
//! recurses forever, one nested 100,000 levels deep, and one that loops for
//! hours each end with a clear error, and the node goes on serving.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tessera_runtime::expression::pool;
use tessera_tests::{TestApp, eventually, spawn_app};

fn integration(name: &str, expression: &str, extra: &str) -> String {
    let expression = serde_json::to_string(expression).unwrap();
    format!(
        "apiVersion: tessera.dev/v1\nkind: Integration\nmetadata:\n  name: {name}\nspec:\n{extra}  triggers:\n    - manual: {{}}\n  steps:\n    - name: compute\n      transform:\n        expression: {expression}\n"
    )
}

async fn run(app: &TestApp, token: &str, name: &str) -> Value {
    let path = format!("/api/integrations/{name}/run?wait=true");
    let response = app.tenant_request(Method::POST, "acme", &path).bearer_auth(token).json(&json!({"n": 1})).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

#[tokio::test]
async fn endless_recursion_fails_its_step_with_expression_limit_and_the_node_serves_the_next_request() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    app.apply_yaml("acme", &owner, &integration("recurse", "def f: f + 1; f", "")).await;
    app.apply_yaml("acme", &owner, &integration("fine", ".trigger.body.n + 1", "")).await;

    let execution = run(&app, &owner, "recurse").await;
    assert_eq!(execution["state"], "failed", "{execution}");
    assert_eq!(execution["error"]["code"], "expression_limit", "{execution}");
    assert_eq!(execution["error"]["step"], "compute", "{execution}");
    assert!(execution["error"]["message"].as_str().unwrap().contains("recursion deeper than"), "{execution}");

    let execution = run(&app, &owner, "fine").await;
    assert_eq!((execution["state"].as_str(), &execution["output"]), (Some("succeeded"), &json!(2)), "{execution}");
}

#[tokio::test]
async fn an_expression_nested_a_hundred_thousand_levels_is_refused_at_apply_and_the_node_lives() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let response = app
        .tenant_request(Method::POST, "acme", "/api/apply")
        .bearer_auth(&owner)
        .header("content-type", "application/yaml")
        .body(integration("deep", &"[".repeat(100_000), ""))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_definition", "{body}");
    let error = &body["error"]["errors"][0];
    assert_eq!(error["path"], "spec.steps[0].transform.expression", "{body}");
    assert!(error["message"].as_str().unwrap().contains("bytes long") || error["message"].as_str().unwrap().contains("nests deeper"), "{body}");

    // The same within the length bound, nested past the nesting bound.
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let response = app
        .tenant_request(Method::POST, "acme", "/api/apply")
        .bearer_auth(&owner)
        .header("content-type", "application/yaml")
        .body(integration("deep", &deep, ""))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["errors"][0]["message"].as_str().unwrap().contains("nests deeper than 128 levels"), "{body}");

    app.apply_yaml("acme", &owner, &integration("fine", ".trigger.body.n + 1", "")).await;
    assert_eq!(run(&app, &owner, "fine").await["output"], json!(2));
}

#[tokio::test]
async fn eight_loops_past_their_timeout_stop_and_leave_the_evaluation_pool_idle() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    app.apply_yaml("acme", &owner, &integration("spin", "last(range(1e12))", "  timeout: 1s\n")).await;

    let started = Instant::now();
    let executions = futures::future::join_all((0..8).map(|_| run(&app, &owner, "spin"))).await;
    for execution in &executions {
        assert_eq!(execution["state"], "failed", "{execution}");
        assert_eq!(execution["error"]["code"], "timeout", "{execution}");
    }
    // The slots the tenant's evaluations hold are freed only once their thread stops.
    let ended = Instant::now();
    let idle = eventually(Duration::from_secs(2), || async { pool::pool().held_by(&acme.id) == 0 }).await;
    assert!(idle, "an abandoned evaluation still runs {:?} after the timeouts", ended.elapsed());
    assert!(started.elapsed() < Duration::from_secs(8), "{:?}", started.elapsed());
}
