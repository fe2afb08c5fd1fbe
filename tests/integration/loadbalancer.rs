//! The load balancer (`tessera-lb`) in front of the nodes: it sends each
//! tenant's requests to a healthy node of the tenant's own cluster, the
//! lease owner first; refuses what nodes refuse without bothering them;
//! retries what is safe to retry when a node dies; and passes headers,
//! streams and TLS through as a client expects.
//!
//! Besides real nodes, these tests use fake nodes (a small hyper server
//! registered in `platform.nodes`) and taps (a fake node that forwards to a
//! real one and counts), so that what reached which node can be counted and
//! a node can be killed abruptly.

use std::{
    collections::HashMap,
    convert::Infallible,
    future::Future,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::{body::Frame, body::Incoming, Request, Response};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tessera_lb::{
    config::{CertificateConfig, TlsConfig},
    Config as LbConfig, LoadBalancer,
};
use tessera_tests::{
    connect, eventually, fresh_database, spawn_app, spawn_app_on, status_and_code, tessera_server::provisioning::migrate, TestApp,
    BASE_DOMAIN,
};
use uuid::Uuid;

type FakeBody = UnsyncBoxBody<Bytes, Infallible>;

/// A load balancer on a random loopback port over the directory at `database_url`.
async fn start_lb(database_url: &str, tweak: impl FnOnce(&mut LbConfig)) -> LoadBalancer {
    let mut config = LbConfig::default();
    config.listen = "127.0.0.1:0".into();
    config.base_domain = BASE_DOMAIN.into();
    config.database_url = database_url.into();
    // Fake nodes register once and never renew their heartbeat.
    config.node_timeout_ms = 120_000;
    config.health.interval_ms = 200;
    config.health.timeout_ms = 500;
    config.reload_interval_ms = 2000;
    tweak(&mut config);
    LoadBalancer::start(config).await.expect("start the load balancer")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

/// A request through the load balancer with the given Host.
fn via(lb: &LoadBalancer, http: &reqwest::Client, method: Method, host: &str, path: &str) -> reqwest::RequestBuilder {
    http.request(method, format!("http://{}{path}", lb.http_addr())).header("host", host)
}

fn tenant_host(slug: &str) -> String {
    format!("{slug}.{BASE_DOMAIN}")
}

/// A stand-in node: answers `/readyz` itself and every other request with
/// `handler`, counting them. `kill` drops the listener and every open
/// connection at once, as a crash would.
struct FakeNode {
    address: String,
    requests: Arc<AtomicUsize>,
    server: tokio::task::JoinHandle<()>,
}

impl FakeNode {
    async fn start<F, Fut>(handler: F) -> Self
    where
        F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Response<FakeBody>> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let server = tokio::spawn(async move {
            // Owned here, so that aborting this task closes every connection.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let (handler, counter) = (handler.clone(), counter.clone());
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let (handler, counter) = (handler.clone(), counter.clone());
                    async move {
                        if request.uri().path() == "/readyz" {
                            return Ok::<_, Infallible>(text(200, "ready"));
                        }
                        counter.fetch_add(1, Ordering::SeqCst);
                        Ok(handler(request).await)
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                connections.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                });
            }
        });
        Self { address, requests, server }
    }

    fn count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn kill(&self) {
        self.server.abort();
    }

    /// Register it as a node of `cluster` in the database at `url`.
    async fn register(&self, url: &str, cluster: &str) -> Uuid {
        let id = Uuid::now_v7();
        connect(url)
            .await
            .execute(
                "INSERT INTO platform.nodes (id, cluster_id, address, version) VALUES ($1, $2, $3, 'fake')",
                &[&id, &cluster, &self.address],
            )
            .await
            .expect("register a fake node");
        id
    }
}

fn text(status: u16, body: &str) -> Response<FakeBody> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())).boxed_unsync());
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    response
}

/// Answers with the request's headers as JSON, and the size of its body.
async fn echo(request: Request<Incoming>) -> Response<FakeBody> {
    let headers: HashMap<String, String> =
        request.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string())).collect();
    let size = match request.into_body().collect().await {
        Ok(body) => body.to_bytes().len(),
        Err(_) => return text(400, "body cut"),
    };
    text(200, &json!({"headers": headers, "body_bytes": size}).to_string())
}

