//! Limits per tenant: the platform owner reads and overrides them through
//! the platform API (and the CLI, on the database), every node applies a
//! change at once, and each limit stops only the tenant that reaches it,
//! with its own error code.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{json, Value};
use tessera_tests::{error_code, eventually, spawn_app, status_and_json, target_database, TestApp, TestTenant};

async fn limits(app: &TestApp, token: &str, slug: &str) -> (StatusCode, Value) {
    status_and_json(app.platform_request(Method::GET, &format!("/api/platform/tenants/{slug}/limits")).bearer_auth(token)).await
}

async fn set_limits(app: &TestApp, token: &str, slug: &str, changes: Value) -> (StatusCode, Value) {
    let request = app.platform_request(Method::PATCH, &format!("/api/platform/tenants/{slug}/limits")).bearer_auth(token);
    status_and_json(request.json(&changes)).await
}

/// Set limits of `slug`; they must be accepted.
async fn limit(app: &TestApp, slug: &str, changes: Value) {
    let token = app.platform_token().await;
    let (status, body) = set_limits(app, &token, slug, changes).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Two tenants with the same integrations: `acme`, which gets a limit, and
/// `globex`, which must not feel it.
async fn two_tenants(app: &TestApp, yaml: &str) -> [(TestTenant, String); 2] {
    let mut both = Vec::new();
    for slug in ["acme", "globex"] {
        let tenant = app.create_tenant(slug).await;
        let owner = app.owner_token(&tenant).await;
        app.apply_yaml(slug, &owner, yaml).await;
        both.push((tenant, owner));
    }
    both.try_into().unwrap()
}

fn integration(name: &str, steps: Value) -> String {
    json!({"apiVersion": "tessera.dev/v1", "kind": "Integration", "metadata": {"name": name},
           "spec": {"triggers": [{"manual": {}}, {"webhook": {"auth": "none"}}], "steps": steps}})
    .to_string()
}

fn file(docs: &[String]) -> String {
    docs.join("\n---\n")
}

fn run_request(app: &TestApp, slug: &str, token: &str, name: &str, wait: bool) -> RequestBuilder {
    let path = format!("/api/integrations/{name}/run{}", if wait { "?wait=true" } else { "" });
    app.tenant_request(Method::POST, slug, &path).bearer_auth(token)
}

/// Run `name` and wait for its end.
async fn run(app: &TestApp, slug: &str, token: &str, name: &str) -> Value {
    let (status, execution) = status_and_json(run_request(app, slug, token, name, true)).await;
    assert_eq!(status, StatusCode::OK, "{execution}");
    execution
}

fn step_error(execution: &Value, path: &str) -> Value {
    let steps = execution["steps"].as_array().unwrap();
    steps.iter().find(|s| s["path"] == path).unwrap_or_else(|| panic!("no step {path} in {execution}"))["error"].clone()
}

#[tokio::test]
async fn a_platform_owner_reads_and_overrides_a_tenant_s_limits_and_nonsense_is_refused() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let token = app.platform_token().await;

    let (status, shown) = limits(&app, &token, "acme").await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["limits"], shown["defaults"], "no override yet: {shown}");
    assert_eq!(shown["overridden"], json!([]));
    assert_eq!(shown["limits"]["running_executions"], app.config.runtime.max_concurrent_executions, "the older key is the default");
    assert_eq!(shown["limits"]["request_body_bytes"], app.config.http.max_body_bytes);

    let (status, changed) = set_limits(&app, &token, "acme", json!({"running_executions": 2, "foreach_items": 50})).await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!((changed["limits"]["running_executions"].as_u64(), changed["limits"]["foreach_items"].as_u64()), (Some(2), Some(50)));
    assert_eq!(changed["overridden"], json!(["running_executions", "foreach_items"]));
    assert_eq!(limits(&app, &token, "acme").await.1, changed, "stored");
    let stored: Value = app.db().await.query_one("SELECT overrides FROM platform.tenant_limits", &[]).await.unwrap().get(0);
    assert_eq!(stored, json!({"running_executions": 2, "foreach_items": 50}), "only the overridden limits are stored");

    // Each nonsense value: 400 with a code, and nothing changed.
    let too_big = app.config.http.max_body_bytes + 1;
    for (changes, code) in [
        (json!({"running_executions": 0}), "invalid_limit"),
        (json!({"sql_connections": 1_000_000}), "invalid_limit"),
        (json!({"foreach_items": -1}), "invalid_limit"),
        (json!({"foreach_items": "many"}), "invalid_limit"),
        (json!({"request_body_bytes": too_big}), "invalid_limit"),
        (json!({"running_executions": 3, "coffee_cups": 2}), "unknown_limit"),
    ] {
        let (status, body) = set_limits(&app, &token, "acme", changes.clone()).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some(code)), "{changes}: {body}");
    }
    assert_eq!(limits(&app, &token, "acme").await.1, changed, "a refused change changes nothing");
    let (status, body) = set_limits(&app, &token, "acme", json!([1, 2])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // null goes back to the default.
    let (status, cleared) = set_limits(&app, &token, "acme", json!({"running_executions": null})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cleared["overridden"], json!(["foreach_items"]));
    assert_eq!(cleared["limits"]["running_executions"], cleared["defaults"]["running_executions"]);

    assert_eq!(limits(&app, &token, "nobody").await.0, StatusCode::NOT_FOUND);
    // Only platform owners, only on the platform host.
    let tenant_owner = app.owner_token(&acme).await;
    assert_eq!(limits(&app, &tenant_owner, "acme").await.0, StatusCode::UNAUTHORIZED);
    let on_tenant_host = app.tenant_request(Method::GET, "acme", "/api/platform/tenants/acme/limits").bearer_auth(&token);
    assert!(status_and_json(on_tenant_host).await.0.is_client_error());
}

