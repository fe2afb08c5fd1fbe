//! The JSON Schema of the format, generated from the Rust types so that the
//! two cannot drift apart.
//!
//! The derived schemas are reshaped in two places. The reason is the same
//! each time: a validator can only report that a `oneOf` or `anyOf` failed
//! as a whole, so a wrong field under one would be reported as "not valid
//! under any of the schemas", and its path would be lost. The reshaped
//! schemas describe the same documents with keywords that keep each error
//! at its own path:
//! - `Option<T>` fields accept `T` only, not `T` or `null`: absent fields
//!   are omitted (see [`reject_null`]);
//! - a "one key per kind" enum declares all its keys as properties and
//!   requires exactly one of them (see [`one_key_per_variant`]);
//! - `Resource` picks its spec's schema by `kind` with `if`/`then`
//!   (hand-written in `resource.rs`).

use schemars::{Schema, generate::SchemaSettings, transform::RecursiveTransform};
use serde_json::{Map, Value, json};

use super::Resource;

/// Generate the published schema. Its root accepts one resource or a list
/// of them (the JSON-array form of a file); YAML editors apply it per
/// document.
pub(crate) fn generate() -> Value {
    let settings = SchemaSettings::draft2020_12().with_transform(RecursiveTransform(reject_null));
    let meta_schema = settings.meta_schema.clone();
    let mut generator = settings.into_generator();
    let resource = generator.subschema_for::<Resource>();
    let definitions = generator.take_definitions(true);
    json!({
        "$schema": meta_schema,
        "title": "Tessera resources (tessera.dev/v1)",
        "description": "One Tessera resource (an Integration or a Connection), or a list of them.",
        "if": { "type": "array" },
        "then": { "type": "array", "items": resource },
        "else": resource,
        "$defs": definitions,
    })
}

/// The schema of a single resource, for validating one resource at a time:
/// the published root with its list alternative removed.
pub(crate) fn single_resource(published: &Value) -> Value {
    let mut schema = published.clone();
    if let Some(root) = schema.as_object_mut() {
        for keyword in ["if", "then", "else"] {
            root.remove(keyword);
        }
        root.insert("$ref".into(), json!(format!("#/$defs/{}", <Resource as schemars::JsonSchema>::schema_name())));
    }
    schema
}

/// Turn `Option<T>`'s "`T` or `null`" back into `T`. The format has no
/// use for `null`: absent optional fields are left out, and serialising
/// skips `None`, so stored resources validate again.
fn reject_null(schema: &mut Schema) {
    let Some(object) = schema.as_object_mut() else { return };
    if let Some(Value::Array(types)) = object.get_mut("type") {
        types.retain(|t| t != "null");
        if let [single] = types.as_slice() {
            let single = single.clone();
            object.insert("type".into(), single);
        }
    }
    let is_null = |v: &Value| v.get("type").and_then(Value::as_str) == Some("null");
    let Some(Value::Array(any_of)) = object.get("anyOf") else { return };
    let [a, b] = any_of.as_slice() else { return };
    let inner = match (is_null(a), is_null(b)) {
        (false, true) => a.clone(),
        (true, false) => b.clone(),
        _ => return,
    };
    object.remove("anyOf");
    // The field's own keywords (its description, its default) win over the type's.
    for (key, value) in as_map(inner) {
        object.entry(key).or_insert(value);
    }
}

/// Reshape an enum written as a one-key object (`http: {…}`), whose derived
/// schema is a `oneOf` of one-property objects, into a single object schema
/// that declares every key and requires exactly one:
///
/// ```json
/// { "type": "object", "properties": { "http": …, "sql": … },
///   "additionalProperties": false,
///   "oneOf": [ { "required": ["http"] }, { "required": ["sql"] } ] }
/// ```
///
/// A mistake inside `http` is then reported at `….http.…`, and a missing
/// or doubled key by a `oneOf` whose branches name the alternatives.
///
/// Unit variants (written as a bare string, like `auth: none`) stay a
/// `oneOf` of constants, used when the value is a string.
pub(crate) fn one_key_per_variant(schema: &mut Schema) {
    let Some(Value::Array(variants)) = schema.remove("oneOf") else {
        panic!("one_key_per_variant applies to enums with data, whose schema is a oneOf");
    };
    let (constants, objects): (Vec<Value>, Vec<Value>) = variants.into_iter().partition(|v| v.get("const").is_some());
    let mut properties = Map::new();
    let mut exactly_one = Vec::new();
    for variant in objects {
        let (key, property) = only_property(variant);
        exactly_one.push(json!({ "required": [key] }));
        properties.insert(key, property);
    }
    let object = json!({
        "type": "object",
        "properties": properties,
        "additionalProperties": false,
        "oneOf": exactly_one,
    });
    if constants.is_empty() {
        schema.ensure_object().extend(as_map(object));
    } else {
        schema.insert("if".into(), json!({ "type": "string" }));
        schema.insert("then".into(), json!({ "oneOf": constants }));
        schema.insert("else".into(), object);
    }
}

/// The key and schema of a derived variant schema `{type: object,
/// properties: {key: schema}, required: [key], description}`; the variant's
/// description moves onto the property.
fn only_property(variant: Value) -> (String, Value) {
    let mut variant = as_map(variant);
    let description = variant.remove("description");
    let Some(Value::Object(properties)) = variant.remove("properties") else {
        panic!("a one-key variant schema has properties");
    };
    let mut entries = properties.into_iter();
    let (Some((key, mut property)), None) = (entries.next(), entries.next()) else {
        panic!("a one-key variant schema has exactly one property");
    };
    if let (Some(description), Some(property)) = (description, property.as_object_mut()) {
        property.entry("description").or_insert(description);
    }
    (key, property)
}

fn as_map(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("expected a schema object, got {other}"),
    }
}

/// For a struct that flattens a [`one_key_per_variant`] enum (a step and
/// its action): the flattened keys are declared among the struct's own
/// properties, so plain `additionalProperties: false` forbids unknown keys.
/// The derive would use `unevaluatedProperties`, whose errors depend on the
/// annotations of the branches that failed, and so would be less
/// predictable.
pub(crate) fn forbid_unknown_properties(schema: &mut Schema) {
    schema.remove("unevaluatedProperties");
    schema.insert("additionalProperties".into(), false.into());
}
