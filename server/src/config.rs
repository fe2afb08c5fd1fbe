//! One typed configuration, from an optional TOML file plus `TESSERA_*`
//! environment variables (nested keys with `__`, e.g.
//! `TESSERA_DATABASE__POOL_SIZE`). Defaults make `tessera dev` work with no
//! configuration at all.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use tessera_runtime::{LimitOverrides, TenantLimits};

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Address the HTTP server binds.
    pub listen: String,
    /// Tenants are served at `<slug>.<base_domain>`; the bare domain serves
    /// the platform-owner API.
    pub base_domain: String,
    /// PostgreSQL URL. Unset: `serve` refuses to start and `dev` runs a
    /// private PostgreSQL.
    pub database_url: Option<String>,
    /// HMAC secret for tokens (at least 32 bytes), or read from `jwt_key_file`.
    pub jwt_secret: Option<String>,
    pub jwt_key_file: Option<PathBuf>,
    pub secrets: SecretsConfig,
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
    pub http: HttpConfig,
    pub log: LogConfig,
    pub provisioning: ProvisioningConfig,
    pub runtime: RuntimeConfig,
    pub cluster: ClusterConfig,
    /// Defaults of the limits per tenant (`TESSERA_LIMITS__RUNNING_EXECUTIONS`, …);
    /// the platform owner overrides them per tenant. Unset ones come from
    /// `runtime.max_concurrent_executions` and `http.max_body_bytes`, or are
    /// built in (see `tenant_limits`).
    pub limits: LimitOverrides,
    pub dev: DevConfig,
    /// The Prometheus endpoint (`crate::metrics`).
    pub metrics: MetricsConfig,
    /// What tenants' steps, triggers and connection tests may connect to
    /// (docs/security.md, "Egress").
    pub egress: EgressConfig,
    /// Expose the no-tenancy baseline routes used by bench/: only in a binary
    /// built with the `bench-routes` feature (never a release build).
    pub bench_routes: bool,
}

/// Keys that seal connection secrets at rest (see `sealing`). Each is base64
/// of 32 random bytes.
#[derive(Clone, Default, Deserialize)]
#[serde(default)]
pub struct SecretsConfig {
    /// The current key; or read from `key_file`.
    pub key: Option<String>,
    pub key_file: Option<PathBuf>,
    /// Retired keys, still accepted to open what they sealed (rotation).
    pub previous_keys: Vec<String>,
}

/// Keys stay out of logs and error reports.
impl std::fmt::Debug for SecretsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsConfig")
            .field("key", &self.key.as_ref().map(|_| "***"))
            .field("key_file", &self.key_file)
            .field("previous_keys", &self.previous_keys.len())
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DatabaseConfig {
    /// Connections for tenant statements (one lane each, `tenancy::lanes`).
    pub pool_size: usize,
    /// Connections for the platform's own tables (tenants, leases, limits).
    pub platform_pool_size: usize,
    /// A connection that has touched more tenant schemas than this is
    /// replaced: each backend keeps every schema's catalog it has read
    /// (about 190 KiB a schema under load), so the lanes' catalogs stay
    /// under `pool_size` × this × 190 KiB (16 × 200: 600 MiB).
    pub max_schemas_per_connection: usize,
    pub acquire_timeout_secs: u64,
    /// Connections older than this are closed instead of reused.
    pub connection_max_lifetime_secs: u64,
    /// How many tenant statements (each tenant's copy of a statement
    /// counts) one lane connection keeps prepared; the others run unnamed
    /// (`tenancy::kept`).
    pub max_cached_statements: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    pub token_ttl_secs: u64,
    /// Login attempts allowed per account per minute.
    pub login_per_account_per_minute: u32,
    /// Login attempts allowed per client address per minute.
    pub login_per_address_per_minute: u32,
    /// The proxies in front of the node (addresses or CIDR ranges). A
    /// login's client address comes from `X-Forwarded-For` only when the
    /// connection comes from one of them; empty: never.
    /// In a file a list; in the environment (`TESSERA_AUTH__TRUSTED_PROXIES`)
    /// one string, comma-separated.
    #[serde(deserialize_with = "proxy_ranges")]
    pub trusted_proxies: Vec<ProxyRange>,
    /// Replaced by `trusted_proxies`; still read so a configuration that
    /// sets it fails at start instead of silently trusting nobody.
    pub trust_forwarded_for: bool,
}

/// A proxy whose `X-Forwarded-For` is believed: one address or a CIDR range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct ProxyRange(ipnet::IpNet);

