//! `GET /metrics`: served on its own listener only, counting what a test
//! did (requests by route pattern, executions by tenant and state, steps),
//! with the `tenant` label bounded and no tenant's figures on the API port.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use tessera_tests::{eventually, spawn_app, spawn_app_with, TestApp};

const HOOKED: &str = "apiVersion: tessera.dev/v1\nkind: Integration\nmetadata:\n  name: orders\nspec:\n  triggers:\n    - webhook:\n        auth: none\n  steps:\n    - name: shape\n      transform:\n        expression: '{id: .trigger.body.id}'\n";

async fn scrape(app: &TestApp) -> String {
    let address = app.metrics_address.expect("metrics.listen is set");
    let response = app.http.get(format!("http://{address}/metrics")).send().await.expect("scrape");
    assert_eq!(response.status(), StatusCode::OK);
    let kind = response.headers()["content-type"].to_str().unwrap().to_string();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    response.text().await.unwrap()
}

/// The value of the sample `series` (name and labels exactly as written).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_count_what_was_done_with_the_tenant_label_bounded() {
    let app = spawn_app_with(|c| {
        c.metrics.listen = Some("127.0.0.1:0".into());
        c.metrics.max_tenant_labels = 1;
    })
    .await;
    for (slug, calls) in [("acme", 3), ("globex", 2)] {
        let tenant = app.create_tenant(slug).await;
        let owner = app.owner_token(&tenant).await;
        app.apply_yaml(slug, &owner, HOOKED).await;
        for id in 0..calls {
            let sent = app.tenant_request(Method::POST, slug, "/hooks/orders").json(&serde_json::json!({"id": id})).send().await.unwrap();
            assert_eq!(sent.status(), StatusCode::ACCEPTED);
        }
        // acme's executions end before globex's start: acme takes the one label.
        let done = eventually(Duration::from_secs(15), || async {
            let finished = sample(&scrape(&app).await, r#"tessera_executions_finished_total{tenant="acme",state="succeeded"}"#);
            let other = sample(&scrape(&app).await, r#"tessera_executions_finished_total{tenant="_other",state="succeeded"}"#);
            finished == Some(3.0) && (slug == "acme" || other == Some(2.0))
        })
        .await;
        assert!(done, "{slug}'s executions never counted:\n{}", scrape(&app).await);
    }
    // Any token is a method to HTTP: an unusual one must not become a series.
    let brew = Method::from_bytes(b"BREW").unwrap();
    app.request_with_host(brew, "acme.localhost", "/api/me").send().await.unwrap();
    let text = scrape(&app).await;
    assert!(!text.contains("BREW") && text.contains(r#"method="OTHER""#), "{text}");
    assert_eq!(sample(&text, r#"tessera_http_requests_total{route="/hooks/{integration}",method="POST",status="202"}"#), Some(5.0), "{text}");
    assert_eq!(sample(&text, r#"tessera_executions_started_total{tenant="acme"}"#), Some(3.0), "{text}");
    assert_eq!(sample(&text, r#"tessera_executions_started_total{tenant="_other"}"#), Some(2.0), "{text}");
    assert!(!text.contains("globex"), "a tenant past the bound has no label of its own:\n{text}");
    assert_eq!(sample(&text, r#"tessera_step_duration_seconds_count{state="succeeded"}"#), Some(5.0), "{text}");
    assert!(sample(&text, "tessera_leases_held").unwrap() >= 2.0, "{text}");
    assert!(sample(&text, r#"tessera_pool_connections{pool="tenants",state="size"}"#).unwrap() >= 1.0, "{text}");
    assert!(text.contains(r#"tessera_batch_writes_count{batcher="intake"}"#), "{text}");

    // Not on the API's port, whatever the host: no tenant reads the node's figures.
    for host in ["acme.localhost", "localhost"] {
        let body = app.request_with_host(Method::GET, host, "/metrics").send().await.unwrap().text().await.unwrap();
        assert!(!body.contains("tessera_"), "metrics served on the API port for {host}");
    }
}

#[tokio::test]
async fn without_metrics_listen_nothing_is_served() {
    let app = spawn_app().await;
    assert!(app.metrics_address.is_none());
}
