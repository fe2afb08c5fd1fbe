//! The egress gate, as a tenant editor would probe it and as the platform
//! owner manages it: the node's own API, the platform's own database, Unix
//! sockets, metadata addresses, redirects, credentials bound to hosts,
//! per-tenant rules through the API (applied without a restart), allowlist
//! mode, and the CLI.

use std::sync::{Arc, Mutex};

use actix_web::{web, HttpRequest, HttpResponse};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tessera_tests::{connection, spawn_app, spawn_app_with, status_and_json, target_database, TestApp};

/// A local server that records each request's path and headers; `/to?url=…`
/// answers 302 to that URL.
struct Mock {
    base: String,
    seen: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Mock {
    fn start() -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        Self { base: tessera_tests::serve_locally(seen.clone(), record), seen }
    }

    fn port(&self) -> u16 {
        self.base.rsplit(':').next().unwrap().parse().unwrap()
    }

    fn seen(&self) -> Vec<(String, Value)> {
        self.seen.lock().unwrap().clone()
    }
}

async fn record(request: HttpRequest, seen: web::Data<Mutex<Vec<(String, Value)>>>) -> HttpResponse {
    let headers: serde_json::Map<String, Value> =
        request.headers().iter().map(|(k, v)| (k.as_str().to_string(), json!(v.to_str().unwrap_or_default()))).collect();
    seen.lock().unwrap().push((request.path().to_string(), Value::Object(headers)));
    match request.path() {
        "/to" => {
            let to = request.query_string().strip_prefix("url=").unwrap_or_default();
            HttpResponse::Found().insert_header(("location", to.to_string())).finish()
        }
        path => HttpResponse::Ok().json(json!({"path": path})),
    }
}

/// An integration of one `http` GET step `call` to `url`, with `connection`.
fn get(name: &str, url: &str, connection: Option<&str>) -> Value {
    let mut http = json!({"method": "GET", "url": url, "timeout": "2s"});
    if let Some(c) = connection {
        http["connection"] = json!(c);
    }
    json!({"apiVersion": "tessera.dev/v1", "kind": "Integration", "metadata": {"name": name},
        "spec": {"steps": [{"name": "call", "http": http}]}})
}

fn query(name: &str, connection: &str) -> Value {
    json!({"apiVersion": "tessera.dev/v1", "kind": "Integration", "metadata": {"name": name},
        "spec": {"steps": [{"name": "call", "sql": {"connection": connection, "statement": "SELECT current_database() AS db"}}]}})
}

async fn apply(app: &TestApp, token: &str, docs: &[Value]) {
    let text = docs.iter().map(Value::to_string).collect::<Vec<_>>().join("\n---\n");
    app.apply_yaml("acme", token, &text).await;
}

