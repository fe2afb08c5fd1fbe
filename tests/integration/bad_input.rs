//! Every write endpoint refuses what is not the JSON it expects — broken
//! JSON, wrong types, unknown fields, another content type, too many bytes —
//! and values that break the rules, with a JSON error and a stable code,
//! and stores nothing when it does.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tessera_tests::{error_code, spawn_app, spawn_app_with, TestApp, TestTenant, BASE_DOMAIN};

/// One write endpoint, with a body it accepts and bodies of the wrong types.
struct Endpoint {
    name: &'static str,
    method: Method,
    /// `None`: the platform host.
    tenant: Option<&'static str>,
    path: String,
    credential: Option<String>,
    /// A body that would succeed (sent last, as a control).
    valid: Value,
    wrong_types: Vec<Value>,
    /// Whether the valid body changes what is stored.
    stores: bool,
}

impl Endpoint {
    async fn send(&self, app: &TestApp, content_type: Option<&str>, body: impl Into<Vec<u8>>) -> reqwest::Response {
        let mut request = match self.tenant {
            Some(slug) => app.tenant_request(self.method.clone(), slug, &self.path),
            None => app.platform_request(self.method.clone(), &self.path),
        };
        if let Some(credential) = &self.credential {
            request = request.bearer_auth(credential);
        }
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request.body(body.into()).send().await.unwrap()
    }

    async fn send_json(&self, app: &TestApp, body: &Value) -> reqwest::Response {
        self.send(app, Some("application/json"), body.to_string()).await
    }
}

/// acme with an owner and a viewer, and the platform owner's token.
struct World {
    acme: TestTenant,
    owner: String,
    platform: String,
    viewer_id: String,
}

async fn world(app: &TestApp) -> World {
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let platform = app.platform_token().await;
    let viewer = app.user_with_role(&acme, "viewer").await;
    let me: Value = app.tenant_request(Method::GET, "acme", "/api/me").bearer_auth(&viewer).send().await.unwrap().json().await.unwrap();
    World { acme, owner, platform, viewer_id: me["principal"]["id"].as_str().unwrap().into() }
}

/// Every write endpoint, each with a body it would accept.
fn endpoints(w: &World) -> Vec<Endpoint> {
    let owner = Some(w.owner.clone());
    vec![
        Endpoint {
            name: "login",
            method: Method::POST,
            tenant: Some("acme"),
            path: "/api/auth/login".into(),
            credential: None,
            valid: json!({"email": w.acme.owner_email, "password": w.acme.owner_password}),
            wrong_types: vec![
                json!({"email": 42, "password": w.acme.owner_password}),
                json!({"email": w.acme.owner_email, "password": ["a", "list"]}),
                json!({"email": w.acme.owner_email}),
                json!(w.acme.owner_email),
            ],
            stores: false,
        },
        Endpoint {
            name: "platform login",
            method: Method::POST,
            tenant: None,
            path: "/api/auth/login".into(),
            credential: None,
            valid: json!({"email": tessera_tests::PLATFORM_OWNER.0, "password": tessera_tests::PLATFORM_OWNER.1}),
            wrong_types: vec![json!({"email": null, "password": tessera_tests::PLATFORM_OWNER.1}), json!("a string")],
            stores: false,
        },
        Endpoint {
            name: "create user",
            method: Method::POST,
            tenant: Some("acme"),
            path: "/api/users".into(),
            credential: owner.clone(),
            valid: json!({"email": "new@acme.test", "password": "a-good-password", "role": "editor", "display_name": "New"}),
            wrong_types: vec![
                json!({"email": "new@acme.test", "password": 12345678, "role": "editor"}),
                json!({"email": "new@acme.test", "password": "a-good-password", "role": "superuser"}),
                json!({"email": "new@acme.test", "password": "a-good-password", "role": 4}),
                json!({"email": "new@acme.test", "password": "a-good-password", "role": "editor", "display_name": false}),
                json!({"email": "new@acme.test", "password": "a-good-password"}),
            ],
            stores: true,
        },
        Endpoint {
            name: "update user",
            method: Method::PATCH,
            tenant: Some("acme"),
            path: format!("/api/users/{}", w.viewer_id),
            credential: owner.clone(),
            valid: json!({"display_name": "Renamed", "role": "editor"}),
            wrong_types: vec![
                json!({"disabled": "yes"}),
                json!({"role": "root"}),
                json!({"role": 2}),
                json!({"role": "editor", "display_name": 7}),
                json!(null),
            ],
            stores: true,
        },
        Endpoint {
            name: "create api key",
            method: Method::POST,
            tenant: Some("acme"),
            path: "/api/api-keys".into(),
            credential: owner.clone(),
            valid: json!({"name": "ci", "role": "viewer"}),
            wrong_types: vec![json!({"name": "ci", "role": 3}), json!({"name": ["ci"], "role": "viewer"}), json!({"name": "ci"})],
            stores: true,
        },
        Endpoint {
            name: "put variable",
            method: Method::PUT,
            tenant: Some("acme"),
            path: "/api/variables/region".into(),
            credential: owner,
            valid: json!({"value": {"primary": "eu"}, "description": "where we run"}),
            wrong_types: vec![json!({"value": 1, "description": 7}), json!({"description": "no value"}), json!(true)],
            stores: true,
        },
        Endpoint {
            name: "create tenant",
            method: Method::POST,
            tenant: None,
            path: "/api/platform/tenants".into(),
            credential: Some(w.platform.clone()),
            valid: json!({"slug": "globex", "owner_email": "owner@globex.test", "owner_password": "globex-owner-password"}),
            wrong_types: vec![
                json!({"slug": 42, "owner_email": "owner@globex.test"}),
                json!({"slug": "globex", "owner_email": "owner@globex.test", "name": {"en": "Globex"}}),
                json!({"slug": "globex"}),
            ],
            stores: true,
        },
    ]
}

