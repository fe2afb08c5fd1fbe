//! Steps that reach other systems: `http` against a local recording server
//! (templates, every auth kind, OAuth token caching, answers and failures,
//! idempotency keys, secrets kept out of records), `sql` against a fresh
//! database on the local PostgreSQL, and testing connections for real.

use std::{
    collections::BTreeMap,
    net::TcpListener,
    sync::{Arc, Mutex},
};

use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tessera_tests::{connect, connection, spawn_app, status_and_json, step, target_database, TestApp};

/// One request the test server received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: String,
    headers: BTreeMap<String, String>,
    body: String,
}

#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<Seen>>,
    tokens_issued: Mutex<u32>,
}

/// A local HTTP server that records every request and answers by path:
/// `/token` (OAuth, client `client-1`/`cs-secret`), `/text`, `/fail` (500),
/// `/flaky` (500 to the first request with a given `Idempotency-Key`, 200
/// to the next), `/echo` (the request's headers as JSON), `/strict` (401
/// for the first token), anything else JSON.
struct TestServer {
    base: String,
    recorder: Arc<Recorder>,
}

impl TestServer {
    fn start() -> Self {
        let recorder = Arc::new(Recorder::default());
        Self { base: tessera_tests::serve_locally(recorder.clone(), answer), recorder }
    }

    fn seen(&self, path: &str) -> Vec<Seen> {
        self.recorder.seen.lock().unwrap().iter().filter(|s| s.path == path).cloned().collect()
    }

    fn tokens_issued(&self) -> u32 {
        *self.recorder.tokens_issued.lock().unwrap()
    }
}

async fn answer(request: HttpRequest, body: web::Bytes, recorder: web::Data<Recorder>) -> HttpResponse {
    let headers: BTreeMap<String, String> =
        request.headers().iter().map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or_default().to_string())).collect();
    let seen = Seen {
        method: request.method().to_string(),
        path: request.path().to_string(),
        query: request.query_string().to_string(),
        headers: headers.clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    recorder.seen.lock().unwrap().push(seen);
    let authorization = headers.get("authorization").cloned().unwrap_or_default();
    match request.path() {
        "/token" => {
            let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("client-1:cs-secret"));
            if authorization != expected {
                return HttpResponse::Unauthorized().json(json!({"error": "invalid_client"}));
            }
            let mut issued = recorder.tokens_issued.lock().unwrap();
            *issued += 1;
            HttpResponse::Ok().json(json!({"access_token": format!("tok-{issued}"), "token_type": "bearer", "expires_in": 3600}))
        }
        "/text" => HttpResponse::Ok().content_type("text/plain").body("hello text"),
        "/fail" => HttpResponse::InternalServerError().body("upstream broke down"),
        "/flaky" => {
            let key = headers.get("idempotency-key");
            let seen = recorder.seen.lock().unwrap();
            match seen.iter().filter(|s| s.path == "/flaky" && s.headers.get("idempotency-key") == key).count() {
                1 => HttpResponse::InternalServerError().body("failed before it was done"),
                _ => HttpResponse::Ok().json(json!({"done": key})),
            }
        }
        "/echo" => HttpResponse::Ok().json(json!({"headers": headers})),
        "/strict" if authorization == "Bearer tok-1" => HttpResponse::Unauthorized().finish(),
        path => HttpResponse::Ok().json(json!({"ok": true, "path": path})),
    }
}

/// Definition documents as one file (JSON documents are YAML).
fn file(docs: &[Value]) -> String {
    docs.iter().map(Value::to_string).collect::<Vec<_>>().join("\n---\n")
}

fn integration(name: &str, steps: Value) -> Value {
    json!({"apiVersion": "tessera.dev/v1", "kind": "Integration", "metadata": {"name": name}, "spec": {"steps": steps}})
}

/// Run `name` with `body` and wait for its end.
async fn run(app: &TestApp, token: &str, name: &str, body: Value) -> Value {
    let path = format!("/api/integrations/{name}/run?wait=true");
    let (status, execution) = status_and_json(app.tenant_request(Method::POST, "acme", &path).bearer_auth(token).json(&body)).await;
    assert_eq!(status, StatusCode::OK, "{execution}");
    execution
}

