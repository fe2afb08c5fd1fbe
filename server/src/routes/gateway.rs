//! `/apis/<base path>/<version>/<route>` on a tenant's host: a call of one
//! of its managed APIs, handed whole to `gateway`, which decides the rest.

use actix_web::{http::Method, web, HttpRequest, HttpResponse};
use tessera_runtime::definition::HttpMethod;

use super::webhook::WebhookDelivery;
use crate::{
    auth::TenantHost,
    error::ApiError,
    gateway::{ApiRequest, Gateway, GatewayError},
    state::AppState,
};

pub async fn call(state: web::Data<AppState>, host: TenantHost, req: HttpRequest, tail: web::Path<String>, delivery: WebhookDelivery) -> Result<HttpResponse, ApiError> {
    let mut segments = tail.splitn(3, '/');
    let (base_path, version) = (segments.next().unwrap_or_default().to_string(), segments.next().unwrap_or_default().to_string());
    let path = format!("/{}", segments.next().unwrap_or_default());
    let Some(method) = method_of(req.method()) else {
        return Err(GatewayError::MethodNotAllowed { path, method: req.method().to_string() }.into());
    };
    let delivery = delivery.into_inner();
    let request = ApiRequest { method, base_path, version, path, query: delivery.query, headers: delivery.headers, body: delivery.body };
    let gateway = Gateway { db: &state.tenant_db, intake: &state.intake, endings: &state.endings, analytics: &state.analytics };
    let answer = gateway.call(&host.0, request).await?;
    let mut response = HttpResponse::Ok();
    for (name, value) in answer.headers {
        response.insert_header((name, value));
    }
    Ok(response.json(answer.body))
}

fn method_of(method: &Method) -> Option<HttpMethod> {
    Some(match *method {
        Method::GET => HttpMethod::Get,
        Method::POST => HttpMethod::Post,
        Method::PUT => HttpMethod::Put,
        Method::PATCH => HttpMethod::Patch,
        Method::DELETE => HttpMethod::Delete,
        Method::HEAD => HttpMethod::Head,
        Method::OPTIONS => HttpMethod::Options,
        _ => return None,
    })
}
