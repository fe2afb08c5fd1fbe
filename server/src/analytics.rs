//! Analytics of managed APIs (docs/api-management.md, "Analytics"): calls,
//! errors and latency per API, route, consumer and minute. A call only
//! touches this node's memory; a task adds what was counted to the
//! tenant's `api_call_stats` every second, one upsert per API, route,
//! consumer and minute seen, so the cost per call stays a map update. The
//! node's last second of counts is lost if it dies; a clean stop flushes.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::{
    database::DbError,
    tenancy::{SchemaName, Tenant, TenantDb},
};

/// Upper bounds of the latency buckets, in ms; the last bucket is above them all.
pub const LATENCY_BOUNDS_MS: [f64; 14] = [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0, 30000.0];
const BUCKETS: usize = LATENCY_BOUNDS_MS.len() + 1;

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    schema: SchemaName,
    api: String,
    route: String,
    consumer: String,
    minute: DateTime<Utc>,
}

#[derive(Default, Clone)]
struct Counts {
    calls: i64,
    errors: i64,
    latency: [i64; BUCKETS],
}

impl Counts {
    fn add(&mut self, ok: bool, took: Duration) {
        self.calls += 1;
        self.errors += i64::from(!ok);
        let ms = took.as_secs_f64() * 1000.0;
        let bucket = LATENCY_BOUNDS_MS.iter().position(|bound| ms <= *bound).unwrap_or(BUCKETS - 1);
        self.latency[bucket] += 1;
    }

    fn merge(&mut self, other: &Counts) {
        self.calls += other.calls;
        self.errors += other.errors;
        for (mine, theirs) in self.latency.iter_mut().zip(other.latency) {
            *mine += theirs;
        }
    }

    /// The `q` quantile of the durations, interpolated within its bucket.
    fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total: i64 = self.latency.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = q * total as f64;
        let mut seen = 0.0;
        for (i, count) in self.latency.iter().enumerate() {
            let count = *count as f64;
            if count > 0.0 && seen + count >= rank {
                let low = if i == 0 { 0.0 } else { LATENCY_BOUNDS_MS[i - 1] };
                let high = LATENCY_BOUNDS_MS.get(i).copied().unwrap_or(low * 2.0);
                return Some(low + (high - low) * ((rank - seen) / count).clamp(0.0, 1.0));
            }
            seen += count;
        }
        None
    }
}

/// This node's counts not yet written.
#[derive(Clone, Default)]
pub struct Analytics {
    pending: Arc<Mutex<HashMap<Key, Counts>>>,
}

const UPSERT: &str = "\
INSERT INTO @tenant.api_call_stats (api, route, consumer, minute, calls, errors, latency) VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (api, minute, route, consumer) DO UPDATE SET
    calls = api_call_stats.calls + excluded.calls,
    errors = api_call_stats.errors + excluded.errors,
    latency = (SELECT array_agg(coalesce(a, 0) + coalesce(b, 0) ORDER BY i)
               FROM unnest(api_call_stats.latency, excluded.latency) WITH ORDINALITY AS t(a, b, i))";

impl Analytics {
    /// Count one call of `api`'s `route` (`METHOD /path`), by `consumer`.
    pub fn record(&self, tenant: &Tenant, api: &str, route: &str, consumer: Option<&str>, ok: bool, took: Duration) {
        let minute = Utc::now().duration_trunc(TimeDelta::minutes(1)).unwrap_or_else(|_| Utc::now());
        let key = Key { schema: tenant.schema.clone(), api: api.into(), route: route.into(), consumer: consumer.unwrap_or_default().into(), minute };
        self.pending.lock().unwrap_or_else(PoisonError::into_inner).entry(key).or_default().add(ok, took);
    }

    /// Write what was counted; counts that fail to be written are kept for the next flush.
    pub async fn flush(&self, db: &TenantDb) -> Result<(), DbError> {
        let taken = std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        let mut failed = None;
        for (key, counts) in &taken {
            let latency: Vec<i64> = counts.latency.to_vec();
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] =
                [&key.api, &key.route, &key.consumer, &key.minute, &counts.calls, &counts.errors, &latency];
            if let Err(e) = db.statement_in_schema(&key.schema, UPSERT, &params).await {
                let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
                pending.entry(key.clone()).or_default().merge(counts);
                failed = Some(e);
            }
        }
        let schemas: std::collections::HashSet<&SchemaName> = taken.keys().map(|k| &k.schema).collect();
        for schema in schemas {
            db.statement_in_schema(schema, "DELETE FROM @tenant.api_call_stats WHERE minute < now() - interval '35 days'", &[]).await?;
        }
        failed.map_or(Ok(()), Err)
    }

    /// Flush every second until shutdown, and once more then.
    pub fn spawn(self, db: TenantDb, shutdown: CancellationToken) {
        tokio::spawn(async move {
            loop {
                let stopping = tokio::select! {
                    _ = shutdown.cancelled() => true,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => false,
                };
                if let Err(e) = self.flush(&db).await {
                    tracing::warn!(error = %crate::telemetry::with_causes(&e), "API analytics not written; kept for the next flush");
                }
                if stopping {
                    return;
                }
            }
        });
    }
}

