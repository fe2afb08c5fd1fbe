//! Tenant lifecycle through the platform API: create (all or nothing),
//! suspend, resume, delete (export first), and the tenant workers that follow
//! every change.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tessera_server::provisioning::migrate::latest_tenant_version;
use tessera_tests::{error_code, eventually, migration_history, spawn_app, TestApp};

const WAIT: Duration = Duration::from_secs(10);

/// Every table of a fully migrated tenant schema, by name.
const TENANT_TABLES: [&str; 19] = [
    "api_call_stats",
    "api_consumer_keys",
    "api_consumer_usage",
    "api_consumers",
    "api_keys",
    "api_plans",
    "apis",
    "audit_chain",
    "audit_records",
    "connections",
    "execution_steps",
    "executions",
    "integration_versions",
    "integrations",
    "queue_messages",
    "refinery_schema_history",
    "schedules",
    "users",
    "variables",
];

async fn create_tenant_request(app: &TestApp, token: &str, slug: &str) -> reqwest::Response {
    app.platform_request(Method::POST, "/api/platform/tenants")
        .bearer_auth(token)
        .json(&json!({"slug": slug, "owner_email": format!("owner@{slug}.test"), "owner_password": "a-good-owner-password"}))
        .send()
        .await
        .expect("POST /api/platform/tenants")
}

/// Table names in `schema`, sorted.
async fn tables_in(app: &TestApp, schema: &str) -> Vec<String> {
    app.db()
        .await
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1",
            &[&schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect::<std::collections::BTreeSet<String>>()
        .into_iter()
        .collect()
}

async fn schema_exists(app: &TestApp, schema: &str) -> bool {
    app.db()
        .await
        .query_one("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", &[&schema])
        .await
        .unwrap()
        .get(0)
}

async fn tenant_rows(app: &TestApp, slug: &str) -> i64 {
    app.db()
        .await
        .query_one("SELECT count(*) FROM platform.tenants WHERE slug = $1", &[&slug])
        .await
        .unwrap()
        .get(0)
}

/// The tenants this node runs (their workers start when they have work),
/// from `GET /api/platform/node`.
async fn worker_tenants(app: &TestApp, token: &str) -> Vec<String> {
    let response = app.platform_request(Method::GET, "/api/platform/node").bearer_auth(token).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let mut slugs: Vec<String> =
        body["tenants"].as_array().expect("tenants list").iter().map(|w| w["tenant"].as_str().unwrap().to_string()).collect();
    slugs.sort();
    slugs
}

async fn workers_become(app: &TestApp, token: &str, expected: &[&str]) -> bool {
    eventually(WAIT, || async { worker_tenants(app, token).await == expected }).await
}

#[tokio::test]
async fn creating_a_tenant_builds_its_schema_records_it_and_lets_its_owner_sign_in() {
    let app = spawn_app().await;
    let token = app.platform_token().await;

    let response = create_tenant_request(&app, &token, "acme").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["tenant"]["slug"], "acme");
    assert_eq!(body["tenant"]["status"], "active");
    assert_eq!(body["tenant"]["schema_version"], latest_tenant_version());
    assert_eq!(body["owner_email"], "owner@acme.test");
    assert!(body.get("initial_password").is_none(), "a chosen password is never echoed back");

    // The schema holds exactly the tenant tables and refinery's history.
    assert_eq!(tables_in(&app, "t_acme").await, TENANT_TABLES);
    let db = app.db().await;
    assert_eq!(migration_history(&db, "t_acme").await, tessera_server::provisioning::migrate::tenant_versions());

    let row = db
        .query_one("SELECT schema_name, status, schema_version FROM platform.tenants WHERE slug = 'acme'", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "t_acme");
    assert_eq!(row.get::<_, String>(1), "active");
    assert_eq!(row.get::<_, i32>(2), latest_tenant_version());
    let owner_role: String =
        db.query_one("SELECT role FROM t_acme.users WHERE email = 'owner@acme.test'", &[]).await.unwrap().get(0);
    assert_eq!(owner_role, "owner");

    let owner = app.login("acme", "owner@acme.test", "a-good-owner-password").await;
    let me = app.tenant_request(Method::GET, "acme", "/api/me").bearer_auth(&owner).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    let me: Value = me.json().await.unwrap();
    assert_eq!(me["tenant"]["slug"], "acme");
    assert_eq!(me["role"], "owner");

    // The new tenant's worker runs on this node.
    assert!(workers_become(&app, &token, &["acme"]).await, "a worker for acme");
}

#[tokio::test]
async fn a_slug_that_is_taken_is_refused_with_409() {
    let app = spawn_app().await;
    let token = app.platform_token().await;
    let acme = app.create_tenant_with_token(&token, "acme").await;

    let again = create_tenant_request(&app, &token, "acme").await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(again).await, "tenant_exists");
    assert_eq!(tenant_rows(&app, "acme").await, 1);
    // The first tenant is untouched: its owner still signs in.
    app.owner_token(&acme).await;
}

