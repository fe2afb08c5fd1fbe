//! The node's side of the egress gate (`tessera_runtime::egress`): the
//! platform-wide policy built from the configuration (with the platform's
//! own endpoints, which no tenant may reach), each tenant's rules in
//! `platform.tenant_egress_rules`, managed by the platform owner through the
//! API and the CLI, and the notification that makes every node read a
//! tenant's rules again after a change (no restart).

use std::{
    net::{IpAddr, SocketAddr, ToSocketAddrs},
    sync::Arc,
};

use deadpool_postgres::Pool;
use serde::Serialize;
use tessera_runtime::{
    egress::{Egress, EgressMode, EgressPolicy, PlatformEndpoint, Rule, RulesFuture, RulesSource, TenantRules},
    execution::StoreError,
};
use uuid::Uuid;

use crate::{config::Config, database::DbError, tenancy::TenantSlug};

/// Announces a change of one tenant's rules; the payload is its id.
pub const EGRESS_CHANGES_CHANNEL: &str = "tessera_egress_changes";

#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error(transparent)]
    InvalidRule(#[from] tessera_runtime::egress::RuleError),
    /// A change that names no rule.
    #[error("`rules` names no rule")]
    NoRules,
    /// Neither `allow` nor `deny`.
    #[error("no such endpoint: egress rules are `allow` or `deny`")]
    UnknownAction(String),
    #[error("no tenant '{0}'")]
    TenantNotFound(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<tokio_postgres::Error> for EgressError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Db(e.into())
    }
}

impl From<deadpool_postgres::PoolError> for EgressError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Db(e.into())
    }
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Deny,
}

