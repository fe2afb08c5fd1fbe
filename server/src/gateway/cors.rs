//! CORS for a managed API (`spec.cors`): a browser's preflight is answered
//! here, before any auth (a preflight carries no credentials), and every
//! other answer to an allowed origin says so, errors included, so that a
//! page can read a 429 or a 400. An API without `cors` answers no
//! preflight and sends no CORS header, which browsers read as "no".

use tessera_runtime::definition::{Api, ApiCors, HttpMethod};

use super::{ApiRequest, GatewayError};
use crate::resources::api_document::method_name;

/// Answer headers a page may read besides the safelisted ones.
const EXPOSED: &str = "RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, Retry-After, Deprecation, Sunset, X-Request-Id";

/// The answer to a preflight (`OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`), when `request` is one for an API
/// with CORS: its headers, or the refusal of its origin.
pub(super) fn preflight(api: &Api, request: &ApiRequest) -> Option<Result<Vec<(&'static str, String)>, GatewayError>> {
    let cors = api.spec.cors.as_ref()?;
    let origin = request.header("origin")?;
    request.header("access-control-request-method")?;
    if request.method != HttpMethod::Options {
        return None;
    }
    let Some(allowed) = cors.allowed_origin(origin) else {
        return Some(Err(GatewayError::CorsRefused { origin: origin.to_string() }));
    };
    let methods: Vec<String> = api.spec.routes.iter().filter(|route| route.matches(&request.path).is_some()).map(|route| method_name(route.method)).collect();
    let allow_headers = match &cors.allow_headers {
        Some(headers) => headers.join(", "),
        None => ApiCors::DEFAULT_HEADERS.join(", "),
    };
    let mut headers = vec![
        ("Access-Control-Allow-Origin", allowed),
        ("Access-Control-Allow-Methods", methods.join(", ")),
        ("Access-Control-Allow-Headers", allow_headers),
        ("Access-Control-Max-Age", cors.max_age_seconds.unwrap_or(ApiCors::DEFAULT_MAX_AGE).to_string()),
        ("Vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers".into()),
    ];
    if cors.allow_credentials {
        headers.push(("Access-Control-Allow-Credentials", "true".into()));
    }
    Some(Ok(headers))
}

/// The CORS headers of an answer to a call from `origin`.
pub(super) fn headers(api: &Api, origin: Option<&str>) -> Vec<(&'static str, String)> {
    let Some(cors) = &api.spec.cors else { return Vec::new() };
    // The answer depends on the origin whenever an API has CORS, allowed or not.
    let mut headers = vec![("Vary", "Origin".to_string())];
    if let Some(allowed) = origin.and_then(|origin| cors.allowed_origin(origin)) {
        headers.push(("Access-Control-Allow-Origin", allowed));
        headers.push(("Access-Control-Expose-Headers", EXPOSED.into()));
        if cors.allow_credentials {
            headers.push(("Access-Control-Allow-Credentials", "true".into()));
        }
    }
    headers
}
