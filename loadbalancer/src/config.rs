//! One typed configuration: an optional TOML file, then `TESSERA_DATABASE_URL`
//! and `TESSERA_BASE_DOMAIN` (shared with the nodes), then `TESSERA_LB_*`
//! variables (`__` between sections: `TESSERA_LB_HEALTH__INTERVAL_MS`).
//! The defaults work for a local start.

use std::{path::Path, path::PathBuf, time::Duration};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot load configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("{0}")]
    Invalid(String),
}

#[derive(Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Plain HTTP listener.
    pub listen: String,
    /// The platform's domain: tenants are `<slug>.<base_domain>`.
    pub base_domain: String,
    /// The directory database (clusters, tenants, custom domains).
    pub database_url: String,
    /// A node whose heartbeat is older than this is not routed to; the
    /// nodes' `cluster.node_timeout_ms`.
    pub node_timeout_ms: u64,
    /// Full reload of every table, besides notifications: the safety net
    /// for anything a notification could not say (heartbeats, lost ones).
    pub reload_interval_ms: u64,
    /// Notifications that arrive within this window cause one reload.
    pub reload_debounce_ms: u64,
    pub health: HealthConfig,
    pub upstream: UpstreamConfig,
    pub http: HttpConfig,
    pub tls: Option<TlsConfig>,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct HealthConfig {
    /// Every node's `GET /readyz` is checked this often.
    pub interval_ms: u64,
    /// A check slower than this failed.
    pub timeout_ms: u64,
    /// Consecutive failed checks before a node takes no requests.
    pub unhealthy_after: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct UpstreamConfig {
    pub connect_timeout_ms: u64,
    /// Until the node's response headers arrive: generous, since synchronous
    /// webhooks wait for their execution.
    pub response_timeout_ms: u64,
    /// Nodes tried for one request, the first included.
    pub max_attempts: u32,
    /// Request bodies up to this size are buffered so that an idempotent
    /// request can be sent again; larger ones stream.
    pub retry_buffer_bytes: u64,
    pub pool_idle_per_node: usize,
    pub pool_idle_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct HttpConfig {
    /// A client must send its request headers within this time.
    pub header_read_timeout_ms: u64,
    /// Largest request body passed on (413 `payload_too_large` above it).
    pub max_body_bytes: u64,
    /// On stop, in-flight requests get this long to finish.
    pub shutdown_timeout_ms: u64,
}

/// HTTPS on a second listener; the certificate is chosen by SNI.
#[derive(Debug, Clone, Deserialize)]
pub struct TlsConfig {
    pub listen: String,
    /// The first certificate without `domains` (or else the first listed)
    /// answers names no other certificate covers.
    pub certificates: Vec<CertificateConfig>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CertificateConfig {
    /// Names this certificate serves: exact (`hooks.acme.example`) or one
    /// wildcard label (`*.tessera.example`).
    #[serde(default)]
    pub domains: Vec<String>,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    pub level: String,
    pub json: bool,
}

/// The database URL may hold a password: it stays out of logs.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("base_domain", &self.base_domain)
            .field("database_url", &"***")
            .field("node_timeout_ms", &self.node_timeout_ms)
            .field("health", &self.health)
            .field("upstream", &self.upstream)
            .field("http", &self.http)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            // Beside a local node on 8080: the address a browser uses.
            listen: "127.0.0.1:8000".into(),
            base_domain: "localhost".into(),
            database_url: "postgres://postgres@127.0.0.1:5432/tessera".into(),
            node_timeout_ms: 6000,
            reload_interval_ms: 15_000,
            reload_debounce_ms: 75,
            health: HealthConfig::default(),
            upstream: UpstreamConfig::default(),
            http: HttpConfig::default(),
            tls: None,
            log: LogConfig::default(),
        }
    }
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self { interval_ms: 1000, timeout_ms: 1000, unhealthy_after: 2 }
    }
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            connect_timeout_ms: 2000,
            response_timeout_ms: 300_000,
            max_attempts: 2,
            retry_buffer_bytes: 64 * 1024,
            pool_idle_per_node: 64,
            pool_idle_timeout_ms: 60_000,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self { header_read_timeout_ms: 30_000, max_body_bytes: 16 * 1024 * 1024, shutdown_timeout_ms: 10_000 }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { level: "info".into(), json: false }
    }
}

/// Milliseconds as a `Duration`: every timing key is in milliseconds.
pub fn ms(value: u64) -> Duration {
    Duration::from_millis(value)
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
        let vars: config::Map<String, String> = env.unwrap_or_else(|| std::env::vars().collect());
        // Only these two are shared with the nodes: the nodes' other
        // TESSERA_* keys (their own `listen`) must not leak in.
        let shared = ["TESSERA_DATABASE_URL", "TESSERA_BASE_DOMAIN"]
            .iter()
            .filter_map(|key| vars.get(*key).map(|v| (key.to_string(), v.clone())))
            .collect();
        let shared = config::Environment::with_prefix("TESSERA").prefix_separator("_").source(Some(shared));
        let own = config::Environment::with_prefix("TESSERA_LB").prefix_separator("_").separator("__").source(Some(vars));
        let config: Config = builder.add_source(shared).add_source(own).build()?.try_deserialize()?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |what: &str| Err(ConfigError::Invalid(what.into()));
        if self.base_domain.is_empty() || self.base_domain != self.base_domain.to_ascii_lowercase() {
            return invalid("base_domain must be a lowercase domain name");
        }
        if self.upstream.max_attempts == 0 {
            return invalid("upstream.max_attempts must be at least 1");
        }
        if self.health.interval_ms == 0 || self.health.unhealthy_after == 0 {
            return invalid("health.interval_ms and health.unhealthy_after must be above 0");
        }
        if self.tls.as_ref().is_some_and(|tls| tls.certificates.is_empty()) {
            return invalid("tls needs at least one certificate");
        }
        Ok(())
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
        assert_eq!((config.listen.as_str(), config.base_domain.as_str()), ("127.0.0.1:8000", "localhost"));
        assert_eq!(config.health.unhealthy_after, 2);
    }

    #[test]
    fn shared_and_own_variables_are_read_and_the_nodes_listen_is_not() {
        let config = Config::load_with_env(
            None,
            env(&[
                ("TESSERA_DATABASE_URL", "postgres://db/dir"),
                ("TESSERA_BASE_DOMAIN", "tessera.example"),
                ("TESSERA_LISTEN", "0.0.0.0:8080"),
                ("TESSERA_LB_LISTEN", "0.0.0.0:80"),
                ("TESSERA_LB_HEALTH__INTERVAL_MS", "250"),
            ]),
        )
        .unwrap();
        assert_eq!(config.database_url, "postgres://db/dir");
        assert_eq!(config.base_domain, "tessera.example");
        assert_eq!(config.listen, "0.0.0.0:80");
        assert_eq!(config.health.interval_ms, 250);
    }
}