/// The idempotency key of step `path` of execution `id` (`.step.idempotency_key`).
fn idempotency_key(id: &str, path: &str) -> String {
    tessera_runtime::execution::idempotency_key(id.parse().unwrap(), path)
}

/// The execution as the API shows it, as text.
async fn record_text(app: &TestApp, token: &str, execution: &Value) -> String {
    let path = format!("/api/executions/{}", execution["id"].as_str().unwrap());
    app.tenant_request(Method::GET, "acme", &path).bearer_auth(token).send().await.unwrap().text().await.unwrap()
}

#[tokio::test]
async fn http_steps_send_templated_requests_with_each_auth_and_read_the_answers() {
    let server = TestServer::start();
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let base = &server.base;
    let steps = json!([
        {"name": "fetch", "http": {
            "url": format!("{base}/orders/${{{{ .trigger.body.id }}}}"),
            "query": {"page": "${{ .trigger.body.page }}"},
            "headers": {"X-Trace": "t-${{ .trigger.body.id }}"},
            "connection": "shop-key"}},
        {"name": "store", "http": {
            "method": "POST", "url": format!("{base}/store"), "connection": "shop-basic",
            "body": {"id": "${{ .trigger.body.id }}", "note": "order ${{ .trigger.body.id }}", "fixed": [1, true]}}},
        {"name": "greet", "http": {"url": format!("{base}/text"), "response": "text", "connection": "shop-bearer"}},
        {"name": "echo", "http": {"method": "PUT", "url": format!("{base}/echo"), "connection": "shop-bearer"}},
    ]);
    let docs = [
        connection("shop-key", json!({"api_key": {"header": "X-Api-Key", "value": "key-s3cret"}})),
        connection("shop-basic", json!({"basic": {"username": "shop", "password": "basic-s3cret"}})),
        connection("shop-bearer", json!({"bearer": {"token": "bearer-s3cret"}})),
        integration("calls", steps),
    ];
    app.apply_yaml("acme", &owner, &file(&docs)).await;

    let execution = run(&app, &owner, "calls", json!({"id": 42, "page": 2})).await;
    assert_eq!(execution["state"], "succeeded", "{execution}");
    let id = execution["id"].as_str().unwrap();

    let fetch = step(&execution, "fetch")["output"].clone();
    assert_eq!(fetch["status"], 200);
    assert_eq!(fetch["body"], json!({"ok": true, "path": "/orders/42"}));
    assert_eq!(fetch["headers"]["content-type"], "application/json");
    let got = &server.seen("/orders/42")[0];
    assert_eq!((got.method.as_str(), got.query.as_str()), ("GET", "page=2"));
    assert_eq!(got.headers["x-trace"], "t-42");
    assert_eq!(got.headers["x-api-key"], "key-s3cret");
    assert!(!got.headers.contains_key("idempotency-key"), "a GET is not keyed");

    let stored = &server.seen("/store")[0];
    assert_eq!(stored.method, "POST");
    let sent: Value = serde_json::from_str(&stored.body).unwrap();
    assert_eq!(sent, json!({"id": 42, "note": "order 42", "fixed": [1, true]}), "a lone placeholder keeps its type");
    assert_eq!(stored.headers["content-type"], "application/json");
    assert_eq!(stored.headers["idempotency-key"], idempotency_key(id, "store"));
    let basic = base64::engine::general_purpose::STANDARD.encode("shop:basic-s3cret");
    assert_eq!(stored.headers["authorization"], format!("Basic {basic}"));

    assert_eq!(step(&execution, "greet")["output"]["body"], "hello text");
    assert_eq!(server.seen("/text")[0].headers["authorization"], "Bearer bearer-s3cret");
    // A server that echoes the credentials does not get them into the record.
    assert_eq!(step(&execution, "echo")["output"]["body"]["headers"]["authorization"], "Bearer ***");
    assert_eq!(server.seen("/echo")[0].headers["idempotency-key"], idempotency_key(id, "echo"));

    let record = record_text(&app, &owner, &execution).await;
    for secret in ["key-s3cret", "basic-s3cret", "bearer-s3cret", &basic] {
        assert!(!record.contains(secret), "{secret} leaked into {record}");
    }
}