#[tokio::test]
async fn running_executions_reaches_the_running_worker_and_holds_only_its_tenant() {
    let app = spawn_app().await;
    let steps = json!([{"name": "nap", "delay": {"duration": "400ms"}}]);
    let [(_, acme), (_, globex)] = two_tenants(&app, &integration("nap", steps)).await;
    limit(&app, "acme", json!({"running_executions": 1})).await;

    // Three at once in each tenant; acme's run one after the other.
    let runs = |slug: &'static str, token: String| {
        let app = &app;
        async move { futures::future::join_all((0..3).map(|_| run(app, slug, &token, "nap"))).await }
    };
    let (acme_runs, globex_runs) = tokio::join!(runs("acme", acme), runs("globex", globex));
    let overlapping = |executions: &[Value]| {
        let time = |v: &Value| v.as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().unwrap();
        let spans: Vec<_> = executions.iter().map(|e| (time(&e["started_at"]), time(&e["finished_at"]))).collect();
        spans.iter().enumerate().any(|(i, a)| spans.iter().skip(i + 1).any(|b| a.0 < b.1 && b.0 < a.1))
    };
    assert!(acme_runs.iter().chain(&globex_runs).all(|e| e["state"] == "succeeded"));
    assert!(!overlapping(&acme_runs), "acme's executions ran one at a time: {acme_runs:?}");
    assert!(overlapping(&globex_runs), "globex's ran side by side");
}

