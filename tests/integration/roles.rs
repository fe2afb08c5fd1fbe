//! Roles, owner > admin > editor > viewer, on every write: viewers read,
//! editors change variables, admins manage users and keys, owners manage
//! owners; nobody grants more than they hold, and a tenant keeps an owner.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tessera_tests::{spawn_app, status_and_body, status_and_code, TestApp, TestTenant};

fn forbidden() -> (StatusCode, String) {
    (StatusCode::FORBIDDEN, "forbidden".into())
}

async fn put_variable(app: &TestApp, credential: &str, name: &str, value: Value) -> reqwest::Response {
    app.call("acme", Method::PUT, &format!("/api/variables/{name}"), credential, Some(json!({"value": value}))).await
}

async fn create_user(app: &TestApp, credential: &str, email: &str, role: &str) -> reqwest::Response {
    app.call("acme", Method::POST, "/api/users", credential, Some(json!({"email": email, "password": "a-good-password", "role": role}))).await
}

async fn create_key(app: &TestApp, credential: &str, role: &str) -> reqwest::Response {
    app.call("acme", Method::POST, "/api/api-keys", credential, Some(json!({"name": format!("{role} key"), "role": role}))).await
}

/// A user with `role` in acme: their id and a token.
async fn member(app: &TestApp, acme: &TestTenant, role: &str) -> (String, String) {
    let token = app.user_with_role(acme, role).await;
    let me: Value = app.call("acme", Method::GET, "/api/me", &token, None).await.json().await.unwrap();
    assert_eq!(me["role"], role);
    (me["principal"]["id"].as_str().unwrap().to_string(), token)
}

async fn user(app: &TestApp, credential: &str, id: &str) -> Value {
    let (status, body) = status_and_body(app.call("acme", Method::GET, &format!("/api/users/{id}"), credential, None).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn user_count(app: &TestApp, credential: &str) -> usize {
    let (status, body) = status_and_body(app.call("acme", Method::GET, "/api/users", credential, None).await).await;
    assert_eq!(status, StatusCode::OK);
    body["items"].as_array().unwrap().len()
}

#[tokio::test]
async fn a_viewer_reads_variables_but_cannot_change_anything() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    assert_eq!(put_variable(&app, &owner, "region", json!("eu")).await.status(), StatusCode::OK);
    let (_, viewer) = member(&app, &acme, "viewer").await;

    let (status, list) = status_and_body(app.call("acme", Method::GET, "/api/variables", &viewer, None).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"][0]["name"], "region");
    let (status, one) = status_and_body(app.call("acme", Method::GET, "/api/variables/region", &viewer, None).await).await;
    assert_eq!((status, one["value"].clone()), (StatusCode::OK, json!("eu")));

    assert_eq!(status_and_code(put_variable(&app, &viewer, "region", json!("us")).await).await, forbidden());
    assert_eq!(status_and_code(put_variable(&app, &viewer, "fresh", json!(1)).await).await, forbidden());
    assert_eq!(status_and_code(app.call("acme", Method::DELETE, "/api/variables/region", &viewer, None).await).await, forbidden());
    assert_eq!(status_and_code(create_user(&app, &viewer, "new@acme.test", "viewer").await).await, forbidden());
    assert_eq!(status_and_code(create_key(&app, &viewer, "viewer").await).await, forbidden());

    // Nothing changed.
    let (_, list) = status_and_body(app.call("acme", Method::GET, "/api/variables", &owner, None).await).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["value"], "eu");
}

#[tokio::test]
async fn an_editor_changes_variables_but_not_users_or_keys() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let (editor_id, editor) = member(&app, &acme, "editor").await;
    let users_before = user_count(&app, &owner).await;

    let (status, created) = status_and_body(put_variable(&app, &editor, "region", json!({"primary": "eu"})).await).await;
    assert_eq!((status, created["value"].clone()), (StatusCode::OK, json!({"primary": "eu"})));
    assert_eq!(put_variable(&app, &editor, "region", json!("us")).await.status(), StatusCode::OK);
    let deleted = app.call("acme", Method::DELETE, "/api/variables/region", &editor, None).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);

    assert_eq!(status_and_code(create_user(&app, &editor, "new@acme.test", "viewer").await).await, forbidden());
    assert_eq!(status_and_code(create_key(&app, &editor, "viewer").await).await, forbidden());
    assert_eq!(status_and_code(app.call("acme", Method::GET, "/api/api-keys", &editor, None).await).await, forbidden());
    // Not even on themselves.
    let promote_self =
        app.call("acme", Method::PATCH, &format!("/api/users/{editor_id}"), &editor, Some(json!({"role": "admin"}))).await;
    assert_eq!(status_and_code(promote_self).await, forbidden());

    assert_eq!(user_count(&app, &owner).await, users_before);
    assert_eq!(user(&app, &owner, &editor_id).await["role"], "editor");
}

