//! Three (or N) `tessera serve` processes sharing one private PostgreSQL,
//! each on a loopback port of its own that it keeps across restarts, so a
//! client's list of nodes stays valid. Nodes can be killed (SIGKILL),
//! stopped (SIGTERM) and started again; their logs go to files kept when
//! the test fails.

use std::{path::PathBuf, process::Stdio, time::{Duration, Instant}};

use reqwest::{Method, RequestBuilder};
use serde_json::{json, Value};
use tokio::process::{Child, Command};

use super::{poll, signal, FaultError, PrivatePostgres, PrivateRabbitMq, Scratch};
use crate::{tessera_bin, BASE_DOMAIN, PLATFORM_OWNER};

/// The database the nodes share.
const DATABASE: &str = "tessera";
const HEALTHY: Duration = Duration::from_secs(30);
const EXIT: Duration = Duration::from_secs(30);

/// Held by every running fault cluster. Each one (a private PostgreSQL,
/// maybe a private RabbitMQ, three node processes, 2,000 executions) is
/// meant to load the machine; two at once would measure the machine's
/// overload instead of the fault, so they take turns.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub nodes: usize,
    /// Run a private RabbitMQ and give the nodes its URL
    /// (`cluster.amqp_url`) for delivering work to tenant owners.
    pub with_rabbitmq: bool,
    /// `cluster.heartbeat_interval_ms` and `cluster.node_timeout_ms`.
    pub heartbeat_ms: u64,
    pub node_timeout_ms: u64,
    /// `runtime.max_concurrent_executions`: executions of one tenant
    /// running at once on its owner.
    pub per_tenant_concurrency: usize,
    /// More `TESSERA_*` settings for every node, after the ones above.
    pub env: Vec<(&'static str, String)>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self { nodes: 3, with_rabbitmq: false, heartbeat_ms: 250, node_timeout_ms: 3000, per_tenant_concurrency: 64, env: Vec::new() }
    }
}

