//! Work reaches its tenant's owner through RabbitMQ: a webhook, a run or a
//! cancel that lands on a node which does not run the tenant's worker is
//! committed there and carried to the owner over the broker (the cluster's
//! `amqp_url`; the PostgreSQL notification path is then off), while work
//! for a worker on the same node never leaves the process. With the broker
//! unreachable, triggers are still accepted, and they run once it is back.
//! Each node's queue carries its id, so tests sharing the broker do not meet.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tessera_server::{cluster::mail::MailStatus, state::AppState};
use tessera_tests::{eventually, spawn_app_with, status_and_json, Relay, TestApp, TestNode, TestTenant, BROKER_URL};

/// Two nodes on one broker, and one tenant whose worker runs on one of them.
struct TwoNodes {
    app: TestApp,
    b: TestNode,
    tenant: TestTenant,
    owner_token: String,
    /// Whether the first node holds the tenant's lease (and runs its worker).
    a_owns: bool,
}

impl TwoNodes {
    async fn start(amqp_url: &str) -> Self {
        let url = amqp_url.to_string();
        let app = spawn_app_with(move |c| c.cluster.amqp_url = Some(url)).await;
        let b = app.add_node().await;
        let token = app.platform_token().await;
        // Both live before the tenant exists, so its placement never changes during the test.
        let both = eventually(Duration::from_secs(20), || async { alive_nodes(&app.cluster_status(&token).await) == 2 }).await;
        assert!(both, "the second node never joined: {}", app.cluster_status(&token).await);
        let tenant = app.create_tenant("acme").await;
        let held = eventually(Duration::from_secs(20), || async { lease_holder(&app.cluster_status(&token).await).is_some() }).await;
        assert!(held, "no node took the tenant: {}", app.cluster_status(&token).await);
        let a_owns = lease_holder(&app.cluster_status(&token).await) == Some(app.state.cluster.node().id.to_string());
        let owner_token = app.owner_token(&tenant).await;
        Self { app, b, tenant, owner_token, a_owns }
    }

    /// The node that runs the tenant's worker and the port of the other one.
    fn owner_and_other(&self) -> (&AppState, u16) {
        if self.a_owns { (&self.app.state, self.b.port) } else { (&self.b.state, self.app.port) }
    }

    /// The node that does not run the tenant's worker, and the owner's port.
    fn other_and_owner_port(&self) -> (&AppState, u16) {
        if self.a_owns { (&self.b.state, self.app.port) } else { (&self.app.state, self.b.port) }
    }

    fn request_on(&self, port: u16, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.app.tenant_request_on(port, method, &self.tenant.slug, path).bearer_auth(&self.owner_token)
    }

    async fn apply_on(&self, port: u16, yaml: &str) {
        let response = self.request_on(port, Method::POST, "/api/apply").header("content-type", "application/yaml").body(yaml.to_string());
        let (status, body) = status_and_json(response).await;
        assert_eq!(status, StatusCode::OK, "apply: {body}");
    }

    /// Execution `id` once it is final (or as it is when `limit` runs out).
    async fn finished(&self, port: u16, id: &str, limit: Duration) -> Value {
        let path = format!("/api/executions/{id}");
        eventually(limit, || async {
            matches!(status_and_json(self.request_on(port, Method::GET, &path)).await.1["state"].as_str(), Some("succeeded" | "failed" | "cancelled"))
        })
        .await;
        status_and_json(self.request_on(port, Method::GET, &path)).await.1
    }
}

fn alive_nodes(status: &Value) -> usize {
    status["nodes"].as_array().unwrap().iter().filter(|n| n["alive"] == true).count()
}

fn lease_holder(status: &Value) -> Option<String> {
    status["leases"].as_array()?.iter().find_map(|l| l["node"].as_str().map(str::to_string))
}

fn mail(state: &AppState) -> MailStatus {
    state.mail.status()
}

const HOOKED: &str = "apiVersion: tessera.dev/v1\nkind: Integration\nmetadata:\n  name: orders-in\nspec:\n  triggers:\n    - webhook:\n        auth: none\n  steps:\n    - name: echo\n      transform:\n        expression: '{order: .trigger.body.id}'\n";

