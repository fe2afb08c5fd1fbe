//! What goes wrong with an expression or a template: it does not compile,
//! it fails at run time, or it runs past a limit. Every error names the
//! text at fault, so a failed step's record says which expression failed.

/// An expression or template that cannot be compiled or evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpressionError {
    /// The text is not valid jq (or not a valid template). `line` and
    /// `column` (1-based, in characters) point into `text`.
    #[error("invalid {kind} `{text}`: {message} (line {line}, column {column})")]
    Syntax { kind: SourceKind, text: String, message: String, line: usize, column: usize },
    /// jq raised an error while evaluating: a type error, `error(…)`, a
    /// failed conversion.
    #[error("jq expression `{expression}` failed: {message}")]
    Runtime { expression: String, message: String },
    /// The expression produced more values than one evaluation may collect.
    #[error("jq expression `{expression}` produced more than {limit} values")]
    TooManyOutputs { expression: String, limit: usize },
    /// The result is nested deeper than a result may be.
    #[error("jq expression `{expression}` produced a value nested deeper than {limit} levels")]
    TooDeep { expression: String, limit: usize },
    /// The result is larger than a result may be (its JSON text, each
    /// value counted as at least 16 bytes).
    #[error("jq expression `{expression}` produced a result larger than {limit} bytes")]
    TooLarge { expression: String, limit: usize },
    /// The evaluation ran past one of its budgets (steps, time, stack,
    /// memory) and was stopped.
    #[error("jq expression `{expression}` was stopped: {limit}")]
    Limit { expression: String, limit: super::Limit },
    /// A template inside a JSON value (a request or message body) failed; `path`
    /// says where in the value, as in `items[0].sku`.
    #[error("at `{path}` of the body: {source}")]
    InValue {
        path: String,
        #[source]
        source: Box<ExpressionError>,
    },
}

/// Which kind of text a syntax error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Expression,
    Template,
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Expression => "jq expression",
            Self::Template => "template",
        })
    }
}

impl ExpressionError {
    /// A syntax error at byte `offset` of `text`.
    pub(crate) fn syntax(kind: SourceKind, text: &str, offset: usize, message: impl Into<String>) -> Self {
        let (line, column) = line_and_column(text, offset);
        Self::Syntax { kind, text: text.to_owned(), message: message.into(), line, column }
    }

    /// For syntax errors: the problem alone, without the text and position
    /// (callers that show the position their own way, such as definition
    /// errors, use this).
    pub fn message(&self) -> String {
        match self {
            Self::Syntax { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }

    /// Did the expression run past a limit (its steps, time, stack, memory,
    /// or the size of its result), as opposed to failing on its own terms?
    /// Such failures have the code `expression_limit`.
    pub fn is_limit(&self) -> bool {
        match self {
            Self::TooManyOutputs { .. } | Self::TooDeep { .. } | Self::TooLarge { .. } | Self::Limit { .. } => true,
            Self::InValue { source, .. } => source.is_limit(),
            Self::Syntax { .. } | Self::Runtime { .. } => false,
        }
    }

    /// For syntax errors: the 1-based line and column in the text.
    pub fn position(&self) -> Option<(usize, usize)> {
        match self {
            Self::Syntax { line, column, .. } => Some((*line, *column)),
            Self::InValue { source, .. } => source.position(),
            _ => None,
        }
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
/// An offset inside a character, or past the end, is clamped.
pub(crate) fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters() {
        assert_eq!(line_and_column("abc", 0), (1, 1));
        assert_eq!(line_and_column("abc", 2), (1, 3));
        assert_eq!(line_and_column("a\nbc", 3), (2, 2));
        assert_eq!(line_and_column("é.x", 2), (1, 2));
        assert_eq!(line_and_column("ab", 99), (1, 3));
    }
}
