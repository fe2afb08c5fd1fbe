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

/// Apply `yaml` as acme's owner: refused with 400, an error at each of `paths`.
async fn refused_at(app: &TestApp, token: &str, yaml: &str, paths: &[&str]) {
    let request = app.tenant_request(Method::POST, "acme", "/api/apply").bearer_auth(token).header("content-type", "application/yaml");
    let response = request.body(yaml.to_string()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    let reported: Vec<&str> = body["error"]["errors"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    for path in paths {
        assert!(reported.contains(path), "{path} not reported: {body}");
    }
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
    refused_at(&app, &owner, bad, &["spec.basePath", "spec.version", "spec.routes[0].path"]).await;
    let (_, listed) = owner_call(&app, &owner, Method::GET, "/api/apis", None).await;
    assert_eq!(listed["items"], json!([]));

    // Shapes right, then the rules across values: schema, jq, duplicate routes.
    let shaped = bad.replace("basePath: Orders", "basePath: orders").replace("version: one", "version: v1").replace("path: quotes", "path: /quotes");
    refused_at(&app, &owner, &shaped, &["spec.routes[0].requestSchema", "spec.routes[0].request", "spec.routes[2].path"]).await;
}

/// What the test backend saw of one forwarded call.
#[derive(Default)]
struct Backend {
    seen: std::sync::Mutex<Vec<Value>>,
}

async fn backend(state: actix_web::web::Data<Backend>, req: actix_web::HttpRequest, body: actix_web::web::Bytes) -> actix_web::HttpResponse {
    let headers: serde_json::Map<String, Value> =
        req.headers().iter().map(|(n, v)| (n.as_str().to_string(), json!(v.to_str().unwrap_or_default()))).collect();
    let seen = json!({"method": req.method().as_str(), "path": req.path(), "query": req.query_string(), "headers": headers, "body": String::from_utf8_lossy(&body)});
    state.seen.lock().unwrap().push(seen.clone());
    actix_web::HttpResponse::Created()
        .insert_header(("etag", "\"v7\""))
        .insert_header(("x-internal-secret", "backend-only"))
        .json(json!({"id": 42, "echo": seen}))
}

const FORWARDED: &str = r#"
apiVersion: tessera.dev/v1
kind: Api
metadata:
  name: inventory
spec:
  basePath: inventory
  version: v1
  routes:
    - method: POST
      path: /items/{id}
      forward: {url: "BACKEND/base"}
    - method: GET
      path: /items/{id}/summary
      forward: {url: "BACKEND/base"}
      response: '{id: .id, method: .echo.method}'
    - method: GET
      path: /ours
      forward: {url: "http://127.0.0.1:DATABASE_PORT/"}
    - method: GET
      path: /metadata
      forward: {url: "http://169.254.169.254/latest"}
  cors:
    allowOrigins: ["https://shop.example.com"]
    maxAgeSeconds: 120
"#;

#[tokio::test]
async fn a_forwarding_route_reaches_its_backend_through_the_egress_gate_with_cors() {
    let app = tessera_tests::spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let seen = std::sync::Arc::new(Backend::default());
    let base = tessera_tests::serve_locally(seen.clone(), backend);
    let database_port = reqwest::Url::parse(&tessera_tests::admin_url()).unwrap().port().unwrap_or(5432);
    app.apply_yaml("acme", &owner, &FORWARDED.replace("BACKEND", &base).replace("DATABASE_PORT", &database_port.to_string())).await;
    owner_call(&app, &owner, Method::PUT, "/api/plans/gold", Some(json!({"rate_per_second": 100, "burst": 100}))).await;
    let (_, key) = consumer(&app, &owner, "shop", "gold").await;

    // Sent on: method, path under the base, query, body as it came; the
    // caller's key stays here, the consumer's name goes along.
    let request = app
        .tenant_request(Method::POST, "acme", "/apis/inventory/v1/items/a%20b?lang=fr&x=1")
        .header("x-api-key", &key)
        .header("cookie", "session=caller")
        .header("content-type", "text/plain")
        .header("origin", "https://shop.example.com")
        .body("plain text, not JSON");
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let headers = response.headers().clone();
    assert_eq!(headers["etag"], "\"v7\"");
    assert!(headers.get("x-internal-secret").is_none(), "only the listed answer headers come back");
    assert_eq!(headers["access-control-allow-origin"], "https://shop.example.com");
    assert_eq!(headers["ratelimit-limit"], "100");
    let answer: Value = response.json().await.unwrap();
    let echo = &answer["echo"];
    assert_eq!((echo["method"].as_str(), echo["path"].as_str(), echo["query"].as_str()), (Some("POST"), Some("/base/items/a%20b"), Some("lang=fr&x=1")));
    assert_eq!(echo["body"], "plain text, not JSON");
    assert_eq!(echo["headers"]["x-tessera-consumer"], "shop");
    assert_eq!(echo["headers"]["content-type"], "text/plain");
    for hidden in ["x-api-key", "cookie", "authorization", "origin"] {
        assert!(echo["headers"].get(hidden).is_none(), "{hidden} was forwarded: {echo}");
    }

    // A response transform reads the backend's JSON.
    let (status, _, body) = call_api(&app, app.port, Some(&key), Method::GET, "/apis/inventory/v1/items/9/summary", Value::Null).await;
    assert_eq!((status, body), (StatusCode::CREATED, json!({"id": 42, "method": "GET"})), "the backend's status, the reshaped body");

    // The platform's own database is never a backend; nothing escapes the base path.
    for refused in ["/apis/inventory/v1/ours", "/apis/inventory/v1/metadata"] {
        let (status, _, body) = call_api(&app, app.port, Some(&key), Method::GET, refused, Value::Null).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_GATEWAY, Some("backend_refused")), "{refused}: {body}");
    }
    let before = seen.seen.lock().unwrap().len();
    // (Sent raw: HTTP clients resolve dot segments before sending.)
    for escape in ["/apis/inventory/v1/items/..", "/apis/inventory/v1/items/%2E%2E", "/apis/inventory/v1/./items/x"] {
        let answer = raw_call(app.port, escape, &key).await;
        assert!(answer.starts_with("HTTP/1.1 400") && answer.contains("invalid_path"), "{escape}: {answer}");
    }
    assert_eq!(seen.seen.lock().unwrap().len(), before, "the backend saw nothing of a refused call");

    // CORS: a preflight needs no key; another origin is refused; an error
    // to an allowed origin still says so, so the page can read it.
    let preflight = app
        .tenant_request(Method::OPTIONS, "acme", "/apis/inventory/v1/items/1")
        .header("origin", "https://shop.example.com")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), StatusCode::NO_CONTENT);
    let h = preflight.headers();
    assert_eq!(h["access-control-allow-origin"], "https://shop.example.com");
    assert_eq!(h["access-control-allow-methods"], "POST");
    assert_eq!(h["access-control-max-age"], "120");
    assert!(h["access-control-allow-headers"].to_str().unwrap().contains("x-api-key"));
    let refused = app
        .tenant_request(Method::OPTIONS, "acme", "/apis/inventory/v1/items/1")
        .header("origin", "https://evil.example.net")
        .header("access-control-request-method", "POST");
    let (status, body) = status_and_json(refused).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("cors_origin_not_allowed")));
    let unauthorised = app.tenant_request(Method::POST, "acme", "/apis/inventory/v1/items/1").header("origin", "https://shop.example.com").send().await.unwrap();
    assert_eq!(unauthorised.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(unauthorised.headers()["access-control-allow-origin"], "https://shop.example.com");
    let elsewhere = app.tenant_request(Method::POST, "acme", "/apis/inventory/v1/items/1").header("x-api-key", &key).header("origin", "https://evil.example.net").send().await.unwrap();
    assert!(elsewhere.headers().get("access-control-allow-origin").is_none());
}

