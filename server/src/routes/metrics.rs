//! `GET /metrics` on the metrics listener, and the middleware that counts
//! every API request by its route's pattern.

use std::time::Instant;

use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    middleware::Next,
    http::Method,
    web, HttpResponse,
};

use crate::state::AppState;

/// The route of requests no route matched (the panel's pages, unknown
/// paths): one label for all, since their paths are unbounded.
const UNMATCHED: &str = "unmatched";

/// Count the request once answered: route pattern, method, status, time.
pub async fn count_requests(request: ServiceRequest, next: Next<impl MessageBody>) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let state = request.app_data::<web::Data<AppState>>().cloned();
    let (began, method) = (Instant::now(), method_label(request.method()));
    let response = next.call(request).await?;
    if let Some(state) = state {
        let route = response.request().match_pattern();
        let route = route.as_deref().unwrap_or(UNMATCHED);
        state.metrics.request(route, method, response.status().as_u16(), began.elapsed());
    }
    Ok(response)
}

/// The method as a label: a client may send any token as its method, and
/// each would be a series of its own.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Every metric, with the gauges that are read rather than counted
/// (leases, workers, pools) taken now.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let metrics = &state.metrics;
    let (held, running) = state.supervisor.counts();
    metrics.leases_held.set(held as i64);
    metrics.workers_running.set(running as i64);
    let platform = state.pool.status();
    metrics.pool("platform", (platform.size, platform.available, platform.waiting));
    metrics.pool("tenants", state.tenant_db.lanes().status());
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(metrics.render())
}
