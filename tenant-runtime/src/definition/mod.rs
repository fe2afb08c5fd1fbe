//! The declarative definition format of Tessera resources, `tessera.dev/v1`:
//! integrations (triggers, steps and their policies) and connections
//! (credentials for external systems), written in YAML or JSON the
//! Kubernetes way (`apiVersion`, `kind`, `metadata`, `spec`).
//!
//! This module owns:
//! - the Rust types of the format, which serialise back to JSON for storage
//!   and read back to the same values;
//! - reading a file into those types, reporting *every* problem at once,
//!   each with its path (`spec.steps[2].http.url`) and line and column;
//! - the JSON Schema of the format ([`json_schema`]), published as
//!   `docs/schema/tessera-v1.schema.json` for editors.
//!
//! It never does I/O, evaluates jq expressions (it compiles them, through
//! [`crate::expression`], to report syntax errors), encrypts secrets or looks up
//! resources stored elsewhere: those belong to the server and the engine.
//! It checks only what one file can tell.
//!
//! A file goes through four stages, and each reports all it finds:
//! 1. `source`: YAML (JSON is YAML too) into one JSON value per resource,
//!    recording where each value and key is;
//! 2. `validate`: the JSON Schema, for shapes, types, names, durations,
//!    cron expressions and time zones;
//! 3. deserialisation into the types, which seldom fails on a schema-valid
//!    value (a number too large for its type does); a failure is still
//!    reported at its path;
//! 4. `semantic`: rules across values, such as unique step names, and
//!    `expressions`: every jq expression and template compiles.
//!
//! A resource that fails a stage skips the stages after it. The other
//! resources go on, so one report covers the whole file.

mod api;
mod connection;
mod error;
mod expressions;
mod integration;
mod resource;
mod schema;
mod semantic;
mod source;
mod validate;
mod values;

pub use api::*;
pub use connection::*;
pub use error::{DefinitionError, DefinitionErrors};
pub use integration::*;
pub use resource::*;
pub use values::*;

use error::{Anchor, Issue, Path, Segment};
use source::{LoadedResource, SourceMap};

/// Read every resource in `source`: YAML documents separated by `---`, or
/// a list of resources (such as a JSON array). Either all resources are
/// valid and returned in file order, or every problem is reported.
pub fn parse_documents(source: &str) -> Result<Vec<Resource>, DefinitionErrors> {
    parse(source, None)
}

/// Connections that exist outside a file, by name: those a tenant has stored.
pub type StoredConnections = std::collections::HashMap<Name, ConnectionKind>;

/// [`parse_documents`] for a file applied where `stored` are the only
/// connections besides the file's own: a reference to any other connection
/// is an error, at its path, and so is one to a stored connection of the
/// wrong kind.
pub fn parse_documents_against(source: &str, stored: &StoredConnections) -> Result<Vec<Resource>, DefinitionErrors> {
    parse(source, Some(stored))
}

fn parse(source: &str, stored: Option<&StoredConnections>) -> Result<Vec<Resource>, DefinitionErrors> {
    let loaded = source::load(source).map_err(|error| DefinitionErrors::new(vec![error]))?;
    if loaded.is_empty() {
        return Err(DefinitionErrors::new(vec![DefinitionError {
            document: None,
            path: String::new(),
            line: 1,
            column: 1,
            message: "no resource found: a file holds one or more documents with apiVersion, kind, metadata and spec"
                .to_owned(),
        }]));
    }
    let mut errors = Vec::new();
    let mut resources = Vec::new();
    let mut origins = Vec::new();
    for (index, document) in loaded.into_iter().enumerate() {
        let number = index + 1;
        match read_resource(&document) {
            Ok(resource) => {
                resources.push(resource);
                origins.push((number, document.map));
            }
            Err(issues) => errors.extend(issues.into_iter().map(|issue| place(issue, number, &document.map))),
        }
    }
    for (index, issue) in semantic::check(&resources, stored) {
        let (number, map) = &origins[index];
        errors.push(place(issue, *number, map));
    }
    if errors.is_empty() { Ok(resources) } else { Err(DefinitionErrors::new(errors)) }
}

/// The JSON Schema of the format (draft 2020-12): one resource, or a list
/// of them.
pub fn json_schema() -> serde_json::Value {
    validate::SCHEMA.clone()
}

/// Stages 2 and 3 for one resource that was read without issues.
fn read_resource(document: &LoadedResource) -> Result<Resource, Vec<Issue>> {
    if !document.issues.is_empty() {
        return Err(document.issues.clone());
    }
    let issues = validate::validate(&document.value);
    if !issues.is_empty() {
        return Err(issues);
    }
    deserialize(&document.value).map_err(|error| {
        let path = error.path().iter().filter_map(serde_segment).collect();
        vec![Issue::at(path, error.into_inner().to_string())]
    })
}

/// Deserialise a schema-valid resource, keeping the path of any failure.
/// Going through `Resource` itself would lose it: serde buffers an
/// internally tagged enum's content before choosing the variant, and the
/// buffer does not track paths. So `kind` is dispatched on here.
fn deserialize(value: &serde_json::Value) -> Result<Resource, serde_path_to_error::Error<serde_json::Error>> {
    let mut body = value.clone();
    let kind = body.as_object_mut().and_then(|object| object.remove("kind"));
    match kind.as_ref().and_then(serde_json::Value::as_str) {
        Some(k) if k == ResourceKind::Connection.as_str() => serde_path_to_error::deserialize(body).map(Resource::Connection),
        Some(k) if k == ResourceKind::Api.as_str() => serde_path_to_error::deserialize(body).map(Resource::Api),
        _ => serde_path_to_error::deserialize(body).map(Resource::Integration),
    }
}

fn serde_segment(segment: &serde_path_to_error::Segment) -> Option<Segment> {
    use serde_path_to_error::Segment as Serde;
    match segment {
        Serde::Seq { index } => Some(Segment::Index(*index)),
        Serde::Map { key } => Some(Segment::Key(key.clone())),
        // A one-key enum's variant is the key it is written under.
        Serde::Enum { variant } => Some(Segment::Key(variant.clone())),
        Serde::Unknown => None,
    }
}

/// Give an issue its document number and its position in the source.
fn place(issue: Issue, document: usize, map: &SourceMap) -> DefinitionError {
    let position = match issue.anchor {
        Anchor::Value => map.value(&issue.path),
        Anchor::Key => map.key(&issue.path),
        Anchor::Parent => map.value(&issue.path.parent().unwrap_or_else(Path::root)),
    };
    DefinitionError {
        document: Some(document),
        path: issue.path.to_string(),
        line: position.line,
        column: position.column,
        message: issue.message,
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod hostile_tests;
