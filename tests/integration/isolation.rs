//! The cross-tenant matrix: with everything acme holds (its owner's token,
//! an admin API key, the ids of globex's rows), acme can neither see nor
//! change anything of globex's, and globex's own API shows it untouched.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tessera_tests::{spawn_app, status_and_code, TestApp, TestTenant};

/// Everything one tenant holds in this story.
struct Side {
    tenant: TestTenant,
    owner: String,
    api_key: String,
    api_key_id: String,
    user_id: String,
}

async fn ok_json(response: reqwest::Response) -> Value {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert!(status.is_success(), "{status}: {body}");
    body
}

/// A tenant with an owner, a second user, an admin API key and a variable
/// `region` whose value is `<slug>-region`.
async fn populated_tenant(app: &TestApp, slug: &str) -> Side {
    let tenant = app.create_tenant(slug).await;
    let owner = app.owner_token(&tenant).await;
    let user = ok_json(
        app.call(slug, Method::POST, "/api/users", &owner, Some(json!({
            "email": format!("staff@{slug}.test"), "password": "a-good-password", "role": "editor", "display_name": format!("{slug} staff"),
        })))
        .await,
    )
    .await;
    let key = ok_json(app.call(slug, Method::POST, "/api/api-keys", &owner, Some(json!({"name": format!("{slug} key"), "role": "admin"}))).await).await;
    ok_json(app.call(slug, Method::PUT, "/api/variables/region", &owner, Some(json!({"value": format!("{slug}-region")}))).await).await;
    Side {
        tenant,
        owner,
        api_key: key["secret"].as_str().unwrap().into(),
        api_key_id: key["id"].as_str().unwrap().into(),
        user_id: user["id"].as_str().unwrap().into(),
    }
}

/// A tenant's users, keys and variables as its owner sees them.
async fn everything(app: &TestApp, side: &Side) -> Value {
    let slug = &side.tenant.slug;
    let mut all = json!({});
    for list in ["users", "api-keys", "variables"] {
        all[list] = ok_json(app.call(slug, Method::GET, &format!("/api/{list}"), &side.owner, None).await).await["items"].clone();
    }
    all
}

