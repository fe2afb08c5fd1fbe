//! Templates: text with jq expressions between `${{` and `}}`, and JSON
//! values whose strings are templates (request and message bodies).

use std::fmt;

use serde_json::Value;

use super::{Expression, ExpressionError, SourceKind};

const OPEN: &str = "${{";

/// A compiled template. Cloning is cheap enough for per-task copies (the
/// compiled expressions are shared).
#[derive(Clone, PartialEq, Eq)]
pub struct Template {
    text: String,
    parts: Vec<Part>,
}

#[derive(Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Placeholder(Expression),
}

impl Template {
    /// Compile `text`, reporting the first problem with its line and column
    /// in `text`: an unclosed or empty placeholder, or invalid jq inside one.
    pub fn compile(text: &str) -> Result<Self, ExpressionError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest_at = 0;
        while let Some(found) = text[rest_at..].find(OPEN) {
            let open_at = rest_at + found;
            // `$${{` stands for a literal `${{`.
            if text[..open_at].ends_with('$') {
                literal.push_str(&text[rest_at..open_at - 1]);
                literal.push_str(OPEN);
                rest_at = open_at + OPEN.len();
                continue;
            }
            literal.push_str(&text[rest_at..open_at]);
            if !literal.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut literal)));
            }
            let start = open_at + OPEN.len();
            let end =
                placeholder_end(text, start).ok_or_else(|| error_at(text, open_at, "`${{` is not closed by `}}`"))?;
            parts.push(Part::Placeholder(compile_placeholder(text, start, end, open_at)?));
            rest_at = end + 2;
        }
        literal.push_str(&text[rest_at..]);
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Self { text: text.to_owned(), parts })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Does the template compute anything? One without placeholders always
    /// renders to the same text.
    pub fn has_placeholders(&self) -> bool {
        self.parts.iter().any(|part| matches!(part, Part::Placeholder(_)))
    }

    /// Render against `data`. A template that is exactly one placeholder
    /// gives that expression's value, of any JSON type; any other template
    /// gives a string, each placeholder rendered as [`to_text`] says.
    pub fn render(&self, data: &Value) -> Result<Value, ExpressionError> {
        if let [Part::Placeholder(expression)] = self.parts.as_slice() {
            return expression.evaluate(data);
        }
        self.render_text(data).map(Value::String)
    }

    /// Render to text, whatever the template's shape (for URLs, headers,
    /// log lines: places that only take text).
    pub fn render_text(&self, data: &Value) -> Result<String, ExpressionError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Placeholder(expression) => out.push_str(&to_text(&expression.evaluate(data)?)),
            }
        }
        Ok(out)
    }
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Template").field(&self.text).finish()
    }
}

/// How a placeholder's value reads inside text: a string as it is, any
/// other value as compact JSON (`null`, `42`, `[1,2]`, `{"a":1}`).
pub fn to_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn error_at(text: &str, offset: usize, message: &str) -> ExpressionError {
    ExpressionError::syntax(SourceKind::Template, text, offset, message)
}

/// Compile the jq between `start` and `end`; a syntax error is reported at
/// its position in the whole template.
fn compile_placeholder(text: &str, start: usize, end: usize, open_at: usize) -> Result<Expression, ExpressionError> {
    let source = &text[start..end];
    if source.trim().is_empty() {
        return Err(error_at(text, open_at, "empty `${{ }}`: write a jq expression between the braces"));
    }
    Expression::compile(source).map_err(|error| match &error {
        ExpressionError::Syntax { message, line, column, .. } => {
            let offset = start + offset_of(source, *line, *column);
            error_at(text, offset, &format!("in `${{{{{source}}}}}`: {message}"))
        }
        _ => error,
    })
}

/// Byte offset of a 1-based line and column (in characters) of `text`.
fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let line_start: usize = text.split_inclusive('\n').take(line - 1).map(str::len).sum();
    let in_line = text[line_start..].char_indices().nth(column - 1).map_or(text.len() - line_start, |(i, _)| i);
    line_start + in_line
}

/// Where the placeholder whose jq starts at `start` ends: the index of the
/// first `}}` that is outside jq string literals (including strings inside
/// `\(…)` interpolations), outside comments, and not closing a `{` the jq
/// itself opened. So `${{ "}}" }}` and `${{ {a: {b: 1}} }}` both work.
/// `None` when there is no such `}}`.
fn placeholder_end(text: &str, start: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    // Innermost last. Every delimiter is ASCII, so byte scanning is
    // safe in UTF-8: continuation bytes never equal them.
    let mut stack = vec![Scope::Code { braces: 0, parens: 0, interpolation: false }];
    let mut i = start;
    while i < bytes.len() {
        let (byte, depth) = (bytes[i], stack.len());
        match stack.last_mut()? {
            Scope::Text => match byte {
                b'\\' if bytes.get(i + 1) == Some(&b'(') => {
                    stack.push(Scope::Code { braces: 0, parens: 0, interpolation: true });
                    i += 1;
                }
                b'\\' => i += 1,
                b'"' => {
                    stack.pop();
                }
                _ => {}
            },
            Scope::Code { braces, parens, interpolation } => match byte {
                b'"' => stack.push(Scope::Text),
                b'#' => i = text[i..].find('\n').map_or(bytes.len(), |n| i + n),
                b'{' => *braces += 1,
                b'}' if *braces > 0 => *braces -= 1,
                b'}' if !*interpolation && depth == 1 && bytes.get(i + 1) == Some(&b'}') => return Some(i),
                b'(' => *parens += 1,
                b')' if *interpolation && *parens == 0 => {
                    stack.pop();
                }
                b')' => *parens = parens.saturating_sub(1),
                _ => {}
            },
        }
        i += 1;
    }
    None
}

