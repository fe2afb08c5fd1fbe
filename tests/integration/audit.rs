//! The audit trail: every write through the tenant and platform APIs and
//! every operator command is recorded, in order, without secrets, readable
//! with filters and as an export by admins only, each tenant's apart; and
//! the HMAC chain shows a record edited, removed or inserted in the database.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tessera_tests::{spawn_app, status_and_json, TestApp};

use crate::cli::run;

const HOOKED: &str = "apiVersion: tessera.dev/v1\nkind: Integration\nmetadata:\n  name: orders\nspec:\n  triggers:\n    - webhook:\n        auth: none\n  steps:\n    - name: shape\n      transform:\n        expression: '{id: .trigger.body.id}'\n";

async fn audit(app: &TestApp, slug: &str, token: &str, query: &str) -> (StatusCode, Value) {
    status_and_json(app.tenant_request(Method::GET, slug, &format!("/api/audit{query}")).bearer_auth(token)).await
}

async fn platform_audit(app: &TestApp, token: &str, query: &str) -> (StatusCode, Value) {
    status_and_json(app.platform_request(Method::GET, &format!("/api/platform/audit{query}")).bearer_auth(token)).await
}

fn actions(page: &Value) -> Vec<String> {
    let mut actions: Vec<String> = page["items"].as_array().unwrap().iter().map(|r| r["action"].as_str().unwrap().to_string()).collect();
    actions.reverse(); // the API answers newest first
    actions
}

