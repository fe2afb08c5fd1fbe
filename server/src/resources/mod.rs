//! A tenant's own resources behind its API: users, API keys, variables, and
//! the integrations and connections applied from definition files.
//!
//! Every function takes the caller (which carries the tenant) and runs in a
//! `TenantTx`, so it can only ever see that tenant's rows. Role checks live
//! here, next to the rule they protect, not in the handlers.

pub mod api_keys;
pub mod api_document;
pub mod apis;
pub mod audit;
pub mod consumers;
pub mod apply;
pub mod changes;
pub mod connection_test;
pub mod connections;
pub mod execution_controls;
pub mod cache;
pub mod executions;
pub mod integrations;
pub mod plans;
pub mod stats;
pub mod users;
pub mod variables;
pub mod webhook_replay;
pub mod webhooks;

use tessera_runtime::definition::DefinitionErrors;

use crate::{auth::AuthError, database::DbError, sealing::SealingError};

#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    /// A caller's `Idempotency-Key` that cannot be one.
    #[error("Idempotency-Key: {0}")]
    InvalidIdempotencyKey(String),
    #[error("no {kind} '{id}'")]
    NotFound { kind: &'static str, id: String },
    #[error("{kind} '{id}' already exists")]
    Conflict { kind: &'static str, id: String },
    /// Still used by other resources, which would be left without it.
    #[error("{kind} '{id}' is still used by {by}")]
    InUse { kind: &'static str, id: String, by: String },
    #[error("a tenant keeps at least one active owner")]
    LastOwner,
    /// Every problem of a definition file; nothing of it was stored.
    #[error("the definition has {} problem(s); nothing was applied", .0.len())]
    InvalidDefinition(DefinitionErrors),
    #[error(transparent)]
    Forbidden(AuthError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Auth(AuthError),
    #[error(transparent)]
    Sealing(#[from] SealingError),
    /// The egress gate refused what a connection test would connect to.
    #[error(transparent)]
    EgressDenied(tessera_runtime::egress::Denied),
    /// The node is stopping and accepts no new execution.
    #[error("this node is stopping; send the request again")]
    Stopping,
    /// The tenant starts executions faster than its intake limit.
    #[error("{message}")]
    RateLimited { message: String, retry_after_secs: u64 },
    /// Over one of the tenant's limits (`stored_executions`).
    #[error(transparent)]
    Limit(tessera_runtime::limits::LimitExceeded),
}

impl From<AuthError> for ResourceError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Forbidden { .. } => ResourceError::Forbidden(e),
            other => ResourceError::Auth(other),
        }
    }
}

impl From<crate::starts::StartError> for ResourceError {
    fn from(e: crate::starts::StartError) -> Self {
        use crate::starts::StartError;
        match e {
            StartError::Db(e) => e.into(),
            StartError::Stopped(_) => ResourceError::Stopping,
            StartError::Limit(e) => ResourceError::Limit(e),
            StartError::NoIntegration(id) => ResourceError::NotFound { kind: "integration", id },
            e @ StartError::RateLimited { retry_after_secs, .. } => ResourceError::RateLimited { message: e.to_string(), retry_after_secs },
        }
    }
}

impl ResourceError {
    fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        ResourceError::Invalid { field, message: message.into() }
    }
}

/// Parse a path id; a malformed one cannot name any row, so it is a 404.
pub(crate) fn parse_id(kind: &'static str, raw: &str) -> Result<uuid::Uuid, ResourceError> {
    raw.parse().map_err(|_| ResourceError::NotFound { kind, id: raw.to_string() })
}

/// Parse a path name of an integration or connection; one outside the
/// alphabet of names cannot name any row, so it is a 404.
pub(crate) fn parse_name(kind: &'static str, raw: &str) -> Result<tessera_runtime::definition::Name, ResourceError> {
    tessera_runtime::definition::Name::try_from(raw.to_string())
        .map_err(|_| ResourceError::NotFound { kind, id: raw.to_string() })
}