impl ProxyRange {
    pub(crate) fn contains(&self, address: &IpAddr) -> bool {
        self.0.contains(address)
    }
}

impl TryFrom<String> for ProxyRange {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let text = text.trim();
        let net = match text.parse::<IpAddr>() {
            Ok(address) => ipnet::IpNet::from(address),
            Err(_) => text.parse().map_err(|_| format!("`{text}` is neither an IP address nor a CIDR range"))?,
        };
        Ok(Self(net))
    }
}

/// A list of [`ProxyRange`]s, written as a list or as one comma-separated
/// string (how an environment variable carries it).
fn proxy_ranges<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<ProxyRange>, D::Error> {
    written_list(deserializer)?.into_iter().map(|t| ProxyRange::try_from(t).map_err(serde::de::Error::custom)).collect()
}

/// A list of texts, written as a list or as one comma-separated string.
fn written_list<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Written {
        List(Vec<String>),
        Text(String),
    }
    Ok(match serde::Deserialize::deserialize(deserializer)? {
        Written::List(items) => items,
        Written::Text(text) => text.split(',').filter(|t| !t.trim().is_empty()).map(str::to_string).collect(),
    })
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct HttpConfig {
    /// Largest accepted request body, in bytes: the node's hard maximum (a
    /// tenant's `request_body_bytes` is never above it), and the default of
    /// `limits.request_body_bytes`.
    pub max_body_bytes: usize,
    /// How long in-flight requests may run after a shutdown signal.
    pub shutdown_timeout_secs: u64,
    /// Worker threads; 0 means one per core.
    pub workers: usize,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// An EnvFilter directive, e.g. `info,tessera_server=debug`.
    pub level: String,
    /// Export traces (requests, executions, steps) over OTLP/HTTP to this
    /// collector URL, e.g. `http://collector:4318/v1/traces`. Off when unset:
    /// nothing leaves the node unless configured.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` of the exported spans.
    pub otlp_service_name: String,
    /// The share of traces exported, 0.0 to 1.0 (a busy node runs thousands
    /// of executions a second).
    pub otlp_sample_ratio: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ProvisioningConfig {
    /// Where a tenant's schema is exported before it is deleted.
    pub export_dir: PathBuf,
    /// `pg_dump` to use for exports; found on PATH or in the PostgreSQL install if unset.
    pub pg_dump: Option<PathBuf>,
    /// Tenant schemas migrated at once by `tessera migrate`.
    pub migrate_parallelism: usize,
    /// The longest a tenant's move to another cluster may pause its writes:
    /// a tenant whose running executions take longer to finish stays where
    /// it is and the move fails (`provisioning::moves`).
    pub move_max_pause_ms: u64,
    /// The DNS servers (`address:port`) asked for a custom domain's proof
    /// of ownership; empty: the system's resolver. In the environment
    /// (`TESSERA_PROVISIONING__DNS_SERVERS`) one comma-separated string.
    #[serde(deserialize_with = "socket_addresses")]
    pub dns_servers: Vec<std::net::SocketAddr>,
}

fn socket_addresses<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<std::net::SocketAddr>, D::Error> {
    written_list(deserializer)?
        .iter().map(|t| t.trim().parse().map_err(|_| serde::de::Error::custom(format!("`{t}` is not an address:port")))).collect()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RuntimeConfig {
    /// Executions of one tenant that run at once on this node; further ones
    /// wait for a slot, so one busy tenant cannot take the whole node. The
    /// default of `limits.running_executions` (which wins when set).
    pub max_concurrent_executions: usize,
    /// Time budget of an execution whose integration sets no `timeout`.
    pub execution_timeout_secs: u64,
    /// Finished executions older than this many days are deleted, unless
    /// their integration's `retention.days` says otherwise; 0 keeps them.
    pub retention_days: u32,
    /// How often this node sweeps old executions (0: never).
    pub retention_sweep_secs: u64,
    /// An execution whose node died this many times while it ran (a
    /// poison pill: it may be what kills them) fails with `node_crashed`
    /// instead of being resumed again; 0: resume it forever.
    pub max_execution_crashes: u32,
    /// Commit the checkpoints and finishes of all running executions in
    /// batches, one transaction per lane per batch (`committer`); off,
    /// each is its own commit.
    pub batch_commits: bool,
    /// New executions (webhooks and API runs) one tenant may start per
    /// second on this node; 0: no limit. A request over it waits for its
    /// turn (up to a second), then gets 429 with `Retry-After`.
    pub intake_per_second: u32,
    /// How many may come at once above that rate (the bucket's size).
    pub intake_burst: u32,
    /// A tenant worker with nothing to run and no schedule or queue
    /// trigger stops after this many seconds idle; it starts again when
    /// work comes (a node runs workers for tenants with work only).
    pub retire_idle_worker_secs: u64,
}

/// This node's place in its cluster: membership heartbeats and tenant
/// leases (docs/clustering.md).
#[derive(Clone, Deserialize)]
#[serde(default)]
pub struct ClusterConfig {
    /// The cluster this node serves; it runs only that cluster's tenants.
    pub id: String,
    /// The address other nodes and the load balancer reach this node at;
    /// `listen` when unset.
    pub advertise_address: Option<String>,
    /// How often the node renews its heartbeat and its tenant leases.
    pub heartbeat_interval_ms: u64,
    /// A node silent for this long is dead, and its tenant leases have
    /// expired: other nodes take its tenants over.
    pub node_timeout_ms: u64,
    /// The RabbitMQ that carries worker commands between the cluster's
    /// nodes (`amqp://user:password@host:5672/vhost`). Unset: they travel as
    /// PostgreSQL notifications.
    pub amqp_url: Option<String>,
    /// How long a draining or stopping node waits for its running
    /// executions to finish before it hands them over unfinished.
    pub drain_timeout_ms: u64,
}

/// The broker URL holds a password: it stays out of logs.
impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("id", &self.id)
            .field("advertise_address", &self.advertise_address)
            .field("heartbeat_interval_ms", &self.heartbeat_interval_ms)
            .field("node_timeout_ms", &self.node_timeout_ms)
            .field("amqp_url", &self.amqp_url.as_ref().map(|_| "***"))
            .field("drain_timeout_ms", &self.drain_timeout_ms)
            .finish()
    }
}

