//! Signing in and proving who you are: passwords and tokens per tenant,
//! API keys, login throttling, and what is (not) stored.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tessera_tests::{
    error_code, spawn_app, spawn_app_with, status_and_body, status_and_code,
    tessera_server::provisioning::NewTenant,
    TestApp, PLATFORM_OWNER,
};

/// Create an API key as `token`; returns the creation response (with `secret`).
async fn create_key(app: &TestApp, slug: &str, token: &str, name: &str, role: &str) -> Value {
    let response = app
        .tenant_request(Method::POST, slug, "/api/api-keys")
        .bearer_auth(token)
        .json(&json!({"name": name, "role": role}))
        .send()
        .await
        .unwrap();
    let (status, body) = status_and_body(response).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

async fn list_keys(app: &TestApp, slug: &str, token: &str) -> Value {
    let response = app.tenant_request(Method::GET, slug, "/api/api-keys").bearer_auth(token).send().await.unwrap();
    let (status, body) = status_and_body(response).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn b64url_decode(text: &str) -> Vec<u8> {
    let mut bits = 0u32;
    let mut nbits = 0;
    let mut out = Vec::new();
    for c in text.bytes() {
        let v = B64URL.iter().position(|&b| b == c).expect("base64url") as u32;
        bits = (bits << 6) | v;
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            out.push((bits >> nbits) as u8);
            bits &= (1 << nbits) - 1;
        }
    }
    out
}

fn b64url_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(B64URL[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Rewrite a JWT's claims, keeping its header and signature.
fn with_claims(token: &str, change: impl FnOnce(&mut Value)) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT has three parts");
    let mut claims: Value = serde_json::from_slice(&b64url_decode(parts[1])).unwrap();
    change(&mut claims);
    format!("{}.{}.{}", parts[0], b64url_encode(&serde_json::to_vec(&claims).unwrap()), parts[2])
}

#[tokio::test]
async fn a_user_signs_in_on_their_tenant_host_and_the_token_says_who_they_are() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;

    // Email addresses are matched case-insensitively.
    let response = app.try_login("acme", &acme.owner_email.to_uppercase(), &acme.owner_password).await;
    let (status, body) = status_and_body(response).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_i64().unwrap() > 0);
    let token = body["token"].as_str().unwrap();
    assert_eq!(token.split('.').count(), 3, "a JWT");

    let me = app.tenant_request(Method::GET, "acme", "/api/me").bearer_auth(token).send().await.unwrap();
    let (status, me) = status_and_body(me).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["tenant"]["id"], acme.id.as_str());
    assert_eq!(me["principal"]["kind"], "user");
    assert_eq!(me["principal"]["email"], acme.owner_email.as_str());
    assert!(me["principal"]["id"].as_str().unwrap().parse::<uuid::Uuid>().is_ok());
    assert_eq!(me["role"], "owner");
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_user_get_the_same_answer() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;

    let wrong_password = app.try_login("acme", &acme.owner_email, "not-the-password").await;
    let (status, wrong_password) = status_and_body(wrong_password).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong_password["error"]["code"], "invalid_credentials");

    let unknown_user = app.try_login("acme", "nobody@acme.test", "not-the-password").await;
    let (status, unknown_user) = status_and_body(unknown_user).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown_user, wrong_password, "the answer must not reveal which accounts exist");

    // A tenant's user is unknown on the platform host, and the platform owner on a tenant host.
    let on_platform = app
        .platform_request(Method::POST, "/api/auth/login")
        .json(&json!({"email": acme.owner_email, "password": acme.owner_password}))
        .send()
        .await
        .unwrap();
    assert_eq!(status_and_body(on_platform).await, (StatusCode::UNAUTHORIZED, wrong_password.clone()));
    let on_tenant = app.try_login("acme", PLATFORM_OWNER.0, PLATFORM_OWNER.1).await;
    assert_eq!(status_and_body(on_tenant).await, (StatusCode::UNAUTHORIZED, wrong_password));
}

