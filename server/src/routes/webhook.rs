//! `POST /hooks/{integration}` on a tenant's host: the request as received
//! (raw body within the tenant's `request_body_bytes`, headers, query), handed whole to
//! `resources::webhooks`, which decides everything else.

use actix_web::{dev::Payload, http::header::CONTENT_LENGTH, web, FromRequest, HttpRequest, HttpResponse};
use futures::{future::LocalBoxFuture, Stream, StreamExt};
use serde_json::json;

use super::idempotency::IdempotencyHeader;
use crate::{
    auth::TenantHost,
    error::ApiError,
    resources::webhooks::{self, Delivery, Outcome, WebhookError},
    state::AppState,
};

pub async fn receive(
    state: web::Data<AppState>,
    host: TenantHost,
    name: web::Path<String>,
    delivery: WebhookDelivery,
) -> Result<HttpResponse, ApiError> {
    let answer = webhooks::accept(&state.tenant_db, &state.hot, &state.intake, &state.supervisor, &state.sealing, &host.0, &name, delivery.0).await?;
    let replayed = answer.replayed;
    Ok(match answer.outcome {
        Outcome::Accepted { id, state } => {
            let mut response = HttpResponse::Accepted();
            IdempotencyHeader::mark(&mut response, replayed);
            response.json(json!({"id": id, "state": state, "replayed": replayed}))
        }
        Outcome::Finished(output) => {
            let mut response = HttpResponse::Ok();
            IdempotencyHeader::mark(&mut response, replayed);
            response.json(output)
        }
    })
}

/// The request as a `Delivery`. The body is read as bytes, not through the
/// JSON extractor: an HMAC covers the exact bytes sent.
pub struct WebhookDelivery(Delivery);

impl FromRequest for WebhookDelivery {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = super::body_limit::for_request(req);
        let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        let headers: Vec<(String, String)> = req
            .headers()
            .iter()
            .map(|(name, value)| (name.as_str().to_ascii_lowercase(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
            .collect();
        let query = web::Query::<Vec<(String, String)>>::from_query(req.query_string()).map(|q| q.into_inner());
        let content_type = headers.iter().find(|(n, _)| n == "content-type").map(|(_, v)| v.clone());
        let payload = payload.take();
        Box::pin(async move {
            let limit = limit.await;
            // Refuse a declared oversize at once; a chunked body is counted as it comes.
            if declared.is_some_and(|length| length > limit) {
                return Err(WebhookError::TooLarge { limit }.into());
            }
            let query = query.map_err(ApiError::from)?;
            let body = read_within(declared, limit, payload).await?;
            Ok(WebhookDelivery(Delivery { content_type, body, headers, query }))
        })
    }
}

/// The body, at most `limit` bytes: a declared oversize is refused before
/// anything is read, a chunked body as soon as it grows past the limit.
async fn read_within<E: std::fmt::Display>(
    declared: Option<usize>,
    limit: usize,
    mut chunks: impl Stream<Item = Result<web::Bytes, E>> + Unpin,
) -> Result<Vec<u8>, WebhookError> {
    if declared.is_some_and(|length| length > limit) {
        return Err(WebhookError::TooLarge { limit });
    }
    let mut body = Vec::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| WebhookError::Read(e.to_string()))?;
        if body.len().saturating_add(chunk.len()) > limit {
            return Err(WebhookError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use actix_web::ResponseError;
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(crate::hostile_config())]

        /// Whatever the chunks, the declared length and the limit: the body
        /// is read whole within the limit, or refused 413 `payload_too_large`
        /// (400 `invalid_body` for a broken stream), never more.
        #[test]
        fn hostile_webhook_bodies_are_read_within_the_limit_or_refused_with_a_code(
            chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..512), 0..24),
            limit in 0usize..8_192,
            declared in prop::option::of(any::<usize>()),
            broken_at in prop::option::of(0usize..24),
        ) {
            let total: usize = chunks.iter().map(Vec::len).sum();
            let items: Vec<Result<web::Bytes, String>> = chunks
                .iter()
                .enumerate()
                .map(|(i, c)| if broken_at == Some(i) { Err("connection reset".to_owned()) } else { Ok(web::Bytes::from(c.clone())) })
                .collect();
            let read = futures::executor::block_on(read_within(declared, limit, futures::stream::iter(items)));
            match read {
                Ok(body) => {
                    prop_assert!(body.len() <= limit && body.len() == total);
                    prop_assert!(declared.is_none_or(|d| d <= limit));
                }
                Err(e) => {
                    let answer = ApiError::from(e);
                    prop_assert!(answer.status_code().is_client_error(), "{}", answer.status_code());
                    prop_assert!(["payload_too_large", "invalid_body"].contains(&answer.code()));
                }
            }
        }
    }
}
