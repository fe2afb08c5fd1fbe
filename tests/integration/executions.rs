//! Durable executions: manual runs through the API, every step's
//! checkpoint recorded, failures that keep what finished, listing with
//! filters and a cursor, roles, tenant isolation, and an execution that a
//! stopped node left half done, finished by the next node without running
//! its finished step again.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tessera_tests::{error_code, eventually, spawn_app, spawn_app_with, step, TestApp};

fn integration(name: &str, steps: &str) -> String {
    format!("apiVersion: tessera.dev/v1\nkind: Integration\nmetadata:\n  name: {name}\nspec:\n  triggers:\n    - manual: {{}}\n  steps:\n{steps}")
}

/// transform → transform → log, over an order in the trigger payload.
const ORDER_SUMMARY_STEPS: &str = r#"    - name: lines
      transform:
        expression: '[.trigger.body.items[] | select(.qty > 0) | {sku, total: (.qty * .price)}]'
    - name: summary
      transform:
        expression: '{order: .trigger.body.id, lines: (.steps.lines | length), total: (.steps.lines | map(.total) | add)}'
    - name: announce
      log:
        message: 'order ${{ .steps.summary.order }} totals ${{ .steps.summary.total }}'
"#;

const ORDER: &str = r#"{"id": 42, "items": [{"sku": "A-1", "qty": 2, "price": 5}, {"sku": "B-2", "qty": 0, "price": 9}, {"sku": "C-3", "qty": 1, "price": 3}]}"#;

async fn run(app: &TestApp, slug: &str, token: &str, name: &str, body: Option<Value>, wait: bool) -> (StatusCode, Value) {
    let path = format!("/api/integrations/{name}/run{}", if wait { "?wait=true" } else { "" });
    let mut request = app.tenant_request(Method::POST, slug, &path).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn ids(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn a_run_records_every_step_and_ends_with_the_last_output() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let editor = app.user_with_role(&acme, "editor").await;
    app.apply_yaml("acme", &editor, &integration("order-summary", ORDER_SUMMARY_STEPS)).await;

    let order: Value = serde_json::from_str(ORDER).unwrap();
    let (status, execution) = run(&app, "acme", &editor, "order-summary", Some(order.clone()), true).await;
    assert_eq!(status, StatusCode::OK, "{execution}");
    assert_eq!(execution["state"], "succeeded", "{execution}");
    assert_eq!(execution["output"], "order 42 totals 13");
    assert_eq!(execution["version"], 1);
    assert_eq!(execution["trigger"], json!({"kind": "manual", "body": order}));

    let paths: Vec<_> = execution["steps"].as_array().unwrap().iter().map(|s| s["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["lines", "summary", "announce"]);
    let lines = step(&execution, "lines");
    assert_eq!(lines["state"], "succeeded");
    assert_eq!(lines["attempt"], 1);
    assert_eq!(lines["input"]["trigger"]["body"], order);
    assert_eq!(lines["output"], json!([{"sku": "A-1", "total": 10}, {"sku": "C-3", "total": 3}]));
    let summary = step(&execution, "summary");
    assert_eq!(summary["input"]["steps"]["lines"], lines["output"], "each step reads the outputs before it");
    assert_eq!(summary["output"], json!({"order": 42, "lines": 2, "total": 13}));
    assert_eq!(step(&execution, "announce")["output"], "order 42 totals 13");
    let time = |v: &Value| v.as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    assert!(time(&summary["started_at"]) >= time(&lines["finished_at"]), "steps run one after the other");

    // Without waiting: accepted at once, finished soon after.
    let (status, queued) = run(&app, "acme", &editor, "order-summary", Some(order), false).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    assert_eq!(queued["state"], "queued");
    let path = format!("/api/executions/{}", queued["id"].as_str().unwrap());
    let done = eventually(Duration::from_secs(10), || async { app.tenant_get("acme", &editor, &path).await.1["state"] == "succeeded" }).await;
    assert!(done, "the queued execution never finished");
}

#[tokio::test]
async fn a_failing_expression_fails_the_execution_and_keeps_earlier_checkpoints() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let steps = r#"    - name: order
      transform:
        expression: '.trigger.body'
    - name: broken
      transform:
        expression: '.steps.order.id | .name'
    - name: never
      log:
        message: 'not reached'
"#;
    app.apply_yaml("acme", &owner, &integration("brittle", steps)).await;

    let (status, execution) = run(&app, "acme", &owner, "brittle", Some(json!({"id": 7})), true).await;
    assert_eq!(status, StatusCode::OK, "{execution}");
    assert_eq!(execution["state"], "failed");
    assert_eq!(execution["output"], Value::Null);
    let error = &execution["error"];
    assert_eq!((error["code"].as_str(), error["step"].as_str()), (Some("expression_failed"), Some("broken")));
    assert!(error["message"].as_str().unwrap().contains(".steps.order.id | .name"), "the error names the expression: {error}");
    assert_eq!(step(&execution, "order")["output"], json!({"id": 7}));
    assert_eq!(step(&execution, "broken")["state"], "failed");
    assert_eq!(step(&execution, "broken")["error"], *error);
    assert_eq!(execution["steps"].as_array().unwrap().len(), 2, "nothing runs after a failed step");
}

#[tokio::test]
async fn a_fail_step_fails_the_execution_with_its_message() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let steps = "    - name: reject\n      fail:\n        message: 'order ${{ .trigger.body.id }} rejected'\n";
    app.apply_yaml("acme", &owner, &integration("rejecter", steps)).await;

    let (_, execution) = run(&app, "acme", &owner, "rejecter", Some(json!({"id": 9})), true).await;
    assert_eq!(execution["state"], "failed");
    assert_eq!(execution["error"], json!({"code": "fail", "message": "order 9 rejected", "step": "reject"}));
}

#[tokio::test]
async fn a_choice_runs_one_branch_and_records_its_steps_under_the_choice() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let steps = r#"    - name: route
      choice:
        branches:
          - when: '.trigger.body.total > 100'
            steps:
              - name: big
                transform:
                  expression: '"review"'
        otherwise:
          - name: small
            transform:
              expression: '"ship"'
"#;
    app.apply_yaml("acme", &owner, &integration("router", steps)).await;

    for (total, decision, nested) in [(500, "review", "route/branches[0]/big"), (5, "ship", "route/otherwise/small")] {
        let (_, execution) = run(&app, "acme", &owner, "router", Some(json!({"total": total})), true).await;
        assert_eq!(execution["output"], decision, "{execution}");
        let paths: Vec<_> = execution["steps"].as_array().unwrap().iter().map(|s| s["path"].as_str().unwrap()).collect();
        assert_eq!(paths, ["route", nested], "in the order they started");
    }
}

