//! The `Idempotency-Key` request header of trigger endpoints, and the
//! `Idempotent-Replayed` answer header that says a repeated key found the
//! execution its first request started.

use actix_web::{dev::Payload, FromRequest, HttpRequest, HttpResponseBuilder};
use futures::future::{ready, Ready};

use crate::{
    error::ApiError,
    resources::{execution_controls::IdempotencyKey, ResourceError},
};

pub const REQUEST_HEADER: &str = "idempotency-key";
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// The key, when the request has one; a bad one is a 400 before anything runs.
pub struct IdempotencyHeader(pub Option<IdempotencyKey>);

impl IdempotencyHeader {
    /// Say on the answer whether it repeats an earlier request's.
    pub fn mark(answer: &mut HttpResponseBuilder, replayed: bool) {
        answer.insert_header((REPLAYED_HEADER, if replayed { "true" } else { "false" }));
    }
}

/// The key of a request's headers (`None` without one).
pub fn from_headers(headers: &actix_web::http::header::HeaderMap) -> Result<Option<IdempotencyKey>, ResourceError> {
    let Some(value) = headers.get(REQUEST_HEADER) else { return Ok(None) };
    let text = value.to_str().map_err(|_| ResourceError::InvalidIdempotencyKey("must be visible ASCII text".into()))?;
    IdempotencyKey::parse(text).map(Some)
}

impl FromRequest for IdempotencyHeader {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(from_headers(req.headers()).map(IdempotencyHeader).map_err(ApiError::from))
    }
}
