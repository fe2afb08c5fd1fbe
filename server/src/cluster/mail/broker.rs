//! Worker commands over RabbitMQ (`cluster.amqp_url`).
//!
//! Each node consumes one durable queue of its own, named after the
//! cluster and the node id, with manual acknowledgements. A command for a
//! tenant whose worker runs elsewhere is addressed to the node that holds
//! the tenant's lease (`platform.tenant_leases`, one query per batch of
//! commands) and published persistent, with publisher confirms, through the
//! default exchange straight to that node's queue.
//!
//! Why the lease table and not bindings that follow the leases: the lease
//! table is already the one record of ownership and is read in the same
//! place as the command's committed change; bindings would be a second
//! copy (one per tenant) that lags the leases on both sides of a handover
//! and must be rebuilt after every reconnect, and a message sent between
//! an unbind and a bind is lost just the same.
//!
//! Nothing here can fail a request: `forward` only queues the letter for
//! the postman task. What the broker does not confirm is kept (one letter
//! per tenant and kind, see [`Letter::again`]) and sent again once the
//! broker is back. A letter that reaches a node which does not run the
//! worker (it moved, or has not started yet) is acknowledged and dropped:
//! the worker's owner resumes the work from PostgreSQL when it starts. A
//! node's queue expires once unused for `x-expires`, so a dead node's
//! queue (and its stale letters) goes away; a restarted node has a new id
//! and a new queue.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use deadpool_postgres::Pool;
use futures::StreamExt;
use lapin::{
    message::Delivery,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, BasicRejectOptions, ConfirmSelectOptions,
        QueueDeclareOptions,
    },
    publisher_confirm::Confirmation,
    types::{AMQPValue, FieldTable},
    uri::AMQPUri,
    BasicProperties, Channel, Connection, ConnectionProperties,
};
use tessera_runtime::{Forwarder, RemoteCommand, Supervisor};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{hand_over, resume_all, Letter, MailCounters};
use crate::cluster::{leases, ClusterError};

const FIRST_RETRY: Duration = Duration::from_millis(250);
const MAX_RETRY: Duration = Duration::from_secs(10);
/// Letters published before their confirms are awaited together.
const BATCH: usize = 256;
/// Unacknowledged letters the broker sends one mailbox at a time.
const PREFETCH: u16 = 256;
/// AMQP delivery mode 2: the broker writes the message to disk.
const PERSISTENT: u8 = 2;
/// A confirm not back by then counts as a failure: a broker lost without
/// a reset (a partition) would otherwise hold the letters until lapin's
/// heartbeat notices.
const CONFIRM_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cluster.amqp_url is not a valid AMQP URL")]
    InvalidUrl,
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error("the broker refused a worker command")]
    Refused,
    #[error("the broker did not confirm a worker command in time")]
    Unconfirmed,
    #[error("cannot read the tenants' owners: {0}")]
    Owners(#[from] ClusterError),
}

/// The cluster's broker and how its nodes' queues are named. No `Debug`:
/// the URL holds a password.
#[derive(Clone)]
pub struct Broker {
    uri: AMQPUri,
    cluster: String,
    /// A node's queue unused this long is deleted by the broker.
    expires: Duration,
    /// The mailbox's connection while it consumes, lent to status reads so
    /// they do not open a connection each.
    open: Arc<Mutex<Option<Arc<Connection>>>>,
}

impl Broker {
    /// `node_timeout`: a queue lives ten node timeouts (at least a minute)
    /// after its consumer went away, longer than any reconnect of a live
    /// node, so only dead nodes' queues expire.
    pub fn new(url: &str, cluster: &str, node_timeout: Duration) -> Result<Self, BrokerError> {
        let uri = url.parse().map_err(|_| BrokerError::InvalidUrl)?;
        let expires = (node_timeout * 10).max(Duration::from_secs(60));
        Ok(Self { uri, cluster: cluster.to_string(), expires, open: Arc::default() })
    }

    fn queue(&self, node: Uuid) -> String {
        format!("tessera.{}.node.{node}", self.cluster)
    }

    async fn connect(&self) -> Result<Connection, BrokerError> {
        let properties = ConnectionProperties::default().with_connection_name("tessera-cluster".into());
        Ok(Connection::connect_uri(self.uri.clone(), properties).await?)
    }

    /// Start this node's postman (sending) and mailbox (receiving) tasks
    /// until `shutdown`; the returned forwarder feeds the postman.
    pub fn start(&self, node: Uuid, pool: Pool, supervisor: Supervisor, counters: Arc<MailCounters>, shutdown: CancellationToken) -> BrokerForwarder {
        let (letters, inbox) = mpsc::unbounded_channel();
        let postman = Postman { broker: self.clone(), pool, letters: inbox, missed: HashSet::new(), counters: counters.clone() };
        tokio::spawn(postman.run(shutdown.clone()));
        let mailbox = Mailbox { broker: self.clone(), queue: self.queue(node), supervisor, counters };
        tokio::spawn(mailbox.run(shutdown));
        BrokerForwarder { letters }
    }

