//! The on-prem promise, "no request except to the apps you integrate",
//! proved from outside the egress gate: a `tessera serve` process runs under
//! `strace -f -e trace=connect`, in allowlist mode, with an allowlist of
//! exactly the examples' targets (a local HTTP API, a target PostgreSQL, the
//! RabbitMQ). Every example in `examples/` runs on it; then every connect()
//! the kernel saw from the node must be to the platform's database, DNS, or
//! an allowlisted target, and a target left off the list is refused and
//! never connected to.

use std::{
    collections::BTreeSet,
    process::Stdio,
    sync::Mutex,
    time::Duration,
};

use lapin::{
    options::{BasicGetOptions, BasicPublishOptions, QueueDeclareOptions, QueueDeleteOptions},
    types::FieldTable,
    BasicProperties, Connection, ConnectionProperties,
};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{json, Value};
use tessera_tests::{connect, eventually, fresh_database, status_and_json, target_database, tessera_bin};

use crate::examples::{example, Api};

use tessera_tests::BROKER_URL as BROKER;
const WAIT: Duration = Duration::from_secs(30);
const OWNER: (&str, &str) = ("owner@onprem.test", "onprem-owner-password");

/// The node process, traced, and a client for its API.
struct TracedNode {
    strace: tokio::process::Child,
    port: u16,
    http: reqwest::Client,
    trace: std::path::PathBuf,
}

impl TracedNode {
    async fn start(database_url: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let trace = std::env::temp_dir().join(format!("tessera-onprem-{}.strace", uuid::Uuid::new_v4().simple()));
        let env = [
            ("TESSERA_DATABASE_URL", database_url.to_string()),
            ("TESSERA_LISTEN", format!("127.0.0.1:{port}")),
            ("TESSERA_JWT_SECRET", format!("onprem-secret-{}", uuid::Uuid::new_v4())),
            ("TESSERA_SECRETS__KEY", tessera_server::sealing::generate_key()),
            ("TESSERA_LOG__LEVEL", "error".into()),
            ("TESSERA_EGRESS__MODE", "allowlist".into()),
            // The targets of this test run on loopback; the allowlist still names each one.
            ("TESSERA_EGRESS__ALLOW_LOOPBACK", "true".into()),
        ];
        let mut command = tokio::process::Command::new("strace");
        command.args(["-f", "-qq", "-e", "trace=connect", "-e", "signal=none", "-o"]).arg(&trace).arg(tessera_bin()).arg("serve");
        for (key, _) in std::env::vars_os().filter(|(k, _)| k.to_string_lossy().starts_with("TESSERA_")) {
            command.env_remove(key);
        }
        let strace = command
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("strace runs (it is installed by .ci/run)");
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        let node = Self { strace, port, http, trace };
        let healthy = eventually(Duration::from_secs(30), || async {
            node.http.get(format!("http://127.0.0.1:{port}/healthz")).send().await.is_ok_and(|r| r.status().is_success())
        });
        assert!(healthy.await, "the traced node never answered");
        node
    }

    fn request(&self, method: Method, host: &str, path: &str) -> RequestBuilder {
        self.http.request(method, format!("http://127.0.0.1:{}{path}", self.port)).header("host", format!("{host}:{}", self.port))
    }

    fn tenant(&self, method: Method, path: &str) -> RequestBuilder {
        self.request(method, "acme.localhost", path)
    }

    async fn login(&self, host: &str, email: &str, password: &str) -> String {
        let request = self.request(Method::POST, host, "/api/auth/login").json(&json!({"email": email, "password": password}));
        let (status, body) = status_and_json(request).await;
        assert_eq!(status, StatusCode::OK, "login {email}: {body}");
        body["token"].as_str().unwrap().to_string()
    }

