//! AMQP (RabbitMQ) connections for queue triggers and `publish` steps:
//! opening a broker connection from an `amqp` connection's URL without ever
//! echoing that URL (it holds the password), and the per-tenant,
//! per-connection publishing channels, cached and reopened on failure.

use std::{collections::HashMap, sync::Arc};

use std::time::Duration;

use lapin::{
    options::ConfirmSelectOptions,
    uri::{AMQPScheme, AMQPUri},
    Channel, Connection, ConnectionProperties,
};
use tcp_stream::{HandshakeResult, TLSConfig, TcpStream};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::{
    definition::ConnectionSpec,
    egress::{Egress, EgressError},
    execution::Engine,
    worker::TenantSpec,
};

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
    /// The egress gate refused the broker's address, or could not resolve it.
    #[error("broker of connection `{connection}`: {source}")]
    Egress {
        connection: String,
        #[source]
        source: EgressError,
    },
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

/// Open a tenant's broker connection through the egress gate: the broker's
/// name is resolved and checked by the gate, and the socket connects only
/// to the addresses it checked (TLS still verifies the name).
// The connector's result type (a large TLS handshake error) is lapin's, not ours.
#[allow(clippy::result_large_err)]
pub async fn connect(egress: &Egress, tenant: Uuid, uri: AMQPUri, connection: &str) -> Result<Connection, AmqpError> {
    let egress_error = |source| AmqpError::Egress { connection: connection.to_string(), source };
    let addrs = egress.resolve(tenant, &uri.authority.host, uri.authority.port).await.map_err(egress_error)?;
    let timeout = Duration::from_millis(uri.query.connection_timeout.unwrap_or(CONNECT_TIMEOUT_MS));
    // Called again by lapin when it reconnects: always to the checked addresses.
    let connect = move |uri: &AMQPUri| -> HandshakeResult {
        let stream = TcpStream::connect_timeout(&addrs[..], timeout)?;
        let stream = match uri.scheme {
            AMQPScheme::AMQP => stream,
            AMQPScheme::AMQPS => stream.into_tls(&uri.authority.host, TLSConfig::default())?,
        };
        stream.set_nonblocking(true)?;
        Ok(stream)
    };
    let properties = ConnectionProperties::default().with_connection_name("tessera".into());
    Connection::connector(uri, Box::new(connect), properties).await.map_err(AmqpError::broker(connection))
}

const CONNECT_TIMEOUT_MS: u64 = 10_000;

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
        // A change of the tenant's egress rules opens a new channel too: it is checked again.
        let gate = engine.io.egress.tenant(tenant.id).await;
        let gate = gate.map_err(|e| AmqpError::Egress { connection: name.to_string(), source: e.into() })?;
        let fingerprint = format!("{uri:?}/{}", gate.generation);
        let mut channels = self.channels.lock().await;
        if let Some(open) = channels.get(&key)
            && open.uri == fingerprint && open.channel.status().connected() {
                return Ok(open.channel.clone());
            }
        channels.remove(&key);
        let connection = connect(&engine.io.egress, tenant.id, uri, name).await?;
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
