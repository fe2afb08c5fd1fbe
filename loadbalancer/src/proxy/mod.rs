//! The request path: route, prepare, send to the best node, retry when
//! that is safe, pass the answer back as it streams. Never touches a
//! database: it reads the routing snapshot and the health book only.

mod body;
mod headers;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use http_body_util::BodyExt;
use hyper::{
    body::Incoming,
    header::{self, HeaderValue},
    http::uri::{PathAndQuery, Scheme},
    Method, Request, Response, Uri, Version,
};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::{TokioExecutor, TokioTimer},
};
use tracing::Instrument;

pub use body::{BoxError, ProxyBody};
use body::RequestBody;
use headers::{Forwarded, X_REQUEST_ID};

use crate::{
    config::{ms, Config},
    directory::{Node, Routing},
    error::ProxyError,
    health::Health,
    route::{self, Destination},
};

pub struct Proxy {
    routing: Arc<Routing>,
    health: Arc<Health>,
    client: Client<HttpConnector, ProxyBody>,
    base_domain: String,
    max_body: u64,
    buffer_up_to: u64,
    max_attempts: usize,
    response_timeout: Duration,
}

/// How a request reached us.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub address: SocketAddr,
    pub https: bool,
}

impl Proxy {
    pub fn new(config: &Config, routing: Arc<Routing>, health: Arc<Health>) -> Self {
        let upstream = &config.upstream;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(ms(upstream.connect_timeout_ms)));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(upstream.pool_idle_per_node)
            .pool_idle_timeout(ms(upstream.pool_idle_timeout_ms))
            .pool_timer(TokioTimer::new())
            .build(connector);
        Self {
            routing,
            health,
            client,
            base_domain: config.base_domain.clone(),
            max_body: config.http.max_body_bytes,
            buffer_up_to: upstream.retry_buffer_bytes.min(config.http.max_body_bytes),
            max_attempts: upstream.max_attempts as usize,
            response_timeout: ms(upstream.response_timeout_ms),
        }
    }

    /// Answer one request: the node's response, or a JSON refusal. Either
    /// way it carries the request id.
    pub async fn handle(&self, request: Request<Incoming>, peer: Peer) -> Response<ProxyBody> {
        let request_id = headers::request_id(request.headers());
        let span = tracing::info_span!("request", request_id = request_id.to_str().unwrap_or_default(), tenant = tracing::field::Empty,
            method = %request.method(), path = %request.uri().path());
        let result = self.forward(request, peer, &request_id).instrument(span.clone()).await;
        let mut response = result.unwrap_or_else(|error| {
            span.in_scope(|| tracing::debug!(%error, "refused"));
            error.into_response()
        });
        response.headers_mut().insert(X_REQUEST_ID, request_id);
        response
    }

    async fn forward(&self, request: Request<Incoming>, peer: Peer, request_id: &HeaderValue) -> Result<Response<ProxyBody>, ProxyError> {
        let (mut parts, body) = request.into_parts();
        let original_host = host_of(&parts.headers, &parts.uri);
        let destination = route::resolve(original_host.as_ref().and_then(|h| h.to_str().ok()), &self.base_domain, &self.routing.directory())?;
        if let Some(slug) = destination.tenant_slug() {
            tracing::Span::current().record("tenant", slug);
        }
        // Resolved, so the client sent a host.
        let original_host = original_host.unwrap_or_else(|| HeaderValue::from_static(""));
        let upstream_host = destination.canonical_host(&self.base_domain).and_then(headers::owned);
        let how = Forwarded { client: peer.address.ip(), https: peer.https, original_host: &original_host, upstream_host, request_id };
        headers::forward(&mut parts.headers, how);
        let body = RequestBody::read(body, self.max_body, self.buffer_up_to).await?;
        let path = parts.uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
        let outgoing = Outgoing { method: parts.method, path, headers: parts.headers, body };
        self.attempts(&destination, outgoing).await
    }

    /// Try the destination's nodes in order, at most `max_attempts`.
    async fn attempts(&self, destination: &Destination, mut outgoing: Outgoing) -> Result<Response<ProxyBody>, ProxyError> {
        let candidates = route::candidates(&self.routing, &self.health, destination);
        if candidates.is_empty() {
            return Err(ProxyError::NoHealthyNode);
        }
        let tried = candidates.len().min(self.max_attempts);
        for (attempt, node) in candidates.iter().take(tried).enumerate() {
            let Some(request) = outgoing.to(node, attempt + 1 == tried) else { break };
            match tokio::time::timeout(self.response_timeout, self.client.request(request)).await {
                Ok(Ok(response)) => return Ok(upstream_response(response)),
                // The node may be working on it: sending it again could run it twice.
                Err(_) => return Err(ProxyError::UpstreamTimeout),
                Ok(Err(error)) => {
                    if outgoing.body.too_large() {
                        return Err(ProxyError::PayloadTooLarge);
                    }
                    tracing::warn!(node = %node.address, error = %error_chain(&error), "attempt failed");
                    if error.is_connect() {
                        // Certainly not sent: safe to send anywhere else, whatever the method.
                        self.health.eject(&node.address);
                        continue;
                    }
                    if !(idempotent(&outgoing.method) && outgoing.body.replayable()) {
                        return Err(ProxyError::BadGateway);
                    }
                }
            }
        }
        Err(ProxyError::BadGateway)
    }
}

/// The parts of a prepared request that every attempt reuses.
struct Outgoing {
    method: Method,
    path: PathAndQuery,
    headers: hyper::HeaderMap,
    body: RequestBody,
}

impl Outgoing {
    /// This request addressed to `node`; `None` when its body is gone.
    /// The `last` attempt takes the headers instead of a copy.
    fn to(&mut self, node: &Node, last: bool) -> Option<Request<ProxyBody>> {
        let body = self.body.for_attempt()?;
        let uri = Uri::builder().scheme(Scheme::HTTP).authority(node.authority.clone()).path_and_query(self.path.clone()).build().ok()?;
        let mut request = Request::new(body);
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = uri;
        *request.version_mut() = Version::HTTP_11;
        *request.headers_mut() = if last { std::mem::take(&mut self.headers) } else { self.headers.clone() };
        Some(request)
    }
}

/// The node's answer, hop-by-hop headers removed, its body streamed as it comes.
fn upstream_response(response: Response<Incoming>) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, body.map_err(BoxError::from).boxed_unsync())
}

/// The Host header, or an HTTP/2 request's authority.
fn host_of(headers: &hyper::HeaderMap, uri: &Uri) -> Option<HeaderValue> {
    match headers.get(header::HOST) {
        Some(value) => Some(value.clone()),
        None => HeaderValue::from_str(uri.authority()?.as_str()).ok(),
    }
}

/// Methods whose repetition has the effect of one (RFC 9110 9.2.2).
fn idempotent(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE)
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
