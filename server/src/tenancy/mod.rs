//! Which tenant a request is for, and the tenant-scoped database handle.
//!
//! Owns: host classification, the slug → tenant directory (cached,
//! invalidated through PostgreSQL NOTIFY), `TenantDb`/`TenantTx`, the only
//! way to run SQL against tenant tables, and `batch`, the batcher
//! that commits many callers' statements together over them, and `work`,
//! which tenants have work for a worker. Must never
//! build SQL from unvalidated input.

pub mod batch;
mod db;
mod directory;
mod host;
mod kept;
mod lanes;
pub mod work;

pub use db::{Flush, LaneTx, TenantDb, TenantTx, TENANT};
pub use lanes::{LaneClient, Lanes};
pub use directory::{TenantDirectory, TENANT_CHANGES_CHANNEL};
pub use host::{classify, HostError, HostTarget};
pub use tessera_hosts::{SchemaName, SlugError, TenantSlug};

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TenantStatus {
    Active,
    Suspended,
}

impl TenantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TenantStatus::Active => "active",
            TenantStatus::Suspended => "suspended",
        }
    }

    fn parse(raw: &str) -> Option<Self> {
        match raw {
            "active" => Some(Self::Active),
            "suspended" => Some(Self::Suspended),
            _ => None,
        }
    }
}

/// A tenant as recorded in `platform.tenants`.
#[derive(Debug, Clone, Serialize)]
pub struct Tenant {
    pub id: Uuid,
    #[serde(serialize_with = "serialize_display")]
    pub slug: TenantSlug,
    #[serde(skip)]
    pub schema: SchemaName,
    pub name: String,
    pub status: TenantStatus,
    pub schema_version: i32,
    pub created_at: DateTime<Utc>,
    /// The cluster it is placed on (`platform.clusters`).
    pub cluster: String,
    /// Paused until then by a move between clusters: its requests get 503
    /// with Retry-After, its worker hands over (`provisioning::moves`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused_until: Option<DateTime<Utc>>,
}

fn serialize_display<S: serde::Serializer, T: std::fmt::Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// Columns of `platform.tenants`, in the order `Tenant::from_row` reads them.
pub const TENANT_COLUMNS: &str = "id, slug, schema_name, name, status, schema_version, created_at, cluster_id, paused_until";

impl Tenant {
    /// Build from a row selected with [`TENANT_COLUMNS`]. A row that does not
    /// hold a valid slug or schema is refused rather than trusted.
    pub fn from_row(row: &tokio_postgres::Row) -> Option<Self> {
        Some(Self {
            id: row.get(0),
            slug: TenantSlug::parse(row.get::<_, &str>(1)).ok()?,
            schema: SchemaName::from_stored(row.get(2))?,
            name: row.get(3),
            status: TenantStatus::parse(row.get(4))?,
            schema_version: row.get(5),
            created_at: row.get(6),
            cluster: row.get(7),
            // A time no reader can hold (PostgreSQL's `infinity`) pauses for good.
            paused_until: row.try_get(8).unwrap_or(Some(DateTime::<Utc>::MAX_UTC)),
        })
    }

    /// Whether a move pauses it now.
    pub fn paused(&self) -> bool {
        self.paused_until.is_some_and(|until| until > Utc::now())
    }
}
