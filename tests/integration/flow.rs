//! The engine's control flow against PostgreSQL: retries and their
//! checkpointed attempts, `on_error` at step and integration level,
//! `foreach` and `parallel`, and `call` (a child execution, recursion
//! stopped, a resumed parent that reuses its child).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tessera_tests::{eventually, spawn_app, spawn_app_with, step, TestApp};

/// An integration with a manual trigger; `extra` is more of its spec
/// (`on_error`, `enabled`), indented by two spaces.
fn integration(name: &str, steps: &str, extra: &str) -> String {
    format!("apiVersion: tessera.dev/v1\nkind: Integration\nmetadata:\n  name: {name}\nspec:\n{extra}  triggers:\n    - manual: {{}}\n  steps:\n{steps}")
}

async fn run(app: &TestApp, token: &str, name: &str, body: Value) -> Value {
    let path = format!("/api/integrations/{name}/run?wait=true");
    let response = app.tenant_request(Method::POST, "acme", &path).bearer_auth(token).json(&body).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

fn paths(execution: &Value) -> Vec<&str> {
    execution["steps"].as_array().unwrap().iter().map(|s| s["path"].as_str().unwrap()).collect()
}

async fn acme_owner(app: &TestApp) -> String {
    let acme = app.create_tenant("acme").await;
    app.owner_token(&acme).await
}

#[tokio::test]
async fn retries_stop_at_their_limit_and_a_step_on_error_lets_the_execution_go_on() {
    let app = spawn_app().await;
    let owner = acme_owner(&app).await;
    let steps = r#"    - name: slow
      delay:
        duration: 10s
      timeout: 50ms
      retry:
        attempts: 3
        on: [timeout]
        backoff: {initial: 20ms, jitter: false}
      on_error:
        - name: fallback
          transform:
            expression: '{handled: .error.code, step: .error.step}'
    - name: after
      transform:
        expression: '.steps.slow'
"#;
    app.apply_yaml("acme", &owner, &integration("flaky", steps, "")).await;
    let execution = run(&app, &owner, "flaky", json!({})).await;
    assert_eq!(execution["state"], "succeeded", "{execution}");
    assert_eq!(execution["output"], json!({"handled": "timeout", "step": "slow"}));
    let slow = step(&execution, "slow");
    assert_eq!((slow["attempt"].as_i64(), slow["state"].as_str()), (Some(3), Some("succeeded")), "{slow}");
    assert_eq!(slow["error"]["code"], "timeout", "the handled failure stays on record");
    assert_eq!(paths(&execution), ["slow", "slow/on_error/fallback", "after"]);

    // A failure the policy does not list is not retried.
    let steps = r#"    - name: strict
      fail:
        message: 'bad input'
      retry:
        attempts: 4
        backoff: {initial: 10ms}
"#;
    app.apply_yaml("acme", &owner, &integration("strict", steps, "")).await;
    let execution = run(&app, &owner, "strict", json!({})).await;
    assert_eq!(execution["state"], "failed");
    assert_eq!(step(&execution, "strict")["attempt"], 1);
}

#[tokio::test]
async fn the_integration_on_error_runs_when_an_execution_fails() {
    let app = spawn_app().await;
    let owner = acme_owner(&app).await;
    let steps = r#"    - name: check
      fail:
        message: 'order ${{ .trigger.body.id }} is invalid'
"#;
    let on_error = r#"  on_error:
    - name: notify
      transform:
        expression: '"\(.error.step) failed: \(.error.message)"'
"#;
    app.apply_yaml("acme", &owner, &integration("guarded", steps, on_error)).await;
    let execution = run(&app, &owner, "guarded", json!({"id": 9})).await;
    assert_eq!(execution["state"], "failed");
    assert_eq!(execution["error"], json!({"code": "fail", "message": "order 9 is invalid", "step": "check"}));
    assert_eq!(step(&execution, "on_error/notify")["output"], "check failed: order 9 is invalid");
}

#[tokio::test]
async fn foreach_and_parallel_run_nested_steps_under_their_paths() {
    let app = spawn_app().await;
    let owner = acme_owner(&app).await;
    let steps = r#"    - name: each
      foreach:
        items: '.trigger.body.items'
        concurrency: 3
        steps:
          - name: line
            transform:
              expression: '{n: .index, total: (.item.qty * .item.price)}'
    - name: both
      parallel:
        branches:
          - name: sum
            steps:
              - name: add
                transform:
                  expression: '.steps.each | map(.total) | add'
          - name: count
            steps:
              - name: how_many
                transform:
                  expression: '.steps.each | length'
"#;
    app.apply_yaml("acme", &owner, &integration("fan", steps, "")).await;
    let items = json!([{"qty": 1, "price": 5}, {"qty": 2, "price": 3}, {"qty": 4, "price": 1}, {"qty": 0, "price": 9}]);
    let execution = run(&app, &owner, "fan", json!({"items": items})).await;
    assert_eq!(execution["state"], "succeeded", "{execution}");
    let lines = json!([{"n": 0, "total": 5}, {"n": 1, "total": 6}, {"n": 2, "total": 4}, {"n": 3, "total": 0}]);
    assert_eq!(step(&execution, "each")["output"], lines, "in item order");
    assert_eq!(step(&execution, "each/items[3]/line")["output"], json!({"n": 3, "total": 0}));
    assert_eq!(execution["output"], json!({"sum": 15, "count": 4}));
    assert_eq!(step(&execution, "both/count/how_many")["output"], 4);
}

const PRICE_STEPS: &str = r#"    - name: quote
      transform:
        expression: '{kind: .trigger.kind, total: (.trigger.body.qty * 3)}'
"#;

#[tokio::test]
async fn call_runs_a_child_execution_and_uses_its_output() {
    let app = spawn_app().await;
    let owner = acme_owner(&app).await;
    app.apply_yaml("acme", &owner, &integration("price", PRICE_STEPS, "")).await;
    let steps = r#"    - name: ask
      call:
        integration: price
        input: '{qty: .trigger.body.qty}'
    - name: missing
      call:
        integration: nowhere
      on_error:
        - name: why
          transform:
            expression: '.error'
"#;
    app.apply_yaml("acme", &owner, &integration("order", steps, "")).await;
    let execution = run(&app, &owner, "order", json!({"qty": 7})).await;
    assert_eq!(execution["state"], "succeeded", "{execution}");
    assert_eq!(step(&execution, "ask")["output"], json!({"kind": "call", "total": 21}));
    let why = &step(&execution, "missing")["output"];
    assert_eq!((why["code"].as_str(), why["message"].as_str()), (Some("call_failed"), Some("there is no integration `nowhere`")));

    let children = execution["children"].as_array().unwrap();
    assert_eq!(children.len(), 1, "{execution}");
    assert_eq!((children[0]["step"].as_str(), children[0]["state"].as_str()), (Some("ask"), Some("succeeded")));
    let child_path = format!("/api/executions/{}", children[0]["id"].as_str().unwrap());
    let (_, child) = app.tenant_get("acme", &owner, &child_path).await;
    assert_eq!(child["parent_id"], execution["id"]);
    assert_eq!(child["integration"], "price");
    assert_eq!(child["trigger"], json!({"kind": "call", "parent": execution["id"], "body": {"qty": 7}}));
}

#[tokio::test]
async fn recursion_is_stopped_at_the_call_depth() {
    let app = spawn_app().await;
    let owner = acme_owner(&app).await;
    let steps = r#"    - name: again
      call:
        integration: forever
"#;
    app.apply_yaml("acme", &owner, &integration("forever", steps, "")).await;
    let execution = run(&app, &owner, "forever", json!({})).await;
    assert_eq!(execution["state"], "failed");
    assert_eq!(execution["error"]["code"], "call_depth_exceeded", "{execution}");
    let count: i64 = app.db().await.query_one("SELECT count(*) FROM t_acme.executions", &[]).await.unwrap().get(0);
    assert_eq!(count, 9, "the first execution and eight nested calls");
}

async fn finished_at(app: &TestApp, path: &str) -> Option<String> {
    let sql = "SELECT finished_at::text FROM t_acme.execution_steps WHERE path = $1";
    app.db().await.query_opt(sql, &[&path]).await.unwrap().map(|r| r.get(0))
}

#[tokio::test]
async fn a_resumed_parent_reuses_its_child() {
    // No drain time: the stopping node hands the running parent over at once.
    let app = spawn_app_with(|c| c.cluster.drain_timeout_ms = 0).await;
    let owner = acme_owner(&app).await;
    let child_steps = r#"    - name: first
      transform:
        expression: '.trigger.body.n + 1'
    - name: nap
      delay:
        duration: 3s
    - name: last
      transform:
        expression: '.steps.first * 10'
"#;
    app.apply_yaml("acme", &owner, &integration("slow-child", child_steps, "")).await;
    let steps = "    - name: ask\n      call:\n        integration: slow-child\n        input: '{n: 4}'\n";
    app.apply_yaml("acme", &owner, &integration("parent", steps, "")).await;
    let response = app.tenant_request(Method::POST, "acme", "/api/integrations/parent/run").bearer_auth(&owner).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let id = response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();

    // Stop the node while the child sleeps.
    assert!(eventually(Duration::from_secs(10), || async { finished_at(&app, "first").await.is_some() }).await);
    app.stop().await;
    assert!(eventually(Duration::from_secs(10), || async { app.state.supervisor.status().is_empty() }).await, "workers stopped");
    let before = finished_at(&app, "first").await;

    let port = app.add_node().await.port;
    let fetch = || async {
        let request = app.tenant_request_on(port, Method::GET, "acme", &format!("/api/executions/{id}"));
        request.bearer_auth(&owner).send().await.unwrap().json::<Value>().await.unwrap()
    };
    assert!(eventually(Duration::from_secs(20), || async { fetch().await["state"] == "succeeded" }).await, "never resumed");
    assert_eq!(fetch().await["output"], 50);
    let count: i64 = app.db().await.query_one("SELECT count(*) FROM t_acme.executions", &[]).await.unwrap().get(0);
    assert_eq!(count, 2, "one parent, one child");
    assert_eq!(finished_at(&app, "first").await, before, "the child's finished step did not run again");
}
