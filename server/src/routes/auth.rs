use actix_web::{web, FromRequest, HttpMessage, HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::{
    auth::{client_address, TenantHost},
    error::ApiError,
    state::AppState,
    tenancy::HostTarget,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    email: String,
    password: String,
}

/// `POST /api/auth/login`: a tenant token on a tenant host, a platform token
/// on the platform host.
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

