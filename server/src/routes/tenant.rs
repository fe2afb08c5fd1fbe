//! The tenant API (on `<slug>.<base_domain>`).

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::{audit_export::ndjson, definition_body::DefinitionText, idempotency::IdempotencyHeader, trigger_body::TriggerBody};
use crate::{
    audit::AuditFilter,
    auth::TenantCaller,
    error::ApiError,
    resources::{api_keys, apis, apply, audit, consumers, plans, connection_test, connections, execution_controls, executions, integrations, stats, users, variables},
    state::AppState,
};

type Reply = Result<HttpResponse, ApiError>;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/users", web::get().to(list_users))
        .route("/users", web::post().to(create_user))
        .route("/users/{id}", web::get().to(get_user))
        .route("/users/{id}", web::patch().to(update_user))
        .route("/users/{id}", web::delete().to(delete_user))
        .route("/api-keys", web::get().to(list_keys))
        .route("/api-keys", web::post().to(create_key))
        .route("/api-keys/{id}", web::delete().to(revoke_key))
        .route("/variables", web::get().to(list_variables))
        .route("/variables/{name}", web::get().to(get_variable))
        .route("/variables/{name}", web::put().to(put_variable))
        .route("/variables/{name}", web::delete().to(delete_variable))
        .route("/apply", web::post().to(apply_definitions))
        .route("/schema", web::get().to(schema))
        .route("/integrations", web::get().to(list_integrations))
        .route("/integrations/{name}", web::get().to(get_integration))
        .route("/integrations/{name}", web::delete().to(delete_integration))
        .route("/integrations/{name}/versions", web::get().to(list_versions))
        .route("/integrations/{name}/versions/{version}", web::get().to(get_version))
        .route("/integrations/{name}/rollback", web::post().to(rollback_integration))
        .route("/integrations/{name}/run", web::post().to(run_integration))
        .route("/stats", web::get().to(execution_stats))
        .route("/executions", web::get().to(list_executions))
        .route("/executions/{id}", web::get().to(get_execution))
        .route("/executions/{id}/cancel", web::post().to(cancel_execution))
        .route("/executions/{id}/retry", web::post().to(retry_execution))
        .route("/connections", web::get().to(list_connections))
        .route("/connections/{name}", web::get().to(get_connection))
        .route("/connections/{name}", web::delete().to(delete_connection))
        .route("/connections/{name}/test", web::post().to(test_connection))
        .route("/apis", web::get().to(list_apis))
        .route("/apis/{name}", web::get().to(get_api))
        .route("/apis/{name}", web::delete().to(delete_api))
        .route("/apis/{name}/analytics", web::get().to(api_analytics))
        .route("/apis/{name}/openapi.json", web::get().to(api_document))
        .route("/plans", web::get().to(list_plans))
        .route("/plans/{name}", web::get().to(get_plan))
        .route("/plans/{name}", web::put().to(put_plan))
        .route("/plans/{name}", web::delete().to(delete_plan))
        .route("/consumers", web::get().to(list_consumers))
        .route("/consumers", web::post().to(create_consumer))
        .route("/consumers/{id}", web::get().to(get_consumer))
        .route("/consumers/{id}", web::patch().to(update_consumer))
        .route("/consumers/{id}", web::delete().to(delete_consumer))
        .route("/consumers/{id}/keys", web::post().to(create_consumer_key))
        .route("/consumers/{id}/keys/{key}", web::delete().to(revoke_consumer_key))
        .route("/audit", web::get().to(list_audit))
        .route("/audit/export", web::get().to(export_audit))
        .route("/audit/verify", web::get().to(verify_audit));
}

/// `GET /api/me`: the caller's tenant, identity and role.
#[utoipa::path(
    get,
    path = "/api/me",
    tag = "auth",
    summary = "The caller's tenant, identity and role (any role)",
    responses((status = 200, description = "`{tenant, principal, role}`", body = Object))
)]
pub async fn me(caller: TenantCaller) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "tenant": {"id": caller.tenant.id, "slug": caller.tenant.slug.as_str(), "name": caller.tenant.name},
        "principal": caller.principal,
        "role": caller.role,
    }))
}