#[tokio::test]
async fn invalid_and_reserved_slugs_are_refused_and_create_nothing() {
    let app = spawn_app().await;
    let token = app.platform_token().await;
    let too_long = "a".repeat(41);
    for slug in ["a", "Acme", "1acme", "-acme", "ac_me", "ac.me", "acmé", "../etc", too_long.as_str(), "www", "admin", "api", "xn--80ak6aa92e"] {
        let response = create_tenant_request(&app, &token, slug).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "slug {slug:?}");
        assert_eq!(error_code(response).await, "invalid_slug", "slug {slug:?}");
    }
    let db = app.db().await;
    let tenants: i64 = db.query_one("SELECT count(*) FROM platform.tenants", &[]).await.unwrap().get(0);
    assert_eq!(tenants, 0);
    let schemas: i64 =
        db.query_one("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 't\\_%'", &[]).await.unwrap().get(0);
    assert_eq!(schemas, 0);
}

#[tokio::test]
async fn a_failure_half_way_through_creating_a_tenant_leaves_nothing_behind() {
    let app = spawn_app().await;
    let token = app.platform_token().await;
    let db = app.db().await;
    // Break provisioning of `boom` after its schema, users table and history
    // exist: creating its api_keys table raises.
    db.batch_execute(
        r#"
        CREATE FUNCTION public.fail_boom_api_keys() RETURNS event_trigger LANGUAGE plpgsql AS $$
        DECLARE created record;
        BEGIN
            FOR created IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
                IF created.object_type = 'table' AND created.schema_name = 't_boom'
                   AND created.object_identity = 't_boom.api_keys' THEN
                    RAISE EXCEPTION 'injected failure: creating %', created.object_identity;
                END IF;
            END LOOP;
        END $$;
        CREATE EVENT TRIGGER fail_boom_api_keys ON ddl_command_end
            WHEN TAG IN ('CREATE TABLE') EXECUTE FUNCTION public.fail_boom_api_keys();
        "#,
    )
    .await
    .unwrap();

    let failed = create_tenant_request(&app, &token, "boom").await;
    assert_eq!(failed.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body: Value = failed.json().await.unwrap();
    assert_eq!(body["error"]["code"], "internal_error");
    assert!(!body.to_string().contains("injected failure"), "internal causes are not sent to clients: {body}");

    assert!(!schema_exists(&app, "t_boom").await, "no half-built schema");
    assert_eq!(tenant_rows(&app, "boom").await, 0, "no tenant row");
    let boom_host = app.tenant_request(Method::GET, "boom", "/api/me").send().await.unwrap();
    assert_eq!(boom_host.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(boom_host).await, "tenant_not_found");
    assert!(workers_become(&app, &token, &[]).await, "no worker for a tenant that does not exist");
    // Other tenants are not affected by the trigger.
    app.create_tenant_with_token(&token, "other").await;

    db.batch_execute("DROP EVENT TRIGGER fail_boom_api_keys").await.unwrap();
    let retried = create_tenant_request(&app, &token, "boom").await;
    assert_eq!(retried.status(), StatusCode::CREATED, "the slug is free again after the failure");
    assert_eq!(tables_in(&app, "t_boom").await, TENANT_TABLES);
    app.login("boom", "owner@boom.test", "a-good-owner-password").await;
    assert!(workers_become(&app, &token, &["boom", "other"]).await);
}

#[tokio::test]
async fn a_stray_schema_with_a_tenants_name_is_never_adopted() {
    let app = spawn_app().await;
    let token = app.platform_token().await;
    let db = app.db().await;
    db.batch_execute(
        "CREATE SCHEMA t_stray; \
         CREATE TABLE t_stray.precious (id int PRIMARY KEY, note text); \
         INSERT INTO t_stray.precious VALUES (42, 'keep me');",
    )
    .await
    .unwrap();

    let response = create_tenant_request(&app, &token, "stray").await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(response).await, "tenant_exists");

    assert_eq!(tables_in(&app, "t_stray").await, ["precious"], "nothing was added to the stray schema");
    let rows = db.query("SELECT id, note FROM t_stray.precious", &[]).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].get::<_, i32>(0), rows[0].get::<_, String>(1)), (42, "keep me".to_string()));
    assert_eq!(tenant_rows(&app, "stray").await, 0);
}