/// The platform-wide egress policy; each tenant's own rules add to it
/// (`tessera tenant egress`). The platform's own endpoints, link-local,
/// unspecified, multicast and broadcast addresses are never allowed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct EgressConfig {
    /// `open`: public addresses are allowed; `allowlist`: only what an
    /// allow rule names (a site fully behind a firewall).
    pub mode: tessera_runtime::egress::EgressMode,
    /// Loopback addresses (a laptop demo, a test harness); never in production.
    pub allow_loopback: bool,
    /// Private ranges (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7) without a rule.
    pub allow_private: bool,
    /// Rules for every tenant: CIDRs, addresses or host patterns
    /// (`*.acme.internal`), each with an optional `:port`; a list, or one
    /// comma-separated string (`TESSERA_EGRESS__ALLOW`).
    #[serde(deserialize_with = "rule_list")]
    pub allow: Vec<tessera_runtime::egress::Rule>,
    /// Denied for every tenant; a deny wins over any allow.
    #[serde(deserialize_with = "rule_list")]
    pub deny: Vec<tessera_runtime::egress::Rule>,
}

/// Rules as a list, or as one comma-separated string (an environment variable).
fn rule_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<tessera_runtime::egress::Rule>, D::Error> {
    written_list(d)?.iter().map(|t| t.trim().parse().map_err(serde::de::Error::custom)).collect()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct MetricsConfig {
    /// Where `GET /metrics` is served (`0.0.0.0:9464`, say), apart from
    /// the API; unset: nowhere (the counting costs nothing to speak of),
    /// except under `tessera dev`, which takes a free loopback port.
    pub listen: Option<String>,
    /// Tenants with a `tenant` label of their own on this node; the rest
    /// count under `_other`.
    pub max_tenant_labels: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { listen: None, max_tenant_labels: 100 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DevConfig {
    /// Where `tessera dev` keeps its private PostgreSQL and keys.
    pub data_dir: Option<PathBuf>,
    pub postgres_port: u16,
    /// Run the load balancer (`tessera-lb`) on `listen`, in front of the
    /// node, which then listens on a free loopback port; off: the node
    /// listens on `listen` itself.
    pub load_balancer: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            base_domain: "localhost".into(),
            database_url: None,
            jwt_secret: None,
            jwt_key_file: None,
            secrets: SecretsConfig::default(),
            database: DatabaseConfig::default(),
            auth: AuthConfig::default(),
            http: HttpConfig::default(),
            log: LogConfig::default(),
            provisioning: ProvisioningConfig::default(),
            runtime: RuntimeConfig::default(),
            cluster: ClusterConfig::default(),
            limits: LimitOverrides::default(),
            dev: DevConfig::default(),
            metrics: MetricsConfig::default(),
            egress: EgressConfig::default(),
            bench_routes: false,
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            pool_size: 16,
            platform_pool_size: 4,
            max_schemas_per_connection: 200,
            acquire_timeout_secs: 5,
            connection_max_lifetime_secs: 1800,
            max_cached_statements: 64,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            token_ttl_secs: 3600,
            login_per_account_per_minute: 10,
            login_per_address_per_minute: 60,
            trusted_proxies: Vec::new(),
            trust_forwarded_for: false,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self { max_body_bytes: 1024 * 1024, shutdown_timeout_secs: 30, workers: 0 }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            level: "info,refinery_core=warn,tokio_postgres=warn".into(),
            otlp_endpoint: None,
            otlp_service_name: "tessera".into(),
            otlp_sample_ratio: 1.0,
        }
    }
}

impl Default for ProvisioningConfig {
    fn default() -> Self {
        Self { export_dir: PathBuf::from("tenant-exports"), pg_dump: None, migrate_parallelism: 4, move_max_pause_ms: 10_000, dns_servers: Vec::new() }
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            max_concurrent_executions: 8,
            execution_timeout_secs: 300,
            retention_days: 30,
            retention_sweep_secs: 3600,
            max_execution_crashes: 3,
            batch_commits: true,
            intake_per_second: 200,
            intake_burst: 400,
            retire_idle_worker_secs: 60,
        }
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            id: "local".into(),
            advertise_address: None,
            heartbeat_interval_ms: 1000,
            node_timeout_ms: 6000,
            amqp_url: None,
            drain_timeout_ms: 30_000,
        }
    }
}

