//! Integrations and connections applied from definition files: versions
//! that only grow, rollback, all-or-nothing validation with positions,
//! roles, tenant isolation, and connection secrets that are stored sealed
//! and never shown.

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tessera_tests::{error_code, spawn_app, spawn_app_with, TestApp};

const ORDERS: &str = include_str!("../../tenant-runtime/src/definition/testdata/orders.yaml");
/// Every secret value in ORDERS.
const ORDERS_SECRETS: &[&str] = &["s3cr3t", "whsec_0123456789", "cs_0123456789"];

/// One integration whose one step logs `message`.
fn log_integration(name: &str, message: &str) -> String {
    format!(
        "apiVersion: tessera.dev/v1\nkind: Integration\nmetadata:\n  name: {name}\nspec:\n  steps:\n    - name: say\n      \
         log:\n        message: {message}\n"
    )
}

async fn send(app: &TestApp, slug: &str, token: &str, method: Method, path: &str) -> (StatusCode, Value) {
    let response = app.tenant_request(method, slug, path).bearer_auth(token).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn apply_as(app: &TestApp, slug: &str, token: &str, content_type: &str, body: &str) -> reqwest::Response {
    app.tenant_request(Method::POST, slug, "/api/apply")
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// Apply YAML and expect success; returns `(kind, name, version, result)` per resource.
async fn apply_ok(app: &TestApp, slug: &str, token: &str, yaml: &str) -> Vec<(String, String, i64, String)> {
    let response = apply_as(app, slug, token, "application/yaml", yaml).await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let text = |key: &str| i[key].as_str().unwrap().to_string();
            (text("kind"), text("name"), i["version"].as_i64().unwrap(), text("result"))
        })
        .collect()
}

fn results(applied: &[(String, String, i64, String)]) -> Vec<(&str, i64, &str)> {
    applied.iter().map(|(_, name, version, result)| (name.as_str(), *version, result.as_str())).collect()
}

async fn count(app: &TestApp, table: &str) -> i64 {
    app.count(&format!("SELECT count(*) FROM {table}")).await
}

#[tokio::test]
async fn a_realistic_file_is_stored_and_reapplying_it_changes_nothing() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let editor = app.user_with_role(&acme, "editor").await;

    let applied = apply_ok(&app, "acme", &editor, ORDERS).await;
    assert_eq!(
        results(&applied),
        [
            ("orders-db", 1, "created"),
            ("rabbit", 1, "created"),
            ("shop-webhook-secret", 1, "created"),
            ("warehouse-api", 1, "created"),
            ("order-intake", 1, "created"),
            ("inventory-poll", 1, "created"),
            ("order-events", 1, "created"),
        ]
    );
    assert_eq!(applied[0].0, "Connection");
    assert_eq!(applied[4].0, "Integration");

    let again = apply_ok(&app, "acme", &editor, ORDERS).await;
    assert!(again.iter().all(|(.., version, result)| *version == 1 && result == "unchanged"), "{again:?}");
    assert_eq!(count(&app, "t_acme.integration_versions").await, 3);

    let (status, list) = send(&app, "acme", &editor, Method::GET, "/api/integrations").await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<_> = list["items"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["inventory-poll", "order-events", "order-intake"]);
    assert_eq!(list["items"][0]["current_version"], 1);
    assert_eq!(list["items"][0]["enabled"], true);

    let (status, one) = send(&app, "acme", &editor, Method::GET, "/api/integrations/order-intake").await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(one["version"], 1);
    assert_eq!(one["definition"]["kind"], "Integration");
    assert_eq!(one["definition"]["spec"]["steps"][1]["sql"]["connection"], "orders-db");

    // The same resources as JSON are the same resources.
    let as_json = serde_json::to_string(&serde_json::json!([one["definition"]])).unwrap();
    let response = apply_as(&app, "acme", &editor, "application/json", &as_json).await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["items"][0]["result"], "unchanged", "{body}");
}