    /// SIGTERM to the node (strace's child), then wait until strace ends with it.
    async fn stop(mut self) -> String {
        let strace_pid = self.strace.id().unwrap();
        let children = std::fs::read_to_string(format!("/proc/{strace_pid}/task/{strace_pid}/children")).unwrap_or_default();
        for pid in children.split_whitespace() {
            let _ = std::process::Command::new("kill").args(["-TERM", pid]).status();
        }
        let ended = tokio::time::timeout(Duration::from_secs(60), self.strace.wait()).await;
        assert!(ended.is_ok(), "the traced node did not stop");
        let text = std::fs::read_to_string(&self.trace).expect("the strace output");
        let _ = std::fs::remove_file(&self.trace);
        text
    }
}

/// What one connect() reached, from a line of strace's output.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Reached {
    Inet(String, u16),
    Unix(String),
    /// AF_UNSPEC (dissolving a UDP association) and the like: nothing reached.
    Nothing,
}

fn reached(line: &str) -> Option<Reached> {
    if !line.contains("connect(") {
        return None;
    }
    let between = |from: &str, to: &str| line.split_once(from).and_then(|(_, rest)| rest.split_once(to)).map(|(v, _)| v.to_string());
    let port = between("_port=htons(", ")").and_then(|p| p.parse().ok());
    if line.contains("AF_INET6") {
        let ip = between("inet_pton(AF_INET6, \"", "\"").unwrap_or_default();
        return Some(Reached::Inet(ip, port.unwrap_or(0)));
    }
    if line.contains("AF_INET") {
        return Some(Reached::Inet(between("inet_addr(\"", "\"").unwrap_or_default(), port.unwrap_or(0)));
    }
    if line.contains("AF_UNIX") {
        return Some(Reached::Unix(between("sun_path=\"", "\"").unwrap_or_default()));
    }
    Some(Reached::Nothing)
}

