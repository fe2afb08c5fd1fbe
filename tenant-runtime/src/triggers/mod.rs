//! Schedule and queue triggers of one tenant, owned by its worker: which
//! triggers its enabled integrations have, the schedules' single timer, and
//! the queue consumers. A reload (start, or `WorkerCommand::Reload` after a
//! change) re-reads them, stops what is no longer wanted and starts what is
//! new. PostgreSQL stays the source of truth, through [`TriggerStore`].

pub mod schedule;
mod queue;

use std::{collections::HashMap, sync::Arc};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};
use uuid::Uuid;

use crate::{
    definition::{QueueTrigger, Resource, ScheduleTrigger, Trigger},
    execution::{Engine, StoreFuture},
    worker::TenantSpec,
};
use schedule::Plan;

/// What triggers need from the database. Every call names the tenant,
/// whose schema is the only one it may touch.
pub trait TriggerStore: Send + Sync + 'static {
    /// The tenant's enabled integrations that have a schedule or queue
    /// trigger, with their current definition.
    fn active<'a>(&'a self, tenant: &'a TenantSpec) -> StoreFuture<'a, Vec<ActiveIntegration>>;
    /// Make the stored schedules exactly `wanted`: drop the others, add the
    /// missing ones (and the changed ones) at their `first_at`, keep the
    /// next time of the unchanged ones. Returns the stored rows.
    fn sync_schedules<'a>(&'a self, tenant: &'a TenantSpec, wanted: &'a [WantedSchedule]) -> StoreFuture<'a, Vec<StoredSchedule>>;
    /// In one transaction: move the schedule's next time from `expected` to
    /// `next` only if it still is `expected` (compare-and-set), and if so
    /// and `trigger` is given, queue an execution of the current version.
    fn fire<'a>(&'a self, tenant: &'a TenantSpec, tick: &'a Tick) -> StoreFuture<'a, Fired>;
    /// Queue an execution for a queue message; a `message_id` already
    /// queued for this integration queues nothing.
    fn enqueue_message<'a>(&'a self, tenant: &'a TenantSpec, message: &'a QueueMessage) -> StoreFuture<'a, Enqueued>;
}

#[derive(Debug, Clone)]
pub struct ActiveIntegration {
    pub name: String,
    /// The stored resource of the current version.
    pub definition: Value,
}

