//! Reading a tenant's audit trail: admins and owners only, as with API
//! keys (the trail names every user and key and what they did).

use super::ResourceError;
use crate::{
    audit::{AuditError, AuditFilter, AuditPage, Record, Scope, Verification},
    auth::{Role, TenantCaller},
    tenancy::TenantDb,
};

impl From<AuditError> for ResourceError {
    fn from(e: AuditError) -> Self {
        match e {
            AuditError::Invalid { field, message } => ResourceError::Invalid { field, message },
            AuditError::Db(db) => ResourceError::Db(db),
        }
    }
}

pub async fn list(db: &TenantDb, caller: &TenantCaller, filter: &AuditFilter) -> Result<AuditPage, ResourceError> {
    caller.require(Role::Admin)?;
    Ok(caller.trail().list(Scope::Tenant(db, &caller.tenant), filter).await?)
}

pub async fn export(db: &TenantDb, caller: &TenantCaller, filter: AuditFilter) -> Result<Vec<Record>, ResourceError> {
    caller.require(Role::Admin)?;
    Ok(caller.trail().export(Scope::Tenant(db, &caller.tenant), filter).await?)
}

pub async fn verify(db: &TenantDb, caller: &TenantCaller) -> Result<Verification, ResourceError> {
    caller.require(Role::Admin)?;
    Ok(caller.trail().verify(Scope::Tenant(db, &caller.tenant)).await?)
}