/// Headers about one hop's framing, which the tap sets anew.
const FRAMING: &[&str] = &["content-length", "transfer-encoding", "connection"];

/// A tap in front of the real node at `upstream`: forwards each request and counts it.
async fn tap(upstream: String) -> FakeNode {
    let http = client();
    FakeNode::start(move |request: Request<Incoming>| {
        let (http, upstream) = (http.clone(), upstream.clone());
        async move {
            let (parts, body) = request.into_parts();
            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let mut forward = http.request(parts.method.clone(), format!("http://{upstream}{path}")).body(body);
            for (name, value) in parts.headers.iter().filter(|(name, _)| !FRAMING.contains(&name.as_str())) {
                forward = forward.header(name, value);
            }
            let Ok(answer) = forward.send().await else { return text(502, "tap: node unreachable") };
            let mut response = Response::new(Full::new(Bytes::new()).boxed_unsync());
            *response.status_mut() = answer.status();
            *response.headers_mut() = answer.headers().clone();
            for name in FRAMING {
                response.headers_mut().remove(*name);
            }
            let bytes = answer.bytes().await.unwrap_or_default();
            *response.body_mut() = Full::new(bytes).boxed_unsync();
            response
        }
    })
    .await
}

/// Put a tap in front of a real node: the directory lists the tap's
/// address as the node's (heartbeats keep the address a node registered).
async fn tap_node(app: &TestApp, node: Uuid, port: u16) -> FakeNode {
    let tap = tap(format!("127.0.0.1:{port}")).await;
    app.db().await.execute("UPDATE platform.nodes SET address = $2 WHERE id = $1", &[&node, &tap.address]).await.unwrap();
    tap
}

/// A tenant row written directly into the directory (for fake nodes).
async fn directory_tenant(url: &str, slug: &str) -> Uuid {
    let id = Uuid::now_v7();
    let schema = format!("t_{}", slug.replace('-', "_"));
    connect(url)
        .await
        .execute(
            "INSERT INTO platform.tenants (id, slug, schema_name, name, status) VALUES ($1, $2, $3, $2, 'active')",
            &[&id, &slug, &schema],
        )
        .await
        .unwrap();
    id
}

/// A migrated directory database with no node but the fakes the test adds.
async fn bare_directory() -> String {
    let (_, url) = fresh_database().await;
    migrate::migrate_platform(&url).await.expect("migrate the platform schema");
    url
}

/// The node holding `tenant`'s lease, as the database says.
async fn lease_owner(app: &TestApp, tenant: &str) -> Option<Uuid> {
    let tenant = Uuid::parse_str(tenant).unwrap();
    let sql = "SELECT node_id FROM platform.tenant_leases WHERE tenant_id = $1 AND node_id IS NOT NULL AND expires_at > now()";
    app.db().await.query_opt(sql, &[&tenant]).await.unwrap().map(|row| row.get(0))
}

#[tokio::test]
async fn an_unknown_tenant_or_a_hostile_host_is_refused_without_contacting_any_node() {
    let directory = bare_directory().await;
    directory_tenant(&directory, "acme").await;
    let node = FakeNode::start(echo).await;
    node.register(&directory, "local").await;
    let lb = start_lb(&directory, |_| {}).await;
    let http = client();

    for (host, status, code) in [
        ("nobody.localhost", StatusCode::NOT_FOUND, "tenant_not_found"),
        ("www.localhost:8000", StatusCode::NOT_FOUND, "tenant_not_found"),
        ("evil.example", StatusCode::BAD_REQUEST, "invalid_host"),
        ("acme..localhost", StatusCode::BAD_REQUEST, "invalid_host"),
        ("acme.localhost:99999999", StatusCode::BAD_REQUEST, "invalid_host"),
        ("deep.acme.localhost", StatusCode::BAD_REQUEST, "invalid_host"),
    ] {
        let response = via(&lb, &http, Method::GET, host, "/api/variables").send().await.unwrap();
        assert!(response.headers().contains_key("x-request-id"), "a refusal carries the request id");
        assert_eq!(status_and_code(response).await, (status, code.to_string()), "host {host}");
    }
    assert_eq!(node.count(), 0, "no refused request reached a node");

    let response = via(&lb, &http, Method::GET, "acme.localhost", "/api/variables").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(node.count(), 1, "a known tenant's request reaches its node");
    lb.stop().await;
}

