//! The platform's clusters (docs/clustering.md, "Many clusters"): the
//! directory lists them, places each tenant on one, and a tenant on a
//! cluster with its own database lives there, served by that cluster's
//! nodes only.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tessera_tests::{connect, eventually, fresh_database, spawn_app, spawn_app_on, status_and_json, TestApp};

async fn platform_call(app: &TestApp, token: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = app.platform_request(method, path).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    status_and_json(request).await
}

fn new_tenant(slug: &str, cluster: Option<&str>) -> Value {
    json!({"slug": slug, "owner_email": format!("owner@{slug}.test"), "owner_password": format!("{slug}-owner-password"), "cluster": cluster})
}

#[tokio::test]
async fn clusters_are_created_listed_drained_and_place_new_tenants() {
    let app = spawn_app().await;
    let token = app.platform_token().await;

    let (status, body) = platform_call(&app, &token, Method::POST, "/api/platform/clusters", Some(json!({"id": "eu-2", "name": "Europe 2"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!((body["kind"].as_str(), body["state"].as_str(), body["tenants"].as_i64()), (Some("shared"), Some("active"), Some(0)));
    assert_eq!(body["database"], "the directory database");

    // Bad input: each a 4xx with its code, nothing stored.
    for (bad, code) in [
        (json!({"id": "Eu_3"}), "invalid_request"),
        (json!({"id": "p1", "kind": "dedicated"}), "invalid_request"),
        (json!({"id": "p1", "kind": "huge"}), "invalid_request"),
        (json!({"id": "p1", "database_url": "not a url at all ::"}), "invalid_request"),
        (json!({"id": "eu-2"}), "cluster_exists"),
    ] {
        let (status, body) = platform_call(&app, &token, Method::POST, "/api/platform/clusters", Some(bad.clone())).await;
        assert!(status.is_client_error(), "{bad}: {status} {body}");
        assert_eq!(body["error"]["code"], code, "{bad}: {body}");
    }
    assert_eq!(app.count("SELECT count(*) FROM platform.clusters").await, 2);

    // By default a tenant goes to this node's cluster; by name, to the one named.
    let (status, body) = platform_call(&app, &token, Method::POST, "/api/platform/tenants", Some(new_tenant("acme", None))).await;
    assert_eq!((status, body["tenant"]["cluster"].as_str()), (StatusCode::CREATED, Some("local")), "{body}");
    let (status, body) = platform_call(&app, &token, Method::POST, "/api/platform/tenants", Some(new_tenant("globex", Some("eu-2")))).await;
    assert_eq!((status, body["tenant"]["cluster"].as_str()), (StatusCode::CREATED, Some("eu-2")), "{body}");
    let (status, body) = platform_call(&app, &token, Method::POST, "/api/platform/tenants", Some(new_tenant("initech", Some("nowhere")))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("cluster_not_found")), "{body}");

    // A draining cluster takes no new tenant, by name or by default.
    let (status, body) = platform_call(&app, &token, Method::POST, "/api/platform/clusters/eu-2/drain", None).await;
    assert_eq!((status, body["state"].as_str()), (StatusCode::OK, Some("draining")), "{body}");
    let (status, body) = platform_call(&app, &token, Method::POST, "/api/platform/tenants", Some(new_tenant("initech", Some("eu-2")))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("cluster_draining")), "{body}");
    let (status, body) = platform_call(&app, &token, Method::POST, "/api/platform/clusters/local/drain", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = platform_call(&app, &token, Method::POST, "/api/platform/tenants", Some(new_tenant("initech", None))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("no_active_cluster")), "{body}");
    // Active again: the default goes to the one with the fewest tenants
    // when this node's own cluster does not take new ones.
    platform_call(&app, &token, Method::POST, "/api/platform/clusters/eu-2/activate", None).await;
    let (status, body) = platform_call(&app, &token, Method::POST, "/api/platform/tenants", Some(new_tenant("initech", None))).await;
    assert_eq!((status, body["tenant"]["cluster"].as_str()), (StatusCode::CREATED, Some("eu-2")), "{body}");
    assert_eq!(app.count("SELECT count(*) FROM platform.tenants WHERE slug = 'initech'").await, 1);

    let (status, body) = platform_call(&app, &token, Method::GET, "/api/platform/clusters", None).await;
    assert_eq!(status, StatusCode::OK);
    let counts: Vec<(String, i64)> =
        body["items"].as_array().unwrap().iter().map(|c| (c["id"].as_str().unwrap().to_string(), c["tenants"].as_i64().unwrap())).collect();
    assert_eq!(counts, [("eu-2".to_string(), 2), ("local".to_string(), 1)]);
    let (status, body) = platform_call(&app, &token, Method::GET, "/api/platform/clusters/local", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let nodes = body["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1, "{body}");
    assert_eq!(nodes[0]["live"], true);
    let (status, body) = platform_call(&app, &token, Method::GET, "/api/platform/clusters/nowhere", None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("cluster_not_found")));
}

#[tokio::test]
async fn a_tenant_on_a_cluster_with_its_own_database_lives_there_and_only_its_nodes_serve_it() {
    let app = spawn_app().await;
    let token = app.platform_token().await;
    let (b_name, b_url) = fresh_database().await;
    // The URL carries a password (the test server trusts any): never shown.
    let with_password = b_url.replacen("postgres@", "postgres:hunter2@", 1);
    assert_ne!(with_password, b_url, "the test URL names its user");
    let create = json!({"id": "b", "kind": "dedicated", "partner": "globex", "database_url": with_password});
    let (status, body) = platform_call(&app, &token, Method::POST, "/api/platform/clusters", Some(create)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body["database"].as_str().unwrap().ends_with(&format!("/{b_name}")), "{body}");
    assert!(!body.to_string().contains("hunter2"), "{body}");
    let b_db = connect(&b_url).await;
    let registered: i64 = b_db.query_one("SELECT count(*) FROM platform.clusters WHERE id = 'b'", &[]).await.unwrap().get(0);
    assert_eq!(registered, 1, "the cluster's database is migrated and lists it");

    let (status, body) = platform_call(&app, &token, Method::POST, "/api/platform/tenants", Some(new_tenant("beta", Some("b")))).await;
    assert_eq!((status, body["tenant"]["cluster"].as_str()), (StatusCode::CREATED, Some("b")), "{body}");
    let has_schema = |client: tokio_postgres::Client| async move {
        client.query_one("SELECT count(*) FROM pg_namespace WHERE nspname = 't_beta'", &[]).await.unwrap().get::<_, i64>(0)
    };
    assert_eq!(has_schema(connect(&b_url).await).await, 1, "the schema is in the cluster's database");
    assert_eq!(has_schema(app.db().await).await, 0, "and not in the directory's");
    let placed: String = b_db.query_one("SELECT cluster_id FROM platform.tenants WHERE slug = 'beta'", &[]).await.unwrap().get(0);
    assert_eq!(placed, "b");
    assert_eq!(app.count("SELECT count(*) FROM platform.tenants WHERE slug = 'beta' AND cluster_id = 'b'").await, 1);
    // `migrate` on the directory leaves it alone, however old its row there
    // says it is: its schema is migrated in its own cluster's database.
    app.db().await.execute("UPDATE platform.tenants SET schema_version = 1 WHERE slug = 'beta'", &[]).await.unwrap();
    let report = tessera_server::provisioning::migrate::migrate_tenants(&app.database_url, 2, |_| {}).await.unwrap();
    assert!(report.failures.is_empty() && report.total == 0, "{report:?}");

    // A node of cluster b serves it; the directory's node does not know it.
    let b_node = spawn_app_on(b_name, b_url.clone(), |c| c.cluster.id = "b".into()).await;
    let owner = b_node.login("beta", "owner@beta.test", "beta-owner-password").await;
    let (status, _) = b_node.tenant_get("beta", &owner, "/api/variables").await;
    assert_eq!(status, StatusCode::OK);
    let response = app.try_login("beta", "owner@beta.test", "beta-owner-password").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let (status, body) = platform_call(&app, &token, Method::GET, "/api/platform/clusters/b", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["nodes"].as_array().map(Vec::len), Some(1), "{body}");

    // Limits and egress rules set through the directory reach the rows its
    // own cluster's nodes read.
    let (status, body) =
        platform_call(&app, &token, Method::PATCH, "/api/platform/tenants/beta/limits", Some(json!({"running_executions": 3}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) =
        platform_call(&app, &token, Method::POST, "/api/platform/tenants/beta/egress/allow", Some(json!({"rules": ["10.9.0.0/16"]}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let b_token = b_node.platform_token().await;
    let (status, body) = platform_call(&b_node, &b_token, Method::GET, "/api/platform/tenants/beta/limits", None).await;
    assert_eq!((status, body["limits"]["running_executions"].as_u64()), (StatusCode::OK, Some(3)), "{body}");
    let (status, body) = platform_call(&b_node, &b_token, Method::GET, "/api/platform/tenants/beta/egress", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.to_string().contains("10.9.0.0/16"), "{body}");

    // Suspended through the directory: its own cluster's node refuses it.
    let response = app.tenant_lifecycle(&token, "beta", "suspend").await;
    assert_eq!(response.status(), StatusCode::OK);
    let refused = eventually(std::time::Duration::from_secs(5), || async {
        b_node.tenant_get("beta", &owner, "/api/variables").await.0 == StatusCode::FORBIDDEN
    })
    .await;
    assert!(refused, "the suspension reached the cluster's nodes");

    // Deleted: exported from its database, gone from both.
    let (status, body) = platform_call(&app, &token, Method::DELETE, "/api/platform/tenants/beta?confirm=beta", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(std::path::Path::new(body["export_path"].as_str().unwrap()).exists(), "{body}");
    assert_eq!(has_schema(connect(&b_url).await).await, 0);
    assert_eq!(app.count("SELECT count(*) FROM platform.tenants WHERE slug = 'beta'").await, 0);
    b_node.stop().await;
}

#[tokio::test]
async fn a_node_refuses_to_start_under_a_cluster_its_database_does_not_list() {
    let (_, url) = fresh_database().await;
    let mut config = tessera_tests::test_config(&url);
    config.cluster.id = "nowhere".into();
    let refused = tessera_server::startup::Application::build(config).await.err().expect("the node must not start");
    assert!(refused.to_string().contains("nowhere"), "{refused}");
}