#[tokio::test]
async fn under_allowlist_mode_a_node_running_every_example_connects_to_nothing_but_its_targets() {
    // The platform's database, set up as `tessera platform init` would.
    let (_, database_url) = fresh_database().await;
    let init = tokio::process::Command::new(tessera_bin())
        .args(["platform", "init", "--email", OWNER.0, "--password", OWNER.1])
        .env("TESSERA_DATABASE_URL", &database_url)
        .env_remove("TESSERA_CONFIG")
        .output()
        .await
        .unwrap();
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));

    // The targets: an HTTP API, a PostgreSQL server other than the platform's, the RabbitMQ; and one left off the list.
    let (api, stray) = (Api::start(), Api::start());
    let (_, orders_url) = target_database().await;
    let (_, ops_url) = target_database().await;
    let (_, watch_url) = target_database().await;
    let orders_db = connect(&orders_url).await;
    orders_db.batch_execute("CREATE TABLE orders (id bigint PRIMARY KEY, customer text NOT NULL, total_cents bigint NOT NULL, lines jsonb NOT NULL)").await.unwrap();
    let ops_db = connect(&ops_url).await;
    ops_db.batch_execute("CREATE TABLE dead_letters (id bigserial PRIMARY KEY, source text NOT NULL, payload jsonb NOT NULL, error jsonb NOT NULL)").await.unwrap();
    connect(&watch_url).await.batch_execute("CREATE TABLE watched_prices (sku text PRIMARY KEY, price_cents bigint NOT NULL)").await.unwrap();
    let port_of = |url: &str| -> u16 { url.rsplit_once(':').unwrap().1.split('/').next().unwrap().parse().unwrap() };
    let (api_port, target_pg_port) = (port_of(&api.base), port_of(&orders_url));
    let stray_port = port_of(&stray.base);
    let platform_db_port = port_of(&database_url);

    let node = TracedNode::start(&database_url).await;
    let platform = node.login("localhost", OWNER.0, OWNER.1).await;
    let created = node.request(Method::POST, "localhost", "/api/platform/tenants").bearer_auth(&platform);
    let (status, body) = status_and_json(created.json(&json!({"slug": "acme", "owner_email": "owner@acme.test", "owner_password": "acme-owner-password"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let allowlist = [format!("127.0.0.1:{api_port}"), format!("127.0.0.1:{target_pg_port}"), "127.0.0.1:5672".to_string()];
    let allow = node.request(Method::POST, "localhost", "/api/platform/tenants/acme/egress/allow").bearer_auth(&platform);
    let (status, body) = status_and_json(allow.json(&json!({"rules": allowlist}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = node.login("acme.localhost", "owner@acme.test", "acme-owner-password").await;

    let apply = |yaml: String| {
        let request = node.tenant(Method::POST, "/api/apply").bearer_auth(&token).header("content-type", "application/yaml").body(yaml);
        async move {
            let (status, body) = status_and_json(request).await;
            assert_eq!(status, StatusCode::OK, "apply: {body}");
        }
    };
    let connection = |name: &str, spec: Value| json!({"apiVersion": "tessera.dev/v1", "kind": "Connection", "metadata": {"name": name}, "spec": spec}).to_string();
    let variable = |name: &str, value: String| {
        let request = node.tenant(Method::PUT, &format!("/api/variables/{name}")).bearer_auth(&token).json(&json!({"value": value}));
        async move { assert!(status_and_json(request).await.0.is_success()) }
    };
    let run = |name: &str, body: Value| {
        let request = node.tenant(Method::POST, &format!("/api/integrations/{name}/run?wait=true")).bearer_auth(&token).json(&body);
        async move { status_and_json(request).await.1 }
    };

    for (name, spec) in [
        ("orders-db", json!({"postgres": {"url": orders_url}})),
        ("ops-db", json!({"postgres": {"url": ops_url}})),
        ("watch-db", json!({"postgres": {"url": watch_url}})),
        ("supplier-api", json!({"bearer": {"token": "supplier-token"}})),
        ("crm", json!({"bearer": {"token": "crm-token"}})),
        ("carrier", json!({"api_key": {"header": "X-Api-Key", "value": "carrier-key"}})),
        ("erp", json!({"basic": {"username": "tessera", "password": "erp-password"}})),
        ("broker", json!({"amqp": {"url": BROKER}})),
    ] {
        apply(connection(name, spec)).await;
    }
    for name in ["catalog_url", "crm_url", "carrier_url", "erp_url"] {
        variable(name, api.base.clone()).await;
    }
    variable("alerts_url", format!("{}/alerts", api.base)).await;
    variable("oncall_url", format!("{}/page", api.base)).await;
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let (inbox, outbox) = (format!("orders.created.{suffix}"), format!("orders.enriched.{suffix}"));
    for file in ["orders-to-postgres.yaml", "price-watch.yaml", "shipping-labels.yaml", "invoice-with-fallback.yaml"] {
        apply(example(file)).await;
    }
    apply(example("enrich-and-forward.yaml").replace("orders.created", &inbox).replace("orders.enriched", &outbox)).await;
    let stray_step = json!({"apiVersion": "tessera.dev/v1", "kind": "Integration", "metadata": {"name": "stray"},
        "spec": {"steps": [{"name": "call", "http": {"method": "GET", "url": format!("{}/x", stray.base)}}]}});
    apply(stray_step.to_string()).await;

    // orders-to-postgres: a webhook with an API key, an upsert into the target database.
    let key = node.tenant(Method::POST, "/api/api-keys").bearer_auth(&token).json(&json!({"name": "shop", "role": "editor"}));
    let key = status_and_json(key).await.1["secret"].as_str().unwrap().to_string();
    let order = json!({"id": 1001, "customer": {"email": "ada@example.com"}, "items": [{"sku": "A-1", "qty": 2, "price_cents": 250}]});
    let hook = node.tenant(Method::POST, "/hooks/orders-to-postgres").header("x-api-key", &key).json(&order);
    assert_eq!(status_and_json(hook).await.0, StatusCode::ACCEPTED);
    let stored = eventually(WAIT, || async { orders_db.query("SELECT 1 FROM orders", &[]).await.unwrap().len() == 1 }).await;
    assert!(stored, "orders-to-postgres stored no order");

    // price-watch: an authenticated GET, a SELECT/upsert, a POST of the changes.
    api.script("GET", "/products", &[(200, json!({"products": [{"sku": "A", "price_cents": 100}]}))]);
    api.script("POST", "/alerts", &[(200, json!({"ok": true}))]);
    assert_eq!(run("price-watch", json!({})).await["state"], "succeeded");

    // shipping-labels: one POST per parcel with an API key.
    api.script("POST", "/labels", &[(200, json!({"label_id": "L-1"}))]);
    let shipment = json!({"shipment": "S-9", "address": {"city": "Lyon"}, "parcels": [{"weight_grams": 500}, {"weight_grams": 501}]});
    assert_eq!(run("shipping-labels", shipment).await["state"], "succeeded");

    // invoice-with-fallback: the ERP refuses, the invoice is parked in the ops database.
    api.script("POST", "/invoices", &[(422, json!({"error": "unknown customer"}))]);
    api.script("POST", "/page", &[(200, json!({}))]);
    let parked = run("invoice-with-fallback", json!({"number": "INV-1", "customer": "acme-corp", "amount_cents": 9900})).await;
    assert_eq!(parked["state"], "succeeded", "{parked}");
    assert_eq!(ops_db.query("SELECT 1 FROM dead_letters", &[]).await.unwrap().len(), 1);

    // enrich-and-forward: consume from the broker, call the CRM, publish.
    api.script("GET", "/customers/42", &[(200, json!({"id": 42, "name": "Ada Lovelace", "tier": "gold"}))]);
    let broker = Connection::connect(BROKER, ConnectionProperties::default()).await.expect("RabbitMQ at 127.0.0.1:5672");
    let channel = broker.create_channel().await.unwrap();
    for queue in [&inbox, &outbox] {
        channel.queue_declare(queue, QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    }
    let payload = serde_json::to_vec(&json!({"order_id": 7, "customer_id": 42, "total_cents": 1250})).unwrap();
    channel.basic_publish("", &inbox, BasicPublishOptions::default(), &payload, BasicProperties::default()).await.unwrap().await.unwrap();
    let forwarded = Mutex::new(false);
    let arrived = eventually(WAIT, || async {
        if channel.basic_get(&outbox, BasicGetOptions { no_ack: true }).await.unwrap().is_some() {
            *forwarded.lock().unwrap() = true;
        }
        *forwarded.lock().unwrap()
    });
    assert!(arrived.await, "enrich-and-forward published nothing");
    for queue in [&inbox, &outbox] {
        channel.queue_delete(queue, QueueDeleteOptions::default()).await.unwrap();
    }

    // A target left off the allowlist: refused before any connection.
    let refused = run("stray", json!({})).await;
    assert_eq!(refused["error"]["code"], "egress_denied", "{refused}");
    assert!(stray.seen("GET", "/x").is_empty());

    let trace = node.stop().await;
    let seen: BTreeSet<Reached> = trace.lines().filter_map(reached).collect();
    let inet = |port: u16| Reached::Inet("127.0.0.1".into(), port);
    let expected = [inet(platform_db_port), inet(api_port), inet(target_pg_port), inet(5672)];
    for target in &expected {
        assert!(seen.contains(target), "the trace shows no connection to {target:?}, so it does not see the node's: {seen:?}");
    }
    let unexpected: Vec<&Reached> = seen
        .iter()
        .filter(|r| match r {
            Reached::Inet(_, 53) | Reached::Nothing => false,
            // The name service cache, when resolving names: part of DNS.
            Reached::Unix(path) => !path.ends_with("nscd/socket"),
            inet => !expected.contains(inet),
        })
        .collect();
    assert!(unexpected.is_empty(), "the node connected to something neither the platform's nor on the allowlist: {unexpected:?}");
    assert!(!seen.contains(&inet(stray_port)), "the refused target was connected to");
}