#[derive(Debug, Clone)]
pub struct WantedSchedule {
    pub integration: String,
    /// The trigger's place in `spec.triggers`.
    pub index: i32,
    /// [`schedule::spec_key`]: a schedule whose key changed starts afresh.
    pub spec: String,
    pub first_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct StoredSchedule {
    pub integration: String,
    pub index: i32,
    pub next_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Tick {
    pub integration: String,
    pub index: i32,
    pub expected: DateTime<Utc>,
    pub next: DateTime<Utc>,
    /// `None`: only advance (missed ticks skipped).
    pub trigger: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fired {
    Queued(Uuid),
    /// Advanced without an execution (skipped, or the integration is disabled).
    Advanced,
    /// Someone else moved the stored time first: this tick is theirs.
    Lost,
}

#[derive(Debug, Clone)]
pub struct QueueMessage {
    pub integration: String,
    pub trigger: Value,
    pub message_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    Queued(Uuid),
    /// Its `message_id` was queued before (a redelivery after a lost ack).
    Duplicate,
    /// The integration is gone or disabled.
    NotEnabled,
    /// The tenant stores as many executions as its limit `stored_executions` allows.
    OverLimit,
}

/// A schedule the worker keeps in memory: only its next time and how to
/// compute the one after.
struct Scheduled {
    integration: String,
    index: i32,
    trigger: ScheduleTrigger,
    next_at: DateTime<Utc>,
}

/// What identifies a running consumer: a change to any of it restarts it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ConsumerKey {
    integration: String,
    index: usize,
    trigger: QueueTriggerKey,
    /// The generation of the tenant's egress rules the consumer connected
    /// under: a change of the rules starts it again, through the gate.
    egress: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct QueueTriggerKey {
    connection: String,
    queue: String,
    prefetch: u32,
}

impl From<&QueueTrigger> for QueueTriggerKey {
    fn from(t: &QueueTrigger) -> Self {
        Self { connection: t.connection.as_str().to_string(), queue: t.queue.clone(), prefetch: t.prefetch.get() }
    }
}

/// One tenant's schedules and consumers. Idle (no such triggers) it holds
/// two empty collections and a channel, so idle tenants stay cheap.
pub(crate) struct Triggers {
    spec: Arc<TenantSpec>,
    engine: Engine,
    schedules: Vec<Scheduled>,
    consumers: HashMap<ConsumerKey, DropGuard>,
    /// Consumers report the executions they queued here.
    queued: mpsc::UnboundedSender<Uuid>,
    cancel: CancellationToken,
}

impl Triggers {
    pub fn new(spec: Arc<TenantSpec>, engine: Engine, queued: mpsc::UnboundedSender<Uuid>, cancel: CancellationToken) -> Self {
        Self { spec, engine, schedules: Vec::new(), consumers: HashMap::new(), queued, cancel }
    }

    /// No schedule and no queue consumer: nothing here starts executions.
    pub fn is_empty(&self) -> bool {
        self.schedules.is_empty() && self.consumers.is_empty()
    }

    /// The tenant with its new limits, for what starts from now on.
    pub fn set_spec(&mut self, spec: Arc<TenantSpec>) {
        self.spec = spec;
    }

    /// Re-read the tenant's triggers; stop and start what changed. A store
    /// failure keeps what runs (logged): the next reload tries again.
    pub async fn reload(&mut self) {
        let active = match self.engine.triggers.active(&self.spec).await {
            Ok(active) => active,
            Err(e) => return tracing::warn!(tenant = %self.spec.slug, error = %e, "cannot read the triggers"),
        };
        let (schedules, mut queues) = wanted(&active);
        self.reload_schedules(schedules).await;
        // Unreadable rules keep the consumers as they are; their next connect asks the gate again.
        let egress = self.engine.io.egress.tenant(self.spec.id).await.map(|g| g.generation);
        let egress = egress.unwrap_or_else(|_| self.consumers.keys().map(|k| k.egress).max().unwrap_or(0));
        queues.iter_mut().for_each(|(key, _)| key.egress = egress);
        self.reload_consumers(queues);
    }

    async fn reload_schedules(&mut self, schedules: Vec<(String, i32, ScheduleTrigger)>) {
        let now = Utc::now();
        let wanted: Vec<WantedSchedule> = schedules
            .iter()
            .filter_map(|(integration, index, trigger)| {
                let first_at = schedule::next_after(&trigger.schedule, now)?;
                Some(WantedSchedule { integration: integration.clone(), index: *index, spec: schedule::spec_key(&trigger.schedule), first_at })
            })
            .collect();
        let stored = match self.engine.triggers.sync_schedules(&self.spec, &wanted).await {
            Ok(stored) => stored,
            Err(e) => return tracing::warn!(tenant = %self.spec.slug, error = %e, "cannot store the schedules"),
        };
        let mut by_key: HashMap<(String, i32), ScheduleTrigger> =
            schedules.into_iter().map(|(name, index, trigger)| ((name, index), trigger)).collect();
        self.schedules = stored
            .into_iter()
            .filter_map(|row| {
                let trigger = by_key.remove(&(row.integration.clone(), row.index))?;
                Some(Scheduled { integration: row.integration, index: row.index, trigger, next_at: row.next_at })
            })
            .collect();
    }

    fn reload_consumers(&mut self, mut queues: Vec<(ConsumerKey, QueueTrigger)>) {
        let most = self.spec.limits.queue_consumers;
        if queues.len() > most {
            // Always the same ones, so a reload does not swap which consume.
            queues.sort_by(|(a, _), (b, _)| (&a.integration, a.index).cmp(&(&b.integration, b.index)));
            // The first ones (by integration name and place) consume; the rest wait for a higher limit.
            let left: Vec<String> = queues[most..].iter().map(|(k, _)| format!("{}#{}", k.integration, k.index)).collect();
            tracing::warn!(tenant = %self.spec.slug, code = "queue_consumer_limit", limit = most, not_started = ?left,
                "the tenant has more queue triggers than its limit `queue_consumers`; these do not consume");
            queues.truncate(most);
        }
        let keep: Vec<&ConsumerKey> = queues.iter().map(|(key, _)| key).collect();
        self.consumers.retain(|key, _| keep.contains(&key)); // dropping a guard stops its consumer
        for (key, trigger) in queues {
            if self.consumers.contains_key(&key) {
                continue;
            }
            let cancel = self.cancel.child_token();
            let consumer = queue::Consumer {
                spec: self.spec.clone(),
                engine: self.engine.clone(),
                integration: key.integration.clone(),
                trigger,
                queued: self.queued.clone(),
                cancel: cancel.clone(),
            };
            tokio::spawn(consumer.run());
            self.consumers.insert(key, cancel.drop_guard());
        }
    }

    /// When the earliest schedule is due; `None` without schedules.
    pub fn wake_at(&self) -> Option<DateTime<Utc>> {
        self.schedules.iter().map(|s| s.next_at).min()
    }

    /// Fire every due schedule; returns the executions queued.
    pub async fn fire_due(&mut self) -> Vec<Uuid> {
        let mut queued = Vec::new();
        let mut finished = Vec::new();
        for (i, scheduled) in self.schedules.iter_mut().enumerate() {
            let plan = schedule::plan(&scheduled.trigger.schedule, scheduled.trigger.missed, scheduled.next_at, Utc::now());
            let (trigger, next) = match plan {
                Plan::Wait => continue,
                Plan::Finished => {
                    finished.push(i);
                    continue;
                }
                Plan::Fire { missed, next } => (Some(tick_trigger(scheduled.next_at, missed)), next),
                Plan::Skip { missed, next } => {
                    tracing::info!(tenant = %self.spec.slug, integration = %scheduled.integration, missed, "missed schedule ticks skipped");
                    (None, next)
                }
            };
            let tick = Tick { integration: scheduled.integration.clone(), index: scheduled.index, expected: scheduled.next_at, next, trigger };
            match self.engine.triggers.fire(&self.spec, &tick).await {
                Ok(Fired::Queued(id)) => queued.push(id),
                Ok(Fired::Advanced | Fired::Lost) => {}
                Err(e) => {
                    // Try again on the next tick rather than spin on a failing database.
                    tracing::error!(tenant = %self.spec.slug, integration = %scheduled.integration, error = %e, "cannot fire a schedule");
                }
            }
            // After a lost race the stored time is someone else's newer one; ours is at least as late.
            scheduled.next_at = next;
        }
        for i in finished.into_iter().rev() {
            self.schedules.swap_remove(i);
        }
        queued
    }
}

fn tick_trigger(scheduled_at: DateTime<Utc>, missed: Option<u64>) -> Value {
    let mut trigger = json!({"kind": "schedule", "scheduled_at": scheduled_at});
    if let Some(missed) = missed {
        trigger["missed"] = json!(missed);
    }
    trigger
}

type Wanted = (Vec<(String, i32, ScheduleTrigger)>, Vec<(ConsumerKey, QueueTrigger)>);

/// The schedule and queue triggers of the active integrations.
fn wanted(active: &[ActiveIntegration]) -> Wanted {
    let (mut schedules, mut queues) = (Vec::new(), Vec::new());
    for integration in active {
        let Ok(Resource::Integration(resource)) = serde_json::from_value::<Resource>(integration.definition.clone()) else {
            tracing::warn!(integration = %integration.name, "stored definition cannot be read; its triggers are ignored");
            continue;
        };
        for (index, trigger) in resource.spec.triggers.into_iter().enumerate() {
            match trigger {
                Trigger::Schedule(s) => schedules.push((integration.name.clone(), index as i32, s)),
                Trigger::Queue(q) => {
                    let key = ConsumerKey { integration: integration.name.clone(), index, trigger: QueueTriggerKey::from(&q), egress: 0 };
                    queues.push((key, q));
                }
                Trigger::Manual(_) | Trigger::Webhook(_) => {}
            }
        }
    }
    (schedules, queues)
}
