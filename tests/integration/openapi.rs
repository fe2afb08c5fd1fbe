//! Tessera's own REST API described by an OpenAPI 3.1 document generated
//! from the code, a browsable page that works offline, and schemathesis
//! run over the whole document against a live node (a short budget here;
//! `bench/schemathesis.sh` runs a long one): no request may produce a 5xx,
//! and every answer must be one the document describes.

use std::path::PathBuf;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tessera_tests::{status_and_json, TestApp};

use crate::cli::TempDir;

async fn document(app: &TestApp) -> Value {
    let (status, doc) = status_and_json(app.tenant_request(Method::GET, "acme", "/api/openapi.json")).await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    doc
}

#[tokio::test]
async fn the_api_is_described_by_an_openapi_document_and_a_page_that_works_offline() {
    let app = tessera_tests::spawn_app().await;
    app.create_tenant("acme").await;
    let doc = document(&app).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    let paths = doc["paths"].as_object().unwrap();
    for path in ["/api/users", "/api/apply", "/api/executions/{id}/retry", "/api/audit", "/api/platform/tenants", "/api/platform/audit/verify", "/hooks/{integration}"] {
        assert!(paths.contains_key(path), "{path} is not described");
    }
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            let declared: Vec<&str> = operation["parameters"].as_array().map(|ps| ps.iter().filter(|p| p["in"] == "path").map(|p| p["name"].as_str().unwrap()).collect()).unwrap_or_default();
            for segment in path.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}')) {
                assert!(declared.contains(&segment), "{method} {path}: path parameter {segment} undeclared");
            }
            assert!(operation["responses"]["400"]["content"]["application/json"].is_object(), "{method} {path}: no error answer");
            assert!(operation["tags"].as_array().is_some_and(|t| !t.is_empty()), "{method} {path}: no tag");
        }
    }
    // Request bodies are described field by field, unknown fields refused.
    let new_user = &doc["components"]["schemas"]["NewUser"];
    assert_eq!(new_user["additionalProperties"], false, "{new_user}");
    assert!(new_user["required"].as_array().unwrap().iter().any(|f| f == "email"), "{new_user}");

    // The page: Swagger UI from the binary itself, nothing fetched elsewhere.
    let page = app.tenant_request(Method::GET, "acme", "/api/docs/").send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui") && !html.contains("https://") && !html.contains("http://"), "{html}");
    let script = app.tenant_request(Method::GET, "acme", "/api/docs/swagger-ui-bundle.js").send().await.unwrap();
    assert_eq!(script.status(), StatusCode::OK);
    let config = app.tenant_request(Method::GET, "acme", "/api/docs/swagger-initializer.js").send().await.unwrap().text().await.unwrap();
    assert!(config.contains("/api/openapi.json"), "{config}");
}

/// schemathesis from `SCHEMATHESIS` or the PATH (`.ci/run` installs it).
fn schemathesis() -> PathBuf {
    if let Some(path) = std::env::var_os("SCHEMATHESIS") {
        return PathBuf::from(path);
    }
    let found = std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join("schemathesis")).find(|p| p.is_file()));
    found.unwrap_or_else(|| panic!("this test needs schemathesis (pip install schemathesis; .ci/run installs it) on PATH or in SCHEMATHESIS"))
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_answer_the_document_does_not_describe() {
    let app = tessera_tests::spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let platform = app.platform_token().await;
    let scratch = TempDir::new("openapi");
    let file = scratch.0.join("openapi.json");
    std::fs::write(&file, document(&app).await.to_string()).unwrap();
    let budget = std::env::var("TESSERA_SCHEMATHESIS_SECONDS").unwrap_or_else(|_| "45".into());
    let examples = std::env::var("TESSERA_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "25".into());
    for (host, token, label) in [(format!("acme.localhost:{}", app.port), owner, "tenant"), (format!("localhost:{}", app.port), platform, "platform")] {
        let output = tokio::process::Command::new(schemathesis())
            .arg("run")
            .arg(&file)
            .args(["--url", &app.base_url()])
            .args(["-H", &format!("Host: {host}"), "-H", &format!("Authorization: Bearer {token}")])
            .args(["--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"])
            .args(["--max-time", &budget, "--max-examples", &examples, "--seed", "7", "--request-timeout", "20"])
            // One worker: hypothesis describes its strategies by parsing their
            // source, which Python 3.11's parser cannot do from two threads
            // at once ("AST constructor recursion depth mismatch").
            .args(["--workers", "1"])
            .env("NO_COLOR", "1")
            // Its cache and hypothesis's database go in the scratch directory, not the checkout.
            .current_dir(&scratch.0)
            .kill_on_drop(true)
            .output()
            .await
            .expect("run schemathesis");
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "schemathesis found problems on the {label} host:\n{text}");
        // It ran the operations, not nothing: its summary counts them.
        assert!(text.contains("API Operations") && !text.contains("Tested: 0"), "{text}");
    }
}
