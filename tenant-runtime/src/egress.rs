//! The egress gate: the one door through which every outbound connection a
//! tenant's definitions cause goes out (`http` steps and each of their
//! redirects, OAuth token requests, `sql` and `amqp` connections, queue
//! triggers, connection tests).
//!
//! The gate resolves a name itself, checks every address it resolved
//! against the policy, and hands back only addresses it checked; callers
//! connect to those and never resolve again, so a name cannot point
//! somewhere else between the check and the connect (DNS rebinding).
//!
//! The order of evaluation, for one address and port (docs/security.md):
//! 1. the platform's own endpoints (its database, its broker, the nodes'
//!    listen and advertised addresses, by address and port): never;
//! 2. unspecified, link-local (cloud metadata), multicast, broadcast and
//!    reserved addresses: never;
//! 3. a deny rule (the platform's, then the tenant's): denied;
//! 4. loopback: denied unless the platform allows it (`allow_loopback`);
//! 5. an allow rule (the platform's or the tenant's): allowed;
//! 6. otherwise: denied in allowlist mode; else public addresses are
//!    allowed, private ones as `allow_private` says, loopback as 4 said.

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    str::FromStr,
    sync::{
        Arc, Mutex, PoisonError, RwLock,
        atomic::{AtomicU64, Ordering},
    },
};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::execution::StoreError;

/// Allowlist-only, or open to public addresses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EgressMode {
    /// Public addresses are allowed; private and loopback ones as the policy says.
    #[default]
    Open,
    /// Only what an allow rule names: the mode of a site fully behind a firewall.
    Allowlist,
}

/// An endpoint of the platform itself, never reachable by a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformEndpoint {
    /// `None`: every address of this machine (a listener on `0.0.0.0`);
    /// matched on loopback addresses.
    pub ip: Option<IpAddr>,
    pub port: u16,
    /// What it is, for the refusal's message: "the platform's database".
    pub what: String,
}

/// The platform-wide policy, from the configuration.
#[derive(Debug, Clone, Default)]
pub struct EgressPolicy {
    pub mode: EgressMode,
    pub allow_loopback: bool,
    pub allow_private: bool,
    pub allow: Vec<Rule>,
    pub deny: Vec<Rule>,
    pub platform: Vec<PlatformEndpoint>,
}

/// A tenant's own rules, kept by the platform owner.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantRules {
    pub allow: Vec<Rule>,
    pub deny: Vec<Rule>,
}

/// One rule: a CIDR, an address or a host pattern (`erp.acme.internal`,
/// `*.acme.internal`), with an optional port: `10.0.0.0/8`,
/// `*.acme.internal:443`, `[fd00::/8]:5432`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    text: String,
    target: Target,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Net(IpNet),
    /// A lower-case name; `*.` in front matches any name below it.
    Host { name: String, wildcard: bool },
}

