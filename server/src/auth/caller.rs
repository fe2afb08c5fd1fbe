//! Who a request is from: the active tenant its host names, and the
//! authenticated caller (tenant user, tenant API key, or platform owner),
//! from the host target and the credential the request carries. The
//! extractors that read those from a request are `routes::extract`.

use std::{net::IpAddr, sync::Arc};

use actix_web::HttpRequest;
use deadpool_postgres::Pool;
use serde::Serialize;
use uuid::Uuid;

use super::{api_keys, AuthError, AuthService, Role, PLATFORM_AUDIENCE};
use crate::{
    audit::{Actor, Change, Trail, Via},
    config::ProxyRange,
    database::DbError,
    tenancy::{HostTarget, Tenant, TenantDb, TenantDirectory, TenantStatus, TenantTx},
};

/// The client's address, for throttling. The peer, unless the peer is one
/// of `trusted` proxies: then `X-Forwarded-For` is read from the right (the
/// hop our proxy added) leftwards, past every trusted proxy, and the first
/// other address is the client. Hops further left were written by the
/// client itself and could be anything, so they are never believed.
pub fn client_address(req: &HttpRequest, trusted: &[ProxyRange]) -> String {
    let peer = req.peer_addr().map(|a| a.ip());
    let forwarded = req.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok());
    match peer {
        Some(peer) => forwarded_client(peer, forwarded, trusted).to_string(),
        None => "unknown".into(),
    }
}

fn forwarded_client(peer: IpAddr, forwarded: Option<&str>, trusted: &[ProxyRange]) -> IpAddr {
    let is_trusted = |address: &IpAddr| trusted.iter().any(|range| range.contains(address));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    for hop in forwarded.unwrap_or_default().rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(address) => {
                client = address;
                if !is_trusted(&address) {
                    break;
                }
            }
            // A hop that is not an address ends what can be believed.
            Err(_) => break,
        }
    }
    client
}

/// The credential of a request given its `Authorization` and `X-API-Key`
/// values: shared by the extractors and webhooks, so both read keys alike.
/// An `Authorization` header of another scheme wins and yields nothing, so
/// a request is never judged by a second credential it did not mean.
pub fn bearer_credential(authorization: Option<&str>, x_api_key: Option<&str>) -> Option<String> {
    if let Some(value) = authorization {
        let (scheme, rest) = value.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim().to_string());
    }
    x_api_key.map(|v| v.trim().to_string())
}

/// The active tenant named by the request's host; no credentials needed.
pub struct TenantHost(pub Arc<Tenant>);

impl TenantHost {
    pub async fn resolve(directory: &TenantDirectory, target: Option<HostTarget>) -> Result<Arc<Tenant>, AuthError> {
        let slug = match target {
            Some(HostTarget::Tenant(slug)) => slug,
            _ => return Err(AuthError::WrongHost),
        };
        let tenant = directory.find(&slug).await?.ok_or_else(|| AuthError::NoSuchTenant(slug.to_string()))?;
        if tenant.status == TenantStatus::Suspended {
            return Err(AuthError::TenantSuspended(slug.to_string()));
        }
        // Paused by a move, or just moved away: the client comes again in
        // a second, by when its load balancer routes to the new cluster.
        if tenant.paused() || !directory.serves(&tenant) {
            return Err(AuthError::TenantMoving { retry_after_secs: 1 });
        }
        Ok(tenant)
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Principal {
    User { id: Uuid, email: String },
    ApiKey { id: Uuid, name: String },
}

/// Where a request came from, for the audit trail.
#[derive(Debug, Clone)]
pub struct Origin {
    pub address: Option<String>,
    pub via: Via,
    pub request_id: Option<String>,
}

impl Origin {
    /// `via` from what the client says it is: the panel sends
    /// `X-Tessera-Client: panel`, the CLI a `tessera-cli/` user agent.
    /// Only a label: a client could claim either.
    pub fn of(address: Option<String>, client: Option<&str>, user_agent: Option<&str>, request_id: Option<String>) -> Self {
        let via = if client == Some("panel") {
            Via::Panel
        } else if user_agent.is_some_and(|ua| ua.starts_with("tessera-cli/")) {
            Via::Cli
        } else {
            Via::Api
        };
        Origin { address, via, request_id }
    }

    fn actor(&self, kind: &'static str, id: String, name: String) -> Actor {
        Actor { kind, id: Some(id), name, address: self.address.clone(), via: self.via, request_id: self.request_id.clone() }
    }
}

/// An authenticated caller of a tenant's API.
pub struct TenantCaller {
    pub tenant: Arc<Tenant>,
    pub principal: Principal,
    pub role: Role,
    pub origin: Origin,
    trail: Trail,
}

impl TenantCaller {
    /// Refuse unless the caller holds at least `role`.
    pub fn require(&self, role: Role) -> Result<(), AuthError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(AuthError::Forbidden { required: role.as_str() })
        }
    }

    pub fn user_id(&self) -> Option<Uuid> {
        match &self.principal {
            Principal::User { id, .. } => Some(*id),
            Principal::ApiKey { .. } => None,
        }
    }

