//! Reading a definition file into JSON values, one per resource, while
//! remembering where each value and each key sits in the text.
//!
//! JSON input takes the same road: JSON is YAML 1.2, so one span-aware
//! parser gives exact positions for both syntaxes. Only what JSON can
//! represent is accepted: string keys, finite numbers, no custom tags.

use std::collections::HashMap;

use saphyr::{LoadableYamlNode, MarkedYaml, Marker, Scalar, YamlData};
use serde_json::{Map, Number, Value};

use super::error::{DefinitionError, Issue, Path, Segment};

/// Deeper than any sensible definition (a step nested ten levels deep is
/// about fifty), shallow enough that recursing over it cannot exhaust a
/// thread's stack.
const MAX_DEPTH: usize = 128;

/// A 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    pub line: usize,
    pub column: usize,
}

impl From<Marker> for Position {
    fn from(marker: Marker) -> Self {
        // saphyr counts lines from 1 but columns from 0.
        Self { line: marker.line(), column: marker.col() + 1 }
    }
}

/// Where the values and keys of one resource are in the source.
#[derive(Debug, Default)]
pub(crate) struct SourceMap {
    values: HashMap<Path, Position>,
    keys: HashMap<Path, Position>,
}

impl SourceMap {
    /// The position of the value at `path`, or of its nearest ancestor that
    /// has one. The root always has one.
    pub fn value(&self, path: &Path) -> Position {
        let mut path = path.clone();
        loop {
            if let Some(position) = self.values.get(&path) {
                return *position;
            }
            match path.parent() {
                Some(parent) => path = parent,
                None => return Position { line: 1, column: 1 },
            }
        }
    }

    /// The position of the key introducing the value at `path`; the value's
    /// own for list items.
    pub fn key(&self, path: &Path) -> Position {
        self.keys.get(path).copied().unwrap_or_else(|| self.value(path))
    }
}

/// One resource as read from the source, not yet checked.
#[derive(Debug)]
pub(crate) struct LoadedResource {
    pub value: Value,
    pub map: SourceMap,
    /// Values JSON cannot represent; the resource is not checked further.
    pub issues: Vec<Issue>,
}

/// Split `source` into resources: each YAML document is one, except that a
/// document holding a list (such as a JSON array) holds one per item. Empty
/// documents are skipped. Fails only on a YAML syntax error, which stops the
/// parser, so there is only ever one.
pub(crate) fn load(source: &str) -> Result<Vec<LoadedResource>, DefinitionError> {
    let documents = MarkedYaml::load_from_str(source).map_err(|error| {
        let position = Position::from(*error.marker());
        DefinitionError {
            document: None,
            path: String::new(),
            line: position.line,
            column: position.column,
            message: format!("invalid YAML: {}", error.info()),
        }
    })?;
    let mut resources = Vec::new();
    for document in &documents {
        match &document.data {
            YamlData::Sequence(items) => resources.extend(items.iter().map(convert)),
            YamlData::Value(Scalar::Null) | YamlData::BadValue => {}
            _ => resources.push(convert(document)),
        }
    }
    Ok(resources)
}

fn convert(root: &MarkedYaml<'_>) -> LoadedResource {
    let mut converter = Converter::default();
    let mut path = Path::root();
    let value = converter.value(root, &mut path, 0);
    LoadedResource { value, map: converter.map, issues: converter.issues }
}

#[derive(Default)]
struct Converter {
    map: SourceMap,
    issues: Vec<Issue>,
}

