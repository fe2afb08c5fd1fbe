//! The tenant directory is cached per node and kept fresh by notifications:
//! a change made through one node is seen by every other node at once,
//! without waiting for the cache to expire.

use std::{net::TcpListener, time::Duration};

use reqwest::{Method, StatusCode};
use tessera_server::startup::Application;
use tessera_tests::{error_code, eventually, spawn_app, TestApp};

/// A second node on the same database and token key as `app`.
async fn second_node(app: &TestApp) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let node = Application::build_with_listener(app.config.clone(), listener).expect("second node");
    let port = node.port();
    tokio::spawn(node.run_until_stopped());
    port
}

async fn status_on(app: &TestApp, port: u16, slug: &str, token: &str) -> (StatusCode, String) {
    let response = app
        .http
        .get(format!("http://127.0.0.1:{port}/api/me"))
        .header("host", format!("{slug}.localhost:{port}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let code = if status.is_success() { String::new() } else { error_code(response).await };
    (status, code)
}

#[tokio::test]
async fn a_tenant_created_on_one_node_is_served_by_another_even_after_a_cached_miss() {
    let app = spawn_app().await;
    let other = second_node(&app).await;
    // The other node looks the tenant up before it exists and caches the miss.
    let (status, code) = status_on(&app, other, "late", "no-token").await;
    assert_eq!((status, code.as_str()), (StatusCode::NOT_FOUND, "tenant_not_found"));

    let late = app.create_tenant("late").await;
    let token = app.owner_token(&late).await;
    let served = eventually(Duration::from_secs(2), || async {
        status_on(&app, other, "late", &token).await.0 == StatusCode::OK
    })
    .await;
    assert!(served, "the second node never saw the new tenant");
}

#[tokio::test]
async fn suspending_through_one_node_blocks_the_tenant_on_every_node() {
    let app = spawn_app().await;
    let other = second_node(&app).await;
    let acme = app.create_tenant("acme").await;
    let token = app.owner_token(&acme).await;
    assert_eq!(status_on(&app, other, "acme", &token).await.0, StatusCode::OK, "warms the other node's cache");

    let platform = app.platform_token().await;
    let suspended = app.tenant_lifecycle(&platform, "acme", "suspend").await;
    assert_eq!(suspended.status(), StatusCode::OK);
    let blocked = eventually(Duration::from_secs(2), || async {
        status_on(&app, other, "acme", &token).await == (StatusCode::FORBIDDEN, "tenant_suspended".to_string())
    })
    .await;
    assert!(blocked, "the other node kept serving a suspended tenant from its cache");

    app.tenant_lifecycle(&platform, "acme", "resume").await;
    let back = eventually(Duration::from_secs(2), || async { status_on(&app, other, "acme", &token).await.0 == StatusCode::OK }).await;
    assert!(back, "the other node did not pick up the resume");
}

#[tokio::test]
async fn demoting_a_user_through_one_node_takes_effect_on_every_node() {
    let app = spawn_app().await;
    let other = second_node(&app).await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let editor = app.user_with_role(&acme, "editor").await;
    let role_on_other = || async {
        let me: serde_json::Value = app
            .http
            .get(format!("http://127.0.0.1:{other}/api/me"))
            .header("host", format!("acme.localhost:{other}"))
            .bearer_auth(&editor)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        me["role"].as_str().unwrap_or_default().to_string()
    };
    assert_eq!(role_on_other().await, "editor", "warms the other node's cache");

    let me: serde_json::Value =
        app.tenant_request(Method::GET, "acme", "/api/me").bearer_auth(&editor).send().await.unwrap().json().await.unwrap();
    let id = me["principal"]["id"].as_str().unwrap().to_string();
    let demoted = app
        .tenant_request(Method::PATCH, "acme", &format!("/api/users/{id}"))
        .bearer_auth(&owner)
        .json(&serde_json::json!({"role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(demoted.status(), StatusCode::OK);
    let seen = eventually(Duration::from_secs(2), || async { role_on_other().await == "viewer" }).await;
    assert!(seen, "the other node kept the user's old role");
}