async fn ok_items(request: reqwest::RequestBuilder) -> Value {
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json::<Value>().await.unwrap()["items"].clone()
}

/// Everything a write could have stored: acme's users, keys and variables,
/// the tenants, and the tenant schemas in the database.
async fn stored(app: &TestApp, w: &World) -> Value {
    let mut all = json!({});
    for list in ["users", "api-keys", "variables"] {
        all[list] = ok_items(app.tenant_request(Method::GET, "acme", &format!("/api/{list}")).bearer_auth(&w.owner)).await;
    }
    all["tenants"] = ok_items(app.platform_request(Method::GET, "/api/platform/tenants").bearer_auth(&w.platform)).await;
    let schemas = app
        .db()
        .await
        .query("SELECT nspname FROM pg_namespace WHERE nspname LIKE 't\\_%' ORDER BY 1", &[])
        .await
        .unwrap();
    all["schemas"] = schemas.iter().map(|r| r.get::<_, String>(0)).collect();
    all
}

async fn assert_refused(response: reqwest::Response, status: StatusCode, code: &str, what: &str) {
    assert_eq!(response.status(), status, "{what}");
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
    assert_eq!(content_type.as_deref(), Some("application/json"), "{what}");
    assert_eq!(error_code(response).await, code, "{what}");
}

