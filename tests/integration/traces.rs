//! Trace export: with `log.otlp_endpoint` set, a `tessera serve` process
//! sends its requests', executions' and steps' spans to an OTLP/HTTP
//! collector (here a loopback stand-in that keeps what it is sent), and
//! flushes the last of them when it stops.

use std::{
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use actix_web::{web, HttpResponse};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tessera_tests::{eventually, fault, fresh_database, serve_locally};

use crate::cli::{run, tessera, TempDir};

type Received = Mutex<Vec<(String, Vec<u8>)>>;

/// The collector: keeps every request's path and body, answers 200.
async fn collect(received: web::Data<Received>, request: actix_web::HttpRequest, body: web::Bytes) -> HttpResponse {
    received.lock().unwrap().push((request.path().to_string(), body.to_vec()));
    HttpResponse::Ok().content_type("application/x-protobuf").finish()
}

/// Whether any batch sent so far holds `text` (span names, attribute values
/// and the service name are plain strings inside the protobuf).
fn sent(received: &Received, text: &str) -> bool {
    received.lock().unwrap().iter().any(|(_, body)| body.windows(text.len()).any(|w| w == text.as_bytes()))
}

#[tokio::test]
async fn a_node_exports_request_execution_and_step_spans_over_otlp_when_configured() {
    let received = Arc::new(Received::default());
    let collector = serve_locally(received.clone(), collect);
    let (_, url) = fresh_database().await;
    let scratch = TempDir::new("traces");
    let port = fault::free_port().expect("a free port");
    let env = [
        ("TESSERA_DATABASE_URL", url.clone()),
        ("TESSERA_LISTEN", format!("127.0.0.1:{port}")),
        ("TESSERA_JWT_SECRET", format!("traces-test-secret-{}", uuid::Uuid::new_v4().simple())),
        ("TESSERA_SECRETS__KEY", tessera_server::sealing::generate_key()),
        ("TESSERA_LOG__LEVEL", "info".into()),
        ("TESSERA_LOG__OTLP_ENDPOINT", format!("{collector}/v1/traces")),
        ("TESSERA_LOG__OTLP_SERVICE_NAME", "tessera-under-test".into()),
        // The SDK's batch delay, so the test does not wait its default 5 s.
        ("OTEL_BSP_SCHEDULE_DELAY", "200".into()),
    ];
    let created = run(&env, &["tenant", "create", "acme", "--owner-email", "owner@acme.test", "--owner-password", "acme-owner-password"]).await;
    assert!(created.ok(), "{created:?}");
    let log_path = scratch.0.join("serve.log");
    let mut child = tessera(&env).arg("serve").stdout(Stdio::null()).stderr(std::fs::File::create(&log_path).unwrap()).spawn().expect("start tessera serve");
    let base = format!("http://127.0.0.1:{port}");
    let host = format!("acme.localhost:{port}");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let up = eventually(Duration::from_secs(30), || async { http.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status() == StatusCode::OK) }).await;
    assert!(up, "serve answers; log:\n{}", std::fs::read_to_string(&log_path).unwrap_or_default());

    let login = http.post(format!("{base}/api/auth/login")).header("host", &host).json(&json!({"email": "owner@acme.test", "password": "acme-owner-password"}));
    let token = login.send().await.unwrap().json::<Value>().await.unwrap()["token"].as_str().unwrap().to_string();
    let definition = "apiVersion: tessera.dev/v1\nkind: Integration\nmetadata:\n  name: traced\nspec:\n  triggers:\n    - webhook:\n        auth: none\n  steps:\n    - name: shape_it\n      transform:\n        expression: '{id: .trigger.body.id}'\n";
    let applied = http.post(format!("{base}/api/apply")).header("host", &host).header("content-type", "application/yaml").bearer_auth(&token).body(definition).send().await.unwrap();
    assert_eq!(applied.status(), StatusCode::OK, "{}", applied.text().await.unwrap());
    let called = http.post(format!("{base}/hooks/traced")).header("host", &host).json(&json!({"id": 7})).send().await.unwrap();
    assert_eq!(called.status(), StatusCode::ACCEPTED);

    let exported = eventually(Duration::from_secs(20), || async { sent(&received, "execution") && sent(&received, "shape_it") }).await;
    assert!(exported, "no execution or step span reached the collector; log:\n{}", std::fs::read_to_string(&log_path).unwrap_or_default());
    assert!(sent(&received, "tessera-under-test"), "the spans name the service");
    assert!(sent(&received, "/hooks/{integration}"), "the request's span is exported with its route");
    assert!(received.lock().unwrap().iter().all(|(path, _)| path == "/v1/traces"));

    // A request just before SIGTERM: its span is there once the process has stopped.
    http.get(format!("{base}/readyz")).send().await.unwrap();
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait()).await.expect("serve stops").unwrap();
    assert!(status.success());
    assert!(sent(&received, "/readyz"), "the last request's span reached the collector");
}
