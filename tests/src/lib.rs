//! The shared integration-test harness: `spawn_app()` starts the real server
//! on a random port against a fresh PostgreSQL database of its own, with the
//! platform schema migrated and a platform owner created, and returns
//! helpers that read like the user stories the tests tell.

pub mod fault;

use std::{
    collections::HashMap,
    net::TcpListener,
    path::{Path, PathBuf},
    time::Duration,
};

use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{json, Value};
use tessera_server::{
    config::Config,
    provisioning::migrate,
    startup::Application,
    state::AppState,
};
use tokio::sync::OnceCell;

pub use tessera_server;

pub const PLATFORM_OWNER: (&str, &str) = ("owner@platform.test", "platform-owner-pass");
pub const BASE_DOMAIN: &str = "localhost";

/// The `tessera` binary cargo built next to the test binary
/// (`target/debug/tessera`).
pub fn tessera_bin() -> PathBuf {
    let mut candidates = Vec::new();
    if let Some(profile_dir) = std::env::current_exe().ok().and_then(|exe| exe.parent()?.parent().map(Path::to_path_buf)) {
        candidates.push(profile_dir.join("tessera"));
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/tessera"));
    candidates.iter().find(|p| p.is_file()).cloned().unwrap_or_else(|| {
        panic!(
            "the tessera binary was not found (looked at {candidates:?}); build it first with \
             `cargo build -p tessera-cli` (`cargo test --workspace` builds it too)"
        )
    })
}

/// The PostgreSQL server the tests use; each test gets its own database on it.
pub fn admin_url() -> String {
    ADMIN_URL.get().cloned().unwrap_or_else(configured_admin_url)
}

fn configured_admin_url() -> String {
    std::env::var("TESSERA_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

static ADMIN_URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Use the configured server; on a fresh machine where none answers (and
/// none was configured), run a private one from the installed PostgreSQL
/// binaries, as `tessera dev` does.
async fn choose_server() -> String {
    let configured = configured_admin_url();
    let explicit = std::env::var_os("TESSERA_TEST_DATABASE_URL").is_some();
    if explicit || tokio_postgres::connect(&configured, tokio_postgres::NoTls).await.is_ok() {
        return configured;
    }
    use tessera_server::local_postgres::{default_data_dir, LocalPostgres};
    let private = LocalPostgres::new(default_data_dir().join("test"), 54330).expect("PostgreSQL binaries for the tests");
    private.start().await.expect("start a private PostgreSQL for the tests");
    private.url("postgres")
}

/// `admin_url` with another database name.
pub fn url_for_database(name: &str) -> String {
    let admin = admin_url();
    let (base, query) = match admin.split_once('?') {
        Some((b, q)) => (b.to_string(), format!("?{q}")),
        None => (admin.clone(), String::new()),
    };
    let (server, _) = base.rsplit_once('/').expect("database URL has a path");
    format!("{server}/{name}{query}")
}

pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect to PostgreSQL");
    tokio::spawn(conn);
    client
}

static CLEANUP: OnceCell<()> = OnceCell::const_new();

/// Pick the server, then drop databases left by earlier test processes
/// that are no longer running.
async fn drop_stale_databases() {
    let _ = ADMIN_URL.set(choose_server().await);
    let admin = connect(&admin_url()).await;
    let rows = admin
        .query("SELECT datname FROM pg_database WHERE datname LIKE 'tessera\\_test\\_%'", &[])
        .await
        .expect("list test databases");
    for row in rows {
        let name: String = row.get(0);
        let pid = name.split('_').nth(2).and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|p| p == std::process::id() || std::path::Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await;
        }
    }
}

/// Create an empty database for one test; returns its name and URL.
pub async fn fresh_database() -> (String, String) {
    CLEANUP.get_or_init(drop_stale_databases).await;
    let name = format!("tessera_test_{}_{}", std::process::id(), uuid::Uuid::new_v4().simple());
    connect(&admin_url()).await.batch_execute(&format!("CREATE DATABASE \"{name}\"")).await.expect("create test database");
    let url = url_for_database(&name);
    (name, url)
}

/// The PostgreSQL server standing for the databases tenants integrate
/// with (`sql` steps, `postgres` connections): not the platform's, which the
/// egress gate never lets a tenant reach. One per test binary, started on
/// first use on a free port; servers left by earlier test processes that no
/// longer run are stopped and removed first.
static TARGET_SERVER: OnceCell<tessera_server::local_postgres::LocalPostgres> = OnceCell::const_new();

async fn target_server() -> &'static tessera_server::local_postgres::LocalPostgres {
    use std::os::unix::fs::PermissionsExt;
    use tessera_server::local_postgres::LocalPostgres;
    TARGET_SERVER
        .get_or_init(|| async {
            let root = std::env::temp_dir().join("tessera-test-targets");
            std::fs::create_dir_all(&root).expect("create the target servers' directory");
            // PostgreSQL runs as its own user when the tests run as root.
            std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).expect("chmod the target servers' directory");
            for entry in std::fs::read_dir(&root).into_iter().flatten().flatten() {
                let pid = entry.file_name().to_string_lossy().parse::<u32>().ok();
                if pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) {
                    LocalPostgres::new(entry.path(), 0).expect("PostgreSQL binaries").stop_now();
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
            let dir = root.join(std::process::id().to_string());
            let port = fault::free_port().expect("a free port");
            let server = LocalPostgres::new(dir, port).expect("PostgreSQL binaries").with_setting("max_connections", "300");
            server.start().await.expect("start the tests' target PostgreSQL");
            server
        })
        .await
}

/// An empty database on the target server (see [`TARGET_SERVER`]) for one
/// test's `sql` steps: its name and URL.
pub async fn target_database() -> (String, String) {
    let server = target_server().await;
    let name = format!("target_{}", uuid::Uuid::new_v4().simple());
    connect(&server.url("postgres")).await.batch_execute(&format!("CREATE DATABASE \"{name}\"")).await.expect("create a target database");
    let url = server.url(&name);
    (name, url)
}

/// A configuration for tests: loopback, random port, quiet logs, generous
/// login limits (the rate-limit test sets its own).
pub fn test_config(database_url: &str) -> Config {
    let mut config = Config::default();
    config.listen = "127.0.0.1:0".into();
    config.base_domain = BASE_DOMAIN.into();
    config.database_url = Some(database_url.into());
    config.jwt_secret = Some(format!("test-secret-{}", uuid::Uuid::new_v4()));
    config.secrets.key = Some(tessera_server::sealing::generate_key());
    config.database.pool_size = 8;
    config.auth.login_per_account_per_minute = 1000;
    config.auth.login_per_address_per_minute = 100_000;
    config.http.workers = 2;
    config.http.shutdown_timeout_secs = 2;
    // Fast rounds, so that tests of ownership and failover take seconds.
    config.cluster.heartbeat_interval_ms = 250;
    config.cluster.node_timeout_ms = 3000;
    config.log.level = std::env::var("TESSERA_TEST_LOG").unwrap_or_else(|_| "error".into());
    // The systems tests integrate with run on loopback; production denies it.
    config.egress.allow_loopback = true;
    config.provisioning.export_dir = std::env::temp_dir().join(format!("tessera-test-exports-{}", uuid::Uuid::new_v4().simple()));
    config
}

pub struct TestApp {
    pub port: u16,
    pub database_name: String,
    pub database_url: String,
    pub config: Config,
    pub state: actix_web::web::Data<AppState>,
    pub http: reqwest::Client,
    handle: actix_web::dev::ServerHandle,
    /// Where `GET /metrics` answers, when `metrics.listen` was set.
    pub metrics_address: Option<std::net::SocketAddr>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Start the app with a tweaked configuration.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    let (database_name, database_url) = fresh_database().await;
    spawn_app_on(database_name, database_url, tweak).await
}

/// Start the app on an existing database (another cluster's, say), migrated
/// here if it is not yet; its platform owner is created unless it exists.
pub async fn spawn_app_on(database_name: String, database_url: String, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = test_config(&database_url);
    tweak(&mut config);
    tessera_server::telemetry::init(&config.log);
    migrate::migrate_platform(&database_url).await.expect("migrate platform schema");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a random port");
    let app = Application::build_with_listener(config.clone(), listener).expect("build app");
    let (port, state, handle, metrics_address) = (app.port(), app.state(), app.handle(), app.metrics_address());
    tokio::spawn(app.run_until_stopped());
    state
        .provisioner
        .upsert_platform_owner(PLATFORM_OWNER.0, PLATFORM_OWNER.1.into())
        .await
        .expect("create platform owner");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("http client");
    TestApp { port, database_name, database_url, config, state, http, handle, metrics_address }
}

/// A tenant created through the platform API, with its first owner.
#[derive(Debug, Clone)]
pub struct TestTenant {
    pub slug: String,
    pub id: String,
    pub owner_email: String,
    pub owner_password: String,
}

impl TestApp {
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A request to `path` with an explicit Host header (sent to loopback).
    pub fn request_with_host(&self, method: Method, host: &str, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base_url())).header("host", host)
    }

    /// A request to a tenant's host, `<slug>.localhost:<port>`.
    pub fn tenant_request(&self, method: Method, slug: &str, path: &str) -> RequestBuilder {
        self.request_with_host(method, &format!("{slug}.{BASE_DOMAIN}:{}", self.port), path)
    }

    /// A request to the platform host, `localhost:<port>`.
    pub fn platform_request(&self, method: Method, path: &str) -> RequestBuilder {
        self.request_with_host(method, &format!("{BASE_DOMAIN}:{}", self.port), path)
    }

    pub async fn platform_token(&self) -> String {
        let response = self
            .platform_request(Method::POST, "/api/auth/login")
            .json(&json!({"email": PLATFORM_OWNER.0, "password": PLATFORM_OWNER.1}))
            .send()
            .await
            .expect("platform login");
        assert_eq!(response.status(), StatusCode::OK, "platform login");
        response.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_string()
    }

    /// Create a tenant through `POST /api/platform/tenants`.
    pub async fn create_tenant(&self, slug: &str) -> TestTenant {
        let token = self.platform_token().await;
        self.create_tenant_with_token(&token, slug).await
    }

    pub async fn create_tenant_with_token(&self, platform_token: &str, slug: &str) -> TestTenant {
        let owner_email = format!("owner@{slug}.test");
        let owner_password = format!("{slug}-owner-password");
        let response = self
            .platform_request(Method::POST, "/api/platform/tenants")
            .bearer_auth(platform_token)
            .json(&json!({"slug": slug, "owner_email": owner_email, "owner_password": owner_password}))
            .send()
            .await
            .expect("create tenant");
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "create tenant {slug}: {body}");
        TestTenant { slug: slug.into(), id: body["tenant"]["id"].as_str().unwrap().into(), owner_email, owner_password }
    }

    /// `POST /api/platform/tenants/{slug}/{action}` (suspend, resume) as a platform owner.
    pub async fn tenant_lifecycle(&self, platform_token: &str, slug: &str, action: &str) -> reqwest::Response {
        self.platform_request(Method::POST, &format!("/api/platform/tenants/{slug}/{action}"))
            .bearer_auth(platform_token)
            .send()
            .await
            .expect("tenant lifecycle request")
    }

    /// Apply a YAML definition file in a tenant as `token`; it must be accepted.
    pub async fn apply_yaml(&self, slug: &str, token: &str, yaml: &str) {
        let response = self
            .tenant_request(Method::POST, slug, "/api/apply")
            .bearer_auth(token)
            .header("content-type", "application/yaml")
            .body(yaml.to_string())
            .send()
            .await
            .expect("apply request");
        let status = response.status();
        assert_eq!(status, StatusCode::OK, "apply: {}", response.text().await.unwrap_or_default());
    }

    /// Send `body` (if any) to a tenant's host with `credential` (a token or
    /// an API key) as a bearer token: the answer as it came.
    pub async fn call(&self, slug: &str, method: Method, path: &str, credential: &str, body: Option<Value>) -> reqwest::Response {
        let mut request = self.tenant_request(method, slug, path).bearer_auth(credential);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("request")
    }

    /// `GET path` on a tenant's host as `token`: the status and the JSON body.
    pub async fn tenant_get(&self, slug: &str, token: &str, path: &str) -> (StatusCode, Value) {
        status_and_json(self.tenant_request(Method::GET, slug, path).bearer_auth(token)).await
    }

    /// Attempt a sign-in on a tenant's host: the answer as it came.
    pub async fn try_login(&self, slug: &str, email: &str, password: &str) -> reqwest::Response {
        self.tenant_request(Method::POST, slug, "/api/auth/login")
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .expect("login")
    }

    /// Sign in on a tenant's host and return the token.
    pub async fn login(&self, slug: &str, email: &str, password: &str) -> String {
        let response = self.try_login(slug, email, password).await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, StatusCode::OK, "login {email} on {slug}: {body}");
        body["token"].as_str().unwrap().to_string()
    }

    pub async fn owner_token(&self, tenant: &TestTenant) -> String {
        self.login(&tenant.slug, &tenant.owner_email, &tenant.owner_password).await
    }

    /// Create a user (password `a-good-password`) in a tenant as its owner;
    /// returns the created user.
    pub async fn create_user(&self, tenant: &TestTenant, email: &str, role: &str) -> Value {
        let owner = self.owner_token(tenant).await;
        let request = self
            .tenant_request(Method::POST, &tenant.slug, "/api/users")
            .bearer_auth(&owner)
            .json(&json!({"email": email, "password": "a-good-password", "role": role}));
        let (status, user) = status_and_json(request).await;
        assert_eq!(status, StatusCode::CREATED, "create {email} as {role}: {user}");
        user
    }

    /// Create a user with `role` in a tenant (as its owner) and sign them in.
    pub async fn user_with_role(&self, tenant: &TestTenant, role: &str) -> String {
        let email = format!("{role}-{}@{}.test", uuid::Uuid::new_v4().simple(), tenant.slug);
        self.create_user(tenant, &email, role).await;
        self.login(&tenant.slug, &email, "a-good-password").await
    }

    /// A direct connection to this test's database, for assertions.
    pub async fn db(&self) -> tokio_postgres::Client {
        connect(&self.database_url).await
    }

    /// The one number a query such as `SELECT count(*) ...` returns.
    pub async fn count(&self, sql: &str) -> i64 {
        self.db().await.query_one(sql, &[]).await.unwrap().get(0)
    }

    /// The platform's view of the cluster (`GET /api/platform/cluster`) as `token`.
    pub async fn cluster_status(&self, token: &str) -> Value {
        let (status, body) = status_and_json(self.platform_request(Method::GET, "/api/platform/cluster").bearer_auth(token)).await;
        assert!(status.is_success(), "{status} {body}");
        body
    }

    /// Stop the server gracefully: in-flight requests finish, then the node
    /// drains and leaves the cluster.
    pub async fn stop(&self) {
        self.handle.stop(true).await;
    }

    /// A request for tenant `slug` sent to the node listening on `port`
    /// (another node of this app's cluster).
    pub fn tenant_request_on(&self, port: u16, method: Method, slug: &str, path: &str) -> RequestBuilder {
        self.http.request(method, format!("http://127.0.0.1:{port}{path}")).header("host", format!("{slug}.{BASE_DOMAIN}:{port}"))
    }

    /// Another node of this app's cluster: same database, same keys.
    pub async fn add_node(&self) -> TestNode {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a random port");
        let node = Application::build_with_listener(self.config.clone(), listener).expect("build node");
        let (port, state, handle) = (node.port(), node.state(), node.handle());
        tokio::spawn(node.run_until_stopped());
        TestNode { port, state, handle }
    }
}

