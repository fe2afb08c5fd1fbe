//! Which part of the platform a request is for is decided by its Host header
//! alone: `<slug>.localhost:PORT` is a tenant, bare `localhost:PORT` is the
//! platform, and anything else is refused before any database work.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tessera_tests::{spawn_app, status_and_code, TestApp, BASE_DOMAIN};

/// Write `request` as-is to the server (bypassing reqwest's header checks)
/// and return the status code and the JSON body, if there is one.
async fn raw_request(app: &TestApp, request: Vec<u8>) -> (u16, Value) {
    let port = app.port;
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the app");
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.write_all(&request).expect("send the request");
        let mut response = Vec::new();
        // HTTP/1.0 and `Connection: close`: the server closes when done.
        stream.read_to_end(&mut response).expect("read the response");
        let text = String::from_utf8_lossy(&response).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("incomplete response: {text:?}"));
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("status line: {head}"));
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    })
    .await
    .unwrap()
}

/// A GET with a raw `Host:` line (any bytes), on a connection of its own.
async fn raw_get_with_host(app: &TestApp, host: &[u8], path: &str) -> (u16, Value) {
    let mut request = format!("GET {path} HTTP/1.1\r\nConnection: close\r\nHost: ").into_bytes();
    request.extend_from_slice(host);
    request.extend_from_slice(b"\r\n\r\n");
    raw_request(app, request).await
}

#[tokio::test]
async fn a_tenant_is_served_at_its_own_subdomain_whatever_the_spelling() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let token = app.owner_token(&acme).await;
    let port = app.port;

    for host in [
        format!("acme.{BASE_DOMAIN}:{port}"),
        format!("ACME.LocalHost:{port}"),
        format!("acme.{BASE_DOMAIN}.:{port}"),
        format!("acme.{BASE_DOMAIN}"),
    ] {
        let response = app.request_with_host(Method::GET, &host, "/api/me").bearer_auth(&token).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{host}");
        let me: Value = response.json().await.unwrap();
        assert_eq!(me["tenant"]["slug"], "acme", "{host}");
        assert_eq!(me["tenant"]["id"], acme.id.as_str(), "{host}");
    }
}

#[tokio::test]
async fn the_bare_base_domain_is_the_platform_host_and_the_two_apis_do_not_mix() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let platform = app.platform_token().await;
    let tenant_token = app.owner_token(&acme).await;

    // The platform API answers on the platform host.
    let tenants = app.platform_request(Method::GET, "/api/platform/tenants").bearer_auth(&platform).send().await.unwrap();
    assert_eq!(tenants.status(), StatusCode::OK);
    let tenants: Value = tenants.json().await.unwrap();
    assert_eq!(tenants["items"][0]["slug"], "acme");

    // Tenant endpoints are not served there, whatever the credentials.
    for token in [&platform, &tenant_token] {
        let me = app.platform_request(Method::GET, "/api/me").bearer_auth(token).send().await.unwrap();
        assert_eq!(status_and_code(me).await, (StatusCode::NOT_FOUND, "wrong_host".into()));
        let variables = app.platform_request(Method::GET, "/api/variables").bearer_auth(token).send().await.unwrap();
        assert_eq!(status_and_code(variables).await, (StatusCode::NOT_FOUND, "wrong_host".into()));
    }

    // Platform endpoints are not served on a tenant host, not even to the platform owner.
    for token in [&platform, &tenant_token] {
        let list = app.tenant_request(Method::GET, "acme", "/api/platform/tenants").bearer_auth(token).send().await.unwrap();
        assert_eq!(status_and_code(list).await, (StatusCode::NOT_FOUND, "wrong_host".into()));
        let suspend = app
            .tenant_request(Method::POST, "acme", "/api/platform/tenants/acme/suspend")
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(status_and_code(suspend).await, (StatusCode::NOT_FOUND, "wrong_host".into()));
    }

    // ... and the tenant was not suspended by that attempt.
    let me = app.tenant_request(Method::GET, "acme", "/api/me").bearer_auth(&tenant_token).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_host_naming_no_tenant_is_not_found() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;

    let me = app.tenant_request(Method::GET, "ghost", "/api/me").send().await.unwrap();
    assert_eq!(status_and_code(me).await, (StatusCode::NOT_FOUND, "tenant_not_found".into()));
    let login = app.try_login("ghost", "owner@acme.test", "acme-owner-password").await;
    assert_eq!(status_and_code(login).await, (StatusCode::NOT_FOUND, "tenant_not_found".into()));
}