#[tokio::test]
async fn an_admin_manages_users_and_keys_but_not_owners() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let owner_id = app.call("acme", Method::GET, "/api/me", &owner, None).await.json::<Value>().await.unwrap()["principal"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, admin) = member(&app, &acme, "admin").await;

    // Users up to admin, keys up to admin.
    let (status, editor) = status_and_body(create_user(&app, &admin, "ed@acme.test", "editor").await).await;
    assert_eq!(status, StatusCode::CREATED);
    let editor_path = format!("/api/users/{}", editor["id"].as_str().unwrap());
    let promoted = app.call("acme", Method::PATCH, &editor_path, &admin, Some(json!({"role": "admin"}))).await;
    assert_eq!(promoted.status(), StatusCode::OK);
    assert_eq!(create_key(&app, &admin, "admin").await.status(), StatusCode::CREATED);
    let demoted = app.call("acme", Method::PATCH, &editor_path, &admin, Some(json!({"role": "viewer", "disabled": true}))).await;
    assert_eq!(demoted.status(), StatusCode::OK);
    assert_eq!(app.call("acme", Method::DELETE, &editor_path, &admin, None).await.status(), StatusCode::NO_CONTENT);

    // Never owner.
    assert_eq!(status_and_code(create_user(&app, &admin, "boss@acme.test", "owner").await).await, forbidden());
    let (status, other) = status_and_body(create_user(&app, &admin, "other@acme.test", "viewer").await).await;
    assert_eq!(status, StatusCode::CREATED);
    let other_path = format!("/api/users/{}", other["id"].as_str().unwrap());
    let to_owner = app.call("acme", Method::PATCH, &other_path, &admin, Some(json!({"role": "owner"}))).await;
    assert_eq!(status_and_code(to_owner).await, forbidden());
    assert_eq!(status_and_code(create_key(&app, &admin, "owner").await).await, forbidden());

    // And hands off the owner.
    let owner_path = format!("/api/users/{owner_id}");
    for change in [json!({"role": "viewer"}), json!({"disabled": true}), json!({"display_name": "Ex-owner"}), json!({"password": "taken-over-password"})] {
        let response = app.call("acme", Method::PATCH, &owner_path, &admin, Some(change.clone())).await;
        assert_eq!(status_and_code(response).await, forbidden(), "{change}");
    }
    assert_eq!(status_and_code(app.call("acme", Method::DELETE, &owner_path, &admin, None).await).await, forbidden());

    let owner_now = user(&app, &owner, &owner_id).await;
    assert_eq!((owner_now["role"].as_str(), owner_now["disabled"].as_bool()), (Some("owner"), Some(false)));
    assert_eq!(owner_now["display_name"], "");
    assert_eq!(user(&app, &owner, other["id"].as_str().unwrap()).await["role"], "viewer");
    assert!(app.login("acme", &acme.owner_email, &acme.owner_password).await.len() > 10, "the owner's password is unchanged");
}