#[utoipa::path(
    get,
    path = "/api/users",
    tag = "users",
    summary = "The tenant's users (viewer+)",
    responses((status = 200, description = r#"`{"items": [User]}`"#, body = Object))
)]
async fn list_users(state: web::Data<AppState>, caller: TenantCaller) -> Reply {
    Ok(HttpResponse::Ok().json(json!({"items": users::list(&state.tenant_db, &caller).await?})))
}

#[utoipa::path(
    post,
    path = "/api/users",
    tag = "users",
    summary = "Add a user (admin+; never a role above the caller's)",
    request_body = users::NewUser,
    responses((status = 201, description = "the user", body = users::User))
)]
async fn create_user(state: web::Data<AppState>, caller: TenantCaller, body: web::Json<users::NewUser>) -> Reply {
    let user = users::create(&state.tenant_db, &state.auth.passwords, &caller, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(user))
}

#[utoipa::path(
    get,
    path = "/api/users/{id}",
    tag = "users",
    summary = "One user (viewer+)",
    params(("id" = String, Path, description = "the id")),
    responses((status = 200, description = "the user", body = users::User))
)]
async fn get_user(state: web::Data<AppState>, caller: TenantCaller, id: web::Path<String>) -> Reply {
    Ok(HttpResponse::Ok().json(users::get(&state.tenant_db, &caller, &id).await?))
}

#[utoipa::path(
    patch,
    path = "/api/users/{id}",
    tag = "users",
    summary = "Change a user's role, name, password or standing (admin+)",
    params(("id" = String, Path, description = "the id")),
    request_body = users::UserChanges,
    responses((status = 200, description = "the user", body = users::User))
)]
async fn update_user(
    state: web::Data<AppState>,
    caller: TenantCaller,
    id: web::Path<String>,
    body: web::Json<users::UserChanges>,
) -> Reply {
    let user = users::update(&state.tenant_db, &state.auth, &caller, &id, body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(user))
}

#[utoipa::path(
    delete,
    path = "/api/users/{id}",
    tag = "users",
    summary = "Delete a user (admin+; a tenant keeps one owner)",
    params(("id" = String, Path, description = "the id")),
    responses((status = 204, description = "deleted"))
)]
async fn delete_user(state: web::Data<AppState>, caller: TenantCaller, id: web::Path<String>) -> Reply {
    users::delete(&state.tenant_db, &state.auth, &caller, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    get,
    path = "/api/api-keys",
    tag = "api-keys",
    summary = "The tenant's API keys, without secrets (admin+)",
    responses((status = 200, description = r#"`{"items": [ApiKey]}`"#, body = Object))
)]
async fn list_keys(state: web::Data<AppState>, caller: TenantCaller) -> Reply {
    Ok(HttpResponse::Ok().json(json!({"items": api_keys::list(&state.tenant_db, &caller).await?})))
}

#[utoipa::path(
    post,
    path = "/api/api-keys",
    tag = "api-keys",
    summary = "Create an API key; its secret is in this answer only (admin+)",
    request_body = api_keys::NewApiKey,
    responses((status = 201, description = "the key and its secret", body = api_keys::CreatedApiKey))
)]
async fn create_key(state: web::Data<AppState>, caller: TenantCaller, body: web::Json<api_keys::NewApiKey>) -> Reply {
    Ok(HttpResponse::Created().json(api_keys::create(&state.tenant_db, &caller, body.into_inner()).await?))
}

#[utoipa::path(
    delete,
    path = "/api/api-keys/{id}",
    tag = "api-keys",
    summary = "Revoke an API key (admin+)",
    params(("id" = String, Path, description = "the id")),
    responses((status = 200, description = "the revoked key", body = api_keys::ApiKey))
)]
async fn revoke_key(state: web::Data<AppState>, caller: TenantCaller, id: web::Path<String>) -> Reply {
    Ok(HttpResponse::Ok().json(api_keys::revoke(&state.tenant_db, &caller, &id).await?))
}

