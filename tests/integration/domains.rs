//! Custom domains (docs/clustering.md, "Custom domains"): a platform owner
//! adds a domain to a tenant, the tenant publishes the TXT record it is
//! given, and only once that record is found does the domain route to the
//! tenant through the load balancer. A small DNS server on loopback stands
//! in for the domain's name servers.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tessera_lb::{Config as LbConfig, LoadBalancer};
use tessera_tests::{spawn_app_with, status_and_json, TestApp, BASE_DOMAIN};

/// TXT records by lower-case name (without the final dot), served over UDP.
#[derive(Clone, Default)]
struct FakeDns(Arc<Mutex<HashMap<String, Vec<String>>>>);

impl FakeDns {
    async fn start(&self) -> SocketAddr {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let address = socket.local_addr().unwrap();
        let records = self.0.clone();
        tokio::spawn(async move {
            let mut buffer = [0u8; 1500];
            while let Ok((n, peer)) = socket.recv_from(&mut buffer).await {
                let reply = answer(&buffer[..n], &records.lock().unwrap());
                if let Some(answer) = reply {
                    let _ = socket.send_to(&answer, peer).await;
                }
            }
        });
        address
    }

    fn publish(&self, name: &str, value: &str) {
        self.0.lock().unwrap().entry(name.to_string()).or_default().push(value.to_string());
    }
}

/// The answer to one DNS query (RFC 1035, section 4): the question echoed,
/// then each TXT record of the name; NXDOMAIN when it has none.
fn answer(query: &[u8], records: &HashMap<String, Vec<String>>) -> Option<Vec<u8>> {
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = *query.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).to_lowercase());
        at += len;
    }
    let question_end = at + 4;
    let values = records.get(&labels.join(".")).cloned().unwrap_or_default();
    let mut out = Vec::new();
    out.extend_from_slice(query.get(0..2)?);
    out.extend_from_slice(&[0x81, if values.is_empty() { 0x83 } else { 0x80 }]);
    out.extend_from_slice(&[0, 1]);
    out.extend_from_slice(&(values.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(query.get(12..question_end)?);
    for value in values {
        out.extend_from_slice(&[0xc0, 0x0c, 0, 16, 0, 1, 0, 0, 0, 0]);
        out.extend_from_slice(&((value.len() + 1) as u16).to_be_bytes());
        out.push(value.len() as u8);
        out.extend_from_slice(value.as_bytes());
    }
    Some(out)
}

async fn call(app: &TestApp, token: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = app.platform_request(method, path).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    status_and_json(request).await
}

#[tokio::test]
async fn a_custom_domain_routes_only_once_its_txt_record_proves_the_tenant_controls_it() {
    let dns = FakeDns::default();
    let dns_address = dns.start().await;
    let app = spawn_app_with(|c| c.provisioning.dns_servers = vec![dns_address]).await;
    let token = app.platform_token().await;
    let acme = app.create_tenant("acme").await;
    app.create_tenant("globex").await;

    let (status, added) = call(&app, &token, Method::POST, "/api/platform/tenants/acme/domains", Some(json!({"domain": " Integrations.Acme.COM. "}))).await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    assert_eq!((added["domain"].as_str(), added["verified"].as_bool()), (Some("integrations.acme.com"), Some(false)));
    let name = added["verification"]["name"].as_str().unwrap().to_string();
    let value = added["verification"]["value"].as_str().unwrap().to_string();
    assert_eq!(name, "_tessera-challenge.integrations.acme.com");
    assert!(value.starts_with("tessera-verification=") && value.len() > 40, "{value}");

    // Bad input: each refused with its code, nothing stored.
    for (slug, domain, code) in [
        ("acme", "acme.localhost", "invalid_domain"),
        ("acme", "localhost", "invalid_domain"),
        ("acme", "10.0.0.1", "invalid_domain"),
        ("acme", "not a domain", "invalid_domain"),
        ("globex", "integrations.acme.com", "domain_taken"),
        ("ghost", "ghost.example.org", "tenant_not_found"),
    ] {
        let (status, body) = call(&app, &token, Method::POST, &format!("/api/platform/tenants/{slug}/domains"), Some(json!({"domain": domain}))).await;
        assert!(status.is_client_error(), "{domain}: {status} {body}");
        assert_eq!(body["error"]["code"], code, "{domain}: {body}");
    }
    assert_eq!(app.count("SELECT count(*) FROM platform.tenant_domains").await, 1);

    let mut lb_config = LbConfig::default();
    lb_config.listen = "127.0.0.1:0".into();
    lb_config.base_domain = BASE_DOMAIN.into();
    lb_config.database_url = app.database_url.clone();
    let lb = LoadBalancer::start(lb_config).await.expect("start the load balancer");
    let login = json!({"email": acme.owner_email, "password": acme.owner_password});
    let sign_in = || {
        reqwest::Client::new()
            .post(format!("http://{}/api/auth/login", lb.http_addr()))
            .header("host", "integrations.acme.com")
            .json(&login)
            .send()
    };
    let refused = tessera_tests::status_and_code(sign_in().await.unwrap()).await;
    assert_eq!(refused, (StatusCode::BAD_REQUEST, "invalid_host".into()), "an unverified domain does not route");

    // Not published yet, or published with another value: not verified.
    let verify = "/api/platform/tenants/acme/domains/integrations.acme.com/verify";
    dns.publish(&name, "tessera-verification=someone-else");
    let (status, body) = call(&app, &token, Method::POST, verify, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("domain_not_verified")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains(&name), "{body}");
    // Another tenant cannot verify it in acme's stead.
    let (status, body) = call(&app, &token, Method::POST, "/api/platform/tenants/globex/domains/integrations.acme.com/verify", None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("domain_not_found")), "{body}");

    dns.publish(&name, &value);
    let (status, body) = call(&app, &token, Method::POST, verify, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["verified"], true);
    let routed = tessera_tests::eventually(std::time::Duration::from_secs(5), || async { sign_in().await.unwrap().status() == StatusCode::OK }).await;
    assert!(routed, "the verified domain routes to acme");

    let (status, list) = call(&app, &token, Method::GET, "/api/platform/tenants/acme/domains", None).await;
    assert_eq!((status, list["items"].as_array().map(Vec::len)), (StatusCode::OK, Some(1)), "{list}");
    let (status, list) = call(&app, &token, Method::GET, "/api/platform/tenants/globex/domains", None).await;
    assert_eq!((status, list["items"].as_array().map(Vec::len)), (StatusCode::OK, Some(0)), "{list}");

    let (status, _) = call(&app, &token, Method::DELETE, "/api/platform/tenants/acme/domains/integrations.acme.com", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let gone = tessera_tests::eventually(std::time::Duration::from_secs(5), || async { sign_in().await.unwrap().status() == StatusCode::BAD_REQUEST }).await;
    assert!(gone, "a removed domain stops routing");
    let (status, body) = call(&app, &token, Method::DELETE, "/api/platform/tenants/acme/domains/integrations.acme.com", None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("domain_not_found")));
    lb.stop().await;
}
