//! Every integration in `examples/` is applied as it is written and run
//! against local HTTP APIs (a scripted server on loopback), a fresh
//! PostgreSQL database standing for the company's own, and the real
//! RabbitMQ. Only what must differ per machine is given from outside:
//! connections (URLs, credentials) and tenant variables (endpoints).

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use actix_web::{web, HttpRequest, HttpResponse};
use lapin::{
    options::{BasicGetOptions, BasicPublishOptions, QueueDeclareOptions, QueueDeleteOptions},
    types::FieldTable,
    BasicProperties, Connection, ConnectionProperties,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tessera_tests::{connect, eventually, spawn_app, status_and_json, step, target_database, TestApp};

const BROKER: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const WAIT: Duration = Duration::from_secs(30);

pub(crate) fn example(file: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples").join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ---------------------------------------------------------------------------
// A scripted HTTP API: answers per (method, path) in order, the last answer
// repeating; records every request.

#[derive(Debug, Clone)]
pub(crate) struct Request {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: Value,
}

#[derive(Default)]
struct Script {
    answers: Mutex<HashMap<(String, String), VecDeque<(u16, Value)>>>,
    seen: Mutex<Vec<Request>>,
}

pub(crate) struct Api {
    pub(crate) base: String,
    script: Arc<Script>,
}

impl Api {
    pub(crate) fn start() -> Self {
        let script = Arc::new(Script::default());
        Self { base: tessera_tests::serve_locally(script.clone(), answer), script }
    }

    /// Answer `method path` with these, in order; the last one repeats.
    pub(crate) fn script(&self, method: &str, path: &str, answers: &[(u16, Value)]) {
        self.script.answers.lock().unwrap().insert((method.into(), path.into()), answers.iter().cloned().collect());
    }

    pub(crate) fn seen(&self, method: &str, path: &str) -> Vec<Request> {
        self.script.seen.lock().unwrap().iter().filter(|r| r.method == method && r.path == path).cloned().collect()
    }
}

async fn answer(request: HttpRequest, body: web::Bytes, script: web::Data<Script>) -> HttpResponse {
    let (method, path) = (request.method().to_string(), request.path().to_string());
    let headers = request.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string())).collect();
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    script.seen.lock().unwrap().push(Request { method: method.clone(), path: path.clone(), headers, body });
    let mut answers = script.answers.lock().unwrap();
    let Some(queue) = answers.get_mut(&(method, path)) else { return HttpResponse::NotFound().finish() };
    let (status, body) = if queue.len() > 1 { queue.pop_front().unwrap() } else { queue[0].clone() };
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).json(body)
}

// ---------------------------------------------------------------------------
// Tenant set-up through the API.

struct Tenant<'a> {
    app: &'a TestApp,
    /// An editor's: applying and running is an editor's job.
    token: String,
    owner: String,
}

impl<'a> Tenant<'a> {
    async fn new(app: &'a TestApp) -> Self {
        let acme = app.create_tenant("acme").await;
        let token = app.user_with_role(&acme, "editor").await;
        let owner = app.owner_token(&acme).await;
        Self { app, token, owner }
    }

    async fn apply(&self, yaml: &str) {
        self.app.apply_yaml("acme", &self.token, yaml).await;
    }

    async fn connection(&self, name: &str, spec: Value) {
        let resource = json!({"apiVersion": "tessera.dev/v1", "kind": "Connection", "metadata": {"name": name}, "spec": spec});
        self.apply(&resource.to_string()).await;
    }

    async fn variable(&self, name: &str, value: &str) {
        let request = self.app.tenant_request(Method::PUT, "acme", &format!("/api/variables/{name}"));
        let (status, body) = status_and_json(request.bearer_auth(&self.token).json(&json!({"value": value}))).await;
        assert!(status.is_success(), "{status} {body}");
    }

    async fn api_key(&self) -> String {
        let request = self.app.tenant_request(Method::POST, "acme", "/api/api-keys").bearer_auth(&self.owner);
        let (status, body) = status_and_json(request.json(&json!({"name": "shop", "role": "editor"}))).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["secret"].as_str().unwrap().to_string()
    }

    async fn run(&self, integration: &str, body: Value) -> Value {
        let path = format!("/api/integrations/{integration}/run?wait=true");
        let request = self.app.tenant_request(Method::POST, "acme", &path).bearer_auth(&self.token).json(&body);
        let (status, execution) = status_and_json(request).await;
        assert!(status == StatusCode::OK || status == StatusCode::INTERNAL_SERVER_ERROR, "{status} {execution}");
        self.execution(execution["id"].as_str().or(execution["error"]["execution_id"].as_str()).unwrap()).await
    }