#[utoipa::path(
    get,
    path = "/api/variables",
    tag = "variables",
    summary = "The tenant's variables (viewer+)",
    responses((status = 200, description = r#"`{"items": [Variable]}`"#, body = Object))
)]
async fn list_variables(state: web::Data<AppState>, caller: TenantCaller) -> Reply {
    Ok(HttpResponse::Ok().json(json!({"items": variables::list(&state.tenant_db, &caller).await?})))
}

#[utoipa::path(
    get,
    path = "/api/variables/{name}",
    tag = "variables",
    summary = "One variable (viewer+)",
    params(("name" = String, Path, description = "the resource name")),
    responses((status = 200, description = "the variable", body = variables::Variable))
)]
async fn get_variable(state: web::Data<AppState>, caller: TenantCaller, name: web::Path<String>) -> Reply {
    Ok(HttpResponse::Ok().json(variables::get(&state.tenant_db, &caller, &name).await?))
}

#[utoipa::path(
    put,
    path = "/api/variables/{name}",
    tag = "variables",
    summary = "Create or replace a variable (editor+)",
    params(("name" = String, Path, description = "the resource name")),
    request_body = variables::VariableInput,
    responses((status = 200, description = "the variable", body = variables::Variable))
)]
async fn put_variable(
    state: web::Data<AppState>,
    caller: TenantCaller,
    name: web::Path<String>,
    body: web::Json<variables::VariableInput>,
) -> Reply {
    Ok(HttpResponse::Ok().json(variables::put(&state.tenant_db, &caller, &name, body.into_inner()).await?))
}

#[utoipa::path(
    delete,
    path = "/api/variables/{name}",
    tag = "variables",
    summary = "Delete a variable (editor+)",
    params(("name" = String, Path, description = "the resource name")),
    responses((status = 204, description = "deleted"))
)]
async fn delete_variable(state: web::Data<AppState>, caller: TenantCaller, name: web::Path<String>) -> Reply {
    variables::delete(&state.tenant_db, &caller, &name).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct StatsQuery {
    window: Option<String>,
}

/// `GET /api/stats?window=24h|7d`: the overview's figures.
#[utoipa::path(
    get,
    path = "/api/stats",
    tag = "executions",
    summary = "The tenant's executions over 24 h or 7 d (viewer+)",
    params(StatsQuery),
    responses((status = 200, description = "totals, states, percentiles and a series", body = Object))
)]
async fn execution_stats(state: web::Data<AppState>, caller: TenantCaller, query: web::Query<StatsQuery>) -> Reply {
    let window = stats::Window::parse(query.window.as_deref().unwrap_or("24h"))?;
    Ok(HttpResponse::Ok().json(stats::summary(&state.tenant_db, &caller, window).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ApplyQuery {
    /// Validate only: what would be stored, and nothing stored.
    #[serde(default)]
    dry_run: bool,
}

#[utoipa::path(
    post,
    path = "/api/apply",
    tag = "definitions",
    summary = "Validate and store a `tessera.dev/v1` file of integrations and connections, all or nothing (editor+)",
    params(ApplyQuery),
    request_body(content((String = "application/yaml"), (String = "application/json")), description = "the definition file, YAML or JSON"),
    responses((status = 200, description = r#"`{"items": [{kind, name, version, result}], "dry_run": bool}`"#, body = Object))
)]
async fn apply_definitions(
    state: web::Data<AppState>,
    caller: TenantCaller,
    query: web::Query<ApplyQuery>,
    body: DefinitionText,
) -> Reply {
    let mode = if query.dry_run { apply::Mode::DryRun } else { apply::Mode::Store };
    let applied = apply::apply(&state.tenant_db, &state.sealing, &state.changes, &caller, &body.0, mode).await?;
    Ok(HttpResponse::Ok().json(json!({"items": applied, "dry_run": query.dry_run})))
}

/// `GET /api/schema`: the JSON Schema of definition files, for editors.
#[utoipa::path(
    get,
    path = "/api/schema",
    tag = "definitions",
    summary = "The JSON Schema of definition files (any role)",
    responses((status = 200, description = "a JSON Schema", body = Object))
)]
async fn schema(_caller: TenantCaller) -> HttpResponse {
    HttpResponse::Ok().json(tessera_runtime::definition::json_schema())
}

#[utoipa::path(
    get,
    path = "/api/integrations",
    tag = "integrations",
    summary = "The tenant's integrations with their last run (viewer+)",
    responses((status = 200, description = r#"`{"items": [...]}`"#, body = Object))
)]
async fn list_integrations(state: web::Data<AppState>, caller: TenantCaller) -> Reply {
    Ok(HttpResponse::Ok().json(json!({"items": integrations::list(&state.tenant_db, &caller).await?})))
}

#[utoipa::path(
    get,
    path = "/api/integrations/{name}",
    tag = "integrations",
    summary = "One integration with its current definition (viewer+)",
    params(("name" = String, Path, description = "the resource name")),
    responses((status = 200, description = "the integration", body = Object))
)]
async fn get_integration(state: web::Data<AppState>, caller: TenantCaller, name: web::Path<String>) -> Reply {
    Ok(HttpResponse::Ok().json(integrations::get(&state.tenant_db, &caller, &name).await?))
}