#[tokio::test]
async fn a_token_is_only_good_on_the_tenant_that_issued_it() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let globex = app.create_tenant("globex").await;
    let acme_token = app.owner_token(&acme).await;

    let on_globex = app.tenant_request(Method::GET, "globex", "/api/me").bearer_auth(&acme_token).send().await.unwrap();
    assert_eq!(status_and_code(on_globex).await, (StatusCode::UNAUTHORIZED, "invalid_token".into()));
    let write = app
        .tenant_request(Method::PUT, "globex", "/api/variables/region")
        .bearer_auth(&acme_token)
        .json(&json!({"value": "eu"}))
        .send()
        .await
        .unwrap();
    assert_eq!(status_and_code(write).await, (StatusCode::UNAUTHORIZED, "invalid_token".into()));

    let globex_owner = app.owner_token(&globex).await;
    let region = app.tenant_request(Method::GET, "globex", "/api/variables/region").bearer_auth(&globex_owner).send().await.unwrap();
    assert_eq!(region.status(), StatusCode::NOT_FOUND, "nothing was written to globex");
}

#[tokio::test]
async fn platform_and_tenant_tokens_do_not_cross_over() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let platform = app.platform_token().await;
    let tenant = app.owner_token(&acme).await;

    let platform_on_tenant = app.tenant_request(Method::GET, "acme", "/api/me").bearer_auth(&platform).send().await.unwrap();
    assert_eq!(status_and_code(platform_on_tenant).await, (StatusCode::UNAUTHORIZED, "invalid_token".into()));

    let tenant_on_platform =
        app.platform_request(Method::GET, "/api/platform/tenants").bearer_auth(&tenant).send().await.unwrap();
    assert_eq!(status_and_code(tenant_on_platform).await, (StatusCode::UNAUTHORIZED, "invalid_token".into()));
    let create = app
        .platform_request(Method::POST, "/api/platform/tenants")
        .bearer_auth(&tenant)
        .json(&json!({"slug": "globex", "owner_email": "owner@globex.test", "owner_password": "globex-owner-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(status_and_code(create).await, (StatusCode::UNAUTHORIZED, "invalid_token".into()));
    let missing = app.tenant_request(Method::GET, "globex", "/api/me").send().await.unwrap();
    assert_eq!(status_and_code(missing).await, (StatusCode::NOT_FOUND, "tenant_not_found".into()), "globex was not created");
}

#[tokio::test]
async fn a_tampered_token_is_refused() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let viewer = app.user_with_role(&acme, "viewer").await;

    // The token as issued is fine.
    let me = app.tenant_request(Method::GET, "acme", "/api/me").bearer_auth(&viewer).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::OK);

    // A viewer promoting themselves in the claims (the rewrite itself is sound).
    let payload = b64url_decode(viewer.split('.').nth(1).unwrap());
    assert_eq!(b64url_decode(&b64url_encode(&payload)), payload);
    let promoted = with_claims(&viewer, |c| c["role"] = json!("owner"));
    let claims: Value = serde_json::from_slice(&b64url_decode(promoted.split('.').nth(1).unwrap())).unwrap();
    assert_eq!((claims["role"].as_str(), claims["tid"].as_str()), (Some("owner"), Some(acme.id.as_str())));
    // A token kept alive past its expiry.
    let extended = with_claims(&viewer, |c| c["exp"] = json!(c["exp"].as_i64().unwrap() + 86_400));
    // A broken signature.
    let (body, signature) = viewer.rsplit_once('.').unwrap();
    let flipped = if signature.starts_with('A') { 'B' } else { 'A' };
    let resigned = format!("{body}.{flipped}{}", &signature[1..]);
    // No signature at all ("alg": "none").
    let header = b64url_encode(br#"{"alg":"none","typ":"JWT"}"#);
    let unsigned = format!("{header}.{}.", viewer.split('.').nth(1).unwrap());

    for token in [&promoted, &extended, &resigned, &unsigned, &"not-a-token".to_string()] {
        let write = app
            .tenant_request(Method::PUT, "acme", "/api/variables/region")
            .bearer_auth(token)
            .json(&json!({"value": "eu"}))
            .send()
            .await
            .unwrap();
        assert_eq!(status_and_code(write).await, (StatusCode::UNAUTHORIZED, "invalid_token".into()), "{token}");
    }
}

#[tokio::test]
async fn requests_without_credentials_are_unauthenticated() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;

    for path in ["/api/me", "/api/users", "/api/variables", "/api/api-keys"] {
        let response = app.tenant_request(Method::GET, "acme", path).send().await.unwrap();
        assert_eq!(status_and_code(response).await, (StatusCode::UNAUTHORIZED, "unauthenticated".into()), "{path}");
    }
    let platform = app.platform_request(Method::GET, "/api/platform/tenants").send().await.unwrap();
    assert_eq!(status_and_code(platform).await, (StatusCode::UNAUTHORIZED, "unauthenticated".into()));

    // Only bearer credentials are understood.
    let basic = app
        .tenant_request(Method::GET, "acme", "/api/me")
        .basic_auth("owner@acme.test", Some("acme-owner-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(status_and_code(basic).await, (StatusCode::UNAUTHORIZED, "unauthenticated".into()));
}

#[tokio::test]
async fn an_api_key_is_shown_once_and_works_as_a_bearer_token_or_x_api_key() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;

    let created = create_key(&app, "acme", &owner, "deploy bot", "editor").await;
    let secret = created["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("tsk_"), "{secret}");
    assert!(secret.len() >= 40, "a key carries enough randomness: {secret}");
    assert!(secret.starts_with(created["prefix"].as_str().unwrap()));
    assert!(created["prefix"].as_str().unwrap().len() < secret.len() / 2);
    assert_eq!(created["role"], "editor");
    assert!(created["last_used_at"].is_null());
    assert!(created["revoked_at"].is_null());

    // Listing shows the prefix, never the secret.
    let listed = list_keys(&app, "acme", &owner).await;
    let item = &listed["items"][0];
    assert_eq!(item["id"], created["id"]);
    assert_eq!(item["prefix"], created["prefix"]);
    assert!(item.get("secret").is_none());
    assert!(!listed.to_string().contains(&secret), "the secret is returned only once");
    assert!(item["last_used_at"].is_null(), "not used yet");

    // It works both ways, and /api/me says it is a key.
    let as_bearer = app.tenant_request(Method::GET, "acme", "/api/me").bearer_auth(&secret).send().await.unwrap();
    let as_header = app.tenant_request(Method::GET, "acme", "/api/me").header("x-api-key", &secret).send().await.unwrap();
    for response in [as_bearer, as_header] {
        let (status, me) = status_and_body(response).await;
        assert_eq!(status, StatusCode::OK, "{me}");
        assert_eq!(me["principal"]["kind"], "api_key");
        assert_eq!(me["principal"]["id"], created["id"]);
        assert_eq!(me["principal"]["name"], "deploy bot");
        assert_eq!(me["role"], "editor");
        assert_eq!(me["tenant"]["slug"], "acme");
    }

    // An editor key can do what an editor can.
    let write = app
        .tenant_request(Method::PUT, "acme", "/api/variables/region")
        .header("x-api-key", &secret)
        .json(&json!({"value": "eu-west"}))
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), StatusCode::OK);

    // Its use was recorded.
    let listed = list_keys(&app, "acme", &owner).await;
    assert!(listed["items"][0]["last_used_at"].is_string(), "{listed}");
}

