//! The node's metrics, in Prometheus text format on a listener of their
//! own (`metrics.listen`): HTTP requests, executions, steps, batches,
//! queues, leases, moves and pools.
//!
//! Why a listener of its own: a scrape needs no tenant host and no login,
//! and a port the load balancer never routes to keeps every tenant's
//! figures away from other tenants (the usual shape: Temporal, Windmill
//! and Kestra do the same). Why `prometheus-client`: its registry is a
//! value, built with the node's state and passed around like it, so two
//! nodes in one process (the tests) count apart.
//!
//! The `tenant` label is bounded: the first `metrics.max_tenant_labels`
//! tenants a node counts get their own label, every later one counts under
//! `_other`. A node's tenant series are then at most that bound times the
//! few states an execution ends in, whatever the number of tenants
//! (10,000 tenants must not mean 50,000 series per node).

use std::{
    collections::HashSet,
    fmt::Write as _,
    sync::{Mutex, PoisonError},
    time::Duration,
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::Registry,
};

/// The label of the tenants past the bound.
pub const OTHER_TENANTS: &str = "_other";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route's pattern (`/api/integrations/{name}`), never the path
    /// itself: paths carry names and ids without bound.
    pub route: String,
    /// One of a few fixed names: nothing to allocate per request.
    pub method: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabels {
    pub tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndLabels {
    pub tenant: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BatcherLabels {
    pub batcher: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub pool: String,
    /// `size` (open), `available` (idle) or `waiting` (callers queued).
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

fn seconds() -> Histogram {
    // 1 ms to about 33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

fn sizes() -> Histogram {
    // 1 to 512 writes.
    Histogram::new(exponential_buckets(1.0, 2.0, 10))
}

/// Every metric of one node. Cloning a metric shares it.
pub struct Metrics {
    registry: Registry,
    tenants: TenantLabelBound,
    pub http_requests: Family<RequestLabels, Counter>,
    pub http_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub executions_started: Family<TenantLabels, Counter>,
    pub executions_finished: Family<EndLabels, Counter>,
    pub step_duration: Family<StateLabels, Histogram, fn() -> Histogram>,
    pub batch_size: Family<BatcherLabels, Histogram, fn() -> Histogram>,
    pub batch_waiting: Family<BatcherLabels, Gauge>,
    pub leases_held: Gauge,
    pub workers_running: Gauge,
    pub tenant_moves: Family<OutcomeLabels, Counter>,
    pub pool_connections: Family<PoolLabels, Gauge>,
}

impl Metrics {
    pub fn new(max_tenant_labels: usize) -> Self {
        let mut m = Self {
            registry: Registry::with_prefix("tessera"),
            tenants: TenantLabelBound::new(max_tenant_labels),
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(seconds),
            executions_started: Family::default(),
            executions_finished: Family::default(),
            step_duration: Family::new_with_constructor(seconds),
            batch_size: Family::new_with_constructor(sizes),
            batch_waiting: Family::default(),
            leases_held: Gauge::default(),
            workers_running: Gauge::default(),
            tenant_moves: Family::default(),
            pool_connections: Family::default(),
        };
        let r = &mut m.registry;
        r.register("http_requests", "HTTP requests answered, by route pattern, method and status", m.http_requests.clone());
        r.register("http_request_duration_seconds", "Time to answer an HTTP request, by route pattern", m.http_duration.clone());
        r.register("executions_started", "Executions claimed to run on this node, by tenant (bounded)", m.executions_started.clone());
        r.register("executions_finished", "Executions this node ended, by tenant (bounded) and final state", m.executions_finished.clone());
        r.register("step_duration_seconds", "Duration of the steps this node recorded, by step state", m.step_duration.clone());
        r.register("batch_writes", "Writes per group commit, by batcher", m.batch_size.clone());
        r.register("batch_waiting", "Writes left waiting when a batcher's last batch was taken", m.batch_waiting.clone());
        r.register("leases_held", "Tenant leases this node holds", m.leases_held.clone());
        r.register("workers_running", "Tenant workers running on this node", m.workers_running.clone());
        r.register("tenant_moves", "Tenant moves between clusters run by this node, by outcome", m.tenant_moves.clone());
        r.register("pool_connections", "Database connections by pool and state", m.pool_connections.clone());
        m
    }

    /// The label for `tenant`: its slug while within the bound.
    pub fn tenant(&self, slug: &str) -> String {
        self.tenants.label(slug)
    }

    pub fn request(&self, route: &str, method: &'static str, status: u16, took: Duration) {
        let route = route.to_string();
        self.http_requests.get_or_create(&RequestLabels { route: route.clone(), method, status }).inc();
        self.http_duration.get_or_create(&RouteLabels { route }).observe(took.as_secs_f64());
    }

    pub fn started(&self, slug: &str, count: u64) {
        self.executions_started.get_or_create(&TenantLabels { tenant: self.tenant(slug) }).inc_by(count);
    }

    pub fn finished(&self, slug: &str, state: &str) {
        self.executions_finished.get_or_create(&EndLabels { tenant: self.tenant(slug), state: state.to_string() }).inc();
    }

    pub fn step(&self, state: &str, took: Duration) {
        self.step_duration.get_or_create(&StateLabels { state: state.to_string() }).observe(took.as_secs_f64());
    }

    /// A batcher took `size` writes and left `waiting` in its queue.
    pub fn batch(&self, batcher: &str, size: usize, waiting: usize) {
        let labels = BatcherLabels { batcher: batcher.to_string() };
        self.batch_size.get_or_create(&labels).observe(size as f64);
        self.batch_waiting.get_or_create(&labels).set(waiting as i64);
    }

    /// A pool's connections: open, idle, and callers waiting for one.
    pub fn pool(&self, pool: &str, (size, available, waiting): (usize, usize, usize)) {
        let set = |state: &str, value: usize| {
            self.pool_connections.get_or_create(&PoolLabels { pool: pool.to_string(), state: state.to_string() }).set(value as i64)
        };
        set("size", size);
        set("available", available);
        set("waiting", waiting);
    }

    pub fn moved(&self, outcome: &str) {
        self.tenant_moves.get_or_create(&OutcomeLabels { outcome: outcome.to_string() }).inc();
    }

    /// Everything, in Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail; an encoding error would be a
        // bug in a label, shown rather than hidden.
        if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry) {
            let _ = writeln!(text, "# encoding failed: {e}");
        }
        text
    }
}

/// The tenants that have a label of their own.
struct TenantLabelBound {
    max: usize,
    admitted: Mutex<HashSet<String>>,
}

impl TenantLabelBound {
    fn new(max: usize) -> Self {
        Self { max, admitted: Mutex::default() }
    }

    fn label(&self, slug: &str) -> String {
        let mut admitted = self.admitted.lock().unwrap_or_else(PoisonError::into_inner);
        if admitted.contains(slug) {
            return slug.to_string();
        }
        if admitted.len() < self.max {
            admitted.insert(slug.to_string());
            return slug.to_string();
        }
        OTHER_TENANTS.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_past_the_bound_share_one_label() {
        let metrics = Metrics::new(2);
        for slug in ["a", "b", "c", "d", "a"] {
            metrics.finished(slug, "succeeded");
        }
        let text = metrics.render();
        assert!(text.contains(r#"tessera_executions_finished_total{tenant="a",state="succeeded"} 2"#), "{text}");
        assert!(text.contains(r#"tessera_executions_finished_total{tenant="b",state="succeeded"} 1"#), "{text}");
        assert!(text.contains(r#"tessera_executions_finished_total{tenant="_other",state="succeeded"} 2"#), "{text}");
        assert!(!text.contains(r#"tenant="c""#), "{text}");
    }

    #[test]
    fn requests_count_by_route_pattern_and_status() {
        let metrics = Metrics::new(10);
        metrics.request("/api/integrations/{name}", "GET", 404, Duration::from_millis(3));
        metrics.request("/api/integrations/{name}", "GET", 404, Duration::from_millis(5));
        let text = metrics.render();
        assert!(text.contains(r#"tessera_http_requests_total{route="/api/integrations/{name}",method="GET",status="404"} 2"#), "{text}");
        assert!(text.contains(r#"tessera_http_request_duration_seconds_count{route="/api/integrations/{name}"} 2"#), "{text}");
    }
}