#[tokio::test]
async fn only_enabled_integrations_run_and_bodies_are_checked() {
    let app = spawn_app_with(|c| c.http.max_body_bytes = 256).await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let disabled = integration("paused", "    - name: say\n      log:\n        message: hi\n").replace("spec:\n", "spec:\n  enabled: false\n");
    app.apply_yaml("acme", &owner, &disabled).await;
    app.apply_yaml("acme", &owner, &integration("greeter", "    - name: say\n      log:\n        message: hi\n")).await;

    for name in ["paused", "missing", "Not_A_Name"] {
        let (status, body) = run(&app, "acme", &owner, name, None, false).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")), "{name}");
    }
    let (status, body) = run(&app, "acme", &owner, "greeter", None, true).await;
    assert_eq!((status, &body["trigger"]["body"]), (StatusCode::OK, &Value::Null), "no body is a null payload");

    let send = |body: String, content_type: &'static str| {
        app.tenant_request(Method::POST, "acme", "/api/integrations/greeter/run")
            .bearer_auth(&owner)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let bad = send("{not json".into(), "application/json").await.unwrap();
    assert_eq!((bad.status(), error_code(bad).await.as_str()), (StatusCode::BAD_REQUEST, "invalid_json"));
    let big = send(format!("\"{}\"", "x".repeat(1000)), "application/json").await.unwrap();
    assert_eq!((big.status(), error_code(big).await.as_str()), (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"));
    let text = send("hello".into(), "text/plain").await.unwrap();
    assert_eq!(text.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let count: i64 = app.db().await.query_one("SELECT count(*) FROM t_acme.executions", &[]).await.unwrap().get(0);
    assert_eq!(count, 1, "refused runs leave nothing behind");
}

#[tokio::test]
async fn executions_are_listed_newest_first_with_filters_and_a_cursor() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let viewer = app.user_with_role(&acme, "viewer").await;
    app.apply_yaml("acme", &owner, &integration("greeter", "    - name: say\n      log:\n        message: hi\n")).await;
    app.apply_yaml("acme", &owner, &integration("rejecter", "    - name: no\n      fail:\n        message: nope\n")).await;
    let before = chrono::Utc::now() - chrono::Duration::seconds(5);
    let mut started = Vec::new();
    for name in ["greeter", "rejecter", "greeter", "rejecter", "greeter"] {
        let (status, execution) = run(&app, "acme", &owner, name, None, true).await;
        assert_eq!(status, StatusCode::OK, "{execution}");
        started.push(execution["id"].as_str().unwrap().to_string());
    }
    let newest_first: Vec<String> = started.iter().rev().cloned().collect();

    let (status, all) = app.tenant_get("acme", &viewer, "/api/executions").await;
    assert_eq!(status, StatusCode::OK, "viewers read executions: {all}");
    assert_eq!(ids(&all), newest_first);
    assert_eq!(all["next_cursor"], Value::Null);
    assert!(all["items"][0].get("steps").is_none(), "the list leaves the steps out");

    let (_, greeters) = app.tenant_get("acme", &viewer, "/api/executions?integration=greeter").await;
    assert_eq!(ids(&greeters), [started[4].clone(), started[2].clone(), started[0].clone()]);
    let (_, failed) = app.tenant_get("acme", &viewer, "/api/executions?state=failed").await;
    assert_eq!(ids(&failed), [started[3].clone(), started[1].clone()]);
    let since = |t: chrono::DateTime<chrono::Utc>| format!("/api/executions?since={}", t.format("%Y-%m-%dT%H:%M:%S%.6fZ"));
    assert_eq!(ids(&app.tenant_get("acme", &viewer, &since(before)).await.1).len(), 5);
    assert!(ids(&app.tenant_get("acme", &viewer, &since(chrono::Utc::now() + chrono::Duration::hours(1))).await.1).is_empty());
    let until = |t: chrono::DateTime<chrono::Utc>| format!("/api/executions?until={}", t.format("%Y-%m-%dT%H:%M:%S%.6fZ"));
    assert!(ids(&app.tenant_get("acme", &viewer, &until(before)).await.1).is_empty());
    assert_eq!(ids(&app.tenant_get("acme", &viewer, &until(chrono::Utc::now() + chrono::Duration::hours(1))).await.1).len(), 5);
    let range = format!("{}&until={}", since(before), (chrono::Utc::now() + chrono::Duration::hours(1)).format("%Y-%m-%dT%H:%M:%S%.6fZ"));
    assert_eq!(ids(&app.tenant_get("acme", &viewer, &range).await.1).len(), 5);

    let mut paged = Vec::new();
    let mut path = "/api/executions?limit=2".to_string();
    loop {
        let (status, page) = app.tenant_get("acme", &viewer, &path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        paged.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/executions?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(paged, newest_first);

    for bad in ["/api/executions?state=sleeping", "/api/executions?limit=101", "/api/executions?limit=0"] {
        let (status, body) = app.tenant_get("acme", &viewer, bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let (status, _) = app.tenant_get("acme", &viewer, "/api/executions?cursor=not-an-id").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = app.tenant_get("acme", &viewer, &format!("/api/executions/{}", uuid::Uuid::now_v7())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn viewers_cannot_run_integrations() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let viewer = app.user_with_role(&acme, "viewer").await;
    app.apply_yaml("acme", &owner, &integration("greeter", "    - name: say\n      log:\n        message: hi\n")).await;

    let (status, body) = run(&app, "acme", &viewer, "greeter", None, false).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")));
    let (_, list) = app.tenant_get("acme", &viewer, "/api/executions").await;
    assert!(ids(&list).is_empty());
}

#[tokio::test]
async fn a_tenant_cannot_see_or_run_another_tenants_executions() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let globex = app.create_tenant("globex").await;
    let (acme_owner, globex_owner) = (app.owner_token(&acme).await, app.owner_token(&globex).await);
    app.apply_yaml("acme", &acme_owner, &integration("greeter", "    - name: say\n      log:\n        message: hi\n")).await;
    let (_, execution) = run(&app, "acme", &acme_owner, "greeter", None, true).await;
    let id = execution["id"].as_str().unwrap();

    let (status, _) = app.tenant_get("globex", &globex_owner, &format!("/api/executions/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, list) = app.tenant_get("globex", &globex_owner, "/api/executions").await;
    assert!(ids(&list).is_empty());
    let (status, _) = run(&app, "globex", &globex_owner, "greeter", None, false).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.tenant_get("globex", &acme_owner, &format!("/api/executions/{id}")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "acme's token does not work on globex's host");
}

#[tokio::test]
async fn a_tenant_runs_at_most_its_limit_of_executions_at_once() {
    let app = spawn_app_with(|c| c.runtime.max_concurrent_executions = 1).await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    app.apply_yaml("acme", &owner, &integration("slow", "    - name: nap\n      delay:\n        duration: 2s\n")).await;
    let (_, first) = run(&app, "acme", &owner, "slow", None, false).await;
    let (_, second) = run(&app, "acme", &owner, "slow", None, false).await;
    let path = |e: &Value| format!("/api/executions/{}", e["id"].as_str().unwrap());

    let first_running = eventually(Duration::from_secs(10), || async { app.tenant_get("acme", &owner, &path(&first)).await.1["state"] == "running" }).await;
    assert!(first_running);
    assert_eq!(app.tenant_get("acme", &owner, &path(&second)).await.1["state"], "queued", "the second waits for a slot");
    let both = eventually(Duration::from_secs(10), || async {
        app.tenant_get("acme", &owner, &path(&second)).await.1["state"] == "succeeded"
    })
    .await;
    assert!(both, "the second never ran");
    let (first, second) = (app.tenant_get("acme", &owner, &path(&first)).await.1, app.tenant_get("acme", &owner, &path(&second)).await.1);
    let time = |v: &Value| v.as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    assert!(time(&second["started_at"]) >= time(&first["finished_at"]), "one after the other: {first} {second}");
}

async fn checkpoint_of(app: &TestApp, path: &str) -> Option<(String, String, i32, Value)> {
    let sql = "SELECT started_at::text, finished_at::text, attempt, output FROM t_acme.execution_steps WHERE path = $1";
    app.db().await.query_opt(sql, &[&path]).await.unwrap().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
}

#[tokio::test]
async fn an_execution_left_running_by_a_stopped_node_resumes_after_its_last_checkpoint() {
    // No drain time: the stopping node hands the running execution over at once.
    let app = spawn_app_with(|c| c.cluster.drain_timeout_ms = 0).await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let steps = r#"    - name: double
      transform:
        expression: '.trigger.body.n * 2'
    - name: nap
      delay:
        duration: 3s
    - name: report
      transform:
        expression: '{doubled: .steps.double}'
"#;
    app.apply_yaml("acme", &owner, &integration("slow", steps)).await;
    let (status, queued) = run(&app, "acme", &owner, "slow", Some(json!({"n": 21})), false).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let id = queued["id"].as_str().unwrap().to_string();

    // Stop the node while the execution sleeps in its second step.
    assert!(eventually(Duration::from_secs(10), || async { checkpoint_of(&app, "double").await.is_some() }).await);
    app.stop().await;
    assert!(eventually(Duration::from_secs(10), || async { app.state.supervisor.status().is_empty() }).await, "workers stopped");
    let before = checkpoint_of(&app, "double").await.unwrap();
    let state: String =
        app.db().await.query_one("SELECT state FROM t_acme.executions", &[]).await.unwrap().get(0);
    assert_eq!(state, "running", "the stopped node left the execution half done");
    assert!(checkpoint_of(&app, "nap").await.is_none());

    let port = app.add_node().await.port;
    let fetch = || async {
        let request = app.tenant_request_on(port, Method::GET, "acme", &format!("/api/executions/{id}"));
        request.bearer_auth(&owner).send().await.unwrap().json::<Value>().await.unwrap()
    };
    assert!(eventually(Duration::from_secs(20), || async { fetch().await["state"] == "succeeded" }).await, "never resumed");
    let execution = fetch().await;
    assert_eq!(execution["output"], json!({"doubled": 42}), "the resumed run read the checkpointed output");
    assert_eq!(checkpoint_of(&app, "double").await.unwrap(), before, "the finished step did not run again");
    let paths: Vec<_> = execution["steps"].as_array().unwrap().iter().map(|s| s["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["double", "nap", "report"]);
}