impl Default for DevConfig {
    fn default() -> Self {
        Self { data_dir: None, postgres_port: 54329, load_balancer: true }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot load configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// Load from `file` (if given, it must exist) and the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(file, None)
    }

    /// Load from `file` and `env` (the process environment when `None`).
    pub fn load_with_env(file: Option<&Path>, env: Option<config::Map<String, String>>) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            builder = builder.add_source(config::File::from(path).required(true));
        }
        let env = config::Environment::with_prefix("TESSERA")
            .prefix_separator("_")
            .separator("__")
            // No try_parsing: it would turn a numeric secret like "0123" into
            // the number 123. Typed fields parse their strings on deserialising.
            .source(env);
        let config: Config = builder.add_source(env).build()?.try_deserialize()?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let base = &self.base_domain;
        let base_ok = !base.is_empty()
            && base.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && !base.split('.').any(str::is_empty);
        if !base_ok {
            return Err(ConfigError::Invalid(format!("base_domain '{base}' is not a lowercase DNS name")));
        }
        if self.database.pool_size == 0 || self.database.platform_pool_size == 0 {
            return Err(ConfigError::Invalid("database.pool_size and database.platform_pool_size must be at least 1".into()));
        }
        let cluster = &self.cluster;
        if cluster.heartbeat_interval_ms == 0 || cluster.node_timeout_ms < 3 * cluster.heartbeat_interval_ms {
            // A lease must survive a late heartbeat or two, or a busy node
            // would lose its tenants to a slow round trip.
            return Err(ConfigError::Invalid(
                "cluster.node_timeout_ms must be at least 3 × cluster.heartbeat_interval_ms (and the interval above 0)".into(),
            ));
        }
        // Checked here so a typo stops the node at start, not at its first
        // forwarded command; the URL itself is never echoed (it holds a password).
        if cluster.amqp_url.as_deref().is_some_and(|url| url.parse::<lapin::uri::AMQPUri>().is_err()) {
            return Err(ConfigError::Invalid("cluster.amqp_url is not a valid AMQP URL".into()));
        }
        if self.bench_routes && !cfg!(feature = "bench-routes") {
            return Err(ConfigError::Invalid(
                "bench_routes needs a binary built with `--features bench-routes` (bench/ only)".into(),
            ));
        }
        if self.auth.trust_forwarded_for {
            return Err(ConfigError::Invalid(
                "auth.trust_forwarded_for is replaced by auth.trusted_proxies: list the addresses of the proxies in front".into(),
            ));
        }
        self.limits.validate().map_err(|e| ConfigError::Invalid(format!("limits: {e}")))?;
        if self.tenant_limits().request_body_bytes > self.http.max_body_bytes {
            return Err(ConfigError::Invalid("limits.request_body_bytes cannot be above http.max_body_bytes".into()));
        }
        if self.provisioning.migrate_parallelism == 0 {
            return Err(ConfigError::Invalid("provisioning.migrate_parallelism must be at least 1".into()));
        }
        let log = &self.log;
        if log.otlp_endpoint.as_deref().is_some_and(|url| !(url.starts_with("http://") || url.starts_with("https://"))) {
            return Err(ConfigError::Invalid("log.otlp_endpoint must be an http:// or https:// URL (OTLP over HTTP)".into()));
        }
        if !(0.0..=1.0).contains(&log.otlp_sample_ratio) {
            return Err(ConfigError::Invalid("log.otlp_sample_ratio must be between 0.0 and 1.0".into()));
        }
        Ok(())
    }

    /// A tenant's limits when the platform owner set none of its own: the
    /// built-in ones, then the older keys that set two of them, then the
    /// `limits` section.
    pub fn tenant_limits(&self) -> TenantLimits {
        let older = TenantLimits {
            running_executions: self.runtime.max_concurrent_executions.max(1),
            request_body_bytes: self.http.max_body_bytes,
            ..TenantLimits::default()
        };
        older.with(&self.limits)
    }

    pub fn require_database_url(&self) -> Result<&str, ConfigError> {
        self.database_url.as_deref().ok_or_else(|| {
            ConfigError::Invalid(
                "no database configured: set TESSERA_DATABASE_URL (or use `tessera dev`, which runs its own PostgreSQL)".into(),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Option<config::Map<String, String>> {
        Some(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn defaults_make_a_local_start_work() {
        let config = Config::load_with_env(None, env(&[])).unwrap();
        assert_eq!(config.listen, "127.0.0.1:8080");
        assert_eq!(config.base_domain, "localhost");
        assert!(config.database_url.is_none());
        assert!(config.require_database_url().is_err());
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = std::env::temp_dir().join(format!("tessera-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("tessera.toml");
        std::fs::write(&file, "listen = \"0.0.0.0:9000\"\nbase_domain = \"eu1.example.com\"\n[database]\npool_size = 3\n").unwrap();
        let config = Config::load_with_env(
            Some(&file),
            env(&[
                ("TESSERA_DATABASE_URL", "postgres://db/tessera"),
                ("TESSERA_JWT_SECRET", "0123456789"),
                ("TESSERA_DATABASE__POOL_SIZE", "7"),
                ("TESSERA_LOG__FORMAT", "json"),
                ("TESSERA_UNRELATED_SETTING", "ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(config.listen, "0.0.0.0:9000");
        assert_eq!(config.base_domain, "eu1.example.com");
        assert_eq!(config.database_url.as_deref(), Some("postgres://db/tessera"));
        assert_eq!(config.jwt_secret.as_deref(), Some("0123456789"));
        assert_eq!(config.database.pool_size, 7);
        assert_eq!(config.log.format, LogFormat::Json);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_egress_policy_reads_from_the_environment_with_comma_separated_rules() {
        let config = Config::load_with_env(
            None,
            env(&[
                ("TESSERA_EGRESS__MODE", "allowlist"),
                ("TESSERA_EGRESS__ALLOW_LOOPBACK", "true"),
                ("TESSERA_EGRESS__ALLOW", "10.0.0.0/8, *.acme.internal:443"),
            ]),
        )
        .unwrap();
        assert_eq!(config.egress.mode, tessera_runtime::egress::EgressMode::Allowlist);
        assert!(config.egress.allow_loopback && !config.egress.allow_private);
        let allow: Vec<&str> = config.egress.allow.iter().map(|r| r.as_str()).collect();
        assert_eq!(allow, ["10.0.0.0/8", "*.acme.internal:443"]);
        let defaults = Config::load_with_env(None, env(&[])).unwrap();
        assert!(!defaults.egress.allow_loopback && !defaults.egress.allow_private, "production defaults deny loopback and private ranges");
        assert!(Config::load_with_env(None, env(&[("TESSERA_EGRESS__DENY", "not a rule")])).is_err());
        assert!(Config::load_with_env(None, env(&[("TESSERA_EGRESS__MODE", "closed")])).is_err());
    }

    #[test]
    fn invalid_values_are_reported() {
        assert!(Config::load_with_env(None, env(&[("TESSERA_BASE_DOMAIN", "Bad Domain")])).is_err());
        assert!(Config::load_with_env(None, env(&[("TESSERA_DATABASE__POOL_SIZE", "lots")])).is_err());
        assert!(Config::load_with_env(Some(Path::new("/nonexistent/tessera.toml")), env(&[])).is_err());
        assert!(Config::load_with_env(None, env(&[("TESSERA_CLUSTER__AMQP_URL", "http://not-a-broker")])).is_err());
        assert!(Config::load_with_env(None, env(&[("TESSERA_AUTH__TRUST_FORWARDED_FOR", "true")])).is_err());
        assert!(Config::load_with_env(None, env(&[("TESSERA_AUTH__TRUSTED_PROXIES", "10.0.0.0/8,nonsense")])).is_err());
        if !cfg!(feature = "bench-routes") {
            assert!(Config::load_with_env(None, env(&[("TESSERA_BENCH_ROUTES", "true")])).is_err(), "bench routes need the feature");
        }
    }

    #[test]
    fn trusted_proxies_are_read_as_a_list_from_the_environment() {
        let config = Config::load_with_env(None, env(&[("TESSERA_AUTH__TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.7")])).map_err(|e| e.to_string()).unwrap();
        assert_eq!(config.auth.trusted_proxies.len(), 2);
    }

    #[test]
    fn trace_export_is_off_by_default_and_its_settings_are_checked() {
        let config = Config::load_with_env(None, env(&[])).map_err(|e| e.to_string()).unwrap();
        assert!(config.log.otlp_endpoint.is_none());
        let on = env(&[("TESSERA_LOG__OTLP_ENDPOINT", "http://collector:4318/v1/traces"), ("TESSERA_LOG__OTLP_SAMPLE_RATIO", "0.25")]);
        let config = Config::load_with_env(None, on).map_err(|e| e.to_string()).unwrap();
        assert_eq!((config.log.otlp_endpoint.as_deref(), config.log.otlp_sample_ratio), (Some("http://collector:4318/v1/traces"), 0.25));
        for bad in [("TESSERA_LOG__OTLP_ENDPOINT", "collector:4317"), ("TESSERA_LOG__OTLP_SAMPLE_RATIO", "2")] {
            let refused = Config::load_with_env(None, env(&[bad])).map_err(|e| e.to_string()).unwrap_err();
            assert!(refused.contains("log.otlp_"), "{refused}");
        }
    }

    #[test]
    fn tenant_limits_default_to_the_older_keys_and_the_limits_section_wins() {
        let older = Config::load_with_env(
            None,
            env(&[("TESSERA_RUNTIME__MAX_CONCURRENT_EXECUTIONS", "3"), ("TESSERA_HTTP__MAX_BODY_BYTES", "4096")]),
        )
        .unwrap();
        assert_eq!(older.tenant_limits().running_executions, 3);
        assert_eq!(older.tenant_limits().request_body_bytes, 4096);
        let newer = Config::load_with_env(
            None,
            env(&[
                ("TESSERA_RUNTIME__MAX_CONCURRENT_EXECUTIONS", "3"),
                ("TESSERA_LIMITS__RUNNING_EXECUTIONS", "5"),
                ("TESSERA_LIMITS__FOREACH_ITEMS", "77"),
            ]),
        )
        .unwrap();
        assert_eq!(newer.tenant_limits().running_executions, 5);
        assert_eq!(newer.tenant_limits().foreach_items, 77);
        assert!(Config::load_with_env(None, env(&[("TESSERA_LIMITS__SQL_CONNECTIONS", "0")])).is_err());
        assert!(Config::load_with_env(None, env(&[("TESSERA_LIMITS__NO_SUCH_LIMIT", "1")])).is_err());
        let above = [("TESSERA_HTTP__MAX_BODY_BYTES", "1000"), ("TESSERA_LIMITS__REQUEST_BODY_BYTES", "2000")];
        assert!(Config::load_with_env(None, env(&above)).is_err(), "a tenant's body limit above the node's maximum");
    }

    #[test]
    fn the_broker_url_is_read_and_kept_out_of_debug_output() {
        let url = "amqp://tessera:s3cret@mq.internal:5672/%2f";
        let config = Config::load_with_env(None, env(&[("TESSERA_CLUSTER__AMQP_URL", url), ("TESSERA_CLUSTER__DRAIN_TIMEOUT_MS", "5000")])).unwrap();
        assert_eq!(config.cluster.amqp_url.as_deref(), Some(url));
        assert_eq!(config.cluster.drain_timeout_ms, 5000);
        assert!(!format!("{config:?}").contains("s3cret"));
    }
}
