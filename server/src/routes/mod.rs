//! Thin HTTP handlers: extract typed input, call one domain function, map
//! the result. Business rules live in the domain modules.

mod audit_export;
mod auth;
#[cfg(feature = "bench-routes")]
mod bench;
mod body_limit;
mod definition_body;
mod extract;
mod gateway;
mod health;
mod idempotency;
pub mod metrics;
mod openapi;
mod panics;
pub mod panel;
mod platform;
mod tenant;
mod trigger_body;
mod webhook;

use actix_web::web;

pub use health::{healthz, readyz};
pub use panics::catch_panics;

/// Every route of the API, platform and tenant alike; which host a route
/// answers on is decided by its extractors (`TenantCaller`, `PlatformCaller`).
pub fn configure(cfg: &mut web::ServiceConfig, bench_routes: bool) {
    cfg.route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        // Outside /api: webhook senders are other systems, not API clients.
        .route("/hooks/{integration}", web::post().to(webhook::receive))
        // Outside /api too: a tenant's managed APIs, called by its consumers.
        .route("/apis/{tail:.*}", web::route().to(gateway::call))
        // The panel's hashed files, compressed for browsers that ask; the
        // panel's pages are the default service (`panel::fallback`).
        .service(
            web::scope("/assets")
                .wrap(actix_web::middleware::Compress::default())
                .route("/{file:.*}", web::get().to(panel::asset))
                .route("/{file:.*}", web::head().to(panel::asset)),
        )
        // Before the `/api` scope, which would answer these paths 404.
        .configure(openapi::configure)
        .service(
            web::scope("/api")
                .route("/auth/login", web::post().to(auth::login))
                .route("/host", web::get().to(auth::host))
                .route("/me", web::get().to(tenant::me))
                .configure(tenant::configure)
                .configure(platform::configure),
        );
    #[cfg(feature = "bench-routes")]
    if bench_routes {
        cfg.configure(bench::configure);
    }
    #[cfg(not(feature = "bench-routes"))]
    let _ = bench_routes; // refused by `Config::validate` without the feature
}