#[tokio::test]
async fn an_http_step_sends_the_same_idempotency_key_on_every_retry_and_another_step_another() {
    let server = TestServer::start();
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let flaky = format!("{}/flaky", server.base);
    let retry = json!({"attempts": 3, "on": ["http_5xx"], "backoff": {"initial": "10ms"}});
    let steps = json!([
        // A GET is not keyed by default: `idempotency_key: true` keys it.
        {"name": "reserve", "http": {"url": flaky, "idempotency_key": true}, "retry": retry},
        {"name": "charge", "http": {"method": "POST", "url": flaky, "idempotency_key": true}, "retry": retry},
        // The same key through a template, in a header of the step's choosing.
        {"name": "ship", "http": {"method": "PUT", "url": flaky, "idempotency_key": false,
            "headers": {"Idempotency-Key": "${{ .step.idempotency_key }}", "X-Attempt": "${{ .step.attempt }}"}}, "retry": retry},
        // A key the step sets itself wins over the shorthand.
        {"name": "own", "http": {"method": "POST", "url": format!("{}/own", server.base), "idempotency_key": true,
            "headers": {"Idempotency-Key": "order-${{ .trigger.body.id }}"}}},
        {"name": "unkeyed", "http": {"method": "POST", "url": format!("{}/unkeyed", server.base), "idempotency_key": false}},
    ]);
    app.apply_yaml("acme", &owner, &file(&[integration("pay", steps)])).await;

    let execution = run(&app, &owner, "pay", json!({"id": 42})).await;
    assert_eq!(execution["state"], "succeeded", "{execution}");
    let id = execution["id"].as_str().unwrap();
    let requests = server.seen("/flaky");
    let sent: Vec<(&str, &str)> =
        requests.iter().map(|r| (r.method.as_str(), r.headers["idempotency-key"].as_str())).collect();
    let (reserve, charge, ship) = (idempotency_key(id, "reserve"), idempotency_key(id, "charge"), idempotency_key(id, "ship"));
    let expected = [("GET", &reserve), ("GET", &reserve), ("POST", &charge), ("POST", &charge), ("PUT", &ship), ("PUT", &ship)];
    assert_eq!(sent, expected.map(|(method, key)| (method, key.as_str())), "each retry sends its step's key again");
    let attempts: Vec<&str> = requests.iter().filter_map(|r| r.headers.get("x-attempt").map(String::as_str)).collect();
    assert_eq!(attempts, ["1", "2"], "the key stays, the attempt counts");
    for (name, key) in [("reserve", &reserve), ("charge", &charge), ("ship", &ship)] {
        assert_eq!(step(&execution, name)["attempt"], 2, "{execution}");
        assert_eq!(step(&execution, name)["output"]["body"], json!({"done": key}));
    }
    assert_eq!(server.seen("/own")[0].headers["idempotency-key"], "order-42");
    assert!(!server.seen("/unkeyed")[0].headers.contains_key("idempotency-key"));
    assert!(!record_text(&app, &owner, &execution).await.contains("\"step\":{"), "`.step` is not recorded");
}

#[tokio::test]
async fn oauth2_tokens_are_fetched_once_cached_and_refetched_after_a_401() {
    let server = TestServer::start();
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let base = &server.base;
    let call = |name: &str, path: &str| json!({"name": name, "http": {"url": format!("{base}{path}"), "connection": "auth"}});
    let oauth = json!({"oauth2_client_credentials": {
        "token_url": format!("{base}/token"), "client_id": "client-1", "client_secret": "cs-secret", "scopes": ["read", "write"]}});
    let docs = [connection("auth", oauth), integration("twice", json!([call("one", "/a"), call("two", "/b"), call("three", "/strict")]))];
    app.apply_yaml("acme", &owner, &file(&docs)).await;

    let execution = run(&app, &owner, "twice", json!({})).await;
    assert_eq!(execution["state"], "succeeded", "{execution}");
    let token_request = &server.seen("/token")[0];
    assert_eq!(token_request.method, "POST");
    assert_eq!(token_request.body, "grant_type=client_credentials&scope=read+write");
    assert_eq!(server.seen("/a")[0].headers["authorization"], "Bearer tok-1");
    assert_eq!(server.seen("/b")[0].headers["authorization"], "Bearer tok-1", "the token is cached");
    let strict = server.seen("/strict");
    assert_eq!(strict.len(), 2, "refused once, then sent again with a new token");
    assert_eq!(strict[1].headers["authorization"], "Bearer tok-2");
    assert_eq!(server.tokens_issued(), 2);

    let again = run(&app, &owner, "twice", json!({})).await;
    assert_eq!(again["state"], "succeeded", "{again}");
    assert_eq!(server.tokens_issued(), 2, "the next execution reuses the cached token");
    let record = record_text(&app, &owner, &execution).await;
    assert!(!record.contains("cs-secret") && !record.contains("tok-1"), "{record}");
}

