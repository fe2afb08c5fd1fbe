//! Tenant schema upgrades: tenants behind the latest version are reported by
//! readiness, brought up to date by `migrate_tenants` (in parallel,
//! resumably), and schemas provisioned by the fast path are ones refinery
//! itself considers current.

use std::sync::{Arc, Mutex};

use futures::{stream, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tessera_server::provisioning::{
    migrate::{self, latest_tenant_version, MigrateProgress, MigrateReport},
    NewTenant,
};
use tessera_tests::{error_code, migration_history, spawn_app, TestApp};

const OLD_VERSION: i32 = 1;

fn owner_password(slug: &str) -> String {
    format!("{slug}-owner-password")
}

/// Provision `slug` with its schema at migration `version`.
async fn tenant_at(app: &TestApp, slug: &str, version: i32) {
    app.state
        .provisioner
        .create_tenant_at(
            NewTenant {
                slug: slug.into(),
                name: None,
                owner_email: format!("owner@{slug}.test"),
                owner_password: Some(owner_password(slug)),
                cluster: None,
            },
            version,
        )
        .await
        .unwrap_or_else(|e| panic!("create {slug} at version {version}: {e}"));
}

/// Run a migration over every tenant behind, recording each progress report.
async fn migrate_all(app: &TestApp, parallelism: usize) -> (MigrateReport, Vec<MigrateProgress>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let report = migrate::migrate_tenants(&app.database_url, parallelism, move |p| sink.lock().unwrap().push(p.clone()))
        .await
        .expect("migrate tenants");
    let seen = seen.lock().unwrap().clone();
    (report, seen)
}

/// Every tenant migration's version, as a current schema's history lists them.
fn all_versions() -> Vec<i32> {
    migrate::tenant_versions()
}

async fn history_versions(app: &TestApp, schema: &str) -> Vec<i32> {
    migration_history(&app.db().await, schema).await
}

async fn recorded_version(app: &TestApp, slug: &str) -> i32 {
    app.db()
        .await
        .query_one("SELECT schema_version FROM platform.tenants WHERE slug = $1", &[&slug])
        .await
        .unwrap()
        .get(0)
}

async fn has_table(app: &TestApp, schema: &str, table: &str) -> bool {
    app.db()
        .await
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&format!("{schema}.{table}")])
        .await
        .unwrap()
        .get(0)
}

async fn readyz(app: &TestApp) -> (StatusCode, Value) {
    let response = app.http.get(format!("{}/readyz", app.base_url())).send().await.unwrap();
    (response.status(), response.json().await.unwrap())
}

