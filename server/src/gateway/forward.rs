//! A route with a backend: the call is sent on to `forward.url` through the
//! tenant's egress gate (the same gate as its `http` steps: a backend on
//! the platform's own database, broker or nodes is never reached), and the
//! backend's answer is the call's. Bodies are read whole, up to the same
//! 10 MiB an `http` step reads; redirects are answered, not followed.

use actix_web::web::Bytes;
use reqwest::Url;
use serde_json::Value;
use tessera_runtime::{
    definition::ApiForward,
    egress::denied_in,
    execution::{
        http::{method, MAX_RESPONSE_BYTES},
        io::IoError,
    },
};

use super::{AnswerBody, ApiAnswer, ApiRequest, GatewayError, Outbound};
use crate::tenancy::Tenant;

/// Request headers a backend gets from the caller: what describes the
/// body and the answer wanted, never the caller's credentials or cookies
/// (the gateway checked those), nor hop-by-hop ones.
const REQUEST_HEADERS: [&str; 10] = [
    "accept",
    "accept-encoding",
    "accept-language",
    "content-language",
    "content-type",
    "idempotency-key",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "x-request-id",
];

/// Answer headers passed back from the backend.
const ANSWER_HEADERS: [&str; 9] =
    ["cache-control", "content-encoding", "content-language", "content-type", "etag", "expires", "last-modified", "location", "retry-after"];

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("the route's backend is not allowed by the tenant's egress policy")]
    Refused,
    #[error("the route's backend could not be reached")]
    Unreachable,
    #[error("the route's backend did not answer within {} s", .0.as_secs())]
    Timeout(std::time::Duration),
    #[error("the route's backend answered with more than {} MiB", MAX_RESPONSE_BYTES / (1024 * 1024))]
    TooLarge,
    #[error("the route's backend answered with a body that is not JSON, which its response transform needs")]
    NotJson,
}

/// Send `request` on to `backend` and read its answer. `payload`, when the
/// route reshaped the request, is sent as JSON instead of the body.
pub(super) async fn forward(
    outbound: &Outbound,
    tenant: &Tenant,
    backend: &ApiForward,
    request: &ApiRequest,
    payload: Option<Value>,
    consumer: Option<&str>,
) -> Result<ApiAnswer, GatewayError> {
    let url = target(&backend.url, request)?;
    let timeout = backend.timeout.map_or(ApiForward::DEFAULT_TIMEOUT, |t| t.get());
    let client = outbound.http.client_for(&outbound.egress, tenant.id, &url).await.map_err(|e| match e {
        IoError::EgressDenied(denied) => {
            tracing::warn!(tenant = %tenant.slug, %denied, "a managed API route's backend was refused by the egress gate");
            BackendError::Refused
        }
        other => {
            tracing::warn!(tenant = %tenant.slug, error = %other, "a managed API route's backend could not be prepared");
            BackendError::Unreachable
        }
    })?;
    let mut outgoing = client.request(method(request.method), url).timeout(timeout);
    for (name, value) in request.headers.iter().filter(|(name, _)| REQUEST_HEADERS.contains(&name.as_str())) {
        if payload.is_none() || name != "content-type" {
            outgoing = outgoing.header(name, value);
        }
    }
    if let Some(consumer) = consumer {
        outgoing = outgoing.header("x-tessera-consumer", consumer);
    }
    outgoing = match payload {
        Some(json) => outgoing.json(&json),
        None => outgoing.body(request.body.clone()),
    };
    let response = outgoing.send().await.map_err(|e| failure(tenant, &e, timeout))?;
    read(tenant, response, timeout).await
}

/// The backend URL of a call: the route's base, the call's path under the
/// API (segment by segment, each encoded again), its query.
fn target(base: &str, request: &ApiRequest) -> Result<Url, GatewayError> {
    let mut url = Url::parse(base).map_err(|_| BackendError::Unreachable)?;
    let segments: Vec<&str> = request.path.split('/').filter(|s| !s.is_empty()).collect();
    if !segments.is_empty() {
        let mut path = url.path_segments_mut().map_err(|_| BackendError::Unreachable)?;
        path.pop_if_empty().extend(segments);
    }
    if !request.query.is_empty() {
        url.query_pairs_mut().extend_pairs(&request.query);
    }
    Ok(url)
}

fn failure(tenant: &Tenant, e: &reqwest::Error, timeout: std::time::Duration) -> BackendError {
    if let Some(denied) = denied_in(e) {
        tracing::warn!(tenant = %tenant.slug, %denied, "a managed API route's backend was refused by the egress gate");
        return BackendError::Refused;
    }
    if e.is_timeout() {
        return BackendError::Timeout(timeout);
    }
    tracing::info!(tenant = %tenant.slug, error = %e, "a managed API route's backend could not be reached");
    BackendError::Unreachable
}

async fn read(tenant: &Tenant, mut response: reqwest::Response, timeout: std::time::Duration) -> Result<ApiAnswer, GatewayError> {
    let status = response.status().as_u16();
    let passed: Vec<(String, String)> = response
        .headers()
        .iter()
        .filter(|(name, _)| ANSWER_HEADERS.contains(&name.as_str()))
        .filter_map(|(name, value)| Some((name.as_str().to_string(), value.to_str().ok()?.to_string())))
        .collect();
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| failure(tenant, &e, timeout))? {
        if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(BackendError::TooLarge.into());
        }
        bytes.extend_from_slice(&chunk);
    }
    let content_type = passed.iter().find(|(name, _)| name == "content-type").map(|(_, v)| v.clone());
    let body = if bytes.is_empty() { AnswerBody::Empty } else { AnswerBody::Raw { content_type, bytes: Bytes::from(bytes) } };
    Ok(ApiAnswer { status, body, headers: Vec::new(), passed })
}

/// A backend's answer as JSON, for the route's response transform.
pub(super) fn json_of(answer: &ApiAnswer) -> Result<Value, GatewayError> {
    match &answer.body {
        AnswerBody::Json(value) => Ok(value.clone()),
        AnswerBody::Empty => Ok(Value::Null),
        AnswerBody::Raw { bytes, .. } => serde_json::from_slice(bytes).map_err(|_| BackendError::NotJson.into()),
    }
}