/// Run `name` and wait: the step `call`'s error (`null` when it succeeded).
async fn call_error(app: &TestApp, token: &str, name: &str) -> Value {
    let path = format!("/api/integrations/{name}/run?wait=true");
    let (status, execution) = status_and_json(app.tenant_request(Method::POST, "acme", &path).bearer_auth(token).json(&json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{execution}");
    let step = execution["steps"].as_array().unwrap().iter().find(|s| s["path"] == "call").cloned();
    step.unwrap_or_else(|| panic!("no step `call` in {execution}"))["error"].clone()
}

fn assert_denied(error: &Value, host: &str, rule: &str) {
    assert_eq!(error["code"], "egress_denied", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains(host) && message.contains(rule), "the refusal names {host} and `{rule}`: {message}");
}

/// An editor of tenant `acme`.
async fn editor(app: &TestApp) -> String {
    let acme = app.create_tenant("acme").await;
    app.user_with_role(&acme, "editor").await
}

#[tokio::test]
async fn an_http_step_to_the_nodes_own_platform_api_is_denied_on_a_node_that_denies_loopback() {
    let app = spawn_app_with(|c| c.egress.allow_loopback = false).await;
    let token = editor(&app).await;
    let mock = Mock::start();
    let node = format!("http://127.0.0.1:{}/api/platform/tenants", app.port);
    apply(
        &app,
        &token,
        &[
            get("platform", &node, None),
            get("by-name", &format!("http://localhost:{}/x", mock.port()), None),
            get("by-address", &format!("{}/x", mock.base), None),
            get("metadata", "http://169.254.169.254/latest/meta-data/", None),
        ],
    )
    .await;

    // The node's own endpoint is named first, before the loopback rule.
    assert_denied(&call_error(&app, &token, "platform").await, &format!("127.0.0.1:{}", app.port), "a node's API");
    assert_denied(&call_error(&app, &token, "by-name").await, &format!("localhost:{}", mock.port()), "loopback");
    assert_denied(&call_error(&app, &token, "by-address").await, &format!("127.0.0.1:{}", mock.port()), "loopback");
    assert_denied(&call_error(&app, &token, "metadata").await, "169.254.169.254:80", "link-local");
    assert!(mock.seen().is_empty(), "nothing was sent: {:?}", mock.seen());
}

#[tokio::test]
async fn the_nodes_own_api_stays_out_of_reach_where_loopback_is_allowed() {
    let app = spawn_app().await;
    let token = editor(&app).await;
    let mock = Mock::start();
    apply(
        &app,
        &token,
        &[get("platform", &format!("http://127.0.0.1:{}/api/platform/tenants", app.port), None), get("mock", &format!("{}/x", mock.base), None)],
    )
    .await;
    assert_denied(&call_error(&app, &token, "platform").await, &format!("127.0.0.1:{}", app.port), "a node's API");
    assert_eq!(call_error(&app, &token, "mock").await, Value::Null, "another loopback port is allowed here");
}

#[tokio::test]
async fn a_postgres_connection_to_the_platforms_own_database_or_a_unix_socket_is_denied() {
    let app = spawn_app().await;
    let token = editor(&app).await;
    let (target, target_url) = target_database().await;
    apply(
        &app,
        &token,
        &[
            connection("own", json!({"postgres": {"url": app.database_url}})),
            connection("socket", json!({"postgres": {"url": "postgres://postgres@localhost/tessera?host=/var/run/postgresql"}})),
            connection("target", json!({"postgres": {"url": target_url}})),
            query("own", "own"),
            query("socket", "socket"),
            query("target", "target"),
        ],
    )
    .await;

    let platform_db = app.database_url.split('@').nth(1).unwrap().split('/').next().unwrap().to_string();
    assert_denied(&call_error(&app, &token, "own").await, &platform_db, "the platform's database");
    assert_denied(&call_error(&app, &token, "socket").await, "/var/run/postgresql", "Unix socket");
    let path = "/api/integrations/target/run?wait=true";
    let (_, execution) = status_and_json(app.tenant_request(Method::POST, "acme", path).bearer_auth(&token).json(&json!({}))).await;
    assert_eq!(execution["state"], "succeeded", "another server is reachable: {execution}");
    assert_eq!(execution["output"]["rows"][0]["db"], json!(target));

    for name in ["own", "socket"] {
        let test = app.tenant_request(Method::POST, "acme", &format!("/api/connections/{name}/test")).bearer_auth(&token);
        let (status, body) = status_and_json(test).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("egress_denied")), "{name}: {body}");
    }
}

#[tokio::test]
async fn each_redirect_hop_goes_through_the_gate_and_credentials_never_follow_to_another_host() {
    let app = spawn_app().await;
    let token = editor(&app).await;
    let (first, second) = (Mock::start(), Mock::start());
    let hop = |to: &str| format!("{}/to?url={to}", first.base);
    apply(
        &app,
        &token,
        &[
            connection("key", json!({"api_key": {"header": "X-Api-Key", "value": "key-s3cret"}})),
            connection("bearer", json!({"bearer": {"token": "bearer-s3cret"}})),
            connection("key-for-second", json!({"api_key": {"header": "X-Api-Key", "value": "key-s3cret", "hosts": [format!("127.0.0.1:{}", second.port())]}})),
            get("to-node", &hop(&format!("http://127.0.0.1:{}/api/platform/tenants", app.port)), None),
            get("to-metadata", &hop("http://169.254.169.254/latest/meta-data/"), None),
            get("key-across", &hop(&format!("{}/landing", second.base)), Some("key")),
            get("bearer-across", &hop(&format!("{}/landing", second.base)), Some("bearer")),
            get("key-same-host", &hop(&format!("{}/landing", first.base)), Some("key")),
            get("bound-elsewhere", &format!("{}/x", first.base), Some("key-for-second")),
            get("bound-here", &format!("{}/x", second.base), Some("key-for-second")),
        ],
    )
    .await;

    assert_denied(&call_error(&app, &token, "to-node").await, &format!("127.0.0.1:{}", app.port), "a node's API");
    assert_denied(&call_error(&app, &token, "to-metadata").await, "169.254.169.254", "link-local");
    for name in ["key-across", "bearer-across"] {
        assert_eq!(call_error(&app, &token, name).await, Value::Null, "{name}");
    }
    let landed = second.seen();
    assert_eq!(landed.len(), 2, "{landed:?}");
    for (_, headers) in &landed {
        assert!(headers.get("x-api-key").is_none() && headers.get("authorization").is_none(), "credentials followed: {headers}");
    }
    assert_eq!(call_error(&app, &token, "key-same-host").await, Value::Null);
    let on_first = first.seen();
    let landing = on_first.iter().find(|(path, _)| path == "/landing").expect("the same-host hop landed");
    assert_eq!(landing.1["x-api-key"], "key-s3cret", "a redirect to the same host keeps the credentials");

    let before = first.seen().len();
    let error = call_error(&app, &token, "bound-elsewhere").await;
    assert_eq!(error["code"], "credential_not_for_host", "{error}");
    assert_eq!(first.seen().len(), before, "nothing was sent to a host the credentials are not for");
    assert_eq!(call_error(&app, &token, "bound-here").await, Value::Null);
    assert_eq!(second.seen().last().unwrap().1["x-api-key"], "key-s3cret");
}