#[utoipa::path(
    delete,
    path = "/api/integrations/{name}",
    tag = "integrations",
    summary = "Delete an integration and its versions (editor+)",
    params(("name" = String, Path, description = "the resource name")),
    responses((status = 204, description = "deleted"))
)]
async fn delete_integration(state: web::Data<AppState>, caller: TenantCaller, name: web::Path<String>) -> Reply {
    integrations::delete(&state.tenant_db, &state.changes, &caller, &name).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    get,
    path = "/api/integrations/{name}/versions",
    tag = "integrations",
    summary = "Every version of an integration (viewer+)",
    params(("name" = String, Path, description = "the resource name")),
    responses((status = 200, description = r#"`{"items": [...]}`"#, body = Object))
)]
async fn list_versions(state: web::Data<AppState>, caller: TenantCaller, name: web::Path<String>) -> Reply {
    Ok(HttpResponse::Ok().json(json!({"items": integrations::versions(&state.tenant_db, &caller, &name).await?})))
}

#[utoipa::path(
    get,
    path = "/api/integrations/{name}/versions/{version}",
    tag = "integrations",
    summary = "One version of an integration (viewer+)",
    params(("name" = String, Path, description = "the resource name"), ("version" = i32, Path, description = "the version number")),
    responses((status = 200, description = "the version with its definition", body = Object))
)]
async fn get_version(state: web::Data<AppState>, caller: TenantCaller, path: web::Path<(String, i32)>) -> Reply {
    let (name, version) = path.into_inner();
    Ok(HttpResponse::Ok().json(integrations::version(&state.tenant_db, &caller, &name, version).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RollbackRequest {
    version: i32,
}

#[utoipa::path(
    post,
    path = "/api/integrations/{name}/rollback",
    tag = "integrations",
    summary = "Make an older version current again, as a new version (editor+)",
    params(("name" = String, Path, description = "the resource name")),
    request_body = RollbackRequest,
    responses((status = 200, description = "the integration as it now is", body = Object))
)]
async fn rollback_integration(
    state: web::Data<AppState>,
    caller: TenantCaller,
    name: web::Path<String>,
    body: web::Json<RollbackRequest>,
) -> Reply {
    let current = integrations::rollback(&state.tenant_db, &state.changes, &caller, &name, body.version).await?;
    Ok(HttpResponse::Ok().json(current))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct RunQuery {
    /// Answer with the final execution (up to `executions::MAX_WAIT`) instead of 202.
    #[serde(default)]
    wait: bool,
}

/// `POST /api/integrations/{name}/run`: 202 once the run is committed, or
/// 200 with the final execution when `?wait=true` (202 if it is still
/// unfinished when the wait runs out).
#[utoipa::path(
    post,
    path = "/api/integrations/{name}/run",
    tag = "executions",
    summary = "Run an integration now, the body as its trigger payload (editor+)",
    params(("name" = String, Path, description = "the resource name"), RunQuery, ("Idempotency-Key" = Option<String>, Header, description = "a repeat with the same key answers with the first execution")),
    request_body(content((Object = "application/json")), description = "the trigger payload (optional)"),
    responses((status = 202, description = "committed: `{id, state, replayed}`", body = Object), (status = 200, description = "with `?wait=true`: the finished execution", body = Object))
)]
async fn run_integration(
    state: web::Data<AppState>,
    caller: TenantCaller,
    name: web::Path<String>,
    query: web::Query<RunQuery>,
    key: IdempotencyHeader,
    body: TriggerBody,
) -> Reply {
    let started = executions::run(&state.tenant_db, &state.intake, &caller, &name, body.0, key.0.as_ref()).await?;
    let replayed = started.replayed;
    if !query.wait {
        let mut answer = HttpResponse::Accepted();
        IdempotencyHeader::mark(&mut answer, replayed);
        return Ok(answer.json(json!({"id": started.id, "state": started.state, "replayed": replayed})));
    }
    let execution = executions::wait_for_end(&state.tenant_db, &state.endings, &caller.tenant, started.id, executions::MAX_WAIT).await?;
    let mut answer = if execution.is_final() { HttpResponse::Ok() } else { HttpResponse::Accepted() };
    IdempotencyHeader::mark(&mut answer, replayed);
    Ok(answer.json(execution))
}

