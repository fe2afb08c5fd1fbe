//! `/apis/<base path>/<version>/<route>` on a tenant's host: a call of one
//! of its managed APIs, handed whole to `gateway`, which decides the rest.

use actix_web::{
    http::{header, Method, StatusCode},
    web, HttpRequest, HttpResponse,
};
use tessera_runtime::definition::HttpMethod;

use super::webhook::WebhookDelivery;
use crate::{
    auth::TenantHost,
    error::ApiError,
    gateway::{AnswerBody, ApiRequest, Gateway, GatewayError},
    state::AppState,
};

pub async fn call(state: web::Data<AppState>, host: TenantHost, req: HttpRequest, tail: web::Path<String>, delivery: WebhookDelivery) -> Result<HttpResponse, ApiError> {
    let mut segments = tail.splitn(3, '/');
    let (base_path, version) = (segments.next().unwrap_or_default().to_string(), segments.next().unwrap_or_default().to_string());
    let path = format!("/{}", segments.next().unwrap_or_default());
    let Some(method) = method_of(req.method()) else {
        return Err(ApiError::from(GatewayError::MethodNotAllowed { path, method: req.method().to_string() }));
    };
    let delivery = delivery.into_inner();
    let request = ApiRequest { method, base_path, version, path, query: delivery.query, headers: delivery.headers, body: delivery.body };
    let gateway = Gateway { db: &state.tenant_db, intake: &state.intake, endings: &state.endings, analytics: &state.analytics, outbound: &state.outbound, hot: &state.hot, engine: &state.engine };
    let answer = gateway.call(&host.0, request).await?;
    let mut response = HttpResponse::build(StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY));
    for (name, value) in answer.passed {
        response.insert_header((name, value));
    }
    for (name, value) in answer.headers {
        response.append_header((name, value));
    }
    Ok(match answer.body {
        AnswerBody::Json(body) => response.json(body),
        AnswerBody::Raw { content_type, bytes } => {
            if content_type.is_none() {
                response.insert_header((header::CONTENT_TYPE, "application/octet-stream"));
            }
            response.body(bytes)
        }
        AnswerBody::Empty => response.finish(),
    })
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