/// A node keeps opened connections for a second (`resources::cache`); a
/// connection changed or deleted through the API is still what the very
/// next step sees.
#[tokio::test]
async fn the_next_step_after_a_connection_changes_or_is_deleted_sees_the_change() {
    let server = TestServer::start();
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let call = json!([{"name": "call", "http": {"url": format!("{}/text", server.base), "response": "text", "connection": "upstream"}}]);
    let with_token = |token: &str| file(&[connection("upstream", json!({"bearer": {"token": token}})), integration("calls", call.clone())]);

    app.apply_yaml("acme", &owner, &with_token("tok-1")).await;
    assert_eq!(run(&app, &owner, "calls", json!({})).await["state"], "succeeded");
    app.apply_yaml("acme", &owner, &with_token("tok-2")).await;
    assert_eq!(run(&app, &owner, "calls", json!({})).await["state"], "succeeded");
    let sent: Vec<String> = server.seen("/text").iter().map(|s| s.headers["authorization"].clone()).collect();
    assert_eq!(sent, ["Bearer tok-1", "Bearer tok-2"], "the changed connection is used at once");

    let delete = app.tenant_request(Method::DELETE, "acme", "/api/connections/upstream").bearer_auth(&owner);
    assert_eq!(delete.send().await.unwrap().status(), StatusCode::NO_CONTENT);
    let execution = run(&app, &owner, "calls", json!({})).await;
    assert_eq!(execution["state"], "failed", "{execution}");
    assert_eq!(step(&execution, "call")["error"]["code"], "connection_unavailable");
    assert_eq!(server.seen("/text").len(), 2, "nothing was sent without the connection");
}

fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn failing_answers_and_unreachable_servers_fail_the_step_with_a_clear_code() {
    let server = TestServer::start();
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let base = &server.base;
    let one = |url: String| json!([{"name": "call", "http": {"method": "POST", "url": url}}]);
    let docs = [
        integration("broken", one(format!("{base}/fail"))),
        integration("not-json", one(format!("{base}/text"))),
        integration("nowhere", one(format!("http://127.0.0.1:{}/x", closed_port()))),
    ];
    app.apply_yaml("acme", &owner, &file(&docs)).await;

    let failed = |execution: &Value| {
        assert_eq!(execution["state"], "failed", "{execution}");
        let error = step(execution, "call")["error"].clone();
        (error["code"].as_str().unwrap().to_string(), error["message"].as_str().unwrap().to_string())
    };
    let (code, message) = failed(&run(&app, &owner, "broken", json!({})).await);
    assert_eq!(code, "http_status");
    assert!(message.contains("500") && message.contains("upstream broke down"), "{message}");
    assert_eq!(server.seen("/fail").len(), 1, "no retry policy, one attempt");

    let (code, message) = failed(&run(&app, &owner, "not-json", json!({})).await);
    assert_eq!(code, "invalid_response");
    assert!(message.contains("not JSON") && message.contains("response: text"), "{message}");

    let (code, _) = failed(&run(&app, &owner, "nowhere", json!({})).await);
    assert_eq!(code, "connection_failed");
}

