//! The platform-owner API (on the bare base domain).

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::audit_export::ndjson;
use crate::{
    audit::{AuditFilter, Scope},
    auth::PlatformCaller,
    cluster,
    egress::{self, Action},
    error::ApiError,
    provisioning::{
        clusters::{self, NewCluster},
        domains,
        NewTenant,
    },
    resources::stats,
    state::AppState,
    tenancy::{TenantSlug, TenantStatus},
};

type Reply = Result<HttpResponse, ApiError>;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/platform/tenants", web::get().to(list))
        .route("/platform/tenants", web::post().to(create))
        .route("/platform/tenants/{slug}", web::get().to(get))
        .route("/platform/tenants/{slug}", web::delete().to(delete))
        .route("/platform/tenants/{slug}/suspend", web::post().to(suspend))
        .route("/platform/tenants/{slug}/resume", web::post().to(resume))
        .route("/platform/tenants/{slug}/move", web::post().to(move_tenant))
        .route("/platform/tenants/{slug}/domains", web::get().to(domains_list))
        .route("/platform/tenants/{slug}/domains", web::post().to(domains_add))
        .route("/platform/tenants/{slug}/domains/{domain}/verify", web::post().to(domains_verify))
        .route("/platform/tenants/{slug}/domains/{domain}", web::delete().to(domains_remove))
        .route("/platform/tenants/{slug}/stats", web::get().to(tenant_stats))
        .route("/platform/tenants/{slug}/limits", web::get().to(limits))
        .route("/platform/tenants/{slug}/limits", web::patch().to(set_limits))
        .route("/platform/tenants/{slug}/egress", web::get().to(egress_show))
        .route("/platform/tenants/{slug}/egress/{action}", web::post().to(egress_add))
        .route("/platform/tenants/{slug}/egress/{action}", web::delete().to(egress_remove))
        .route("/platform/clusters", web::get().to(clusters_list))
        .route("/platform/clusters", web::post().to(clusters_create))
        .route("/platform/clusters/{id}", web::get().to(clusters_show))
        .route("/platform/clusters/{id}/drain", web::post().to(clusters_drain))
        .route("/platform/clusters/{id}/activate", web::post().to(clusters_activate))
        .route("/platform/node", web::get().to(node))
        .route("/platform/cluster", web::get().to(cluster))
        .route("/platform/nodes/{id}/drain", web::post().to(drain))
        .route("/platform/audit", web::get().to(audit_list))
        .route("/platform/audit/export", web::get().to(audit_export))
        .route("/platform/audit/verify", web::get().to(audit_verify));
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateTenant {
    slug: String,
    name: Option<String>,
    owner_email: String,
    owner_password: Option<String>,
    cluster: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateCluster {
    id: String,
    name: Option<String>,
    kind: Option<String>,
    partner: Option<String>,
    database_url: Option<String>,
    amqp_url: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct MoveTenant {
    to: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AddDomain {
    domain: String,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct DeleteQuery {
    confirm: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/platform/tenants",
    tag = "platform: tenants",
    summary = "Every tenant",
    responses((status = 200, description = r#"`{"items": [Tenant]}`"#, body = Object))
)]
async fn list(state: web::Data<AppState>, _caller: PlatformCaller) -> Reply {
    Ok(HttpResponse::Ok().json(json!({"items": state.provisioner.list().await?})))
}

#[utoipa::path(
    post,
    path = "/api/platform/tenants",
    tag = "platform: tenants",
    summary = "Create a tenant: its schema and first owner, all or nothing",
    request_body = CreateTenant,
    responses((status = 201, description = "the tenant, and the owner's password if it was generated", body = Object))
)]
async fn create(state: web::Data<AppState>, caller: PlatformCaller, body: web::Json<CreateTenant>) -> Reply {
    let b = body.into_inner();
    let created = state
        .platform
        .create_tenant(&caller.actor(), NewTenant {
            slug: b.slug,
            name: b.name,
            owner_email: b.owner_email,
            owner_password: b.owner_password,
            cluster: b.cluster,
        })
        .await?;
    Ok(HttpResponse::Created().json(created))
}

#[utoipa::path(
    get,
    path = "/api/platform/tenants/{slug}",
    tag = "platform: tenants",
    summary = "One tenant",
    params(("slug" = String, Path, description = "the tenant's slug")),
    responses((status = 200, description = "the tenant", body = Object))
)]
async fn get(state: web::Data<AppState>, _caller: PlatformCaller, slug: web::Path<String>) -> Reply {
    Ok(HttpResponse::Ok().json(state.provisioner.get(&slug).await?))
}

async fn set_status(state: &AppState, caller: &PlatformCaller, slug: &str, status: TenantStatus) -> Reply {
    let tenant = state.platform.set_status(&caller.actor(), slug, status).await?;
    Ok(HttpResponse::Ok().json(tenant))
}

#[utoipa::path(
    post,
    path = "/api/platform/tenants/{slug}/suspend",
    tag = "platform: tenants",
    summary = "Suspend a tenant",
    params(("slug" = String, Path, description = "the tenant's slug")),
    responses((status = 200, description = "the tenant", body = Object))
)]
async fn suspend(state: web::Data<AppState>, caller: PlatformCaller, slug: web::Path<String>) -> Reply {
    set_status(&state, &caller, &slug, TenantStatus::Suspended).await
}