#[tokio::test]
async fn stored_executions_over_the_limit_are_refused_at_intake_for_that_tenant_only() {
    let app = spawn_app().await;
    let steps = json!([{"name": "say", "log": {"message": "hi"}}]);
    let [(_, acme), (_, globex)] = two_tenants(&app, &integration("hello", steps)).await;
    limit(&app, "acme", json!({"stored_executions": 2})).await;

    for _ in 0..2 {
        assert_eq!(run(&app, "acme", &acme, "hello").await["state"], "succeeded");
    }
    let response = run_request(&app, "acme", &acme, "hello", false).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let message = response.json::<Value>().await.unwrap()["error"].clone();
    assert_eq!(message["code"], "too_many_stored_executions");
    assert!(message["message"].as_str().unwrap().contains("stored_executions"), "the message names the limit: {message}");
    let hook = app.tenant_request(Method::POST, "acme", "/hooks/hello").json(&json!({"n": 1})).send().await.unwrap();
    assert_eq!(hook.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(error_code(hook).await, "too_many_stored_executions");
    let stored: i64 = app.db().await.query_one("SELECT count(*) FROM t_acme.executions", &[]).await.unwrap().get(0);
    assert_eq!(stored, 2, "nothing beyond the limit was stored");

    for _ in 0..3 {
        assert_eq!(run(&app, "globex", &globex, "hello").await["state"], "succeeded", "globex is not limited");
    }
    // A higher limit lets acme go on at once.
    limit(&app, "acme", json!({"stored_executions": 10})).await;
    assert!(eventually(Duration::from_secs(3), || async {
        run_request(&app, "acme", &acme, "hello", false).send().await.unwrap().status() == StatusCode::ACCEPTED
    })
    .await);
}

#[tokio::test]
async fn a_tenant_whose_backlog_is_full_is_refused_until_its_worker_catches_up_and_others_are_not() {
    let app = spawn_app().await;
    // One execution at a time, each holding its slot for a minute: the rest wait queued.
    let steps = json!([{"name": "nap", "delay": {"duration": "60s"}}]);
    let [(_, acme), (_, globex)] = two_tenants(&app, &integration("nap", steps)).await;
    limit(&app, "acme", json!({"running_executions": 1, "queued_executions": 2})).await;
    limit(&app, "globex", json!({"running_executions": 1})).await;

    // Runs until one is refused: the slot takes one (or, until the worker has
    // its new limit, a few), the backlog two, and the next is refused.
    let mut accepted = Vec::new();
    let refused = loop {
        let started = std::time::Instant::now();
        let response = run_request(&app, "acme", &acme, "nap", false).send().await.unwrap();
        if response.status() != StatusCode::ACCEPTED {
            assert!(started.elapsed() >= Duration::from_millis(450), "a refusal waits (half a second at least) for the backlog to be counted again");
            break response;
        }
        accepted.push(response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string());
        assert!(accepted.len() <= 12, "acme's backlog never filled");
    };
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()["retry-after"], "1", "a backlog drains: the caller may retry soon");
    let message = refused.json::<Value>().await.unwrap()["error"].clone();
    assert_eq!(message["code"], "too_many_queued_executions");
    assert!(message["message"].as_str().unwrap().contains("queued_executions"), "the message names the limit: {message}");
    // Webhooks are held by the same backlog.
    let hook_refused = loop {
        let response = app.tenant_request(Method::POST, "acme", "/hooks/nap").json(&json!({"n": 1})).send().await.unwrap();
        if response.status() != StatusCode::ACCEPTED {
            break response;
        }
        accepted.push(response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string());
        assert!(accepted.len() <= 14, "acme's webhooks were never refused");
    };
    assert_eq!(error_code(hook_refused).await, "too_many_queued_executions");
    let db = app.db().await;
    let queued: i64 = db.query_one("SELECT count(*) FROM t_acme.executions WHERE state = 'queued'", &[]).await.unwrap().get(0);
    assert!(queued <= 2, "the backlog holds no more than the limit: {queued}");

    for _ in 0..4 {
        let response = run_request(&app, "globex", &globex, "nap", false).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED, "globex is not limited");
    }
    // As acme's backlog goes (here: cancelled), acme is admitted again.
    for id in &accepted {
        let cancel = app.tenant_request(Method::POST, "acme", &format!("/api/executions/{id}/cancel")).bearer_auth(&acme);
        assert_eq!(cancel.send().await.unwrap().status(), StatusCode::OK);
    }
    assert!(eventually(Duration::from_secs(10), || async {
        run_request(&app, "acme", &acme, "nap", false).send().await.unwrap().status() == StatusCode::ACCEPTED
    })
    .await);
}

