//! Execution controls: cancelling queued and running executions, retrying a
//! failed one from the step that failed, retention of old executions,
//! idempotency keys on runs and webhooks, replay-protected webhooks, and
//! `tessera cancel` / `tessera retry` through the real binary.

use std::time::Duration;

use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Sha256;
use tessera_server::retention::Sweeper;
use tessera_tests::{error_code, eventually, spawn_app, spawn_app_with, status_and_json, step, TestApp};

use crate::cli::{run, Run};

fn integration(name: &str, extra: &str, steps: &str) -> String {
    format!("apiVersion: tessera.dev/v1\nkind: Integration\nmetadata:\n  name: {name}\nspec:\n  triggers:\n    - manual: {{}}\n{extra}  steps:\n{steps}")
}

/// A first step, then a long nap: cancelled while it sleeps.
const SLEEPY: &str = "    - name: first\n      transform:\n        expression: '.trigger.body'\n    - name: nap\n      delay:\n        duration: 60s\n";

/// Fails at `check` until the tenant's variable `ready` is true.
const PICKY: &str = "    - name: first\n      transform:\n        expression: '.trigger.body'\n    - name: check\n      transform:\n        expression: 'if .vars.ready then \"ready \\(.steps.first.id)\" else error(\"not ready\") end'\n    - name: last\n      transform:\n        expression: '.steps.check'\n";

const QUICK: &str = "    - name: only\n      transform:\n        expression: '.trigger.body'\n";

async fn post(app: &TestApp, slug: &str, token: &str, path: &str) -> (StatusCode, Value) {
    status_and_json(app.tenant_request(Method::POST, slug, path).bearer_auth(token)).await
}