#[utoipa::path(
    post,
    path = "/api/platform/tenants/{slug}/resume",
    tag = "platform: tenants",
    summary = "Resume a suspended tenant",
    params(("slug" = String, Path, description = "the tenant's slug")),
    responses((status = 200, description = "the tenant", body = Object))
)]
async fn resume(state: web::Data<AppState>, caller: PlatformCaller, slug: web::Path<String>) -> Reply {
    set_status(&state, &caller, &slug, TenantStatus::Active).await
}

/// `POST /api/platform/tenants/{slug}/move {"to": cluster}`: answered once
/// the tenant is served by the target (or, having failed, still by the source).
#[utoipa::path(
    post,
    path = "/api/platform/tenants/{slug}/move",
    tag = "platform: tenants",
    summary = "Move a tenant to another cluster, under load",
    params(("slug" = String, Path, description = "the tenant's slug")),
    request_body = MoveTenant,
    responses((status = 200, description = "the move's report", body = Object))
)]
async fn move_tenant(state: web::Data<AppState>, caller: PlatformCaller, slug: web::Path<String>, body: web::Json<MoveTenant>) -> Reply {
    Ok(HttpResponse::Ok().json(state.platform.move_tenant(&caller.actor(), &slug, &body.to).await?))
}

#[utoipa::path(
    get,
    path = "/api/platform/tenants/{slug}/domains",
    tag = "platform: domains",
    summary = "A tenant's custom domains",
    params(("slug" = String, Path, description = "the tenant's slug")),
    responses((status = 200, description = r#"`{"items": [...]}`"#, body = Object))
)]
async fn domains_list(state: web::Data<AppState>, _caller: PlatformCaller, slug: web::Path<String>) -> Reply {
    Ok(HttpResponse::Ok().json(json!({"items": domains::list(&state.platform.pool, &slug).await?})))
}

/// Answers the TXT record that proves the tenant controls the domain.
#[utoipa::path(
    post,
    path = "/api/platform/tenants/{slug}/domains",
    tag = "platform: domains",
    summary = "Add a custom domain; answers the TXT record that proves ownership",
    params(("slug" = String, Path, description = "the tenant's slug")),
    request_body = AddDomain,
    responses((status = 201, description = "the domain", body = Object))
)]
async fn domains_add(state: web::Data<AppState>, caller: PlatformCaller, slug: web::Path<String>, body: web::Json<AddDomain>) -> Reply {
    let added = state.platform.add_domain(&caller.actor(), &state.config.base_domain, &slug, &body.domain).await?;
    Ok(HttpResponse::Created().json(added))
}

#[utoipa::path(
    post,
    path = "/api/platform/tenants/{slug}/domains/{domain}/verify",
    tag = "platform: domains",
    summary = "Look the TXT record up; the domain routes once found",
    params(("slug" = String, Path, description = "the tenant's slug"), ("domain" = String, Path, description = "the domain")),
    responses((status = 200, description = "the domain", body = Object))
)]
async fn domains_verify(state: web::Data<AppState>, caller: PlatformCaller, path: web::Path<(String, String)>) -> Reply {
    let (slug, domain) = path.into_inner();
    let servers = &state.config.provisioning.dns_servers;
    Ok(HttpResponse::Ok().json(state.platform.verify_domain(&caller.actor(), servers, &slug, &domain).await?))
}

