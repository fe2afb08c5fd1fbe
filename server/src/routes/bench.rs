//! Baseline routes for bench/ only (enabled by `bench_routes`): the same
//! one-row read as `GET /api/variables/{name}`, with the same token check,
//! and the same schema-qualified statement, but no host resolution, no
//! directory lookup and no account-standing check.
//! The difference between the two is what tenancy costs.

use actix_web::{http::header, web, HttpRequest, HttpResponse};

use crate::{auth::AuthError, error::ApiError, state::AppState, tenancy::SchemaName};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/bench/baseline/{schema}/variables/{name}", web::get().to(baseline_variable));
}

async fn baseline_variable(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (schema, name) = path.into_inner();
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(AuthError::MissingCredentials)?;
    verify_with_own_audience(&state, token)?;
    let schema = SchemaName::from_stored(schema).ok_or_else(|| ApiError::bad_request("invalid_schema", "bad schema"))?;
    let client = state.pool.get().await.map_err(crate::database::DbError::from)?;
    let sql = format!("SELECT name, value, description, updated_at FROM {}.variables WHERE name = $1", schema.quoted());
    let statement = client.prepare_cached(&sql).await.map_err(crate::database::DbError::from)?;
    let row = client
        .query_opt(&statement, &[&name])
        .await
        .map_err(crate::database::DbError::from)?
        .ok_or_else(|| ApiError::not_found("not_found", "no such variable"))?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "name": row.get::<_, String>(0),
        "value": row.get::<_, serde_json::Value>(1),
        "description": row.get::<_, String>(2),
        "updated_at": row.get::<_, chrono::DateTime<chrono::Utc>>(3),
    })))
}

/// Verify signature and expiry exactly like a tenant request does, taking
/// the audience from the token itself (there is no host to bind it to).
fn verify_with_own_audience(state: &AppState, token: &str) -> Result<(), ApiError> {
    let unverified_aud = token
        .split('.')
        .nth(1)
        .and_then(|p| base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, p).ok())
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("aud").and_then(|a| a.as_str()).map(str::to_string))
        .ok_or(AuthError::InvalidToken)?;
    state.auth.tokens.verify(token, &unverified_aud)?;
    Ok(())
}
