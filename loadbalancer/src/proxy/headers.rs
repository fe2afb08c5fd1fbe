//! Headers on the way through: hop-by-hop ones removed both ways, the
//! `X-Forwarded-*` set, the request id kept or made.

use std::net::IpAddr;

use hyper::{
    header::{self, HeaderMap, HeaderName, HeaderValue},
};

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

/// The client's id when it is sane (1–200 visible ASCII characters), else a new UUIDv7.
pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| !id.is_empty() && id.len() <= MAX_REQUEST_ID && id.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

/// What the node must learn about the request's way in.
pub struct Forwarded<'a> {
    pub client: IpAddr,
    pub https: bool,
    /// The Host the client sent.
    pub original_host: &'a str,
    /// The Host the node must see.
    pub upstream_host: &'a str,
    pub request_id: &'a str,
}

/// Prepare a request's headers for the node.
pub fn forward(headers: &mut HeaderMap, how: &Forwarded) {
    strip_hop_by_hop(headers);
    let chain = headers.get_all(&X_FORWARDED_FOR).iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(", ");
    let chain = if chain.is_empty() { how.client.to_string() } else { format!("{chain}, {}", how.client) };
    set(headers, X_FORWARDED_FOR, &chain);
    set(headers, X_FORWARDED_PROTO, if how.https { "https" } else { "http" });
    set(headers, X_FORWARDED_HOST, how.original_host);
    set(headers, header::HOST, how.upstream_host);
    set(headers, X_REQUEST_ID, how.request_id);
}

fn set(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    // Every value here was a valid header value already or is ASCII we made.
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
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
    }
}
