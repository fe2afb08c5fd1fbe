//! How large a request body to a tenant's host may be: the tenant's limit
//! `request_body_bytes`, which is never above the node's hard maximum
//! `http.max_body_bytes` (the whole limit off a tenant's host).

use std::future::Future;

use actix_web::{web, HttpMessage, HttpRequest};

use crate::body::BodyLimit;
use crate::{state::AppState, tenancy::HostTarget};

/// The limit for `req`. Resolved before the body is read, from the cached
/// tenant directory and limits; when the tenant cannot be found the node's
/// maximum applies (the handler's extractors then refuse the request).
pub fn for_request(req: &HttpRequest) -> impl Future<Output = BodyLimit> + 'static {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let target = req.extensions().get::<HostTarget>().cloned();
    async move {
        let Some(state) = state else { return BodyLimit::Node(usize::MAX) };
        let node = state.config.http.max_body_bytes;
        let Some(HostTarget::Tenant(slug)) = target else { return BodyLimit::Node(node) };
        match state.directory.lookup(&slug).await {
            Ok(Some(tenant)) => BodyLimit::Tenant(state.limits.body_limit(tenant.id).await.min(node)),
            _ => BodyLimit::Node(node),
        }
    }
}