#[tokio::test]
async fn each_cluster_serves_its_own_tenants_through_one_load_balancer() {
    // Cluster `local`: the app's database, which is also the directory.
    let app = spawn_app().await;
    // Cluster `b`: a database of its own, with its own node.
    let (b_name, b_url) = fresh_database().await;
    migrate::migrate_platform(&b_url).await.unwrap();
    connect(&b_url).await.execute("INSERT INTO platform.clusters (id, name) VALUES ('b', 'Cluster B') ON CONFLICT DO NOTHING", &[]).await.unwrap();
    let node_b = spawn_app_on(b_name, b_url.clone(), |config| config.cluster.id = "b".into()).await;
    app.db()
        .await
        .execute(
            "INSERT INTO platform.clusters (id, name, database_url) VALUES ('b', 'Cluster B', $1) \
             ON CONFLICT (id) DO UPDATE SET database_url = EXCLUDED.database_url",
            &[&b_url],
        )
        .await
        .unwrap();

    let alpha = app.create_tenant("alpha").await;
    let beta = node_b.create_tenant("beta").await;
    // Beta's placement in the directory: the same tenant, on cluster b.
    let beta_id = Uuid::parse_str(&beta.id).unwrap();
    let row = node_b.db().await.query_one("SELECT schema_name, name FROM platform.tenants WHERE id = $1", &[&beta_id]).await.unwrap();
    let (schema, name): (String, String) = (row.get(0), row.get(1));
    app.db()
        .await
        .execute(
            "INSERT INTO platform.tenants (id, slug, schema_name, name, cluster_id, status) VALUES ($1, 'beta', $2, $3, 'b', 'active') \
             ON CONFLICT DO NOTHING",
            &[&beta_id, &schema, &name],
        )
        .await
        .unwrap();

    // A second node in each cluster.
    let second_a = app.add_node().await;
    let second_b = node_b.add_node().await;
    let lb = start_lb(&app.database_url, |_| {}).await;
    let http = client();
    // Each tenant's schema exists only in its own cluster's database, so a
    // sign-in and reads that succeed were served by nodes of that cluster.
    for tenant in [&alpha, &beta] {
        let login = json!({"email": tenant.owner_email, "password": tenant.owner_password});
        let response = via(&lb, &http, Method::POST, &tenant_host(&tenant.slug), "/api/auth/login").json(&login).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "sign-in on {} through the load balancer", tenant.slug);
        let token = response.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_string();
        for _ in 0..20 {
            let response =
                via(&lb, &http, Method::GET, &tenant_host(&tenant.slug), "/api/variables").bearer_auth(&token).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "a read on {} through the load balancer", tenant.slug);
        }
    }
    // The bare base domain is the platform's, served by the directory's own cluster.
    let platform_token = app.platform_token().await;
    let response = via(&lb, &http, Method::GET, BASE_DOMAIN, "/api/platform/cluster").bearer_auth(&platform_token).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    lb.stop().await;
    second_a.stop().await;
    second_b.stop().await;
}

