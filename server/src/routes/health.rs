//! Liveness and readiness. These answer on any host (probes use addresses).

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::{provisioning::migrate, state::AppState};

/// The process is up.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    summary = "The process is up",
    responses((status = 200, description = "up", body = Object)),
    security(())
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// The node can serve: the database answers and every schema is migrated.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    summary = "The database is reachable and every schema migrated",
    responses((status = 200, description = "ready", body = Object), (status = 503, description = "not ready", body = Object)),
    security(())
)]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let checks = async {
        let client = state.pool.get().await?;
        let platform_current = migrate::platform_current(&client).await?;
        let tenants_behind = migrate::tenants_behind(&client).await?;
        Ok::<_, crate::database::DbError>((platform_current, tenants_behind))
    };
    match checks.await {
        Ok((true, 0)) => HttpResponse::Ok().json(json!({"status": "ready", "database": "ok", "migrations": "current"})),
        Ok((platform_current, tenants_behind)) => HttpResponse::ServiceUnavailable().json(json!({
            "status": "not_ready",
            "database": "ok",
            "migrations": {"platform_current": platform_current, "tenants_behind": tenants_behind},
        })),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            HttpResponse::ServiceUnavailable().json(json!({"status": "not_ready", "database": "unreachable"}))
        }
    }
}