#[utoipa::path(
    get,
    path = "/api/executions",
    tag = "executions",
    summary = "Executions, newest first, filtered and paged (viewer+)",
    params(executions::ExecutionFilter),
    responses((status = 200, description = r#"`{"items": [...], "next_cursor": id or null}`"#, body = Object))
)]
async fn list_executions(state: web::Data<AppState>, caller: TenantCaller, filter: web::Query<executions::ExecutionFilter>) -> Reply {
    Ok(HttpResponse::Ok().json(executions::list(&state.tenant_db, &caller, filter.into_inner()).await?))
}

#[utoipa::path(
    get,
    path = "/api/executions/{id}",
    tag = "executions",
    summary = "One execution with its steps (viewer+)",
    params(("id" = String, Path, description = "the id")),
    responses((status = 200, description = "the execution", body = Object))
)]
async fn get_execution(state: web::Data<AppState>, caller: TenantCaller, id: web::Path<String>) -> Reply {
    Ok(HttpResponse::Ok().json(executions::get(&state.tenant_db, &caller, &id).await?))
}

/// `POST /api/executions/{id}/cancel`: the execution as it is after the cancel.
#[utoipa::path(
    post,
    path = "/api/executions/{id}/cancel",
    tag = "executions",
    summary = "Cancel a queued or running execution (editor+)",
    params(("id" = String, Path, description = "the id")),
    responses((status = 200, description = "the execution after the cancel", body = Object))
)]
async fn cancel_execution(state: web::Data<AppState>, caller: TenantCaller, id: web::Path<String>) -> Reply {
    Ok(HttpResponse::Ok().json(execution_controls::cancel(&state.tenant_db, &state.endings, &state.supervisor, &caller, &id).await?))
}

/// `POST /api/executions/{id}/retry`: the failed execution, queued again.
#[utoipa::path(
    post,
    path = "/api/executions/{id}/retry",
    tag = "executions",
    summary = "Run a failed execution again from the step that failed (editor+)",
    params(("id" = String, Path, description = "the id")),
    responses((status = 200, description = "the execution, queued again", body = Object))
)]
async fn retry_execution(state: web::Data<AppState>, caller: TenantCaller, id: web::Path<String>) -> Reply {
    Ok(HttpResponse::Ok().json(execution_controls::retry(&state.tenant_db, &state.supervisor, &caller, &id).await?))
}

#[utoipa::path(
    get,
    path = "/api/connections",
    tag = "connections",
    summary = "The tenant's connections, never their secrets (viewer+)",
    responses((status = 200, description = r#"`{"items": [...]}`"#, body = Object))
)]
async fn list_connections(state: web::Data<AppState>, caller: TenantCaller) -> Reply {
    Ok(HttpResponse::Ok().json(json!({"items": connections::list(&state.tenant_db, &caller).await?})))
}