#[tokio::test]
async fn an_owner_manages_other_owners() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;

    let (status, second) = status_and_body(create_user(&app, &owner, "co-owner@acme.test", "owner").await).await;
    assert_eq!((status, second["role"].as_str()), (StatusCode::CREATED, Some("owner")));
    let path = format!("/api/users/{}", second["id"].as_str().unwrap());
    let co_owner = app.login("acme", "co-owner@acme.test", "a-good-password").await;
    assert_eq!(app.call("acme", Method::GET, "/api/me", &co_owner, None).await.json::<Value>().await.unwrap()["role"], "owner");

    let (status, changed) =
        status_and_body(app.call("acme", Method::PATCH, &path, &owner, Some(json!({"role": "admin", "display_name": "Co"}))).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((changed["role"].as_str(), changed["display_name"].as_str()), (Some("admin"), Some("Co")));
    let (status, changed) = status_and_body(app.call("acme", Method::PATCH, &path, &owner, Some(json!({"role": "owner"}))).await).await;
    assert_eq!((status, changed["role"].as_str()), (StatusCode::OK, Some("owner")));

    assert_eq!(create_key(&app, &owner, "owner").await.status(), StatusCode::CREATED);
    assert_eq!(app.call("acme", Method::DELETE, &path, &owner, None).await.status(), StatusCode::NO_CONTENT);
    let gone = app.call("acme", Method::GET, &path, &owner, None).await;
    assert_eq!(status_and_code(gone).await, (StatusCode::NOT_FOUND, "not_found".into()));
}

#[tokio::test]
async fn the_last_owner_cannot_be_demoted_disabled_or_deleted() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let me: Value = app.call("acme", Method::GET, "/api/me", &owner, None).await.json().await.unwrap();
    let owner_path = format!("/api/users/{}", me["principal"]["id"].as_str().unwrap());
    let last_owner = (StatusCode::CONFLICT, "last_owner".to_string());

    for change in [json!({"role": "admin"}), json!({"disabled": true})] {
        let response = app.call("acme", Method::PATCH, &owner_path, &owner, Some(change.clone())).await;
        assert_eq!(status_and_code(response).await, last_owner, "{change}");
    }
    assert_eq!(status_and_code(app.call("acme", Method::DELETE, &owner_path, &owner, None).await).await, last_owner);

    // A disabled second owner does not count.
    let (_, second) = status_and_body(create_user(&app, &owner, "co-owner@acme.test", "owner").await).await;
    let second_path = format!("/api/users/{}", second["id"].as_str().unwrap());
    let disabled = app.call("acme", Method::PATCH, &second_path, &owner, Some(json!({"disabled": true}))).await;
    assert_eq!(disabled.status(), StatusCode::OK);
    let response = app.call("acme", Method::PATCH, &owner_path, &owner, Some(json!({"role": "viewer"}))).await;
    assert_eq!(status_and_code(response).await, last_owner);

    // Once the second owner is active, the first may step down.
    let enabled = app.call("acme", Method::PATCH, &second_path, &owner, Some(json!({"disabled": false}))).await;
    assert_eq!(enabled.status(), StatusCode::OK);
    let stepped_down = app.call("acme", Method::PATCH, &owner_path, &owner, Some(json!({"role": "admin"}))).await;
    assert_eq!(stepped_down.status(), StatusCode::OK);

    // And now the second one is the last.
    let co_owner = app.login("acme", "co-owner@acme.test", "a-good-password").await;
    let response = app.call("acme", Method::DELETE, &second_path, &co_owner, None).await;
    assert_eq!(status_and_code(response).await, last_owner);
    let still = user(&app, &co_owner, second["id"].as_str().unwrap()).await;
    assert_eq!((still["role"].as_str(), still["disabled"].as_bool()), (Some("owner"), Some(false)));
}

