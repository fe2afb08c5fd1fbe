//! Request extractors: the resolved tenant of a request, and the
//! authenticated caller (tenant user, tenant API key, or platform owner).

use std::{future::Future, pin::Pin, sync::Arc};

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

/// The client's address, for throttling: the peer, or the first
/// X-Forwarded-For hop when configured to trust the proxy in front.
pub fn client_address(req: &HttpRequest, trust_forwarded_for: bool) -> String {
    if trust_forwarded_for
        && let Some(first) = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
        {
            return first.trim().to_string();
        }
    req.peer_addr().map(|a| a.ip().to_string()).unwrap_or_else(|| "unknown".into())
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
            tracing::Span::current().record("user", tracing::field::display(claims.sub));
            Ok(PlatformCaller { owner_id: claims.sub, email: claims.email })
        })
    }
}
