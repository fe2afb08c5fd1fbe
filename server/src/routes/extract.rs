//! The extractors of who a request is from (`auth`'s callers), read from
//! the request's host target, its credential and the node's services.

use std::{future::Future, pin::Pin};

use actix_web::{dev::Payload, http::header, web, FromRequest, HttpMessage, HttpRequest};

use tracing_actix_web::RequestId;

use crate::{
    auth::{bearer_credential, client_address, Origin, PlatformCaller, TenantCaller, TenantHost},
    error::ApiError,
    state::AppState,
    tenancy::HostTarget,
};

type Extracted<T> = Pin<Box<dyn Future<Output = Result<T, ApiError>>>>;

fn state(req: &HttpRequest) -> web::Data<AppState> {
    req.app_data::<web::Data<AppState>>().expect("AppState is registered").clone()
}

fn host_target(req: &HttpRequest) -> Option<HostTarget> {
    req.extensions().get::<HostTarget>().cloned()
}

/// The bearer credential, from `Authorization: Bearer ..` or `X-API-Key`.
fn credential(req: &HttpRequest) -> Option<String> {
    let value_of = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    bearer_credential(value_of(header::AUTHORIZATION.as_str()), value_of("x-api-key"))
}

/// Where the request came from, for the audit trail.
fn origin(req: &HttpRequest, state: &AppState) -> Origin {
    let value_of = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let address = client_address(req, &state.config.auth.trusted_proxies);
    let request_id = req.extensions().get::<RequestId>().map(|id| id.to_string());
    Origin::of(Some(address), value_of("x-tessera-client"), value_of(header::USER_AGENT.as_str()), request_id)
}

impl FromRequest for TenantHost {
    type Error = ApiError;
    type Future = Extracted<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let (state, target) = (state(req), host_target(req));
        Box::pin(async move { Ok(TenantHost(TenantHost::resolve(&state.directory, target).await?)) })
    }
}

impl FromRequest for TenantCaller {
    type Error = ApiError;
    type Future = Extracted<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let (state, target, credential) = (state(req), host_target(req), credential(req));
        let origin = origin(req, &state);
        Box::pin(async move {
            let audit = (origin, state.audit.clone());
            Ok(TenantCaller::authenticate(&state.directory, &state.tenant_db, &state.auth, target, credential, audit).await?)
        })
    }
}

impl FromRequest for PlatformCaller {
    type Error = ApiError;
    type Future = Extracted<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let (state, target, credential) = (state(req), host_target(req), credential(req));
        let origin = origin(req, &state);
        Box::pin(async move { Ok(PlatformCaller::authenticate(&state.pool, &state.auth, target, credential, origin).await?) })
    }
}
