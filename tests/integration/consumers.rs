//! API management's plans and consumers: managed by admins, keys shown
//! once, every change in the audit trail, each tenant's apart; and the
//! admission of a consumer's calls, whose rate, burst and quota hold across
//! the nodes of a cluster exactly, and whose revoked key fails at once on
//! every node.

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tessera_server::{
    gateway::{self, AdmissionError},
    tenancy::{Tenant, TenantDb, TenantSlug},
};
use tessera_tests::{spawn_app, status_and_json, TestApp};

async fn call(app: &TestApp, token: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = app.tenant_request(method, "acme", path).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    status_and_json(request).await
}

async fn tenant(app: &TestApp, slug: &str) -> Arc<Tenant> {
    app.state.directory.lookup(&TenantSlug::parse(slug).unwrap()).await.unwrap().expect("the tenant exists")
}

/// A consumer on a new plan, and one key of it.
async fn consumer_with_key(app: &TestApp, token: &str, name: &str, plan: Value) -> (String, String) {
    let (status, body) = call(app, token, Method::PUT, &format!("/api/plans/{name}-plan"), Some(plan)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, consumer) = call(app, token, Method::POST, "/api/consumers", Some(json!({"name": name, "plan": format!("{name}-plan")}))).await;
    assert_eq!(status, StatusCode::CREATED, "{consumer}");
    let id = consumer["id"].as_str().unwrap().to_string();
    let (status, key) = call(app, token, Method::POST, &format!("/api/consumers/{id}/keys"), None).await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    (id, key["secret"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn plans_and_consumers_are_managed_by_admins_with_keys_shown_once_and_audited() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;

    for (bad, field) in [
        (json!({"rate_per_second": 0, "burst": 1}), "rate_per_second"),
        (json!({"rate_per_second": 5, "burst": 0}), "burst"),
        (json!({"rate_per_second": 5, "burst": 5, "quota": 10}), "quota_period"),
        (json!({"rate_per_second": 5, "burst": 5, "quota": 10, "quota_period": "week"}), "quota_period"),
        (json!({"rate_per_second": 5, "burst": 5, "extra": true}), "extra"),
    ] {
        let (status, body) = call(&app, &owner, Method::PUT, "/api/plans/silver", Some(bad.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(field), "{bad}: {body}");
    }
    let plan = json!({"rate_per_second": 2.5, "burst": 5, "quota": 1000, "quota_period": "month", "description": "partners"});
    let (status, silver) = call(&app, &owner, Method::PUT, "/api/plans/silver", Some(plan)).await;
    assert_eq!(status, StatusCode::OK, "{silver}");
    assert_eq!((silver["rate_per_second"].clone(), silver["quota_period"].clone()), (json!(2.5), json!("month")));

    let (status, body) = call(&app, &owner, Method::POST, "/api/consumers", Some(json!({"name": "partner-a", "plan": "gold"}))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")), "an unknown plan");
    let (status, consumer) = call(&app, &owner, Method::POST, "/api/consumers", Some(json!({"name": "partner-a", "plan": "silver"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{consumer}");
    let id = consumer["id"].as_str().unwrap();
    let (status, _) = call(&app, &owner, Method::POST, "/api/consumers", Some(json!({"name": "partner-a", "plan": "silver"}))).await;
    assert_eq!(status, StatusCode::CONFLICT);

    let (status, key) = call(&app, &owner, Method::POST, &format!("/api/consumers/{id}/keys"), None).await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let secret = key["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("tck_") && secret.starts_with(key["prefix"].as_str().unwrap()), "{key}");
    // A consumer's key is not a key to the tenant's own API.
    let (status, _) = call(&app, &secret, Method::GET, "/api/me", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, listed) = call(&app, &owner, Method::GET, "/api/consumers", None).await;
    assert_eq!(listed["items"][0]["keys"][0]["prefix"], key["prefix"]);
    assert!(!listed.to_string().contains(&secret), "the secret is shown once: {listed}");

    let (status, body) = call(&app, &owner, Method::DELETE, "/api/plans/silver", None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("in_use")), "{body}");
    let (status, moved) = call(&app, &owner, Method::PUT, "/api/plans/gold", Some(json!({"rate_per_second": 100, "burst": 100}))).await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    let (status, moved) = call(&app, &owner, Method::PATCH, &format!("/api/consumers/{id}"), Some(json!({"plan": "gold"}))).await;
    assert_eq!((status, moved["plan"].as_str()), (StatusCode::OK, Some("gold")), "{moved}");
    let (status, _) = call(&app, &owner, Method::DELETE, "/api/plans/silver", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // Admins only.
    let editor = app.user_with_role(&acme, "editor").await;
    for (method, path) in [(Method::GET, "/api/consumers".to_string()), (Method::GET, "/api/plans".into()), (Method::POST, format!("/api/consumers/{id}/keys"))] {
        let (status, _) = call(&app, &editor, method.clone(), &path, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}");
    }

    // Each tenant's own.
    let globex = app.create_tenant("globex").await;
    let theirs = app.owner_token(&globex).await;
    let (_, none) = status_and_json(app.tenant_request(Method::GET, "globex", "/api/consumers").bearer_auth(&theirs)).await;
    assert_eq!(none["items"], json!([]));
    let refused = gateway::admit(&app.state.tenant_db, &*tenant(&app, "globex").await, &secret).await;
    assert!(matches!(refused, Err(AdmissionError::UnknownKey)), "{refused:?}");
    assert!(gateway::admit(&app.state.tenant_db, &*tenant(&app, "acme").await, &secret).await.is_ok());

    // Revoked; then the consumer deleted. All of it in the audit trail, no secret.
    let key_id = key["id"].as_str().unwrap();
    let (status, revoked) = call(&app, &owner, Method::DELETE, &format!("/api/consumers/{id}/keys/{key_id}"), None).await;
    assert!(status == StatusCode::OK && revoked["revoked_at"].is_string(), "{revoked}");
    let (status, _) = call(&app, &owner, Method::DELETE, &format!("/api/consumers/{id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, audit) = call(&app, &owner, Method::GET, "/api/audit?resource_kind=consumer", None).await;
    let actions: Vec<&str> = audit["items"].as_array().unwrap().iter().rev().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["consumer.create", "consumer.key_create", "consumer.update", "consumer.key_revoke", "consumer.delete"]);
    let (_, plans) = call(&app, &owner, Method::GET, "/api/audit?resource_kind=plan", None).await;
    assert_eq!(plans["items"].as_array().unwrap().len(), 3, "silver, gold, silver deleted: {plans}");
    assert!(!audit.to_string().contains(&secret));
}

/// Calls of `key` made at once, spread over `nodes`: how many got through,
/// and every refusal.
async fn burst_of(nodes: &[TenantDb], tenant: &Tenant, key: &str, calls: usize) -> (usize, Vec<AdmissionError>) {
    let attempts = (0..calls).map(|i| gateway::admit(&nodes[i % nodes.len()], tenant, key));
    let results = futures::future::join_all(attempts).await;
    let admitted = results.iter().filter(|r| r.is_ok()).count();
    (admitted, results.into_iter().filter_map(Result::err).collect())
}

#[tokio::test]
async fn a_consumers_limits_hold_exactly_across_two_nodes_and_a_revoked_key_fails_at_once_on_both() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let second = app.add_node().await;
    let nodes = [app.state.tenant_db.clone(), second.state.tenant_db.clone()];
    let tenant = tenant(&app, "acme").await;

    // A burst of 10 and a refill too slow to matter during the test: 40
    // calls at once over both nodes let exactly 10 through.
    let (_, tight) = consumer_with_key(&app, &owner, "tight", json!({"rate_per_second": 0.001, "burst": 10})).await;
    let (_, roomy) = consumer_with_key(&app, &owner, "roomy", json!({"rate_per_second": 1000, "burst": 1000})).await;
    let (admitted, refused) = burst_of(&nodes, &tenant, &tight, 40).await;
    assert_eq!(admitted, 10, "{refused:?}");
    for refusal in &refused {
        let AdmissionError::RateLimited { retry_after_ms, limits, .. } = refusal else { panic!("{refusal:?}") };
        assert_eq!(limits.burst, 10);
        assert!(*retry_after_ms > 60_000, "a token comes back in about 1,000 s: {retry_after_ms}");
    }
    // Meanwhile another consumer is served, on both nodes.
    let (admitted, refused) = burst_of(&nodes, &tenant, &roomy, 40).await;
    assert_eq!(admitted, 40, "{refused:?}");

    // A sustained rate: tokens come back at the plan's rate.
    let (_, steady) = consumer_with_key(&app, &owner, "steady", json!({"rate_per_second": 10, "burst": 3})).await;
    assert_eq!(burst_of(&nodes, &tenant, &steady, 6).await.0, 3, "the full bucket");
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    let refilled = burst_of(&nodes, &tenant, &steady, 6).await.0;
    assert!((2..=3).contains(&refilled), "250 ms (and the calls' own time) at 10/s refill two tokens or three: {refilled}");

    // A daily quota of 7: exactly 7, then refusals until the next UTC day.
    let (consumer, quota) = consumer_with_key(&app, &owner, "metered", json!({"rate_per_second": 1000, "burst": 1000, "quota": 7, "quota_period": "day"})).await;
    let (admitted, refused) = burst_of(&nodes, &tenant, &quota, 20).await;
    assert_eq!(admitted, 7, "{refused:?}");
    let AdmissionError::QuotaExceeded { retry_after_ms, .. } = &refused[0] else { panic!("{:?}", refused[0]) };
    assert!(*retry_after_ms <= 86_400_000, "{retry_after_ms}");
    // Moved to a plan with room, it is served again at its next call.
    let (status, _) = call(&app, &owner, Method::PUT, "/api/plans/bigger", Some(json!({"rate_per_second": 1000, "burst": 1000, "quota": 100, "quota_period": "day"}))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(&app, &owner, Method::PATCH, &format!("/api/consumers/{consumer}"), Some(json!({"plan": "bigger"}))).await;
    assert_eq!(status, StatusCode::OK);
    let served = gateway::admit(&nodes[1], &tenant, &quota).await.expect("room on the new plan");
    assert_eq!(served.quota_remaining, Some(100 - 8));

    // Revoked through the first node's API: the next call fails on both.
    let (_, listed) = call(&app, &owner, Method::GET, &format!("/api/consumers/{consumer}"), None).await;
    let key_id = listed["keys"][0]["id"].as_str().unwrap();
    let (status, _) = call(&app, &owner, Method::DELETE, &format!("/api/consumers/{consumer}/keys/{key_id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    for node in &nodes {
        let refused = gateway::admit(node, &tenant, &quota).await;
        assert!(matches!(refused, Err(AdmissionError::UnknownKey)), "{refused:?}");
    }
    second.stop().await;
}