#[tokio::test]
async fn a_webhook_on_a_node_that_does_not_run_the_tenant_starts_on_its_owner_through_rabbitmq() {
    let nodes = TwoNodes::start(BROKER_URL).await;
    let (owner, other_port) = nodes.owner_and_other();
    let (other, owner_port) = nodes.other_and_owner_port();
    assert_eq!(serde_json::to_value(mail(owner).carrier).unwrap(), "amqp");
    assert!(eventually(Duration::from_secs(10), || async { mail(owner).connected == Some(true) }).await, "the owner never consumed its queue");
    nodes.apply_on(other_port, HOOKED).await;

    let (sent, received) = (mail(other).sent, mail(owner).received);
    let hook = nodes.app.tenant_request_on(other_port, Method::POST, "acme", "/hooks/orders-in").json(&json!({"id": 42}));
    let (status, accepted) = status_and_json(hook).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let execution = nodes.finished(other_port, accepted["id"].as_str().unwrap(), Duration::from_secs(20)).await;
    assert_eq!((&execution["state"], &execution["output"]), (&json!("succeeded"), &json!({"order": 42})), "{execution}");
    // The wake-up went over the broker: sent by the node that accepted it, received by the owner.
    assert!(mail(other).sent > sent, "{:?}", mail(other));
    assert!(mail(owner).received > received, "{:?}", mail(owner));

    // Work accepted on the owner itself goes straight to its worker, never through the broker.
    let sent_by_owner = mail(owner).sent;
    let hook = nodes.app.tenant_request_on(owner_port, Method::POST, "acme", "/hooks/orders-in").json(&json!({"id": 7}));
    let (status, accepted) = status_and_json(hook).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let execution = nodes.finished(owner_port, accepted["id"].as_str().unwrap(), Duration::from_secs(20)).await;
    assert_eq!(execution["state"], "succeeded", "{execution}");
    assert_eq!(mail(owner).sent, sent_by_owner, "local work went through the broker");

    // The status shows every live node's command queue, drained.
    let token = nodes.app.platform_token().await;
    let status = nodes.app.cluster_status(&token).await;
    for node in status["nodes"].as_array().unwrap().iter().filter(|n| n["alive"] == true) {
        assert!(node["queue_depth"].is_u64(), "no queue depth for a live node: {status}");
    }
    let (_, this) = status_and_json(nodes.app.platform_request(Method::GET, "/api/platform/node").bearer_auth(&token)).await;
    assert_eq!(this["mail"]["carrier"], "amqp", "{this}");
}

#[tokio::test]
async fn a_cancel_on_a_node_that_does_not_run_the_tenant_reaches_its_owner_through_rabbitmq() {
    let nodes = TwoNodes::start(BROKER_URL).await;
    let (owner, other_port) = nodes.owner_and_other();
    let sleepy = "apiVersion: tessera.dev/v1\nkind: Integration\nmetadata:\n  name: sleepy\nspec:\n  triggers:\n    - manual: {}\n  steps:\n    - name: first\n      transform:\n        expression: '1'\n    - name: nap\n      delay:\n        duration: 60s\n";
    nodes.apply_on(other_port, sleepy).await;
    let (status, queued) = status_and_json(nodes.request_on(other_port, Method::POST, "/api/integrations/sleepy/run")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    let id = queued["id"].as_str().unwrap().to_string();
    let db = nodes.app.db().await;
    let napping = eventually(Duration::from_secs(20), || async {
        db.query_opt("SELECT 1 FROM t_acme.execution_steps WHERE path = 'first'", &[]).await.unwrap().is_some()
    })
    .await;
    assert!(napping, "the execution never reached its nap on the owner");

    let received = mail(owner).received;
    let (status, answer) = status_and_json(nodes.request_on(other_port, Method::POST, &format!("/api/executions/{id}/cancel"))).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let execution = nodes.finished(other_port, &id, Duration::from_secs(20)).await;
    assert_eq!(execution["state"], "cancelled", "the owner never stopped the execution: {execution}");
    assert!(mail(owner).received > received, "{:?}", mail(owner));
}

#[tokio::test]
async fn work_accepted_while_the_broker_is_unreachable_runs_once_it_is_back() {
    let relay = Relay::start("127.0.0.1:5672").await;
    let nodes = TwoNodes::start(&format!("amqp://guest:guest@127.0.0.1:{}/%2f", relay.port)).await;
    let (owner, other_port) = nodes.owner_and_other();
    let (other, _) = nodes.other_and_owner_port();
    assert!(eventually(Duration::from_secs(10), || async { mail(owner).connected == Some(true) }).await, "the owner never consumed its queue");
    nodes.apply_on(other_port, HOOKED).await;

    relay.cut();
    let noticed = eventually(Duration::from_secs(10), || async { mail(owner).connected == Some(false) && mail(other).connected == Some(false) }).await;
    assert!(noticed, "the nodes never noticed the broker was gone");
    let failed = mail(other).failed;
    let hook = nodes.app.tenant_request_on(other_port, Method::POST, "acme", "/hooks/orders-in").json(&json!({"id": 9}));
    let (status, accepted) = status_and_json(hook).await;
    assert_eq!(status, StatusCode::ACCEPTED, "a trigger is accepted without the broker: {accepted}");
    let id = accepted["id"].as_str().unwrap().to_string();
    assert!(eventually(Duration::from_secs(10), || async { mail(other).failed > failed }).await, "the unsent command was not kept");

    relay.restore();
    let execution = nodes.finished(other_port, &id, Duration::from_secs(30)).await;
    assert_eq!((&execution["state"], &execution["output"]), (&json!("succeeded"), &json!({"order": 9})), "{execution}");
    assert!(eventually(Duration::from_secs(10), || async { mail(owner).connected == Some(true) }).await);
}