#[tokio::test]
async fn a_revoked_or_unknown_api_key_is_refused() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let created = create_key(&app, "acme", &owner, "ci", "viewer").await;
    let secret = created["secret"].as_str().unwrap();
    let other = create_key(&app, "acme", &owner, "other", "viewer").await;

    let before = app.tenant_request(Method::GET, "acme", "/api/variables").bearer_auth(secret).send().await.unwrap();
    assert_eq!(before.status(), StatusCode::OK);

    let revoked = app
        .tenant_request(Method::DELETE, "acme", &format!("/api/api-keys/{}", created["id"].as_str().unwrap()))
        .bearer_auth(&owner)
        .send()
        .await
        .unwrap();
    let (status, revoked) = status_and_body(revoked).await;
    assert_eq!(status, StatusCode::OK);
    assert!(revoked["revoked_at"].is_string());

    let as_bearer = app.tenant_request(Method::GET, "acme", "/api/variables").bearer_auth(secret).send().await.unwrap();
    assert_eq!(status_and_code(as_bearer).await, (StatusCode::UNAUTHORIZED, "invalid_api_key".into()));
    let as_header = app.tenant_request(Method::GET, "acme", "/api/variables").header("x-api-key", secret).send().await.unwrap();
    assert_eq!(status_and_code(as_header).await, (StatusCode::UNAUTHORIZED, "invalid_api_key".into()));

    // The other key is untouched.
    let still = app
        .tenant_request(Method::GET, "acme", "/api/variables")
        .bearer_auth(other["secret"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(still.status(), StatusCode::OK);

    // A key that was never issued, and a revoked key with one character changed.
    let made_up = format!("tsk_{}", "A".repeat(43));
    let mut altered = other["secret"].as_str().unwrap().to_string();
    let last = altered.pop().unwrap();
    altered.push(if last == 'A' { 'B' } else { 'A' });
    for key in [made_up, altered] {
        let response = app.tenant_request(Method::GET, "acme", "/api/me").header("x-api-key", &key).send().await.unwrap();
        assert_eq!(status_and_code(response).await, (StatusCode::UNAUTHORIZED, "invalid_api_key".into()), "{key}");
    }
}

#[tokio::test]
async fn api_keys_are_stored_only_as_a_sha256_digest() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let created = create_key(&app, "acme", &owner, "ci", "admin").await;
    let secret = created["secret"].as_str().unwrap();
    let id: uuid::Uuid = created["id"].as_str().unwrap().parse().unwrap();

    let db = app.db().await;
    let row = db
        .query_one(
            "SELECT key_hash, key_hash = sha256(convert_to($2, 'UTF8')), k::text LIKE '%' || $2 || '%' \
             FROM t_acme.api_keys k WHERE id = $1",
            &[&id, &secret],
        )
        .await
        .unwrap();
    let stored: Vec<u8> = row.get(0);
    assert_eq!(stored.len(), 32, "a SHA-256 digest");
    assert_ne!(stored, secret.as_bytes());
    assert!(row.get::<_, bool>(1), "the digest is SHA-256 of the whole key");
    assert!(!row.get::<_, bool>(2), "no column holds the key in clear");
}

