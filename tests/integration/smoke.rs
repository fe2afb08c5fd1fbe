use reqwest::{Method, StatusCode};
use serde_json::Value;
use tessera_tests::spawn_app;

#[tokio::test]
async fn a_new_tenant_owner_signs_in_and_sees_their_tenant() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let token = app.owner_token(&acme).await;
    let me = app.tenant_request(Method::GET, "acme", "/api/me").bearer_auth(&token).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    let body: Value = me.json().await.unwrap();
    assert_eq!(body["tenant"]["slug"], "acme");
    assert_eq!(body["role"], "owner");
    assert_eq!(body["principal"]["email"], acme.owner_email);
}