    async fn execution(&self, id: &str) -> Value {
        self.app.tenant_get("acme", &self.token, &format!("/api/executions/{id}")).await.1
    }

    /// The executions of `integration`, newest first, once `count` of them have ended.
    async fn ended(&self, integration: &str, count: usize) -> Vec<Value> {
        let path = format!("/api/executions?integration={integration}");
        let finished = |items: &Value| {
            items["items"].as_array().map_or(0, |a| a.iter().filter(|e| e["state"] != "queued" && e["state"] != "running").count())
        };
        let done = eventually(WAIT, || async { finished(&self.app.tenant_get("acme", &self.token, &path).await.1) >= count }).await;
        let page = self.app.tenant_get("acme", &self.token, &path).await.1;
        assert!(done, "{integration}: fewer than {count} executions ended: {page}");
        page["items"].as_array().unwrap().clone()
    }
}

/// A fresh database standing for the company's own, with `schema` in it.
async fn company_database(schema: &str) -> (tokio_postgres::Client, String) {
    let (_, url) = target_database().await;
    let client = connect(&url).await;
    client.batch_execute(schema).await.unwrap();
    (client, url)
}

// ---------------------------------------------------------------------------

#[tokio::test]
async fn orders_to_postgres_stores_each_order_once() {
    let app = spawn_app().await;
    let tenant = Tenant::new(&app).await;
    let schema = "CREATE TABLE orders (id bigint PRIMARY KEY, customer text NOT NULL, total_cents bigint NOT NULL, lines jsonb NOT NULL)";
    let (db, url) = company_database(schema).await;
    tenant.connection("orders-db", json!({"postgres": {"url": url}})).await;
    tenant.apply(&example("orders-to-postgres.yaml")).await;
    let key = tenant.api_key().await;

    let order = |qty: i64| {
        json!({"id": 1001, "customer": {"email": "Ada@Example.COM"}, "items": [
            {"sku": "A-1", "qty": qty, "price_cents": 250}, {"sku": "B-2", "qty": 0, "price_cents": 999}, {"sku": "C-3", "qty": 1, "price_cents": 100}]})
    };
    for (qty, expected) in [(2, 1), (3, 2)] {
        let hook = app.tenant_request(Method::POST, "acme", "/hooks/orders-to-postgres").header("x-api-key", &key).json(&order(qty));
        let (status, accepted) = status_and_json(hook).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
        let executions = tenant.ended("orders-to-postgres", expected).await;
        assert!(executions.iter().all(|e| e["state"] == "succeeded"), "{executions:?}");
    }
    let rows = db.query("SELECT id, customer, total_cents, lines FROM orders", &[]).await.unwrap();
    assert_eq!(rows.len(), 1, "the re-sent order updated its row");
    let (customer, total, lines): (String, i64, Value) = (rows[0].get(1), rows[0].get(2), rows[0].get(3));
    assert_eq!((customer.as_str(), total), ("ada@example.com", 3 * 250 + 100));
    assert_eq!(lines.as_array().unwrap().len(), 2, "zero-quantity lines are dropped: {lines}");
}

#[tokio::test]
async fn price_watch_posts_only_new_or_changed_prices() {
    let app = spawn_app().await;
    let tenant = Tenant::new(&app).await;
    let api = Api::start();
    let (_db, url) = company_database("CREATE TABLE watched_prices (sku text PRIMARY KEY, price_cents bigint NOT NULL)").await;
    tenant.connection("watch-db", json!({"postgres": {"url": url}})).await;
    tenant.connection("supplier-api", json!({"bearer": {"token": "supplier-token"}})).await;
    tenant.variable("catalog_url", &api.base).await;
    tenant.variable("alerts_url", &format!("{}/alerts", api.base)).await;
    tenant.apply(&example("price-watch.yaml")).await;
    api.script("POST", "/alerts", &[(200, json!({"ok": true}))]);
    let products = |b: i64| json!({"products": [{"sku": "A", "price_cents": 100}, {"sku": "B", "price_cents": b}]});

    // The supplier fails once: the retry policy tries again.
    api.script("GET", "/products", &[(503, json!({})), (200, products(200))]);
    let first = tenant.run("price-watch", json!({})).await;
    assert_eq!(first["state"], "succeeded", "{first}");
    assert_eq!(step(&first, "fetch")["attempt"], 2);
    let polls = api.seen("GET", "/products");
    assert_eq!(polls.last().unwrap().headers["authorization"], "Bearer supplier-token");
    assert_eq!(api.seen("POST", "/alerts").last().unwrap().body["changes"].as_array().unwrap().len(), 2, "first sight: both new");

    let unchanged = tenant.run("price-watch", json!({})).await;
    assert_eq!(unchanged["state"], "succeeded", "{unchanged}");
    assert_eq!(api.seen("POST", "/alerts").len(), 1, "nothing changed, nothing posted");
    assert!(unchanged["steps"].as_array().unwrap().iter().any(|s| s["path"] == "notify/otherwise/unchanged"));

    api.script("GET", "/products", &[(200, products(250))]);
    tenant.run("price-watch", json!({})).await;
    let alerts = api.seen("POST", "/alerts");
    assert_eq!(alerts.len(), 2);
    assert_eq!(alerts[1].body["changes"], json!([{"sku": "B", "price_cents": 250}]));
}