#[tokio::test]
async fn requests_go_to_the_lease_owner_and_follow_the_lease_when_the_owner_stops() {
    let app = spawn_app().await;
    let (b, c) = (app.add_node().await, app.add_node().await);
    let tenant = app.create_tenant("acme").await;
    let token = app.owner_token(&tenant).await;
    assert!(eventually(Duration::from_secs(20), || async { lease_owner(&app, &tenant.id).await.is_some() }).await, "no lease taken");
    let owner = lease_owner(&app, &tenant.id).await.unwrap();

    let nodes = [(app.state.cluster.node().id, app.port), (b.state.cluster.node().id, b.port), (c.state.cluster.node().id, c.port)];
    let mut taps = HashMap::new();
    for (id, port) in nodes {
        taps.insert(id, tap_node(&app, id, port).await);
    }
    let lb = start_lb(&app.database_url, |_| {}).await;
    let http = client();
    let read = || async {
        via(&lb, &http, Method::GET, &tenant_host("acme"), "/api/variables").bearer_auth(&token).send().await.unwrap().status()
    };

    for _ in 0..10 {
        assert_eq!(read().await, StatusCode::OK);
    }
    assert_eq!(taps[&owner].count(), 10, "every request went to the lease owner");

    match nodes.iter().position(|(id, _)| *id == owner).unwrap() {
        0 => app.stop().await,
        1 => b.stop().await,
        _ => c.stop().await,
    }
    let moved = eventually(Duration::from_secs(15), || async { lease_owner(&app, &tenant.id).await.is_some_and(|n| n != owner) }).await;
    assert!(moved, "the lease did not move");
    let next = lease_owner(&app, &tenant.id).await.unwrap();
    // The load balancer hears of the new owner by notification, within moments.
    let followed = eventually(Duration::from_secs(5), || async {
        let before = taps[&next].count();
        for _ in 0..5 {
            assert_eq!(read().await, StatusCode::OK);
        }
        taps[&next].count() == before + 5
    })
    .await;
    assert!(followed, "requests did not follow the lease to its new owner");
    lb.stop().await;
}

#[tokio::test]
async fn a_node_killed_under_load_loses_no_idempotent_request() {
    let app = spawn_app().await;
    let b = app.add_node().await;
    let tenant = app.create_tenant("acme").await;
    let token = app.owner_token(&tenant).await;
    let tap_a = tap_node(&app, app.state.cluster.node().id, app.port).await;
    let tap_b = tap_node(&app, b.state.cluster.node().id, b.port).await;
    let lb = start_lb(&app.database_url, |_| {}).await;
    let http = client();

    const REQUESTS: usize = 200;
    let done = Arc::new(AtomicUsize::new(0));
    let load = {
        let (url, token, done) = (format!("http://{}/api/variables", lb.http_addr()), token.clone(), done.clone());
        let http = http.clone();
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            // Four clients at a time, each request on its way as the last returns.
            let requests = futures::stream::iter(0..REQUESTS).map(|_| {
                let (http, url, token, done) = (http.clone(), url.clone(), token.clone(), done.clone());
                async move {
                    let status = http.get(&url).header("host", tenant_host("acme")).bearer_auth(&token).send().await.map(|r| r.status());
                    done.fetch_add(1, Ordering::SeqCst);
                    status.map_err(|e| e.to_string())
                }
            });
            let mut requests = requests.buffer_unordered(4);
            while let Some(status) = requests.next().await {
                statuses.push(status);
            }
            statuses
        })
    };
    assert!(eventually(Duration::from_secs(30), || async { done.load(Ordering::SeqCst) >= REQUESTS / 4 }).await);
    // Kill whichever node is taking the requests.
    let (victim, survivor) = if tap_a.count() >= tap_b.count() { (&tap_a, &tap_b) } else { (&tap_b, &tap_a) };
    victim.kill();
    let survivor_before = survivor.count();

    let statuses = load.await.unwrap();
    let failed: Vec<_> = statuses.iter().filter(|s| !matches!(s, Ok(StatusCode::OK))).collect();
    assert!(failed.is_empty(), "{} of {REQUESTS} requests failed: {failed:?}", failed.len());
    assert!(survivor.count() > survivor_before, "the other node took the requests after the kill");
    lb.stop().await;
}

