//! Admission of an API consumer's call (docs/api-management.md): its key,
//! then its plan's limits, checked where every node of the cluster sees the
//! same state. Each consumer has one row in `api_consumer_usage`: a token
//! bucket (refilled at the plan's rate, at most its burst) and the calls of
//! its current quota window (UTC day or month). One statement looks the key
//! up, refills the bucket and takes a token and a quota call, or takes
//! nothing; the row lock orders concurrent calls from any node, so the
//! limits are exact across the cluster at the cost of one round trip per
//! call (its commit does not wait for the WAL's flush), and a revoked key
//! fails its next call everywhere.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{
    auth::api_keys,
    database::DbError,
    resources::consumers::CONSUMER_KEY_PREFIX,
    tenancy::{Tenant, TenantDb},
};

/// A call let through, and what is left of the consumer's limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Admitted {
    pub consumer_id: Uuid,
    pub consumer: String,
    pub plan: String,
    pub limits: Limits,
    /// Tokens left in the bucket after this call.
    pub remaining: f64,
    /// Calls left in the quota window after this call, when there is a quota.
    pub quota_remaining: Option<i64>,
}

/// A plan's limits as a call meets them.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub rate_per_second: f64,
    pub burst: i32,
    pub quota: Option<i64>,
    /// When the quota window ends.
    pub quota_resets_at: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    #[error("the API key is not a valid consumer key of this tenant")]
    UnknownKey,
    #[error("consumer '{consumer}' is over its plan's rate of {} calls per second", limits.rate_per_second)]
    RateLimited { consumer: String, limits: Limits, retry_after_ms: u64 },
    #[error("consumer '{consumer}' has used its plan's quota of {} calls", limits.quota.unwrap_or_default())]
    QuotaExceeded { consumer: String, limits: Limits, retry_after_ms: u64 },
    #[error(transparent)]
    Db(#[from] DbError),
}

const ADMIT: &str = "\
WITH key AS (
    SELECT id, consumer_id, last_used_at FROM @tenant.api_consumer_keys WHERE key_hash = $1 AND revoked_at IS NULL
), plan AS (
    SELECT c.id, c.name, p.name AS plan, p.rate_per_second AS rate, p.burst, p.quota,
           CASE p.quota_period WHEN 'day' THEN date_trunc('day', now(), 'UTC') WHEN 'month' THEN date_trunc('month', now(), 'UTC') END AS window_start,
           CASE p.quota_period WHEN 'day' THEN date_trunc('day', now(), 'UTC') + interval '1 day'
                               WHEN 'month' THEN date_trunc('month', now(), 'UTC') + interval '1 month' END AS window_end
    FROM key JOIN @tenant.api_consumers c ON c.id = key.consumer_id JOIN @tenant.api_plans p ON p.name = c.plan
), touched AS (
    UPDATE @tenant.api_consumer_keys k SET last_used_at = now() FROM key
    WHERE k.id = key.id AND (key.last_used_at IS NULL OR key.last_used_at < now() - interval '1 minute')
), taken AS (
    UPDATE @tenant.api_consumer_usage u SET
        tokens = least(plan.burst, u.tokens + plan.rate * greatest(0, extract(epoch FROM now() - u.refilled_at)::float8)) - 1,
        refilled_at = greatest(u.refilled_at, now()),
        window_start = plan.window_start,
        used = CASE WHEN u.window_start IS NOT DISTINCT FROM plan.window_start THEN u.used + 1 ELSE 1 END
    FROM plan
    WHERE u.consumer_id = plan.id
      AND least(plan.burst, u.tokens + plan.rate * greatest(0, extract(epoch FROM now() - u.refilled_at)::float8)) >= 1
      AND (plan.quota IS NULL OR u.window_start IS DISTINCT FROM plan.window_start OR u.used < plan.quota)
    RETURNING u.tokens, u.used
)
SELECT plan.id, plan.name, plan.plan, plan.rate, plan.burst, plan.quota, plan.window_end, taken.tokens, taken.used,
       set_config('synchronous_commit', 'off', true)
FROM plan LEFT JOIN taken ON true";

/// Why a call was refused, read after the refusal: the statement that
/// refused it saw the row as of its start, before the calls it waited for.
const STATE: &str = "SELECT least(p.burst, u.tokens + p.rate_per_second * greatest(0, extract(epoch FROM clock_timestamp() - u.refilled_at)::float8)),
       p.quota IS NOT NULL AND u.used >= p.quota
         AND u.window_start IS NOT DISTINCT FROM
             CASE p.quota_period WHEN 'day' THEN date_trunc('day', now(), 'UTC') WHEN 'month' THEN date_trunc('month', now(), 'UTC') END
FROM @tenant.api_consumer_usage u JOIN @tenant.api_consumers c ON c.id = u.consumer_id JOIN @tenant.api_plans p ON p.name = c.plan
WHERE u.consumer_id = $1";

/// Let one call of the consumer holding `key` through, or say why not.
pub async fn admit(db: &TenantDb, tenant: &Tenant, key: &str) -> Result<Admitted, AdmissionError> {
    if !key.starts_with(CONSUMER_KEY_PREFIX) {
        return Err(AdmissionError::UnknownKey);
    }
    // One statement, its own transaction, committed without waiting for
    // the WAL's flush (the statement sets `synchronous_commit` off for its
    // transaction only): the consumer's row stays locked for the statement
    // alone, not for a flush or another round trip. A database crash may
    // forget the last fraction of a second of tokens and quota taken, so
    // a consumer may then get that many calls more.
    let rows = db.statement(tenant, ADMIT, &[&api_keys::digest(key)]).await?;
    let row = rows.first().ok_or(AdmissionError::UnknownKey)?;
    let consumer: String = row.get(1);
    let limits = Limits { rate_per_second: row.get(3), burst: row.get(4), quota: row.get(5), quota_resets_at: row.get(6) };
    let (tokens, used): (Option<f64>, Option<i64>) = (row.get(7), row.get(8));
    if let (Some(remaining), Some(used)) = (tokens, used) {
        let quota_remaining = limits.quota.map(|q| q - used);
        return Ok(Admitted { consumer_id: row.get(0), consumer, plan: row.get(2), limits, remaining, quota_remaining });
    }
    let consumer_id: Uuid = row.get(0);
    let state = db.statement(tenant, STATE, &[&consumer_id]).await?;
    let (available, quota_spent) = state.first().map(|r| (r.get::<_, f64>(0), r.get::<_, bool>(1))).unwrap_or((0.0, false));
    Err(refusal(consumer, limits, available, quota_spent))
}

fn refusal(consumer: String, limits: Limits, available: f64, quota_spent: bool) -> AdmissionError {
    if !quota_spent {
        // The time until the bucket holds a whole token again.
        let retry_after_ms = ((1.0 - available).max(0.0) / limits.rate_per_second * 1000.0).ceil().max(1.0) as u64;
        return AdmissionError::RateLimited { consumer, limits, retry_after_ms };
    }
    let until_reset = limits.quota_resets_at.map(|at| (at - Utc::now()).num_milliseconds().max(1) as u64).unwrap_or(1000);
    AdmissionError::QuotaExceeded { consumer, limits, retry_after_ms: until_reset }
}