async fn start(app: &TestApp, slug: &str, token: &str, name: &str, body: Value) -> String {
    let path = format!("/api/integrations/{name}/run");
    let (status, queued) = status_and_json(app.tenant_request(Method::POST, slug, &path).bearer_auth(token).json(&body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    queued["id"].as_str().unwrap().to_string()
}

/// Poll execution `id` until `check` holds; returns it then.
async fn until(app: &TestApp, slug: &str, token: &str, id: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let path = format!("/api/executions/{id}");
    let held = eventually(Duration::from_secs(15), || async { check(&app.tenant_get(slug, token, &path).await.1) }).await;
    let execution = app.tenant_get(slug, token, &path).await.1;
    assert!(held, "execution {id} never became {what}: {execution}");
    execution
}

#[tokio::test]
async fn queued_and_running_executions_are_cancelled_and_finished_ones_are_not() {
    let app = spawn_app_with(|c| c.runtime.max_concurrent_executions = 1).await;
    let acme = app.create_tenant("acme").await;
    let editor = app.user_with_role(&acme, "editor").await;
    app.apply_yaml("acme", &editor, &integration("sleepy", "", SLEEPY)).await;

    // One slot: the first run sleeps in it, the second waits queued.
    let running = start(&app, "acme", &editor, "sleepy", json!({"id": 1})).await;
    until(&app, "acme", &editor, &running, "running past its first step", |e| {
        e["state"] == "running" && e["steps"].as_array().is_some_and(|s| s.len() == 1)
    })
    .await;
    let queued = start(&app, "acme", &editor, "sleepy", json!({"id": 2})).await;

    // Viewers read but do not cancel; another tenant's caller finds nothing.
    let viewer = app.user_with_role(&acme, "viewer").await;
    let (status, _) = post(&app, "acme", &viewer, &format!("/api/executions/{queued}/cancel")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let globex = app.create_tenant("globex").await;
    let stranger = app.owner_token(&globex).await;
    let (status, body) = post(&app, "globex", &stranger, &format!("/api/executions/{running}/cancel")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")), "{body}");
    let (status, _) = post(&app, "acme", &editor, &format!("/api/executions/{}/cancel", uuid::Uuid::now_v7())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Queued: cancelled at once.
    let (status, cancelled) = post(&app, "acme", &editor, &format!("/api/executions/{queued}/cancel")).await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["state"], "cancelled", "{cancelled}");
    assert!(cancelled["finished_at"].is_string() && cancelled["steps"].as_array().unwrap().is_empty(), "{cancelled}");

    // Running: its task is stopped, the checkpoint before it stays.
    let (status, answer) = post(&app, "acme", &editor, &format!("/api/executions/{running}/cancel")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["cancel_requested"], true, "{answer}");
    let stopped = until(&app, "acme", &editor, &running, "cancelled", |e| e["state"] == "cancelled").await;
    assert!(stopped["finished_at"].is_string(), "{stopped}");
    assert_eq!(step(&stopped, "first")["output"], json!({"id": 1}));
    assert_eq!(stopped["steps"].as_array().unwrap().len(), 1, "the nap never finished: {stopped}");

    // Finished: 409, and it stays as it was.
    let (status, refused) = post(&app, "acme", &editor, &format!("/api/executions/{running}/cancel")).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("execution_finished")), "{refused}");

    // The slot is free again: a new run gets it.
    let next = start(&app, "acme", &editor, "sleepy", json!({"id": 3})).await;
    until(&app, "acme", &editor, &next, "running", |e| e["state"] == "running").await;
}

#[tokio::test]
async fn a_failed_execution_is_retried_from_the_step_that_failed() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let editor = app.user_with_role(&acme, "editor").await;
    app.apply_yaml("acme", &editor, &integration("picky", "", PICKY)).await;
    let set_ready = |ready: bool| {
        app.tenant_request(Method::PUT, "acme", "/api/variables/ready").bearer_auth(&editor).json(&json!({"value": ready})).send()
    };
    assert!(set_ready(false).await.unwrap().status().is_success());

    let id = start(&app, "acme", &editor, "picky", json!({"id": 5})).await;
    let failed = until(&app, "acme", &editor, &id, "failed", |e| e["state"] == "failed").await;
    assert_eq!(failed["error"]["step"], "check", "{failed}");
    let first_started = step(&failed, "first")["started_at"].clone();

    // Only editors retry, and only failed executions.
    let viewer = app.user_with_role(&acme, "viewer").await;
    let (status, _) = post(&app, "acme", &viewer, &format!("/api/executions/{id}/retry")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let other = start(&app, "acme", &editor, "picky", json!({"id": 6})).await;
    until(&app, "acme", &editor, &other, "failed", |e| e["state"] == "failed").await;

    assert!(set_ready(true).await.unwrap().status().is_success());
    let (status, queued) = post(&app, "acme", &editor, &format!("/api/executions/{id}/retry")).await;
    assert_eq!(status, StatusCode::OK, "{queued}");
    assert_eq!((queued["state"].as_str(), queued["retries"].as_i64()), (Some("queued"), Some(1)), "{queued}");
    assert!(queued["error"].is_null(), "the error is cleared: {queued}");
    let paths: Vec<&str> = queued["steps"].as_array().unwrap().iter().map(|s| s["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["first"], "the failed step's checkpoint is gone: {queued}");

    let done = until(&app, "acme", &editor, &id, "succeeded", |e| e["state"] == "succeeded").await;
    assert_eq!(done["output"], "ready 5", "{done}");
    assert_eq!(step(&done, "first")["started_at"], first_started, "the succeeded step did not run again");
    assert_eq!(step(&done, "check")["state"], "succeeded");

    let (status, refused) = post(&app, "acme", &editor, &format!("/api/executions/{id}/retry")).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("execution_not_failed")), "{refused}");
}

#[tokio::test]
async fn retention_deletes_old_and_surplus_finished_executions_only() {
    let app = spawn_app_with(|c| c.runtime.retention_sweep_secs = 0).await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    app.apply_yaml("acme", &owner, &integration("capped", "  retention:\n    executions: 2\n", QUICK)).await;
    app.apply_yaml("acme", &owner, &integration("aged", "  retention:\n    days: 7\n", QUICK)).await;
    app.apply_yaml("acme", &owner, &integration("defaulted", "", QUICK)).await;

    let mut capped = Vec::new();
    for n in 0..4 {
        capped.push(start(&app, "acme", &owner, "capped", json!({"n": n})).await);
    }
    let mut aged = Vec::new();
    for (name, n) in [("aged", 0), ("aged", 1), ("aged", 2), ("defaulted", 0), ("defaulted", 1)] {
        aged.push(start(&app, "acme", &owner, name, json!({"n": n})).await);
    }
    let all_done = eventually(Duration::from_secs(15), || async {
        app.count("SELECT count(*) FROM t_acme.executions WHERE state = 'succeeded'").await == 9
    })
    .await;
    assert!(all_done, "the runs never finished");

    // Back-date: aged[0] by 8 days (beyond 7), aged[1] by 8 days but still
    // running (never deleted), aged[2] by 6 days (kept); defaulted[0] by
    // 31 days (beyond the node's 30), defaulted[1] by 29.
    let db = app.db().await;
    let back = |id: &str, days: i32, state: &str| {
        let sql = format!("UPDATE t_acme.executions SET created_at = now() - make_interval(days => {days}), state = '{state}' WHERE id = '{id}'");
        let db = &db;
        async move { db.batch_execute(&sql).await.unwrap() }
    };
    back(&aged[0], 8, "succeeded").await;
    back(&aged[1], 8, "running").await;
    back(&aged[2], 6, "failed").await;
    back(&aged[3], 31, "cancelled").await;
    back(&aged[4], 29, "succeeded").await;

    let sweeper = Sweeper::new(app.state.directory.clone(), app.state.tenant_db.clone(), &app.state.config.runtime);
    let report = sweeper.sweep().await.unwrap();
    assert_eq!(report.deleted, 4, "{report:?}");
    let left: Vec<String> = db
        .query("SELECT id::text FROM t_acme.executions ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let expected: Vec<String> = [&capped[2], &capped[3], &aged[1], &aged[2], &aged[4]].into_iter().cloned().collect();
    assert_eq!(left, expected, "the newest 2 capped, the running one and the recent ones stay");
    let orphans = app.count("SELECT count(*) FROM t_acme.execution_steps s WHERE NOT EXISTS (SELECT 1 FROM t_acme.executions e WHERE e.id = s.execution_id)").await;
    assert_eq!(orphans, 0, "checkpoints go with their execution");
    // Nothing more to delete: a second sweep is a no-op.
    assert_eq!(sweeper.sweep().await.unwrap().deleted, 0);
}

#[tokio::test]
async fn an_idempotency_key_starts_one_execution_however_often_it_is_sent() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let editor = app.user_with_role(&acme, "editor").await;
    let hooked = "apiVersion: tessera.dev/v1\nkind: Integration\nmetadata:\n  name: hooked\nspec:\n  triggers:\n    - webhook:\n        auth: none\n  steps:\n    - name: only\n      transform:\n        expression: '.trigger.body'\n";
    app.apply_yaml("acme", &editor, &integration("quick", "", QUICK)).await;
    app.apply_yaml("acme", &editor, hooked).await;
    let run = |key: String| {
        app.tenant_request(Method::POST, "acme", "/api/integrations/quick/run").bearer_auth(&editor).header("Idempotency-Key", key).json(&json!({"n": 1}))
    };

    let first = run("order-1".into()).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    assert_eq!(first.headers()["idempotent-replayed"], "false");
    let first: Value = first.json().await.unwrap();
    let again = run("order-1".into()).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::ACCEPTED, "the same status as the first answer");
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!((&again["id"], &again["replayed"]), (&first["id"], &json!(true)), "{again}");
    assert_eq!(app.count("SELECT count(*) FROM t_acme.executions").await, 1);

    // Ten at once with one key: one execution, every answer names it.
    let answers = futures::future::join_all((0..10).map(|_| run("order-2".into()).send())).await;
    let mut ids = Vec::new();
    for answer in answers {
        let answer = answer.unwrap();
        assert_eq!(answer.status(), StatusCode::ACCEPTED);
        ids.push(answer.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string());
    }
    assert!(ids.iter().all(|id| id == &ids[0]), "{ids:?}");
    assert_eq!(app.count("SELECT count(*) FROM t_acme.executions WHERE idempotency_key = 'order-2'").await, 1);

    // Webhooks take the header too; keys are per integration.
    let hook = || app.tenant_request(Method::POST, "acme", "/hooks/hooked").header("Idempotency-Key", "order-1").json(&json!({"n": 2}));
    let (status, delivered) = status_and_json(hook()).await;
    assert_eq!((status, &delivered["replayed"]), (StatusCode::ACCEPTED, &json!(false)), "{delivered}");
    assert_ne!(delivered["id"], first["id"], "another integration, another execution");
    let (status, redelivered) = status_and_json(hook()).await;
    assert_eq!((status, &redelivered["id"], &redelivered["replayed"]), (StatusCode::ACCEPTED, &delivered["id"], &json!(true)));

    // Too long: refused, nothing created.
    let before = app.count("SELECT count(*) FROM t_acme.executions").await;
    let refused = run("k".repeat(256)).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(refused).await, "invalid_idempotency_key");
    assert!(run("k".repeat(255)).send().await.unwrap().status().is_success(), "255 characters are fine");
    assert_eq!(app.count("SELECT count(*) FROM t_acme.executions").await, before + 1);
}

