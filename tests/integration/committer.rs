//! The batching committer (`runtime.batch_commits`, on by default): writes
//! of many executions and tenants committed together still land in their
//! own tenant's schema, each caller learns its own result, and a bad write
//! fails alone.

use std::time::Duration;

use chrono::Utc;
use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::json;
use tessera_server::{
    engine::committer::BatchingStore,
    engine::executions::{Fence, PgExecutionStore},
    starts::Starts,
};
use tessera_tests::{eventually, spawn_app, status_and_json, TestApp};
use tessera_runtime::{
    execution::{Outcome, StepRecord, StepState},
    ExecutionStore, TenantSpec,
};
use uuid::Uuid;

const THREE_STEPS: &str = "apiVersion: tessera.dev/v1\nkind: Integration\nmetadata:\n  name: orders\nspec:\n  triggers:\n    - webhook:\n        auth: none\n  steps:\n    - name: normalise\n      transform:\n        expression: '{order: .trigger.body.order}'\n    - name: enrich\n      transform:\n        expression: '.steps.normalise + {big: (.steps.normalise.order > 10)}'\n    - name: report\n      log:\n        message: 'order ${{ .steps.normalise.order }}'\n";

#[tokio::test]
async fn concurrent_executions_of_two_tenants_all_commit_every_step() {
    let app = spawn_app().await;
    for slug in ["acme", "globex"] {
        let tenant = app.create_tenant(slug).await;
        let owner = app.owner_token(&tenant).await;
        app.apply_yaml(slug, &owner, THREE_STEPS).await;
    }
    let posts = (0..60).map(|i| {
        let slug = if i % 2 == 0 { "acme" } else { "globex" };
        status_and_json(app.tenant_request(Method::POST, slug, "/hooks/orders").json(&json!({"order": i})))
    });
    for (status, body) in join_all(posts).await {
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    for schema in ["t_acme", "t_globex"] {
        let done = format!("SELECT count(*) FROM {schema}.executions WHERE state = 'succeeded'");
        assert!(eventually(Duration::from_secs(30), || async { app.count(&done).await == 30 }).await, "{schema}");
        assert_eq!(app.count(&format!("SELECT count(*) FROM {schema}.execution_steps WHERE state = 'succeeded'")).await, 90);
        let outputs = format!("SELECT count(*) FROM {schema}.executions WHERE output = to_jsonb('order ' || (trigger #>> '{{body,order}}'))");
        assert_eq!(app.count(&outputs).await, 30, "each execution's output comes from its own trigger");
    }
}

fn step(path: &str) -> StepRecord {
    let now = Utc::now();
    StepRecord {
        path: path.into(),
        state: StepState::Succeeded,
        attempt: 1,
        input: json!({"path": path}),
        output: Some(json!(path)),
        error: None,
        started_at: now,
        finished_at: now,
    }
}

/// Insert `n` executions of integration `orders` in `state`, with triggers
/// `{"n": i}`, straight into a tenant's schema (the worker is never woken
/// for them).
async fn executions_in(app: &TestApp, schema: &str, state: &str, n: usize) -> Vec<Uuid> {
    let ids: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
    let sql = format!(
        "INSERT INTO {schema}.executions (id, integration, version, trigger, state) \
         SELECT id, 'orders', 1, jsonb_build_object('n', i - 1), $2 FROM unnest($1::uuid[]) WITH ORDINALITY AS u(id, i)"
    );
    app.db().await.execute(&sql, &[&ids, &state]).await.unwrap();
    ids
}

/// Tenants `acme` and `globex` with `orders` applied, and a batching store
/// writing as this node, under the leases it holds on both.
async fn two_tenants_and_a_store(app: &TestApp) -> (Vec<TenantSpec>, BatchingStore) {
    let mut specs = Vec::new();
    for slug in ["acme", "globex"] {
        let tenant = app.create_tenant(slug).await;
        let owner = app.owner_token(&tenant).await;
        app.apply_yaml(slug, &owner, THREE_STEPS).await;
        specs.push(TenantSpec { id: tenant.id.parse().unwrap(), slug: slug.into(), schema: format!("t_{slug}"), limits: Default::default() });
    }
    let fence = Fence { node: app.state.cluster.node().id, held: app.state.cluster.fences(), crashes: Default::default() };
    let starts = Starts::new(app.state.tenant_db.clone(), app.state.limits.clone());
    (specs, BatchingStore::start(PgExecutionStore::new(app.state.tenant_db.clone(), fence, starts, Default::default()), app.state.metrics.clone()))
}

#[tokio::test]
async fn a_bad_write_fails_alone_and_the_batch_lands_in_each_tenants_schema() {
    let app = spawn_app().await;
    let (specs, store) = two_tenants_and_a_store(&app).await;
    let (acme, globex) = (executions_in(&app, "t_acme", "running", 20).await, executions_in(&app, "t_globex", "running", 20).await);
    let unknown = Uuid::now_v7(); // no such execution: its checkpoint breaks the foreign key
    let records: Vec<StepRecord> = (0..20).map(|i| step(&format!("step{i}"))).collect();
    let bad = step("orphan");
    let success = Outcome::Succeeded(json!("done"));

    let mut writes = Vec::new();
    for i in 0..20 {
        writes.push(store.checkpoint(&specs[0], acme[i], &records[i]));
        writes.push(store.finish(&specs[1], globex[i], &success));
        if i == 10 {
            writes.push(store.checkpoint(&specs[0], unknown, &bad));
        }
    }
    let results = join_all(writes).await;
    let failed: Vec<usize> = results.iter().enumerate().filter(|(_, r)| r.is_err()).map(|(i, _)| i).collect();
    assert_eq!(failed, vec![22], "only the orphan checkpoint fails: {results:?}");

    assert_eq!(app.count("SELECT count(*) FROM t_acme.execution_steps").await, 20);
    assert_eq!(app.count("SELECT count(*) FROM t_globex.execution_steps").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM t_globex.executions WHERE state = 'succeeded' AND output = '\"done\"'").await, 20);
    assert_eq!(app.count("SELECT count(*) FROM t_acme.executions WHERE state = 'running'").await, 20);
}

/// Claims ride in the committer's batches: each claim gets its own
/// execution's trigger, its tenant's definition and variables, and the
/// steps it finished before; an execution cancelled or finished before its
/// claim, or one of another tenant, is not claimed.
#[tokio::test]
async fn batched_claims_each_get_their_own_execution_and_nothing_of_another_tenant() {
    let app = spawn_app().await;
    let (specs, store) = two_tenants_and_a_store(&app).await;
    for slug in ["acme", "globex"] {
        let variable = format!("INSERT INTO t_{slug}.variables (name, value) VALUES ('who', to_jsonb('{slug}'::text))");
        app.db().await.execute(&variable, &[]).await.unwrap();
    }
    let (acme, globex) = (executions_in(&app, "t_acme", "queued", 12).await, executions_in(&app, "t_globex", "queued", 12).await);
    let db = app.db().await;
    db.execute("UPDATE t_acme.executions SET cancel_requested = true WHERE id = $1", &[&acme[1]]).await.unwrap();
    db.execute("UPDATE t_acme.executions SET state = 'succeeded', finished_at = now() WHERE id = $1", &[&acme[2]]).await.unwrap();
    db.execute("UPDATE t_acme.executions SET state = 'running' WHERE id = $1", &[&acme[3]]).await.unwrap();
    store.checkpoint(&specs[0], acme[3], &step("normalise")).await.unwrap();

    let claims = (0..12).flat_map(|i| [store.claim(&specs[0], acme[i]), store.claim(&specs[1], globex[i])]);
    let mut claims = join_all(claims.chain([store.claim(&specs[1], acme[0])])).await;
    let across = claims.pop().unwrap().unwrap();
    assert!(across.is_none(), "an execution of acme is never claimed as globex's");
    let mut claims = claims.into_iter();
    for i in 0..12 {
        let (a, g) = (claims.next().unwrap().unwrap(), claims.next().unwrap().unwrap().expect("every globex execution is claimed"));
        assert_eq!((g.trigger, g.vars["who"].clone()), (json!({"n": i}), json!("globex")));
        assert_eq!(g.definition["metadata"]["name"], "orders", "each claim carries its version's definition");
        match i {
            1 | 2 => assert!(a.is_none(), "cancelled or finished before its claim: not claimed"),
            _ => {
                let a = a.expect("claimed");
                assert_eq!((a.trigger, a.vars["who"].clone()), (json!({"n": i}), json!("acme")));
                assert_eq!(a.definition["kind"], "Integration");
                let done = if i == 3 { vec![("normalise".to_string(), json!("normalise"))] } else { vec![] };
                assert_eq!(a.done, done, "execution {i} resumes after the steps it finished");
            }
        }
    }
    let states = "SELECT state, count(*)::int8 FROM t_acme.executions GROUP BY state ORDER BY state";
    let rows: Vec<(String, i64)> = db.query(states, &[]).await.unwrap().iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(rows, vec![("cancelled".into(), 1), ("running".into(), 10), ("succeeded".into(), 1)]);
    assert_eq!(app.count("SELECT count(*) FROM t_globex.executions WHERE state = 'running'").await, 12);
}

/// The intake commits concurrent webhooks and runs of several tenants
/// together: each request's execution lands in its own tenant's schema with
/// its own trigger, and runs of a disabled integration, batched with the
/// others, get 404 and create nothing.
#[tokio::test]
async fn concurrent_webhooks_and_runs_of_three_tenants_are_each_stored_once_in_their_own_schema() {
    let app = spawn_app().await;
    let mut initech_owner = String::new();
    for slug in ["acme", "globex", "initech"] {
        let tenant = app.create_tenant(slug).await;
        let owner = app.owner_token(&tenant).await;
        app.apply_yaml(slug, &owner, THREE_STEPS).await;
        if slug == "initech" {
            initech_owner = owner;
        }
    }
    app.db().await.execute("UPDATE t_initech.integrations SET enabled = false", &[]).await.unwrap();
    let slugs = ["acme", "globex", "initech"];
    let owner = &initech_owner;
    let posts = (0..90).map(|i| {
        let slug = slugs[i % 3];
        let request = match slug {
            // Runs go straight to the intake: no trigger lookup turns them away first.
            "initech" => app.tenant_request(Method::POST, slug, "/api/integrations/orders/run").bearer_auth(owner).json(&json!({"order": i})),
            _ => app.tenant_request(Method::POST, slug, "/hooks/orders").json(&json!({"order": i})),
        };
        async move { (slug, i, status_and_json(request).await) }
    });
    for (slug, i, (status, body)) in join_all(posts).await {
        if slug == "initech" {
            assert_eq!(status, StatusCode::NOT_FOUND, "{slug} #{i}: {body}");
            continue;
        }
        assert_eq!(status, StatusCode::ACCEPTED, "{slug} #{i}: {body}");
        let id = body["id"].as_str().unwrap();
        let stored = format!("SELECT count(*) FROM t_{slug}.executions WHERE id = '{id}' AND (trigger #>> '{{body,order}}')::int = {i}");
        assert_eq!(app.count(&stored).await, 1, "{slug} #{i} is stored with its own trigger");
    }
    for (schema, expected) in [("t_acme", 30), ("t_globex", 30), ("t_initech", 0)] {
        assert_eq!(app.count(&format!("SELECT count(*) FROM {schema}.executions")).await, expected, "{schema}");
    }
}
