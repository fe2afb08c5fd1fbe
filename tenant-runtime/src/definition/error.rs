//! What a caller sees when a definition file is wrong: every problem, each
//! with the path of the value at fault and where it sits in the text.

use std::fmt;

use serde::Serialize;

/// One problem in a definition file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct DefinitionError {
    /// The resource concerned, counted from 1 in file order (a YAML document
    /// or an element of a top-level list). `None` when the file as a whole is
    /// unreadable, e.g. a YAML syntax error.
    pub document: Option<usize>,
    /// Where in the resource, as in `spec.steps[2].http.url`; empty for the
    /// resource (or file) itself.
    pub path: String,
    /// 1-based line of the value at fault (or of its key, for an unknown
    /// field; of the enclosing object, for a missing one).
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    pub message: String,
}

impl fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let position = format!("line {}, column {}", self.line, self.column);
        match (self.document, self.path.is_empty()) {
            (Some(document), false) => write!(f, "document {document}, {} ({position}): {}", self.path, self.message),
            (Some(document), true) => write!(f, "document {document} ({position}): {}", self.message),
            (None, _) => write!(f, "{position}: {}", self.message),
        }
    }
}

/// Every problem found in a definition file, in the order they appear in it.
/// Never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct DefinitionErrors(Vec<DefinitionError>);

impl DefinitionErrors {
    /// Sorts by document and position, and drops repeats (two schema
    /// keywords can reject the same value for the same reason).
    pub(crate) fn new(mut errors: Vec<DefinitionError>) -> Self {
        debug_assert!(!errors.is_empty(), "DefinitionErrors needs at least one error");
        errors.sort_by(|a, b| (a.document, a.line, a.column, &a.path).cmp(&(b.document, b.line, b.column, &b.path)));
        errors.dedup();
        Self(errors)
    }

    pub fn errors(&self) -> &[DefinitionError] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<DefinitionError> {
        self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for DefinitionErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl<'a> IntoIterator for &'a DefinitionErrors {
    type Item = &'a DefinitionError;
    type IntoIter = std::slice::Iter<'a, DefinitionError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// One step from a value to one of its children.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Segment {
    Key(String),
    Index(usize),
}

/// Where a value sits inside one resource, from its root.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct Path(Vec<Segment>);

impl Path {
    pub fn root() -> Self {
        Self::default()
    }

    pub fn key(&self, key: impl Into<String>) -> Self {
        self.with(Segment::Key(key.into()))
    }

    pub fn index(&self, index: usize) -> Self {
        self.with(Segment::Index(index))
    }

    /// `spec.steps[1]` joined with `choice.branches[0].steps`.
    pub fn join(&self, tail: &Path) -> Self {
        Self(self.0.iter().chain(&tail.0).cloned().collect())
    }

    pub fn push(&mut self, segment: Segment) {
        self.0.push(segment);
    }

    pub fn pop(&mut self) {
        self.0.pop();
    }

    pub fn parent(&self) -> Option<Self> {
        let (_, parent) = self.0.split_last()?;
        Some(Self(parent.to_vec()))
    }

    fn with(&self, segment: Segment) -> Self {
        let mut path = self.clone();
        path.0.push(segment);
        path
    }
}

impl FromIterator<Segment> for Path {
    fn from_iter<I: IntoIterator<Item = Segment>>(segments: I) -> Self {
        Self(segments.into_iter().collect())
    }
}

/// `spec.steps[2].http.headers["X-Request.Id"]`: keys that are not plain
/// words are quoted so that the path reads back unambiguously.
impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Index(index) => write!(f, "[{index}]")?,
                Segment::Key(key) if is_plain_key(key) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(key)?;
                }
                Segment::Key(key) => write!(f, "[{}]", serde_json::Value::from(key.as_str()))?,
            }
        }
        Ok(())
    }
}

fn is_plain_key(key: &str) -> bool {
    let mut chars = key.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Which position in the source an [`Issue`] points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Anchor {
    /// The value at the issue's path.
    Value,
    /// The key that introduces the value (an unknown field).
    Key,
    /// The object that should hold the value (a missing field).
    Parent,
}

/// A problem found in one resource, before it is placed in the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Issue {
    pub path: Path,
    pub anchor: Anchor,
    pub message: String,
}

impl Issue {
    pub fn at(path: Path, message: impl Into<String>) -> Self {
        Self { path, anchor: Anchor::Value, message: message.into() }
    }

    pub fn at_key(path: Path, message: impl Into<String>) -> Self {
        Self { path, anchor: Anchor::Key, message: message.into() }
    }

    pub fn missing(path: Path, message: impl Into<String>) -> Self {
        Self { path, anchor: Anchor::Parent, message: message.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_read_like_field_access() {
        let path = Path::root().key("spec").key("steps").index(2).key("http").key("url");
        assert_eq!(path.to_string(), "spec.steps[2].http.url");
        let header = Path::root().key("headers").key("X-Request.Id");
        assert_eq!(header.to_string(), r#"headers["X-Request.Id"]"#);
        assert_eq!(Path::root().index(0).key("a").to_string(), "[0].a");
    }

    #[test]
    fn errors_print_one_per_line_in_source_order() {
        let error = |document, path: &str, line| DefinitionError {
            document,
            path: path.into(),
            line,
            column: 9,
            message: "boom".into(),
        };
        let errors = DefinitionErrors::new(vec![
            error(Some(2), "spec", 3),
            error(Some(1), "spec.steps[2].http.url", 14),
            error(Some(1), "spec.steps[2].http.url", 14),
            error(None, "", 1),
        ]);
        assert_eq!(
            errors.to_string(),
            "line 1, column 9: boom\n\
             document 1, spec.steps[2].http.url (line 14, column 9): boom\n\
             document 2, spec (line 3, column 9): boom"
        );
    }
}
