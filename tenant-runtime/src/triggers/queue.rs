//! One queue trigger's consumer: a task of its tenant's worker that turns
//! each delivery into a committed `queued` execution and only then acks it
//! (a failed commit is nacked back to the queue). Broker trouble (down,
//! connection lost, queue missing) is logged and retried with a capped
//! back-off; the worker's other work goes on.

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use lapin::{
    message::Delivery,
    options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions},
    types::{AMQPValue, FieldTable},
};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Enqueued, QueueMessage};
use crate::{
    amqp::{self, AmqpError},
    definition::QueueTrigger,
    execution::Engine,
    worker::TenantSpec,
};

const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(30);

pub(super) struct Consumer {
    pub spec: Arc<TenantSpec>,
    pub engine: Engine,
    pub integration: String,
    pub trigger: QueueTrigger,
    pub queued: mpsc::UnboundedSender<Uuid>,
    pub cancel: CancellationToken,
}

impl Consumer {
    /// Consume until cancelled, reconnecting after any failure.
    pub async fn run(self) {
        let mut pause = FIRST_RETRY;
        loop {
            let outcome = tokio::select! {
                _ = self.cancel.cancelled() => return,
                outcome = self.consume() => outcome,
            };
            match outcome {
                Ok(()) => {
                    tracing::warn!(tenant = %self.spec.slug, integration = %self.integration, queue = %self.trigger.queue, "queue consumer ended; reconnecting");
                    pause = FIRST_RETRY; // it had been consuming: start the back-off afresh
                }
                Err(e) => {
                    tracing::error!(tenant = %self.spec.slug, integration = %self.integration, queue = %self.trigger.queue, error = %e, retry_in = ?pause, "queue consumer failed")
                }
            }
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(MAX_RETRY);
        }
    }

    /// One connection's life: connect, consume until the stream ends.
    async fn consume(&self) -> Result<(), AmqpError> {
        let name = self.trigger.connection.as_str();
        let uri = amqp::url(&self.engine, &self.spec, name).await?;
        let connection = amqp::connect(&self.engine.io.egress, self.spec.id, uri, name).await?;
        let channel = connection.create_channel().await.map_err(AmqpError::broker(name))?;
        let prefetch = u16::try_from(self.trigger.prefetch.get()).unwrap_or(u16::MAX);
        channel.basic_qos(prefetch, BasicQosOptions::default()).await.map_err(AmqpError::broker(name))?;
        // Fails (404) when the queue does not exist: it is never declared for the user.
        let tag = format!("tessera/{}/{}", self.spec.slug, self.integration);
        let mut deliveries = channel
            .basic_consume(&self.trigger.queue, &tag, BasicConsumeOptions::default(), FieldTable::default())
            .await
            .map_err(AmqpError::broker(name))?;
        tracing::info!(tenant = %self.spec.slug, integration = %self.integration, queue = %self.trigger.queue, "consuming");
        while let Some(delivery) = deliveries.next().await {
            let delivery = delivery.map_err(AmqpError::broker(name))?;
            self.accept(delivery).await.map_err(AmqpError::broker(name))?;
        }
        Ok(())
    }

    /// Commit the delivery as an execution, then ack it; nack it back to
    /// the queue when the commit fails.
    async fn accept(&self, delivery: Delivery) -> Result<(), lapin::Error> {
        let message = QueueMessage {
            integration: self.integration.clone(),
            trigger: trigger_of(&delivery),
            message_id: delivery.properties.message_id().as_ref().map(|id| id.to_string()),
        };
        match self.engine.triggers.enqueue_message(&self.spec, &message).await {
            Ok(Enqueued::Queued(id)) => {
                delivery.acker.ack(BasicAckOptions::default()).await?;
                let _ = self.queued.send(id); // the worker is gone only when we are stopping too
            }
            Ok(Enqueued::Duplicate) => {
                tracing::info!(tenant = %self.spec.slug, integration = %self.integration, message_id = ?message.message_id, "redelivered message already queued");
                delivery.acker.ack(BasicAckOptions::default()).await?;
            }
            Ok(Enqueued::OverLimit) => {
                // Requeued, it would come straight back: it is rejected (to the
                // queue's dead-letter exchange, if it has one) and consuming goes on.
                tracing::warn!(tenant = %self.spec.slug, integration = %self.integration, code = "too_many_stored_executions",
                    "the tenant stores as many executions as its limit `stored_executions` allows; message rejected");
                delivery.acker.nack(BasicNackOptions { requeue: false, ..Default::default() }).await?;
            }
            Ok(Enqueued::NotEnabled) => {
                // A reload stops this consumer in a moment; keep the message for whoever consumes next.
                tracing::warn!(tenant = %self.spec.slug, integration = %self.integration, "integration disabled; message returned to the queue");
                return self.requeue(delivery).await;
            }
            Err(e) => {
                tracing::error!(tenant = %self.spec.slug, integration = %self.integration, error = %e, "cannot queue a message; it goes back to the queue");
                return self.requeue(delivery).await;
            }
        }
        Ok(())
    }
}

impl Consumer {
    async fn requeue(&self, delivery: Delivery) -> Result<(), lapin::Error> {
        delivery.acker.nack(BasicNackOptions { requeue: true, ..Default::default() }).await?;
        // Do not spin on a message that cannot be queued right now.
        tokio::time::sleep(FIRST_RETRY).await;
        Ok(())
    }
}

/// `{kind: "queue", body, routing_key, message_id, headers}`; the body is
/// JSON when the payload parses as JSON, else text.
fn trigger_of(delivery: &Delivery) -> Value {
    let body = serde_json::from_slice(&delivery.data)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&delivery.data).into_owned()));
    let headers = delivery.properties.headers().as_ref().map(table_to_json).unwrap_or_else(|| Value::Object(Map::new()));
    json!({
        "kind": "queue",
        "body": body,
        "routing_key": delivery.routing_key.as_str(),
        "message_id": delivery.properties.message_id().as_ref().map(|id| id.as_str()),
        "headers": headers,
    })
}

fn table_to_json(table: &FieldTable) -> Value {
    Value::Object(table.inner().iter().map(|(k, v)| (k.to_string(), amqp_to_json(v))).collect())
}

fn amqp_to_json(value: &AMQPValue) -> Value {
    match value {
        AMQPValue::Boolean(b) => json!(b),
        AMQPValue::ShortShortInt(n) => json!(n),
        AMQPValue::ShortShortUInt(n) => json!(n),
        AMQPValue::ShortInt(n) => json!(n),
        AMQPValue::ShortUInt(n) => json!(n),
        AMQPValue::LongInt(n) => json!(n),
        AMQPValue::LongUInt(n) => json!(n),
        AMQPValue::LongLongInt(n) => json!(n),
        AMQPValue::Float(n) => json!(n),
        AMQPValue::Double(n) => json!(n),
        AMQPValue::Timestamp(n) => json!(n),
        AMQPValue::ShortString(s) => json!(s.as_str()),
        AMQPValue::LongString(s) => json!(String::from_utf8_lossy(s.as_bytes())),
        AMQPValue::FieldArray(items) => Value::Array(items.as_slice().iter().map(amqp_to_json).collect()),
        AMQPValue::FieldTable(table) => table_to_json(table),
        AMQPValue::DecimalValue(_) | AMQPValue::ByteArray(_) | AMQPValue::Void => Value::Null,
    }
}
