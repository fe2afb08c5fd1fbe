//! The extractors of who a request is from (`auth`'s callers), read from
//! the request's host target, its credential and the node's services.

use std::{future::Future, pin::Pin};

use actix_web::{dev::Payload, http::header, web, FromRequest, HttpMessage, HttpRequest};

use crate::{
    auth::{bearer_credential, PlatformCaller, TenantCaller, TenantHost},
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
        Box::pin(async move { Ok(TenantCaller::authenticate(&state.directory, &state.tenant_db, &state.auth, target, credential).await?) })
    }
}

impl FromRequest for PlatformCaller {
    type Error = ApiError;
    type Future = Extracted<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let (state, target, credential) = (state(req), host_target(req), credential(req));
        Box::pin(async move { Ok(PlatformCaller::authenticate(&state.pool, &state.auth, target, credential).await?) })
    }
}
