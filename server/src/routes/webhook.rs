//! `POST /hooks/{integration}` on a tenant's host: the request as received
//! (raw body within the tenant's `request_body_bytes`, headers, query), handed whole to
//! `resources::webhooks`, which decides everything else.

use actix_web::{dev::Payload, web, FromRequest, HttpRequest, HttpResponse};
use futures::future::LocalBoxFuture;
use serde_json::json;

use super::idempotency::IdempotencyHeader;
use crate::body::BoundedBody;
use crate::{
    auth::TenantHost,
    error::ApiError,
    resources::webhooks::{self, Delivery, Outcome},
    state::AppState,
};

#[utoipa::path(
    post,
    path = "/hooks/{integration}",
    tag = "webhooks",
    summary = "An integration's webhook trigger; auth as the trigger says",
    params(("integration" = String, Path, description = "the integration")),
    request_body(content((Object = "application/json"), (String = "text/plain")), description = "the payload"),
    responses((status = 202, description = "committed: `{id, state}`", body = Object), (status = 200, description = "a synchronous trigger's output", body = Object)),
    security(())
)]
pub async fn receive(
    state: web::Data<AppState>,
    host: TenantHost,
    name: web::Path<String>,
    delivery: WebhookDelivery,
) -> Result<HttpResponse, ApiError> {
    let hooks = webhooks::Webhooks { db: &state.tenant_db, hot: &state.hot, keys: &state.sealing, intake: &state.intake, endings: &state.endings, engine: &state.engine };
    let answer = hooks.accept(&host.0, &name, delivery.0).await?;
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

impl WebhookDelivery {
    pub fn into_inner(self) -> Delivery {
        self.0
    }
}

impl FromRequest for WebhookDelivery {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = super::body_limit::for_request(req);
        let req = req.clone();
        let headers: Vec<(String, String)> = req
            .headers()
            .iter()
            .map(|(name, value)| (name.as_str().to_ascii_lowercase(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
            .collect();
        let query = web::Query::<Vec<(String, String)>>::from_query(req.query_string()).map(|q| q.into_inner());
        let content_type = headers.iter().find(|(n, _)| n == "content-type").map(|(_, v)| v.clone());
        let payload = payload.take();
        Box::pin(async move {
            let body = BoundedBody::new(&req, limit.await);
            body.check_declared()?;
            let query = query.map_err(ApiError::from)?;
            let body = body.read(payload).await?;
            Ok(WebhookDelivery(Delivery { content_type, body, headers, query }))
        })
    }
}
