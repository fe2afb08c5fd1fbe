//! Tessera's own REST API as an OpenAPI 3.1 document, generated from the
//! handlers' `#[utoipa::path]` annotations: served at `/api/openapi.json`
//! on every host, with a browsable page at `/api/docs/` (Swagger UI, built
//! into the binary, so it works with no network). The error answers every
//! operation can give are added here once, as `error.rs` gives them once.

use actix_web::web;
use utoipa::{
    openapi::{
        security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
        ContentBuilder, OpenApi as Document, RefOr, ResponseBuilder,
    },
    Modify, OpenApi, ToSchema,
};
use utoipa_swagger_ui::SwaggerUi;

use super::{auth, health, platform, tenant, webhook};

/// Every error: `{"error": {"code", "message"}}`, the code machine-readable.
#[derive(ToSchema)]
#[allow(dead_code)] // describes what `error.rs` writes
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(ToSchema)]
#[allow(dead_code)]
struct ErrorDetail {
    /// Stable and machine-readable, e.g. `invalid_request`, `not_found`.
    code: String,
    message: String,
    /// `invalid_definition`: every problem with its document, path, line and column.
    errors: Option<serde_json::Value>,
    /// `execution_failed`: the execution that failed.
    execution_id: Option<uuid::Uuid>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Tessera", description = "The REST API of a Tessera node. A tenant's API is served on its host (`<slug>.<base_domain>`), the platform owners' on the bare base domain; the document describes both."),
    paths(
        health::healthz, health::readyz, auth::login, auth::host, webhook::receive,
        tenant::me, tenant::list_users, tenant::create_user, tenant::get_user, tenant::update_user, tenant::delete_user,
        tenant::list_keys, tenant::create_key, tenant::revoke_key,
        tenant::list_variables, tenant::get_variable, tenant::put_variable, tenant::delete_variable,
        tenant::apply_definitions, tenant::schema, tenant::execution_stats,
        tenant::list_integrations, tenant::get_integration, tenant::delete_integration, tenant::list_versions, tenant::get_version,
        tenant::rollback_integration, tenant::run_integration,
        tenant::list_executions, tenant::get_execution, tenant::cancel_execution, tenant::retry_execution,
        tenant::list_connections, tenant::get_connection, tenant::delete_connection, tenant::test_connection,
        tenant::list_audit, tenant::export_audit, tenant::verify_audit,
        tenant::list_apis, tenant::get_api, tenant::delete_api, tenant::api_analytics, tenant::api_document,
        tenant::list_plans, tenant::get_plan, tenant::put_plan, tenant::delete_plan,
        tenant::list_consumers, tenant::create_consumer, tenant::get_consumer, tenant::update_consumer, tenant::delete_consumer,
        tenant::create_consumer_key, tenant::revoke_consumer_key,
        platform::list, platform::create, platform::get, platform::delete, platform::suspend, platform::resume, platform::move_tenant,
        platform::domains_list, platform::domains_add, platform::domains_verify, platform::domains_remove,
        platform::tenant_stats, platform::limits, platform::set_limits,
        platform::egress_show, platform::egress_add, platform::egress_remove,
        platform::clusters_list, platform::clusters_create, platform::clusters_show, platform::clusters_drain, platform::clusters_activate,
        platform::node, platform::cluster, platform::drain,
        platform::audit_list, platform::audit_export, platform::audit_verify,
    ),
    components(schemas(ErrorBody)),
    modifiers(&Conventions),
    security(("bearer" = []), ("api_key" = [])),
)]
pub struct ApiDoc;

/// What holds for every operation: how to authenticate, and the errors.
struct Conventions;

/// The error statuses any operation may answer with (`error.rs`).
const ERRORS: [(&str, &str); 9] = [
    ("400", "the request is not valid: its host, path, query or body"),
    ("401", "no credential, or one that is not valid here"),
    ("403", "the caller's role does not allow it, or the tenant is suspended"),
    ("404", "no such resource, tenant or route"),
    ("409", "the resource's state or a concurrent change does not allow it"),
    ("413", "the body is larger than allowed"),
    ("415", "the body's content type is not one this operation reads"),
    ("429", "a limit or rate was reached; `Retry-After` says when to come again"),
    ("503", "the node is stopping, or the database or the tenant (moving) is away for a moment"),
];

impl Modify for Conventions {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
        components.add_security_scheme("api_key", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))));
        let error = ContentBuilder::new().schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name("ErrorBody")))).build();
        for item in doc.paths.paths.values_mut() {
            let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                for (status, description) in ERRORS {
                    operation.responses.responses.entry(status.to_string()).or_insert_with(|| {
                        RefOr::T(ResponseBuilder::new().description(description).content("application/json", error.clone()).build())
                    });
                }
            }
        }
    }
}

/// `GET /api/openapi.json` and the page at `/api/docs/`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(SwaggerUi::new("/api/docs/{_:.*}").url("/api/openapi.json", ApiDoc::openapi()));
}