/// `POST`/`DELETE /api/platform/tenants/acme/egress/{action}` as the platform owner.
async fn rules(app: &TestApp, owner: &str, method: Method, action: &str, rules: &[&str]) -> (StatusCode, Value) {
    let path = format!("/api/platform/tenants/acme/egress/{action}");
    status_and_json(app.platform_request(method, &path).bearer_auth(owner).json(&json!({"rules": rules}))).await
}

#[tokio::test]
async fn the_platform_owner_opens_and_closes_private_addresses_per_tenant_without_a_restart() {
    let app = spawn_app().await;
    let token = editor(&app).await;
    let owner = app.platform_token().await;
    apply(&app, &token, &[get("erp", "http://10.255.255.1:8080/orders", None)]).await;
    assert_denied(&call_error(&app, &token, "erp").await, "10.255.255.1:8080", "a private address");

    let (status, shown) = rules(&app, &owner, Method::POST, "allow", &["10.255.255.0/24:8080"]).await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["allow"], json!(["10.255.255.0/24:8080"]));
    assert_eq!(shown["platform"]["allow_private"], false);
    let error = call_error(&app, &token, "erp").await;
    assert_ne!(error["code"], "egress_denied", "allowed now, so the step tried to connect: {error}");

    let (status, _) = rules(&app, &owner, Method::POST, "deny", &["10.255.255.1"]).await;
    assert_eq!(status, StatusCode::OK);
    assert_denied(&call_error(&app, &token, "erp").await, "10.255.255.1:8080", "the tenant's deny rule `10.255.255.1`");
    let (_, shown) = rules(&app, &owner, Method::DELETE, "deny", &["10.255.255.1"]).await;
    assert_eq!(shown["deny"], json!([]));
    let (_, shown) = rules(&app, &owner, Method::DELETE, "allow", &["10.255.255.0/24:8080"]).await;
    assert_eq!(shown["allow"], json!([]));
    assert_denied(&call_error(&app, &token, "erp").await, "10.255.255.1:8080", "a private address");

    let (status, body) = rules(&app, &owner, Method::POST, "allow", &["10.0.0.0/33"]).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_egress_rule")), "{body}");
    let (status, body) = rules(&app, &owner, Method::POST, "allow", &[]).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_egress_rule")), "{body}");
    let (status, body) = rules(&app, &owner, Method::POST, "permit", &["10.0.0.1"]).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")), "{body}");
    let (status, body) = status_and_json(app.platform_request(Method::GET, "/api/platform/tenants/nobody/egress").bearer_auth(&owner)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("tenant_not_found")), "{body}");
    let as_tenant = app.platform_request(Method::GET, "/api/platform/tenants/acme/egress").bearer_auth(&token);
    assert_eq!(status_and_json(as_tenant).await.0, StatusCode::UNAUTHORIZED, "a tenant's token is no platform token");
}

