//! Webhook triggers: `POST /hooks/{integration}` on a tenant's host, with
//! the trigger's auth (none, HMAC, API key), accepted only once the
//! execution is committed, answered synchronously when the trigger says so,
//! and never creating anything for a request it refuses.

use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{json, Value};
use sha2::Sha256;
use tessera_tests::{error_code, eventually, spawn_app, spawn_app_with, status_and_json, TestApp};

/// An integration started by a webhook with the given trigger settings.
fn hooked(name: &str, webhook: &str, steps: &str) -> String {
    format!(
        "apiVersion: tessera.dev/v1\nkind: Integration\nmetadata:\n  name: {name}\nspec:\n  triggers:\n    - webhook:\n{webhook}  steps:\n{steps}"
    )
}

const ECHO_STEPS: &str = "    - name: echo\n      transform:\n        expression: '{order: .trigger.body.id, source: .trigger.headers[\"x-source\"], page: .trigger.query.page}'\n";
const OPEN: &str = "        auth: none\n";

fn hook(app: &TestApp, slug: &str, name: &str) -> RequestBuilder {
    app.tenant_request(Method::POST, slug, &format!("/hooks/{name}"))
}

async fn execution_count(app: &TestApp, slug: &str) -> i64 {
    let sql = format!("SELECT count(*) FROM t_{}.executions", slug.replace('-', "_"));
    app.db().await.query_one(&sql, &[]).await.unwrap().get(0)
}

