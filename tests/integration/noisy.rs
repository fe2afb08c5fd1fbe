//! Noisy neighbour: one tenant floods the node with failing, slow
//! (timing-out) and CPU-heavy executions while another runs small ones.
//! The quiet tenant's executions all succeed, and every failure stays in
//! the noisy tenant. (Panics cannot be provoked from a definition; the
//! runtime's unit tests prove a panic fails its own execution only.)

use std::time::Duration;

use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::json;
use tessera_tests::{eventually, spawn_app_with, status_and_json, TestApp};

fn hooked(name: &str, extra: &str, steps: &str) -> String {
    format!("apiVersion: tessera.dev/v1\nkind: Integration\nmetadata:\n  name: {name}\nspec:\n{extra}  triggers:\n    - webhook:\n        auth: none\n  steps:\n{steps}")
}

async fn states(app: &TestApp, schema: &str) -> Vec<(String, String, Option<String>, i64)> {
    let sql = format!(
        "SELECT integration, state, error->>'code', count(*) FROM {schema}.executions GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    );
    app.db().await.query(&sql, &[]).await.unwrap().iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect()
}

async fn unfinished(app: &TestApp, schema: &str) -> i64 {
    let sql = format!("SELECT count(*) FROM {schema}.executions WHERE state IN ('queued', 'running')");
    app.db().await.query_one(&sql, &[]).await.unwrap().get(0)
}

fn row(integration: &str, state: &str, code: Option<&str>, n: i64) -> (String, String, Option<String>, i64) {
    (integration.into(), state.into(), code.map(Into::into), n)
}

#[tokio::test]
async fn a_noisy_tenant_cannot_fail_or_starve_a_quiet_one() {
    let app = spawn_app_with(|c| c.runtime.max_concurrent_executions = 4).await;
    let noisy = app.create_tenant("noisy").await;
    let quiet = app.create_tenant("quiet").await;
    let (noisy_owner, quiet_owner) = (app.owner_token(&noisy).await, app.owner_token(&quiet).await);
    let fails = hooked("fails", "", "    - name: boom\n      fail:\n        message: 'noisy failure ${{ .trigger.body.n }}'\n");
    let slow = hooked("slow", "  timeout: 1s\n", "    - name: nap\n      delay:\n        duration: 1h\n");
    let heavy = hooked("heavy", "", "    - name: churn\n      transform:\n        expression: '[range(0; 200000)] | length'\n");
    for yaml in [fails, slow, heavy] {
        app.apply_yaml("noisy", &noisy_owner, &yaml).await;
    }
    let ping = "    - name: shape\n      transform:\n        expression: '{n: .trigger.body.n}'\n    - name: report\n      log:\n        message: 'ping ${{ .steps.shape.n }}'\n";
    app.apply_yaml("quiet", &quiet_owner, &hooked("ping", "", ping)).await;

    // The noisy tenant's flood and the quiet tenant's work arrive together.
    let mut posts = Vec::new();
    for n in 0..20 {
        for (slug, name) in [("noisy", "fails"), ("noisy", "slow"), ("noisy", "heavy"), ("quiet", "ping")] {
            posts.push(status_and_json(app.tenant_request(Method::POST, slug, &format!("/hooks/{name}")).json(&json!({"n": n}))));
        }
    }
    for (status, body) in join_all(posts).await {
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }

    let all_done = eventually(Duration::from_secs(60), || async {
        unfinished(&app, "t_quiet").await == 0 && unfinished(&app, "t_noisy").await == 0
    })
    .await;
    assert!(all_done, "quiet: {:?}; noisy: {:?}", states(&app, "t_quiet").await, states(&app, "t_noisy").await);
    assert_eq!(states(&app, "t_quiet").await, vec![row("ping", "succeeded", None, 20)]);
    assert_eq!(
        states(&app, "t_noisy").await,
        vec![row("fails", "failed", Some("fail"), 20), row("heavy", "succeeded", None, 20), row("slow", "failed", Some("timeout"), 20)]
    );
}
