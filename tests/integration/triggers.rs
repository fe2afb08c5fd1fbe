//! Schedule and queue triggers and the `publish` step, against the real
//! PostgreSQL and the real RabbitMQ (127.0.0.1:5672, guest/guest): ticks
//! become executions and stop when the integration is disabled, missed
//! ticks follow their policy, a tick fires once however many race for it,
//! queue messages become executions and are acked, and published messages
//! arrive with their id. Every change takes effect without a restart.

use std::time::Duration;

use lapin::{
    options::{BasicGetOptions, BasicPublishOptions, QueueDeclareOptions, QueueDeleteOptions},
    types::FieldTable,
    BasicProperties, Channel, Connection, ConnectionProperties,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tessera_runtime::{
    triggers::{Fired, Tick},
    TenantSpec, TriggerStore,
};
use tessera_server::{engine::triggers::PgTriggerStore, starts::Starts};
use tessera_tests::{eventually, spawn_app, status_and_json, TestApp};

const BROKER: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const WAIT: Duration = Duration::from_secs(15);

fn integration(name: &str, spec: &str) -> String {
    format!("apiVersion: tessera.dev/v1\nkind: Integration\nmetadata:\n  name: {name}\nspec:\n{spec}")
}

fn scheduled(name: &str, schedule: &str, enabled: bool) -> String {
    let spec = format!(
        "  enabled: {enabled}\n  triggers:\n    - schedule:\n{schedule}  steps:\n    - name: tick\n      transform:\n        expression: .trigger\n"
    );
    integration(name, &spec)
}

fn amqp_connection(name: &str, url: &str) -> String {
    format!("apiVersion: tessera.dev/v1\nkind: Connection\nmetadata:\n  name: {name}\nspec:\n  amqp:\n    url: '{url}'\n")
}

async fn executions_of(app: &TestApp, slug: &str, integration: &str) -> Vec<Value> {
    let sql = format!("SELECT trigger, state FROM t_{slug}.executions WHERE integration = $1 ORDER BY id");
    let rows = app.db().await.query(&sql, &[&integration]).await.unwrap();
    rows.iter().map(|r| json!({"trigger": r.get::<_, Value>(0), "state": r.get::<_, String>(1)})).collect()
}

async fn schedule_rows(app: &TestApp, slug: &str, integration: &str) -> i64 {
    let sql = format!("SELECT count(*) FROM t_{slug}.schedules WHERE integration = $1");
    app.db().await.query_one(&sql, &[&integration]).await.unwrap().get(0)
}

async fn broker() -> (Connection, Channel) {
    let connection = Connection::connect(BROKER, ConnectionProperties::default()).await.expect("RabbitMQ at 127.0.0.1:5672");
    let channel = connection.create_channel().await.unwrap();
    (connection, channel)
}

fn queue_name(test: &str) -> String {
    format!("tessera-test-{test}-{}", uuid::Uuid::new_v4().simple())
}

async fn declare(channel: &Channel, queue: &str) {
    channel.queue_declare(queue, QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
}

async fn send(channel: &Channel, queue: &str, body: &Value, message_id: &str) {
    let properties = BasicProperties::default().with_message_id(message_id.into());
    let payload = serde_json::to_vec(body).unwrap();
    channel.basic_publish("", queue, BasicPublishOptions::default(), &payload, properties).await.unwrap().await.unwrap();
}

/// (ready messages, consumers) of a queue.
async fn queue_state(channel: &Channel, queue: &str) -> (u32, u32) {
    let passive = QueueDeclareOptions { passive: true, ..Default::default() };
    let q = channel.queue_declare(queue, passive, FieldTable::default()).await.unwrap();
    (q.message_count(), q.consumer_count())
}

async fn run_and_wait(app: &TestApp, slug: &str, token: &str, name: &str, body: Value) -> Value {
    let request = app.tenant_request(Method::POST, slug, &format!("/api/integrations/{name}/run?wait=true")).bearer_auth(token).json(&body);
    let (status, execution) = status_and_json(request).await;
    assert_eq!(status, StatusCode::OK, "{execution}");
    execution
}

#[tokio::test]
async fn an_every_schedule_runs_until_its_integration_is_disabled() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("clock").await;
    let owner = app.owner_token(&tenant).await;
    app.apply_yaml("clock", &owner, &scheduled("heartbeat", "        every: 1s\n", true)).await;

    let ran = eventually(WAIT, || async {
        let done = executions_of(&app, "clock", "heartbeat").await;
        done.iter().filter(|e| e["state"] == "succeeded").count() >= 2
    })
    .await;
    assert!(ran, "an every-1s schedule ran fewer than twice: {:?}", executions_of(&app, "clock", "heartbeat").await);
    let first = &executions_of(&app, "clock", "heartbeat").await[0];
    assert_eq!(first["trigger"]["kind"], "schedule");
    assert!(first["trigger"]["scheduled_at"].is_string(), "{first}");
    assert!(first["trigger"].get("missed").is_none(), "an on-time tick missed nothing: {first}");

    // Disabled by applying it again: the worker drops the schedule, no restart.
    app.apply_yaml("clock", &owner, &scheduled("heartbeat", "        every: 1s\n", false)).await;
    assert!(eventually(WAIT, || async { schedule_rows(&app, "clock", "heartbeat").await == 0 }).await, "schedule still stored");
    let count = executions_of(&app, "clock", "heartbeat").await.len();
    let more = eventually(Duration::from_millis(2500), || async { executions_of(&app, "clock", "heartbeat").await.len() > count }).await;
    assert!(!more, "a disabled schedule kept firing");
}

#[tokio::test]
async fn missed_ticks_are_skipped_or_run_once_as_the_trigger_says() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("late").await;
    let owner = app.owner_token(&tenant).await;
    let both = format!(
        "{}---\n{}",
        scheduled("skipper", "        every: 1h\n        missed: skip\n", true),
        scheduled("catcher", "        every: 1h\n        missed: run_once\n", true)
    );
    app.apply_yaml("late", &owner, &both).await;
    let stored = eventually(WAIT, || async {
        schedule_rows(&app, "late", "skipper").await == 1 && schedule_rows(&app, "late", "catcher").await == 1
    })
    .await;
    assert!(stored, "schedules not stored");

    // As if no node ran the tenant for 2.5 hours: the ticks at -150, -90 and -30 minutes were missed.
    let db = app.db().await;
    db.execute("UPDATE t_late.schedules SET next_at = now() - interval '150 minutes'", &[]).await.unwrap();
    app.apply_yaml("late", &owner, &both).await; // unchanged, but the worker re-reads its schedules

    let caught = eventually(WAIT, || async { executions_of(&app, "late", "catcher").await.len() == 1 }).await;
    assert!(caught, "run_once did not run");
    let execution = &executions_of(&app, "late", "catcher").await[0];
    assert_eq!(execution["trigger"]["kind"], "schedule");
    assert_eq!(execution["trigger"]["missed"], 3, "{execution}");
    let resumed = "SELECT count(*) FROM t_late.schedules WHERE next_at > now()";
    let moved = eventually(WAIT, || async { db.query_one(resumed, &[]).await.unwrap().get::<_, i64>(0) == 2 }).await;
    assert!(moved, "both schedules resume in the future");
    assert!(executions_of(&app, "late", "skipper").await.is_empty(), "skip ran a missed tick");
}