    pub fn actor(&self) -> Actor {
        match &self.principal {
            Principal::User { id, email } => self.origin.actor("user", id.to_string(), email.clone()),
            Principal::ApiKey { id, name } => self.origin.actor("api_key", id.to_string(), name.clone()),
        }
    }

    /// Record `change` in the tenant's audit trail, inside the transaction
    /// that makes it.
    pub async fn record(&self, tx: &mut TenantTx, change: Change) -> Result<(), DbError> {
        self.trail.record(tx, &self.actor(), change).await
    }

    pub fn trail(&self) -> &Trail {
        &self.trail
    }

    /// The caller of `credential` on the tenant `target` names: an API key
    /// of that tenant, or a token issued for it whose user still stands.
    pub async fn authenticate(
        directory: &TenantDirectory,
        db: &TenantDb,
        auth: &AuthService,
        target: Option<HostTarget>,
        credential: Option<String>,
        (origin, trail): (Origin, Trail),
    ) -> Result<Self, AuthError> {
        let tenant = TenantHost::resolve(directory, target).await?;
        let credential = credential.ok_or(AuthError::MissingCredentials)?;
        let (principal, role) = if api_keys::looks_like_key(&credential) {
            let (id, name, role) = api_keys::authenticate(db, &tenant, &credential).await?;
            (Principal::ApiKey { id, name }, role)
        } else {
            let claims = auth.tokens.verify(&credential, &super::tenant_audience(tenant.id))?;
            if claims.tid != Some(tenant.id) {
                return Err(AuthError::InvalidToken);
            }
            // The token says who; the user's current standing says what
            // they may do (a demoted, disabled or deleted user's token
            // loses its powers at once).
            let role = auth.standing.current_role(db, &tenant, claims.sub).await?.ok_or(AuthError::InvalidToken)?;
            (Principal::User { id: claims.sub, email: claims.email }, role)
        };
        tracing::Span::current().record("user", tracing::field::display(principal_id(&principal)));
        Ok(TenantCaller { tenant, principal, role, origin, trail })
    }
}

fn principal_id(p: &Principal) -> Uuid {
    match p {
        Principal::User { id, .. } | Principal::ApiKey { id, .. } => *id,
    }
}

/// An authenticated platform owner, on the platform host.
pub struct PlatformCaller {
    pub owner_id: Uuid,
    pub email: String,
    pub origin: Origin,
}

impl PlatformCaller {
    pub fn actor(&self) -> Actor {
        self.origin.actor("owner", self.owner_id.to_string(), self.email.clone())
    }

    /// The platform owner of `credential`, on the platform host only.
    pub async fn authenticate(
        pool: &Pool,
        auth: &AuthService,
        target: Option<HostTarget>,
        credential: Option<String>,
        origin: Origin,
    ) -> Result<Self, AuthError> {
        if target != Some(HostTarget::Platform) {
            return Err(AuthError::WrongHost);
        }
        let credential = credential.ok_or(AuthError::MissingCredentials)?;
        let claims = auth.tokens.verify(&credential, PLATFORM_AUDIENCE)?;
        // A token says who signed in, not that they still may: an owner
        // removed from `platform.owners` loses access at once, not at
        // the token's expiry. Platform calls are rare; one indexed read.
        let client = pool.get().await.map_err(DbError::from)?;
        let still_owner = client.query_opt("SELECT 1 FROM platform.owners WHERE id = $1", &[&claims.sub]).await.map_err(DbError::from)?;
        if still_owner.is_none() {
            return Err(AuthError::InvalidToken);
        }
        tracing::Span::current().record("user", tracing::field::display(claims.sub));
        Ok(PlatformCaller { owner_id: claims.sub, email: claims.email, origin })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(texts: &[&str]) -> Vec<ProxyRange> {
        texts.iter().map(|t| ProxyRange::try_from(t.to_string()).unwrap()).collect()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
        let proxies = ranges(&["10.0.0.0/8", "192.0.2.7"]);
        // From an untrusted peer the header is the peer's own claim.
        assert_eq!(forwarded_client(ip("203.0.113.9"), Some("1.2.3.4"), &proxies), ip("203.0.113.9"));
        // From a trusted proxy: the hop it added.
        assert_eq!(forwarded_client(ip("192.0.2.7"), Some("1.2.3.4"), &proxies), ip("1.2.3.4"));
        // Hops the client wrote itself, left of the first untrusted one, are ignored.
        assert_eq!(forwarded_client(ip("10.1.1.1"), Some("6.6.6.6, 1.2.3.4, 10.9.9.9"), &proxies), ip("1.2.3.4"));
        // A garbled hop ends what can be believed.
        assert_eq!(forwarded_client(ip("10.1.1.1"), Some("1.2.3.4, junk"), &proxies), ip("10.1.1.1"));
        assert_eq!(forwarded_client(ip("10.1.1.1"), None, &proxies), ip("10.1.1.1"));
        assert_eq!(forwarded_client(ip("10.1.1.1"), Some("1.2.3.4"), &[]), ip("10.1.1.1"));
        assert!(ProxyRange::try_from("not-an-address".to_string()).is_err());
    }
}
