//! What operators rely on: liveness and readiness probes, request ids on
//! every response, and the private PostgreSQL behind `tessera dev`.

use std::{collections::HashSet, path::PathBuf, time::Duration};

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tessera_server::local_postgres::{find_bin_dir, LocalPostgres};
use tessera_tests::{admin_url, connect, eventually, fault, spawn_app, TestApp};

async fn probe(app: &TestApp, path: &str) -> (StatusCode, Value) {
    let response = app.http.get(format!("{}{path}", app.base_url())).send().await.unwrap();
    (response.status(), response.json().await.unwrap())
}

#[tokio::test]
async fn probes_answer_on_any_host_and_readiness_follows_the_database() {
    let app = spawn_app().await;

    // Probes use addresses, not tenant names: no Host check applies.
    for host in [None, Some("localhost"), Some("10.0.0.7:8080"), Some("evil.example.com")] {
        for path in ["/healthz", "/readyz"] {
            let mut request = app.http.get(format!("{}{path}", app.base_url()));
            if let Some(host) = host {
                request = request.header("host", host);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{path} with host {host:?}");
        }
    }
    assert_eq!(probe(&app, "/healthz").await.1["status"], "ok");
    let (status, ready) = probe(&app, "/readyz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["database"], "ok");
    assert_eq!(ready["migrations"], "current");

    // A tenant at the latest version keeps the node ready.
    app.create_tenant("acme").await;
    assert_eq!(probe(&app, "/readyz").await.0, StatusCode::OK);

    // The database goes away: readiness says so, liveness does not care.
    connect(&admin_url())
        .await
        .batch_execute(&format!("DROP DATABASE \"{}\" WITH (FORCE)", app.database_name))
        .await
        .expect("drop the app's database");
    let unready = eventually(Duration::from_secs(15), || async {
        let (status, body) = probe(&app, "/readyz").await;
        status == StatusCode::SERVICE_UNAVAILABLE && body["database"] == "unreachable"
    })
    .await;
    assert!(unready, "readyz reports the database unreachable");
    let (_, body) = probe(&app, "/readyz").await;
    assert_eq!(body["status"], "not_ready");
    assert!(!body.to_string().contains(&app.database_name), "no connection details leak: {body}");
    assert_eq!(probe(&app, "/healthz").await.0, StatusCode::OK, "the process itself is still alive");
}

#[tokio::test]
async fn every_response_carries_its_own_request_id() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let token = app.owner_token(&acme).await;

    let mut ids = HashSet::new();
    let mut responses = 0;
    for round in 0..5 {
        let requests = [
            app.http.get(format!("{}/healthz", app.base_url())),
            app.http.get(format!("{}/readyz", app.base_url())),
            app.tenant_request(Method::GET, "acme", "/api/me").bearer_auth(&token),
            app.tenant_request(Method::GET, "acme", "/api/me"),
            app.tenant_request(Method::GET, "nobody", "/api/me"),
            app.tenant_request(Method::GET, "acme", "/api/no-such-route").bearer_auth(&token),
            app.platform_request(Method::GET, "/api/platform/tenants"),
            app.request_with_host(Method::GET, "evil.example.com", "/api/me"),
            app.request_with_host(Method::GET, "bad..host", "/api/me"),
        ];
        for request in requests {
            let response = request.send().await.unwrap();
            let status = response.status();
            let id = response
                .headers()
                .get("x-request-id")
                .unwrap_or_else(|| panic!("round {round}: a {status} response has no X-Request-Id"))
                .to_str()
                .unwrap()
                .to_string();
            assert!(uuid::Uuid::parse_str(&id).is_ok(), "request id {id:?}");
            assert!(ids.insert(id.clone()), "request id {id} was used twice");
            responses += 1;
        }
    }
    assert_eq!(ids.len(), responses);
}

/// Stops a private PostgreSQL left running by a failed test and removes its
/// directory.
struct ClusterGuard(PathBuf);

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        let pgdata = self.0.join("postgres");
        if let Some(bin) = find_bin_dir().filter(|_| pgdata.join("postmaster.pid").exists()) {
            // As root the cluster runs as the postgres user (see LocalPostgres).
            let as_root = std::fs::read_to_string("/proc/self/status")
                .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0")));
            let mut stop = if as_root {
                let mut c = std::process::Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(bin.join("pg_ctl"));
                c
            } else {
                std::process::Command::new(bin.join("pg_ctl"))
            };
            let _ = stop
                .arg("-D")
                .arg(&pgdata)
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn the_private_postgres_of_tessera_dev_starts_serves_and_stops() {
    // Under /tmp: the postgres system user must be able to reach it.
    let dir = std::env::temp_dir().join(format!("tessera-local-pg-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let _guard = ClusterGuard(dir.clone());
    let port = fault::free_port().expect("a free port");
    let pg = LocalPostgres::new(dir.clone(), port).expect("PostgreSQL binaries are installed");
    assert!(!pg.is_running().await);

    pg.start().await.expect("initdb and start");
    assert!(pg.is_running().await);
    assert!(dir.join("postgres/PG_VERSION").exists(), "the cluster lives in the given directory");
    pg.ensure_database("tessera").await.expect("create the database");
    pg.ensure_database("tessera").await.expect("ensuring it again is harmless");
    assert_eq!(pg.url("tessera"), format!("postgres://postgres@127.0.0.1:{port}/tessera"));

    let client = connect(&pg.url("tessera")).await;
    let row = client.query_one("SELECT 1, current_database(), inet_server_addr()::text", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 1);
    assert_eq!(row.get::<_, String>(1), "tessera");
    assert_eq!(row.get::<_, String>(2), "127.0.0.1/32", "loopback only");
    drop(client);

    // Starting an already running cluster is a no-op.
    pg.start().await.expect("start again");
    pg.stop().await.expect("stop");
    assert!(!pg.is_running().await);
    assert!(tokio_postgres::connect(&pg.url("tessera"), tokio_postgres::NoTls).await.is_err(), "nothing listens any more");
}
