//! Checking one resource against the schema, and saying what is wrong in
//! words meant for the person who wrote the file, not for a JSON Schema
//! expert: "unknown field `timout`; did you mean `timeout`?" rather than
//! "Additional properties are not allowed".

use std::sync::LazyLock;

use jsonschema::{Draft, ValidationError, Validator, error::TypeKind, error::ValidationErrorKind as Kind};
use serde_json::Value;

use super::{
    error::{Issue, Path},
    schema,
    values::{FORMATS, PATTERNS},
};

/// The published schema and the validator compiled from it. Both derive
/// from the Rust types alone and never change while the process runs, so
/// they are built once, on first use, rather than on every parse.
pub(crate) static SCHEMA: LazyLock<Value> = LazyLock::new(schema::generate);
static VALIDATOR: LazyLock<Validator> =
    LazyLock::new(|| compile(&SCHEMA).expect("the generated schema compiles (see its unit test)"));

/// Compile the single-resource form of `published`, with the custom
/// formats enforced.
pub(crate) fn compile(published: &Value) -> Result<Validator, ValidationError<'static>> {
    let mut options = jsonschema::options().with_draft(Draft::Draft202012).should_validate_formats(true);
    for format in FORMATS {
        let check = format.check;
        options = options.with_format(format.name, move |text: &str| check(text).is_ok());
    }
    options.build(&schema::single_resource(published))
}

/// Every schema violation in `resource`.
pub(crate) fn validate(resource: &Value) -> Vec<Issue> {
    VALIDATOR.iter_errors(resource).flat_map(|error| describe(&error, resource)).collect()
}

/// The issues one validation error stands for: usually one, one per key
/// for unknown keys, none for a `oneOf` already covered by a type error.
fn describe(error: &ValidationError<'_>, resource: &Value) -> Vec<Issue> {
    let path = path_from_pointer(error.instance_path().as_str(), resource);
    let instance: &Value = error.instance();
    let schema_node = SCHEMA.pointer(error.schema_path().as_str());
    let message = match error.kind() {
        Kind::AdditionalProperties { unexpected } | Kind::UnevaluatedProperties { unexpected } => {
            let known = sibling_properties(error.schema_path().as_str());
            return unexpected.iter().map(|key| unknown_field(&path, key, &known)).collect();
        }
        Kind::Required { property } => return vec![missing_field(&path, property, instance, schema_node)],
        Kind::OneOfNotValid { .. } | Kind::OneOfMultipleValid { .. } => {
            return one_of(&path, instance, schema_node).into_iter().collect();
        }
        Kind::Type { kind } => format!("expected {}, found {}", expected_types(kind), describe_value(instance)),
        Kind::Enum { options } => {
            format!("expected one of {}, found {}", list_values(options), describe_value(instance))
        }
        Kind::Constant { expected_value } => {
            format!("expected {}, found {}", quote(expected_value), describe_value(instance))
        }
        Kind::Pattern { pattern } => pattern_message(pattern, instance),
        Kind::Format { format } => format_message(format, instance),
        Kind::Minimum { limit } => format!("must be at least {limit}, found {instance}"),
        Kind::Maximum { limit } => format!("must be at most {limit}, found {instance}"),
        Kind::MinLength { limit: 1 } => "must not be empty".to_owned(),
        Kind::MinLength { limit } => format!("must be at least {limit} characters long"),
        Kind::MaxLength { limit } => format!("must be at most {limit} characters long"),
        Kind::MinItems { limit } => format!("needs at least {limit} {}", plural(*limit, "item")),
        Kind::MaxItems { limit } => format!("takes at most {limit} {}", plural(*limit, "item")),
        Kind::FalseSchema => "is not allowed here".to_owned(),
        _ => error.to_string(),
    };
    vec![Issue::at(path, message)]
}

/// A JSON pointer into `resource` as a [`Path`]. The pointer alone cannot
/// tell the list index `2` from the object key `"2"` (a label), so the
/// walk follows the value itself.
fn path_from_pointer(pointer: &str, resource: &Value) -> Path {
    let mut path = Path::root();
    let mut current = Some(resource);
    for raw in pointer.split('/').skip(1) {
        let token = raw.replace("~1", "/").replace("~0", "~");
        match (current, token.parse::<usize>()) {
            (Some(Value::Array(items)), Ok(index)) => {
                current = items.get(index);
                path = path.index(index);
            }
            _ => {
                current = current.and_then(|value| value.get(&token));
                path = path.key(token);
            }
        }
    }
    path
}

fn unknown_field(object: &Path, key: &str, known: &[String]) -> Issue {
    let message = match closest(key, known) {
        Some(suggestion) => format!("unknown field `{key}`; did you mean `{suggestion}`?"),
        None if known.is_empty() => format!("unknown field `{key}`: this object takes no fields"),
        None => format!("unknown field `{key}`; expected one of {}", list(known)),
    };
    Issue::at_key(object.key(key), message)
}

/// The properties declared next to the `additionalProperties` keyword at
/// `schema_path`.
fn sibling_properties(schema_path: &str) -> Vec<String> {
    let parent = schema_path.rsplit_once('/').map_or("", |(parent, _)| parent);
    let properties = SCHEMA.pointer(&format!("{parent}/properties")).and_then(Value::as_object);
    properties.map(|p| p.keys().cloned().collect()).unwrap_or_default()
}

/// The known key closest to a misspelt one, if it is close enough to be a
/// typo (at most a third of it differs).
fn closest<'a>(key: &str, known: &'a [String]) -> Option<&'a str> {
    let threshold = (key.chars().count() / 3).max(1);
    known
        .iter()
        .map(|candidate| (edit_distance(key, candidate), candidate))
        .filter(|(distance, _)| *distance <= threshold)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate.as_str())
}