#[utoipa::path(
    delete,
    path = "/api/platform/tenants/{slug}/domains/{domain}",
    tag = "platform: domains",
    summary = "Stop serving a tenant on a domain",
    params(("slug" = String, Path, description = "the tenant's slug"), ("domain" = String, Path, description = "the domain")),
    responses((status = 204, description = "removed"))
)]
async fn domains_remove(state: web::Data<AppState>, caller: PlatformCaller, path: web::Path<(String, String)>) -> Reply {
    let (slug, domain) = path.into_inner();
    state.platform.remove_domain(&caller.actor(), &slug, &domain).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `DELETE /api/platform/tenants/{slug}?confirm={slug}`: export, then drop.
#[utoipa::path(
    delete,
    path = "/api/platform/tenants/{slug}",
    tag = "platform: tenants",
    summary = "Export a tenant's schema, then drop it",
    params(("slug" = String, Path, description = "the tenant's slug"), DeleteQuery),
    responses((status = 200, description = "`{slug, export_path}`", body = Object))
)]
async fn delete(
    state: web::Data<AppState>,
    caller: PlatformCaller,
    slug: web::Path<String>,
    query: web::Query<DeleteQuery>,
) -> Reply {
    let confirm = query.into_inner().confirm.unwrap_or_default();
    let deleted = state.platform.delete_tenant(&caller.actor(), &slug, &confirm).await?;
    Ok(HttpResponse::Ok().json(deleted))
}

/// `GET /api/platform/tenants/{slug}/limits`: the tenant's effective
/// limits, which of them are its own, and the defaults.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct DaysQuery {
    days: Option<i32>,
}

/// `GET /api/platform/tenants/{slug}/stats?days=14`: the tenant's executions per UTC day.
#[utoipa::path(
    get,
    path = "/api/platform/tenants/{slug}/stats",
    tag = "platform: tenants",
    summary = "A tenant's executions per UTC day",
    params(("slug" = String, Path, description = "the tenant's slug"), DaysQuery),
    responses((status = 200, description = "`{tenant, days}`", body = Object))
)]
async fn tenant_stats(state: web::Data<AppState>, _caller: PlatformCaller, slug: web::Path<String>, query: web::Query<DaysQuery>) -> Reply {
    let not_found = || ApiError::not_found("tenant_not_found", format!("there is no tenant '{slug}'"));
    let parsed = TenantSlug::parse(&slug).map_err(|_| not_found())?;
    let tenant = state.directory.lookup(&parsed).await?.ok_or_else(not_found)?;
    let days = stats::daily(&state.tenant_db, &tenant, query.days.unwrap_or(14)).await?;
    Ok(HttpResponse::Ok().json(json!({"tenant": tenant.slug.as_str(), "days": days})))
}

#[utoipa::path(
    get,
    path = "/api/platform/tenants/{slug}/limits",
    tag = "platform: tenants",
    summary = "A tenant's effective limits, its own and the defaults",
    params(("slug" = String, Path, description = "the tenant's slug")),
    responses((status = 200, description = "the limits", body = Object))
)]
async fn limits(state: web::Data<AppState>, _caller: PlatformCaller, slug: web::Path<String>) -> Reply {
    Ok(HttpResponse::Ok().json(state.limits.show(&slug).await?))
}

/// `PATCH /api/platform/tenants/{slug}/limits` with `{"name": number}` to
/// set a limit and `{"name": null}` to go back to the default; applied on
/// every node without a restart.
#[utoipa::path(
    patch,
    path = "/api/platform/tenants/{slug}/limits",
    tag = "platform: tenants",
    summary = r#"Set limits (`{"name": n}`) or go back to the default (`{"name": null}`)"#,
    params(("slug" = String, Path, description = "the tenant's slug")),
    request_body(content((Object = "application/json")), description = "limit names and whole numbers, or null"),
    responses((status = 200, description = "the limits", body = Object))
)]
async fn set_limits(
    state: web::Data<AppState>,
    caller: PlatformCaller,
    slug: web::Path<String>,
    body: web::Json<serde_json::Map<String, serde_json::Value>>,
) -> Reply {
    let view = state.platform.update_limits(&caller.actor(), &slug, &body).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// `GET /api/platform/node`: this node, the tenants it runs (holds the
/// leases of) and the workers running now (those tenants' with work).
#[utoipa::path(
    get,
    path = "/api/platform/node",
    tag = "platform: nodes",
    summary = "This node, the tenants it runs and its workers",
    responses((status = 200, description = "the node", body = Object))
)]
async fn node(state: web::Data<AppState>, _caller: PlatformCaller) -> Reply {
    Ok(HttpResponse::Ok().json(json!({
        "id": state.cluster.node().id,
        "cluster": state.cluster.node().cluster,
        "address": state.cluster.node().address,
        "version": env!("CARGO_PKG_VERSION"),
        // Draining: its workers start nothing new and hand their tenants over.
        "draining": state.supervisor.is_draining(),
        "tenants": state.supervisor.held(),
        "workers": state.supervisor.status(),
        "mail": state.mail.status(),
    })))
}