async fn send(app: &TestApp, slug: &str, token: &str, method: Method, path: &str, body: Option<Value>) -> Value {
    let response = app.call(slug, method.clone(), path, token, body).await;
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{method} {path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

#[tokio::test]
async fn a_tenants_writes_are_recorded_in_order_without_secrets_and_an_edit_breaks_the_chain() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;

    app.apply_yaml("acme", &owner, HOOKED).await;
    app.apply_yaml("acme", &owner, &HOOKED.replace(".trigger.body.id", ".trigger.body.id, v: 2")).await;
    app.apply_yaml("acme", &owner, &HOOKED.replace(".trigger.body.id", ".trigger.body.id, v: 2")).await; // unchanged: not recorded
    send(&app, "acme", &owner, Method::PUT, "/api/variables/region", Some(json!({"value": "eu"}))).await;
    let key = send(&app, "acme", &owner, Method::POST, "/api/api-keys", Some(json!({"name": "ci", "role": "editor"}))).await;
    let secret = key["secret"].as_str().unwrap().to_string();
    let password = "a-new-users-password-1";
    let user = send(&app, "acme", &owner, Method::POST, "/api/users", Some(json!({"email": "ann@acme.test", "password": password, "role": "viewer"}))).await;
    send(&app, "acme", &owner, Method::POST, "/api/integrations/orders/rollback", Some(json!({"version": 1}))).await;
    // The API key acts too: its run is recorded under its name.
    let run = send(&app, "acme", &secret, Method::POST, "/api/integrations/orders/run", Some(json!({"id": 1}))).await;
    send(&app, "acme", &owner, Method::DELETE, &format!("/api/api-keys/{}", key["id"].as_str().unwrap()), None).await;
    app.call("acme", Method::DELETE, "/api/variables/region", &owner, None).await;

    let (status, page) = audit(&app, "acme", &owner, "").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(
        actions(&page),
        [
            "integration.create",
            "integration.update",
            "variable.put",
            "api_key.create",
            "user.create",
            "integration.rollback",
            "execution.run",
            "api_key.revoke",
            "variable.delete"
        ]
    );
    let items = page["items"].as_array().unwrap();
    let seqs: Vec<i64> = items.iter().rev().map(|r| r["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=9).collect::<Vec<_>>());
    let oldest = items.last().unwrap();
    assert_eq!(oldest["actor_kind"], "user");
    assert_eq!(oldest["actor_name"], acme.owner_email);
    assert_eq!(oldest["via"], "api");
    assert_eq!(oldest["address"], "127.0.0.1");
    assert!(oldest["request_id"].as_str().is_some_and(|id| !id.is_empty()), "{oldest}");
    assert_eq!(oldest["detail"]["version"], 1);
    let rollback = &items[3];
    assert_eq!((rollback["detail"]["previous_version"].clone(), rollback["detail"]["version"].clone()), (json!(2), json!(3)));
    let ran = &items[2];
    assert_eq!((ran["actor_kind"].as_str(), ran["actor_name"].as_str()), (Some("api_key"), Some("ci")));
    assert_eq!(ran["resource_name"], run["id"]);
    assert_eq!(items[4]["detail"]["id"], user["id"]);
    let everything = page.to_string();
    for secret in [secret.as_str(), password, acme.owner_password.as_str()] {
        assert!(!everything.contains(secret), "a secret is in the trail: {everything}");
    }

    // Filters and paging.
    let (_, only) = audit(&app, "acme", &owner, "?resource_kind=integration").await;
    assert_eq!(actions(&only), ["integration.create", "integration.update", "integration.rollback"]);
    let (_, by_key) = audit(&app, "acme", &owner, "?actor=ci").await;
    assert_eq!(actions(&by_key), ["execution.run"]);
    let (_, first) = audit(&app, "acme", &owner, "?limit=4").await;
    assert_eq!(first["items"].as_array().unwrap().len(), 4);
    let before = first["next_before"].as_i64().expect("more pages");
    let (_, second) = audit(&app, "acme", &owner, &format!("?limit=4&before={before}")).await;
    assert_eq!(second["items"][0]["seq"], before - 1);
    let (status, bad) = audit(&app, "acme", &owner, "?limit=0").await;
    assert_eq!((status, bad["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")));
    let (status, _) = audit(&app, "acme", &owner, "?since=yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The export: every record, oldest first, one per line.
    let export = app.tenant_request(Method::GET, "acme", "/api/audit/export").bearer_auth(&owner).send().await.unwrap();
    assert_eq!(export.headers()["content-type"], "application/x-ndjson");
    let lines: Vec<Value> = export.text().await.unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.iter().map(|r| r["seq"].as_i64().unwrap()).collect::<Vec<_>>(), (1..=9).collect::<Vec<_>>());

    // Admins only; and each tenant sees its own trail.
    let viewer = app.login("acme", "ann@acme.test", password).await;
    let (status, _) = audit(&app, "acme", &viewer, "").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let globex = app.create_tenant("globex").await;
    let globex_owner = app.owner_token(&globex).await;
    send(&app, "globex", &globex_owner, Method::PUT, "/api/variables/region", Some(json!({"value": "us"}))).await;
    let (_, theirs) = audit(&app, "globex", &globex_owner, "").await;
    assert_eq!(actions(&theirs), ["variable.put"]);
    assert!(!theirs.to_string().contains("acme"), "{theirs}");
    let (status, _) = audit(&app, "globex", &owner, "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "acme's token on globex's host");

    // Intact, then edited in the database: verify names the record.
    let verify = |slug: &'static str, token: String| {
        let request = app.tenant_request(Method::GET, slug, "/api/audit/verify").bearer_auth(token);
        async move { status_and_json(request).await.1 }
    };
    let intact = verify("acme", owner.clone()).await;
    assert_eq!((intact["ok"].clone(), intact["records"].clone(), intact["head_seq"].clone()), (json!(true), json!(9), json!(9)), "{intact}");
    let db = app.db().await;
    db.execute("UPDATE t_acme.audit_records SET actor_name = 'someone-else' WHERE seq = 4", &[]).await.unwrap();
    let edited = verify("acme", owner.clone()).await;
    assert_eq!(edited["ok"], false, "{edited}");
    assert_eq!(edited["problems"][0]["seq"], 4, "{edited}");
    // Removing one is found too, and the other tenant's trail is untouched.
    db.execute("UPDATE t_acme.audit_records SET actor_name = $1 WHERE seq = 4", &[&acme.owner_email]).await.unwrap();
    assert_eq!(verify("acme", owner.clone()).await["ok"], true);
    db.execute("DELETE FROM t_acme.audit_records WHERE seq = 6", &[]).await.unwrap();
    let removed = verify("acme", owner.clone()).await;
    assert_eq!(removed["ok"], false, "{removed}");
    assert!(removed["problems"].to_string().contains("missing"), "{removed}");
    assert_eq!(verify("globex", globex_owner).await["ok"], true);
}

#[tokio::test]
async fn platform_changes_are_recorded_by_owner_and_read_on_the_platform_host_only() {
    let app = spawn_app().await;
    let token = app.platform_token().await;
    let acme = app.create_tenant_with_token(&token, "acme").await;
    assert_eq!(app.tenant_lifecycle(&token, "acme", "suspend").await.status(), StatusCode::OK);
    assert_eq!(app.tenant_lifecycle(&token, "acme", "resume").await.status(), StatusCode::OK);
    let limits = app
        .platform_request(Method::PATCH, "/api/platform/tenants/acme/limits")
        .bearer_auth(&token)
        .json(&json!({"running_executions": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(limits.status(), StatusCode::OK);

    let (status, page) = platform_audit(&app, &token, "").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(actions(&page), ["tenant.create", "tenant.suspend", "tenant.resume", "tenant.limits"]);
    let created = page["items"].as_array().unwrap().last().unwrap().clone();
    assert_eq!((created["actor_kind"].as_str(), created["resource_name"].as_str()), (Some("owner"), Some("acme")));
    assert_eq!(created["detail"]["owner_email"], acme.owner_email);
    assert!(!page.to_string().contains(&acme.owner_password), "{page}");
    assert_eq!(page["items"][0]["detail"]["changes"]["running_executions"], 3);
    let (_, verified) = status_and_json(app.platform_request(Method::GET, "/api/platform/audit/verify").bearer_auth(&token)).await;
    assert_eq!((verified["ok"].clone(), verified["records"].clone()), (json!(true), json!(4)), "{verified}");

    // Not on a tenant's host, and not to a tenant's owner.
    let owner = app.owner_token(&acme).await;
    let (status, _) = status_and_json(app.tenant_request(Method::GET, "acme", "/api/platform/audit").bearer_auth(&owner)).await;
    assert!(status.is_client_error(), "{status}");
    let (status, _) = platform_audit(&app, &owner, "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The tenant's own trail has none of the platform's records.
    let (_, own) = audit(&app, "acme", &owner, "").await;
    assert_eq!(actions(&own), Vec::<String>::new());
}

#[tokio::test]
async fn operator_commands_are_recorded_and_verify_fails_on_an_edited_trail() {
    let app = spawn_app().await;
    let key = app.config.secrets.key.clone().unwrap();
    let env = [("TESSERA_DATABASE_URL", app.database_url.clone()), ("TESSERA_SECRETS__KEY", key)];
    app.create_tenant("acme").await;
    let suspended = run(&env, &["tenant", "suspend", "acme"]).await;
    assert!(suspended.ok(), "{}", suspended.stderr);
    let limited = run(&env, &["tenant", "limits", "set", "acme", "running_executions=2"]).await;
    assert!(limited.ok(), "{}", limited.stderr);

    let token = app.platform_token().await;
    let (_, page) = platform_audit(&app, &token, "").await;
    assert_eq!(actions(&page), ["tenant.create", "tenant.suspend", "tenant.limits"]);
    let by_operator = &page["items"][1];
    assert_eq!((by_operator["actor_kind"].as_str(), by_operator["via"].as_str()), (Some("operator"), Some("operator")));

    let verified = run(&env, &["platform", "verify-audit"]).await;
    assert!(verified.ok() && verified.stdout.contains("chain intact: 3 records"), "{}{}", verified.stdout, verified.stderr);
    let tenant = run(&env, &["platform", "verify-audit", "--tenant", "acme", "--json"]).await;
    assert!(tenant.ok(), "{}", tenant.stderr);

    // Someone with database access only rewrites what a command did.
    app.db().await.execute("UPDATE platform.audit_records SET detail = '{}' WHERE seq = 3", &[]).await.unwrap();
    let broken = run(&env, &["platform", "verify-audit"]).await;
    assert!(!broken.ok(), "{}", broken.stdout);
    assert!(broken.stdout.contains("record 3:"), "{}", broken.stdout);

    // A command run without the key still records, unsigned, and verify says so.
    let unsigned = run(&env[..1], &["tenant", "resume", "acme"]).await;
    assert!(unsigned.ok(), "{}", unsigned.stderr);
    let (_, page) = platform_audit(&app, &token, "?action=tenant.resume").await;
    assert_eq!(page["items"][0]["key_id"], "");
    let (_, verified) = status_and_json(app.platform_request(Method::GET, "/api/platform/audit/verify").bearer_auth(&token)).await;
    assert!(verified["problems"].to_string().contains("not signed"), "{verified}");
}