/// One line of a report: calls, errors and latency quantiles.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Figures {
    pub calls: i64,
    pub errors: i64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

impl From<&Counts> for Figures {
    fn from(c: &Counts) -> Self {
        let round = |v: Option<f64>| v.map(|ms| (ms * 10.0).round() / 10.0);
        Figures { calls: c.calls, errors: c.errors, p50_ms: round(c.quantile_ms(0.5)), p99_ms: round(c.quantile_ms(0.99)) }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Point {
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub figures: Figures,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ByRoute {
    pub route: String,
    #[serde(flatten)]
    pub figures: Figures,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ByConsumer {
    /// None: calls made without a consumer.
    pub consumer: Option<String>,
    #[serde(flatten)]
    pub figures: Figures,
}

/// An API's calls over a window: a series, and totals per route and consumer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Report {
    pub window: &'static str,
    pub step_seconds: i64,
    pub series: Vec<Point>,
    pub routes: Vec<ByRoute>,
    pub consumers: Vec<ByConsumer>,
}

/// The report of `api` over the last `hours` hours, in steps of `step` hours.
pub async fn report(db: &TenantDb, tenant: &Tenant, api: &str, window: &'static str, hours: i64, step: i64) -> Result<Report, DbError> {
    let rows = db
        .statement(
            tenant,
            "SELECT minute, route, consumer, calls, errors, latency FROM @tenant.api_call_stats \
             WHERE api = $1 AND minute >= now() - make_interval(hours => $2::int)",
            &[&api, &(hours as i32)],
        )
        .await?;
    let now = Utc::now().duration_trunc(TimeDelta::hours(step)).unwrap_or_else(|_| Utc::now());
    let first = now - TimeDelta::hours(hours - step);
    let mut series: Vec<(DateTime<Utc>, Counts)> = (0..hours / step).map(|i| (first + TimeDelta::hours(i * step), Counts::default())).collect();
    let (mut routes, mut consumers): (HashMap<String, Counts>, HashMap<String, Counts>) = Default::default();
    for row in &rows {
        let minute: DateTime<Utc> = row.get(0);
        let latency: Vec<i64> = row.get(5);
        let mut counts = Counts { calls: row.get(3), errors: row.get(4), latency: [0; BUCKETS] };
        for (slot, value) in counts.latency.iter_mut().zip(latency) {
            *slot = value;
        }
        if let Some((_, point)) = series.iter_mut().rev().find(|(at, _)| *at <= minute) {
            point.merge(&counts);
        }
        routes.entry(row.get(1)).or_default().merge(&counts);
        consumers.entry(row.get(2)).or_default().merge(&counts);
    }
    let mut routes: Vec<ByRoute> = routes.iter().map(|(route, c)| ByRoute { route: route.clone(), figures: c.into() }).collect();
    routes.sort_by(|a, b| b.figures.calls.cmp(&a.figures.calls).then(a.route.cmp(&b.route)));
    let mut consumers: Vec<ByConsumer> =
        consumers.iter().map(|(name, c)| ByConsumer { consumer: (!name.is_empty()).then(|| name.clone()), figures: c.into() }).collect();
    consumers.sort_by(|a, b| b.figures.calls.cmp(&a.figures.calls).then(a.consumer.cmp(&b.consumer)));
    let series = series.iter().map(|(at, c)| Point { at: *at, figures: c.into() }).collect();
    Ok(Report { window, step_seconds: step * 3600, series, routes, consumers })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_buckets_the_durations_fell_in() {
        let mut counts = Counts::default();
        for ms in [3, 4, 4, 4, 40, 40, 40, 40, 40, 900] {
            counts.add(true, Duration::from_millis(ms));
        }
        counts.add(false, Duration::from_secs(60));
        assert_eq!((counts.calls, counts.errors), (11, 1));
        let p50 = counts.quantile_ms(0.5).unwrap();
        assert!((20.0..=50.0).contains(&p50), "{p50}");
        let p99 = counts.quantile_ms(0.99).unwrap();
        assert!(p99 > 30_000.0, "the slowest call sets the p99: {p99}");
        assert_eq!(Counts::default().quantile_ms(0.5), None);
    }
}