/// `GET /api/platform/cluster`: the nodes of this node's cluster, their
/// health and tenants, and every tenant's lease.
#[utoipa::path(
    get,
    path = "/api/platform/cluster",
    tag = "platform: nodes",
    summary = "The nodes of this cluster, their health, tenants and leases",
    responses((status = 200, description = "the cluster's status", body = Object))
)]
async fn cluster(state: web::Data<AppState>, _caller: PlatformCaller) -> Reply {
    Ok(HttpResponse::Ok().json(state.cluster.status().await?))
}

/// `POST /api/platform/nodes/{id}/drain`: from its next heartbeat the node
/// starts no execution, hands each tenant over once its running executions
/// finish, and takes no new ones.
#[utoipa::path(
    post,
    path = "/api/platform/nodes/{id}/drain",
    tag = "platform: nodes",
    summary = "Hand a node's tenants over as their executions finish",
    params(("id" = String, Path, description = "the id")),
    responses((status = 202, description = "the cluster's status", body = Object))
)]
async fn drain(state: web::Data<AppState>, caller: PlatformCaller, id: web::Path<String>) -> Reply {
    let id = cluster::parse_node_id(&id)?;
    state.platform.drain_node(&caller.actor(), id).await?;
    Ok(HttpResponse::Accepted().json(state.cluster.status().await?))
}

/// Rules to add or remove: `{"rules": ["10.0.0.0/8", "*.acme.internal:443"]}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct EgressRules {
    rules: Vec<String>,
}

/// `GET /api/platform/tenants/{slug}/egress`: the tenant's rules and the platform policy.
#[utoipa::path(
    get,
    path = "/api/platform/tenants/{slug}/egress",
    tag = "platform: egress",
    summary = "A tenant's egress rules and the platform policy",
    params(("slug" = String, Path, description = "the tenant's slug")),
    responses((status = 200, description = "the rules", body = Object))
)]
async fn egress_show(state: web::Data<AppState>, _caller: PlatformCaller, slug: web::Path<String>) -> Reply {
    Ok(HttpResponse::Ok().json(egress::show(&state.pool, &state.config, &slug).await?))
}

/// `POST /api/platform/tenants/{slug}/egress/{allow|deny}`: add rules;
/// every node applies them at once (NOTIFY), no restart.
#[utoipa::path(
    post,
    path = "/api/platform/tenants/{slug}/egress/{action}",
    tag = "platform: egress",
    summary = "Add allow or deny rules",
    params(("slug" = String, Path, description = "the tenant's slug"), ("action" = String, Path, description = "`allow` or `deny`")),
    request_body = EgressRules,
    responses((status = 200, description = "the rules", body = Object))
)]
async fn egress_add(state: web::Data<AppState>, caller: PlatformCaller, path: web::Path<(String, String)>, body: web::Json<EgressRules>) -> Reply {
    egress_change(&state, &caller, path.into_inner(), body.into_inner(), false).await
}

/// `DELETE /api/platform/tenants/{slug}/egress/{allow|deny}`: remove rules.
#[utoipa::path(
    delete,
    path = "/api/platform/tenants/{slug}/egress/{action}",
    tag = "platform: egress",
    summary = "Remove allow or deny rules",
    params(("slug" = String, Path, description = "the tenant's slug"), ("action" = String, Path, description = "`allow` or `deny`")),
    request_body = EgressRules,
    responses((status = 200, description = "the rules", body = Object))
)]
async fn egress_remove(state: web::Data<AppState>, caller: PlatformCaller, path: web::Path<(String, String)>, body: web::Json<EgressRules>) -> Reply {
    egress_change(&state, &caller, path.into_inner(), body.into_inner(), true).await
}

async fn egress_change(state: &AppState, caller: &PlatformCaller, (slug, action): (String, String), body: EgressRules, remove: bool) -> Reply {
    let action = Action::parse(&action)?;
    state.platform.change_egress(&caller.actor(), &slug, action, &body.rules, remove).await?;
    Ok(HttpResponse::Ok().json(egress::show(&state.pool, &state.config, &slug).await?))
}

