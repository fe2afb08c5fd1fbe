//! Managed APIs end to end: a tenant publishes an integration as an API
//! (`kind: Api`) with two plans; consumers call it with their keys on both
//! nodes of a cluster; a consumer over its plan gets 429 with `Retry-After`
//! and `RateLimit-*` on every node while another is served; a request that
//! fails the route's schema gets 400 and runs nothing; a revoked key stops
//! at once everywhere; two versions live side by side, the older one with
//! `Deprecation` and `Sunset`.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tessera_tests::{status_and_json, TestApp};

const QUOTE: &str = r#"
apiVersion: tessera.dev/v1
kind: Integration
metadata:
  name: quote
spec:
  steps:
    - name: price
      transform:
        expression: '{sku: .trigger.body.sku, total: (.trigger.body.qty * 2), consumer: .trigger.consumer}'
---
apiVersion: tessera.dev/v1
kind: Api
metadata:
  name: orders-v1
spec:
  basePath: orders
  version: v1
  sunset: "2027-06-30T00:00:00Z"
  routes:
    - method: POST
      path: /quotes/{sku}
      integration: quote
      requestSchema:
        type: object
        required: [qty]
        properties:
          qty: {type: integer, minimum: 1}
        additionalProperties: false
      request: '{sku: .params.sku, qty: .body.qty}'
      response: '{quote: .}'
---
apiVersion: tessera.dev/v1
kind: Api
metadata:
  name: orders-v2
spec:
  basePath: orders
  version: v2
  routes:
    - method: POST
      path: /quotes/{sku}
      integration: quote
      request: '{sku: .params.sku, qty: .body.quantity}'
      response: '{sku: .sku, amount: .total}'
"#;

async fn owner_call(app: &TestApp, token: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = app.tenant_request(method, "acme", path).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    status_and_json(request).await
}

/// A consumer on `plan` and its key.
async fn consumer(app: &TestApp, token: &str, name: &str, plan: &str) -> (String, String) {
    let (status, consumer) = owner_call(app, token, Method::POST, "/api/consumers", Some(json!({"name": name, "plan": plan}))).await;
    assert_eq!(status, StatusCode::CREATED, "{consumer}");
    let id = consumer["id"].as_str().unwrap().to_string();
    let (_, key) = owner_call(app, token, Method::POST, &format!("/api/consumers/{id}/keys"), None).await;
    (id, key["secret"].as_str().unwrap().to_string())
}

/// A call of the API on the node at `port`: status, headers, body.
async fn call_api(app: &TestApp, port: u16, key: Option<&str>, method: Method, path: &str, body: Value) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut request = app.tenant_request_on(port, method, "acme", path).json(&body);
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    let response = request.send().await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    (status, headers, response.json().await.unwrap_or(Value::Null))
}

async fn executions(app: &TestApp, token: &str) -> usize {
    owner_call(app, token, Method::GET, "/api/executions", None).await.1["items"].as_array().unwrap().len()
}