/// Wait for execution `id` to finish; returns it.
async fn finished(app: &TestApp, slug: &str, token: &str, id: &str) -> Value {
    let path = format!("/api/executions/{id}");
    let done = eventually(Duration::from_secs(10), || async {
        matches!(app.tenant_get(slug, token, &path).await.1["state"].as_str(), Some("succeeded" | "failed"))
    })
    .await;
    assert!(done, "execution {id} never finished");
    app.tenant_get(slug, token, &path).await.1
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

async fn api_key(app: &TestApp, slug: &str, owner: &str, role: &str) -> String {
    let (status, created) =
        status_and_json(app.tenant_request(Method::POST, slug, "/api/api-keys").bearer_auth(owner).json(&json!({"name": role, "role": role}))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created["secret"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn an_accepted_webhook_runs_with_the_request_as_its_trigger() {
    let app = spawn_app_with(|c| c.http.max_body_bytes = 1024).await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    app.apply_yaml("acme", &owner, &hooked("orders-in", OPEN, ECHO_STEPS)).await;

    let request = hook(&app, "acme", "orders-in?page=3")
        .header("X-Source", "shop")
        .header("Cookie", "session=private")
        .bearer_auth("not-for-the-payload")
        .json(&json!({"id": 42}));
    let (status, accepted) = status_and_json(request).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    assert_eq!(accepted["state"], "queued");
    let execution = finished(&app, "acme", &owner, accepted["id"].as_str().unwrap()).await;
    assert_eq!(execution["state"], "succeeded", "{execution}");
    assert_eq!(execution["output"], json!({"order": 42, "source": "shop", "page": "3"}));
    let trigger = &execution["trigger"];
    assert_eq!((trigger["kind"].as_str(), &trigger["body"]), (Some("webhook"), &json!({"id": 42})));
    assert_eq!(trigger["query"], json!({"page": "3"}));
    let headers = trigger["headers"].as_object().unwrap();
    assert_eq!(headers["content-type"], "application/json");
    assert!(!headers.contains_key("authorization") && !headers.contains_key("cookie"), "credentials are not stored: {headers:?}");

    // Text is kept as a string; other media types are refused.
    let (status, accepted) = status_and_json(hook(&app, "acme", "orders-in").header("content-type", "text/plain").body("plain words")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let execution = finished(&app, "acme", &owner, accepted["id"].as_str().unwrap()).await;
    assert_eq!(execution["trigger"]["body"], "plain words");
    let binary = hook(&app, "acme", "orders-in").header("content-type", "application/octet-stream").body(vec![0u8, 1, 2]);
    assert_eq!(error_code_of(binary, StatusCode::UNSUPPORTED_MEDIA_TYPE).await, "unsupported_media_type");

    // Over `http.max_body_bytes`: refused before anything is stored.
    let big = json!({"id": 1, "pad": "x".repeat(2048)});
    assert_eq!(error_code_of(hook(&app, "acme", "orders-in").json(&big), StatusCode::PAYLOAD_TOO_LARGE).await, "payload_too_large");
    assert_eq!(execution_count(&app, "acme").await, 2);
}

async fn error_code_of(request: RequestBuilder, expected: StatusCode) -> String {
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), expected);
    error_code(response).await
}

#[tokio::test]
async fn a_synchronous_webhook_answers_with_the_output_or_the_failure() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let sync = "        synchronous: true\n        timeout: 20s\n";
    app.apply_yaml("acme", &owner, &hooked("quote", sync, "    - name: price\n      transform:\n        expression: '{total: (.trigger.body.qty * 5)}'\n")).await;
    app.apply_yaml("acme", &owner, &hooked("refuse", sync, "    - name: no\n      fail:\n        message: 'order ${{ .trigger.body.id }} refused'\n")).await;

    let (status, output) = status_and_json(hook(&app, "acme", "quote").json(&json!({"qty": 3}))).await;
    assert_eq!(status, StatusCode::OK, "{output}");
    assert_eq!(output, json!({"total": 15}));

    let (status, body) = status_and_json(hook(&app, "acme", "refuse").json(&json!({"id": 7}))).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(body["error"]["code"], "execution_failed");
    let id = body["error"]["execution_id"].as_str().expect("the failed execution's id");
    let (_, execution) = app.tenant_get("acme", &owner, &format!("/api/executions/{id}")).await;
    assert_eq!(execution["state"], "failed");
    assert!(!body.to_string().contains("order 7 refused"), "the failure's details stay with the tenant: {body}");
}

/// A node keeps a webhook's trigger for a second (`resources::cache`); a
/// change applied, rolled back or deleted through the API is still what
/// the very next call sees.
#[tokio::test]
async fn the_next_webhook_call_after_a_change_sees_the_change() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let sync = "        synchronous: true\n        timeout: 20s\n";
    let answering = |n: u32| hooked("quote", sync, &format!("    - name: answer\n      transform:\n        expression: '{{version: {n}}}'\n"));
    let call = || status_and_json(hook(&app, "acme", "quote").json(&json!({})));

    app.apply_yaml("acme", &owner, &answering(1)).await;
    assert_eq!(call().await, (StatusCode::OK, json!({"version": 1})));
    app.apply_yaml("acme", &owner, &answering(2)).await;
    assert_eq!(call().await, (StatusCode::OK, json!({"version": 2})), "the applied version runs");

    let rollback = app.tenant_request(Method::POST, "acme", "/api/integrations/quote/rollback").bearer_auth(&owner).json(&json!({"version": 1}));
    assert_eq!(status_and_json(rollback).await.0, StatusCode::OK);
    assert_eq!(call().await, (StatusCode::OK, json!({"version": 1})), "the rolled back definition runs");

    let delete = app.tenant_request(Method::DELETE, "acme", "/api/integrations/quote").bearer_auth(&owner);
    assert_eq!(delete.send().await.unwrap().status(), StatusCode::NO_CONTENT);
    assert_eq!(error_code_of(hook(&app, "acme", "quote").json(&json!({})), StatusCode::NOT_FOUND).await, "not_found");
}

#[tokio::test]
async fn only_an_enabled_integration_of_this_hosts_tenant_with_a_webhook_can_be_triggered() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let globex = app.create_tenant("globex").await;
    let owner = app.owner_token(&acme).await;
    let globex_owner = app.owner_token(&globex).await;
    app.apply_yaml("acme", &owner, &hooked("orders-in", OPEN, ECHO_STEPS)).await;
    app.apply_yaml("acme", &owner, &hooked("paused", OPEN, ECHO_STEPS).replace("spec:\n", "spec:\n  enabled: false\n")).await;
    let manual_only = "apiVersion: tessera.dev/v1\nkind: Integration\nmetadata:\n  name: by-hand\nspec:\n  triggers:\n    - manual: {}\n  steps:\n    - name: say\n      log:\n        message: hi\n";
    app.apply_yaml("acme", &owner, manual_only).await;

    for name in ["nothing-here", "paused", "by-hand", "Not_A_Name"] {
        let code = error_code_of(hook(&app, "acme", name).json(&json!({"id": 1})), StatusCode::NOT_FOUND).await;
        assert_eq!(code, "not_found", "{name}");
    }
    // Another tenant's host does not reach acme's integration, nor does the platform host.
    assert_eq!(error_code_of(hook(&app, "globex", "orders-in").json(&json!({"id": 1})), StatusCode::NOT_FOUND).await, "not_found");
    let platform = app.platform_request(Method::POST, "/hooks/orders-in").json(&json!({"id": 1}));
    assert_eq!(platform.send().await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!((execution_count(&app, "acme").await, execution_count(&app, "globex").await), (0, 0));

    // The accepted execution belongs to acme alone.
    let (status, accepted) = status_and_json(hook(&app, "acme", "orders-in").json(&json!({"id": 5}))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let id = accepted["id"].as_str().unwrap();
    finished(&app, "acme", &owner, id).await;
    let (status, _) = app.tenant_get("globex", &globex_owner, &format!("/api/executions/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(app.tenant_get("globex", &globex_owner, "/api/executions").await.1["items"], json!([]));
    assert_eq!((execution_count(&app, "acme").await, execution_count(&app, "globex").await), (1, 0));
}

#[tokio::test]
async fn an_hmac_webhook_needs_a_matching_signature_of_the_raw_body() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let connections = "apiVersion: tessera.dev/v1\nkind: Connection\nmetadata:\n  name: shop-secret\nspec:\n  api_key:\n    header: X-Unused\n    value: whsec_hex\n---\napiVersion: tessera.dev/v1\nkind: Connection\nmetadata:\n  name: bank-secret\nspec:\n  bearer:\n    token: whsec_b64\n";
    app.apply_yaml("acme", &owner, connections).await;
    let hex_auth = "        auth:\n          hmac:\n            secret_from_connection: shop-secret\n            header: X-Hub-Signature-256\n            prefix: 'sha256='\n";
    let b64_auth = "        auth:\n          hmac:\n            secret_from_connection: bank-secret\n            header: X-Signature\n            encoding: base64\n";
    app.apply_yaml("acme", &owner, &hooked("shop-hook", hex_auth, ECHO_STEPS)).await;
    app.apply_yaml("acme", &owner, &hooked("bank-hook", b64_auth, ECHO_STEPS)).await;

    // The signature covers the exact bytes, whitespace included.
    let body = br#"{"id": 42,  "note": "signed"}"#.to_vec();
    let signed = |name: &str, header: &str, value: String| {
        hook(&app, "acme", name).header("content-type", "application/json").header(header, value).body(body.clone())
    };
    let (status, accepted) = status_and_json(signed("shop-hook", "X-Hub-Signature-256", format!("sha256={}", hmac_hex("whsec_hex", &body)))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let execution = finished(&app, "acme", &owner, accepted["id"].as_str().unwrap()).await;
    assert_eq!(execution["output"]["order"], 42);

    let mut mac = Hmac::<Sha256>::new_from_slice(b"whsec_b64").unwrap();
    mac.update(&body);
    let b64 = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(status_and_json(signed("bank-hook", "X-Signature", b64)).await.0, StatusCode::ACCEPTED);

    let refused = [
        signed("shop-hook", "X-Hub-Signature-256", format!("sha256={}", hmac_hex("wrong-secret", &body))),
        signed("shop-hook", "X-Hub-Signature-256", hmac_hex("whsec_hex", &body)),
        signed("shop-hook", "X-Other", format!("sha256={}", hmac_hex("whsec_hex", &body))),
        signed("bank-hook", "X-Signature", format!("sha256={}", hmac_hex("whsec_b64", &body))),
        hook(&app, "acme", "shop-hook")
            .header("X-Hub-Signature-256", format!("sha256={}", hmac_hex("whsec_hex", &body)))
            .json(&json!({"id": 43})),
    ];
    for (i, request) in refused.into_iter().enumerate() {
        assert_eq!(error_code_of(request, StatusCode::UNAUTHORIZED).await, "invalid_signature", "request {i}");
    }
    assert_eq!(execution_count(&app, "acme").await, 2, "refused requests create nothing");
}

#[tokio::test]
async fn an_api_key_webhook_needs_an_editor_key_of_the_tenant() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let globex = app.create_tenant("globex").await;
    let owner = app.owner_token(&acme).await;
    app.apply_yaml("acme", &owner, &hooked("keyed", "        auth: api_key\n", ECHO_STEPS)).await;
    let editor_key = api_key(&app, "acme", &owner, "editor").await;
    let viewer_key = api_key(&app, "acme", &owner, "viewer").await;
    let foreign_key = api_key(&app, "globex", &app.owner_token(&globex).await, "editor").await;
    let body = json!({"id": 1});

    assert_eq!(error_code_of(hook(&app, "acme", "keyed").json(&body), StatusCode::UNAUTHORIZED).await, "unauthenticated");
    let viewer = hook(&app, "acme", "keyed").bearer_auth(&viewer_key).json(&body);
    assert_eq!(error_code_of(viewer, StatusCode::FORBIDDEN).await, "forbidden");
    let foreign = hook(&app, "acme", "keyed").header("X-API-Key", &foreign_key).json(&body);
    assert_eq!(error_code_of(foreign, StatusCode::UNAUTHORIZED).await, "invalid_api_key");
    let user_token = hook(&app, "acme", "keyed").bearer_auth(&owner).json(&body);
    assert_eq!(error_code_of(user_token, StatusCode::UNAUTHORIZED).await, "invalid_api_key", "API keys only");
    assert_eq!(execution_count(&app, "acme").await, 0);

    let (status, accepted) = status_and_json(hook(&app, "acme", "keyed").bearer_auth(&editor_key).json(&body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let (status, accepted) = status_and_json(hook(&app, "acme", "keyed").header("X-API-Key", &editor_key).json(&body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let execution = finished(&app, "acme", &owner, accepted["id"].as_str().unwrap()).await;
    assert!(execution["trigger"]["headers"].get("x-api-key").is_none(), "the key is not stored: {execution}");
}

/// Each tenant starts at most `runtime.intake_per_second` executions per
/// second on a node: a tenant over it waits up to a second for its turn,
/// then gets 429 `rate_limited` with `Retry-After`, and nothing is stored
/// for the refused requests. Another tenant's bucket is its own.
#[tokio::test]
async fn a_tenant_over_its_intake_rate_is_refused_with_429_and_others_are_not() {
    let app = spawn_app_with(|c| {
        c.runtime.intake_per_second = 4;
        c.runtime.intake_burst = 4;
    })
    .await;
    let mut owners = Vec::new();
    for slug in ["acme", "globex"] {
        let tenant = app.create_tenant(slug).await;
        let owner = app.owner_token(&tenant).await;
        app.apply_yaml(slug, &owner, &hooked("orders", OPEN, ECHO_STEPS)).await;
        owners.push(owner);
    }

    let flood = (0..40).map(|i| hook(&app, "acme", "orders").json(&json!({"id": i})).send());
    let run = app.tenant_request(Method::POST, "acme", "/api/integrations/orders/run").bearer_auth(&owners[0]).json(&json!({}));
    let answers = futures::future::join_all(flood.chain([run.send()])).await;
    let (mut accepted, mut refused) = (0i64, 0);
    for answer in answers {
        let answer = answer.expect("an answer");
        match answer.status() {
            StatusCode::ACCEPTED => accepted += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                let retry: u64 = answer.headers()["retry-after"].to_str().unwrap().parse().unwrap();
                assert!(retry >= 1, "Retry-After says when to come back");
                let body: Value = answer.json().await.unwrap();
                assert_eq!(body["error"]["code"], "rate_limited", "{body}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {}", answer.text().await.unwrap()),
        }
    }
    assert!(refused > 0 && accepted >= 4, "burst of 4, then 4/s for at most a second's wait: {accepted} accepted, {refused} refused");
    assert!(accepted <= 4 + 4 * 3, "{accepted} accepted in well under three seconds");
    assert_eq!(execution_count(&app, "acme").await, accepted, "refused requests store nothing");

    // globex's bucket is untouched by acme's flood.
    for i in 0..4 {
        let (status, body) = status_and_json(hook(&app, "globex", "orders").json(&json!({"id": i}))).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    assert_eq!(execution_count(&app, "globex").await, 4);
}
