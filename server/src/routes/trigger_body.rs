//! The optional JSON body of a manual run (its trigger payload).

use actix_web::{dev::Payload, http::header, web, FromRequest, HttpRequest};
use futures::future::{ready, FutureExt, LocalBoxFuture};
use serde_json::Value;

/// The request's JSON body, or `None` when it has none. A body that is
/// present goes through the app's JSON config (size limit, media type,
/// syntax), so a bad one is refused the way every JSON body is.
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
        let json = web::Json::<Value>::from_request(req, payload);
        async move { Ok(TriggerBody(Some(json.await?.into_inner()))) }.boxed_local()
    }
}
