//! A tenant's executions summed up over a recent window, for the panel's
//! overview: how many in each state, the failure rate, run-time
//! percentiles, the integrations failing most, and a series per hour (24 h)
//! or per day (7 d).

use serde::Serialize;
use serde_json::Value;

use super::ResourceError;
use crate::{
    auth::TenantCaller,
    tenancy::{Tenant, TenantDb},
};

/// The windows the overview offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Day,
    Week,
}

impl Window {
    pub fn parse(text: &str) -> Result<Self, ResourceError> {
        match text {
            "24h" => Ok(Self::Day),
            "7d" => Ok(Self::Week),
            // The caller's text is not echoed: it may be anything, of any length.
            _ => Err(ResourceError::Invalid { field: "window", message: "must be 24h or 7d".into() }),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Day => "24h",
            Self::Week => "7d",
        }
    }

    /// The window's length and the width of its buckets (PostgreSQL's words).
    fn sql(self) -> (&'static str, &'static str) {
        match self {
            Self::Day => ("24 hours", "hour"),
            Self::Week => ("7 days", "day"),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Stats {
    pub window: &'static str,
    pub total: i64,
    /// Executions created in the window, by their state now.
    pub by_state: Value,
    /// Failed among those that finished (0 when none did).
    pub failure_rate: f64,
    /// Run time (`started_at` → `finished_at`) of those that finished.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// The integrations with the most failed executions, at most ten.
    pub failing: Value,
    /// Per bucket (UTC hour or day): executions created, by state.
    pub series: Value,
}

/// One statement over the window's executions, read once (the CTE is
/// materialised because it is referenced several times).
const STATS: &str = "WITH w AS MATERIALIZED (SELECT integration, state, created_at, started_at, finished_at \
       FROM @tenant.executions WHERE created_at >= now() - $1::text::interval), \
     runs AS (SELECT extract(epoch FROM finished_at - started_at) * 1000 AS ms FROM w \
       WHERE finished_at IS NOT NULL AND started_at IS NOT NULL AND state IN ('succeeded', 'failed')) \
     SELECT (SELECT count(*) FROM w), \
       (SELECT coalesce(jsonb_object_agg(state, n), '{}') FROM (SELECT state, count(*) AS n FROM w GROUP BY state) s), \
       (SELECT coalesce(count(*) FILTER (WHERE state = 'failed')::float8 / nullif(count(*) FILTER (WHERE state IN ('succeeded', 'failed', 'cancelled')), 0), 0) FROM w), \
       (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FROM runs)::float8, \
       (SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) FROM runs)::float8, \
       (SELECT coalesce(jsonb_agg(jsonb_build_object('integration', integration, 'failed', failed, 'total', total) \
           ORDER BY failed DESC, integration), '[]') \
         FROM (SELECT integration, count(*) FILTER (WHERE state = 'failed') AS failed, count(*) AS total FROM w \
               GROUP BY integration HAVING count(*) FILTER (WHERE state = 'failed') > 0 \
               ORDER BY 2 DESC, 1 LIMIT 10) f), \
       (SELECT coalesce(jsonb_agg(jsonb_build_object('bucket', bucket, 'queued', queued, 'running', running, \
           'succeeded', succeeded, 'failed', failed, 'cancelled', cancelled) ORDER BY bucket), '[]') \
         FROM (SELECT date_trunc($2, created_at, 'UTC') AS bucket, \
                 count(*) FILTER (WHERE state = 'queued') AS queued, count(*) FILTER (WHERE state = 'running') AS running, \
                 count(*) FILTER (WHERE state = 'succeeded') AS succeeded, count(*) FILTER (WHERE state = 'failed') AS failed, \
                 count(*) FILTER (WHERE state = 'cancelled') AS cancelled \
               FROM w GROUP BY 1) b)";

/// The caller's tenant's executions over `window` (any role).
pub async fn summary(db: &TenantDb, caller: &TenantCaller, window: Window) -> Result<Stats, ResourceError> {
    let (length, bucket) = window.sql();
    let rows = db.statement(&caller.tenant, STATS, &[&length, &bucket]).await?;
    let row = &rows[0];
    Ok(Stats {
        window: window.name(),
        total: row.get(0),
        by_state: row.get(1),
        failure_rate: row.get(2),
        p50_ms: row.get(3),
        p99_ms: row.get(4),
        failing: row.get(5),
        series: row.get(6),
    })
}

/// Executions per UTC day of one tenant over its last `days` days, for the
/// platform console (the platform owner's view of a tenant, not a caller's).
const DAILY: &str = "SELECT coalesce(jsonb_agg(jsonb_build_object('day', day, 'total', total, 'succeeded', succeeded, \
       'failed', failed, 'cancelled', cancelled) ORDER BY day), '[]') \
     FROM (SELECT date_trunc('day', created_at, 'UTC') AS day, count(*) AS total, \
             count(*) FILTER (WHERE state = 'succeeded') AS succeeded, count(*) FILTER (WHERE state = 'failed') AS failed, \
             count(*) FILTER (WHERE state = 'cancelled') AS cancelled \
           FROM @tenant.executions WHERE created_at >= date_trunc('day', now(), 'UTC') - make_interval(days => $1 - 1) \
           GROUP BY 1) d";

/// The most days [`daily`] looks back.
pub const MAX_DAYS: i32 = 90;

pub async fn daily(db: &TenantDb, tenant: &Tenant, days: i32) -> Result<Value, ResourceError> {
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(ResourceError::Invalid { field: "days", message: format!("must be between 1 and {MAX_DAYS}") });
    }
    Ok(db.statement(tenant, DAILY, &[&days]).await?[0].get(0))
}
