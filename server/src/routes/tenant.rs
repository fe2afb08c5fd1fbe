//! The tenant API (on `<slug>.<base_domain>`).

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::{
    auth::TenantCaller,
    error::ApiError,
    resources::{api_keys, users, variables},
    startup::AppState,
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
        .route("/variables/{name}", web::delete().to(delete_variable));
}

/// `GET /api/me`: the caller's tenant, identity and role.
pub async fn me(caller: TenantCaller) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "tenant": {"id": caller.tenant.id, "slug": caller.tenant.slug.as_str(), "name": caller.tenant.name},
        "principal": caller.principal,
        "role": caller.role,
    }))
}

async fn list_users(state: web::Data<AppState>, caller: TenantCaller) -> Reply {
    Ok(HttpResponse::Ok().json(json!({"items": users::list(&state.tenant_db, &caller).await?})))
}

async fn create_user(state: web::Data<AppState>, caller: TenantCaller, body: web::Json<users::NewUser>) -> Reply {
    let user = users::create(&state.tenant_db, &state.auth.passwords, &caller, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(user))
}

async fn get_user(state: web::Data<AppState>, caller: TenantCaller, id: web::Path<String>) -> Reply {
    Ok(HttpResponse::Ok().json(users::get(&state.tenant_db, &caller, &id).await?))
}

async fn update_user(
    state: web::Data<AppState>,
    caller: TenantCaller,
    id: web::Path<String>,
    body: web::Json<users::UserChanges>,
) -> Reply {
    let user = users::update(&state.tenant_db, &state.auth.passwords, &caller, &id, body.into_inner()).await?;
    // Other nodes hear of it through NOTIFY; this one forgets at once.
    state.auth.standing.invalidate(caller.tenant.id, user.id);
    Ok(HttpResponse::Ok().json(user))
}

async fn delete_user(state: web::Data<AppState>, caller: TenantCaller, id: web::Path<String>) -> Reply {
    let deleted = users::delete(&state.tenant_db, &caller, &id).await?;
    state.auth.standing.invalidate(caller.tenant.id, deleted);
    Ok(HttpResponse::NoContent().finish())
}

async fn list_keys(state: web::Data<AppState>, caller: TenantCaller) -> Reply {
    Ok(HttpResponse::Ok().json(json!({"items": api_keys::list(&state.tenant_db, &caller).await?})))
}

async fn create_key(state: web::Data<AppState>, caller: TenantCaller, body: web::Json<api_keys::NewApiKey>) -> Reply {
    Ok(HttpResponse::Created().json(api_keys::create(&state.tenant_db, &caller, body.into_inner()).await?))
}

async fn revoke_key(state: web::Data<AppState>, caller: TenantCaller, id: web::Path<String>) -> Reply {
    Ok(HttpResponse::Ok().json(api_keys::revoke(&state.tenant_db, &caller, &id).await?))
}

async fn list_variables(state: web::Data<AppState>, caller: TenantCaller) -> Reply {
    Ok(HttpResponse::Ok().json(json!({"items": variables::list(&state.tenant_db, &caller).await?})))
}

async fn get_variable(state: web::Data<AppState>, caller: TenantCaller, name: web::Path<String>) -> Reply {
    Ok(HttpResponse::Ok().json(variables::get(&state.tenant_db, &caller, &name).await?))
}

async fn put_variable(
    state: web::Data<AppState>,
    caller: TenantCaller,
    name: web::Path<String>,
    body: web::Json<variables::VariableInput>,
) -> Reply {
    Ok(HttpResponse::Ok().json(variables::put(&state.tenant_db, &caller, &name, body.into_inner()).await?))
}

async fn delete_variable(state: web::Data<AppState>, caller: TenantCaller, name: web::Path<String>) -> Reply {
    variables::delete(&state.tenant_db, &caller, &name).await?;
    Ok(HttpResponse::NoContent().finish())
}
