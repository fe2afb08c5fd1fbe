//! AMQP (RabbitMQ) connections for queue triggers and `publish` steps:
//! opening a broker connection from an `amqp` connection's URL without ever
//! echoing that URL (it holds the password), and the per-tenant,
//! per-connection publishing channels, cached and reopened on failure.

use std::{collections::HashMap, sync::Arc};

use lapin::{options::ConfirmSelectOptions, uri::AMQPUri, Channel, Connection, ConnectionProperties};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::{definition::ConnectionSpec, execution::Engine, worker::TenantSpec};

#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    #[error("the tenant has no connection `{0}`")]
    NoConnection(String),
    #[error("connection `{0}` is not an `amqp` connection")]
    NotAmqp(String),
    #[error("the URL of connection `{0}` is not a valid AMQP URL")]
    InvalidUrl(String),
    #[error("cannot read connection `{0}`")]
    Store(String),
    #[error("broker of connection `{connection}`: {source}")]
    Broker {
        connection: String,
        #[source]
        source: lapin::Error,
    },
}

impl AmqpError {
    pub fn broker(connection: &str) -> impl FnOnce(lapin::Error) -> Self + '_ {
        move |source| Self::Broker { connection: connection.to_string(), source }
    }
}

/// The URL of the tenant's `amqp` connection `name`, opened.
pub(crate) async fn url(engine: &Engine, tenant: &TenantSpec, name: &str) -> Result<AMQPUri, AmqpError> {
    let opened = engine.connections.open(tenant, name).await.map_err(|e| {
        tracing::error!(tenant = %tenant.slug, connection = name, error = %e, "cannot open a connection");
        AmqpError::Store(name.to_string())
    })?;
    match opened {
        Some(ConnectionSpec::Amqp(amqp)) => amqp.url.expose().parse().map_err(|_| AmqpError::InvalidUrl(name.to_string())),
        Some(_) => Err(AmqpError::NotAmqp(name.to_string())),
        None => Err(AmqpError::NoConnection(name.to_string())),
    }
}

pub(crate) async fn connect(uri: AMQPUri, connection: &str) -> Result<Connection, AmqpError> {
    let properties = ConnectionProperties::default().with_connection_name("tessera".into());
    Connection::connect_uri(uri, properties).await.map_err(AmqpError::broker(connection))
}

/// Open publishing channels (publisher confirms on), one per tenant and
/// connection, shared by every `publish` step of that tenant.
#[derive(Clone, Default)]
pub struct Publishers {
    channels: Arc<Mutex<HashMap<(Uuid, String), Open>>>,
}

struct Open {
    /// Kept so the channel's connection lives as long as the cache entry.
    _connection: Connection,
    channel: Channel,
    /// A changed URL (the connection was re-applied) opens a new channel.
    uri: String,
}

impl Publishers {
    /// The cached channel of `tenant`'s connection `name`, (re)opened when
    /// missing, closed, or pointing at an older URL.
    pub(crate) async fn channel(&self, engine: &Engine, tenant: &TenantSpec, name: &str) -> Result<Channel, AmqpError> {
        let uri = url(engine, tenant, name).await?;
        let key = (tenant.id, name.to_string());
        let fingerprint = format!("{uri:?}");
        let mut channels = self.channels.lock().await;
        if let Some(open) = channels.get(&key)
            && open.uri == fingerprint && open.channel.status().connected() {
                return Ok(open.channel.clone());
            }
        channels.remove(&key);
        let connection = connect(uri, name).await?;
        let channel = connection.create_channel().await.map_err(AmqpError::broker(name))?;
        channel.confirm_select(ConfirmSelectOptions::default()).await.map_err(AmqpError::broker(name))?;
        channels.insert(key, Open { _connection: connection, channel: channel.clone(), uri: fingerprint });
        Ok(channel)
    }

    /// Forget a channel that failed, so the next publish opens a new one.
    pub(crate) async fn forget(&self, tenant: &TenantSpec, name: &str) {
        self.channels.lock().await.remove(&(tenant.id, name.to_string()));
    }
}
