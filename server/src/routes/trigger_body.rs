//! The optional JSON body of a manual run (its trigger payload).

use actix_web::{dev::Payload, error::JsonPayloadError, http::header, web::JsonBody, FromRequest, HttpRequest};
use futures::future::{ready, FutureExt, LocalBoxFuture};
use serde_json::Value;

use crate::body::BodyError;
use crate::error::ApiError;

/// The request's JSON body, or `None` when it has none. A body that is
/// present is held to the tenant's limit `request_body_bytes` and read like
/// every JSON body (media type, syntax), so a bad one is refused the same way.
pub struct TriggerBody(pub Option<Value>);

fn has_body(req: &HttpRequest) -> bool {
    let headers = req.headers();
    let length = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    length.is_some_and(|n| n > 0) || headers.contains_key(header::TRANSFER_ENCODING)
}

impl FromRequest for TriggerBody {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        if !has_body(req) {
            return ready(Ok(TriggerBody(None))).boxed_local();
        }
        // Read against the tenant's own limit; otherwise as the app's JSON
        // config reads every JSON body (media type, syntax, error answers).
        let (req, mut payload, limit) = (req.clone(), payload.take(), super::body_limit::for_request(req));
        async move {
            let limit = limit.await;
            match JsonBody::<Value>::new(&req, &mut payload, None, true).limit(limit.bytes()).await {
                Ok(value) => Ok(TriggerBody(Some(value))),
                Err(JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. }) => {
                    Err(ApiError::from(BodyError::TooLarge(limit)).into())
                }
                Err(e) => Err(crate::error::json_error(e, &req)),
            }
        }
        .boxed_local()
    }
}

#[cfg(test)]
mod tests {
    use actix_web::{error::JsonPayloadError, test::TestRequest};
    use proptest::prelude::*;

    use crate::error::json_error;

    proptest! {
        #![proptest_config(crate::hostile_config())]

        /// A run's body is read by serde_json (recursion limit 128) through
        /// the app's JSON config: whatever it cannot read is a 4xx with a code.
        #[test]
        fn hostile_run_bodies_are_json_or_a_4xx_with_a_code(
            body in prop_oneof![
                prop::collection::vec(any::<u8>(), 0..2_000),
                (1usize..200_000, prop::sample::select(vec!["[", "{\"a\":"])).prop_map(|(depth, open)| open.repeat(depth).into_bytes()),
                "[\\[\\]{}:,\"a-z0-9 .eE+-]{0,400}".prop_map(String::into_bytes),
            ],
        ) {
            if let Err(e) = serde_json::from_slice::<serde_json::Value>(&body) {
                let request = TestRequest::default().to_http_request();
                let answer = json_error(JsonPayloadError::Deserialize(e), &request).error_response();
                prop_assert!(answer.status().is_client_error(), "{}", answer.status());
                let body = futures::executor::block_on(actix_web::body::to_bytes(answer.into_body())).unwrap();
                let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
                prop_assert!(body["error"]["code"].as_str().is_some_and(|c| !c.is_empty()), "{body}");
            }
        }
    }
}
