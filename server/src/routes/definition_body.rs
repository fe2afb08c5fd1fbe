//! The body of `POST /api/apply`: a definition file as text, YAML or JSON,
//! no larger than `http.max_body_bytes`, read by `crate::body`. Parsing it
//! is the definition format's job; this only decides whether the bytes are
//! acceptable.

use actix_web::{dev::Payload, http::header::CONTENT_TYPE, web, FromRequest, HttpRequest};
use futures::future::LocalBoxFuture;

use crate::body::{BodyError, BodyLimit, BoundedBody};
use crate::{error::ApiError, state::AppState};

/// The media types a definition may be sent as (JSON is YAML too).
const DEFINITION_TYPES: &[&str] = &["application/yaml", "application/x-yaml", "text/yaml", "application/json"];
const ACCEPTED: &str = "application/yaml, application/x-yaml, text/yaml or application/json";

/// A definition file's text.
pub struct DefinitionText(pub String);

impl FromRequest for DefinitionText {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req.app_data::<web::Data<AppState>>().map_or(usize::MAX, |s| s.config.http.max_body_bytes);
        let body = BoundedBody::new(req, BodyLimit::Node(limit));
        let checked = check_media_type(req).and_then(|()| body.check_declared());
        let payload = payload.take();
        Box::pin(async move {
            checked?;
            let body = body.read(payload).await?;
            Ok(DefinitionText(String::from_utf8(body).map_err(|_| BodyError::NotUtf8)?))
        })
    }
}

/// Refuse by the media type alone, before reading.
fn check_media_type(req: &HttpRequest) -> Result<(), BodyError> {
    let media_type = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = media_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if !DEFINITION_TYPES.contains(&essence.as_str()) {
        return Err(BodyError::UnsupportedMediaType { accepted: ACCEPTED });
    }
    Ok(())
}
