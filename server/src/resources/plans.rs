//! Plans: what an API consumer may call, as a rate (a token bucket: a
//! refill rate and a burst) and an optional quota per UTC day or month.
//! Admins and owners manage them; a plan in use cannot be deleted.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_postgres::Row;

use super::{parse_name, ResourceError};
use crate::{
    audit::Change,
    auth::{Role, TenantCaller},
    tenancy::TenantDb,
};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Plan {
    pub name: String,
    pub description: String,
    pub rate_per_second: f64,
    pub burst: i32,
    pub quota: Option<i64>,
    pub quota_period: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanInput {
    /// Calls per second, sustained (the bucket's refill rate).
    pub rate_per_second: f64,
    /// Calls at once after a quiet spell (the bucket's size); at least 1.
    pub burst: i32,
    /// Calls per `quota_period`; both or neither.
    pub quota: Option<i64>,
    /// `day` or `month` (UTC).
    pub quota_period: Option<String>,
    #[serde(default)]
    pub description: String,
}

const COLUMNS: &str = "name, description, rate_per_second, burst, quota, quota_period, created_at, updated_at";
const KIND: &str = "plan";

fn from_row(row: &Row) -> Plan {
    Plan {
        name: row.get(0),
        description: row.get(1),
        rate_per_second: row.get(2),
        burst: row.get(3),
        quota: row.get(4),
        quota_period: row.get(5),
        created_at: row.get(6),
        updated_at: row.get(7),
    }
}

impl PlanInput {
    fn check(&self) -> Result<(), ResourceError> {
        if !(self.rate_per_second.is_finite() && self.rate_per_second > 0.0 && self.rate_per_second <= 1_000_000.0) {
            return Err(ResourceError::invalid("rate_per_second", "a number above 0, at most 1,000,000"));
        }
        if !(1..=1_000_000).contains(&self.burst) {
            return Err(ResourceError::invalid("burst", "a whole number from 1 to 1,000,000"));
        }
        match (self.quota, self.quota_period.as_deref()) {
            (None, None) => {}
            (Some(q), Some("day" | "month")) if q > 0 => {}
            (Some(_), Some("day" | "month")) => return Err(ResourceError::invalid("quota", "a whole number above 0")),
            (Some(_), _) | (None, Some(_)) => {
                return Err(ResourceError::invalid("quota_period", "`day` or `month`, given together with `quota`"));
            }
        }
        if self.description.chars().count() > 500 {
            return Err(ResourceError::invalid("description", "at most 500 characters"));
        }
        Ok(())
    }
}

pub async fn list(db: &TenantDb, caller: &TenantCaller) -> Result<Vec<Plan>, ResourceError> {
    caller.require(Role::Admin)?;
    let rows = db.statement(&caller.tenant, &format!("SELECT {COLUMNS} FROM @tenant.api_plans ORDER BY name"), &[]).await?;
    Ok(rows.iter().map(from_row).collect())
}

pub async fn get(db: &TenantDb, caller: &TenantCaller, name: &str) -> Result<Plan, ResourceError> {
    caller.require(Role::Admin)?;
    let name = parse_name(KIND, name)?;
    let rows = db.statement(&caller.tenant, &format!("SELECT {COLUMNS} FROM @tenant.api_plans WHERE name = $1"), &[&name.as_str()]).await?;
    rows.first().map(from_row).ok_or_else(|| ResourceError::NotFound { kind: KIND, id: name.to_string() })
}

/// Create or replace a plan; its consumers are held to it from their next call.
pub async fn put(db: &TenantDb, caller: &TenantCaller, name: &str, input: PlanInput) -> Result<Plan, ResourceError> {
    caller.require(Role::Admin)?;
    let name = tessera_runtime::definition::Name::try_from(name.to_string())
        .map_err(|_| ResourceError::invalid("name", "lowercase letters, digits and dashes, starting with a letter"))?;
    input.check()?;
    let mut tx = db.begin(&caller.tenant).await?;
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO @tenant.api_plans (name, description, rate_per_second, burst, quota, quota_period) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (name) DO UPDATE SET description = excluded.description, rate_per_second = excluded.rate_per_second, \
                 burst = excluded.burst, quota = excluded.quota, quota_period = excluded.quota_period, updated_at = now() \
                 RETURNING {COLUMNS}, xmax = 0"
            ),
            &[&name.as_str(), &input.description, &input.rate_per_second, &input.burst, &input.quota, &input.quota_period],
        )
        .await?;
    let plan = from_row(&row);
    let detail = json!({
        "created": row.get::<_, bool>(8),
        "rate_per_second": plan.rate_per_second,
        "burst": plan.burst,
        "quota": plan.quota,
        "quota_period": plan.quota_period,
    });
    caller.record(&mut tx, Change::new("plan.put", KIND, name.as_str()).with(detail)).await?;
    tx.commit().await?;
    Ok(plan)
}

pub async fn delete(db: &TenantDb, caller: &TenantCaller, name: &str) -> Result<(), ResourceError> {
    caller.require(Role::Admin)?;
    let name = parse_name(KIND, name)?;
    let mut tx = db.begin(&caller.tenant).await?;
    let users = tx.query_one("SELECT count(*) FROM @tenant.api_consumers WHERE plan = $1", &[&name.as_str()]).await?;
    let consumers: i64 = users.get(0);
    if consumers > 0 {
        return Err(ResourceError::InUse { kind: KIND, id: name.to_string(), by: format!("{consumers} consumer(s)") });
    }
    let n = tx.execute("DELETE FROM @tenant.api_plans WHERE name = $1", &[&name.as_str()]).await?;
    if n == 0 {
        return Err(ResourceError::NotFound { kind: KIND, id: name.to_string() });
    }
    caller.record(&mut tx, Change::new("plan.delete", KIND, name.as_str())).await?;
    tx.commit().await?;
    Ok(())
}
