use actix_web::{web, FromRequest, HttpMessage, HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::{
    auth::{client_address, TenantHost},
    error::ApiError,
    state::AppState,
    tenancy::HostTarget,
};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    email: String,
    password: String,
}

/// `POST /api/auth/login`: a tenant token on a tenant host, a platform token
/// on the platform host.
#[utoipa::path(
    post,
    path = "/api/auth/login",
    tag = "auth",
    summary = "Sign in: a tenant token on a tenant host, a platform token on the platform host",
    request_body = Login,
    responses((status = 200, description = "`{token, expires_in}`", body = Object)),
    security(())
)]
pub async fn login(req: HttpRequest, state: web::Data<AppState>, body: web::Json<Login>) -> Result<HttpResponse, ApiError> {
    let Login { email, password } = body.into_inner();
    let address = client_address(&req, &state.config.auth.trusted_proxies);
    let target = req.extensions().get::<HostTarget>().cloned();
    let token = match target {
        Some(HostTarget::Platform) => state.auth.login_platform(&state.pool, &email, password, &address).await?,
        _ => {
            let TenantHost(tenant) = TenantHost::extract(&req).await?;
            state.auth.login_tenant(&state.tenant_db, &tenant, &email, password, &address).await?
        }
    };
    Ok(HttpResponse::Ok().json(token))
}


/// `GET /api/host` (anyone): what this host serves, so the panel knows
/// whether it is a tenant's or the platform console without guessing from
/// the name: `{"kind": "tenant", "tenant": "acme"}` (a tenant that exists)
/// or `{"kind": "platform"}`. It tells nothing the `Host` header does not.
#[utoipa::path(
    get,
    path = "/api/host",
    tag = "auth",
    summary = "What this host serves: a tenant or the platform",
    responses((status = 200, description = "`{kind, tenant}`", body = Object)),
    security(())
)]
pub async fn host(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let target = req.extensions().get::<HostTarget>().cloned();
    Ok(match target {
        Some(HostTarget::Platform) => HttpResponse::Ok().json(serde_json::json!({"kind": "platform"})),
        _ => {
            let TenantHost(tenant) = TenantHost::extract(&req).await?;
            HttpResponse::Ok().json(serde_json::json!({"kind": "tenant", "tenant": tenant.slug.as_str()}))
        }
    })
}
