//! The admin panel as a node serves it (content types, caching, the SPA
//! fallback, the Content-Security-Policy), the API it needs (dry-run apply,
//! execution stats, each tenant's own), and the panel driven in a real
//! browser (`web/tests/`, Chromium through playwright-core).

use std::{path::Path, process::Stdio, time::Duration};

use reqwest::{header, Method, StatusCode};
use serde_json::json;
use tessera_tests::{spawn_app, status_and_json, TestApp, PLATFORM_OWNER};

const PING: &str = "apiVersion: tessera.dev/v1
kind: Integration
metadata:
  name: ping
spec:
  triggers:
    - manual: {}
  steps:
    - name: shape
      transform:
        expression: \"{n: .trigger.body.n}\"
";

const BROKEN: &str = "apiVersion: tessera.dev/v1
kind: Integration
metadata:
  name: broken
spec:
  steps:
    - name: shape
      transfrom:
        expression: \".\"
";

async fn page(app: &TestApp, host: &str, path: &str) -> reqwest::Response {
    app.request_with_host(Method::GET, host, path).send().await.expect("panel request")
}

fn header_of<'a>(response: &'a reqwest::Response, name: header::HeaderName) -> &'a str {
    response.headers().get(&name).and_then(|v| v.to_str().ok()).unwrap_or_else(|| panic!("no {name} header"))
}

/// The first module script `index.html` loads: a hashed file under /assets/.
fn entry_script(html: &str) -> String {
    let start = html.find("src=\"/assets/").expect("index.html loads a script from /assets/ (is the panel built?)") + 5;
    let end = start + html[start..].find('"').unwrap();
    html[start..end].to_string()
}