#[tokio::test]
async fn an_api_key_acts_with_its_role_and_no_more() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let secret = |body: Value| body["secret"].as_str().unwrap().to_string();
    let viewer_key = secret(create_key(&app, &owner, "viewer").await.json().await.unwrap());
    let editor_key = secret(create_key(&app, &owner, "editor").await.json().await.unwrap());

    assert_eq!(app.call("acme", Method::GET, "/api/variables", &viewer_key, None).await.status(), StatusCode::OK);
    assert_eq!(status_and_code(put_variable(&app, &viewer_key, "region", json!("eu")).await).await, forbidden());
    let via_header = app
        .tenant_request(Method::PUT, "acme", "/api/variables/region")
        .header("x-api-key", &viewer_key)
        .json(&json!({"value": "eu"}))
        .send()
        .await
        .unwrap();
    assert_eq!(status_and_code(via_header).await, forbidden());
    assert_eq!(status_and_code(create_user(&app, &viewer_key, "x@acme.test", "viewer").await).await, forbidden());

    assert_eq!(put_variable(&app, &editor_key, "region", json!("eu")).await.status(), StatusCode::OK);
    let delete = app.call("acme", Method::DELETE, "/api/variables/region", &viewer_key, None).await;
    assert_eq!(status_and_code(delete).await, forbidden());
    assert_eq!(app.call("acme", Method::GET, "/api/variables/region", &owner, None).await.status(), StatusCode::OK);
    assert_eq!(status_and_code(create_key(&app, &editor_key, "viewer").await).await, forbidden());
}

#[tokio::test]
async fn nobody_creates_an_api_key_above_their_own_role() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let (_, admin) = member(&app, &acme, "admin").await;
    let admin_key: Value = create_key(&app, &admin, "admin").await.json().await.unwrap();
    let admin_key = admin_key["secret"].as_str().unwrap().to_string();

    for (who, credential) in [("admin user", &admin), ("admin key", &admin_key)] {
        assert_eq!(status_and_code(create_key(&app, credential, "owner").await).await, forbidden(), "{who}");
        assert_eq!(status_and_code(create_user(&app, credential, &format!("{}@acme.test", who.replace(' ', "-")), "owner").await).await, forbidden(), "{who}");
        for role in ["admin", "editor", "viewer"] {
            assert_eq!(create_key(&app, credential, role).await.status(), StatusCode::CREATED, "{who} creates {role}");
        }
    }
    assert_eq!(create_key(&app, &owner, "owner").await.status(), StatusCode::CREATED);

    let (_, keys) = status_and_body(app.call("acme", Method::GET, "/api/api-keys", &owner, None).await).await;
    let owner_keys = keys["items"].as_array().unwrap().iter().filter(|k| k["role"] == "owner").count();
    assert_eq!(owner_keys, 1, "only the owner made an owner key");
}

/// A token says who signed in; what they may do is their standing now.
#[tokio::test]
async fn changing_a_users_standing_takes_effect_on_their_existing_token() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let (editor_id, editor) = member(&app, &acme, "editor").await;
    assert_eq!(put_variable(&app, &editor, "x", json!(1)).await.status(), StatusCode::OK);

    // Demoted to viewer: the same token can no longer write.
    let demote = app.call("acme", Method::PATCH, &format!("/api/users/{editor_id}"), &owner, Some(json!({"role": "viewer"}))).await;
    assert_eq!(demote.status(), StatusCode::OK);
    assert_eq!(status_and_code(put_variable(&app, &editor, "x", json!(2)).await).await, forbidden());
    let me: Value = app.call("acme", Method::GET, "/api/me", &editor, None).await.json().await.unwrap();
    assert_eq!(me["role"], "viewer");

    // Disabled: the token stops working altogether; enabled again, it works.
    let disable = app.call("acme", Method::PATCH, &format!("/api/users/{editor_id}"), &owner, Some(json!({"disabled": true}))).await;
    assert_eq!(disable.status(), StatusCode::OK);
    let refused = app.call("acme", Method::GET, "/api/me", &editor, None).await;
    assert_eq!(status_and_code(refused).await, (StatusCode::UNAUTHORIZED, "invalid_token".into()));
    app.call("acme", Method::PATCH, &format!("/api/users/{editor_id}"), &owner, Some(json!({"disabled": false}))).await;
    assert_eq!(app.call("acme", Method::GET, "/api/me", &editor, None).await.status(), StatusCode::OK);

    // Deleted: gone for good.
    let delete = app.call("acme", Method::DELETE, &format!("/api/users/{editor_id}"), &owner, None).await;
    assert_eq!(delete.status(), StatusCode::NO_CONTENT);
    let refused = app.call("acme", Method::GET, "/api/variables", &editor, None).await;
    assert_eq!(status_and_code(refused).await, (StatusCode::UNAUTHORIZED, "invalid_token".into()));
    let gone = app.call("acme", Method::GET, &format!("/api/users/{editor_id}"), &owner, None).await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
}