#[tokio::test]
async fn a_schedule_over_the_stored_limit_starts_nothing_and_keeps_ticking() {
    let app = spawn_app().await;
    let yaml = json!({"apiVersion": "tessera.dev/v1", "kind": "Integration", "metadata": {"name": "tick"},
        "spec": {"triggers": [{"schedule": {"every": "1s"}}], "steps": [{"name": "say", "log": {"message": "tick"}}]}})
    .to_string();
    two_tenants(&app, &yaml).await;
    limit(&app, "acme", json!({"stored_executions": 1})).await;
    let db = app.db().await;
    let count = |schema: &'static str| {
        let db = &db;
        async move { db.query_one(&format!("SELECT count(*) FROM {schema}.executions"), &[]).await.unwrap().get::<_, i64>(0) }
    };
    assert!(eventually(Duration::from_secs(10), || async { count("t_globex").await >= 4 }).await, "globex ticks");
    assert_eq!(count("t_acme").await, 1, "acme stored one execution and no more");
    let next_at = "SELECT next_at > now() FROM t_acme.schedules";
    let ahead: bool = db.query_one(next_at, &[]).await.unwrap().get(0);
    assert!(ahead, "acme's schedule keeps advancing instead of retrying the refused tick");
}

/// A `call` step's child is an execution like any other: over the limit it
/// is not stored, and the step fails with the limit's code.
#[tokio::test]
async fn a_call_over_the_stored_limit_stores_no_child_and_fails_its_step_with_the_limit_s_code() {
    let app = spawn_app().await;
    let child = json!([{"name": "say", "log": {"message": "child"}}]);
    let parent = json!([{"name": "ask", "call": {"integration": "child"}}]);
    let [(_, acme), (_, globex)] = two_tenants(&app, &file(&[integration("child", child), integration("parent", parent)])).await;
    limit(&app, "acme", json!({"stored_executions": 1})).await;

    let failed = run(&app, "acme", &acme, "parent").await;
    assert_eq!((failed["state"].as_str(), failed["error"]["code"].as_str()), (Some("failed"), Some("too_many_stored_executions")), "{failed}");
    let error = step_error(&failed, "ask");
    assert_eq!(error["code"], "too_many_stored_executions", "{failed}");
    assert!(error["message"].as_str().unwrap().contains("stored_executions"), "the message names the limit: {error}");
    let stored: i64 = app.db().await.query_one("SELECT count(*) FROM t_acme.executions", &[]).await.unwrap().get(0);
    assert_eq!(stored, 1, "the parent only: no child beyond the limit");

    let called = run(&app, "globex", &globex, "parent").await;
    assert_eq!(called["state"], "succeeded", "globex is not limited: {called}");
    assert_eq!(called["children"].as_array().map(Vec::len), Some(1), "{called}");
}

#[tokio::test]
async fn step_output_record_and_foreach_limits_fail_that_tenant_s_execution_with_their_code() {
    let app = spawn_app().await;
    let big = json!([{"name": "big", "transform": {"expression": "[range(200)] | map(\"0123456789\")"}}]);
    let growing = json!([
        {"name": "one", "transform": {"expression": "[range(60)] | map(\"0123456789\")"}},
        {"name": "two", "transform": {"expression": ".steps.one"}},
        {"name": "three", "transform": {"expression": ".steps.one"}}]);
    let each = json!([{"name": "each", "foreach": {"items": "[range(20)]", "concurrency": 50,
        "steps": [{"name": "x", "transform": {"expression": ".item"}}]}}]);
    let yaml = file(&[integration("big", big), integration("growing", growing), integration("each", each)]);
    let [(_, acme), (_, globex)] = two_tenants(&app, &yaml).await;
    limit(&app, "acme", json!({"step_output_bytes": 1000, "execution_record_bytes": 4000, "foreach_items": 10})).await;

    let failed = run(&app, "acme", &acme, "big").await;
    assert_eq!((failed["state"].as_str(), failed["error"]["code"].as_str()), (Some("failed"), Some("output_too_large")), "{failed}");
    assert!(failed["error"]["message"].as_str().unwrap().contains("step_output_bytes"), "{failed}");
    assert_eq!(step_error(&failed, "big")["code"], "output_too_large");
    let output: Option<Value> = app.db().await.query_one("SELECT output FROM t_acme.execution_steps WHERE path = 'big'", &[]).await.unwrap().get(0);
    assert_eq!(output, None, "nothing of the output is stored");

    let failed = run(&app, "acme", &acme, "growing").await;
    assert_eq!(failed["error"]["code"], "execution_too_large", "{failed}");
    assert!(failed["error"]["message"].as_str().unwrap().contains("execution_record_bytes"), "{failed}");

    let failed = run(&app, "acme", &acme, "each").await;
    assert_eq!(failed["error"]["code"], "too_many_items", "{failed}");
    assert!(failed["error"]["message"].as_str().unwrap().contains("foreach_items"), "{failed}");

    for name in ["big", "growing", "each"] {
        let execution = run(&app, "globex", &globex, name).await;
        assert_eq!(execution["state"], "succeeded", "globex is not limited: {execution}");
    }
}

