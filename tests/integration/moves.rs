//! Moving a tenant between clusters (docs/clustering.md, "Moving a
//! tenant"): under load nothing accepted is lost and no step runs twice;
//! a move stopped at any point before its switch leaves the tenant whole
//! on its source, and the next run settles what it left.
//!
//! Step side effects land in a table of their own (an external database
//! the tenant's `sql` steps write), so a step that ran twice would show.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tessera_lb::{Config as LbConfig, LoadBalancer};
use tessera_tests::{
    connect, eventually, fresh_database, spawn_app_on, spawn_app_with, status_and_json, target_database,
    tessera_server::provisioning::moves::MovePhase, TestApp, BASE_DOMAIN,
};

/// A webhook integration of two steps, each recording its side effect.
fn recording_integration(effects_url: &str) -> String {
    let sql = |step: &str| {
        json!({"name": step, "sql": {"connection": "effects", "statement": "INSERT INTO effects (run, step) VALUES ($1, $2)",
            "params": [".trigger.body.run", format!("\"{step}\"")]}})
    };
    let integration = json!({"apiVersion": "tessera.dev/v1", "kind": "Integration", "metadata": {"name": "orders"}, "spec": {
        "triggers": [{"webhook": {"auth": "none"}}],
        "steps": [sql("one"), sql("two")]}});
    let connection = json!({"apiVersion": "tessera.dev/v1", "kind": "Connection", "metadata": {"name": "effects"},
        "spec": {"postgres": {"url": effects_url}}});
    format!("{connection}\n---\n{integration}")
}