/// A further node started by [`TestApp::add_node`].
pub struct TestNode {
    pub port: u16,
    pub state: actix_web::web::Data<AppState>,
    handle: actix_web::dev::ServerHandle,
}

impl TestNode {
    /// Stop it gracefully: it drains (its running executions finish, within
    /// `cluster.drain_timeout_ms`), then leaves the cluster and releases its tenants.
    pub async fn stop(&self) {
        self.handle.stop(true).await;
    }
}

/// Send a request: its status and its JSON body (`null` when there is none).
pub async fn status_and_json(request: RequestBuilder) -> (StatusCode, Value) {
    status_and_body(request.send().await.expect("request")).await
}

/// A response's status and its JSON body (`null` when there is none).
pub async fn status_and_body(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Read a JSON error body and return its code.
pub async fn error_code(response: reqwest::Response) -> String {
    let body: Value = response.json().await.expect("JSON error body");
    body["error"]["code"].as_str().unwrap_or_else(|| panic!("no error code in {body}")).to_string()
}

/// A refusal's status and its error code.
pub async fn status_and_code(response: reqwest::Response) -> (StatusCode, String) {
    (response.status(), error_code(response).await)
}

/// The step at `path` of an execution as the API shows it.
pub fn step<'a>(execution: &'a Value, path: &str) -> &'a Value {
    execution["steps"].as_array().unwrap().iter().find(|s| s["path"] == path).unwrap_or_else(|| panic!("no step {path} in {execution}"))
}