#[tokio::test]
async fn passwords_are_stored_as_argon2id_hashes() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    app.create_user(&acme, "viewer@acme.test", "viewer").await;

    let db = app.db().await;
    let tenant_hashes = db.query("SELECT password_hash FROM t_acme.users", &[]).await.unwrap();
    let platform_hashes = db.query("SELECT password_hash FROM platform.owners", &[]).await.unwrap();
    assert_eq!(tenant_hashes.len(), 2);
    assert_eq!(platform_hashes.len(), 1);
    for row in tenant_hashes.iter().chain(&platform_hashes) {
        let hash: String = row.get(0);
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(!hash.contains("a-good-password") && !hash.contains(&acme.owner_password));
    }
}

#[tokio::test]
async fn a_disabled_user_cannot_sign_in_and_is_told_nothing_more() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let user = app.create_user(&acme, "temp@acme.test", "editor").await;
    let path = format!("/api/users/{}", user["id"].as_str().unwrap());
    app.login("acme", "temp@acme.test", "a-good-password").await;

    let disabled = app
        .tenant_request(Method::PATCH, "acme", &path)
        .bearer_auth(&owner)
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    let (status, body) = status_and_body(disabled).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["disabled"], true);

    let (status, refused) = status_and_body(app.try_login("acme", "temp@acme.test", "a-good-password").await).await;
    let (_, wrong_password) = status_and_body(app.try_login("acme", "temp@acme.test", "wrong-password").await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused["error"]["code"], "invalid_credentials");
    assert_eq!(refused, wrong_password, "a disabled account looks like a wrong password");

    // Enabled again, the same password works.
    let enabled = app
        .tenant_request(Method::PATCH, "acme", &path)
        .bearer_auth(&owner)
        .json(&json!({"disabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(enabled.status(), StatusCode::OK);
    app.login("acme", "temp@acme.test", "a-good-password").await;
}

#[tokio::test]
async fn repeated_logins_to_one_account_are_throttled() {
    let app = spawn_app_with(|c| {
        c.auth.login_per_account_per_minute = 3;
    })
    .await;
    let acme = app.create_tenant("acme").await;
    let globex = app.create_tenant("globex").await;
    app.create_user(&acme, "colleague@acme.test", "viewer").await;

    // Someone guesses the colleague's password three times...
    for attempt in 1..=3 {
        let response = app.try_login("acme", "colleague@acme.test", &format!("guess-{attempt}")).await;
        assert_eq!(status_and_code(response).await, (StatusCode::UNAUTHORIZED, "invalid_credentials".into()));
    }
    // ...and the fourth attempt waits, even with the right password.
    let fourth = app.try_login("acme", "colleague@acme.test", "a-good-password").await;
    assert_eq!(fourth.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = fourth
        .headers()
        .get("retry-after")
        .expect("a Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(error_code(fourth).await, "too_many_requests");

    // Other accounts are not locked out: not the owner next door, and not the
    // same address on another tenant (a different account there).
    app.owner_token(&acme).await;
    let elsewhere = app.try_login("globex", "colleague@acme.test", "a-good-password").await;
    assert_eq!(status_and_code(elsewhere).await, (StatusCode::UNAUTHORIZED, "invalid_credentials".into()));
    app.owner_token(&globex).await;
}

#[tokio::test]
async fn many_logins_from_one_address_are_throttled_across_accounts() {
    let app = spawn_app_with(|c| {
        c.auth.login_per_address_per_minute = 5;
    })
    .await;
    // Created directly, so no login counts against the address before the story starts.
    let created = app
        .state
        .provisioner
        .create_tenant(NewTenant {
            slug: "acme".into(),
            name: None,
            owner_email: "owner@acme.test".into(),
            owner_password: Some("acme-owner-password".into()),
            cluster: None,
        })
        .await
        .expect("create tenant");
    assert_eq!(created.tenant.slug.as_str(), "acme");

    for n in 1..=5 {
        let response = app.try_login("acme", &format!("user{n}@acme.test"), "some-password").await;
        assert_eq!(status_and_code(response).await, (StatusCode::UNAUTHORIZED, "invalid_credentials".into()), "attempt {n}");
    }
    let sixth = app.try_login("acme", "owner@acme.test", "acme-owner-password").await;
    assert_eq!(sixth.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(sixth.headers().get("retry-after").is_some());
    assert_eq!(error_code(sixth).await, "too_many_requests");

    // The platform host shares the address's budget.
    let platform = app
        .platform_request(Method::POST, "/api/auth/login")
        .json(&json!({"email": PLATFORM_OWNER.0, "password": PLATFORM_OWNER.1}))
        .send()
        .await
        .unwrap();
    assert_eq!(status_and_code(platform).await, (StatusCode::TOO_MANY_REQUESTS, "too_many_requests".into()));
}

async fn login_from(app: &TestApp, forwarded_for: &str, n: usize) -> StatusCode {
    app.tenant_request(Method::POST, "acme", "/api/auth/login")
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({"email": format!("user{n}@acme.test"), "password": "some-password"}))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn a_client_cannot_dodge_address_throttling_with_a_forged_forwarded_for() {
    let app = spawn_app_with(|c| c.auth.login_per_address_per_minute = 3).await;
    app.create_tenant("acme").await;
    // The tests connect from loopback, which no configuration names as a proxy.
    let addresses: Vec<String> = (0..4).map(|n| format!("198.51.100.{n}")).collect();
    let statuses = futures::future::join_all(addresses.iter().enumerate().map(|(n, a)| login_from(&app, a, n))).await;
    assert!(statuses.contains(&StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
}

#[tokio::test]
async fn forwarded_for_names_the_client_behind_a_configured_proxy() {
    let app = spawn_app_with(|c| {
        c.auth.login_per_address_per_minute = 3;
        c.auth.trusted_proxies = vec!["127.0.0.0/8".to_string().try_into().unwrap()];
    })
    .await;
    app.create_tenant("acme").await;
    // Each forwarded client has its own budget behind the trusted proxy...
    for n in 0..4 {
        assert_eq!(login_from(&app, &format!("198.51.100.{n}"), n).await, StatusCode::UNAUTHORIZED, "client {n}");
    }
    // ...and one client is still throttled however it reaches the proxy.
    let mut statuses = Vec::new();
    for n in 0..4 {
        statuses.push(login_from(&app, "203.0.113.5", n).await);
    }
    assert_eq!(statuses.last(), Some(&StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
}

#[tokio::test]
async fn a_removed_platform_owner_loses_access_at_once() {
    let app = spawn_app().await;
    let token = app.platform_token().await;
    let tenants = || app.platform_request(Method::GET, "/api/platform/tenants").bearer_auth(&token).send();
    assert_eq!(tenants().await.unwrap().status(), StatusCode::OK);
    app.db().await.execute("DELETE FROM platform.owners WHERE email = $1", &[&PLATFORM_OWNER.0]).await.unwrap();
    let refused = tenants().await.unwrap();
    assert_eq!(status_and_code(refused).await, (StatusCode::UNAUTHORIZED, "invalid_token".into()));
}

#[tokio::test]
async fn the_baseline_routes_of_the_benchmarks_are_not_in_a_normal_build() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let token = app.owner_token(&acme).await;
    let response = app
        .request_with_host(Method::GET, &format!("localhost:{}", app.port), "/bench/baseline/t_acme/variables/x")
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}