impl Action {
    pub fn parse(text: &str) -> Result<Self, EgressError> {
        match text {
            "allow" => Ok(Self::Allow),
            "deny" => Ok(Self::Deny),
            _ => Err(EgressError::UnknownAction(text.to_string())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

/// The platform-wide policy of this node: the configured rules, and the
/// platform's own endpoints (its database, its broker, this node's listen
/// and advertised addresses), resolved once at start.
pub fn platform_policy(config: &Config, listen: SocketAddr) -> EgressPolicy {
    let egress = &config.egress;
    let mut platform = Vec::new();
    if let Some(url) = config.database_url.as_deref()
        && let Ok(db) = url.parse::<tokio_postgres::Config>()
    {
        let ports = db.get_ports();
        for (i, host) in db.get_hosts().iter().enumerate() {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            if let tokio_postgres::config::Host::Tcp(name) = host {
                platform.extend(endpoints(name, port, "the platform's database"));
            }
        }
        for (i, ip) in db.get_hostaddrs().iter().enumerate() {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            platform.push(PlatformEndpoint { ip: Some(*ip), port, what: "the platform's database".into() });
        }
    }
    if let Some(uri) = config.cluster.amqp_url.as_deref().and_then(|u| u.parse::<lapin::uri::AMQPUri>().ok()) {
        platform.extend(endpoints(&uri.authority.host, uri.authority.port, "the platform's broker"));
    }
    let ip = Some(listen.ip()).filter(|ip| !ip.is_unspecified());
    platform.push(PlatformEndpoint { ip, port: listen.port(), what: "a node's API".into() });
    if let Some((host, port)) = config.cluster.advertise_address.as_deref().and_then(|a| a.rsplit_once(':'))
        && let Ok(port) = port.parse()
    {
        platform.extend(endpoints(host, port, "a node's API"));
    }
    EgressPolicy {
        mode: egress.mode,
        allow_loopback: egress.allow_loopback,
        allow_private: egress.allow_private,
        allow: egress.allow.clone(),
        deny: egress.deny.clone(),
        platform,
    }
}

/// Every address `host` resolves to, as endpoints of the platform. A name
/// that does not resolve at start protects nothing and is logged.
fn endpoints(host: &str, port: u16, what: &str) -> Vec<PlatformEndpoint> {
    let host = tessera_runtime::egress::normalise_host(host);
    let ips: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => match (host.as_str(), port).to_socket_addrs() {
            Ok(addrs) => addrs.map(|a| a.ip()).collect(),
            Err(e) => {
                tracing::warn!(host = %host, error = %e, "cannot resolve a platform endpoint; the egress gate cannot protect it by address");
                Vec::new()
            }
        },
    };
    ips.into_iter().map(|ip| PlatformEndpoint { ip: Some(ip), port, what: what.to_string() }).collect()
}

/// The node's gate: the platform policy, and each tenant's rules read from
/// the platform schema.
pub fn gate(config: &Config, listen: SocketAddr, pool: Pool) -> Arc<Egress> {
    Arc::new(Egress::new(platform_policy(config, listen), Arc::new(PgRules { pool })))
}

struct PgRules {
    pool: Pool,
}

impl RulesSource for PgRules {
    fn rules(&self, tenant: Uuid) -> RulesFuture<'_> {
        Box::pin(async move {
            let store = |e: EgressError| StoreError(Box::new(e));
            let client = self.pool.get().await.map_err(|e| store(e.into()))?;
            let rows = client
                .query("SELECT action, rule FROM platform.tenant_egress_rules WHERE tenant_id = $1 ORDER BY rule", &[&tenant])
                .await
                .map_err(|e| store(e.into()))?;
            let mut rules = TenantRules::default();
            for row in rows {
                let (action, text): (String, String) = (row.get(0), row.get(1));
                // Stored rules were parsed when they were added; one that no longer parses is skipped, loudly.
                let Ok(rule) = text.parse::<Rule>() else {
                    tracing::error!(tenant_id = %tenant, rule = %text, "stored egress rule does not parse; ignored");
                    continue;
                };
                match action.as_str() {
                    "deny" => rules.deny.push(rule),
                    _ => rules.allow.push(rule),
                }
            }
            Ok(rules)
        })
    }
}

/// Keep the gate's list of the platform's other nodes current: the
/// addresses of every node registered with a heartbeat in the last day
/// (any cluster of this database), read now and every `every`.
pub fn spawn_peer_watch(pool: Pool, egress: Arc<Egress>, every: std::time::Duration, shutdown: tokio_util::sync::CancellationToken) {
    tokio::spawn(async move {
        loop {
            match peers(&pool).await {
                Ok(peers) => egress.set_peers(peers),
                Err(e) => tracing::warn!(error = %e, "cannot read the platform's nodes for the egress gate; keeping the last list"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    });
}

async fn peers(pool: &Pool) -> Result<Vec<PlatformEndpoint>, EgressError> {
    let client = pool.get().await?;
    let sql = "SELECT DISTINCT address FROM platform.nodes WHERE heartbeat_at > now() - interval '1 day'";
    let rows = client.query(sql, &[]).await?;
    let addresses: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    // Node addresses are `ip:port` as a rule; a name is resolved off the async threads.
    let resolved = tokio::task::spawn_blocking(move || {
        addresses
            .iter()
            .filter_map(|a| a.rsplit_once(':'))
            .filter_map(|(host, port)| Some((host.to_string(), port.parse::<u16>().ok()?)))
            .flat_map(|(host, port)| endpoints(&host, port, "a node of the platform"))
            .collect()
    });
    Ok(resolved.await.unwrap_or_default())
}

/// Forgets a tenant's rules on every node when they change, and reloads
/// the tenant's worker where it runs, so its queue consumers connect again
/// through the gate under the new rules.
pub struct Changes {
    pub egress: Arc<Egress>,
    pub supervisor: tessera_runtime::Supervisor,
}

impl crate::notifications::Subscriber for Changes {
    fn channel(&self) -> &'static str {
        EGRESS_CHANGES_CHANNEL
    }

    fn notified(&self, payload: &str) {
        let Ok(tenant) = payload.parse::<Uuid>() else { return self.egress.forget_all() };
        self.egress.forget(tenant);
        let supervisor = self.supervisor.clone();
        tokio::spawn(async move { supervisor.send_here(tenant, tessera_runtime::WorkerCommand::Reload).await });
    }

    fn resync(&self) {
        self.egress.forget_all();
    }
}

/// A tenant's egress rules and the platform policy they add to.
#[derive(Debug, Serialize)]
pub struct TenantEgress {
    pub tenant: String,
    pub allow: Vec<String>,
    pub deny: Vec<String>,
    pub platform: PlatformView,
}

#[derive(Debug, Serialize)]
pub struct PlatformView {
    pub mode: EgressMode,
    pub allow_loopback: bool,
    pub allow_private: bool,
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}

async fn tenant_id(client: &deadpool_postgres::Object, slug: &str) -> Result<Uuid, EgressError> {
    let not_found = || EgressError::TenantNotFound(slug.to_string());
    TenantSlug::parse(slug).map_err(|_| not_found())?;
    let row = client.query_opt("SELECT id FROM platform.tenants WHERE slug = $1", &[&slug]).await?;
    row.map(|r| r.get(0)).ok_or_else(not_found)
}

/// `slug`'s rules, with the platform policy of `config`.
pub async fn show(pool: &Pool, config: &Config, slug: &str) -> Result<TenantEgress, EgressError> {
    let client = pool.get().await?;
    let tenant = tenant_id(&client, slug).await?;
    let rows = client
        .query("SELECT action, rule FROM platform.tenant_egress_rules WHERE tenant_id = $1 ORDER BY created_at, rule", &[&tenant])
        .await?;
    let of = |action: &str| rows.iter().filter(|r| r.get::<_, &str>(0) == action).map(|r| r.get::<_, String>(1)).collect();
    let texts = |rules: &[Rule]| rules.iter().map(|r| r.to_string()).collect();
    let e = &config.egress;
    let platform =
        PlatformView { mode: e.mode, allow_loopback: e.allow_loopback, allow_private: e.allow_private, allow: texts(&e.allow), deny: texts(&e.deny) };
    Ok(TenantEgress { tenant: slug.to_string(), allow: of("allow"), deny: of("deny"), platform })
}

/// Add (or, with `remove`, take away) `rules` of `action` for `slug`, all
/// or none, and tell every node; returns the tenant's id. A rule that is
/// already there (or, when removing, not there) changes nothing.
/// Add or remove `rules` in one database's `platform.tenant_egress_rules`,
/// announced to that database's nodes.
async fn store_rules(
    client: &impl tokio_postgres::GenericClient,
    tenant: Uuid,
    action: Action,
    rules: &[Rule],
    remove: bool,
) -> Result<(), EgressError> {
    let sql = match remove {
        false => "INSERT INTO platform.tenant_egress_rules (tenant_id, action, rule) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        true => "DELETE FROM platform.tenant_egress_rules WHERE tenant_id = $1 AND action = $2 AND rule = $3",
    };
    for rule in rules {
        client.execute(sql, &[&tenant, &action.as_str(), &rule.as_str()]).await?;
    }
    client.execute("SELECT pg_notify($1, $2)", &[&EGRESS_CHANGES_CHANNEL, &tenant.to_string()]).await?;
    Ok(())
}

pub async fn change(pool: &Pool, slug: &str, action: Action, rules: &[String], remove: bool) -> Result<Uuid, EgressError> {
    if rules.is_empty() {
        return Err(EgressError::NoRules);
    }
    let parsed = rules.iter().map(|r| r.parse::<Rule>()).collect::<Result<Vec<_>, _>>()?;
    let mut client = pool.get().await?;
    let tenant = tenant_id(&client, slug).await?;
    let tx = client.transaction().await?;
    store_rules(&*tx, tenant, action, &parsed, remove).await?;
    // A tenant on a cluster with a database of its own: its nodes' gates
    // read its rules there.
    if let Some(url) = crate::provisioning::clusters::database_of(&*tx, tenant).await? {
        store_rules(&crate::database::connect(&url).await?, tenant, action, &parsed, remove).await?;
    }
    tx.commit().await?;
    tracing::info!(tenant = %slug, action = action.as_str(), ?rules, remove, "egress rules changed");
    Ok(tenant)
}