#[tokio::test]
async fn allowlist_mode_reaches_only_what_a_rule_names() {
    let app = spawn_app_with(|c| c.egress.mode = tessera_runtime::egress::EgressMode::Allowlist).await;
    let token = editor(&app).await;
    let owner = app.platform_token().await;
    let (listed, other) = (Mock::start(), Mock::start());
    apply(&app, &token, &[get("listed", &format!("{}/x", listed.base), None), get("other", &format!("{}/x", other.base), None)]).await;
    assert_denied(&call_error(&app, &token, "listed").await, &format!("127.0.0.1:{}", listed.port()), "allowlist");

    rules(&app, &owner, Method::POST, "allow", &[&format!("127.0.0.1:{}", listed.port())]).await;
    assert_eq!(call_error(&app, &token, "listed").await, Value::Null);
    assert_denied(&call_error(&app, &token, "other").await, &format!("127.0.0.1:{}", other.port()), "allowlist");
    assert!(other.seen().is_empty());
}

#[tokio::test]
async fn every_node_of_the_platform_is_out_of_reach_not_only_the_one_running_the_step() {
    let app = spawn_app().await;
    let other = app.add_node().await;
    let token = editor(&app).await;
    let (first, second) = (app.port, other.port);
    apply(
        &app,
        &token,
        &[get("first", &format!("http://127.0.0.1:{first}/healthz"), None), get("second", &format!("http://127.0.0.1:{second}/healthz"), None)],
    )
    .await;
    // One of the two is the node that runs the step, the other its peer, which
    // the gate learns of from the nodes' registrations within a second or so.
    let both_denied = tessera_tests::eventually(std::time::Duration::from_secs(10), || async {
        call_error(&app, &token, "first").await["code"] == "egress_denied" && call_error(&app, &token, "second").await["code"] == "egress_denied"
    });
    assert!(both_denied.await, "a node of the platform was reachable");
    for (name, port) in [("first", first), ("second", second)] {
        let message = call_error(&app, &token, name).await["message"].as_str().unwrap().to_string();
        assert!(message.contains(&format!("127.0.0.1:{port}")) && message.contains("node"), "{message}");
    }
    other.stop().await;
}

#[tokio::test]
async fn a_deny_rule_stops_a_running_queue_consumer_and_its_removal_brings_it_back() {
    use lapin::{options::*, types::FieldTable, BasicProperties, Connection, ConnectionProperties};
    const BROKER: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
    let app = spawn_app().await;
    let token = editor(&app).await;
    let owner = app.platform_token().await;
    let broker = Connection::connect(BROKER, ConnectionProperties::default()).await.expect("RabbitMQ at 127.0.0.1:5672");
    let channel = broker.create_channel().await.unwrap();
    let queue = format!("tessera-test-egress-{}", uuid::Uuid::new_v4().simple());
    channel.queue_declare(&queue, QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    let state = || async {
        let q = channel.queue_declare(&queue, QueueDeclareOptions { passive: true, ..Default::default() }, FieldTable::default()).await.unwrap();
        (q.message_count(), q.consumer_count())
    };
    let consumer = json!({"apiVersion": "tessera.dev/v1", "kind": "Integration", "metadata": {"name": "inbox"}, "spec": {
        "triggers": [{"queue": {"connection": "rabbit", "queue": queue}}],
        "steps": [{"name": "read", "transform": {"expression": ".trigger.body"}}]}});
    apply(&app, &token, &[connection("rabbit", json!({"amqp": {"url": BROKER}})), consumer]).await;
    let wait = std::time::Duration::from_secs(20);
    assert!(tessera_tests::eventually(wait, || async { state().await.1 == 1 }).await, "the consumer never started");

    rules(&app, &owner, Method::POST, "deny", &["127.0.0.1:5672"]).await;
    assert!(tessera_tests::eventually(wait, || async { state().await.1 == 0 }).await, "the consumer kept its connection after the deny");
    let payload = serde_json::to_vec(&json!({"n": 1})).unwrap();
    channel.basic_publish("", &queue, BasicPublishOptions::default(), &payload, BasicProperties::default()).await.unwrap().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(state().await, (1, 0), "nothing consumed the message while the broker is denied");

    rules(&app, &owner, Method::DELETE, "deny", &["127.0.0.1:5672"]).await;
    assert!(tessera_tests::eventually(wait, || async { state().await == (0, 1) }).await, "the consumer did not come back");
    channel.queue_delete(&queue, QueueDeleteOptions::default()).await.unwrap();
}