impl Rule {
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Does the rule cover `addr:port`, reached by the name `host` (the
    /// name the tenant wrote; `None` for an address written as such)?
    fn matches(&self, host: Option<&str>, addr: IpAddr, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        match &self.target {
            Target::Net(net) => net.contains(&addr),
            Target::Host { name, wildcard } => host.is_some_and(|h| host_matches(name, *wildcard, h)),
        }
    }

    /// Does the rule name `host` (a host pattern only), whatever the port?
    /// For the hosts a credential is for.
    pub fn matches_host(&self, host: &str, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        match &self.target {
            Target::Host { name, wildcard } => host_matches(name, *wildcard, host),
            Target::Net(net) => host.parse::<IpAddr>().is_ok_and(|ip| net.contains(&canonical(ip))),
        }
    }
}

fn host_matches(name: &str, wildcard: bool, host: &str) -> bool {
    let host = normalise_host(host);
    match wildcard {
        false => host == name,
        true => host.strip_suffix(name).is_some_and(|rest| rest.ends_with('.')),
    }
}

/// Lower case, no trailing dot, no brackets around an IPv6 address.
pub fn normalise_host(host: &str) -> String {
    host.trim_start_matches('[').trim_end_matches(']').trim_end_matches('.').to_ascii_lowercase()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not an egress rule: {why} (write a CIDR like 10.0.0.0/8, an address, or a host like *.acme.internal, each with an optional :port)")]
pub struct RuleError {
    pub text: String,
    pub why: &'static str,
}

impl FromStr for Rule {
    type Err = RuleError;

    fn from_str(text: &str) -> Result<Self, RuleError> {
        let text = text.trim();
        let fail = |why| RuleError { text: text.to_string(), why };
        let (target, port) = split_port(text).ok_or_else(|| fail("the port is not a number from 1 to 65535"))?;
        let target = if let Ok(net) = target.parse::<IpNet>() {
            Target::Net(net.trunc())
        } else if let Ok(ip) = target.parse::<IpAddr>() {
            Target::Net(IpNet::from(canonical(ip)))
        } else {
            let (name, wildcard) = match target.strip_prefix("*.") {
                Some(rest) => (rest, true),
                None => (target, false),
            };
            let name = normalise_host(name);
            let label_ok = |l: &str| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
                return Err(fail("it is neither an address, a CIDR nor a host name"));
            }
            Target::Host { name, wildcard }
        };
        Ok(Rule { text: text.to_string(), target, port })
    }
}

/// `target[:port]`; an IPv6 target with a port is written in brackets.
fn split_port(text: &str) -> Option<(&str, Option<u16>)> {
    let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0);
    if let Some(rest) = text.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        return match after.strip_prefix(':') {
            Some(p) => Some((inner, Some(port(p)?))),
            None if after.is_empty() => Some((inner, None)),
            None => None,
        };
    }
    match text.rsplit_once(':') {
        // More than one colon and no brackets: an IPv6 address or network.
        Some((target, _)) if target.contains(':') => Some((text, None)),
        Some((target, p)) => Some((target, Some(port(p)?))),
        None => Some((text, None)),
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Rule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// Where an address belongs, for the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    Public,
    Private,
    Loopback,
    /// Never allowed: unspecified, link-local, multicast, broadcast, reserved.
    Forbidden(&'static str),
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

pub fn classify(ip: IpAddr) -> AddressClass {
    use AddressClass::*;
    let net = |text: &str| text.parse::<IpNet>().expect("a valid network");
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if o[0] == 0 {
                Forbidden("an unspecified address")
            } else if v4.is_loopback() {
                Loopback
            } else if v4.is_link_local() {
                Forbidden("a link-local address (metadata services live there)")
            } else if v4.is_multicast() {
                Forbidden("a multicast address")
            } else if v4.is_broadcast() {
                Forbidden("the broadcast address")
            } else if o[0] >= 240 {
                Forbidden("a reserved address")
            } else if v4.is_private() || net("100.64.0.0/10").contains(&ip) || net("198.18.0.0/15").contains(&ip) {
                Private
            } else {
                Public
            }
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            if v6.is_unspecified() {
                Forbidden("an unspecified address")
            } else if v6.is_loopback() {
                Loopback
            } else if first & 0xffc0 == 0xfe80 {
                Forbidden("a link-local address (metadata services live there)")
            } else if v6.is_multicast() {
                Forbidden("a multicast address")
            } else if first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfec0 {
                Private
            } else {
                Public
            }
        }
    }
}

/// A connection the gate refused: the host as asked, the address it led
/// to, and the rule that refused it. Nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("egress to {host} ({address}) is denied: {rule}")]
pub struct Denied {
    pub host: String,
    pub address: String,
    pub rule: String,
}

