//! Each managed API's OpenAPI 3.1 document, generated from its definition:
//! its routes with their parameters, request schemas and the errors the
//! gateway answers, and the auth it needs. Served at
//! `/apis/<base>/<version>/openapi.json` by the gateway (a path no route
//! may take) and at `/api/apis/{name}/openapi.json` on the tenant API. Built as JSON rather than with utoipa's types:
//! a route's request schema is the tenant's JSON Schema, kept as written.

use serde_json::{json, Map, Value};
use tessera_runtime::definition::{Api, ApiAuth, ApiRoute, HttpMethod};


/// Where an API answers with its document.
pub const PATH: &str = "/openapi.json";

pub fn document(api: &Api) -> Value {
    let mut paths = Map::new();
    for route in &api.spec.routes {
        let item = paths.entry(route.path.clone()).or_insert_with(|| json!({}));
        item[method_name(route.method).to_lowercase()] = operation(api, route);
    }
    let security = match api.spec.auth {
        ApiAuth::ApiKey => json!({"consumerKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
            "description": "A consumer's key; `Authorization: Bearer <key>` works too."}}),
        ApiAuth::Jwt => json!({"bearerJwt": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
            "description": format!("A token of {}", api.spec.jwt.as_ref().map_or("the identity provider", |j| j.issuer.as_str()))}}),
        ApiAuth::None => json!({}),
    };
    let mut info = json!({"title": api.metadata.name.as_str(), "version": api.spec.version});
    if let Some(description) = &api.metadata.description {
        info["description"] = json!(description);
    }
    let mut document = json!({
        "openapi": "3.1.0",
        "info": info,
        "servers": [{"url": format!("/apis/{}/{}", api.spec.base_path.as_str(), api.spec.version)}],
        "paths": paths,
        "components": {"schemas": {"Error": error_schema()}, "securitySchemes": security},
    });
    if let Some(scheme) = security.as_object().and_then(|s| s.keys().next()) {
        document["security"] = json!([{scheme.clone(): []}]);
    }
    document
}

fn operation(api: &Api, route: &ApiRoute) -> Value {
    let parameters: Vec<Value> = route
        .path
        .split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    let error = |description: &str| json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    let answer = match &route.forward {
        Some(_) => json!({"description": "The backend's answer"}),
        None => json!({"description": "The integration's output", "content": {"application/json": {"schema": {}}}}),
    };
    let mut responses = json!({
        "200": answer,
        "400": error("The request does not match the route's schema, or its body is not JSON"),
        "404": error("No such route"),
        "502": error("The integration or the backend failed"),
    });
    if api.spec.auth != ApiAuth::None {
        responses["401"] = error("A missing or invalid credential");
    }
    if api.spec.auth == ApiAuth::ApiKey {
        responses["429"] = error("The consumer is over its plan's rate or quota; see Retry-After and RateLimit-*");
    }
    let mut operation = json!({
        "operationId": format!("{}_{}", method_name(route.method).to_lowercase(), operation_name(&route.path)),
        "parameters": parameters,
        "responses": responses,
    });
    if let Some(integration) = &route.integration {
        operation["summary"] = json!(format!("Runs the integration {}", integration.as_str()));
    }
    let schema = route.request_schema.clone().unwrap_or(json!({}));
    let bodiless = matches!(route.method, HttpMethod::Get | HttpMethod::Head | HttpMethod::Delete | HttpMethod::Options);
    if route.request_schema.is_some() || !bodiless {
        operation["requestBody"] = json!({"required": route.request_schema.is_some(), "content": {"application/json": {"schema": schema}}});
    }
    if api.spec.sunset.is_some() {
        operation["deprecated"] = json!(true);
    }
    operation
}

/// `GET`, `POST`...: the method as definitions write it.
pub fn method_name(method: HttpMethod) -> String {
    serde_json::to_value(method).ok().and_then(|m| m.as_str().map(String::from)).unwrap_or_default()
}

/// `/orders/{id}/lines` as `orders_id_lines`.
fn operation_name(path: &str) -> String {
    let words: Vec<String> = path.split('/').filter(|s| !s.is_empty()).map(|s| s.trim_matches(['{', '}']).replace(['.', '~', '-'], "_")).collect();
    if words.is_empty() { "root".into() } else { words.join("_") }
}

fn error_schema() -> Value {
    json!({
        "type": "object",
        "required": ["error"],
        "properties": {"error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "errors": {"type": "array"}},
        }},
    })
}