pub struct FaultCluster {
    /// One slot per port; `None` while that node is down. Dropped first:
    /// the processes are killed before their database goes.
    nodes: Vec<Option<Child>>,
    ports: Vec<u16>,
    rabbitmq: Option<PrivateRabbitMq>,
    postgres: PrivatePostgres,
    /// The database the tenants' `sql` steps write to: another server
    /// than the platform's, which the egress gate never lets a tenant reach.
    target: PrivatePostgres,
    logs: Scratch,
    options: ClusterOptions,
    jwt_secret: String,
    secrets_key: String,
    /// Node processes started so far, numbering their log files.
    started: usize,
    pub http: reqwest::Client,
    platform_token: String,
    /// Dropped last: the next fault cluster starts once this one is gone.
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl FaultCluster {
    /// Start the database (and broker), create the platform owner, start
    /// the nodes and wait until each answers.
    pub async fn start(options: ClusterOptions) -> Result<Self, FaultError> {
        let turn = ONE_AT_A_TIME.lock().await;
        let postgres = PrivatePostgres::start(800).await?;
        postgres.create_database(DATABASE).await?;
        let target = PrivatePostgres::start(800).await?;
        let rabbitmq = if options.with_rabbitmq { Some(PrivateRabbitMq::start().await?) } else { None };
        let ports = (0..options.nodes).map(|_| super::free_port()).collect::<Result<Vec<_>, _>>()?;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build()?;
        let mut cluster = Self {
            nodes: (0..options.nodes).map(|_| None).collect(),
            ports,
            rabbitmq,
            postgres,
            target,
            logs: Scratch::new("cluster", true)?,
            options,
            jwt_secret: format!("fault-test-secret-{}", uuid::Uuid::new_v4()),
            secrets_key: tessera_server::sealing::generate_key(),
            started: 0,
            http,
            platform_token: String::new(),
            _turn: turn,
        };
        cluster.init_platform().await?;
        for i in 0..cluster.ports.len() {
            cluster.restart(i).await?;
        }
        cluster.platform_token = cluster.platform_login().await?;
        Ok(cluster)
    }

    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// Whether node `i`'s process is still running (not exited on its own).
    pub fn running(&mut self, i: usize) -> bool {
        self.nodes[i].as_mut().is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    pub fn postgres(&self) -> &PrivatePostgres {
        &self.postgres
    }

    /// The server of the tenants' target database.
    pub fn target(&self) -> &PrivatePostgres {
        &self.target
    }

    pub fn rabbitmq(&mut self) -> Option<&mut PrivateRabbitMq> {
        self.rabbitmq.as_mut()
    }

    pub fn options(&self) -> &ClusterOptions {
        &self.options
    }

    /// The environment of every node process and CLI run.
    fn env(&self) -> Vec<(&'static str, String)> {
        let o = &self.options;
        let mut env = vec![
            ("TESSERA_DATABASE_URL", self.postgres.url(DATABASE)),
            ("TESSERA_BASE_DOMAIN", BASE_DOMAIN.into()),
            ("TESSERA_JWT_SECRET", self.jwt_secret.clone()),
            ("TESSERA_SECRETS__KEY", self.secrets_key.clone()),
            ("TESSERA_LOG__LEVEL", std::env::var("TESSERA_TEST_LOG").unwrap_or_else(|_| "warn".into())),
            ("TESSERA_CLUSTER__HEARTBEAT_INTERVAL_MS", o.heartbeat_ms.to_string()),
            ("TESSERA_CLUSTER__NODE_TIMEOUT_MS", o.node_timeout_ms.to_string()),
            ("TESSERA_RUNTIME__MAX_CONCURRENT_EXECUTIONS", o.per_tenant_concurrency.to_string()),
            ("TESSERA_HTTP__WORKERS", "2".into()),
            // The systems the tenants integrate with run on loopback.
            ("TESSERA_EGRESS__ALLOW_LOOPBACK", "true".into()),
            ("TESSERA_HTTP__SHUTDOWN_TIMEOUT_SECS", "5".into()),
            ("TESSERA_AUTH__LOGIN_PER_ACCOUNT_PER_MINUTE", "10000".into()),
            ("TESSERA_AUTH__LOGIN_PER_ADDRESS_PER_MINUTE", "100000".into()),
            ("TESSERA_PROVISIONING__EXPORT_DIR", self.logs.path().join("exports").display().to_string()),
        ];
        if let Some(broker) = &self.rabbitmq {
            env.push(("TESSERA_CLUSTER__AMQP_URL", broker.url()));
        }
        env.extend(o.env.iter().cloned());
        env
    }

    /// `tessera` with only this cluster's settings (none of the caller's
    /// TESSERA_* variables).
    fn tessera(&self) -> Command {
        let mut command = Command::new(tessera_bin());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("TESSERA_") {
                command.env_remove(key);
            }
        }
        command.envs(self.env()).stdin(Stdio::null()).kill_on_drop(true);
        command
    }

    async fn init_platform(&self) -> Result<(), FaultError> {
        let init = self.tessera().args(["platform", "init", "--email", PLATFORM_OWNER.0, "--password", PLATFORM_OWNER.1]).output();
        let out = tokio::time::timeout(HEALTHY, init)
            .await
            .map_err(|_| FaultError::deadline("tessera platform init", HEALTHY))?
            .map_err(FaultError::io("run tessera platform init"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(FaultError::Command { what: "tessera platform init".into(), detail: String::from_utf8_lossy(&out.stderr).into() })
        }
    }

    /// Start node `i` (again) on its port and wait until it answers.
    pub async fn restart(&mut self, i: usize) -> Result<(), FaultError> {
        let port = self.ports[i];
        self.started += 1;
        let log_path = self.logs.path().join(format!("node-{i}-{}.log", self.started));
        let log = std::fs::File::create(&log_path).map_err(FaultError::io("create a node log"))?;
        let err = log.try_clone().map_err(FaultError::io("clone a log handle"))?;
        let child = self
            .tessera()
            .arg("serve")
            .env("TESSERA_LISTEN", format!("127.0.0.1:{port}"))
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(FaultError::io("start tessera serve"))?;
        self.nodes[i] = Some(child);
        let http = self.http.clone();
        poll(&format!("node {i} healthy on port {port}"), HEALTHY, Duration::from_millis(100), || {
            let http = http.clone();
            async move { http.get(format!("http://127.0.0.1:{port}/healthz")).send().await.ok().filter(|r| r.status().is_success()) }
        })
        .await?;
        Ok(())
    }

    /// kill -9 node `i`: no goodbye, its leases simply stop being renewed.
    pub async fn kill(&mut self, i: usize) -> Result<(), FaultError> {
        let mut child = self.nodes[i].take().ok_or_else(|| FaultError::Missing(format!("node {i} is not running")))?;
        child.start_kill().map_err(FaultError::io("kill a node"))?;
        tokio::time::timeout(EXIT, child.wait())
            .await
            .map_err(|_| FaultError::deadline(format!("node {i} exit after SIGKILL"), EXIT))?
            .map_err(FaultError::io("wait for a node"))?;
        Ok(())
    }

    /// SIGTERM node `i` and wait for it to exit; how long it took.
    pub async fn terminate(&mut self, i: usize) -> Result<Duration, FaultError> {
        let mut child = self.nodes[i].take().ok_or_else(|| FaultError::Missing(format!("node {i} is not running")))?;
        let pid = child.id().ok_or_else(|| FaultError::Missing(format!("node {i} has exited already")))?;
        let sent = Instant::now();
        signal(pid, "TERM")?;
        let status = tokio::time::timeout(EXIT, child.wait())
            .await
            .map_err(|_| FaultError::deadline(format!("node {i} exit after SIGTERM"), EXIT))?
            .map_err(FaultError::io("wait for a node"))?;
        if !status.success() {
            return Err(FaultError::Command { what: format!("node {i} stopping on SIGTERM"), detail: status.to_string() });
        }
        Ok(sent.elapsed())
    }

    fn url(&self, i: usize, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports[i])
    }

    /// A request to the platform host of node `i`.
    pub fn platform_request(&self, i: usize, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, self.url(i, path)).header("host", format!("{BASE_DOMAIN}:{}", self.ports[i]))
    }