#[tokio::test]
async fn a_suspended_tenant_is_refused_and_its_worker_stops_until_it_is_resumed() {
    let app = spawn_app().await;
    let token = app.platform_token().await;
    let acme = app.create_tenant_with_token(&token, "acme").await;
    app.create_tenant_with_token(&token, "globex").await;
    let owner = app.owner_token(&acme).await;
    assert!(workers_become(&app, &token, &["acme", "globex"]).await);

    let suspended = app.tenant_lifecycle(&token, "acme", "suspend").await;
    assert_eq!(suspended.status(), StatusCode::OK);
    assert_eq!(suspended.json::<Value>().await.unwrap()["status"], "suspended");
    let status: String =
        app.db().await.query_one("SELECT status FROM platform.tenants WHERE slug = 'acme'", &[]).await.unwrap().get(0);
    assert_eq!(status, "suspended");

    for path in ["/api/me", "/api/variables"] {
        let refused = app.tenant_request(Method::GET, "acme", path).bearer_auth(&owner).send().await.unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{path}");
        assert_eq!(error_code(refused).await, "tenant_suspended", "{path}");
    }
    let login = app.try_login("acme", &acme.owner_email, &acme.owner_password).await;
    assert_eq!(login.status(), StatusCode::FORBIDDEN, "no new sessions either");
    assert_eq!(error_code(login).await, "tenant_suspended");
    assert!(workers_become(&app, &token, &["globex"]).await, "acme's worker stops");

    let resumed = app.tenant_lifecycle(&token, "acme", "resume").await;
    assert_eq!(resumed.status(), StatusCode::OK);
    assert_eq!(resumed.json::<Value>().await.unwrap()["status"], "active");
    let me = app.tenant_request(Method::GET, "acme", "/api/me").bearer_auth(&owner).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::OK, "the owner's session works again");
    assert!(workers_become(&app, &token, &["acme", "globex"]).await, "acme's worker is back");

    let unknown = app.tenant_lifecycle(&token, "nobody", "suspend").await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(unknown).await, "tenant_not_found");
}

#[tokio::test]
async fn deleting_a_tenant_needs_confirmation_and_exports_its_data_first() {
    let app = spawn_app().await;
    let token = app.platform_token().await;
    let acme = app.create_tenant_with_token(&token, "acme").await;
    app.create_tenant_with_token(&token, "globex").await;
    let owner = app.owner_token(&acme).await;
    let put = app
        .tenant_request(Method::PUT, "acme", "/api/variables/api_endpoint")
        .bearer_auth(&owner)
        .json(&json!({"value": "https://acme.example/very-distinctive-value-7f3a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    assert!(workers_become(&app, &token, &["acme", "globex"]).await);

    // Without the slug repeated, or with the wrong one, nothing happens.
    for query in ["", "?confirm=", "?confirm=globex", "?confirm=ACME"] {
        let refused = app
            .platform_request(Method::DELETE, &format!("/api/platform/tenants/acme{query}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{query:?}");
        assert_eq!(error_code(refused).await, "confirmation_required", "{query:?}");
    }
    assert!(schema_exists(&app, "t_acme").await);
    let status: String =
        app.db().await.query_one("SELECT status FROM platform.tenants WHERE slug = 'acme'", &[]).await.unwrap().get(0);
    assert_eq!(status, "active", "a refused delete does not even suspend");
    let me = app.tenant_request(Method::GET, "acme", "/api/me").bearer_auth(&owner).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::OK);

    let deleted = app
        .platform_request(Method::DELETE, "/api/platform/tenants/acme?confirm=acme")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
    let body: Value = deleted.json().await.unwrap();
    assert_eq!(body["slug"], "acme");
    let export_path = body["export_path"].as_str().expect("export_path").to_string();
    assert!(std::path::Path::new(&export_path).starts_with(&app.config.provisioning.export_dir), "{export_path}");
    let export = std::fs::read_to_string(&export_path).expect("the export file exists");
    assert!(export.contains("CREATE TABLE"), "the export holds the schema");
    assert!(export.contains("very-distinctive-value-7f3a"), "the export holds the tenant's data");
    assert!(export.contains("owner@acme.test"), "the export holds the tenant's users");
    assert!(!export.contains("t_globex") && !export.contains("owner@globex.test"), "only this tenant is exported");

    assert!(!schema_exists(&app, "t_acme").await, "the schema is dropped");
    assert_eq!(tenant_rows(&app, "acme").await, 0);
    let db = app.db().await;
    let record = db
        .query_one("SELECT tenant_id::text, export_path, deleted_by FROM platform.tenant_deletions WHERE slug = 'acme'", &[])
        .await
        .expect("one deletion record");
    assert_eq!(record.get::<_, String>(0), acme.id);
    assert_eq!(record.get::<_, String>(1), export_path);
    assert_eq!(record.get::<_, String>(2), tessera_tests::PLATFORM_OWNER.0);

    let gone = app.tenant_request(Method::GET, "acme", "/api/me").bearer_auth(&owner).send().await.unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(gone).await, "tenant_not_found");
    assert!(workers_become(&app, &token, &["globex"]).await, "acme's worker is gone");
    assert!(schema_exists(&app, "t_globex").await, "the other tenant is untouched");

    let again = app
        .platform_request(Method::DELETE, "/api/platform/tenants/acme?confirm=acme")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(again).await, "tenant_not_found");

    let _ = std::fs::remove_dir_all(&app.config.provisioning.export_dir);
}
