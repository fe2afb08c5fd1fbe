//! Reading a definition file into JSON values, one per resource, while
//! remembering where each value and each key sits in the text.
//!
//! JSON input takes the same road: JSON is YAML 1.2, so one span-aware
//! parser gives exact positions for both syntaxes. Only what JSON can
//! represent is accepted: string keys, finite numbers, no custom tags.

use std::collections::HashMap;

use saphyr::{LoadableYamlNode, MarkedYaml, Marker, Scalar, ScanError, YamlData};
use saphyr_parser::{Event, Parser};
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
    check_nesting(source)?;
    let documents = MarkedYaml::load_from_str(source).map_err(|error| syntax_error(&error))?;
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

fn syntax_error(error: &ScanError) -> DefinitionError {
    let position = Position::from(*error.marker());
    DefinitionError {
        document: None,
        path: String::new(),
        line: position.line,
        column: position.column,
        message: format!("invalid YAML: {}", error.info()),
    }
}

/// Refuse a file nested deeper than [`MAX_DEPTH`] before a tree is built
/// from it. saphyr's parser is iterative, but the tree it loads is dropped
/// recursively (and its alias budget counts nodes recursively): 20,000
/// nested block mappings overflow a 2 MiB stack and abort the process.
/// So the events are read once, without building anything, keeping the
/// depth of the open collections and the height of every anchored node (an
/// alias repeats its anchor's whole subtree where it stands).
fn check_nesting(source: &str) -> Result<(), DefinitionError> {
    // The height (levels of collections) of each anchored node, by anchor id.
    let mut anchored: HashMap<usize, usize> = HashMap::new();
    // Per open collection: its anchor id and the highest child so far.
    let mut open: Vec<(usize, usize)> = Vec::new();
    for event in Parser::new_from_str(source) {
        let (event, span) = event.map_err(|error| match error.info() {
            // The scanner's own bound on flow nesting (255) can come first: it reads ahead.
            "recursion limit exceeded" => too_deep(*error.marker()),
            _ => syntax_error(&error),
        })?;
        let (anchor, height) = match event {
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if open.len() >= MAX_DEPTH {
                    return Err(too_deep(span.start));
                }
                open.push((anchor, 0));
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (anchor, highest) = open.pop().unwrap_or_default();
                (anchor, highest + 1)
            }
            Event::Scalar(_, _, anchor, _) => (anchor, 0),
            Event::Alias(id) => (0, anchored.get(&id).copied().unwrap_or(0)),
            _ => continue,
        };
        if open.len() + height > MAX_DEPTH {
            return Err(too_deep(span.start));
        }
        if anchor != 0 {
            anchored.insert(anchor, height);
        }
        if let Some((_, highest)) = open.last_mut() {
            *highest = (*highest).max(height);
        }
    }
    Ok(())
}

fn too_deep(marker: Marker) -> DefinitionError {
    let position = Position::from(marker);
    DefinitionError {
        document: None,
        path: String::new(),
        line: position.line,
        column: position.column,
        message: format!("the file is nested more than {MAX_DEPTH} levels deep"),
    }
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

    /// `load` on a thread with the 2 MiB stack of a web worker: an
    /// overflow would abort the test binary, not fail one test.
    fn load_on_a_small_stack(source: String) -> Result<usize, DefinitionError> {
        let thread = std::thread::Builder::new().stack_size(2 << 20).spawn(move || load(&source).map(|r| r.len()));
        thread.unwrap().join().expect("loading does not panic")
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let error = load(&format!("a: {deep}\n")).unwrap_err();
        assert!(error.message.contains("nested more than 128 levels deep"), "{error:?}");
        assert_eq!((error.line, error.column), (1, 131), "{error:?}"); // the `[` that opens the 129th level
        let just_fits = format!("{}1{}", "[".repeat(127), "]".repeat(127));
        assert!(load(&format!("a: {just_fits}\n")).is_ok());
    }

    #[test]
    fn a_hundred_thousand_nested_flow_collections_are_refused_on_a_small_stack() {
        for open in ["[", "{a: "] {
            let error = load_on_a_small_stack(open.repeat(100_000)).unwrap_err();
            assert!(error.message.contains("levels deep"), "{open}: {error:?}");
        }
    }

    #[test]
    fn deeply_nested_block_collections_are_refused_on_a_small_stack() {
        let mappings: String = (0..20_000).map(|i| format!("{}a:\n", " ".repeat(i))).collect();
        let sequences = "- ".repeat(50_000) + "x\n";
        for source in [mappings, sequences] {
            let error = load_on_a_small_stack(source).unwrap_err();
            assert!(error.message.contains("levels deep"), "{error:?}");
        }
    }

    #[test]
    fn aliases_count_the_depth_of_what_they_repeat() {
        // Each anchor is shallow in the text, but the alias chain nests 200 deep.
        let mut source = "a0: &a0 [x]\n".to_owned();
        for i in 1..200 {
            source.push_str(&format!("a{i}: &a{i} [*a{}]\n", i - 1));
        }
        let error = load_on_a_small_stack(source).unwrap_err();
        assert!(error.message.contains("levels deep"), "{error:?}");
        assert_eq!(load("base: &b {x: [1]}\nuse: [*b, *b]\n").unwrap().len(), 1);
    }
}