#[tokio::test]
async fn every_node_serves_the_panel_with_its_content_types_caching_and_csp() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    let tenant_host = format!("acme.localhost:{}", app.port);
    let platform_host = format!("localhost:{}", app.port);

    for (host, path) in [(&tenant_host, "/"), (&tenant_host, "/integrations/orders"), (&platform_host, "/tenants")] {
        let response = page(&app, host, path).await;
        assert_eq!(response.status(), StatusCode::OK, "{host}{path}");
        assert_eq!(header_of(&response, header::CONTENT_TYPE), "text/html; charset=utf-8");
        assert_eq!(header_of(&response, header::CACHE_CONTROL), "no-cache");
        let csp = header_of(&response, header::CONTENT_SECURITY_POLICY).to_string();
        assert!(csp.contains("script-src 'self';") && !csp.contains("unsafe-eval"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("connect-src 'self'"), "{csp}");
        let html = response.text().await.unwrap();
        assert!(!html.contains("<script>") && !html.contains("<script type=\"module\">"), "no inline script: {html}");
    }

    let html = page(&app, &tenant_host, "/").await.text().await.unwrap();
    let script = entry_script(&html);
    let response = page(&app, &tenant_host, &script).await;
    assert_eq!(response.status(), StatusCode::OK, "{script}");
    assert_eq!(header_of(&response, header::CONTENT_TYPE), "text/javascript; charset=utf-8");
    assert_eq!(header_of(&response, header::CACHE_CONTROL), "public, max-age=31536000, immutable");
    let etag = header_of(&response, header::ETAG).to_string();
    let again = app.request_with_host(Method::GET, &tenant_host, &script).header(header::IF_NONE_MATCH, &etag).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    let gzipped = app.request_with_host(Method::GET, &tenant_host, &script).header(header::ACCEPT_ENCODING, "gzip").send().await.unwrap();
    assert_eq!(header_of(&gzipped, header::CONTENT_ENCODING), "gzip", "hashed assets are compressed for browsers that ask");

    // Never the page where a file or the API was meant.
    for path in ["/assets/no-such-file.js", "/api/no-such-endpoint", "/hooks"] {
        let (status, body) = status_and_json(app.request_with_host(Method::GET, &tenant_host, path)).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")), "{path}: {body}");
    }
    let (status, body) = status_and_json(app.request_with_host(Method::POST, &tenant_host, "/settings")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")), "{body}");
    // What a host serves, for the panel to choose between its two faces.
    let (_, tenant) = status_and_json(app.request_with_host(Method::GET, &tenant_host, "/api/host")).await;
    assert_eq!(tenant, json!({"kind": "tenant", "tenant": "acme"}));
    let (_, platform) = status_and_json(app.request_with_host(Method::GET, &platform_host, "/api/host")).await;
    assert_eq!(platform, json!({"kind": "platform"}));
    let (status, body) = status_and_json(app.request_with_host(Method::GET, &format!("nobody.localhost:{}", app.port), "/api/host")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("tenant_not_found")), "{body}");
    // An unknown tenant's host gets no panel either.
    let response = page(&app, &format!("nobody.localhost:{}", app.port), "/").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_dry_run_apply_answers_what_would_be_stored_and_stores_nothing() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let apply = |yaml: &'static str, token: String, query: &'static str| {
        app.tenant_request(Method::POST, "acme", &format!("/api/apply{query}"))
            .bearer_auth(token)
            .header("content-type", "application/yaml")
            .body(yaml)
    };

    let (status, body) = status_and_json(apply(PING, owner.clone(), "?dry_run=true")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["dry_run"], json!(true));
    assert_eq!(body["items"], json!([{"kind": "Integration", "name": "ping", "version": 1, "result": "created"}]));
    let (_, listed) = app.tenant_get("acme", &owner, "/api/integrations").await;
    assert_eq!(listed["items"], json!([]), "a dry run stores nothing");

    // Errors come with their line and column, as for a real apply.
    let (status, body) = status_and_json(apply(BROKEN, owner.clone(), "?dry_run=true")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_definition")), "{body}");
    assert!(body["error"]["errors"].as_array().unwrap().iter().any(|e| e["line"] == json!(7)), "{body}");

    // After a real apply, the same file is `unchanged` in a dry run.
    let (status, _) = status_and_json(apply(PING, owner.clone(), "")).await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = status_and_json(apply(PING, owner.clone(), "?dry_run=true")).await;
    assert_eq!(body["items"][0]["result"], json!("unchanged"));

    let viewer = app.user_with_role(&acme, "viewer").await;
    let (status, body) = status_and_json(apply(PING, viewer, "?dry_run=true")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a viewer may not even validate: {body}");
    let (status, body) = status_and_json(apply(PING, owner, "?dry_run=maybe")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn execution_stats_count_only_the_caller_s_tenant_over_its_window() {
    let app = spawn_app().await;
    let (acme, globex) = (app.create_tenant("acme").await, app.create_tenant("globex").await);
    let (acme_token, globex_token) = (app.owner_token(&acme).await, app.owner_token(&globex).await);
    let failing = PING.replace("name: ping", "name: flaky").replace("{n: .trigger.body.n}", "error(\\\"boom\\\")");
    app.apply_yaml("acme", &acme_token, &format!("{PING}---\n{failing}")).await;
    for (name, runs) in [("ping", 3), ("flaky", 2)] {
        for n in 0..runs {
            let response = app.call("acme", Method::POST, &format!("/api/integrations/{name}/run?wait=true"), &acme_token, Some(json!({"n": n}))).await;
            assert_eq!(response.status(), StatusCode::OK, "{name}");
        }
    }

    // The integration list carries each one's newest execution.
    let (_, listed) = app.tenant_get("acme", &acme_token, "/api/integrations").await;
    let last = |name: &str| listed["items"].as_array().unwrap().iter().find(|i| i["name"] == json!(name)).unwrap()["last_run"].clone();
    assert_eq!((last("flaky")["state"].as_str(), last("ping")["state"].as_str()), (Some("failed"), Some("succeeded")), "{listed}");

    let (status, stats) = app.tenant_get("acme", &acme_token, "/api/stats?window=24h").await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    assert_eq!((stats["window"].as_str(), stats["total"].as_i64()), (Some("24h"), Some(5)), "{stats}");
    assert_eq!(stats["by_state"], json!({"succeeded": 3, "failed": 2}));
    assert!((stats["failure_rate"].as_f64().unwrap() - 0.4).abs() < 1e-9, "{stats}");
    assert!(stats["p50_ms"].as_f64().unwrap() >= 0.0 && stats["p99_ms"].as_f64().unwrap() >= stats["p50_ms"].as_f64().unwrap());
    assert_eq!(stats["failing"], json!([{"integration": "flaky", "failed": 2, "total": 2}]));
    let series = stats["series"].as_array().unwrap();
    let summed: i64 = series.iter().map(|b| b["succeeded"].as_i64().unwrap() + b["failed"].as_i64().unwrap()).sum();
    assert_eq!(summed, 5, "{stats}");

    let (_, week) = app.tenant_get("acme", &acme_token, "/api/stats?window=7d").await;
    assert_eq!(week["total"], json!(5));
    // Another tenant sees only its own (none), and a bad window is a 400.
    let (_, other) = app.tenant_get("globex", &globex_token, "/api/stats").await;
    assert_eq!((other["total"].as_i64(), other["failing"].clone()), (Some(0), json!([])), "{other}");
    let (status, body) = app.tenant_get("acme", &acme_token, "/api/stats?window=1y").await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")), "{body}");
    let (status, _) = app.tenant_get("globex", &acme_token, "/api/stats").await;
    assert!(status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN, "acme's token on globex: {status}");

    // The platform console's view: per tenant, per UTC day.
    let platform = app.platform_token().await;
    let daily = |slug: &str, query: &str| app.platform_request(Method::GET, &format!("/api/platform/tenants/{slug}/stats{query}")).bearer_auth(&platform);
    let (status, body) = status_and_json(daily("acme", "?days=7")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["days"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!((body["days"][0]["total"].as_i64(), body["days"][0]["failed"].as_i64()), (Some(5), Some(2)), "{body}");
    let (_, body) = status_and_json(daily("globex", "")).await;
    assert_eq!(body["days"], json!([]));
    let (status, body) = status_and_json(daily("acme", "?days=0")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")), "{body}");
    let (status, body) = status_and_json(daily("nobody", "")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("tenant_not_found")), "{body}");
    let as_tenant = app.platform_request(Method::GET, "/api/platform/tenants/acme/stats").bearer_auth(&acme_token);
    let (status, _) = status_and_json(as_tenant).await;
    assert!(status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN, "a tenant token on the platform API: {status}");
}

/// The browser tests of `web/tests/` against this node: they fail, never
/// skip, without Node.js or Chromium. `TESSERA_SCREENSHOTS=dir` makes them
/// save a screenshot of each main page there.
#[tokio::test]
async fn the_panel_works_in_a_real_browser() {
    let app = spawn_app().await;
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web");
    let chromium = std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(Path::new(&chromium).is_file(), "the browser tests need Chromium at {chromium} (apt-get install chromium)");
    // A tenant with 100,000 stored executions, for the executions page's figure.
    let bulk = app.create_tenant("bulk").await;
    app.apply_yaml("bulk", &app.owner_token(&bulk).await, PING).await;
    let db = app.db().await;
    db.execute(
        "INSERT INTO t_bulk.executions (id, integration, version, state, trigger, created_at, started_at, finished_at) \
         SELECT gen_random_uuid(), 'ping', 1, 'succeeded', '{\"kind\": \"manual\", \"body\": {}}', t, t, t + interval '5 ms' \
         FROM generate_series(1, 100000) g, LATERAL (SELECT now() - make_interval(secs => g) AS t) at",
        &[],
    )
    .await
    .expect("seed 100,000 executions");
    db.batch_execute("ANALYZE t_bulk.executions").await.unwrap();
    let mut command = tokio::process::Command::new("node");
    command
        .args(["--test", "--test-concurrency=1", "tests/"])
        .current_dir(&web)
        .env("TESSERA_PANEL_PORT", app.port.to_string())
        .env("TESSERA_PANEL_OWNER_EMAIL", PLATFORM_OWNER.0)
        .env("TESSERA_PANEL_OWNER_PASSWORD", PLATFORM_OWNER.1)
        .env("CHROMIUM_PATH", &chromium)
        .env("TESSERA_PANEL_BULK_SLUG", &bulk.slug)
        .env("TESSERA_PANEL_BULK_EMAIL", &bulk.owner_email)
        .env("TESSERA_PANEL_BULK_PASSWORD", &bulk.owner_password)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command.spawn().expect("run the browser tests with node (Node.js 20 or newer is needed)");
    let output = tokio::time::timeout(Duration::from_secs(600), child.wait_with_output())
        .await
        .expect("the browser tests ended within 10 minutes")
        .expect("the browser tests ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The figures the tests measure, for docs/performance.md.
    stdout.lines().filter(|l| l.contains("PANEL_METRIC")).for_each(|l| println!("{l}"));
    if !output.status.success() {
        // The whole run, then its failures again at the very end, where a
        // log cut to its last lines still shows why; no backtrace follows
        // (it would only point here).
        println!("the browser tests failed:\n{stdout}\n{stderr}");
        println!("---- the failing browser tests ----\n{}", failed_tests(&stdout));
        std::panic::resume_unwind(Box::new("the browser tests failed"));
    }
}

/// The TAP blocks of the tests that failed: `not ok ...` up to its `...`.
fn failed_tests(tap: &str) -> String {
    let mut failed = Vec::new();
    let mut inside = false;
    for line in tap.lines() {
        inside |= line.starts_with("not ok");
        if inside {
            failed.push(line);
            inside = line.trim() != "...";
        }
    }
    failed.join("\n")
}