#[tokio::test]
async fn a_tenant_behind_is_reported_until_migrate_brings_it_up_to_date() {
    let app = spawn_app().await;
    assert!(latest_tenant_version() > OLD_VERSION);
    tenant_at(&app, "oldco", OLD_VERSION).await;

    // Version 1: identity tables only, recorded as such.
    assert_eq!(history_versions(&app, "t_oldco").await, [1]);
    assert!(has_table(&app, "t_oldco", "users").await);
    assert!(!has_table(&app, "t_oldco", "variables").await);
    assert_eq!(recorded_version(&app, "oldco").await, 1);

    let (status, body) = readyz(&app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["database"], "ok");
    assert_eq!(body["migrations"]["platform_current"], true);
    assert_eq!(body["migrations"]["tenants_behind"], 1);

    // The owner can sign in (users exist), but variables do not exist yet.
    let owner = app.login("oldco", "owner@oldco.test", &owner_password("oldco")).await;
    let variables = app.tenant_request(Method::GET, "oldco", "/api/variables").bearer_auth(&owner).send().await.unwrap();
    assert_eq!(variables.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(error_code(variables).await, "internal_error");

    let (report, progress) = migrate_all(&app, 4).await;
    assert_eq!((report.total, report.migrated), (1, 1));
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let last = progress.last().expect("progress was reported");
    assert_eq!((last.total, last.done, last.failed), (1, 1, 0));

    assert_eq!(history_versions(&app, "t_oldco").await, all_versions());
    assert_eq!(recorded_version(&app, "oldco").await, latest_tenant_version());
    let put = app
        .tenant_request(Method::PUT, "oldco", "/api/variables/region")
        .bearer_auth(&owner)
        .json(&json!({"value": "eu-west"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK, "variables work after the upgrade");
    let list = app.tenant_request(Method::GET, "oldco", "/api/variables").bearer_auth(&owner).send().await.unwrap();
    assert_eq!(list.status(), StatusCode::OK);
    let list: Value = list.json().await.unwrap();
    assert_eq!(list["items"][0]["value"], "eu-west");

    let (status, body) = readyz(&app).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["migrations"], "current");

    let (again, progress) = migrate_all(&app, 4).await;
    assert_eq!((again.total, again.migrated), (0, 0), "a second run finds nothing to do");
    assert!(again.failures.is_empty() && progress.is_empty());
    assert_eq!(history_versions(&app, "t_oldco").await, all_versions());
}

#[tokio::test]
async fn thirty_tenants_behind_migrate_in_parallel() {
    let app = spawn_app().await;
    let slugs: Vec<String> = (0..30).map(|i| format!("tenant-{i:02}")).collect();
    stream::iter(&slugs).for_each_concurrent(6, |slug| tenant_at(&app, slug, OLD_VERSION)).await;
    let db = app.db().await;
    let behind: i64 = db.query_one("SELECT count(*) FROM platform.tenants WHERE schema_version = 1", &[]).await.unwrap().get(0);
    assert_eq!(behind, 30);
    assert_eq!(readyz(&app).await.1["migrations"]["tenants_behind"], 30);

    let (report, progress) = migrate_all(&app, 4).await;
    assert_eq!((report.total, report.migrated), (30, 30));
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(progress.len(), 30, "one progress report per schema");
    let done: Vec<usize> = progress.iter().map(|p| p.done).collect();
    assert_eq!(done, (1..=30).collect::<Vec<_>>());

    let current: i64 = db
        .query_one("SELECT count(*) FROM platform.tenants WHERE schema_version = $1", &[&latest_tenant_version()])
        .await
        .unwrap()
        .get(0);
    assert_eq!(current, 30);
    for slug in &slugs {
        let schema = format!("t_{}", slug.replace('-', "_"));
        assert_eq!(history_versions(&app, &schema).await, all_versions(), "{schema}");
        assert!(has_table(&app, &schema, "variables").await, "{schema}");
    }
    assert_eq!(readyz(&app).await.0, StatusCode::OK);
}

#[tokio::test]
async fn an_interrupted_migration_resumes_where_it_stopped() {
    let app = spawn_app().await;
    let slugs = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"];
    for slug in slugs {
        tenant_at(&app, slug, OLD_VERSION).await;
    }
    // Something in charlie's schema blocks its upgrade (a table in the way),
    // as a crash or a bad deploy would leave one tenant behind.
    let db = app.db().await;
    db.batch_execute("CREATE TABLE t_charlie.variables (legacy int)").await.unwrap();

    let (report, progress) = migrate_all(&app, 3).await;
    assert_eq!(report.total, 6);
    assert_eq!(report.migrated, 5);
    assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
    let (schema, error) = &report.failures[0];
    assert_eq!(schema, "t_charlie");
    assert!(error.contains("t_charlie"), "the failure names the schema: {error}");
    assert!(error.contains("V2__variables"), "and the migration: {error}");
    assert!(error.contains(r#"relation "variables" already exists"#), "and PostgreSQL's reason: {error}");
    assert_eq!(progress.last().map(|p| (p.done, p.failed)), Some((6, 1)));

    for slug in slugs.iter().filter(|s| **s != "charlie") {
        assert_eq!(recorded_version(&app, slug).await, latest_tenant_version(), "{slug}");
        assert_eq!(history_versions(&app, &format!("t_{slug}")).await, all_versions(), "{slug}");
    }
    assert_eq!(recorded_version(&app, "charlie").await, 1, "the failed tenant stays at its version");
    assert_eq!(history_versions(&app, "t_charlie").await, [1], "its failed migration was rolled back");
    let (status, body) = readyz(&app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["migrations"]["tenants_behind"], 1);

    // The operator clears the obstacle and runs again: only charlie is left.
    db.batch_execute("DROP TABLE t_charlie.variables").await.unwrap();
    let (report, _) = migrate_all(&app, 3).await;
    assert_eq!((report.total, report.migrated), (1, 1));
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(recorded_version(&app, "charlie").await, latest_tenant_version());
    assert_eq!(history_versions(&app, "t_charlie").await, all_versions());
    assert_eq!(readyz(&app).await.0, StatusCode::OK);
}

#[tokio::test]
async fn schemas_provisioned_by_the_fast_path_are_current_for_refinery() {
    let app = spawn_app().await;
    app.create_tenant("fresh").await;

    let (report, _) = migrate_all(&app, 2).await;
    assert_eq!((report.total, report.migrated), (0, 0), "a fresh tenant is not behind");

    // The fast path writes the history rows refinery itself writes: compare
    // with a tenant whose later versions were applied by refinery.
    tenant_at(&app, "aged", OLD_VERSION).await;
    let (report, _) = migrate_all(&app, 2).await;
    assert_eq!((report.total, report.migrated), (1, 1));
    let db = app.db().await;
    let history = |schema: &'static str| {
        let db = &db;
        async move {
            db.query(
                &format!("SELECT version, name, checksum, applied_on FROM {schema}.refinery_schema_history ORDER BY version"),
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get::<_, i32>(0), r.get::<_, String>(1), r.get::<_, String>(2), r.get::<_, String>(3)))
            .collect::<Vec<_>>()
        }
    };
    let fresh = history("t_fresh").await;
    let aged = history("t_aged").await;
    assert_eq!(fresh.len(), all_versions().len());
    let strip = |rows: &[(i32, String, String, String)]| rows.iter().map(|(v, n, c, _)| (*v, n.clone(), c.clone())).collect::<Vec<_>>();
    assert_eq!(strip(&fresh), strip(&aged), "same versions, names and checksums as refinery writes");

    // Make refinery itself look at the fast-path schema: it must find every
    // migration applied with matching checksums, apply nothing and not fail.
    db.execute("UPDATE platform.tenants SET schema_version = 1 WHERE slug = 'fresh'", &[]).await.unwrap();
    let (report, _) = migrate_all(&app, 2).await;
    assert_eq!(report.total, 1);
    assert!(report.failures.is_empty(), "refinery accepts the fast-path history: {:?}", report.failures);
    assert_eq!(history("t_fresh").await, fresh, "refinery applied nothing");
    assert_eq!(recorded_version(&app, "fresh").await, latest_tenant_version());
}