#[utoipa::path(
    get,
    path = "/api/connections/{name}",
    tag = "connections",
    summary = "One connection and the settings of its kind that are not secret (viewer+)",
    params(("name" = String, Path, description = "the resource name")),
    responses((status = 200, description = "the connection", body = Object))
)]
async fn get_connection(state: web::Data<AppState>, caller: TenantCaller, name: web::Path<String>) -> Reply {
    Ok(HttpResponse::Ok().json(connections::get(&state.tenant_db, &state.sealing, &caller, &name).await?))
}

#[utoipa::path(
    delete,
    path = "/api/connections/{name}",
    tag = "connections",
    summary = "Delete a connection (editor+)",
    params(("name" = String, Path, description = "the resource name")),
    responses((status = 204, description = "deleted"))
)]
async fn delete_connection(state: web::Data<AppState>, caller: TenantCaller, name: web::Path<String>) -> Reply {
    connections::delete(&state.tenant_db, &state.changes, &caller, &name).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /api/connections/{name}/test`: try the connection for real.
#[utoipa::path(
    post,
    path = "/api/connections/{name}/test",
    tag = "connections",
    summary = "Try a connection for real (editor+)",
    params(("name" = String, Path, description = "the resource name")),
    responses((status = 200, description = "`{ok, detail}`", body = Object))
)]
async fn test_connection(state: web::Data<AppState>, caller: TenantCaller, name: web::Path<String>) -> Reply {
    let result = connection_test::test(&state.tenant_db, &state.sealing, &state.egress, &caller, &name).await?;
    Ok(HttpResponse::Ok().json(result))
}

/// `GET /api/audit`: the tenant's audit trail, newest first, filtered and paged.
#[utoipa::path(
    get,
    path = "/api/audit",
    tag = "audit",
    summary = "The tenant's audit trail, newest first (admin+)",
    params(AuditFilter),
    responses((status = 200, description = "a page of records", body = crate::audit::AuditPage))
)]
async fn list_audit(state: web::Data<AppState>, caller: TenantCaller, filter: web::Query<AuditFilter>) -> Reply {
    Ok(HttpResponse::Ok().json(audit::list(&state.tenant_db, &caller, &filter).await?))
}

/// `GET /api/audit/export`: every matching record, oldest first, one JSON per line.
#[utoipa::path(
    get,
    path = "/api/audit/export",
    tag = "audit",
    summary = "Every matching record, oldest first, as JSON lines (admin+)",
    params(AuditFilter),
    responses((status = 200, description = "one record per line", content_type = "application/x-ndjson", body = String))
)]
async fn export_audit(state: web::Data<AppState>, caller: TenantCaller, filter: web::Query<AuditFilter>) -> Reply {
    Ok(ndjson(&audit::export(&state.tenant_db, &caller, filter.into_inner()).await?, caller.tenant.slug.as_str()))
}

/// `GET /api/audit/verify`: walk the chain and say whether it is intact.
#[utoipa::path(
    get,
    path = "/api/audit/verify",
    tag = "audit",
    summary = "Check the audit trail's HMAC chain (admin+)",
    responses((status = 200, description = "what the check found", body = crate::audit::Verification))
)]
async fn verify_audit(state: web::Data<AppState>, caller: TenantCaller) -> Reply {
    Ok(HttpResponse::Ok().json(audit::verify(&state.tenant_db, &caller).await?))
}

#[utoipa::path(
    get,
    path = "/api/plans",
    tag = "api management",
    summary = "The plans the tenant's API consumers are on (admin+)",
    responses((status = 200, description = r#"`{"items": [Plan]}`"#, body = Object))
)]
async fn list_plans(state: web::Data<AppState>, caller: TenantCaller) -> Reply {
    Ok(HttpResponse::Ok().json(json!({"items": plans::list(&state.tenant_db, &caller).await?})))
}

#[utoipa::path(
    get,
    path = "/api/plans/{name}",
    tag = "api management",
    summary = "One plan (admin+)",
    params(("name" = String, Path, description = "the plan")),
    responses((status = 200, description = "the plan", body = plans::Plan))
)]
async fn get_plan(state: web::Data<AppState>, caller: TenantCaller, name: web::Path<String>) -> Reply {
    Ok(HttpResponse::Ok().json(plans::get(&state.tenant_db, &caller, &name).await?))
}

#[utoipa::path(
    put,
    path = "/api/plans/{name}",
    tag = "api management",
    summary = "Create or replace a plan: a rate (token bucket) and an optional quota per day or month (admin+)",
    params(("name" = String, Path, description = "the plan")),
    request_body = plans::PlanInput,
    responses((status = 200, description = "the plan", body = plans::Plan))
)]
async fn put_plan(state: web::Data<AppState>, caller: TenantCaller, name: web::Path<String>, body: web::Json<plans::PlanInput>) -> Reply {
    Ok(HttpResponse::Ok().json(plans::put(&state.tenant_db, &caller, &name, body.into_inner()).await?))
}

#[utoipa::path(
    delete,
    path = "/api/plans/{name}",
    tag = "api management",
    summary = "Delete a plan no consumer is on (admin+)",
    params(("name" = String, Path, description = "the plan")),
    responses((status = 204, description = "deleted"))
)]
async fn delete_plan(state: web::Data<AppState>, caller: TenantCaller, name: web::Path<String>) -> Reply {
    plans::delete(&state.tenant_db, &caller, &name).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    get,
    path = "/api/consumers",
    tag = "api management",
    summary = "The tenant's API consumers with their keys, never a secret (admin+)",
    responses((status = 200, description = r#"`{"items": [Consumer]}`"#, body = Object))
)]
async fn list_consumers(state: web::Data<AppState>, caller: TenantCaller) -> Reply {
    Ok(HttpResponse::Ok().json(json!({"items": consumers::list(&state.tenant_db, &caller).await?})))
}

#[utoipa::path(
    post,
    path = "/api/consumers",
    tag = "api management",
    summary = "Add a consumer on a plan (admin+)",
    request_body = consumers::NewConsumer,
    responses((status = 201, description = "the consumer", body = consumers::Consumer))
)]
async fn create_consumer(state: web::Data<AppState>, caller: TenantCaller, body: web::Json<consumers::NewConsumer>) -> Reply {
    Ok(HttpResponse::Created().json(consumers::create(&state.tenant_db, &caller, body.into_inner()).await?))
}

#[utoipa::path(
    get,
    path = "/api/consumers/{id}",
    tag = "api management",
    summary = "One consumer with its keys (admin+)",
    params(("id" = String, Path, description = "the consumer's id")),
    responses((status = 200, description = "the consumer", body = consumers::Consumer))
)]
async fn get_consumer(state: web::Data<AppState>, caller: TenantCaller, id: web::Path<String>) -> Reply {
    Ok(HttpResponse::Ok().json(consumers::get(&state.tenant_db, &caller, &id).await?))
}

#[utoipa::path(
    patch,
    path = "/api/consumers/{id}",
    tag = "api management",
    summary = "Move a consumer to another plan, or change its description (admin+)",
    params(("id" = String, Path, description = "the consumer's id")),
    request_body = consumers::ConsumerChanges,
    responses((status = 200, description = "the consumer", body = consumers::Consumer))
)]
async fn update_consumer(state: web::Data<AppState>, caller: TenantCaller, id: web::Path<String>, body: web::Json<consumers::ConsumerChanges>) -> Reply {
    Ok(HttpResponse::Ok().json(consumers::update(&state.tenant_db, &caller, &id, body.into_inner()).await?))
}

#[utoipa::path(
    delete,
    path = "/api/consumers/{id}",
    tag = "api management",
    summary = "Delete a consumer and its keys (admin+)",
    params(("id" = String, Path, description = "the consumer's id")),
    responses((status = 204, description = "deleted"))
)]
async fn delete_consumer(state: web::Data<AppState>, caller: TenantCaller, id: web::Path<String>) -> Reply {
    consumers::delete(&state.tenant_db, &caller, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    post,
    path = "/api/consumers/{id}/keys",
    tag = "api management",
    summary = "A new key for a consumer; its secret is in this answer only (admin+)",
    params(("id" = String, Path, description = "the consumer's id")),
    responses((status = 201, description = "the key and its secret", body = consumers::CreatedConsumerKey))
)]
async fn create_consumer_key(state: web::Data<AppState>, caller: TenantCaller, id: web::Path<String>) -> Reply {
    Ok(HttpResponse::Created().json(consumers::create_key(&state.tenant_db, &caller, &id).await?))
}

#[utoipa::path(
    delete,
    path = "/api/consumers/{id}/keys/{key}",
    tag = "api management",
    summary = "Revoke a consumer's key: its next call fails, on every node (admin+)",
    params(("id" = String, Path, description = "the consumer's id"), ("key" = String, Path, description = "the key's id")),
    responses((status = 200, description = "the revoked key", body = consumers::ConsumerKey))
)]
async fn revoke_consumer_key(state: web::Data<AppState>, caller: TenantCaller, path: web::Path<(String, String)>) -> Reply {
    let (id, key) = path.into_inner();
    Ok(HttpResponse::Ok().json(consumers::revoke_key(&state.tenant_db, &caller, &id, &key).await?))
}

#[utoipa::path(
    get,
    path = "/api/apis",
    tag = "api management",
    summary = "The tenant's managed APIs (viewer+)",
    responses((status = 200, description = r#"`{"items": [ApiInfo]}`"#, body = Object))
)]
async fn list_apis(state: web::Data<AppState>, caller: TenantCaller) -> Reply {
    Ok(HttpResponse::Ok().json(json!({"items": apis::list(&state.tenant_db, &caller).await?})))
}

#[utoipa::path(
    get,
    path = "/api/apis/{name}",
    tag = "api management",
    summary = "One managed API with its definition (viewer+)",
    params(("name" = String, Path, description = "the API")),
    responses((status = 200, description = "the API", body = apis::ApiInfo))
)]
async fn get_api(state: web::Data<AppState>, caller: TenantCaller, name: web::Path<String>) -> Reply {
    Ok(HttpResponse::Ok().json(apis::get(&state.tenant_db, &caller, &name).await?))
}

#[utoipa::path(
    delete,
    path = "/api/apis/{name}",
    tag = "api management",
    summary = "Stop serving a managed API (editor+)",
    params(("name" = String, Path, description = "the API")),
    responses((status = 204, description = "deleted"))
)]
async fn delete_api(state: web::Data<AppState>, caller: TenantCaller, name: web::Path<String>) -> Reply {
    apis::delete(&state.tenant_db, &state.changes, &caller, &name).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    get,
    path = "/api/apis/{name}/openapi.json",
    tag = "api management",
    summary = "A managed API's OpenAPI 3.1 document, as its callers get it at /apis/<base path>/<version>/openapi.json (viewer+)",
    params(("name" = String, Path, description = "the API")),
    responses((status = 200, description = "the document", body = Object))
)]
async fn api_document(state: web::Data<AppState>, caller: TenantCaller, name: web::Path<String>) -> Reply {
    Ok(HttpResponse::Ok().json(apis::document(&state.tenant_db, &caller, &name).await?))
}

#[utoipa::path(
    get,
    path = "/api/apis/{name}/analytics",
    tag = "api management",
    summary = "A managed API's calls, errors and p50/p99 latency over time, per route and per consumer (viewer+)",
    params(("name" = String, Path, description = "the API"), StatsQuery),
    responses((status = 200, description = "the report", body = crate::analytics::Report))
)]
async fn api_analytics(state: web::Data<AppState>, caller: TenantCaller, name: web::Path<String>, query: web::Query<StatsQuery>) -> Reply {
    let window = stats::Window::parse(query.window.as_deref().unwrap_or("24h"))?;
    Ok(HttpResponse::Ok().json(apis::analytics(&state.tenant_db, &caller, &name, window).await?))
}