#[tokio::test]
async fn request_bodies_over_the_tenant_s_limit_are_refused_and_the_node_s_maximum_still_holds() {
    let app = spawn_app().await;
    let steps = json!([{"name": "size", "transform": {"expression": ".trigger.body.pad | length"}}]);
    let [(_, acme), (_, globex)] = two_tenants(&app, &integration("echo", steps)).await;
    limit(&app, "acme", json!({"request_body_bytes": 200})).await;
    let body = json!({"pad": "x".repeat(500)});

    let over = run_request(&app, "acme", &acme, "echo", false).json(&body).send().await.unwrap();
    assert_eq!(over.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let error = over.json::<Value>().await.unwrap()["error"].clone();
    assert_eq!(error["code"], "payload_too_large");
    assert!(error["message"].as_str().unwrap().contains("request_body_bytes"), "{error}");
    let hook = app.tenant_request(Method::POST, "acme", "/hooks/echo").json(&body).send().await.unwrap();
    assert_eq!((hook.status(), error_code(hook).await.as_str()), (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"));
    let small = run_request(&app, "acme", &acme, "echo", true).json(&json!({"pad": "x"})).send().await.unwrap();
    assert_eq!(small.status(), StatusCode::OK, "a body within the limit is read");

    let (status, execution) = status_and_json(run_request(&app, "globex", &globex, "echo", true).json(&body)).await;
    assert_eq!((status, &execution["output"]), (StatusCode::OK, &json!(500)), "globex is not limited");
    let hook = app.tenant_request(Method::POST, "globex", "/hooks/echo").json(&body).send().await.unwrap();
    assert_eq!(hook.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn sql_pools_and_their_sessions_are_limited_per_tenant() {
    let app = spawn_app().await;
    // Each tenant queries a database of its own, so each counts only its own sessions there.
    let sessions = "SELECT pg_sleep(0.3)::text AS slept, (SELECT count(*) FROM pg_stat_activity \
                    WHERE application_name = 'tessera-sql-step' AND datname = current_database())::int AS sessions";
    let query = |name: &str, db: &str, statement: &str| json!({"name": name, "sql": {"connection": db, "statement": statement}});
    let each = json!([{"name": "each", "foreach": {"items": "[1, 2, 3, 4]", "concurrency": 4, "steps": [query("q", "first-db", sessions)]}}]);
    let mut tokens = Vec::new();
    for slug in ["acme", "globex"] {
        let (_, target) = target_database().await;
        let connection = |name: &str| {
            json!({"apiVersion": "tessera.dev/v1", "kind": "Connection", "metadata": {"name": name}, "spec": {"postgres": {"url": target}}})
                .to_string()
        };
        let both = json!([query("a", "first-db", "SELECT 1 AS one"), query("b", "second-db", "SELECT 2 AS two")]);
        let yaml = file(&[connection("first-db"), connection("second-db"), integration("both", both), integration("each", each.clone())]);
        let tenant = app.create_tenant(slug).await;
        let owner = app.owner_token(&tenant).await;
        app.apply_yaml(slug, &owner, &yaml).await;
        tokens.push(owner);
    }
    let (acme, globex) = (&tokens[0], &tokens[1]);
    limit(&app, "acme", json!({"sql_pools": 1, "sql_connections": 1})).await;

    let failed = run(&app, "acme", acme, "both").await;
    assert_eq!(failed["state"], "failed", "{failed}");
    let error = step_error(&failed, "b");
    assert_eq!(error["code"], "sql_pool_limit", "{failed}");
    assert!(error["message"].as_str().unwrap().contains("sql_pools"), "{error}");
    assert_eq!(run(&app, "globex", globex, "both").await["state"], "succeeded", "globex is not limited");

    let most_sessions = |execution: &Value| {
        let items = execution["output"].as_array().unwrap_or_else(|| panic!("{execution}")).clone();
        items.iter().map(|item| item["rows"][0]["sessions"].as_i64().unwrap()).max().unwrap()
    };
    assert_eq!(most_sessions(&run(&app, "acme", acme, "each").await), 1, "acme's pool holds one session");
    assert!(most_sessions(&run(&app, "globex", globex, "each").await) > 1, "globex's items share a larger pool");
}

#[tokio::test]
async fn queue_consumers_follow_the_tenant_s_limit_and_messages_over_the_stored_limit_do_not_loop() {
    use lapin::{
        options::{BasicPublishOptions, QueueDeclareOptions, QueueDeleteOptions},
        types::FieldTable,
        BasicProperties, Connection, ConnectionProperties,
    };
    let app = spawn_app().await;
    let broker = Connection::connect(tessera_tests::BROKER_URL, ConnectionProperties::default()).await.expect("RabbitMQ");
    let channel = broker.create_channel().await.unwrap();
    let queue = format!("tessera-test-limits-{}", uuid::Uuid::new_v4().simple());
    channel.queue_declare(&queue, QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    // (ready messages, consumers)
    let queue_state = || {
        let (channel, queue) = (&channel, &queue);
        async move {
            let passive = QueueDeclareOptions { passive: true, ..Default::default() };
            let state = channel.queue_declare(queue, passive, FieldTable::default()).await.unwrap();
            (state.message_count(), state.consumer_count())
        }
    };
    let consumers = || async { queue_state().await.1 };

    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    limit(&app, "acme", json!({"queue_consumers": 0})).await;
    let rabbit = json!({"apiVersion": "tessera.dev/v1", "kind": "Connection", "metadata": {"name": "rabbit"},
        "spec": {"amqp": {"url": tessera_tests::BROKER_URL}}});
    let consumer = json!({"apiVersion": "tessera.dev/v1", "kind": "Integration", "metadata": {"name": "inbox"},
        "spec": {"triggers": [{"queue": {"connection": "rabbit", "queue": queue}}], "steps": [{"name": "read", "transform": {"expression": ".trigger.body"}}]}});
    app.apply_yaml("acme", &owner, &file(&[rabbit.to_string(), consumer.to_string()])).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(consumers().await, 0, "no queue consumer over the limit");

    limit(&app, "acme", json!({"queue_consumers": 1})).await;
    assert!(eventually(Duration::from_secs(10), || async { consumers().await == 1 }).await, "the raised limit starts the consumer");

    // One execution may be stored: the first message runs, the others are rejected, not requeued in a loop.
    limit(&app, "acme", json!({"stored_executions": 1})).await;
    for n in 0..3 {
        let body = serde_json::to_vec(&json!({"n": n})).unwrap();
        channel.basic_publish("", &queue, BasicPublishOptions::default(), &body, BasicProperties::default()).await.unwrap().await.unwrap();
    }
    let db = app.db().await;
    let stored = || async { db.query_one("SELECT count(*) FROM t_acme.executions", &[]).await.unwrap().get::<_, i64>(0) };
    assert!(eventually(Duration::from_secs(10), || async { queue_state().await.0 == 0 && stored().await == 1 }).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!((queue_state().await, stored().await), ((0, 1), 1), "the consumer moved on; nothing came back");

    limit(&app, "acme", json!({"queue_consumers": 0})).await;
    assert!(eventually(Duration::from_secs(10), || async { consumers().await == 0 }).await, "the lowered limit stops it");
    channel.queue_delete(&queue, QueueDeleteOptions::default()).await.unwrap();
}
