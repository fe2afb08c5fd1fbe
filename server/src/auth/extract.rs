//! Request extractors: the resolved tenant of a request, and the
//! authenticated caller (tenant user, tenant API key, or platform owner).

use std::{future::Future, net::IpAddr, pin::Pin, sync::Arc};

use actix_web::{dev::Payload, http::header, web, FromRequest, HttpMessage, HttpRequest};
use serde::Serialize;
use uuid::Uuid;

use super::{api_keys, AuthError, Role, PLATFORM_AUDIENCE};
use crate::{
    error::ApiError,
    startup::AppState,
    tenancy::{HostTarget, Tenant, TenantStatus},
};

type Extracted<T> = Pin<Box<dyn Future<Output = Result<T, ApiError>>>>;

fn state(req: &HttpRequest) -> web::Data<AppState> {
    req.app_data::<web::Data<AppState>>().expect("AppState is registered").clone()
}

fn host_target(req: &HttpRequest) -> Option<HostTarget> {
    req.extensions().get::<HostTarget>().cloned()
}

/// A proxy whose `X-Forwarded-For` is believed: one address or a CIDR range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct ProxyRange(ipnet::IpNet);

impl ProxyRange {
    fn contains(&self, address: &IpAddr) -> bool {
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
pub fn proxy_ranges<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<ProxyRange>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Written {
        List(Vec<String>),
        Text(String),
    }
    let texts = match serde::Deserialize::deserialize(deserializer)? {
        Written::List(items) => items,
        Written::Text(text) => text.split(',').filter(|t| !t.trim().is_empty()).map(str::to_string).collect(),
    };
    texts.into_iter().map(|t| ProxyRange::try_from(t).map_err(serde::de::Error::custom)).collect()
}

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

/// The bearer credential, from `Authorization: Bearer ..` or `X-API-Key`.
fn credential(req: &HttpRequest) -> Option<String> {
    let value_of = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    bearer_credential(value_of(header::AUTHORIZATION.as_str()), value_of("x-api-key"))
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
    async fn resolve(state: &AppState, target: Option<HostTarget>) -> Result<Arc<Tenant>, ApiError> {
        let slug = match target {
            Some(HostTarget::Tenant(slug)) => slug,
            _ => return Err(AuthError::WrongHost.into()),
        };
        let tenant = state
            .directory
            .lookup(&slug)
            .await?
            .ok_or_else(|| ApiError::not_found("tenant_not_found", format!("there is no tenant '{slug}'")))?;
        if tenant.status == TenantStatus::Suspended {
            return Err(ApiError::new(
                actix_web::http::StatusCode::FORBIDDEN,
                "tenant_suspended",
                format!("tenant '{slug}' is suspended"),
            ));
        }
        Ok(tenant)
    }
}

impl FromRequest for TenantHost {
    type Error = ApiError;
    type Future = Extracted<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let (state, target) = (state(req), host_target(req));
        Box::pin(async move { Ok(TenantHost(TenantHost::resolve(&state, target).await?)) })
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Principal {
    User { id: Uuid, email: String },
    ApiKey { id: Uuid, name: String },
}

/// An authenticated caller of a tenant's API.
pub struct TenantCaller {
    pub tenant: Arc<Tenant>,
    pub principal: Principal,
    pub role: Role,
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
}

impl FromRequest for TenantCaller {
    type Error = ApiError;
    type Future = Extracted<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let (state, target, credential) = (state(req), host_target(req), credential(req));
        Box::pin(async move {
            let tenant = TenantHost::resolve(&state, target).await?;
            let credential = credential.ok_or(AuthError::MissingCredentials)?;
            let (principal, role) = if api_keys::looks_like_key(&credential) {
                let (id, name, role) = api_keys::authenticate(&state.tenant_db, &tenant, &credential).await?;
                (Principal::ApiKey { id, name }, role)
            } else {
                let claims = state.auth.tokens.verify(&credential, &super::tenant_audience(tenant.id))?;
                if claims.tid != Some(tenant.id) {
                    return Err(AuthError::InvalidToken.into());
                }
                // The token says who; the user's current standing says what
                // they may do (a demoted, disabled or deleted user's token
                // loses its powers at once).
                let role = state
                    .auth
                    .standing
                    .current_role(&state.tenant_db, &tenant, claims.sub)
                    .await
                    .map_err(AuthError::from)?
                    .ok_or(AuthError::InvalidToken)?;
                (Principal::User { id: claims.sub, email: claims.email }, role)
            };
            tracing::Span::current().record("user", tracing::field::display(principal_id(&principal)));
            Ok(TenantCaller { tenant, principal, role })
        })
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
}

impl FromRequest for PlatformCaller {
    type Error = ApiError;
    type Future = Extracted<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let (state, target, credential) = (state(req), host_target(req), credential(req));
        Box::pin(async move {
            if target != Some(HostTarget::Platform) {
                return Err(AuthError::WrongHost.into());
            }
            let credential = credential.ok_or(AuthError::MissingCredentials)?;
            let claims = state.auth.tokens.verify(&credential, PLATFORM_AUDIENCE)?;
            // A token says who signed in, not that they still may: an owner
            // removed from `platform.owners` loses access at once, not at
            // the token's expiry. Platform calls are rare; one indexed read.
            let client = state.pool.get().await.map_err(crate::database::DbError::from).map_err(AuthError::from)?;
            let still_owner = client
                .query_opt("SELECT 1 FROM platform.owners WHERE id = $1", &[&claims.sub])
                .await
                .map_err(crate::database::DbError::from)
                .map_err(AuthError::from)?;
            if still_owner.is_none() {
                return Err(AuthError::InvalidToken.into());
            }
            tracing::Span::current().record("user", tracing::field::display(claims.sub));
            Ok(PlatformCaller { owner_id: claims.sub, email: claims.email })
        })
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
