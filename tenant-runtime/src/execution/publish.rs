//! The `publish` step: the rendered JSON body sent to an exchange with a
//! routing key, persistent, with publisher confirms, on the tenant's cached
//! channel of the `amqp` connection. Its `message_id` is the step's
//! idempotency key (`super::idempotency_key`: the same whenever the step
//! runs again, 36 characters however deep the step), so consumers can drop
//! a redelivery when a resumed execution publishes again.

use lapin::{options::BasicPublishOptions, publisher_confirm::Confirmation, BasicProperties};
use serde_json::{json, Value};

use super::steps::{StepError, Who};
use crate::amqp::AmqpError;
use crate::{
    definition::PublishAction,
    expression::{Template, ValueTemplate},
};

/// The longest AMQP short string (names and routing keys), in bytes.
pub(crate) const MAX_SHORT_STRING: usize = 255;

/// AMQP delivery mode 2: the broker writes the message to disk.
const PERSISTENT: u8 = 2;

pub(super) async fn publish(action: &PublishAction, data: Value, who: &Who<'_>) -> Result<Value, StepError> {
    let (routing_key, body) = render(who.spec.id, action, data).await?;
    // AMQP writes a routing key's length in one byte: a longer one would corrupt the frame.
    if routing_key.len() > MAX_SHORT_STRING {
        let message = format!("the routing key is {} bytes long; AMQP allows at most {MAX_SHORT_STRING}", routing_key.len());
        return Err(StepError::Unpublishable(message));
    }
    // Not `<execution>/<path>` in clear: a deeply nested path would pass
    // the 255 bytes of an AMQP short string and corrupt the frame.
    let message_id = super::idempotency_key(who.execution_id, who.path);
    let payload = serde_json::to_vec(&body).expect("JSON values serialise");
    let connection = action.connection.as_str();
    let publishers = &who.engine.publishers;
    let failed = |e: &dyn std::fmt::Display| StepError::Publish(e.to_string());
    let channel = publishers.channel(who.engine, who.spec, connection).await.map_err(|e| match e {
        AmqpError::Egress { source, .. } => super::io::IoError::from(source).into(),
        other => failed(&other),
    })?;
    let properties = BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_content_type("application/json".into())
        .with_message_id(message_id.clone().into());
    let sent = async {
        channel.basic_publish(&action.exchange, &routing_key, BasicPublishOptions::default(), &payload, properties).await?.await
    };
    match sent.await {
        Ok(Confirmation::Nack(_)) => Err(StepError::Publish("the broker refused the message".into())),
        Ok(_) => Ok(json!({"exchange": action.exchange, "routing_key": routing_key, "message_id": message_id})),
        Err(e) => {
            // A channel error (say, an unknown exchange) closes the channel: open a new one next time.
            publishers.forget(who.spec, connection).await;
            Err(StepError::Publish(format!("broker of connection `{connection}`: {e}")))
        }
    }
}

async fn render(tenant: uuid::Uuid, action: &PublishAction, data: Value) -> Result<(String, Value), StepError> {
    let (key, body) = (action.routing_key.as_str().to_string(), action.body.clone());
    super::steps::on_pool(tenant, move || {
        let routing_key = Template::compile_cached(&key)?.render_text(&data)?;
        let body = ValueTemplate::compile(&body)?.render(&data)?;
        Ok((routing_key, body))
    })
    .await
}