fn sign(secret: &str, content: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(content);
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn a_replay_protected_webhook_refuses_stale_signatures() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let yaml = "apiVersion: tessera.dev/v1\nkind: Connection\nmetadata:\n  name: hook-secret\nspec:\n  api_key:\n    header: X-Unused\n    value: whsec_fresh\n---\n\
apiVersion: tessera.dev/v1\nkind: Integration\nmetadata:\n  name: guarded\nspec:\n  triggers:\n    - webhook:\n        auth:\n          hmac:\n            secret_from_connection: hook-secret\n            header: X-Signature\n            timestamp_header: X-Tessera-Timestamp\n            tolerance: 2m\n  steps:\n    - name: only\n      transform:\n        expression: '.trigger.body'\n";
    app.apply_yaml("acme", &owner, yaml).await;
    let body = br#"{"id": 1}"#.to_vec();
    let send = |timestamp: i64, signature: String| {
        app.tenant_request(Method::POST, "acme", "/hooks/guarded")
            .header("content-type", "application/json")
            .header("X-Tessera-Timestamp", timestamp.to_string())
            .header("X-Signature", signature)
            .body(body.clone())
    };
    let signed_at = |t: i64| sign("whsec_fresh", format!("{t}.{}", String::from_utf8_lossy(&body)).as_bytes());
    let now = chrono::Utc::now().timestamp();

    let (status, accepted) = status_and_json(send(now, signed_at(now))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let stale = now - 600;
    let (status, refused) = status_and_json(send(stale, signed_at(stale))).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("stale_signature")), "{refused}");
    // The timestamp is signed: moving it forward breaks the signature.
    let (status, forged) = status_and_json(send(now, signed_at(stale))).await;
    assert_eq!((status, forged["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_signature")), "{forged}");
    // A signature of the body alone is not enough.
    let (status, bare) = status_and_json(send(now, sign("whsec_fresh", &body))).await;
    assert_eq!((status, bare["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_signature")), "{bare}");
    assert_eq!(app.count("SELECT count(*) FROM t_acme.executions").await, 1, "refusals create nothing");
}

