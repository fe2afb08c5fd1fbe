//! The admin panel (`web/`), embedded in the binary by `build.rs`: every
//! node serves it, on tenant hosts (the tenant panel) and on the platform
//! host (the platform console), with nothing fetched at run time.
//!
//! - `/assets/…`: Vite's content-hashed files, cached for a year
//!   (`immutable`); an unknown one is a JSON 404, never the page.
//! - Any other GET outside the API (`/api`, `/apis`, `/hooks`, `/bench`): a file of the panel's root if there is
//!   one (`favicon.svg`), else `index.html` (the panel routes in the
//!   browser), never cached, so a new node's panel is seen at once. On a
//!   tenant host only for a tenant that exists (else `tenant_not_found`).
//! - Every panel response carries a strict Content-Security-Policy: scripts
//!   only from the node itself, no inline script, no connection elsewhere.

use actix_web::{
    http::{
        header::{self, HeaderValue},
        Method, StatusCode,
    },
    FromRequest, HttpMessage, HttpRequest, HttpResponse,
};
use rust_embed::{EmbeddedFile, RustEmbed};

use crate::{auth::TenantHost, error::ApiError, tenancy::HostTarget};

#[derive(RustEmbed)]
#[folder = "$OUT_DIR/panel"]
struct Panel;

/// Styles may be inline (the graph and the editor set element styles);
/// scripts may not.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     frame-ancestors 'none'; form-action 'self'";

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";

/// `GET /assets/{file}`: a hashed asset of the panel.
pub async fn asset(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let path = req.path().trim_start_matches('/');
    match Panel::get(path) {
        Some(file) => Ok(respond(&req, file, IMMUTABLE)),
        None => Err(ApiError::not_found("not_found", format!("the panel has no file '/{path}'"))),
    }
}

/// Whatever no route took: the panel for a browser's GET outside the API,
/// a JSON 404 for everything else.
pub async fn fallback(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let path = req.path();
    let under = |prefix: &str| path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    let outside_api = !["/api", "/apis", "/hooks", "/assets", "/bench"].into_iter().any(under);
    if !(outside_api && (req.method() == Method::GET || req.method() == Method::HEAD)) {
        return Err(ApiError::not_found("not_found", "no such endpoint"));
    }
    if matches!(req.extensions().get::<HostTarget>(), Some(HostTarget::Tenant(_))) {
        // An unknown (or suspended) tenant's host has no panel: its error, as the API gives it.
        TenantHost::extract(&req).await?;
    }
    let name = path.trim_start_matches('/');
    if !name.is_empty() && !name.contains('/') && name != "index.html" {
        if let Some(file) = Panel::get(name) {
            return Ok(respond(&req, file, REVALIDATE));
        }
    }
    let page = Panel::get("index.html").ok_or_else(|| ApiError::not_found("not_found", "this node has no panel"))?;
    Ok(respond(&req, page, REVALIDATE))
}

fn respond(req: &HttpRequest, file: EmbeddedFile, cache: &'static str) -> HttpResponse {
    let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()));
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == etag));
    let mut response = HttpResponse::build(if fresh { StatusCode::NOT_MODIFIED } else { StatusCode::OK });
    response
        .insert_header((header::CACHE_CONTROL, cache))
        .insert_header((header::ETAG, etag))
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"));
    if fresh {
        return response.finish();
    }
    let mime = file.metadata.mimetype();
    let content_type = if mime.starts_with("text/") || mime == "application/javascript" || mime == "image/svg+xml" {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_string()
    };
    response.insert_header((header::CONTENT_TYPE, HeaderValue::from_str(&content_type).unwrap_or(HeaderValue::from_static("application/octet-stream"))));
    if req.method() == Method::HEAD {
        return response.finish();
    }
    response.body(file.data.into_owned())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