#[tokio::test]
async fn forwarded_headers_and_the_request_id_reach_the_node_and_verified_custom_domains_route() {
    let directory = bare_directory().await;
    let acme = directory_tenant(&directory, "acme").await;
    let node = FakeNode::start(echo).await;
    node.register(&directory, "local").await;
    let db = connect(&directory).await;
    let add_domain = "INSERT INTO platform.tenant_domains (domain, tenant_id, token, verified_at) \
                      VALUES ($1, $2, 'token', CASE WHEN $3 THEN now() END)";
    db.execute(add_domain, &[&"hooks.acme.test", &acme, &true]).await.unwrap();
    db.execute(add_domain, &[&"later.acme.test", &acme, &false]).await.unwrap();
    let lb = start_lb(&directory, |_| {}).await;
    let http = client();
    let seen = |response: reqwest::Response| async move {
        assert_eq!(response.status(), StatusCode::OK);
        let id = response.headers()["x-request-id"].to_str().unwrap().to_string();
        (id, response.json::<Value>().await.unwrap()["headers"].clone())
    };

    let host = "acme.localhost:8000";
    let response = via(&lb, &http, Method::GET, host, "/hooks/x")
        .header("x-request-id", "client-chosen-id")
        .header("x-forwarded-for", "203.0.113.9")
        .header("connection", "x-private")
        .header("x-private", "hop")
        .send()
        .await
        .unwrap();
    let (id, headers) = seen(response).await;
    assert_eq!(id, "client-chosen-id", "a sane request id comes back as it was sent");
    assert_eq!(headers["x-request-id"], "client-chosen-id");
    assert_eq!(headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["x-forwarded-host"], host);
    assert_eq!(headers["host"], host);
    assert!(headers.get("x-private").is_none(), "headers named by Connection stay behind: {headers}");

    let response = via(&lb, &http, Method::GET, host, "/").header("x-request-id", "not ok").send().await;
    let (id, headers) = seen(response.unwrap()).await;
    assert!(Uuid::parse_str(&id).is_ok(), "an unusable request id is replaced by a new one: {id}");
    assert_eq!(headers["x-request-id"], id.as_str());

    let (_, headers) = seen(via(&lb, &http, Method::GET, "hooks.acme.test", "/hooks/x").send().await.unwrap()).await;
    assert_eq!(headers["host"], "acme.localhost", "a custom domain reaches the node under the tenant's own name");
    assert_eq!(headers["x-forwarded-host"], "hooks.acme.test");

    let before = node.count();
    let response = via(&lb, &http, Method::GET, "later.acme.test", "/hooks/x").send().await.unwrap();
    assert_eq!(status_and_code(response).await, (StatusCode::BAD_REQUEST, "invalid_host".into()), "an unverified domain is foreign");
    assert_eq!(node.count(), before);

    // Verifying it is a directory change the load balancer hears of.
    db.execute("UPDATE platform.tenant_domains SET verified_at = now() WHERE domain = 'later.acme.test'", &[]).await.unwrap();
    let routed = eventually(Duration::from_secs(5), || async {
        via(&lb, &http, Method::GET, "later.acme.test", "/hooks/x").send().await.unwrap().status() == StatusCode::OK
    })
    .await;
    assert!(routed, "a newly verified domain did not route");
    lb.stop().await;
}