/// Why the gate gave no address.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error(transparent)]
    Denied(#[from] Denied),
    /// The name does not resolve.
    #[error("cannot resolve {host}: {message}")]
    Resolve { host: String, message: String },
    /// The tenant's rules could not be read: not the step's failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type RulesFuture<'a> = Pin<Box<dyn Future<Output = Result<TenantRules, StoreError>> + Send + 'a>>;

/// Where a tenant's rules are kept (the platform schema); implemented by
/// the server.
pub trait RulesSource: Send + Sync + 'static {
    fn rules(&self, tenant: Uuid) -> RulesFuture<'_>;
}

/// No tenant rules at all (the runtime's own tests).
pub(crate) struct NoRules;

impl RulesSource for NoRules {
    fn rules(&self, _tenant: Uuid) -> RulesFuture<'_> {
        Box::pin(async { Ok(TenantRules::default()) })
    }
}

/// One tenant's view of the gate: the platform policy with the tenant's
/// rules, at one generation of them. Clients and pools built from a view
/// are rebuilt when the generation changes.
#[derive(Clone)]
pub struct TenantGate {
    policy: Arc<EgressPolicy>,
    rules: Arc<TenantRules>,
    peers: Peers,
    pub generation: u64,
}

/// The other nodes of the platform, as their registrations say; they come
/// and go while this node runs.
type Peers = Arc<RwLock<Vec<PlatformEndpoint>>>;

/// The gate of a node: the platform policy and each tenant's rules, read
/// once and forgotten when the platform owner changes them.
pub struct Egress {
    policy: Arc<EgressPolicy>,
    peers: Peers,
    source: Arc<dyn RulesSource>,
    tenants: Mutex<HashMap<Uuid, TenantGate>>,
    generation: AtomicU64,
}

impl Default for Egress {
    fn default() -> Self {
        Self::new(EgressPolicy::default(), Arc::new(NoRules))
    }
}

impl Egress {
    pub fn new(policy: EgressPolicy, source: Arc<dyn RulesSource>) -> Self {
        Self {
            policy: Arc::new(policy),
            peers: Peers::default(),
            source,
            tenants: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(1),
        }
    }

    /// The endpoints of the platform's other nodes, never reachable either.
    pub fn set_peers(&self, peers: Vec<PlatformEndpoint>) {
        *self.peers.write().unwrap_or_else(PoisonError::into_inner) = peers;
    }

    pub fn policy(&self) -> &EgressPolicy {
        &self.policy
    }

    /// `tenant`'s view, its rules read on first use.
    pub async fn tenant(&self, tenant: Uuid) -> Result<TenantGate, StoreError> {
        if let Some(gate) = self.tenants.lock().unwrap_or_else(PoisonError::into_inner).get(&tenant) {
            return Ok(gate.clone());
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let rules = self.source.rules(tenant).await?;
        let gate = TenantGate { policy: self.policy.clone(), rules: Arc::new(rules), peers: self.peers.clone(), generation };
        let mut tenants = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
        // A change announced while the rules were read: do not keep them.
        if self.generation.load(Ordering::SeqCst) == generation {
            tenants.insert(tenant, gate.clone());
        }
        Ok(gate)
    }

    /// The tenant's rules changed: read them again on next use.
    pub fn forget(&self, tenant: Uuid) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.tenants.lock().unwrap_or_else(PoisonError::into_inner).remove(&tenant);
    }

    /// Changes may have been missed: read every tenant's rules again.
    pub fn forget_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.tenants.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }

    /// Resolve `host` for `tenant` and check every address.
    pub async fn resolve(&self, tenant: Uuid, host: &str, port: u16) -> Result<Vec<SocketAddr>, EgressError> {
        self.tenant(tenant).await?.resolve(host, port).await
    }
}