/// `tessera args` against `server` as `token`, with no profile file.
async fn tessera(server: &str, token: &str, args: &[&str]) -> Run {
    let profiles = std::env::temp_dir().join(format!("tessera-no-profiles-{}.toml", uuid::Uuid::new_v4().simple()));
    let env = [
        ("TESSERA_SERVER", server.to_string()),
        ("TESSERA_TOKEN", token.to_string()),
        ("TESSERA_PROFILE", "none".to_string()),
        ("TESSERA_PROFILE_FILE", profiles.display().to_string()),
    ];
    run(&env, args).await
}

#[tokio::test]
async fn cancel_and_retry_from_a_terminal() {
    let app = spawn_app().await;
    let shop = app.create_tenant("shop").await;
    let owner = app.owner_token(&shop).await;
    app.apply_yaml("shop", &owner, &integration("sleepy", "", SLEEPY)).await;
    app.apply_yaml("shop", &owner, &integration("picky", "", PICKY)).await;
    let server = format!("http://shop.localhost:{}", app.port);

    let sleeping = start(&app, "shop", &owner, "sleepy", json!({"id": 1})).await;
    until(&app, "shop", &owner, &sleeping, "running", |e| e["state"] == "running").await;
    let cancelled = tessera(&server, &owner, &["cancel", &sleeping]).await;
    assert!(cancelled.ok(), "{cancelled:?}");
    until(&app, "shop", &owner, &sleeping, "cancelled", |e| e["state"] == "cancelled").await;
    let again = tessera(&server, &owner, &["cancel", &sleeping]).await;
    assert!(!again.ok() && again.stderr.contains("409") && again.stderr.contains("execution_finished"), "{again:?}");
    let unknown = tessera(&server, &owner, &["cancel", &uuid::Uuid::now_v7().to_string()]).await;
    assert!(!unknown.ok() && unknown.stderr.contains("404"), "{unknown:?}");

    let failing = start(&app, "shop", &owner, "picky", json!({"id": 2})).await;
    until(&app, "shop", &owner, &failing, "failed", |e| e["state"] == "failed").await;
    let put = app.tenant_request(Method::PUT, "shop", "/api/variables/ready").bearer_auth(&owner).json(&json!({"value": true}));
    assert!(put.send().await.unwrap().status().is_success());
    let retried = tessera(&server, &owner, &["retry", &failing]).await;
    assert!(retried.ok() && retried.stdout.starts_with(&format!("execution {failing} ")), "{retried:?}");
    until(&app, "shop", &owner, &failing, "succeeded", |e| e["state"] == "succeeded").await;
    let not_failed = tessera(&server, &owner, &["retry", &failing]).await;
    assert!(!not_failed.ok() && not_failed.stderr.contains("execution_not_failed"), "{not_failed:?}");
}