#[tokio::test]
async fn a_streamed_response_passes_through_as_it_comes_and_an_oversized_body_gets_413() {
    let directory = bare_directory().await;
    directory_tenant(&directory, "acme").await;
    let release = Arc::new(tokio::sync::Notify::new());
    let gate = release.clone();
    let node = FakeNode::start(move |request: Request<Incoming>| {
        let gate = gate.clone();
        async move {
            if request.uri().path() != "/events" {
                return echo(request).await;
            }
            // The first event at once, the second only when the test says so.
            let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(4);
            tokio::spawn(async move {
                let _ = sender.send(Bytes::from_static(b"data: one\n\n")).await;
                gate.notified().await;
                let _ = sender.send(Bytes::from_static(b"data: two\n\n")).await;
            });
            let frames = futures::stream::unfold(receiver, |mut receiver| async move {
                receiver.recv().await.map(|chunk| (Ok::<_, Infallible>(Frame::data(chunk)), receiver))
            });
            let mut response = Response::new(StreamBody::new(frames).boxed_unsync());
            response.headers_mut().insert("content-type", "text/event-stream".parse().unwrap());
            response
        }
    })
    .await;
    node.register(&directory, "local").await;
    let lb = start_lb(&directory, |config| config.http.max_body_bytes = 100 * 1024).await;
    let http = client();

    let mut events = via(&lb, &http, Method::GET, "acme.localhost", "/events").send().await.unwrap();
    assert_eq!(events.status(), StatusCode::OK);
    let first = tokio::time::timeout(Duration::from_secs(10), events.chunk()).await.expect("the first event arrives before the stream ends");
    assert_eq!(first.unwrap().unwrap(), Bytes::from_static(b"data: one\n\n"));
    release.notify_one();
    let rest = events.bytes().await.unwrap();
    assert_eq!(rest, Bytes::from_static(b"data: two\n\n"));

    // A declared length over the limit is refused before any node hears of it.
    let before = node.count();
    let response = via(&lb, &http, Method::POST, "acme.localhost", "/hooks/x").body(vec![b'x'; 200 * 1024]).send().await.unwrap();
    assert_eq!(status_and_code(response).await, (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large".into()));
    assert_eq!(node.count(), before);

    // A streamed body of no declared length: passed on until it passes the limit.
    let chunks = |count: usize| {
        let frames = futures::stream::iter((0..count).map(|_| Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'y'; 32 * 1024])))));
        reqwest::Body::wrap(StreamBody::new(frames))
    };
    let response = via(&lb, &http, Method::POST, "acme.localhost", "/hooks/x").body(chunks(2)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap()["body_bytes"], 64 * 1024, "a streamed body under the limit arrives whole");
    let response = via(&lb, &http, Method::POST, "acme.localhost", "/hooks/x").body(chunks(8)).send().await.unwrap();
    assert_eq!(status_and_code(response).await, (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large".into()));
    lb.stop().await;
}

#[tokio::test]
async fn https_serves_with_the_certificate_sni_names() {
    let directory = bare_directory().await;
    let acme = directory_tenant(&directory, "acme").await;
    connect(&directory)
        .await
        .execute(
            "INSERT INTO platform.tenant_domains (domain, tenant_id, token, verified_at) VALUES ('hooks.acme.test', $1, 't', now())",
            &[&acme],
        )
        .await
        .unwrap();
    let node = FakeNode::start(echo).await;
    node.register(&directory, "local").await;

    let dir = std::env::temp_dir().join(format!("tessera-lb-tls-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let certificate = |name: &str, domains: &[&str]| {
        let generated = rcgen::generate_simple_self_signed(domains.iter().map(|d| d.to_string()).collect::<Vec<_>>()).unwrap();
        let (cert_file, key_file) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
        std::fs::write(&cert_file, generated.cert.pem()).unwrap();
        std::fs::write(&key_file, generated.key_pair.serialize_pem()).unwrap();
        (CertificateConfig { domains: Vec::new(), cert_file, key_file }, generated.cert.der().to_vec())
    };
    let (platform, platform_der) = certificate("platform", &["localhost", "acme.localhost"]);
    let (mut custom, custom_der) = certificate("custom", &["hooks.acme.test"]);
    custom.domains = vec!["hooks.acme.test".into()];
    let lb = start_lb(&directory, |config| {
        config.tls = Some(TlsConfig { listen: "127.0.0.1:0".into(), certificates: vec![platform, custom] });
    })
    .await;
    let https = lb.https_addr().expect("an HTTPS listener");

    // The certificates are self-signed: what is checked is which one is presented.
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .tls_info(true)
        .resolve("acme.localhost", https)
        .resolve("hooks.acme.test", https)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    for (host, der, canonical) in [("acme.localhost", &platform_der, "acme.localhost"), ("hooks.acme.test", &custom_der, "acme.localhost")] {
        let response = http.get(format!("https://{host}:{}/hooks/x", https.port())).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{host} over HTTPS");
        let presented = response.extensions().get::<reqwest::tls::TlsInfo>().and_then(|i| i.peer_certificate()).map(<[u8]>::to_vec);
        assert_eq!(presented.as_ref(), Some(der), "SNI {host} picks its certificate");
        let headers = response.json::<Value>().await.unwrap()["headers"].clone();
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert_eq!(headers["host"].as_str().unwrap().split(':').next(), Some(canonical));
    }
    lb.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}