    /// How many letters wait in each of `nodes`' queues; a node without a
    /// queue (never connected, or expired) is left out.
    pub async fn queue_depths(&self, nodes: &[Uuid]) -> Result<HashMap<Uuid, u32>, BrokerError> {
        let lent = self.open.lock().unwrap_or_else(PoisonError::into_inner).clone().filter(|c| c.status().connected());
        let connection = match lent {
            Some(connection) => connection,
            None => Arc::new(self.connect().await?),
        };
        let mut channel = connection.create_channel().await?;
        let mut depths = HashMap::new();
        for node in nodes {
            let passive = QueueDeclareOptions { passive: true, ..Default::default() };
            match channel.queue_declare(&self.queue(*node), passive, FieldTable::default()).await {
                Ok(queue) => {
                    depths.insert(*node, queue.message_count());
                }
                // A missing queue closes the channel (404): go on with a new one.
                Err(_) => channel = connection.create_channel().await?,
            }
        }
        let _ = channel.close(200, "status read").await;
        if Arc::strong_count(&connection) == 1 {
            let _ = connection.close(200, "status read").await;
        }
        Ok(depths)
    }
}

/// The supervisor's way to reach workers on other nodes: queue the letter
/// for the postman and return at once.
pub struct BrokerForwarder {
    letters: mpsc::UnboundedSender<Letter>,
}

impl Forwarder for BrokerForwarder {
    fn forward(&self, tenant: Uuid, command: RemoteCommand) {
        // Fails only once the postman stopped, at shutdown: the work is in PostgreSQL.
        let _ = self.letters.send(Letter { tenant, command });
    }
}

/// Sends this node's letters, reconnecting with a back-off.
struct Postman {
    broker: Broker,
    pool: Pool,
    letters: mpsc::UnboundedReceiver<Letter>,
    /// Letters not confirmed yet, sent again first after a reconnect.
    missed: HashSet<Letter>,
    counters: Arc<MailCounters>,
}

impl Postman {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut pause = FIRST_RETRY;
        loop {
            let outcome = tokio::select! {
                _ = shutdown.cancelled() => return,
                outcome = self.connect_and_send() => outcome,
            };
            match outcome {
                Ok(()) => return, // every sender is gone: the node is stopping
                Err(Connected::Lost(e)) => {
                    tracing::warn!(error = %e, "worker command broker lost; reconnecting");
                    pause = FIRST_RETRY;
                }
                Err(Connected::Never(e)) => tracing::warn!(error = %e, retry_in = ?pause, "cannot reach the worker command broker"),
            }
            if !self.wait_out(pause, &shutdown).await {
                return;
            }
            pause = (pause * 2).min(MAX_RETRY);
        }
    }

    async fn connect_and_send(&mut self) -> Result<(), Connected> {
        let connection = self.broker.connect().await.map_err(Connected::Never)?;
        let channel = connection.create_channel().await.map_err(|e| Connected::Never(e.into()))?;
        channel.confirm_select(ConfirmSelectOptions::default()).await.map_err(|e| Connected::Never(e.into()))?;
        let sent = self.send_all(&channel).await.map_err(Connected::Lost);
        let _ = connection.close(200, "reconnecting").await;
        sent
    }

    /// Send batches until the inbox closes or the broker fails. A failed
    /// owner look-up (the database) keeps the connection and waits.
    async fn send_all(&mut self, channel: &Channel) -> Result<(), BrokerError> {
        let mut pause = FIRST_RETRY;
        while let Some(batch) = self.next_batch().await {
            match self.send(channel, &batch).await {
                Ok(()) => pause = FIRST_RETRY,
                Err(e) => {
                    self.counters.failed(batch.len());
                    self.missed.extend(batch.into_iter().map(Letter::again));
                    let BrokerError::Owners(_) = e else { return Err(e) };
                    tracing::warn!(error = %e, retry_in = ?pause, "cannot address worker commands");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_RETRY);
                }
            }
        }
        Ok(())
    }

    /// The letters kept from a failure first, else the next one to arrive;
    /// then whatever else is waiting, up to [`BATCH`].
    async fn next_batch(&mut self) -> Option<Vec<Letter>> {
        let mut batch: Vec<Letter> = self.missed.drain().collect();
        if batch.is_empty() {
            batch.push(self.letters.recv().await?);
        }
        while batch.len() < BATCH {
            match self.letters.try_recv() {
                Ok(letter) => batch.push(letter),
                Err(_) => break,
            }
        }
        Some(batch)
    }

    /// Publish the batch to its owners' queues and wait for every confirm.
    async fn send(&self, channel: &Channel, batch: &[Letter]) -> Result<(), BrokerError> {
        let tenants: Vec<Uuid> = batch.iter().map(|l| l.tenant).collect();
        let owners = leases::owners(&self.pool, &tenants).await?;
        let mut confirms = Vec::with_capacity(batch.len());
        for letter in batch {
            // No live owner: the node that takes the lease resumes the work when its worker starts.
            let Some(owner) = owners.get(&letter.tenant) else { continue };
            let payload = serde_json::to_vec(letter).expect("a letter serialises");
            let properties = BasicProperties::default().with_delivery_mode(PERSISTENT).with_content_type("application/json".into());
            let queue = self.broker.queue(*owner);
            confirms.push(channel.basic_publish("", &queue, BasicPublishOptions::default(), &payload, properties).await?);
        }
        let count = confirms.len();
        for confirm in confirms {
            match tokio::time::timeout(CONFIRM_WAIT, confirm).await {
                Ok(Ok(Confirmation::Nack(_))) => return Err(BrokerError::Refused),
                Ok(confirmed) => confirmed.map(drop)?,
                Err(_) => return Err(BrokerError::Unconfirmed),
            }
        }
        self.counters.sent(count);
        Ok(())
    }

    /// Sleep out a back-off, keeping the letters that arrive meanwhile for
    /// after the reconnect. `false` on shutdown.
    async fn wait_out(&mut self, pause: Duration, shutdown: &CancellationToken) -> bool {
        let until = tokio::time::Instant::now() + pause;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep_until(until) => return true,
                letter = self.letters.recv() => match letter {
                    Some(letter) => {
                        self.counters.failed(1);
                        self.missed.insert(letter.again());
                    }
                    None => return false,
                },
            }
        }
    }
}

