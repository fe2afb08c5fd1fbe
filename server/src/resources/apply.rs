//! Applying a definition file (`POST /api/apply`): every resource in it is
//! validated first, against the tenant's stored connections too, and then
//! all are stored in one transaction, or none.

use serde::Serialize;
use tessera_runtime::definition::{parse_documents_against, Resource};
use serde_json::json;

use super::{apis, changes::DefinitionChanges, connections, integrations, ResourceError};
use crate::{
    audit::Change,
    auth::{Role, TenantCaller},
    sealing::KeyRing,
    tenancy::TenantDb,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Created,
    Updated,
    /// Identical to what was stored: no new version.
    Unchanged,
}

/// What applying one resource did.
#[derive(Debug, Serialize)]
pub struct Applied {
    pub kind: &'static str,
    pub name: String,
    pub version: i32,
    pub result: Outcome,
}

impl Applied {
    /// What the audit trail says of it: nothing when nothing changed.
    fn audited(&self) -> Option<Change> {
        let kind = match self.kind {
            "Integration" => "integration",
            "Api" => "api",
            _ => "connection",
        };
        let (action, before) = match self.result {
            Outcome::Created => ("create", None),
            Outcome::Updated => ("update", (kind != "connection").then(|| self.version - 1)),
            Outcome::Unchanged => return None,
        };
        let detail = json!({"version": self.version, "previous_version": before});
        Some(Change::new(format!("{kind}.{action}"), kind, &self.name).with(detail))
    }
}

/// Store the changes, or only say what they would be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Store,
    /// Everything checked (the database's constraints too) and rolled back:
    /// the answer is what storing would have done, and nothing is stored.
    DryRun,
}

/// Validate and store every resource in `source` (YAML or JSON); once
/// committed, `changes` hears of it. [`Mode::DryRun`] does all of it in a
/// transaction that is rolled back.
pub async fn apply(
    db: &TenantDb,
    keys: &KeyRing,
    changes: &DefinitionChanges,
    caller: &TenantCaller,
    source: &str,
    mode: Mode,
) -> Result<Vec<Applied>, ResourceError> {
    caller.require(Role::Editor)?;
    let mut tx = db.begin(&caller.tenant).await?;
    // Read inside the transaction, with the rows locked against deletion, so
    // the connections the file is checked against still exist at commit.
    let stored = connections::stored_kinds(&mut tx).await?;
    let resources = parse_documents_against(source, &stored).map_err(ResourceError::InvalidDefinition)?;
    let mut applied = Vec::with_capacity(resources.len());
    for resource in &resources {
        applied.push(match resource {
            Resource::Connection(connection) => connections::apply(&mut tx, keys, caller, connection).await?,
            Resource::Integration(integration) => integrations::apply(&mut tx, caller, integration).await?,
            Resource::Api(api) => apis::apply(&mut tx, api).await?,
        });
    }
    if mode == Mode::DryRun {
        tx.rollback().await?;
        return Ok(applied);
    }
    for change in applied.iter().filter_map(Applied::audited) {
        caller.record(&mut tx, change).await?;
    }
    changes.commit_integrations(tx, caller.tenant.id).await?;
    tracing::info!(resources = applied.len(), "definitions applied");
    Ok(applied)
}