    /// A request to tenant `slug`'s host on node `i`.
    pub fn tenant_request(&self, i: usize, slug: &str, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, self.url(i, path)).header("host", format!("{slug}.{BASE_DOMAIN}:{}", self.ports[i]))
    }

    async fn platform_login(&self) -> Result<String, FaultError> {
        let body = json!({"email": PLATFORM_OWNER.0, "password": PLATFORM_OWNER.1});
        let answer = expect_json("platform login", self.platform_request(0, Method::POST, "/api/auth/login").json(&body)).await?;
        answer["token"].as_str().map(str::to_string).ok_or_else(|| FaultError::Missing("no token in the login answer".into()))
    }

    /// `GET path` on node `i`'s platform API as the platform owner.
    pub async fn platform_get(&self, i: usize, path: &str) -> Result<Value, FaultError> {
        expect_json(path, self.platform_request(i, Method::GET, path).bearer_auth(&self.platform_token)).await
    }

    /// `POST path` on node `i`'s platform API as the platform owner.
    pub async fn platform_post(&self, i: usize, path: &str, body: &Value) -> Result<Value, FaultError> {
        expect_json(path, self.platform_request(i, Method::POST, path).bearer_auth(&self.platform_token).json(body)).await
    }

    /// The cluster as node `i` reports it (`GET /api/platform/cluster`).
    pub async fn status(&self, i: usize) -> Result<Value, FaultError> {
        self.platform_get(i, "/api/platform/cluster").await
    }

    /// Node `i`'s id.
    pub async fn node_id(&self, i: usize) -> Result<String, FaultError> {
        let node = self.platform_get(i, "/api/platform/node").await?;
        node["id"].as_str().map(str::to_string).ok_or_else(|| FaultError::Missing(format!("no id in {node}")))
    }

    /// The tenants node `i` runs (holds the leases of, its supervisor
    /// knows), by slug.
    pub async fn workers(&self, i: usize) -> Result<Vec<String>, FaultError> {
        let node = self.platform_get(i, "/api/platform/node").await?;
        let workers = node["tenants"].as_array().ok_or_else(|| FaultError::Missing(format!("no tenants in {node}")))?;
        Ok(workers.iter().filter_map(|w| w["tenant"].as_str().map(str::to_string)).collect())
    }

    /// Where this cluster's node logs are.
    pub fn log_dir(&self) -> PathBuf {
        self.logs.path().to_path_buf()
    }
}

/// Send `request`; its JSON body when the status is a success.
pub(super) async fn expect_json(what: &str, request: RequestBuilder) -> Result<Value, FaultError> {
    let response = request.send().await?;
    let status = response.status();
    let body = response.text().await?;
    if !status.is_success() {
        return Err(FaultError::Refused { what: what.into(), status: status.as_u16(), body });
    }
    serde_json::from_str(&body).map_err(|e| FaultError::Missing(format!("{what}: not JSON ({e}): {body}")))
}