#[tokio::test]
async fn two_racing_fires_of_one_tick_queue_one_execution() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("race").await;
    let owner = app.owner_token(&tenant).await;
    app.apply_yaml("race", &owner, &scheduled("hourly", "        every: 1h\n", true)).await;
    assert!(eventually(WAIT, || async { schedule_rows(&app, "race", "hourly").await == 1 }).await);
    let db = app.db().await;
    let expected = db.query_one("SELECT next_at FROM t_race.schedules", &[]).await.unwrap().get(0);

    let store = PgTriggerStore::new(app.state.tenant_db.clone(), Starts::new(app.state.tenant_db.clone(), app.state.limits.clone()));
    let spec = TenantSpec { id: tenant.id.parse().unwrap(), slug: "race".into(), schema: "t_race".into(), limits: Default::default() };
    let tick = Tick {
        integration: "hourly".into(),
        index: 0,
        expected,
        next: expected + chrono::TimeDelta::hours(1),
        trigger: Some(json!({"kind": "schedule", "scheduled_at": expected})),
    };
    let (a, b) = tokio::join!(store.fire(&spec, &tick), store.fire(&spec, &tick));
    let mut outcomes = [a.unwrap(), b.unwrap()];
    outcomes.sort_by_key(|f| matches!(f, Fired::Lost));
    assert!(matches!(outcomes, [Fired::Queued(_), Fired::Lost]), "{outcomes:?}");
    assert_eq!(executions_of(&app, "race", "hourly").await.len(), 1);
}