impl TenantGate {
    /// The addresses of `host:port` this tenant may connect to: all of
    /// them, or a refusal when any one is refused (a name that also points
    /// at a forbidden address is not used at all).
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, EgressError> {
        let name = normalise_host(host);
        if let Ok(ip) = name.parse::<IpAddr>() {
            self.check(None, ip, port)?;
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let resolve_error = |message: String| EgressError::Resolve { host: name.clone(), message };
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), port)).await.map_err(|e| resolve_error(e.to_string()))?.collect();
        if addrs.is_empty() {
            return Err(resolve_error("no address".into()));
        }
        for addr in &addrs {
            self.check(Some(&name), addr.ip(), port)?;
        }
        Ok(addrs)
    }

    /// The decision for one address (see the module's order of evaluation).
    pub fn check(&self, host: Option<&str>, ip: IpAddr, port: u16) -> Result<(), Denied> {
        let ip = canonical(ip);
        let deny = |rule: String| {
            let shown = host.map(str::to_string).unwrap_or_else(|| ip.to_string());
            Err(Denied { host: format!("{}:{port}", bracketed(&shown)), address: SocketAddr::new(ip, port).to_string(), rule })
        };
        let (policy, rules) = (&self.policy, &self.rules);
        // A loopback endpoint is the whole loopback range on its port: a
        // server listening on every address answers 127.0.0.2 as well.
        let own = |e: &&PlatformEndpoint| {
            e.port == port && e.ip.map_or(ip.is_loopback(), |own| canonical(own) == ip || (own.is_loopback() && ip.is_loopback()))
        };
        let peers = self.peers.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(endpoint) = policy.platform.iter().chain(peers.iter()).find(own) {
            return deny(format!("it is {}, never reachable by a tenant", endpoint.what));
        }
        drop(peers);
        let class = classify(ip);
        if let AddressClass::Forbidden(what) = class {
            return deny(format!("{what}, never allowed"));
        }
        if let Some(rule) = policy.deny.iter().find(|r| r.matches(host, ip, port)) {
            return deny(format!("the platform's deny rule `{rule}`"));
        }
        if let Some(rule) = rules.deny.iter().find(|r| r.matches(host, ip, port)) {
            return deny(format!("the tenant's deny rule `{rule}`"));
        }
        if class == AddressClass::Loopback && !policy.allow_loopback {
            return deny("a loopback address, not allowed by the platform policy (egress.allow_loopback)".into());
        }
        if policy.allow.iter().chain(&rules.allow).any(|r| r.matches(host, ip, port)) {
            return Ok(());
        }
        match (policy.mode, class) {
            (EgressMode::Allowlist, _) => deny("no allow rule names it (egress.mode = allowlist)".into()),
            (EgressMode::Open, AddressClass::Private) if !policy.allow_private => {
                deny("a private address, not allowed by the platform policy (egress.allow_private) nor by an allow rule".into())
            }
            _ => Ok(()),
        }
    }
}

fn bracketed(host: &str) -> String {
    match host.contains(':') {
        true => format!("[{host}]"),
        false => host.to_string(),
    }
}