/// How a connection's life ended: it never started, or it was lost.
enum Connected {
    Never(BrokerError),
    Lost(BrokerError),
}

/// Receives the letters for this node's workers from its own queue.
struct Mailbox {
    broker: Broker,
    queue: String,
    supervisor: Supervisor,
    counters: Arc<MailCounters>,
}

impl Mailbox {
    async fn run(self, shutdown: CancellationToken) {
        let mut pause = FIRST_RETRY;
        loop {
            let outcome = tokio::select! {
                _ = shutdown.cancelled() => {
                    self.broker.open.lock().unwrap_or_else(PoisonError::into_inner).take(); // closes it once unused
                    return;
                }
                outcome = self.consume() => outcome,
            };
            self.counters.connected(false);
            match outcome {
                Ok(()) => {
                    tracing::warn!(queue = %self.queue, "worker command queue consumer ended; reconnecting");
                    pause = FIRST_RETRY;
                }
                Err(e) => tracing::warn!(queue = %self.queue, error = %e, retry_in = ?pause, "worker command queue unavailable"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(MAX_RETRY);
        }
    }

    /// One connection's life: declare the queue, consume until the stream ends.
    async fn consume(&self) -> Result<(), BrokerError> {
        let connection = Arc::new(self.broker.connect().await?);
        let consumed = self.consume_on(&connection).await;
        self.broker.open.lock().unwrap_or_else(PoisonError::into_inner).take();
        consumed
    }

    async fn consume_on(&self, connection: &Arc<Connection>) -> Result<(), BrokerError> {
        let channel = connection.create_channel().await?;
        let mut arguments = FieldTable::default();
        let expires = i32::try_from(self.broker.expires.as_millis()).unwrap_or(i32::MAX);
        arguments.insert("x-expires".into(), AMQPValue::LongInt(expires));
        let durable = QueueDeclareOptions { durable: true, ..Default::default() };
        channel.queue_declare(&self.queue, durable, arguments).await?;
        channel.basic_qos(PREFETCH, BasicQosOptions::default()).await?;
        let mut deliveries = channel.basic_consume(&self.queue, "tessera-mailbox", BasicConsumeOptions::default(), FieldTable::default()).await?;
        self.counters.connected(true);
        *self.broker.open.lock().unwrap_or_else(PoisonError::into_inner) = Some(connection.clone());
        // Only now: a letter sent from here on reaches us; one sent while
        // we were away may be lost, so every local worker looks again.
        resume_all(&self.supervisor).await;
        while let Some(delivery) = deliveries.next().await {
            self.receive(delivery?).await?;
        }
        Ok(())
    }

    /// Acknowledge a letter once its worker has it (or once it is known to
    /// need no handing: its worker does not run here).
    async fn receive(&self, delivery: Delivery) -> Result<(), lapin::Error> {
        let Ok(letter) = serde_json::from_slice::<Letter>(&delivery.data) else {
            tracing::warn!(queue = %self.queue, "unreadable worker command dropped");
            delivery.acker.reject(BasicRejectOptions { requeue: false }).await?;
            return Ok(());
        };
        self.counters.received();
        hand_over(&self.supervisor, letter).await;
        delivery.acker.ack(BasicAckOptions::default()).await?;
        Ok(())
    }
}
