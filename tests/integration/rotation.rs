//! Rotating the key that seals connection secrets: a node with the new key
//! and the old one in `secrets.previous_keys` still uses every connection;
//! `tessera secrets reseal` moves every sealed value to the new key, after
//! which the old key can go.

use std::{
    net::TcpListener,
    sync::{Arc, Mutex},
    time::Duration,
};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tessera_server::{sealing::KeyRing, startup::Application};
use tessera_tests::{eventually, spawn_app, status_and_json, TestApp};

use crate::cli::tessera_bin;

/// A local API that records the `Authorization` header of each call.
fn recording_api() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let data = web::Data::from(seen.clone());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let server = HttpServer::new(move || {
        App::new().app_data(data.clone()).default_service(web::to(|request: HttpRequest, seen: web::Data<Mutex<Vec<String>>>| async move {
            let auth = request.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
            seen.lock().unwrap().push(auth);
            HttpResponse::Ok().json(serde_json::json!({"ok": true}))
        }))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    (base, seen)
}

/// A node on `app`'s database with other secrets settings; returns its port.
fn node_with_keys(app: &TestApp, key: &str, previous: &[String]) -> u16 {
    let mut config = app.config.clone();
    config.secrets.key = Some(key.to_string());
    config.secrets.previous_keys = previous.to_vec();
    let node = Application::build_with_listener(config, TcpListener::bind("127.0.0.1:0").unwrap()).expect("node");
    let port = node.port();
    tokio::spawn(node.run_until_stopped());
    port
}

async fn run_on(app: &TestApp, port: u16, token: &str) -> Value {
    let request = app.tenant_request_on(port, Method::POST, "acme", "/api/integrations/call-crm/run?wait=true").bearer_auth(token);
    let (status, execution) = status_and_json(request).await;
    assert_eq!(status, StatusCode::OK, "{execution}");
    execution
}

async fn key_ids(app: &TestApp) -> Vec<String> {
    let rows = app.db().await.query("SELECT DISTINCT key_id FROM t_acme.connections", &[]).await.unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

#[tokio::test]
async fn a_rotated_key_keeps_connections_working_and_reseal_retires_the_old_one() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let (api, seen) = recording_api();
    let definition = format!(
        "apiVersion: tessera.dev/v1\nkind: Connection\nmetadata:\n  name: crm\nspec:\n  bearer:\n    token: crm-s3cret\n---\n\
         apiVersion: tessera.dev/v1\nkind: Integration\nmetadata:\n  name: call-crm\nspec:\n  triggers:\n    - manual: {{}}\n  steps:\n    - name: ping\n      http:\n        url: '{api}/ping'\n        connection: crm\n"
    );
    app.apply_yaml("acme", &owner, &definition).await;
    let old_key = app.config.secrets.key.clone().unwrap();
    let old_id = KeyRing::from_config(&app.config.secrets).unwrap().current_key_id().to_string();
    assert_eq!(key_ids(&app).await, std::slice::from_ref(&old_id));
    app.stop().await;

    // The new key is current; the old one still opens what it sealed.
    let new_key = tessera_server::sealing::generate_key();
    let rotated = node_with_keys(&app, &new_key, std::slice::from_ref(&old_key));
    assert_eq!(run_on(&app, rotated, &owner).await["state"], "succeeded");
    assert_eq!(seen.lock().unwrap().last().unwrap(), "Bearer crm-s3cret");

    // Re-seal everything with the new key, from the command line.
    let scratch = std::env::temp_dir().join(format!("tessera-reseal-{}.toml", uuid::Uuid::new_v4().simple()));
    std::fs::write(
        &scratch,
        format!("database_url = \"{}\"\n[secrets]\nkey = \"{new_key}\"\nprevious_keys = [\"{old_key}\"]\n", app.database_url),
    )
    .unwrap();
    let output = tokio::process::Command::new(tessera_bin()).args(["-c", scratch.to_str().unwrap(), "secrets", "reseal"]).output().await.unwrap();
    let _ = std::fs::remove_file(&scratch);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("acme: 1 connection(s) re-sealed"), "{output:?}");
    let mut new_config = app.config.secrets.clone();
    new_config.key = Some(new_key.clone());
    let new_id = KeyRing::from_config(&new_config).unwrap().current_key_id().to_string();
    assert_eq!(key_ids(&app).await, [new_id]);

    // Without the old key at all, the connection still works.
    let fresh = node_with_keys(&app, &new_key, &[]);
    let calls = seen.lock().unwrap().len();
    assert_eq!(run_on(&app, fresh, &owner).await["state"], "succeeded");
    assert!(eventually(Duration::from_secs(5), || async { seen.lock().unwrap().len() > calls }).await);
    assert_eq!(seen.lock().unwrap().last().unwrap(), "Bearer crm-s3cret");
}