enum Scope {
    /// Inside a jq string literal.
    Text,
    /// jq code: the placeholder's top level or a `\(…)` interpolation.
    Code { braces: usize, parens: usize, interpolation: bool },
}

/// A JSON value whose strings are templates, as a request or message body
/// is written. Object keys are taken as they are; only strings compute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueTemplate(Node);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    Literal(Value),
    Template(Template),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
}

impl ValueTemplate {
    /// Compile every string in `value`; the first failure is reported with
    /// its path in the value.
    pub fn compile(value: &Value) -> Result<Self, ExpressionError> {
        compile_node(value, &mut Vec::new()).map(Self)
    }

    /// `value` with each string rendered by [`Template::render`]: a string
    /// that is exactly one placeholder becomes that expression's value.
    pub fn render(&self, data: &Value) -> Result<Value, ExpressionError> {
        render_node(&self.0, data, &mut Vec::new())
    }
}

/// Each string of `value` with where it is (`items[0].sku`), depth first
/// in document order: what a caller needs to check every template of a
/// body and report each failure at its place.
pub fn strings_in(value: &Value) -> Vec<(Vec<PathSegment<'_>>, &str)> {
    fn walk<'v>(value: &'v Value, path: &mut Vec<PathSegment<'v>>, out: &mut Vec<(Vec<PathSegment<'v>>, &'v str)>) {
        match value {
            Value::String(text) => out.push((path.clone(), text)),
            Value::Array(items) => items.iter().enumerate().for_each(|(i, item)| {
                path.push(PathSegment::Index(i));
                walk(item, path, out);
                path.pop();
            }),
            Value::Object(entries) => entries.iter().for_each(|(key, item)| {
                path.push(PathSegment::Key(key));
                walk(item, path, out);
                path.pop();
            }),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, &mut Vec::new(), &mut out);
    out
}

/// One step into a JSON value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathSegment<'a> {
    Key(&'a str),
    Index(usize),
}

fn compile_node<'v>(value: &'v Value, path: &mut Vec<PathSegment<'v>>) -> Result<Node, ExpressionError> {
    Ok(match value {
        Value::String(text) => {
            // Cached per string: a body template is compiled again on every execution.
            let template = Template::compile_cached(text).map_err(|error| in_value(path, error))?;
            if template.has_placeholders() { Node::Template(template) } else { Node::Literal(template_text(template)) }
        }
        Value::Array(items) => {
            let mut nodes = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                path.push(PathSegment::Index(i));
                nodes.push(compile_node(item, path)?);
                path.pop();
            }
            Node::Array(nodes)
        }
        Value::Object(entries) => {
            let mut nodes = Vec::with_capacity(entries.len());
            for (key, item) in entries {
                path.push(PathSegment::Key(key));
                nodes.push((key.clone(), compile_node(item, path)?));
                path.pop();
            }
            Node::Object(nodes)
        }
        other => Node::Literal(other.clone()),
    })
}

/// A template without placeholders is its text, with `$${{` unescaped.
fn template_text(template: Template) -> Value {
    match template.parts.into_iter().next() {
        Some(Part::Text(text)) => Value::String(text),
        _ => Value::String(String::new()),
    }
}

fn render_node<'n>(node: &'n Node, data: &Value, path: &mut Vec<PathSegment<'n>>) -> Result<Value, ExpressionError> {
    Ok(match node {
        Node::Literal(value) => value.clone(),
        Node::Template(template) => template.render(data).map_err(|error| in_value(path, error))?,
        Node::Array(items) => {
            let mut values = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                path.push(PathSegment::Index(i));
                values.push(render_node(item, data, path)?);
                path.pop();
            }
            Value::Array(values)
        }
        Node::Object(entries) => {
            let mut values = serde_json::Map::with_capacity(entries.len());
            for (key, item) in entries {
                path.push(PathSegment::Key(key));
                values.insert(key.clone(), render_node(item, data, path)?);
                path.pop();
            }
            Value::Object(values)
        }
    })
}

fn in_value(path: &[PathSegment<'_>], error: ExpressionError) -> ExpressionError {
    if path.is_empty() {
        return error;
    }
    ExpressionError::InValue { path: path_text(path), source: Box::new(error) }
}

/// `items[0].sku`, with keys that are not plain words quoted.
pub(crate) fn path_text(path: &[PathSegment<'_>]) -> String {
    let mut text = String::new();
    for segment in path {
        match segment {
            PathSegment::Index(i) => text.push_str(&format!("[{i}]")),
            PathSegment::Key(key) if is_word(key) => {
                if !text.is_empty() {
                    text.push('.');
                }
                text.push_str(key);
            }
            PathSegment::Key(key) => text.push_str(&format!("[{}]", Value::from(*key))),
        }
    }
    text
}

fn is_word(key: &str) -> bool {
    let mut chars = key.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