#[tokio::test]
async fn every_write_endpoint_refuses_a_body_that_is_not_the_json_it_expects() {
    let app = spawn_app().await;
    let w = world(&app).await;

    for endpoint in endpoints(&w) {
        let name = endpoint.name;
        let before = stored(&app, &w).await;

        // Broken before any field is named (serde would report an unknown or
        // missing field first, which is a different answer).
        for broken in ["{", "{\"", "not json", "", "{,}", "{1: 2}", "nul", "{'single': 'quotes'}"] {
            let response = endpoint.send(&app, Some("application/json"), broken).await;
            assert_refused(response, StatusCode::BAD_REQUEST, "invalid_json", &format!("{name}: {broken:?}")).await;
        }
        for wrong in &endpoint.wrong_types {
            let response = endpoint.send_json(&app, wrong).await;
            assert_refused(response, StatusCode::BAD_REQUEST, "invalid_body", &format!("{name}: {wrong}")).await;
        }
        for extra in [json!({"is_admin": true}), json!({"role ": "owner"}), json!({"tenant_id": w.acme.id})] {
            let mut body = endpoint.valid.clone();
            body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            let response = endpoint.send_json(&app, &body).await;
            assert_refused(response, StatusCode::BAD_REQUEST, "invalid_body", &format!("{name}: {body}")).await;
        }
        for content_type in [Some("text/plain"), Some("application/x-www-form-urlencoded"), Some("application/xml"), None] {
            let response = endpoint.send(&app, content_type, endpoint.valid.to_string()).await;
            let what = format!("{name} as {content_type:?}");
            assert_refused(response, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", &what).await;
        }

        assert_eq!(stored(&app, &w).await, before, "{name}: a refused write stored something");

        // The control: the same endpoint takes the well-formed body.
        let response = endpoint.send_json(&app, &endpoint.valid).await;
        assert!(response.status().is_success(), "{name}: {} {}", response.status(), response.text().await.unwrap());
        assert_eq!(stored(&app, &w).await != before, endpoint.stores, "{name}");
    }
}

#[tokio::test]
async fn an_oversized_body_is_refused_before_it_is_read() {
    let app = spawn_app_with(|c| c.http.max_body_bytes = 1024).await;
    let w = world(&app).await;

    for endpoint in endpoints(&w) {
        let name = endpoint.name;
        let before = stored(&app, &w).await;
        // Still valid JSON, and what the endpoint takes: just padded past the limit.
        let padded = format!("{}{}", endpoint.valid, " ".repeat(2048));
        let response = endpoint.send(&app, Some("application/json"), padded).await;
        assert_refused(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", name).await;
        assert_eq!(stored(&app, &w).await, before, "{name}: an oversized write stored something");

        let response = endpoint.send_json(&app, &endpoint.valid).await;
        assert!(response.status().is_success(), "{name}: {}", response.status());
    }

    // A chunked body announces no length; it is cut off all the same.
    let before = stored(&app, &w).await;
    let chunk = format!("{{\"value\": \"{}\"}}", "x".repeat(4096));
    let request = format!(
        "PUT /api/variables/chunked HTTP/1.1\r\nHost: acme.{BASE_DOMAIN}:{port}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{len:x}\r\n{chunk}\r\n0\r\n\r\n",
        port = app.port,
        token = w.owner,
        len = chunk.len(),
    );
    let port = app.port;
    let response = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        String::from_utf8_lossy(&response).into_owned()
    })
    .await
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("\"payload_too_large\""), "{response}");
    assert_eq!(stored(&app, &w).await, before);
}

