//! The body of `POST /api/apply`: a definition file as text, YAML or JSON,
//! no larger than `http.max_body_bytes`. Parsing it is the definition
//! format's job; this only decides whether the bytes are acceptable.

use actix_web::{
    dev::Payload,
    http::header::{CONTENT_LENGTH, CONTENT_TYPE},
    web, FromRequest, HttpRequest,
};
use futures::{future::LocalBoxFuture, StreamExt};

use crate::{error::ApiError, state::AppState};

/// The media types a definition may be sent as (JSON is YAML too).
const DEFINITION_TYPES: &[&str] = &["application/yaml", "application/x-yaml", "text/yaml", "application/json"];

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("a definition is sent as application/yaml, application/x-yaml, text/yaml or application/json")]
    UnsupportedMediaType,
    #[error("the request body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the request body is not UTF-8 text")]
    NotUtf8,
    #[error("the request body could not be read: {0}")]
    Read(String),
}

impl BodyError {
    pub fn code(&self) -> &'static str {
        match self {
            BodyError::UnsupportedMediaType => "unsupported_media_type",
            BodyError::TooLarge { .. } => "payload_too_large",
            BodyError::NotUtf8 | BodyError::Read(_) => "invalid_body",
        }
    }
}

/// A definition file's text.
pub struct DefinitionText(pub String);

impl FromRequest for DefinitionText {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req.app_data::<web::Data<AppState>>().map_or(usize::MAX, |s| s.config.http.max_body_bytes);
        let checked = check_headers(req, limit);
        let mut payload = payload.take();
        Box::pin(async move {
            checked?;
            let mut body = Vec::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| BodyError::Read(e.to_string()))?;
                if body.len() + chunk.len() > limit {
                    return Err(BodyError::TooLarge { limit }.into());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(DefinitionText(String::from_utf8(body).map_err(|_| BodyError::NotUtf8)?))
        })
    }
}

/// Refuse by the headers alone, before reading: the media type, and a
/// declared length over the limit (a chunked body is counted as it comes).
fn check_headers(req: &HttpRequest, limit: usize) -> Result<(), BodyError> {
    let media_type = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = media_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if !DEFINITION_TYPES.contains(&essence.as_str()) {
        return Err(BodyError::UnsupportedMediaType);
    }
    let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(BodyError::TooLarge { limit });
    }
    Ok(())
}