/// A call written byte by byte, its path as given: the whole answer.
async fn raw_call(port: u16, path: &str, key: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let request = format!("POST {path} HTTP/1.1\r\nHost: acme.localhost:{port}\r\nX-API-Key: {key}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

/// A test identity provider: an Ed25519 key, its JWKS, and tokens.
struct Provider {
    key: jsonwebtoken::EncodingKey,
    kid: String,
}

impl Provider {
    fn new(kid: &str) -> Self {
        // PKCS#8 of an Ed25519 key: the fixed prefix, then 32 random bytes.
        let mut der = vec![0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
        der.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        der.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        Self { key: jsonwebtoken::EncodingKey::from_ed_der(&der), kid: kid.into() }
    }

    fn jwk(&self) -> Value {
        let mut jwk = serde_json::to_value(jsonwebtoken::jwk::Jwk::from_encoding_key(&self.key, jsonwebtoken::Algorithm::EdDSA).unwrap()).unwrap();
        jwk["kid"] = json!(self.kid);
        jwk
    }

    fn token(&self, claims: Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }
}

async fn jwks(state: actix_web::web::Data<(Value, std::sync::atomic::AtomicUsize)>) -> actix_web::HttpResponse {
    state.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    actix_web::HttpResponse::Ok().json(&state.0)
}

#[tokio::test]
async fn a_jwt_api_accepts_its_providers_tokens_only_and_describes_itself() {
    let app = tessera_tests::spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let (provider, stranger) = (Provider::new("k1"), Provider::new("k1"));
    let published = std::sync::Arc::new((json!({"keys": [provider.jwk()]}), std::sync::atomic::AtomicUsize::new(0)));
    let idp = tessera_tests::serve_locally(published.clone(), jwks);
    let definition = QUOTE.replace("name: orders-v2", "name: orders-jwt").replace("version: v2", "version: v3\n  auth: jwt\n  jwt:\n    issuer: https://idp.example.com\n    audiences: [orders]\n    jwksUrl: IDP/keys").replace("IDP", &idp);
    app.apply_yaml("acme", &owner, &definition).await;
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"iss": "https://idp.example.com", "aud": "orders", "sub": "partner-42", "exp": now + 300});
    let call = |token: Option<String>| {
        let mut request = app.tenant_request(Method::POST, "acme", "/apis/orders/v3/quotes/J").json(&json!({"quantity": 2}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        status_and_json(request)
    };
    let (status, body) = call(Some(provider.token(claims.clone()))).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"sku": "J", "amount": 4})));

    let mut wrong = Vec::new();
    for (field, value) in [("aud", json!("billing")), ("iss", json!("https://other.example.com")), ("exp", json!(now - 3600))] {
        let mut bad = claims.clone();
        bad[field] = value;
        wrong.push((field.to_string(), provider.token(bad)));
    }
    wrong.push(("another key".into(), stranger.token(claims.clone())));
    let hs256 = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &jsonwebtoken::EncodingKey::from_secret(b"guess")).unwrap();
    wrong.push(("HS256".into(), hs256));
    wrong.push(("not a JWT".into(), "tck_abc".into()));
    for (what, token) in wrong {
        let (status, body) = call(Some(token)).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_token")), "{what}: {body}");
    }
    let (status, body) = call(None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("missing_token")));
    let fetches = published.1.load(std::sync::atomic::Ordering::SeqCst);
    assert!((1..=2).contains(&fetches), "the JWKS is kept, not fetched per call ({fetches} fetches)");

    // Each API's OpenAPI document: its routes, schema, auth and deprecation.
    let (status, document) = status_and_json(app.tenant_request(Method::GET, "acme", "/apis/orders/v1/openapi.json")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(document["servers"][0]["url"], "/apis/orders/v1");
    let quote = &document["paths"]["/quotes/{sku}"]["post"];
    assert_eq!(quote["requestBody"]["content"]["application/json"]["schema"]["required"], json!(["qty"]));
    assert_eq!(quote["parameters"][0]["name"], "sku");
    assert_eq!(quote["deprecated"], true);
    assert!(quote["responses"].get("429").is_some());
    assert_eq!(document["components"]["securitySchemes"]["consumerKey"]["name"], "X-API-Key");
    let (_, jwt_document) = owner_call(&app, &owner, Method::GET, "/api/apis/orders-jwt/openapi.json", None).await;
    assert_eq!(jwt_document["components"]["securitySchemes"]["bearerJwt"]["bearerFormat"], "JWT");
    assert!(jwt_document["paths"]["/quotes/{sku}"]["post"]["responses"].get("429").is_none());
}