/// A stored role this version does not know (a corrupt row, or a role a
/// newer version wrote before a rollback) fails the request with 500
/// `internal_error`: it is never read as a viewer, nor as nobody.
#[tokio::test]
async fn a_corrupt_stored_role_fails_the_request_rather_than_grant_or_downgrade() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let user = app.create_user(&acme, "odd@acme.test", "editor").await;
    let user_path = format!("/api/users/{}", user["id"].as_str().unwrap());
    // Signed in before the corruption, and not used yet: nothing is cached.
    let token = app.login("acme", "odd@acme.test", "a-good-password").await;
    let key: Value = create_key(&app, &owner, "editor").await.json().await.unwrap();
    let key = key["secret"].as_str().unwrap().to_string();

    let db = app.db().await;
    db.batch_execute(
        "ALTER TABLE t_acme.users DROP CONSTRAINT users_role_check; \
         ALTER TABLE t_acme.api_keys DROP CONSTRAINT api_keys_role_check; \
         UPDATE t_acme.users SET role = 'superuser' WHERE email = 'odd@acme.test'; \
         UPDATE t_acme.api_keys SET role = 'superuser'",
    )
    .await
    .unwrap();

    let internal = || (StatusCode::INTERNAL_SERVER_ERROR, "internal_error".to_string());
    let login = app.try_login("acme", "odd@acme.test", "a-good-password").await;
    assert_eq!(status_and_code(login).await, internal(), "signing in");
    let (status, body) = status_and_body(app.call("acme", Method::GET, "/api/variables", &token, None).await).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "a token from before: {body}");
    assert!(!body.to_string().contains("superuser"), "the cause is logged, not sent: {body}");
    assert_eq!(status_and_code(app.call("acme", Method::GET, "/api/variables", &key, None).await).await, internal(), "the API key");
    assert_eq!(status_and_code(app.call("acme", Method::GET, "/api/users", &owner, None).await).await, internal(), "listing users");
    assert_eq!(status_and_code(app.call("acme", Method::GET, &user_path, &owner, None).await).await, internal(), "reading the user");
    assert_eq!(status_and_code(app.call("acme", Method::GET, "/api/api-keys", &owner, None).await).await, internal(), "listing keys");

    // A change reads the user's current role first: refused, nothing written.
    let renamed = app.call("acme", Method::PATCH, &user_path, &owner, Some(json!({"display_name": "Odd"}))).await;
    assert_eq!(status_and_code(renamed).await, internal(), "changing the user");
    let name: String = db.query_one("SELECT display_name FROM t_acme.users WHERE email = 'odd@acme.test'", &[]).await.unwrap().get(0);
    assert_eq!(name, "");

    // Everyone else goes on as before.
    assert_eq!(app.call("acme", Method::GET, "/api/variables", &owner, None).await.status(), StatusCode::OK);
}