#[tokio::test]
async fn changes_add_versions_and_a_rollback_adds_one_with_the_old_definition() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;

    assert_eq!(results(&apply_ok(&app, "acme", &owner, &log_integration("greeter", "hello")).await), [("greeter", 1, "created")]);
    assert_eq!(results(&apply_ok(&app, "acme", &owner, &log_integration("greeter", "bonjour")).await), [("greeter", 2, "updated")]);
    assert_eq!(results(&apply_ok(&app, "acme", &owner, &log_integration("greeter", "bonjour")).await), [("greeter", 2, "unchanged")]);

    let (_, versions) = send(&app, "acme", &owner, Method::GET, "/api/integrations/greeter/versions").await;
    let numbers: Vec<_> = versions["items"].as_array().unwrap().iter().map(|v| v["version"].as_i64().unwrap()).collect();
    assert_eq!(numbers, [2, 1]);
    let (status, first) = send(&app, "acme", &owner, Method::GET, "/api/integrations/greeter/versions/1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first["definition"]["spec"]["steps"][0]["log"]["message"], "hello");

    let rollback = |version: i64| {
        app.tenant_request(Method::POST, "acme", "/api/integrations/greeter/rollback")
            .bearer_auth(&owner)
            .json(&serde_json::json!({ "version": version }))
            .send()
    };
    let response = rollback(1).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let current: Value = response.json().await.unwrap();
    assert_eq!(current["version"], 3);
    assert_eq!(current["definition"], first["definition"]);
    let (_, now) = send(&app, "acme", &owner, Method::GET, "/api/integrations/greeter").await;
    assert_eq!((now["version"].clone(), now["definition"].clone()), (3.into(), first["definition"].clone()));
    // History only grows: version 2 is still there.
    let (status, _) = send(&app, "acme", &owner, Method::GET, "/api/integrations/greeter/versions/2").await;
    assert_eq!(status, StatusCode::OK);

    let unknown = rollback(99).await.unwrap();
    assert_eq!((unknown.status(), error_code(unknown).await), (StatusCode::NOT_FOUND, "not_found".into()));
    let (status, _) = send(&app, "acme", &owner, Method::GET, "/api/integrations/greeter/versions/99").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, _) = send(&app, "acme", &owner, Method::DELETE, "/api/integrations/greeter").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for path in ["/api/integrations/greeter", "/api/integrations/greeter/versions"] {
        assert_eq!(send(&app, "acme", &owner, Method::GET, path).await.0, StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(count(&app, "t_acme.integration_versions").await, 0);
}

/// Three documents: a valid connection, an integration with a bad step
/// name, and one that uses a connection that exists nowhere.
const INVALID: &str = "\
apiVersion: tessera.dev/v1
kind: Connection
metadata:
  name: fine
spec:
  bearer:
    token: tok_valid_but_never_stored
---
apiVersion: tessera.dev/v1
kind: Integration
metadata:
  name: broken
spec:
  steps:
    - name: Bad-Name
      log:
        message: hi
---
apiVersion: tessera.dev/v1
kind: Integration
metadata:
  name: dangling
spec:
  steps:
    - name: read
      sql:
        connection: nowhere
        statement: SELECT 1
";

#[tokio::test]
async fn an_invalid_file_reports_every_error_with_its_position_and_stores_nothing() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;

    let response = apply_as(&app, "acme", &owner, "application/yaml", INVALID).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_definition", "{body}");
    let errors: Vec<_> = body["error"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["document"].as_i64().unwrap(), e["path"].as_str().unwrap(), e["line"].as_i64().unwrap(), e["column"].as_i64().unwrap()))
        .collect();
    assert_eq!(errors, [(2, "spec.steps[0].name", 15, 13), (3, "spec.steps[0].sql.connection", 27, 21)], "{body}");
    assert!(body["error"]["errors"][1]["message"].as_str().unwrap().contains("nowhere"), "{body}");

    for table in ["connections", "integrations", "integration_versions"] {
        assert_eq!(count(&app, &format!("t_acme.{table}")).await, 0, "{table}");
    }

    // Once the connection exists in the tenant, a later file may use it.
    let connection = "apiVersion: tessera.dev/v1\nkind: Connection\nmetadata:\n  name: nowhere\nspec:\n  postgres:\n    url: postgres://db/x\n";
    apply_ok(&app, "acme", &owner, connection).await;
    let dangling = INVALID.split("---\n").nth(2).unwrap();
    assert_eq!(results(&apply_ok(&app, "acme", &owner, dangling).await), [("dangling", 1, "created")]);
}