/// The [`Denied`] inside an error's chain of sources, if a gate refusal is
/// what it is (an HTTP client wraps what its resolver said).
pub fn denied_in(error: &(dyn std::error::Error + 'static)) -> Option<Denied> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(denied) = e.downcast_ref::<Denied>() {
            return Some(denied.clone());
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(list: &[&str]) -> Vec<Rule> {
        list.iter().map(|r| r.parse().unwrap()).collect()
    }

    fn gate(policy: EgressPolicy, tenant: TenantRules) -> TenantGate {
        TenantGate { policy: Arc::new(policy), rules: Arc::new(tenant), peers: Peers::default(), generation: 1 }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn addresses_are_classified_with_mapped_ipv6_as_ipv4() {
        assert_eq!(classify(ip("8.8.8.8")), AddressClass::Public);
        assert_eq!(classify(ip("10.1.2.3")), AddressClass::Private);
        assert_eq!(classify(ip("172.16.0.1")), AddressClass::Private);
        assert_eq!(classify(ip("100.64.1.1")), AddressClass::Private);
        assert_eq!(classify(ip("fd00::1")), AddressClass::Private);
        assert_eq!(classify(ip("127.0.0.2")), AddressClass::Loopback);
        assert_eq!(classify(ip("::1")), AddressClass::Loopback);
        assert_eq!(classify(ip("::ffff:127.0.0.1")), AddressClass::Loopback);
        for never in ["169.254.169.254", "fe80::1", "0.0.0.0", "::", "224.0.0.1", "ff02::1", "255.255.255.255", "240.0.0.1", "::ffff:169.254.169.254"] {
            assert!(matches!(classify(ip(never)), AddressClass::Forbidden(_)), "{never}");
        }
    }

    #[test]
    fn rules_parse_cidrs_addresses_hosts_and_ports() {
        let rule: Rule = "10.0.0.0/8".parse().unwrap();
        assert!(rule.matches(None, ip("10.9.9.9"), 1) && !rule.matches(None, ip("11.0.0.1"), 1));
        let rule: Rule = "*.acme.internal:443".parse().unwrap();
        assert!(rule.matches(Some("erp.acme.internal"), ip("10.0.0.1"), 443));
        assert!(rule.matches(Some("a.b.ACME.internal."), ip("10.0.0.1"), 443));
        assert!(!rule.matches(Some("acme.internal"), ip("10.0.0.1"), 443), "the bare domain is not below itself");
        assert!(!rule.matches(Some("erp.acme.internal"), ip("10.0.0.1"), 80), "another port");
        assert!(!rule.matches(Some("evilacme.internal"), ip("10.0.0.1"), 443));
        let rule: Rule = "[fd00::/8]:5432".parse().unwrap();
        assert!(rule.matches(None, ip("fd12::1"), 5432) && !rule.matches(None, ip("fd12::1"), 5433));
        let rule: Rule = "fd00::1".parse().unwrap();
        assert!(rule.matches(None, ip("fd00::1"), 9));
        let rule: Rule = "192.168.1.7:8080".parse().unwrap();
        assert!(rule.matches(None, ip("192.168.1.7"), 8080));
        for bad in ["", "10.0.0.0/33", "host:0", "host:http", "bad host", "*.", "[fd00::"] {
            assert!(bad.parse::<Rule>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_platform_endpoints_and_never_allowed_addresses_lose_to_every_allow() {
        let policy = EgressPolicy {
            allow_loopback: true,
            allow_private: true,
            allow: rules(&["0.0.0.0/0", "::/0"]),
            platform: vec![PlatformEndpoint { ip: Some(ip("127.0.0.1")), port: 5432, what: "the platform's database".into() }],
            ..Default::default()
        };
        let gate = gate(policy, TenantRules { allow: rules(&["169.254.0.0/16"]), deny: vec![] });
        let denied = gate.check(None, ip("127.0.0.1"), 5432).unwrap_err();
        assert!(denied.rule.contains("the platform's database"), "{denied}");
        assert!(gate.check(None, ip("::ffff:127.0.0.1"), 5432).is_err(), "a mapped address is the same address");
        assert!(gate.check(None, ip("127.0.0.2"), 5432).is_err() && gate.check(None, ip("::1"), 5432).is_err(), "any loopback address");
        assert!(gate.check(None, ip("127.0.0.1"), 5433).is_ok(), "another port of the same host");
        assert!(gate.check(None, ip("169.254.169.254"), 80).unwrap_err().rule.contains("link-local"));
    }

    #[test]
    fn a_listener_on_every_address_is_protected_on_loopback() {
        let policy = EgressPolicy {
            allow_loopback: true,
            platform: vec![PlatformEndpoint { ip: None, port: 8080, what: "a node's API".into() }],
            ..Default::default()
        };
        let gate = gate(policy, TenantRules::default());
        assert!(gate.check(None, ip("127.0.0.1"), 8080).is_err() && gate.check(None, ip("127.1.2.3"), 8080).is_err());
        assert!(gate.check(None, ip("127.0.0.1"), 8081).is_ok());
    }

    #[tokio::test]
    async fn the_other_nodes_of_the_platform_are_as_out_of_reach_as_this_one() {
        let egress = Egress::new(EgressPolicy { allow_private: true, ..Default::default() }, Arc::new(NoRules));
        let gate = egress.tenant(Uuid::nil()).await.unwrap();
        assert!(gate.check(None, ip("10.0.0.7"), 8080).is_ok());
        egress.set_peers(vec![PlatformEndpoint { ip: Some(ip("10.0.0.7")), port: 8080, what: "a node of the platform".into() }]);
        assert!(gate.check(None, ip("10.0.0.7"), 8080).unwrap_err().rule.contains("a node of the platform"), "a gate already handed out sees it too");
        assert!(gate.check(None, ip("10.0.0.7"), 8081).is_ok());
    }

    #[test]
    fn loopback_needs_the_platform_and_private_needs_a_rule_or_the_platform() {
        let strict = gate(EgressPolicy::default(), TenantRules { allow: rules(&["127.0.0.1", "10.0.0.0/8"]), deny: vec![] });
        assert!(strict.check(None, ip("127.0.0.1"), 80).unwrap_err().rule.contains("allow_loopback"), "a tenant rule cannot open loopback");
        assert!(strict.check(None, ip("10.1.1.1"), 80).is_ok(), "the tenant's allow rule");
        assert!(strict.check(None, ip("192.168.1.1"), 80).unwrap_err().rule.contains("private"));
        assert!(strict.check(None, ip("93.184.216.34"), 443).is_ok(), "public addresses are open by default");
    }

    #[test]
    fn an_explicit_deny_wins_over_an_allow() {
        let policy = EgressPolicy { allow_private: true, allow: rules(&["10.0.0.0/8"]), ..Default::default() };
        let gate = gate(policy, TenantRules { allow: rules(&["*.acme.internal"]), deny: rules(&["10.0.0.5", "*.secret.acme.internal"]) });
        let denied = gate.check(None, ip("10.0.0.5"), 80).unwrap_err();
        assert!(denied.rule.contains("the tenant's deny rule `10.0.0.5`"), "{denied}");
        assert!(gate.check(Some("vault.secret.acme.internal"), ip("10.0.0.6"), 80).is_err());
        assert!(gate.check(Some("erp.acme.internal"), ip("10.0.0.6"), 80).is_ok());
    }

    #[test]
    fn allowlist_mode_allows_only_what_a_rule_names() {
        let policy = EgressPolicy { mode: EgressMode::Allowlist, allow_loopback: true, allow_private: true, ..Default::default() };
        let gate = gate(policy, TenantRules { allow: rules(&["api.example.com:443", "127.0.0.1:9000"]), deny: vec![] });
        assert!(gate.check(Some("api.example.com"), ip("93.184.216.34"), 443).is_ok());
        assert!(gate.check(Some("api.example.com"), ip("93.184.216.34"), 80).is_err());
        assert!(gate.check(None, ip("93.184.216.34"), 443).unwrap_err().rule.contains("allowlist"));
        assert!(gate.check(None, ip("127.0.0.1"), 9000).is_ok());
        assert!(gate.check(None, ip("127.0.0.1"), 9001).is_err());
    }

    #[tokio::test]
    async fn a_name_is_refused_when_any_of_its_addresses_is() {
        let gate = gate(EgressPolicy::default(), TenantRules::default());
        let refused = gate.resolve("localhost", 80).await.unwrap_err();
        assert!(matches!(refused, EgressError::Denied(ref d) if d.host == "localhost:80"), "{refused}");
        let literal = gate.resolve("[::1]", 80).await.unwrap_err();
        assert!(matches!(literal, EgressError::Denied(_)), "{literal}");
    }
}