#[tokio::test]
async fn routes_backends_auth_and_cors_are_checked_when_applied() {
    let app = tessera_tests::spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let bad = r#"
apiVersion: tessera.dev/v1
kind: Api
metadata:
  name: broken
spec:
  basePath: broken
  version: v1
  auth: jwt
  cors: {allowOrigins: ["*"], allowCredentials: true}
  routes:
    - {method: GET, path: /both, integration: quote, forward: {url: "https://backend.example.com"}}
    - {method: GET, path: /neither}
    - {method: GET, path: /ftp, forward: {url: "ftp://files.example.com/"}}
    - {method: GET, path: /openapi.json, integration: quote}
    - {method: GET, path: /slow, forward: {url: "https://backend.example.com", timeout: 10h}}
"#;
    let expected = ["spec.jwt", "spec.cors.allowOrigins", "spec.routes[0].forward", "spec.routes[1]", "spec.routes[2].forward.url", "spec.routes[3].path", "spec.routes[4].forward.timeout"];
    refused_at(&app, &owner, bad, &expected).await;
}

const INLINE: &str = r#"
apiVersion: tessera.dev/v1
kind: Integration
metadata:
  name: pure
spec:
  steps:
    - name: price
      transform:
        expression: '{total: (.trigger.body.qty * 3)}'
    - name: check
      choice:
        branches:
          - when: '.steps.price.total > 100'
            steps:
              - name: refuse
                fail: {message: 'too large: ${{ .steps.price.total }}'}
    - name: note
      log: {message: 'priced ${{ .steps.price.total }}'}
    - name: answer
      transform:
        expression: '.steps.price'