#[tokio::test]
async fn queue_messages_become_executions_and_are_acked() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("inbox").await;
    let owner = app.owner_token(&tenant).await;
    let (_connection, channel) = broker().await;
    let queue = queue_name("inbox");
    declare(&channel, &queue).await;
    for (i, id) in ["m-1", "m-2", "m-1"].iter().enumerate() {
        send(&channel, &queue, &json!({"order": i}), id).await; // m-1 twice: a redelivery
    }

    // Applied after the tenant's worker started: it starts consuming without a restart.
    let trigger = format!("  triggers:\n    - queue:\n        connection: rabbit\n        queue: {queue}\n        prefetch: 5\n");
    let steps = "  steps:\n    - name: read\n      transform:\n        expression: .trigger.body\n";
    let yaml = |enabled: bool| {
        format!("{}---\n{}", amqp_connection("rabbit", BROKER), integration("orders", &format!("  enabled: {enabled}\n{trigger}{steps}")))
    };
    app.apply_yaml("inbox", &owner, &yaml(true)).await;
    let consumed = eventually(WAIT, || async {
        let done = executions_of(&app, "inbox", "orders").await;
        done.len() == 2 && done.iter().all(|e| e["state"] == "succeeded")
    })
    .await;
    assert!(consumed, "messages not consumed: {:?}", executions_of(&app, "inbox", "orders").await);
    let executions = executions_of(&app, "inbox", "orders").await;
    let first = &executions[0]["trigger"];
    assert_eq!((first["kind"].as_str(), &first["body"], first["routing_key"].as_str()), (Some("queue"), &json!({"order": 0}), Some(queue.as_str())));
    assert_eq!(first["message_id"], "m-1");
    assert_eq!(executions[1]["trigger"]["body"], json!({"order": 1}));

    // Disabled: the consumer stops. Unacked messages would now be ready again; none are.
    app.apply_yaml("inbox", &owner, &yaml(false)).await;
    assert!(eventually(WAIT, || async { queue_state(&channel, &queue).await.1 == 0 }).await, "consumer still attached");
    assert_eq!(queue_state(&channel, &queue).await.0, 0, "messages left unacked");
    channel.queue_delete(&queue, QueueDeleteOptions::default()).await.unwrap();
}

#[tokio::test]
async fn a_publish_step_delivers_its_message_with_an_id() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("sender").await;
    let owner = app.owner_token(&tenant).await;
    let (_connection, channel) = broker().await;
    let queue = queue_name("publish");
    declare(&channel, &queue).await;
    let steps = format!(
        "  steps:\n    - name: send\n      publish:\n        connection: rabbit\n        routing_key: '{queue}'\n        body:\n          order: '${{{{ .trigger.body.id }}}}'\n          note: 'order ${{{{ .trigger.body.id }}}}'\n"
    );
    app.apply_yaml("sender", &owner, &format!("{}---\n{}", amqp_connection("rabbit", BROKER), integration("notify", &steps))).await;

    let execution = run_and_wait(&app, "sender", &owner, "notify", json!({"id": 7})).await;
    assert_eq!(execution["state"], "succeeded", "{execution}");
    let id = uuid::Uuid::parse_str(execution["id"].as_str().unwrap()).unwrap();
    let message_id = tessera_runtime::execution::idempotency_key(id, "send");
    assert_eq!(message_id.len(), 36, "a UUID, whatever the step's depth");
    assert_eq!(execution["output"], json!({"exchange": "", "routing_key": queue, "message_id": message_id}));

    let got = channel.basic_get(&queue, BasicGetOptions { no_ack: true }).await.unwrap().expect("a published message");
    assert_eq!(got.delivery.properties.message_id().as_ref().map(|id| id.to_string()), Some(message_id));
    assert_eq!(got.delivery.properties.delivery_mode(), &Some(2), "persistent");
    let body: Value = serde_json::from_slice(&got.delivery.data).unwrap();
    assert_eq!(body, json!({"order": 7, "note": "order 7"}));
    channel.queue_delete(&queue, QueueDeleteOptions::default()).await.unwrap();
}

#[tokio::test]
async fn publishing_to_an_unreachable_broker_fails_the_step_without_its_secret() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("offline").await;
    let owner = app.owner_token(&tenant).await;
    let steps = "  steps:\n    - name: send\n      publish:\n        connection: nowhere\n        routing_key: orders\n        body: {}\n";
    let wrong_port = "amqp://guest:s3cr3t-pass@127.0.0.1:1/%2f";
    app.apply_yaml("offline", &owner, &format!("{}---\n{}", amqp_connection("nowhere", wrong_port), integration("notify", steps))).await;

    let execution = run_and_wait(&app, "offline", &owner, "notify", json!({})).await;
    assert_eq!(execution["state"], "failed", "{execution}");
    assert_eq!(execution["error"]["code"], "publish_failed", "{execution}");
    assert_eq!(execution["error"]["step"], "send");
    let (_, full) = app.tenant_get("offline", &owner, &format!("/api/executions/{}", execution["id"].as_str().unwrap())).await;
    assert!(!full.to_string().contains("s3cr3t-pass"), "the connection's secret leaked: {full}");
}
