//! The Kubernetes-style envelope every resource shares: `apiVersion`, `kind`,
//! `metadata` and a kind-specific `spec`.

use std::{borrow::Cow, collections::BTreeMap, fmt};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use super::{ApiSpec, ConnectionSpec, IntegrationSpec, Name};

/// One resource of a definition file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum Resource {
    Integration(Integration),
    Connection(Connection),
    Api(Api),
}

impl Resource {
    pub fn kind(&self) -> ResourceKind {
        match self {
            Self::Integration(_) => ResourceKind::Integration,
            Self::Connection(_) => ResourceKind::Connection,
            Self::Api(_) => ResourceKind::Api,
        }
    }

    pub fn name(&self) -> &Name {
        &self.metadata().name
    }

    pub fn metadata(&self) -> &Metadata {
        match self {
            Self::Integration(integration) => &integration.metadata,
            Self::Connection(connection) => &connection.metadata,
            Self::Api(api) => &api.metadata,
        }
    }
}

/// What a resource is; the `kind` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceKind {
    Integration,
    Connection,
    Api,
}

impl ResourceKind {
    pub const ALL: [Self; 3] = [Self::Integration, Self::Connection, Self::Api];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Integration => "Integration",
            Self::Connection => "Connection",
            Self::Api => "Api",
        }
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The version of the format. A future `v2` becomes a second variant, so a
/// stored v1 resource keeps parsing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApiVersion {
    #[default]
    #[serde(rename = "tessera.dev/v1")]
    V1,
}

impl ApiVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "tessera.dev/v1",
        }
    }
}

/// Identity and description shared by every kind of resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Unique among the tenant's resources of the same kind.
    pub name: Name,
    /// What the resource is for, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Free-form key/value pairs, for filtering and grouping.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A workflow: what starts it (triggers) and what it does (steps).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Integration {
    pub api_version: ApiVersion,
    pub metadata: Metadata,
    pub spec: IntegrationSpec,
}

/// Credentials for an external system, referred to by name from
/// integrations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Connection {
    pub api_version: ApiVersion,
    pub metadata: Metadata,
    pub spec: ConnectionSpec,
}

/// Integrations published as a managed API (`api.rs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Api {
    pub api_version: ApiVersion,
    pub metadata: Metadata,
    pub spec: ApiSpec,
}

/// Written by hand because the derived form of an internally tagged enum is
/// a `oneOf` of the kinds, and a validator can only say that a `oneOf`
/// failed as a whole: a wrong field deep in an integration's spec would be
/// reported as "not valid under any of the schemas". Here `kind` selects the
/// spec's schema through `if`/`then`, so each error keeps its own path.
impl JsonSchema for Resource {
    fn schema_name() -> Cow<'static, str> {
        "Resource".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let kinds: Vec<&str> = ResourceKind::ALL.iter().map(|kind| kind.as_str()).collect();
        let spec_for = |kind: ResourceKind, spec: Schema| {
            json_schema!({
                "if": { "properties": { "kind": { "const": kind.as_str() } }, "required": ["kind"] },
                "then": { "properties": { "spec": spec } },
            })
        };
        json_schema!({
            "type": "object",
            "description": "A Tessera resource: an integration, a connection or an API.",
            "properties": {
                "apiVersion": { "const": ApiVersion::V1.as_str() },
                "kind": { "enum": kinds },
                "metadata": generator.subschema_for::<Metadata>(),
                "spec": { "type": "object" },
            },
            "required": ["apiVersion", "kind", "metadata", "spec"],
            "additionalProperties": false,
            "allOf": [
                spec_for(ResourceKind::Integration, generator.subschema_for::<IntegrationSpec>()),
                spec_for(ResourceKind::Connection, generator.subschema_for::<ConnectionSpec>()),
                spec_for(ResourceKind::Api, generator.subschema_for::<ApiSpec>()),
            ],
        })
    }
}