#[tokio::test]
async fn enrich_and_forward_consumes_enriches_and_publishes() {
    let app = spawn_app().await;
    let tenant = Tenant::new(&app).await;
    let api = Api::start();
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let (inbox, outbox) = (format!("orders.created.{suffix}"), format!("orders.enriched.{suffix}"));
    let broker = Connection::connect(BROKER, ConnectionProperties::default()).await.expect("RabbitMQ at 127.0.0.1:5672");
    let channel = broker.create_channel().await.unwrap();
    for queue in [&inbox, &outbox] {
        channel.queue_declare(queue, QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    }
    tenant.connection("broker", json!({"amqp": {"url": BROKER}})).await;
    tenant.connection("crm", json!({"bearer": {"token": "crm-token"}})).await;
    tenant.variable("crm_url", &api.base).await;
    api.script("GET", "/customers/42", &[(200, json!({"id": 42, "name": "Ada Lovelace", "tier": "gold"}))]);
    // Unique queue names, so runs sharing a broker never meet.
    let definition = example("enrich-and-forward.yaml").replace("orders.created", &inbox).replace("orders.enriched", &outbox);
    tenant.apply(&definition).await;

    let event = json!({"order_id": 7, "customer_id": 42, "total_cents": 1250});
    let payload = serde_json::to_vec(&event).unwrap();
    channel.basic_publish("", &inbox, BasicPublishOptions::default(), &payload, BasicProperties::default()).await.unwrap().await.unwrap();

    let forwarded = Mutex::new(None);
    let arrived = eventually(WAIT, || async {
        if let Some(message) = channel.basic_get(&outbox, BasicGetOptions { no_ack: true }).await.unwrap() {
            *forwarded.lock().unwrap() = Some(serde_json::from_slice::<Value>(&message.delivery.data).unwrap());
        }
        forwarded.lock().unwrap().is_some()
    })
    .await;
    assert!(arrived, "nothing was published: {:?}", tenant.ended("enrich-and-forward", 1).await);
    let forwarded = forwarded.into_inner().unwrap().unwrap();
    assert_eq!(forwarded["order_id"], 7);
    assert_eq!(forwarded["customer"], json!({"id": 42, "name": "Ada Lovelace", "tier": "gold"}));
    assert_eq!(forwarded["priority"], true);
    assert_eq!(api.seen("GET", "/customers/42")[0].headers["authorization"], "Bearer crm-token");
    let executions = tenant.ended("enrich-and-forward", 1).await;
    assert_eq!(executions[0]["state"], "succeeded");
    let passive = QueueDeclareOptions { passive: true, ..Default::default() };
    let acked = eventually(WAIT, || async {
        channel.queue_declare(&inbox, passive, FieldTable::default()).await.unwrap().message_count() == 0
    })
    .await;
    assert!(acked, "the consumed message was acknowledged");
    for queue in [&inbox, &outbox] {
        channel.queue_delete(queue, QueueDeleteOptions::default()).await.unwrap();
    }
}

#[tokio::test]
async fn shipping_labels_retries_each_parcel_until_the_carrier_answers() {
    let app = spawn_app().await;
    let tenant = Tenant::new(&app).await;
    let api = Api::start();
    tenant.connection("carrier", json!({"api_key": {"header": "X-Api-Key", "value": "carrier-key"}})).await;
    tenant.variable("carrier_url", &api.base).await;
    tenant.apply(&example("shipping-labels.yaml")).await;
    // The carrier is overloaded twice, then answers.
    api.script("POST", "/labels", &[(503, json!({})), (429, json!({})), (200, json!({"label_id": "L-1"}))]);

    let parcels: Vec<Value> = (0..5).map(|i| json!({"weight_grams": 500 + i})).collect();
    let execution =
        tenant.run("shipping-labels", json!({"shipment": "S-9", "address": {"city": "Lyon"}, "parcels": parcels})).await;
    assert_eq!(execution["state"], "succeeded", "{execution}");
    assert_eq!(execution["output"], json!({"shipment": "S-9", "labels": ["L-1", "L-1", "L-1", "L-1", "L-1"]}));
    let requests = api.seen("POST", "/labels");
    assert_eq!(requests.len(), 7, "two refusals retried, then one request per parcel");
    assert!(requests.iter().all(|r| r.headers["x-api-key"] == "carrier-key"));
    let mut weights: Vec<i64> = requests[2..].iter().map(|r| r.body["weight_grams"].as_i64().unwrap()).collect();
    weights.sort();
    assert_eq!(weights, [500, 501, 502, 503, 504]);
    let keys: std::collections::HashSet<&str> = requests.iter().map(|r| r.headers["idempotency-key"].as_str()).collect();
    assert_eq!(keys.len(), 5, "one idempotency key per parcel, the same across its retries");
}

#[tokio::test]
async fn invoice_with_fallback_parks_refused_invoices_and_pages_on_failure() {
    let app = spawn_app().await;
    let tenant = Tenant::new(&app).await;
    let api = Api::start();
    let schema = "CREATE TABLE dead_letters (id bigserial PRIMARY KEY, source text NOT NULL, payload jsonb NOT NULL, error jsonb NOT NULL)";
    let (db, url) = company_database(schema).await;
    tenant.connection("erp", json!({"basic": {"username": "tessera", "password": "erp-password"}})).await;
    tenant.connection("ops-db", json!({"postgres": {"url": url}})).await;
    tenant.variable("erp_url", &api.base).await;
    tenant.variable("oncall_url", &format!("{}/page", api.base)).await;
    tenant.apply(&example("invoice-with-fallback.yaml")).await;
    api.script("POST", "/page", &[(200, json!({}))]);
    let invoice = json!({"number": "INV-1", "customer": "acme-corp", "amount_cents": 9900});

    // Accepted by the ERP: nothing parked.
    api.script("POST", "/invoices", &[(201, json!({"id": "erp-1"}))]);
    let hook = app.tenant_request(Method::POST, "acme", "/hooks/invoice-with-fallback").json(&invoice);
    assert_eq!(status_and_json(hook).await.0, StatusCode::ACCEPTED);
    assert_eq!(tenant.ended("invoice-with-fallback", 1).await[0]["state"], "succeeded");

    // Refused for good (422 is not retried): parked, and the execution goes on.
    api.script("POST", "/invoices", &[(422, json!({"error": "unknown customer"}))]);
    let parked = tenant.run("invoice-with-fallback", invoice.clone()).await;
    assert_eq!(parked["state"], "succeeded", "{parked}");
    assert_eq!(step(&parked, "post_invoice")["attempt"], 1, "a 4xx is not retried by default");
    assert!(parked["steps"].as_array().unwrap().iter().any(|s| s["path"] == "done"), "the execution went on");
    let rows = db.query("SELECT payload, error FROM dead_letters", &[]).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, Value>(0)["number"], "INV-1");
    assert_eq!(rows[0].get::<_, Value>(1)["code"], "http_status");
    assert!(api.seen("POST", "/invoices").iter().all(|r| r.headers["authorization"].starts_with("Basic ")));

    // The dead-letter table is gone too: the execution fails and on-call is paged.
    db.batch_execute("DROP TABLE dead_letters").await.unwrap();
    let failed = tenant.run("invoice-with-fallback", invoice).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    let pages = api.seen("POST", "/page");
    assert_eq!(pages.len(), 1, "on-call paged once");
    assert_eq!(pages[0].body["execution"], failed["id"]);
    let text = pages[0].body["text"].as_str().unwrap();
    assert!(text.starts_with("invoice-with-fallback failed: "), "{text}");
    assert!(!serde_json::to_string(&failed).unwrap().contains("erp-password"), "no secret in the record");
}
