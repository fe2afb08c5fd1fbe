//! Cache invalidation across nodes: one LISTEN connection per node that
//! hands each PostgreSQL notification to the cache that owns its channel.
//!
//! Writers `NOTIFY` inside the transaction that makes the change, so a
//! notification is delivered exactly when the change becomes visible. When
//! the connection is lost and re-established, every subscriber resyncs
//! (drops its cache), since notifications sent meanwhile are gone.

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};
use tokio_util::sync::CancellationToken;

use crate::database::{pg_config, DbError};

/// A cache that follows one notification channel.
pub trait Subscriber: Send + Sync {
    fn channel(&self) -> &'static str;
    /// One change, described by the notification's payload.
    fn notified(&self, payload: &str);
    /// Changes may have been missed: forget everything cached.
    fn resync(&self);
}

/// Follow every subscriber's channel until `shutdown`, reconnecting on loss.
pub fn spawn_listener(
    database_url: String,
    subscribers: Vec<Arc<dyn Subscriber>>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                result = listen_once(&database_url, &subscribers) => {
                    if let Err(e) = result {
                        tracing::warn!(error = %e, "change listener lost its connection; retrying");
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    })
}

async fn listen_once(database_url: &str, subscribers: &[Arc<dyn Subscriber>]) -> Result<(), DbError> {
    let (client, mut connection) = pg_config(database_url)?.connect(NoTls).await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send((n.channel().to_string(), n.payload().to_string())).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "listener connection ended");
                    break;
                }
            }
        }
    });
    for subscriber in subscribers {
        client.batch_execute(&format!("LISTEN {}", subscriber.channel())).await?;
        subscriber.resync();
    }
    while let Some((channel, payload)) = rx.recv().await {
        for subscriber in subscribers.iter().filter(|s| s.channel() == channel) {
            subscriber.notified(&payload);
        }
    }
    driver.abort();
    drop(client);
    Ok(())
}