---
apiVersion: tessera.dev/v1
kind: Integration
metadata:
  name: waits
spec:
  steps:
    - name: pause
      delay: {duration: 10ms}
    - name: answer
      transform:
        expression: '{waited: true}'
---
apiVersion: tessera.dev/v1
kind: Api
metadata:
  name: inline
spec:
  basePath: inline
  version: v1
  auth: none
  routes:
    - {method: POST, path: /pure, integration: pure}
    - {method: POST, path: /waits, integration: waits}
"#;

#[tokio::test]
async fn a_call_of_a_pure_integration_runs_inline_and_is_stored_once_finished_with_its_steps() {
    let app = tessera_tests::spawn_app_with(|c| c.metrics.listen = Some("127.0.0.1:0".into())).await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    app.apply_yaml("acme", &owner, INLINE).await;
    let call = |path: &'static str, body: Value| status_and_json(app.tenant_request(Method::POST, "acme", path).json(&body));

    let (status, body) = call("/apis/inline/v1/pure", json!({"qty": 5})).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"total": 15})));
    // Stored as it ended, with every step, as an execution run by a worker is.
    let (_, list) = owner_call(&app, &owner, Method::GET, "/api/executions?integration=pure", None).await;
    let id = list["items"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let (_, execution) = owner_call(&app, &owner, Method::GET, &format!("/api/executions/{id}"), None).await;
    assert_eq!((execution["state"].as_str(), &execution["output"]), (Some("succeeded"), &json!({"total": 15})), "{execution}");
    assert_eq!(execution["trigger"]["kind"], "api");
    let paths: Vec<&str> = execution["steps"].as_array().unwrap().iter().map(|s| s["path"].as_str().unwrap()).collect();
    for path in ["price", "check", "note", "answer"] {
        assert!(paths.contains(&path), "{path} missing: {paths:?}");
    }
    assert!(execution["started_at"].is_string() && execution["finished_at"].is_string(), "{execution}");

    // A failure is stored too, and named to the caller.
    let (status, body) = call("/apis/inline/v1/pure", json!({"qty": 50})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_GATEWAY, Some("integration_failed")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("too large: 150"), "{body}");
    let failed = body["error"]["execution_id"].as_str().unwrap();
    let (_, execution) = owner_call(&app, &owner, Method::GET, &format!("/api/executions/{failed}"), None).await;
    assert_eq!(execution["state"], "failed", "{execution}");
    assert!(execution["steps"].as_array().unwrap().iter().any(|s| s["path"] == "check/branches[0]/refuse" && s["state"] == "failed"), "{execution}");

    // An integration with a step that is not pure runs on the tenant's worker, as before.
    let (status, body) = call("/apis/inline/v1/waits", json!({})).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"waited": true})));

    // The executions' metrics count the inline runs too.
    let address = app.metrics_address.expect("metrics.listen is set");
    let metrics = reqwest::get(format!("http://{address}/metrics")).await.unwrap().text().await.unwrap();
    let counted = |state: &str| {
        metrics.lines().find(|l| l.starts_with("tessera_executions_finished_total") && l.contains("acme") && l.contains(state)).map(|l| l.to_string())
    };
    assert!(counted("succeeded").is_some() && counted("failed").is_some(), "{metrics}");

    // A deleted integration runs nothing.
    let (status, _) = owner_call(&app, &owner, Method::DELETE, "/api/integrations/pure", None).await;
    assert!(status.is_success(), "{status}");
    let (status, body) = call("/apis/inline/v1/pure", json!({"qty": 1})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // A deleted API is gone at once on the node that deleted it, though the
    // node keeps definitions it read for a second.
    let (status, body) = call("/apis/inline/v1/waits", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = owner_call(&app, &owner, Method::DELETE, "/api/apis/inline", None).await;
    assert!(status.is_success(), "{status}");
    let (status, body) = call("/apis/inline/v1/waits", json!({})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("api_not_found")), "{body}");
}