#[utoipa::path(
    get,
    path = "/api/platform/clusters",
    tag = "platform: clusters",
    summary = "Every cluster",
    responses((status = 200, description = r#"`{"items": [...]}`"#, body = Object))
)]
async fn clusters_list(state: web::Data<AppState>, _caller: PlatformCaller) -> Reply {
    Ok(HttpResponse::Ok().json(json!({"items": clusters::list(&state.pool).await?})))
}

#[utoipa::path(
    post,
    path = "/api/platform/clusters",
    tag = "platform: clusters",
    summary = "Register a cluster",
    request_body = CreateCluster,
    responses((status = 201, description = "the cluster", body = Object))
)]
async fn clusters_create(state: web::Data<AppState>, caller: PlatformCaller, body: web::Json<CreateCluster>) -> Reply {
    let b = body.into_inner();
    let new = NewCluster { id: b.id, name: b.name, kind: b.kind, partner: b.partner, database_url: b.database_url, amqp_url: b.amqp_url };
    Ok(HttpResponse::Created().json(state.platform.create_cluster(&caller.actor(), new).await?))
}

#[utoipa::path(
    get,
    path = "/api/platform/clusters/{id}",
    tag = "platform: clusters",
    summary = "One cluster with its nodes",
    params(("id" = String, Path, description = "the id")),
    responses((status = 200, description = "the cluster", body = Object))
)]
async fn clusters_show(state: web::Data<AppState>, _caller: PlatformCaller, id: web::Path<String>) -> Reply {
    let timeout = std::time::Duration::from_millis(state.config.cluster.node_timeout_ms);
    Ok(HttpResponse::Ok().json(clusters::show(&state.pool, &id, timeout).await?))
}

#[utoipa::path(
    post,
    path = "/api/platform/clusters/{id}/drain",
    tag = "platform: clusters",
    summary = "Place no new tenant on a cluster",
    params(("id" = String, Path, description = "the id")),
    responses((status = 200, description = "the cluster", body = Object))
)]
async fn clusters_drain(state: web::Data<AppState>, caller: PlatformCaller, id: web::Path<String>) -> Reply {
    Ok(HttpResponse::Ok().json(state.platform.set_cluster_state(&caller.actor(), &id, true).await?))
}

#[utoipa::path(
    post,
    path = "/api/platform/clusters/{id}/activate",
    tag = "platform: clusters",
    summary = "Place new tenants on a drained cluster again",
    params(("id" = String, Path, description = "the id")),
    responses((status = 200, description = "the cluster", body = Object))
)]
async fn clusters_activate(state: web::Data<AppState>, caller: PlatformCaller, id: web::Path<String>) -> Reply {
    Ok(HttpResponse::Ok().json(state.platform.set_cluster_state(&caller.actor(), &id, false).await?))
}

/// `GET /api/platform/audit`: the platform's audit trail, newest first.
#[utoipa::path(
    get,
    path = "/api/platform/audit",
    tag = "platform: audit",
    summary = "The platform's audit trail, newest first",
    params(AuditFilter),
    responses((status = 200, description = "a page of records", body = crate::audit::AuditPage))
)]
async fn audit_list(state: web::Data<AppState>, _caller: PlatformCaller, filter: web::Query<AuditFilter>) -> Reply {
    Ok(HttpResponse::Ok().json(state.audit.list(Scope::Platform(&state.pool), &filter).await?))
}

/// `GET /api/platform/audit/export`: every matching record, oldest first, one JSON per line.
#[utoipa::path(
    get,
    path = "/api/platform/audit/export",
    tag = "platform: audit",
    summary = "Every matching record, oldest first, as JSON lines",
    params(AuditFilter),
    responses((status = 200, description = "one record per line", content_type = "application/x-ndjson", body = String))
)]
async fn audit_export(state: web::Data<AppState>, _caller: PlatformCaller, filter: web::Query<AuditFilter>) -> Reply {
    Ok(ndjson(&state.audit.export(Scope::Platform(&state.pool), filter.into_inner()).await?, "platform"))
}

/// `GET /api/platform/audit/verify`: walk the platform's chain.
#[utoipa::path(
    get,
    path = "/api/platform/audit/verify",
    tag = "platform: audit",
    summary = "Check the platform audit trail's HMAC chain",
    responses((status = 200, description = "what the check found", body = crate::audit::Verification))
)]
async fn audit_verify(state: web::Data<AppState>, _caller: PlatformCaller) -> Reply {
    Ok(HttpResponse::Ok().json(state.audit.verify(Scope::Platform(&state.pool)).await?))
}
