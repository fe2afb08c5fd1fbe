//! The one place a refusal or an upstream failure becomes an HTTP answer:
//! `{"error":{"code","message"}}`, with the same codes the nodes use where
//! the meaning is the same. Causes are logged, never sent.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{header, Response, StatusCode};

use crate::{proxy::ProxyBody, route::RouteError};

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error("the request body is larger than allowed")]
    PayloadTooLarge,
    #[error("the request body could not be read")]
    ClientBody,
    #[error("no healthy node serves this cluster")]
    NoHealthyNode,
    #[error("the node failed to answer")]
    BadGateway,
    #[error("the node did not answer in time")]
    UpstreamTimeout,
}

/// Seconds a client should wait before trying again after a 503: about
/// one health-check round.
const RETRY_AFTER_SECS: &str = "1";

impl ProxyError {
    fn status_and_code(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::Route(RouteError::InvalidHost(_)) => (StatusCode::BAD_REQUEST, "invalid_host", "this server does not serve that host"),
            Self::Route(RouteError::TenantNotFound) => (StatusCode::NOT_FOUND, "tenant_not_found", "no tenant is served at this host"),
            Self::Route(RouteError::NoPlatformCluster) | Self::NoHealthyNode => {
                (StatusCode::SERVICE_UNAVAILABLE, "no_healthy_node", "no healthy node can take this request; try again shortly")
            }
            Self::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the request body is larger than allowed"),
            Self::ClientBody => (StatusCode::BAD_REQUEST, "invalid_body", "the request body could not be read"),
            Self::BadGateway => (StatusCode::BAD_GATEWAY, "bad_gateway", "the node failed to answer"),
            Self::UpstreamTimeout => (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout", "the node did not answer in time"),
        }
    }

    pub fn into_response(self) -> Response<ProxyBody> {
        let (status, code, message) = self.status_and_code();
        let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
        let mut response = Response::new(Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed_unsync());
        *response.status_mut() = status;
        response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static(RETRY_AFTER_SECS));
        }
        response
    }
}