#[tokio::test]
async fn reserved_names_are_never_tenants() {
    let app = spawn_app().await;
    let port = app.port;
    for host in [format!("www.{BASE_DOMAIN}:{port}"), format!("api.{BASE_DOMAIN}:{port}"), format!("xn--80ak6aa92e.{BASE_DOMAIN}:{port}")] {
        let response = app.request_with_host(Method::GET, &host, "/api/me").send().await.unwrap();
        assert_eq!(status_and_code(response).await, (StatusCode::NOT_FOUND, "tenant_not_found".into()), "{host}");
    }

    // Nor can the platform owner create one under such a name.
    let platform = app.platform_token().await;
    let response = app
        .platform_request(Method::POST, "/api/platform/tenants")
        .bearer_auth(&platform)
        .json(&json!({"slug": "www", "owner_email": "owner@www.test", "owner_password": "www-owner-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(status_and_code(response).await, (StatusCode::BAD_REQUEST, "invalid_slug".into()));
}

#[tokio::test]
async fn a_request_without_a_host_is_refused() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;

    // HTTP/1.0 does not require a Host header.
    let (status, body) = raw_request(&app, b"GET /api/me HTTP/1.0\r\n\r\n".to_vec()).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_host");

    let login = b"POST /api/auth/login HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}".to_vec();
    let (status, body) = raw_request(&app, login).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_host");

    // An empty Host header is no better.
    let (status, body) = raw_get_with_host(&app, b"", "/api/me").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_host");
}

#[tokio::test]
async fn malformed_and_hostile_hosts_are_refused() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let token = app.owner_token(&acme).await;
    let port = app.port;

    let hostile = [
        format!("../x.{BASE_DOMAIN}:{port}"),
        format!("{}.{BASE_DOMAIN}:{port}", "a".repeat(300)),
        format!("acme.evil.com:{port}"),
        "acme.evil.com".to_string(),
        format!("acme.{BASE_DOMAIN}.evil.com:{port}"),
        format!("a.b.{BASE_DOMAIN}:{port}"),
        format!("x.acme.{BASE_DOMAIN}:{port}"),
        format!("acme.{BASE_DOMAIN}:notaport"),
        format!("acme.{BASE_DOMAIN}:1234567"),
        format!("acme..{BASE_DOMAIN}:{port}"),
        format!("acme_co.{BASE_DOMAIN}:{port}"),
        format!("acme{BASE_DOMAIN}:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ];
    for host in &hostile {
        // Even with a perfectly good token for acme.
        let response = app.request_with_host(Method::GET, host, "/api/me").bearer_auth(&token).send().await.unwrap();
        assert_eq!(status_and_code(response).await, (StatusCode::BAD_REQUEST, "invalid_host".into()), "{host}");
    }

    // A Cyrillic "а" looks like "acme" but is not ASCII; sent as raw bytes.
    let look_alike = format!("\u{0430}cme.{BASE_DOMAIN}:{port}");
    assert!(!look_alike.is_ascii());
    let (status, body) = raw_get_with_host(&app, look_alike.as_bytes(), "/api/me").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_host");

    // The real acme still works.
    let me = app.tenant_request(Method::GET, "acme", "/api/me").bearer_auth(&token).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_suspended_tenant_is_refused_until_it_is_resumed() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    app.create_tenant("globex").await;
    let platform = app.platform_token().await;
    let token = app.owner_token(&acme).await;
    let key = app
        .tenant_request(Method::POST, "acme", "/api/api-keys")
        .bearer_auth(&token)
        .json(&json!({"name": "ci", "role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(key.status(), StatusCode::CREATED);
    let key = key.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_string();

    let suspended = app.tenant_lifecycle(&platform, "acme", "suspend").await;
    assert_eq!(suspended.status(), StatusCode::OK);
    assert_eq!(suspended.json::<Value>().await.unwrap()["status"], "suspended");

    // Tokens, API keys and fresh logins are all refused.
    let me = app.tenant_request(Method::GET, "acme", "/api/me").bearer_auth(&token).send().await.unwrap();
    assert_eq!(status_and_code(me).await, (StatusCode::FORBIDDEN, "tenant_suspended".into()));
    let me = app.tenant_request(Method::GET, "acme", "/api/variables").header("x-api-key", &key).send().await.unwrap();
    assert_eq!(status_and_code(me).await, (StatusCode::FORBIDDEN, "tenant_suspended".into()));
    let login = app.try_login("acme", &acme.owner_email, &acme.owner_password).await;
    assert_eq!(status_and_code(login).await, (StatusCode::FORBIDDEN, "tenant_suspended".into()));

    // Other tenants are unaffected.
    let globex = app.tenant_request(Method::GET, "globex", "/api/me").send().await.unwrap();
    assert_eq!(status_and_code(globex).await, (StatusCode::UNAUTHORIZED, "unauthenticated".into()));

    let resumed = app.tenant_lifecycle(&platform, "acme", "resume").await;
    assert_eq!(resumed.status(), StatusCode::OK);
    assert_eq!(resumed.json::<Value>().await.unwrap()["status"], "active");

    let me = app.tenant_request(Method::GET, "acme", "/api/me").bearer_auth(&token).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    let variables = app.tenant_request(Method::GET, "acme", "/api/variables").header("x-api-key", &key).send().await.unwrap();
    assert_eq!(variables.status(), StatusCode::OK);
    app.owner_token(&acme).await;
}

#[tokio::test]
async fn hosts_are_judged_before_any_database_work() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let token = app.owner_token(&acme).await;
    let port = app.port;

    // From now on, anything that needs the database fails.
    app.state.pool.close();
    app.state.tenant_db.lanes().close();

    let variables = app.tenant_request(Method::GET, "acme", "/api/variables").bearer_auth(&token).send().await.unwrap();
    assert_eq!(status_and_code(variables).await, (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable".into()));
    let unknown = app.tenant_request(Method::GET, "ghost", "/api/me").send().await.unwrap();
    assert_eq!(status_and_code(unknown).await, (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable".into()));

    // Hostile, foreign and reserved hosts are still answered: they never got that far.
    for host in [
        format!("../x.{BASE_DOMAIN}:{port}"),
        format!("{}.{BASE_DOMAIN}:{port}", "a".repeat(300)),
        format!("acme.evil.com:{port}"),
        format!("a.b.{BASE_DOMAIN}:{port}"),
        format!("acme.{BASE_DOMAIN}:notaport"),
    ] {
        let response = app.request_with_host(Method::GET, &host, "/api/me").bearer_auth(&token).send().await.unwrap();
        assert_eq!(status_and_code(response).await, (StatusCode::BAD_REQUEST, "invalid_host".into()), "{host}");
    }
    let (status, body) = raw_get_with_host(&app, format!("\u{0430}cme.{BASE_DOMAIN}:{port}").as_bytes(), "/api/me").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_host")));
    let (status, body) = raw_request(&app, b"GET /api/me HTTP/1.0\r\n\r\n".to_vec()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_host")));
    let www = app.request_with_host(Method::GET, &format!("www.{BASE_DOMAIN}:{port}"), "/api/me").send().await.unwrap();
    assert_eq!(status_and_code(www).await, (StatusCode::NOT_FOUND, "tenant_not_found".into()));
    let wrong = app.platform_request(Method::GET, "/api/me").bearer_auth(&token).send().await.unwrap();
    assert_eq!(status_and_code(wrong).await, (StatusCode::NOT_FOUND, "wrong_host".into()));

    // Liveness needs no database either.
    let health = app.request_with_host(Method::GET, &format!("127.0.0.1:{port}"), "/healthz").send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}

#[tokio::test]
async fn health_probes_answer_on_any_host() {
    let app = spawn_app().await;
    let port = app.port;
    for host in [
        format!("127.0.0.1:{port}"),
        format!("{BASE_DOMAIN}:{port}"),
        format!("ghost.{BASE_DOMAIN}:{port}"),
        format!("acme.evil.com:{port}"),
        format!("www.{BASE_DOMAIN}:{port}"),
    ] {
        let health = app.request_with_host(Method::GET, &host, "/healthz").send().await.unwrap();
        assert_eq!(health.status(), StatusCode::OK, "{host}");
        assert_eq!(health.json::<Value>().await.unwrap()["status"], "ok");
        let ready = app.request_with_host(Method::GET, &host, "/readyz").send().await.unwrap();
        assert_eq!(ready.status(), StatusCode::OK, "{host}");
    }
    let (status, body) = raw_request(&app, b"GET /healthz HTTP/1.0\r\n\r\n".to_vec()).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
}