#[tokio::test]
async fn a_viewer_reads_integrations_but_cannot_change_them() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    apply_ok(&app, "acme", &owner, &log_integration("greeter", "hello")).await;
    let viewer = app.user_with_role(&acme, "viewer").await;

    for path in ["/api/integrations", "/api/integrations/greeter", "/api/integrations/greeter/versions/1", "/api/connections", "/api/schema"] {
        assert_eq!(send(&app, "acme", &viewer, Method::GET, path).await.0, StatusCode::OK, "{path}");
    }
    let refused = apply_as(&app, "acme", &viewer, "application/yaml", &log_integration("greeter", "changed")).await;
    assert_eq!((refused.status(), error_code(refused).await), (StatusCode::FORBIDDEN, "forbidden".into()));
    let rollback = app
        .tenant_request(Method::POST, "acme", "/api/integrations/greeter/rollback")
        .bearer_auth(&viewer)
        .json(&serde_json::json!({"version": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(rollback.status(), StatusCode::FORBIDDEN);
    assert_eq!(send(&app, "acme", &viewer, Method::DELETE, "/api/integrations/greeter").await.0, StatusCode::FORBIDDEN);

    let (_, current) = send(&app, "acme", &owner, Method::GET, "/api/integrations/greeter").await;
    assert_eq!(current["version"], 1);
    assert_eq!(count(&app, "t_acme.integration_versions").await, 1);
}

#[tokio::test]
async fn tenants_never_see_or_touch_each_others_integrations() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let globex = app.create_tenant("globex").await;
    let (acme_owner, globex_owner) = (app.owner_token(&acme).await, app.owner_token(&globex).await);
    apply_ok(&app, "acme", &acme_owner, &log_integration("greeter", "hello")).await;
    apply_ok(&app, "acme", &acme_owner, &log_integration("greeter", "hello again")).await;

    let (_, list) = send(&app, "globex", &globex_owner, Method::GET, "/api/integrations").await;
    assert_eq!(list["items"], serde_json::json!([]));
    for path in ["/api/integrations/greeter", "/api/integrations/greeter/versions", "/api/integrations/greeter/versions/1"] {
        assert_eq!(send(&app, "globex", &globex_owner, Method::GET, path).await.0, StatusCode::NOT_FOUND, "{path}");
    }
    let rollback = app
        .tenant_request(Method::POST, "globex", "/api/integrations/greeter/rollback")
        .bearer_auth(&globex_owner)
        .json(&serde_json::json!({"version": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(rollback.status(), StatusCode::NOT_FOUND);
    assert_eq!(send(&app, "globex", &globex_owner, Method::DELETE, "/api/integrations/greeter").await.0, StatusCode::NOT_FOUND);
    // A token of one tenant is refused on the other's host.
    assert_eq!(send(&app, "globex", &acme_owner, Method::GET, "/api/integrations").await.0, StatusCode::UNAUTHORIZED);

    // The same name in globex is its own integration.
    assert_eq!(results(&apply_ok(&app, "globex", &globex_owner, &log_integration("greeter", "hola")).await), [("greeter", 1, "created")]);
    let (_, ours) = send(&app, "acme", &acme_owner, Method::GET, "/api/integrations/greeter").await;
    let (_, theirs) = send(&app, "globex", &globex_owner, Method::GET, "/api/integrations/greeter").await;
    assert_eq!(ours["version"], 2);
    assert_eq!(ours["definition"]["spec"]["steps"][0]["log"]["message"], "hello again");
    assert_eq!(theirs["definition"]["spec"]["steps"][0]["log"]["message"], "hola");
}

#[tokio::test]
async fn connection_secrets_are_stored_sealed_and_never_returned() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;

    let response = apply_as(&app, "acme", &owner, "application/yaml", ORDERS).await;
    let apply_text = response.text().await.unwrap();
    let mut seen = vec![apply_text];
    for path in ["/api/connections", "/api/connections/orders-db", "/api/connections/warehouse-api", "/api/integrations", "/api/integrations/order-intake"] {
        let response = app.tenant_request(Method::GET, "acme", path).bearer_auth(&owner).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        seen.push(response.text().await.unwrap());
    }
    for (text, secret) in seen.iter().flat_map(|t| ORDERS_SECRETS.iter().map(move |s| (t, s))) {
        assert!(!text.contains(secret), "a response shows {secret}: {text}");
    }
    let (_, one) = send(&app, "acme", &owner, Method::GET, "/api/connections/orders-db").await;
    assert_eq!((one["kind"].as_str(), one["description"].as_str(), one["version"].as_i64()), (Some("postgres"), Some("The orders database."), Some(1)));
    assert_eq!(one["settings"], serde_json::json!({}), "a database URL is a secret as a whole");
    // What is not a secret is shown, for a form to edit it.
    let (_, oauth) = send(&app, "acme", &owner, Method::GET, "/api/connections/warehouse-api").await;
    assert_eq!(
        oauth["settings"],
        serde_json::json!({"token_url": "https://auth.warehouse.example/oauth/token", "client_id": "tessera", "scopes": ["inventory.read"], "hosts": []})
    );
    let (_, key) = send(&app, "acme", &owner, Method::GET, "/api/connections/shop-webhook-secret").await;
    assert_eq!(key["settings"], serde_json::json!({"header": "X-Shop-Secret", "hosts": []}));

    let rows = app.db().await.query("SELECT secret, key_id FROM t_acme.connections", &[]).await.unwrap();
    assert_eq!(rows.len(), 4);
    for row in rows {
        let sealed: Vec<u8> = row.get(0);
        let text = String::from_utf8_lossy(&sealed);
        assert!(ORDERS_SECRETS.iter().all(|s| !text.contains(s)) && !text.contains("postgres://"), "stored in clear: {text}");
        assert_eq!(row.get::<_, String>(1).len(), 8);
    }

    // A changed secret is a new version of the connection.
    let rotated = ORDERS.replace("cs_0123456789", "cs_9876543210");
    let applied = apply_ok(&app, "acme", &owner, &rotated).await;
    let warehouse = applied.iter().find(|(_, name, ..)| name == "warehouse-api").unwrap();
    assert_eq!((warehouse.2, warehouse.3.as_str()), (2, "updated"));
    assert!(applied.iter().filter(|(_, name, ..)| name != "warehouse-api").all(|(.., result)| result == "unchanged"));
}

#[tokio::test]
async fn bodies_of_the_wrong_type_or_size_are_refused_before_anything_is_stored() {
    let app = spawn_app_with(|config| config.http.max_body_bytes = 4096).await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let yaml = log_integration("greeter", "hello");

    for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
        let response = apply_as(&app, "acme", &owner, content_type, &yaml).await;
        assert_eq!((response.status(), error_code(response).await), (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type".into()));
    }
    let padded = format!("{yaml}{}", "# padding\n".repeat(500));
    let response = apply_as(&app, "acme", &owner, "application/yaml", &padded).await;
    assert_eq!((response.status(), error_code(response).await), (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large".into()));
    assert_eq!(count(&app, "t_acme.integrations").await, 0);

    for content_type in ["text/yaml", "application/x-yaml; charset=utf-8"] {
        assert_eq!(apply_as(&app, "acme", &owner, content_type, &yaml).await.status(), StatusCode::OK, "{content_type}");
    }
}

#[tokio::test]
async fn the_schema_of_definition_files_is_published() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let viewer = app.user_with_role(&acme, "viewer").await;
    let (status, schema) = send(&app, "acme", &viewer, Method::GET, "/api/schema").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(schema, tessera_runtime::definition::json_schema());
    let anonymous = app.tenant_request(Method::GET, "acme", "/api/schema").send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}