/// Levenshtein distance, over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// A missing field is reported at the path it should have had. When it is
/// missing because another field needs it (`dependentRequired`), the
/// message names that field.
fn missing_field(object: &Path, property: &Value, instance: &Value, schema_node: Option<&Value>) -> Issue {
    let property = property.as_str().unwrap_or_default();
    let because = schema_node.and_then(Value::as_object).and_then(|dependencies| {
        dependencies.iter().find_map(|(trigger, needs)| {
            let needs_it = needs.as_array().is_some_and(|n| n.iter().any(|p| p == property));
            (needs_it && instance.get(trigger).is_some()).then_some(trigger)
        })
    });
    let message = match because {
        Some(trigger) => format!("`{property}` is required when `{trigger}` is given"),
        None => format!("missing required field `{property}`"),
    };
    Issue::missing(object.key(property), message)
}

/// Explain a failed `oneOf` from its branches, which are either constants
/// (a unit enum) or `{required: [key]}` (exactly one key of an enum written
/// as a one-key object, see [`schema::one_key_per_variant`]).
fn one_of(path: &Path, instance: &Value, branches: Option<&Value>) -> Option<Issue> {
    let branches = branches?.as_array()?;
    let constants: Option<Vec<&Value>> = branches.iter().map(|b| b.get("const")).collect();
    if let Some(constants) = constants {
        let options = Value::Array(constants.into_iter().cloned().collect());
        let message = format!("expected one of {}, found {}", list_values(&options), describe_value(instance));
        return Some(Issue::at(path.clone(), message));
    }
    let keys: Option<Vec<&str>> = branches.iter().map(|b| b.pointer("/required/0")?.as_str()).collect();
    let keys = keys?;
    // `required` holds for anything but an object; the type error says it.
    let object = instance.as_object()?;
    let present: Vec<&str> = keys.iter().copied().filter(|key| object.contains_key(*key)).collect();
    let choices = list(&keys);
    Some(match present.as_slice() {
        [] => Issue::at(path.clone(), format!("needs exactly one of {choices}")),
        [first, second, ..] => Issue::at_key(
            path.key(*second),
            format!("`{first}` and `{second}` cannot be given together: use exactly one of {choices}"),
        ),
        [_] => return None,
    })
}

fn pattern_message(pattern: &str, instance: &Value) -> String {
    match PATTERNS.iter().find(|p| p.regex == pattern) {
        Some(known) => format!("{} is invalid: {}", shorten(instance), known.explanation),
        None => format!("{} does not match the pattern {pattern}", shorten(instance)),
    }
}

/// Our formats know why they reject a value; ask again for the reason.
fn format_message(format: &str, instance: &Value) -> String {
    let reason =
        FORMATS.iter().find(|f| f.name == format).zip(instance.as_str()).and_then(|(f, text)| (f.check)(text).err());
    reason.unwrap_or_else(|| format!("{} is not a valid {format}", shorten(instance)))
}

fn expected_types(kind: &TypeKind) -> String {
    let names: Vec<&str> = match kind {
        TypeKind::Single(single) => vec![type_name(single.as_str())],
        TypeKind::Multiple(set) => set.iter().map(|t| type_name(t.as_str())).collect(),
    };
    names.join(" or ")
}

/// JSON Schema's type names, in the words of someone writing YAML.
fn type_name(json_type: &str) -> &'static str {
    match json_type {
        "string" => "text",
        "integer" => "a whole number",
        "number" => "a number",
        "boolean" => "true or false",
        "object" => "a mapping of fields",
        "array" => "a list",
        _ => "nothing",
    }
}

/// A value as the object of "found …": its kind, and itself if short, so
/// that `"yes"` (text) and `true` can be told apart.
fn describe_value(value: &Value) -> String {
    match value {
        Value::Null => "an empty value".to_owned(),
        Value::Bool(b) => format!("`{b}`"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(_) => format!("the text {}", shorten(value)),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "a mapping".to_owned(),
    }
}

/// A value as JSON, cut short: messages quote what was written, not pages
/// of it.
fn shorten(value: &Value) -> String {
    const MAX: usize = 60;
    let text = value.to_string();
    if text.chars().count() <= MAX { text } else { format!("{}…", text.chars().take(MAX).collect::<String>()) }
}

fn quote(value: &Value) -> String {
    match value {
        Value::String(s) => format!("`{s}`"),
        other => format!("`{other}`"),
    }
}

fn list_values(options: &Value) -> String {
    let quoted: Vec<String> = options.as_array().into_iter().flatten().map(quote).collect();
    quoted.join(", ")
}

fn list(keys: &[impl AsRef<str>]) -> String {
    let quoted: Vec<String> = keys.iter().map(|k| format!("`{}`", k.as_ref())).collect();
    quoted.join(", ")
}

fn plural(count: u64, word: &str) -> String {
    if count == 1 { word.to_owned() } else { format!("{word}s") }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn pointers_become_paths_following_the_value() {
        let value = json!({"metadata": {"labels": {"2024": "x"}}, "spec": {"steps": [{}, {"a/b": 1}]}});
        assert_eq!(path_from_pointer("/metadata/labels/2024", &value).to_string(), r#"metadata.labels["2024"]"#);
        assert_eq!(path_from_pointer("/spec/steps/1/a~1b", &value).to_string(), r#"spec.steps[1]["a/b"]"#);
        assert_eq!(path_from_pointer("", &value), Path::root());
    }

    #[test]
    fn typos_get_a_suggestion() {
        let known: Vec<String> = ["timeout", "retry", "name", "on_error"].map(String::from).to_vec();
        assert_eq!(closest("timout", &known), Some("timeout"));
        assert_eq!(closest("onerror", &known), Some("on_error"));
        assert_eq!(closest("colour", &known), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