/// Cluster `local` (the app's database, also the directory) and cluster
/// `b` with a database of its own, registered through the platform API;
/// with `node_b`, a node of b sharing the app's keys, as a platform's
/// clusters do.
async fn two_clusters(max_pause_ms: u64, node_b: bool) -> (TestApp, String, Option<TestApp>) {
    let app = spawn_app_with(|c| {
        c.cluster.node_timeout_ms = 10_000;
        c.provisioning.move_max_pause_ms = max_pause_ms;
    })
    .await;
    let (b_name, b_url) = fresh_database().await;
    let token = app.platform_token().await;
    let create = json!({"id": "b", "database_url": b_url});
    let (status, body) = status_and_json(app.platform_request(Method::POST, "/api/platform/clusters").bearer_auth(&token).json(&create)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let node = if node_b {
        let (jwt, key) = (app.config.jwt_secret.clone(), app.config.secrets.key.clone());
        Some(
            spawn_app_on(b_name, b_url.clone(), move |c| {
                c.cluster.id = "b".into();
                c.cluster.node_timeout_ms = 10_000;
                c.jwt_secret = jwt;
                c.secrets.key = key;
            })
            .await,
        )
    } else {
        None
    };
    (app, b_url, node)
}

async fn effects_database() -> (String, tokio_postgres::Client) {
    let (_, url) = target_database().await;
    let db = connect(&url).await;
    db.batch_execute("CREATE TABLE effects (run text NOT NULL, step text NOT NULL)").await.unwrap();
    (url, db)
}

async fn count(db: &tokio_postgres::Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn a_tenant_moved_under_load_loses_nothing_and_runs_nothing_twice() {
    let (app, b_url, node_b) = two_clusters(10_000, true).await;
    let node_b = node_b.unwrap();
    let (effects_url, effects) = effects_database().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    app.apply_yaml("acme", &owner, &recording_integration(&effects_url)).await;

    let mut lb_config = LbConfig::default();
    lb_config.listen = "127.0.0.1:0".into();
    lb_config.base_domain = BASE_DOMAIN.into();
    lb_config.database_url = app.database_url.clone();
    lb_config.health.interval_ms = 200;
    let lb = LoadBalancer::start(lb_config).await.expect("start the load balancer");
    let hook_url = format!("http://{}/hooks/orders", lb.http_addr());

    // Webhooks through the load balancer, one at a time per sender, until
    // told to stop: each run id is sent until accepted (202); a 503 (the
    // pause) is retried after its Retry-After, capped to keep the load on.
    let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    let unexpected = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..4 {
        let (accepted, unexpected, stop, url) = (accepted.clone(), unexpected.clone(), stop.clone(), hook_url.clone());
        senders.spawn(async move {
            let http = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
            for n in 0..2000 {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                let run = format!("{sender}-{n}");
                for _attempt in 0..200 {
                    let sent = http.post(&url).header("host", format!("acme.{BASE_DOMAIN}")).json(&json!({"run": run})).send().await;
                    match sent.map(|r| (r.status(), r.headers().get("retry-after").is_some())) {
                        Ok((StatusCode::ACCEPTED, _)) => {
                            accepted.lock().unwrap().push(run.clone());
                            break;
                        }
                        Ok((StatusCode::SERVICE_UNAVAILABLE, true)) => tokio::time::sleep(Duration::from_millis(50)).await,
                        other => {
                            unexpected.lock().unwrap().push(format!("{run}: {other:?}"));
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            }
        });
    }
    let enough = eventually(Duration::from_secs(30), || async { accepted.lock().unwrap().len() >= 100 }).await;
    assert!(enough, "the load never got going: {:?}", unexpected.lock().unwrap());

    let token = app.platform_token().await;
    let request = app.platform_request(Method::POST, "/api/platform/tenants/acme/move").bearer_auth(&token).json(&json!({"to": "b"}));
    let (status, report) = status_and_json(request).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let before = accepted.lock().unwrap().len();
    let more = eventually(Duration::from_secs(30), || async { accepted.lock().unwrap().len() >= before + 100 }).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    while senders.join_next().await.is_some() {}
    assert!(more, "requests after the move were not accepted: {:?}", unexpected.lock().unwrap());
    assert!(unexpected.lock().unwrap().is_empty(), "only 202 and 503 with Retry-After: {:?}", unexpected.lock().unwrap());

    // The tenant lives in b's database now, the directory says so, and the
    // source's copy was exported before it was dropped.
    assert_eq!(report["to"], "b", "{report}");
    assert!(report["paused_ms"].as_u64().is_some(), "{report}");
    assert!(std::path::Path::new(report["export_path"].as_str().unwrap()).exists(), "{report}");
    let left: Vec<String> =
        app.db().await.query("SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 't\\_acme%'", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert!(left.is_empty(), "the source's schema is gone: {left:?}");
    assert_eq!(app.count("SELECT count(*) FROM platform.tenants WHERE slug = 'acme' AND cluster_id = 'b' AND paused_until IS NULL").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM platform.tenant_moves WHERE slug = 'acme' AND state = 'done'").await, 1);
    assert!(report["rows_copied"].as_u64().unwrap() > 0 && report["catch_up_rounds"].as_u64().unwrap() >= 1, "{report}");
    let b_db = connect(&b_url).await;

    // Every accepted run exists once in the target and ran each step once.
    let accepted: Vec<String> = accepted.lock().unwrap().clone();
    let all_done = eventually(Duration::from_secs(60), || async {
        count(&b_db, "SELECT count(*) FROM t_acme.executions WHERE state = 'succeeded'").await == accepted.len() as i64
    })
    .await;
    let states = b_db.query("SELECT state, count(*) FROM t_acme.executions GROUP BY state", &[]).await.unwrap();
    let states: Vec<(String, i64)> = states.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert!(all_done, "accepted {}, executions by state {states:?}", accepted.len());
    let runs: HashSet<String> = b_db
        .query("SELECT trigger->'body'->>'run' FROM t_acme.executions", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(runs, accepted.iter().cloned().collect::<HashSet<_>>(), "the executions are exactly the accepted runs");
    let twice = effects.query("SELECT run, step FROM effects GROUP BY run, step HAVING count(*) > 1", &[]).await.unwrap();
    assert!(twice.is_empty(), "{} steps ran twice", twice.len());
    assert_eq!(count(&effects, "SELECT count(*) FROM effects").await, 2 * accepted.len() as i64, "each accepted run's two steps ran");

    // The tenant's users came along: its owner signs in on b's node.
    let owner_on_b = node_b.login("acme", &acme.owner_email, &acme.owner_password).await;
    assert_eq!(node_b.tenant_get("acme", &owner_on_b, "/api/integrations").await.0, StatusCode::OK);

    // And back to the directory's own cluster: b's database forgets it.
    let request = app.platform_request(Method::POST, "/api/platform/tenants/acme/move").bearer_auth(&token).json(&json!({"to": "local"}));
    let (status, back) = status_and_json(request).await;
    assert_eq!(status, StatusCode::OK, "{back}");
    assert_eq!(count(&b_db, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 't\\_acme%'").await, 0);
    assert_eq!(count(&b_db, "SELECT count(*) FROM platform.tenants WHERE slug = 'acme'").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM t_acme.executions").await, accepted.len() as i64);
    assert_eq!(app.count("SELECT count(*) FROM platform.tenants WHERE slug = 'acme' AND cluster_id = 'local'").await, 1);
    let response = reqwest::Client::new().post(&hook_url).header("host", format!("acme.{BASE_DOMAIN}")).json(&json!({"run": "home"})).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let ran = eventually(Duration::from_secs(20), || async {
        count(&effects, "SELECT count(*) FROM effects WHERE run = 'home'").await == 2
    })
    .await;
    assert!(ran, "the tenant runs on its first cluster again");
    lb.stop().await;
    node_b.stop().await;
}

/// Where a test stops the mover, as a kill would.
#[derive(Debug, Clone, Copy, PartialEq)]
enum KillAt {
    Copied,
    Paused,
}

#[tokio::test]
async fn a_move_killed_half_way_leaves_the_tenant_whole_on_the_source_and_the_next_run_settles_it() {
    let (app, b_url, _) = two_clusters(2000, false).await;
    let (effects_url, effects) = effects_database().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    app.apply_yaml("acme", &owner, &recording_integration(&effects_url)).await;
    let hook = |run: &str| app.tenant_request(Method::POST, "acme", "/hooks/orders").json(&json!({"run": run}));
    for n in 0..20 {
        assert_eq!(hook(&format!("before-{n}")).send().await.unwrap().status(), StatusCode::ACCEPTED);
    }
    let succeeded = |expected: i64| {
        let app = &app;
        async move {
            eventually(Duration::from_secs(30), || async {
                app.count("SELECT count(*) FROM t_acme.executions WHERE state = 'succeeded'").await == expected
            })
            .await
        }
    };
    assert!(succeeded(20).await);

    let mut expected = 20;
    for kill_at in [KillAt::Copied, KillAt::Paused] {
        let (phases, mut seen) = tokio::sync::mpsc::unbounded_channel();
        let provisioner = app.state.provisioner.clone();
        let mover = tokio::spawn(async move {
            provisioner
                .move_tenant("acme", "b", move |phase| {
                    let _ = phases.send(phase);
                })
                .await
        });
        loop {
            let phase = seen.recv().await.expect("the move ended before the kill point");
            let reached = match phase {
                MovePhase::Copied { .. } => KillAt::Copied,
                MovePhase::Paused => KillAt::Paused,
                _ => continue,
            };
            if reached == kill_at {
                break;
            }
        }
        mover.abort();
        let _ = mover.await;

        // Whole on the source: it answers (once a pause runs out by
        // itself), keeps its data and runs new work there.
        let answered = eventually(Duration::from_secs(10), || async { hook(&format!("after-{kill_at:?}")).send().await.unwrap().status() == StatusCode::ACCEPTED }).await;
        assert!(answered, "killed at {kill_at:?}: the source never answered again");
        expected += 1;
        assert!(succeeded(expected).await, "killed at {kill_at:?}: the source did not run new work");
        assert_eq!(app.count("SELECT count(*) FROM platform.tenants WHERE slug = 'acme' AND cluster_id = 'local'").await, 1);

        // The next run finds the move unfinished and undoes it: no copy in
        // b, no capture left on the source.
        let settled = app.state.provisioner.settle_move("acme").await.unwrap();
        assert_eq!(settled, Some(false), "killed at {kill_at:?}");
        let b_db = connect(&b_url).await;
        assert_eq!(count(&b_db, "SELECT count(*) FROM pg_namespace WHERE nspname = 't_acme'").await, 0);
        assert_eq!(count(&b_db, "SELECT count(*) FROM platform.tenants WHERE slug = 'acme'").await, 0);
        assert_eq!(app.count("SELECT count(*) FROM pg_tables WHERE schemaname = 't_acme' AND tablename LIKE 'tessera_move%'").await, 0);
        assert_eq!(app.count("SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 't_acme' AND p.proname LIKE 'tessera_move%'").await, 0);
        assert_eq!(app.state.provisioner.settle_move("acme").await.unwrap(), None, "nothing left to settle");
    }
    assert_eq!(app.count("SELECT count(*) FROM platform.tenant_moves WHERE slug = 'acme' AND state = 'failed'").await, 2);

    // A move run to its end afterwards: every row arrives.
    let report = app.state.provisioner.move_tenant("acme", "b", |_| {}).await.unwrap();
    assert_eq!(report.to, "b");
    let b_db = connect(&b_url).await;
    assert_eq!(count(&b_db, "SELECT count(*) FROM t_acme.executions WHERE state = 'succeeded'").await, expected);
    assert_eq!(count(&b_db, "SELECT count(*) FROM t_acme.execution_steps").await, 2 * expected);
    assert_eq!(count(&effects, "SELECT count(*) FROM effects").await, 2 * expected, "no step ran twice");
    let again = app.state.provisioner.move_tenant("acme", "b", |_| {}).await.err().expect("already there");
    assert!(again.to_string().contains("already on cluster 'b'"), "{again}");
}

#[tokio::test]
async fn a_tenant_moves_between_clusters_that_share_a_database_by_changing_its_placement() {
    let app = spawn_app_with(|c| c.cluster.node_timeout_ms = 10_000).await;
    let token = app.platform_token().await;
    let (status, body) = status_and_json(
        app.platform_request(Method::POST, "/api/platform/clusters").bearer_auth(&token).json(&json!({"id": "eu-2"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (jwt, key) = (app.config.jwt_secret.clone(), app.config.secrets.key.clone());
    let eu2 = spawn_app_on(app.database_name.clone(), app.database_url.clone(), move |c| {
        c.cluster.id = "eu-2".into();
        c.jwt_secret = jwt;
        c.secrets.key = key;
    })
    .await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let put = app.tenant_request(Method::PUT, "acme", "/api/variables/region").bearer_auth(&owner).json(&json!({"value": "eu"}));
    assert!(put.send().await.unwrap().status().is_success());

    let request = app.platform_request(Method::POST, "/api/platform/tenants/acme/move").bearer_auth(&token).json(&json!({"to": "eu-2"}));
    let (status, report) = status_and_json(request).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["export_path"], Value::Null, "nothing was copied: {report}");
    // Served by eu-2's node, with its data. Local's node, which a load
    // balancer may still pick for a moment, says to come again.
    let owner_on_eu2 = eu2.login("acme", &acme.owner_email, &acme.owner_password).await;
    let (status, variables) = eu2.tenant_get("acme", &owner_on_eu2, "/api/variables").await;
    assert_eq!(status, StatusCode::OK);
    assert!(variables.to_string().contains("region"), "{variables}");
    let misrouted = app.try_login("acme", &acme.owner_email, &acme.owner_password).await;
    assert_eq!(misrouted.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string()), Some("1".into()));
    assert_eq!(tessera_tests::status_and_code(misrouted).await, (StatusCode::SERVICE_UNAVAILABLE, "tenant_moving".into()));

    // A pause no date can hold (written by hand, say) pauses; it does not fail.
    let db = app.db().await;
    db.batch_execute("UPDATE platform.tenants SET paused_until = 'infinity' WHERE slug = 'acme'; NOTIFY tessera_tenant_changes, 'acme'").await.unwrap();
    let paused = eventually(std::time::Duration::from_secs(5), || async {
        eu2.tenant_get("acme", &owner_on_eu2, "/api/variables").await.1["error"]["code"] == "tenant_moving"
    })
    .await;
    assert!(paused, "an infinite pause answers 503 tenant_moving");
    db.batch_execute("UPDATE platform.tenants SET paused_until = NULL WHERE slug = 'acme'; NOTIFY tessera_tenant_changes, 'acme'").await.unwrap();

    // Bad requests: each a clear code, nothing changed.
    for (body, code) in [(json!({"to": "nowhere"}), "cluster_not_found"), (json!({"to": "eu-2"}), "invalid_request"), (json!({}), "invalid_body")] {
        let request = app.platform_request(Method::POST, "/api/platform/tenants/acme/move").bearer_auth(&token).json(&body);
        let (status, answer) = status_and_json(request).await;
        assert!(status.is_client_error(), "{body}: {status} {answer}");
        assert_eq!(answer["error"]["code"], code, "{body}: {answer}");
    }
    let request = app.platform_request(Method::POST, "/api/platform/tenants/ghost/move").bearer_auth(&token).json(&json!({"to": "local"}));
    assert_eq!(status_and_json(request).await.1["error"]["code"], "tenant_not_found");
    eu2.stop().await;
}
