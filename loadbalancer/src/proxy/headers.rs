//! Headers on the way through: hop-by-hop ones removed both ways, the
//! `X-Forwarded-*` set, the request id kept or made.

use std::net::IpAddr;

use std::fmt::Write;

use bytes::Bytes;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Longest request id taken from a client; longer ones are replaced.
const MAX_REQUEST_ID: usize = 200;

/// Headers about one connection, never to be passed on (RFC 9110 7.6.1).
const HOP_BY_HOP: &[&str] =
    &["connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade"];

/// Remove hop-by-hop headers, and those the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

/// The client's id when it is sane (1–200 visible ASCII characters), else a
/// new UUIDv7. A header value, shared by the request and the response.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    headers
        .get(X_REQUEST_ID)
        .filter(|id| !id.is_empty() && id.len() <= MAX_REQUEST_ID && id.as_bytes().iter().all(u8::is_ascii_graphic))
        .cloned()
        .unwrap_or_else(|| owned(uuid::Uuid::now_v7().to_string()).expect("a UUID is a header value"))
}

/// What the node must learn about the request's way in.
pub struct Forwarded<'a> {
    pub client: IpAddr,
    pub https: bool,
    /// The Host the client sent.
    pub original_host: &'a HeaderValue,
    /// The Host the node must see, when not the client's.
    pub upstream_host: Option<HeaderValue>,
    pub request_id: &'a HeaderValue,
}

/// Prepare a request's headers for the node. Values are shared, not
/// copied, where they can be: this runs for every request.
pub fn forward(headers: &mut HeaderMap, how: Forwarded) {
    strip_hop_by_hop(headers);
    let mut chain = String::with_capacity(64);
    for earlier in headers.get_all(&X_FORWARDED_FOR).iter().filter_map(|v| v.to_str().ok()) {
        chain.push_str(earlier);
        chain.push_str(", ");
    }
    let _ = write!(chain, "{}", how.client);
    if let Some(chain) = owned(chain) {
        headers.insert(X_FORWARDED_FOR, chain);
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(if how.https { "https" } else { "http" }));
    headers.insert(X_FORWARDED_HOST, how.original_host.clone());
    headers.insert(header::HOST, how.upstream_host.unwrap_or_else(|| how.original_host.clone()));
    headers.insert(X_REQUEST_ID, how.request_id.clone());
}

/// `text` as a header value without copying it; `None` when it cannot be one.
pub fn owned(text: String) -> Option<HeaderValue> {
    HeaderValue::from_maybe_shared(Bytes::from(text)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_go() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn a_sane_request_id_is_kept_and_others_replaced() {
        let mut h = HeaderMap::new();
        h.insert(X_REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert(X_REQUEST_ID, HeaderValue::from_static("has space"));
        assert_ne!(request_id(&h), "has space");
        h.insert(X_REQUEST_ID, HeaderValue::from_str(&"x".repeat(201)).unwrap());
        assert_eq!(request_id(&h).len(), 36);
        h.remove(X_REQUEST_ID);
        assert_eq!(request_id(&h).len(), 36);
    }

    #[test]
    fn forwarded_headers_extend_the_chain_and_keep_the_host() {
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static("203.0.113.9"));
        let (host, id) = (HeaderValue::from_static("acme.example.com"), HeaderValue::from_static("r-1"));
        let how = Forwarded { client: "127.0.0.2".parse().unwrap(), https: true, original_host: &host, upstream_host: None, request_id: &id };
        forward(&mut h, how);
        assert_eq!(h[&X_FORWARDED_FOR], "203.0.113.9, 127.0.0.2");
        assert_eq!(h[&X_FORWARDED_PROTO], "https");
        assert_eq!(h[&X_FORWARDED_HOST], "acme.example.com");
        assert_eq!(h[header::HOST], "acme.example.com");
        assert_eq!(h[&X_REQUEST_ID], "r-1");
        let custom = HeaderValue::from_static("acme.localhost");
        let how = Forwarded { client: "::1".parse().unwrap(), https: false, original_host: &host, upstream_host: Some(custom), request_id: &id };
        forward(&mut h, how);
        assert_eq!(h[header::HOST], "acme.localhost");
        assert_eq!(h[&X_FORWARDED_HOST], "acme.example.com");
    }
}