#[tokio::test]
async fn sql_steps_run_statements_with_typed_parameters() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let (_, url) = target_database().await;
    connect(&url)
        .await
        .batch_execute(
            "CREATE TABLE orders (id int4 PRIMARY KEY, sku text, qty int8, price numeric, paid bool, \
             meta jsonb, ref uuid, placed timestamptz, due date)",
        )
        .await
        .unwrap();
    let insert = json!({"name": "insert", "sql": {"connection": "shop-db",
        "statement": "INSERT INTO orders VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        "params": [".trigger.body.id", ".trigger.body.sku", ".trigger.body.qty", ".trigger.body.price", "true",
                   ".trigger.body.meta", ".trigger.body.ref", ".trigger.body.placed", "\"2024-06-01\""]}});
    let select = json!({"name": "select", "sql": {"connection": "shop-db",
        "statement": "SELECT id, sku, qty, price, paid, meta, ref, placed, due, null::text AS nothing FROM orders WHERE id = $1",
        "params": [".trigger.body.id"]}});
    let one = |name: &str, statement: &str, params: Value| {
        integration(name, json!([{"name": "q", "sql": {"connection": "shop-db", "statement": statement, "params": params}}]))
    };
    let docs = [
        connection("shop-db", json!({"postgres": {"url": url}})),
        integration("orders", json!([insert, select])),
        one("wrong-type", "SELECT * FROM orders WHERE id = $1", json!(["\"abc\""])),
        one("bad-sql", "SELECT * FROM missing_table", json!([])),
    ];
    app.apply_yaml("acme", &owner, &file(&docs)).await;

    let order = json!({"id": 7, "sku": "A-1", "qty": 3, "price": 9.5, "meta": {"gift": true},
        "ref": "0193a3c4-1111-7000-8000-000000000001", "placed": "2024-05-01T12:00:00Z"});
    let execution = run(&app, &owner, "orders", order).await;
    assert_eq!(execution["state"], "succeeded", "{execution}");
    assert_eq!(step(&execution, "insert")["output"], json!({"rows": [], "row_count": 1}));
    let row = json!({"id": 7, "sku": "A-1", "qty": 3, "price": 9.5, "paid": true, "meta": {"gift": true},
        "ref": "0193a3c4-1111-7000-8000-000000000001", "placed": "2024-05-01T12:00:00Z", "due": "2024-06-01", "nothing": null});
    assert_eq!(step(&execution, "select")["output"], json!({"rows": [row], "row_count": 1}));

    let wrong = run(&app, &owner, "wrong-type", json!({})).await;
    let error = &step(&wrong, "q")["error"];
    assert_eq!(error["code"], "invalid_parameter", "{wrong}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("$1") && message.contains("int4") && message.contains("\"abc\""), "{message}");

    let bad = run(&app, &owner, "bad-sql", json!({})).await;
    let error = &step(&bad, "q")["error"];
    assert_eq!(error["code"], "sql_failed", "{bad}");
    assert!(error["message"].as_str().unwrap().contains("missing_table"), "{error}");
}

#[tokio::test]
async fn testing_a_connection_tries_it_for_real() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let (_, url) = target_database().await;
    let port = closed_port();
    let docs = [
        connection("db", json!({"postgres": {"url": url}})),
        connection("db-down", json!({"postgres": {"url": format!("postgres://app:pg-s3cret@127.0.0.1:{port}/x")}})),
        connection("mq", json!({"amqp": {"url": "amqp://guest:guest@127.0.0.1:5672/%2f"}})),
        connection("mq-down", json!({"amqp": {"url": format!("amqp://app:mq-s3cret@127.0.0.1:{port}/%2f")}})),
        connection("token", json!({"bearer": {"token": "bearer-s3cret"}})),
    ];
    app.apply_yaml("acme", &owner, &file(&docs)).await;
    let test = |token: String, name: &str| {
        let path = format!("/api/connections/{name}/test");
        let request = app.tenant_request(Method::POST, "acme", &path).bearer_auth(token);
        async move { status_and_json(request).await }
    };

    for (name, ok) in [("db", true), ("db-down", false), ("mq", true), ("mq-down", false), ("token", true)] {
        let (status, answer) = test(owner.clone(), name).await;
        assert_eq!(status, StatusCode::OK, "{name}: {answer}");
        assert_eq!(answer["ok"], ok, "{name}: {answer}");
        assert!(!answer["detail"].as_str().unwrap().is_empty(), "{name}: {answer}");
        assert!(!answer.to_string().contains("s3cret"), "{name}: {answer}");
    }
    assert!(test(owner.clone(), "token").await.1["detail"].as_str().unwrap().contains("first use"));

    let editor = app.user_with_role(&acme, "editor").await;
    assert_eq!(test(editor, "db").await.0, StatusCode::OK);
    let viewer = app.user_with_role(&acme, "viewer").await;
    let (status, answer) = test(viewer, "db").await;
    assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")), "{answer}");
    let (status, answer) = test(owner, "nope").await;
    assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")), "{answer}");
}