#[tokio::test]
async fn one_tenant_cannot_read_change_or_delete_another_tenants_users() {
    let app = spawn_app().await;
    let acme = populated_tenant(&app, "acme").await;
    let globex = populated_tenant(&app, "globex").await;
    let globex_owner_id = ok_json(app.call("globex", Method::GET, "/api/me", &globex.owner, None).await).await["principal"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let before = everything(&app, &globex).await;

    for target in [&globex.user_id, &globex_owner_id] {
        let path = format!("/api/users/{target}");
        for credential in [&acme.owner, &acme.api_key] {
            let read = app.call("acme", Method::GET, &path, credential, None).await;
            assert_eq!(status_and_code(read).await, (StatusCode::NOT_FOUND, "not_found".into()));
            let change = app.call("acme", Method::PATCH, &path, credential, Some(json!({"role": "viewer", "disabled": true, "password": "hijacked-password"}))).await;
            assert_eq!(status_and_code(change).await, (StatusCode::NOT_FOUND, "not_found".into()));
            let delete = app.call("acme", Method::DELETE, &path, credential, None).await;
            assert_eq!(status_and_code(delete).await, (StatusCode::NOT_FOUND, "not_found".into()));
        }
    }

    // globex sees its users exactly as before, and they still sign in.
    assert_eq!(everything(&app, &globex).await, before);
    let staff = ok_json(app.call("globex", Method::GET, &format!("/api/users/{}", globex.user_id), &globex.owner, None).await).await;
    assert_eq!((staff["role"].as_str(), staff["disabled"].as_bool()), (Some("editor"), Some(false)));
    app.login("globex", "staff@globex.test", "a-good-password").await;
    app.owner_token(&globex.tenant).await;
}

#[tokio::test]
async fn one_tenant_cannot_revoke_another_tenants_api_keys() {
    let app = spawn_app().await;
    let acme = populated_tenant(&app, "acme").await;
    let globex = populated_tenant(&app, "globex").await;
    let before = everything(&app, &globex).await;

    for credential in [&acme.owner, &acme.api_key] {
        let revoke = app.call("acme", Method::DELETE, &format!("/api/api-keys/{}", globex.api_key_id), credential, None).await;
        assert_eq!(status_and_code(revoke).await, (StatusCode::NOT_FOUND, "not_found".into()));
    }

    let keys = ok_json(app.call("globex", Method::GET, "/api/api-keys", &globex.owner, None).await).await;
    assert!(keys["items"][0]["revoked_at"].is_null());
    let works = app.call("globex", Method::GET, "/api/me", &globex.api_key, None).await;
    assert_eq!(ok_json(works).await["principal"]["kind"], "api_key");
    assert_eq!(everything(&app, &globex).await["api-keys"].as_array().unwrap().len(), before["api-keys"].as_array().unwrap().len());
}

#[tokio::test]
async fn a_variable_name_means_a_different_variable_in_each_tenant() {
    let app = spawn_app().await;
    let acme = populated_tenant(&app, "acme").await;
    let globex = populated_tenant(&app, "globex").await;

    for (side, expected) in [(&acme, "acme-region"), (&globex, "globex-region")] {
        let slug = side.tenant.slug.as_str();
        let one = ok_json(app.call(slug, Method::GET, "/api/variables/region", &side.owner, None).await).await;
        assert_eq!(one["value"], expected);
        let list = ok_json(app.call(slug, Method::GET, "/api/variables", &side.api_key, None).await).await;
        assert_eq!(list["items"].as_array().unwrap().len(), 1);
        assert_eq!(list["items"][0]["value"], expected);
    }

    // Changing and deleting acme's leaves globex's alone.
    ok_json(app.call("acme", Method::PUT, "/api/variables/region", &acme.owner, Some(json!({"value": "changed"}))).await).await;
    let globex_region = ok_json(app.call("globex", Method::GET, "/api/variables/region", &globex.owner, None).await).await;
    assert_eq!(globex_region["value"], "globex-region");
    let deleted = app.call("acme", Method::DELETE, "/api/variables/region", &acme.owner, None).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let globex_region = ok_json(app.call("globex", Method::GET, "/api/variables/region", &globex.owner, None).await).await;
    assert_eq!(globex_region["value"], "globex-region");

    // A variable only globex has is invisible to acme.
    ok_json(app.call("globex", Method::PUT, "/api/variables/globex_only", &globex.owner, Some(json!({"value": 42}))).await).await;
    let hidden = app.call("acme", Method::GET, "/api/variables/globex_only", &acme.owner, None).await;
    assert_eq!(status_and_code(hidden).await, (StatusCode::NOT_FOUND, "not_found".into()));
    let delete = app.call("acme", Method::DELETE, "/api/variables/globex_only", &acme.owner, None).await;
    assert_eq!(status_and_code(delete).await, (StatusCode::NOT_FOUND, "not_found".into()));
    let still = ok_json(app.call("globex", Method::GET, "/api/variables/globex_only", &globex.owner, None).await).await;
    assert_eq!(still["value"], 42);
}

#[tokio::test]
async fn credentials_of_one_tenant_are_refused_on_another_tenants_host() {
    let app = spawn_app().await;
    let acme = populated_tenant(&app, "acme").await;
    let globex = populated_tenant(&app, "globex").await;
    let before = everything(&app, &globex).await;

    let key_as_bearer = app.call("globex", Method::GET, "/api/variables", &acme.api_key, None).await;
    assert_eq!(status_and_code(key_as_bearer).await, (StatusCode::UNAUTHORIZED, "invalid_api_key".into()));
    let key_as_header = app
        .tenant_request(Method::PUT, "globex", "/api/variables/region")
        .header("x-api-key", &acme.api_key)
        .json(&json!({"value": "from acme"}))
        .send()
        .await
        .unwrap();
    assert_eq!(status_and_code(key_as_header).await, (StatusCode::UNAUTHORIZED, "invalid_api_key".into()));

    let token = app.call("globex", Method::GET, "/api/users", &acme.owner, None).await;
    assert_eq!(status_and_code(token).await, (StatusCode::UNAUTHORIZED, "invalid_token".into()));
    let token_write = app.call("globex", Method::POST, "/api/users", &acme.owner, Some(json!({
        "email": "mole@globex.test", "password": "a-good-password", "role": "owner",
    })))
    .await;
    assert_eq!(status_and_code(token_write).await, (StatusCode::UNAUTHORIZED, "invalid_token".into()));

    // acme's owner password does not open globex either.
    let login = app.try_login("globex", &acme.tenant.owner_email, &acme.tenant.owner_password).await;
    assert_eq!(status_and_code(login).await, (StatusCode::UNAUTHORIZED, "invalid_credentials".into()));

    assert_eq!(everything(&app, &globex).await, before);
}

#[tokio::test]
async fn a_tenants_lists_hold_only_its_own_rows() {
    let app = spawn_app().await;
    let acme = populated_tenant(&app, "acme").await;
    let globex = populated_tenant(&app, "globex").await;
    ok_json(app.call("globex", Method::PUT, "/api/variables/globex_only", &globex.owner, Some(json!({"value": "secret"}))).await).await;

    let acme_all = everything(&app, &acme).await;
    let globex_all = everything(&app, &globex).await;
    let ids = |all: &Value, list: &str, field: &str| -> Vec<String> {
        all[list].as_array().unwrap().iter().map(|item| item[field].as_str().unwrap().to_string()).collect()
    };

    assert_eq!(ids(&acme_all, "users", "email").len(), 2);
    assert!(ids(&acme_all, "users", "email").iter().all(|e| e.ends_with("@acme.test")), "{acme_all}");
    assert!(ids(&acme_all, "users", "id").iter().all(|id| !ids(&globex_all, "users", "id").contains(id)));
    assert!(!ids(&acme_all, "users", "id").contains(&globex.user_id));

    assert_eq!(ids(&acme_all, "api-keys", "id"), vec![acme.api_key_id.clone()]);
    assert_eq!(ids(&acme_all, "api-keys", "name"), vec!["acme key".to_string()]);
    assert_eq!(ids(&globex_all, "api-keys", "id"), vec![globex.api_key_id.clone()]);

    assert_eq!(ids(&acme_all, "variables", "name"), vec!["region".to_string()]);
    assert_eq!(acme_all["variables"][0]["value"], "acme-region");
    assert_eq!(ids(&globex_all, "variables", "name"), vec!["globex_only".to_string(), "region".to_string()]);

    // Whatever credential acme uses, nothing of globex's shows up.
    for credential in [&acme.owner, &acme.api_key] {
        for list in ["users", "api-keys", "variables"] {
            let body = ok_json(app.call("acme", Method::GET, &format!("/api/{list}"), credential, None).await).await.to_string();
            for needle in ["globex", &globex.user_id, &globex.api_key_id] {
                assert!(!body.contains(needle), "acme's {list} mention {needle}: {body}");
            }
        }
    }
}