/// A `Connection` definition document.
pub fn connection(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "tessera.dev/v1", "kind": "Connection", "metadata": {"name": name}, "spec": spec})
}

/// Live node id → the tenants it holds a lease on, from a cluster status
/// (`TestApp::cluster_status`).
pub fn holders(status: &Value) -> HashMap<String, Vec<String>> {
    let mut by_node: HashMap<String, Vec<String>> = HashMap::new();
    for lease in status["leases"].as_array().into_iter().flatten() {
        if let (Some(node), Some(tenant)) = (lease["node"].as_str(), lease["tenant"].as_str()) {
            by_node.entry(node.to_string()).or_default().push(tenant.to_string());
        }
    }
    by_node
}

/// The migration versions a schema's refinery history lists, in order.
pub async fn migration_history(db: &tokio_postgres::Client, schema: &str) -> Vec<i32> {
    let sql = format!("SELECT version FROM {schema}.refinery_schema_history ORDER BY version");
    db.query(&sql, &[]).await.unwrap().iter().map(|r| r.get(0)).collect()
}

/// Poll `check` until it returns true or `deadline` passes.
pub async fn eventually<F, Fut>(deadline: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The RabbitMQ the tests use (guest/guest on the default vhost). Tests
/// that share it name their queues and exchanges uniquely; a node's own
/// command queue carries its id.
pub const BROKER_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// A TCP relay on a random loopback port in front of another address, to
/// take one service away from some nodes (and bring it back) without
/// stopping it for every other test.
pub struct Relay {
    pub port: u16,
    open: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
}

impl Relay {
    pub async fn start(upstream: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a relay port");
        let port = listener.local_addr().unwrap().port();
        let open = std::sync::Arc::new(tokio::sync::watch::Sender::new(true));
        let (upstream, relay_open) = (upstream.to_string(), open.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !*relay_open.borrow() {
                    continue; // cut: refuse by closing at once
                }
                tokio::spawn(relay(client, upstream.clone(), relay_open.subscribe()));
            }
        });
        Self { port, open }
    }

    /// Close every relayed connection and refuse new ones.
    pub fn cut(&self) {
        self.open.send_replace(false);
    }

    /// Relay new connections again.
    pub fn restore(&self) {
        self.open.send_replace(true);
    }
}

/// Copy both ways until either side closes or the relay is cut.
async fn relay(mut client: tokio::net::TcpStream, upstream: String, mut open: tokio::sync::watch::Receiver<bool>) {
    let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else { return };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = open.wait_for(|open| !*open) => {}
    }
}

/// Start a local HTTP server (loopback, random port) that answers every
/// request with `handler`, which reads `state` through `web::Data`; returns
/// its base URL. For the systems integrations call in tests.
pub fn serve_locally<T, F, Args>(state: std::sync::Arc<T>, handler: F) -> String
where
    T: Send + Sync + 'static,
    F: actix_web::Handler<Args> + Clone + Send + 'static,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    use actix_web::{web, App, HttpServer};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let data = web::Data::from(state);
    let server = HttpServer::new(move || App::new().app_data(data.clone()).default_service(web::to(handler.clone())))
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
    tokio::spawn(server);
    base
}
