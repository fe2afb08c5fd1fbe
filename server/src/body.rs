//! Request bodies read as bytes within a limit: the one reader every raw
//! body goes through (definition files, webhook deliveries), and the one
//! error a body is refused with. Which limit applies is `routes::body_limit`'s call;
//! what the bytes mean is the caller's.

use std::fmt;

use actix_web::{http::header::CONTENT_LENGTH, web::Bytes, HttpRequest};
use futures::{Stream, StreamExt};

/// The limit a body is held to, and whose it is (named in the refusal, so
/// the sender knows which setting to ask about).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLimit {
    /// The node's `http.max_body_bytes` (bodies off a tenant's host, definitions).
    Node(usize),
    /// The tenant's `request_body_bytes` (webhooks, API runs).
    Tenant(usize),
}

impl BodyLimit {
    pub fn bytes(self) -> usize {
        match self {
            BodyLimit::Node(bytes) | BodyLimit::Tenant(bytes) => bytes,
        }
    }
}

impl fmt::Display for BodyLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyLimit::Node(bytes) => write!(f, "{bytes} bytes (the node's limit `http.max_body_bytes`)"),
            BodyLimit::Tenant(bytes) => write!(f, "{bytes} bytes (the tenant's limit `request_body_bytes`)"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the request body must be sent as {accepted}")]
    UnsupportedMediaType { accepted: &'static str },
    #[error("the request body is larger than {0}")]
    TooLarge(BodyLimit),
    #[error("the request body is not UTF-8 text")]
    NotUtf8,
    #[error("the request body could not be read: {0}")]
    Read(String),
}

impl BodyError {
    pub fn code(&self) -> &'static str {
        match self {
            BodyError::UnsupportedMediaType { .. } => "unsupported_media_type",
            BodyError::TooLarge(_) => "payload_too_large",
            BodyError::NotUtf8 | BodyError::Read(_) => "invalid_body",
        }
    }
}

/// A body about to be read: its limit and the length its sender declared.
#[derive(Debug, Clone, Copy)]
pub struct BoundedBody {
    limit: BodyLimit,
    declared: Option<usize>,
}

impl BoundedBody {
    pub fn new(req: &HttpRequest, limit: BodyLimit) -> Self {
        let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        Self { limit, declared }
    }

    /// Refuse a declared oversize before anything is read (and before any
    /// other complaint about the request, since it is the cheapest answer).
    pub fn check_declared(&self) -> Result<(), BodyError> {
        match self.declared {
            Some(length) if length > self.limit.bytes() => Err(BodyError::TooLarge(self.limit)),
            _ => Ok(()),
        }
    }

    /// The whole body, at most the limit: a declared oversize is refused
    /// before anything is read, a chunked body as soon as it grows past the
    /// limit; nothing past the limit is ever buffered.
    pub async fn read<E: fmt::Display>(self, mut chunks: impl Stream<Item = Result<Bytes, E>> + Unpin) -> Result<Vec<u8>, BodyError> {
        self.check_declared()?;
        let limit = self.limit.bytes();
        let mut body = Vec::new();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| BodyError::Read(e.to_string()))?;
            if body.len().saturating_add(chunk.len()) > limit {
                return Err(BodyError::TooLarge(self.limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use actix_web::ResponseError;
    use proptest::prelude::*;

    use super::*;
    use crate::error::ApiError;

    proptest! {
        #![proptest_config(crate::hostile_config())]

        /// Whatever the chunks, the declared length and the limit: the body
        /// is read whole within the limit, or refused 413 `payload_too_large`
        /// (400 `invalid_body` for a broken stream), never more. Webhook
        /// deliveries and definition files are both read this way.
        #[test]
        fn hostile_bodies_are_read_within_the_limit_or_refused_with_a_code(
            chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..512), 0..24),
            limit in 0usize..8_192,
            tenant in any::<bool>(),
            declared in prop::option::of(any::<usize>()),
            broken_at in prop::option::of(0usize..24),
        ) {
            let total: usize = chunks.iter().map(Vec::len).sum();
            let items: Vec<Result<Bytes, String>> = chunks
                .iter()
                .enumerate()
                .map(|(i, c)| if broken_at == Some(i) { Err("connection reset".to_owned()) } else { Ok(Bytes::from(c.clone())) })
                .collect();
            let limit = if tenant { BodyLimit::Tenant(limit) } else { BodyLimit::Node(limit) };
            let body = BoundedBody { limit, declared };
            match futures::executor::block_on(body.read(futures::stream::iter(items))) {
                Ok(body) => {
                    prop_assert!(body.len() <= limit.bytes() && body.len() == total);
                    prop_assert!(declared.is_none_or(|d| d <= limit.bytes()));
                }
                Err(e) => {
                    let answer = ApiError::from(e);
                    prop_assert!(answer.status_code().is_client_error(), "{}", answer.status_code());
                    prop_assert!(["payload_too_large", "invalid_body"].contains(&answer.code()));
                }
            }
        }
    }

    #[test]
    fn a_refusal_names_the_limit_that_was_passed() {
        let tenant = BodyError::TooLarge(BodyLimit::Tenant(200)).to_string();
        assert!(tenant.contains("200 bytes") && tenant.contains("request_body_bytes"), "{tenant}");
        let node = BodyError::TooLarge(BodyLimit::Node(1024)).to_string();
        assert!(node.contains("1024 bytes") && node.contains("http.max_body_bytes"), "{node}");
    }
}
