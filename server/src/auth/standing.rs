//! A tenant user's current standing (role, enabled), cached per node.
//!
//! A token proves who signed in; what they may do now is read from here on
//! every request, so demoting, disabling or deleting a user takes effect on
//! their existing tokens at once. Changes are announced with NOTIFY on
//! [`USER_CHANGES_CHANNEL`] (payload `<tenant id>:<user id>`) in the
//! changing transaction; the TTL only bounds staleness if the listener is down.

use std::time::Duration;

use moka::sync::Cache;
use uuid::Uuid;

use super::Role;
use crate::{
    database::DbError,
    tenancy::{Tenant, TenantDb, TenantTx},
};

pub const USER_CHANGES_CHANNEL: &str = "tessera_user_changes";

const TTL: Duration = Duration::from_secs(30);
const CAPACITY: u64 = 200_000;

/// `None` when the user no longer exists or is disabled.
type Standing = Option<Role>;

#[derive(Clone)]
pub struct AccountStanding {
    cache: Cache<(Uuid, Uuid), Standing>,
}

impl Default for AccountStanding {
    fn default() -> Self {
        Self { cache: Cache::builder().max_capacity(CAPACITY).time_to_live(TTL).build() }
    }
}

impl AccountStanding {
    /// The role `user` holds in `tenant` now, or `None` if they may not act.
    pub async fn current_role(&self, db: &TenantDb, tenant: &Tenant, user: Uuid) -> Result<Standing, DbError> {
        let key = (tenant.id, user);
        if let Some(hit) = self.cache.get(&key) {
            return Ok(hit);
        }
        let rows = db.statement(tenant, "SELECT role FROM @tenant.users WHERE id = $1 AND NOT disabled", &[&user]).await?;
        let standing = rows.first().map(|r| r.try_get::<_, Role>(0)).transpose()?;
        self.cache.insert(key, standing);
        Ok(standing)
    }

    pub fn invalidate(&self, tenant: Uuid, user: Uuid) {
        self.cache.invalidate(&(tenant, user));
    }
}

/// Announce, inside the changing transaction, that `user`'s standing changed.
pub async fn announce_change(tx: &mut TenantTx, tenant: Uuid, user: Uuid) -> Result<(), DbError> {
    tx.execute("SELECT pg_notify($1, $2)", &[&USER_CHANGES_CHANNEL, &format!("{tenant}:{user}")]).await?;
    Ok(())
}

impl crate::notifications::Subscriber for AccountStanding {
    fn channel(&self) -> &'static str {
        USER_CHANGES_CHANNEL
    }

    fn notified(&self, payload: &str) {
        let parsed = payload.split_once(':').and_then(|(t, u)| Some((t.parse().ok()?, u.parse().ok()?)));
        match parsed {
            Some((tenant, user)) => self.invalidate(tenant, user),
            None => self.cache.invalidate_all(),
        }
    }

    fn resync(&self) {
        self.cache.invalidate_all();
    }
}