#[tokio::test]
async fn a_published_api_serves_consumers_within_their_plans_on_every_node() {
    let app = tessera_tests::spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    app.apply_yaml("acme", &owner, QUOTE).await;
    for (plan, body) in [("gold", json!({"rate_per_second": 1000, "burst": 1000})), ("trial", json!({"rate_per_second": 0.001, "burst": 3}))] {
        let (status, answer) = owner_call(&app, &owner, Method::PUT, &format!("/api/plans/{plan}"), Some(body)).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    let (_, partner) = consumer(&app, &owner, "partner", "gold").await;
    let (trial_id, trial) = consumer(&app, &owner, "trial-user", "trial").await;
    let second = app.add_node().await;
    let ports = [app.port, second.port];

    // Served, reshaped both ways, with its limits and its deprecation said.
    let (status, headers, body) = call_api(&app, ports[1], Some(&partner), Method::POST, "/apis/orders/v1/quotes/A-7", json!({"qty": 4})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"quote": {"sku": "A-7", "total": 8, "consumer": "partner"}}));
    assert_eq!(headers["ratelimit-limit"], "1000");
    assert_eq!(headers["ratelimit-remaining"], "999");
    assert_eq!((headers["deprecation"].to_str().unwrap(), headers["sunset"].to_str().unwrap()), ("true", "Wed, 30 Jun 2027 00:00:00 GMT"));
    // v2 beside it: its own shape, no deprecation.
    let (status, headers, body) = call_api(&app, ports[0], Some(&partner), Method::POST, "/apis/orders/v2/quotes/B-1", json!({"quantity": 5})).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"sku": "B-1", "amount": 10})));
    assert!(headers.get("deprecation").is_none());

    // The trial consumer: a burst of 3 over both nodes, then 429 on each,
    // while the partner is still served.
    let mut served = 0;
    for i in 0..6 {
        let (status, headers, body) = call_api(&app, ports[i % 2], Some(&trial), Method::POST, "/apis/orders/v1/quotes/T", json!({"qty": 1})).await;
        match status {
            StatusCode::OK => served += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(body["error"]["code"], "rate_limited", "{body}");
                assert!(headers["retry-after"].to_str().unwrap().parse::<u64>().unwrap() > 60, "{headers:?}");
                assert_eq!((headers["ratelimit-limit"].to_str().unwrap(), headers["ratelimit-remaining"].to_str().unwrap()), ("3", "0"));
            }
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(served, 3);
    for port in ports {
        let (status, _, body) = call_api(&app, port, Some(&partner), Method::POST, "/apis/orders/v1/quotes/P", json!({"qty": 1})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    // A body that fails the route's schema: 400 with the schema's errors, and nothing runs.
    let before = executions(&app, &owner).await;
    for bad in [json!({"qty": 0}), json!({"qty": 1, "extra": true}), json!({})] {
        let (status, _, body) = call_api(&app, ports[0], Some(&partner), Method::POST, "/apis/orders/v1/quotes/X", bad.clone()).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("request_invalid")), "{bad}: {body}");
        assert!(!body["error"]["errors"].as_array().unwrap().is_empty(), "{body}");
    }
    let raw = app.tenant_request(Method::POST, "acme", "/apis/orders/v1/quotes/X").header("x-api-key", &partner).body("{not json").send().await.unwrap();
    assert_eq!(raw.status(), StatusCode::BAD_REQUEST);
    // A hostile body nested 50,000 levels deep: refused, and the node stays up.
    let deep = format!("{}{}", "[".repeat(50_000), "]".repeat(50_000));
    let request = app.tenant_request(Method::POST, "acme", "/apis/orders/v1/quotes/X").header("x-api-key", &partner).header("content-type", "application/json");
    let (status, body) = status_and_json(request.body(deep)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_body")), "{body}");
    assert_eq!(executions(&app, &owner).await, before, "no request that failed its checks ran the integration");

    // Keys: none, wrong, a tenant's own key, revoked (on both nodes at once).
    let (status, _, body) = call_api(&app, ports[0], None, Method::POST, "/apis/orders/v1/quotes/K", json!({"qty": 1})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("missing_api_key")));
    let (status, _, _) = call_api(&app, ports[0], Some("tck_not-a-key"), Method::POST, "/apis/orders/v1/quotes/K", json!({"qty": 1})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, own) = owner_call(&app, &owner, Method::POST, "/api/api-keys", Some(json!({"name": "ci", "role": "editor"}))).await;
    let (status, _, _) = call_api(&app, ports[0], own["secret"].as_str(), Method::POST, "/apis/orders/v1/quotes/K", json!({"qty": 1})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a tenant's own API key is not a consumer's");
    let (_, detail) = owner_call(&app, &owner, Method::GET, &format!("/api/consumers/{trial_id}"), None).await;
    let key_id = detail["keys"][0]["id"].as_str().unwrap();
    let (status, _) = owner_call(&app, &owner, Method::DELETE, &format!("/api/consumers/{trial_id}/keys/{key_id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    for port in ports {
        let (status, _, body) = call_api(&app, port, Some(&trial), Method::POST, "/apis/orders/v1/quotes/R", json!({"qty": 1})).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_api_key")));
    }

    // What is not there.
    for (method, path, status, code) in [
        (Method::POST, "/apis/billing/v1/x", StatusCode::NOT_FOUND, "api_not_found"),
        (Method::POST, "/apis/orders/v3/quotes/A", StatusCode::NOT_FOUND, "api_not_found"),
        (Method::POST, "/apis/orders/v1/nothing", StatusCode::NOT_FOUND, "route_not_found"),
        (Method::GET, "/apis/orders/v1/quotes/A", StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
    ] {
        let (got, _, body) = call_api(&app, ports[0], Some(&partner), method.clone(), path, json!({"qty": 1})).await;
        assert_eq!((got, body["error"]["code"].as_str()), (status, Some(code)), "{method} {path}: {body}");
    }
    // Another tenant's host knows nothing of acme's API.
    let globex = app.create_tenant("globex").await;
    let _ = globex;
    let other = app.request_with_host(Method::POST, &format!("globex.localhost:{}", app.port), "/apis/orders/v1/quotes/A").header("x-api-key", &partner).json(&json!({"qty": 1}));
    let (status, body) = status_and_json(other).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("api_not_found")));

    // Analytics: every call of orders-v1 counted, per route and consumer,
    // from both nodes (each writes its counts every second).
    let report = |app: &TestApp| {
        let request = app.tenant_request(Method::GET, "acme", "/api/apis/orders-v1/analytics?window=24h").bearer_auth(&owner);
        async move { status_and_json(request).await.1 }
    };
    let figures = |report: &Value, list: &str, key: &str, name: Value| {
        report[list].as_array().unwrap().iter().find(|r| r[key] == name).map(|r| (r["calls"].as_i64().unwrap(), r["errors"].as_i64().unwrap()))
    };
    let counted = tessera_tests::eventually(std::time::Duration::from_secs(15), || async {
        figures(&report(&app).await, "routes", "route", json!("POST /quotes/{sku}")) == Some((19, 13))
    })
    .await;
    let analytics = report(&app).await;
    assert!(counted, "{analytics:#}");
    assert_eq!(figures(&analytics, "routes", "route", json!("unmatched")), Some((2, 2)), "{analytics:#}");
    assert_eq!(figures(&analytics, "consumers", "consumer", json!("partner")), Some((8, 5)), "{analytics:#}");
    assert_eq!(figures(&analytics, "consumers", "consumer", json!("trial-user")), Some((6, 3)), "{analytics:#}");
    assert_eq!(figures(&analytics, "consumers", "consumer", Value::Null), Some((7, 7)), "{analytics:#}");
    let series: i64 = analytics["series"].as_array().unwrap().iter().map(|p| p["calls"].as_i64().unwrap()).sum();
    assert_eq!((series, analytics["series"].as_array().unwrap().len()), (21, 24), "{analytics:#}");
    assert!(analytics["routes"][0]["p50_ms"].as_f64().is_some_and(|ms| ms > 0.0) && analytics["routes"][0]["p99_ms"].is_number(), "{analytics:#}");
    let (status, _) = owner_call(&app, &owner, Method::GET, "/api/apis/nothing/analytics", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Listed, and in the audit trail.
    let (_, listed) = owner_call(&app, &owner, Method::GET, "/api/apis", None).await;
    let names: Vec<&str> = listed["items"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["orders-v1", "orders-v2"]);
    let (_, audit) = owner_call(&app, &owner, Method::GET, "/api/audit?resource_kind=api", None).await;
    assert_eq!(audit["items"].as_array().unwrap().len(), 2, "{audit}");
    second.stop().await;
}

#[tokio::test]
async fn an_api_definition_is_checked_whole_before_anything_is_stored() {
    let app = tessera_tests::spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let bad = r#"
apiVersion: tessera.dev/v1
kind: Api
metadata:
  name: broken
spec:
  basePath: Orders
  version: one
  routes:
    - method: POST
      path: quotes
      integration: quote
      requestSchema: {type: 12}
      request: '{sku: .params.sku'
    - method: POST
      path: /a/{x}
      integration: quote
    - method: POST
      path: /a/{y}
      integration: quote
"#;
    let response = app.tenant_request(Method::POST, "acme", "/api/apply").bearer_auth(&owner).header("content-type", "application/yaml").body(bad).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    let paths: Vec<&str> = body["error"]["errors"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    for path in ["spec.basePath", "spec.version", "spec.routes[0].path"] {
        assert!(paths.contains(&path), "{path} not reported: {body}");
    }
    let (_, listed) = owner_call(&app, &owner, Method::GET, "/api/apis", None).await;
    assert_eq!(listed["items"], json!([]));

    // Shapes right, then the rules across values: schema, jq, duplicate routes.
    let shaped = bad.replace("basePath: Orders", "basePath: orders").replace("version: one", "version: v1").replace("path: quotes", "path: /quotes");
    let response = app.tenant_request(Method::POST, "acme", "/api/apply").bearer_auth(&owner).header("content-type", "application/yaml").body(shaped).send().await.unwrap();
    let body: Value = response.json().await.unwrap();
    let paths: Vec<&str> = body["error"]["errors"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    for path in ["spec.routes[0].requestSchema", "spec.routes[0].request", "spec.routes[2].path"] {
        assert!(paths.contains(&path), "{path} not reported: {body}");
    }
}