#[tokio::test]
async fn values_that_break_the_rules_are_refused_and_not_stored() {
    let app = spawn_app().await;
    let w = world(&app).await;
    let before = stored(&app, &w).await;

    let tenant = |method: Method, path: &str, body: Value| {
        app.tenant_request(method, "acme", path).bearer_auth(&w.owner).json(&body).send()
    };

    // Users: email and password rules, on create and on update.
    for email in ["not-an-email", "a@", "@acme.test", "two words@acme.test", "a@.acme.test", "a@acme.test."] {
        let response = tenant(Method::POST, "/api/users", json!({"email": email, "password": "a-good-password", "role": "viewer"})).await.unwrap();
        assert_refused(response, StatusCode::BAD_REQUEST, "invalid_request", email).await;
    }
    let response = tenant(Method::POST, "/api/users", json!({"email": "short@acme.test", "password": "short", "role": "viewer"})).await.unwrap();
    assert_refused(response, StatusCode::BAD_REQUEST, "invalid_request", "short password").await;
    let response = tenant(Method::POST, "/api/users", json!({"email": "long@acme.test", "password": "p".repeat(1025), "role": "viewer"})).await.unwrap();
    assert_refused(response, StatusCode::BAD_REQUEST, "invalid_request", "long password").await;
    let viewer_path = format!("/api/users/{}", w.viewer_id);
    let response = tenant(Method::PATCH, &viewer_path, json!({"password": "short"})).await.unwrap();
    assert_refused(response, StatusCode::BAD_REQUEST, "invalid_request", "short new password").await;
    let response = tenant(Method::PATCH, &viewer_path, json!({"display_name": "n".repeat(201), "role": "admin"})).await.unwrap();
    assert_refused(response, StatusCode::BAD_REQUEST, "invalid_request", "long display name").await;
    let response = tenant(Method::POST, "/api/users", json!({"email": w.acme.owner_email.to_uppercase(), "password": "a-good-password", "role": "viewer"})).await.unwrap();
    assert_refused(response, StatusCode::CONFLICT, "conflict", "an existing email").await;

    // API keys need a name.
    for name in ["", "   ", &"k".repeat(101)] {
        let response = tenant(Method::POST, "/api/api-keys", json!({"name": name, "role": "viewer"})).await.unwrap();
        assert_refused(response, StatusCode::BAD_REQUEST, "invalid_request", name).await;
    }

    // Variable names, descriptions and sizes.
    let long_name = "v".repeat(65);
    for name in ["1region", "has-dash", "with%20space", "r%C3%A9gion", "dot.ted", &long_name] {
        let response = tenant(Method::PUT, &format!("/api/variables/{name}"), json!({"value": 1})).await.unwrap();
        assert_refused(response, StatusCode::BAD_REQUEST, "invalid_request", name).await;
    }
    let response = tenant(Method::PUT, "/api/variables/region", json!({"value": 1, "description": "d".repeat(501)})).await.unwrap();
    assert_refused(response, StatusCode::BAD_REQUEST, "invalid_request", "long description").await;
    let response = tenant(Method::PUT, "/api/variables/region", json!({"value": "x".repeat(70 * 1024)})).await.unwrap();
    assert_refused(response, StatusCode::BAD_REQUEST, "invalid_request", "huge value").await;
    let absent = app.tenant_request(Method::GET, "acme", "/api/variables/region").bearer_auth(&w.owner).send().await.unwrap();
    assert_eq!(absent.status(), StatusCode::NOT_FOUND);

    // Tenants: slug, owner email and password rules.
    let create_tenant = |body: Value| app.platform_request(Method::POST, "/api/platform/tenants").bearer_auth(&w.platform).json(&body).send();
    let long_slug = format!("a{}", "b".repeat(40));
    for slug in ["Bad_Slug", "a", "1abc", "-abc", "ab.cd", "ab cd", "www", "admin", "xn--80ak6aa92e", "acmé", &long_slug, "../etc"] {
        let response = create_tenant(json!({"slug": slug, "owner_email": "o@x.test", "owner_password": "a-good-password"})).await.unwrap();
        assert_refused(response, StatusCode::BAD_REQUEST, "invalid_slug", slug).await;
    }
    let response = create_tenant(json!({"slug": "globex", "owner_email": "not-an-email", "owner_password": "a-good-password"})).await.unwrap();
    assert_refused(response, StatusCode::BAD_REQUEST, "invalid_request", "bad owner email").await;
    let response = create_tenant(json!({"slug": "globex", "owner_email": "o@globex.test", "owner_password": "short"})).await.unwrap();
    assert_refused(response, StatusCode::BAD_REQUEST, "invalid_request", "short owner password").await;
    let response = create_tenant(json!({"slug": "globex", "name": "n".repeat(201), "owner_email": "o@globex.test"})).await.unwrap();
    assert_refused(response, StatusCode::BAD_REQUEST, "invalid_request", "long tenant name").await;
    let response = create_tenant(json!({"slug": "acme", "owner_email": "o@acme.test", "owner_password": "a-good-password"})).await.unwrap();
    assert_refused(response, StatusCode::CONFLICT, "tenant_exists", "a taken slug").await;

    assert_eq!(stored(&app, &w).await, before, "a refused write stored something");
    // The viewer's password was not changed either.
    let viewer_email = before["users"].as_array().unwrap().iter().find(|u| u["id"] == w.viewer_id.as_str()).unwrap()["email"].clone();
    app.login("acme", viewer_email.as_str().unwrap(), "a-good-password").await;
}

#[tokio::test]
async fn unknown_routes_answer_a_json_not_found() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;

    // (A GET outside the API is the admin panel's page: `panel::`.)
    for (method, path) in [
        (Method::DELETE, "/"),
        (Method::POST, "/integrations"),
        (Method::GET, "/hooks/nothing"),
        (Method::GET, "/api"),
        (Method::GET, "/api/nope"),
        (Method::POST, "/api/users/extra/segments"),
        (Method::PATCH, "/api/variables"),
        (Method::PUT, "/api/users"),
        (Method::POST, "/api/me"),
        (Method::GET, "/api/platform/nothing"),
    ] {
        let on_tenant = app.tenant_request(method.clone(), "acme", path).bearer_auth(&owner).send().await.unwrap();
        assert_refused(on_tenant, StatusCode::NOT_FOUND, "not_found", &format!("{method} {path} on acme")).await;
        let on_platform = app.platform_request(method.clone(), path).send().await.unwrap();
        assert_refused(on_platform, StatusCode::NOT_FOUND, "not_found", &format!("{method} {path} on the platform")).await;
    }
}