impl Converter {
    fn value(&mut self, node: &MarkedYaml<'_>, path: &mut Path, depth: usize) -> Value {
        self.map.values.insert(path.clone(), node.span.start.into());
        if depth > MAX_DEPTH {
            self.issues.push(Issue::at(path.clone(), format!("nested more than {MAX_DEPTH} levels deep")));
            return Value::Null;
        }
        match &node.data {
            YamlData::Value(scalar) => self.scalar(scalar, path),
            YamlData::Sequence(items) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(index, item)| {
                        path.push(Segment::Index(index));
                        let value = self.value(item, path, depth + 1);
                        path.pop();
                        value
                    })
                    .collect(),
            ),
            YamlData::Mapping(entries) => {
                let mut object = Map::new();
                for (key, value) in entries {
                    let Some(name) = self.key(key, path) else { continue };
                    path.push(Segment::Key(name.clone()));
                    self.map.keys.insert(path.clone(), key.span.start.into());
                    object.insert(name, self.value(value, path, depth + 1));
                    path.pop();
                }
                Value::Object(object)
            }
            YamlData::Tagged(tag, _) => self.reject(path, format!("YAML tags such as `{tag}` are not supported")),
            // Aliases are resolved by the loader; what is left is a value it
            // could not read, such as `!!int abc`.
            YamlData::Alias(_) | YamlData::BadValue | YamlData::Representation(..) => {
                self.reject(path, "this value cannot be read")
            }
        }
    }

    fn scalar(&mut self, scalar: &Scalar<'_>, path: &Path) -> Value {
        match scalar {
            Scalar::Null => Value::Null,
            Scalar::Boolean(b) => Value::Bool(*b),
            Scalar::Integer(i) => Value::from(*i),
            Scalar::FloatingPoint(f) => match Number::from_f64(f.into_inner()) {
                Some(number) => Value::Number(number),
                None => self.reject(path, "only finite numbers are supported (not .nan or .inf)"),
            },
            Scalar::String(s) => Value::String(s.to_string()),
        }
    }

    /// JSON keys are text. Integer and boolean keys are taken as their text
    /// (a label `2024: yes`); anything else is rejected.
    fn key(&mut self, key: &MarkedYaml<'_>, parent: &Path) -> Option<String> {
        match &key.data {
            YamlData::Value(Scalar::String(s)) => Some(s.to_string()),
            YamlData::Value(Scalar::Integer(i)) => Some(i.to_string()),
            YamlData::Value(Scalar::Boolean(b)) => Some(b.to_string()),
            _ => {
                self.map.values.insert(parent.key("?"), key.span.start.into());
                self.issues.push(Issue::at(parent.key("?"), "keys must be text"));
                None
            }
        }
    }

    fn reject(&mut self, path: &Path, message: impl Into<String>) -> Value {
        self.issues.push(Issue::at(path.clone(), message));
        Value::Null
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn position(map: &SourceMap, path: &Path) -> (usize, usize) {
        let p = map.value(path);
        (p.line, p.column)
    }

    #[test]
    fn reads_documents_and_records_positions() {
        let source = "a: 1\nlist:\n  - x\n  - {y: true}\n---\nb: two\n";
        let resources = load(source).unwrap();
        assert_eq!(resources.len(), 2);
        assert_eq!(resources[0].value, json!({"a": 1, "list": ["x", {"y": true}]}));
        assert_eq!(resources[1].value, json!({"b": "two"}));
        let map = &resources[0].map;
        assert_eq!(position(map, &Path::root().key("a")), (1, 4));
        assert_eq!(position(map, &Path::root().key("list").index(1).key("y")), (4, 9));
        assert_eq!(map.key(&Path::root().key("list")), Position { line: 2, column: 1 });
        assert_eq!(position(&resources[1].map, &Path::root().key("b")), (6, 4));
    }

    #[test]
    fn a_top_level_list_holds_one_resource_per_item_and_empty_documents_are_skipped() {
        let resources = load("---\n# nothing\n---\n- {a: 1}\n- {a: 2}\n---\n").unwrap();
        let values: Vec<_> = resources.iter().map(|r| r.value.clone()).collect();
        assert_eq!(values, vec![json!({"a": 1}), json!({"a": 2})]);
    }

    #[test]
    fn json_reads_with_exact_positions() {
        let source = "[\n\t{\n\t\t\"name\": \"a\\/b \\u00e9\",\n\t\t\"n\": 1.5e3\n\t}\n]\n";
        let resources = load(source).unwrap();
        assert_eq!(resources[0].value, json!({"name": "a/b é", "n": 1500.0}));
        assert_eq!(position(&resources[0].map, &Path::root().key("n")), (4, 8));
    }

    #[test]
    fn yaml_1_2_keeps_on_and_yes_as_text() {
        let resources = load("on: [timeout]\nanswer: yes\n").unwrap();
        assert_eq!(resources[0].value, json!({"on": ["timeout"], "answer": "yes"}));
    }

    #[test]
    fn syntax_errors_carry_their_position() {
        let error = load("a: 1\nb: [1, 2\n").unwrap_err();
        assert_eq!(error.document, None);
        assert!(error.message.starts_with("invalid YAML"), "{}", error.message);
        assert!(error.line >= 2, "{error:?}");
    }

    #[test]
    fn duplicate_keys_are_syntax_errors() {
        let error = load("a: 1\na: 2\n").unwrap_err();
        assert_eq!((error.line, error.message.contains("duplicated key")), (2, true), "{error:?}");
    }

    #[test]
    fn what_json_cannot_hold_is_reported_at_its_place() {
        let resources = load("a: !custom {x: 1}\nb: .nan\n? [k]\n: v\n").unwrap();
        let issues: Vec<_> = resources[0].issues.iter().map(|i| (i.path.to_string(), i.message.clone())).collect();
        assert_eq!(issues.len(), 3, "{issues:?}");
        assert!(issues[0].1.contains("tags"), "{issues:?}");
        assert!(issues[1].1.contains("finite"), "{issues:?}");
        assert!(issues[2].1.contains("keys must be text"), "{issues:?}");
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let resources = load(&format!("a: {deep}\n")).unwrap();
        assert!(resources[0].issues.iter().any(|i| i.message.contains("levels deep")));
    }
}
