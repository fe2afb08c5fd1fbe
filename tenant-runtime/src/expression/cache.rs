//! Compiled expressions and templates kept by their text, so a step does
//! not compile its jq again on every execution.
//!
//! Why: compiling loads and compiles jaq's standard definitions along with
//! the expression, which costs far more than evaluating a step's
//! expression; before this cache it was most of an execution's CPU time
//! (docs/performance.md). The key is the text alone: equal texts compile to
//! equal programs whoever wrote them, and a compiled program holds no data.
//! Bounded and idle entries expire, so thousands of tenants' expressions
//! cannot grow it without limit. Failed compilations are not kept.

use std::{sync::LazyLock, time::Duration};

use moka::sync::Cache;

use super::{Expression, ExpressionError, Template};

/// Entries kept at most, for each kind.
const CAPACITY: u64 = 1024;
const IDLE: Duration = Duration::from_secs(600);

static EXPRESSIONS: LazyLock<Cache<String, Expression>> =
    LazyLock::new(|| Cache::builder().max_capacity(CAPACITY).time_to_idle(IDLE).build());
static TEMPLATES: LazyLock<Cache<String, Template>> =
    LazyLock::new(|| Cache::builder().max_capacity(CAPACITY).time_to_idle(IDLE).build());

impl Expression {
    /// [`Expression::compile`], reusing an earlier compilation of the same text.
    pub fn compile_cached(text: &str) -> Result<Self, ExpressionError> {
        if let Some(compiled) = EXPRESSIONS.get(text) {
            return Ok(compiled);
        }
        let compiled = Self::compile(text)?;
        EXPRESSIONS.insert(text.to_string(), compiled.clone());
        Ok(compiled)
    }
}

impl Template {
    /// [`Template::compile`], reusing an earlier compilation of the same text.
    pub fn compile_cached(text: &str) -> Result<Self, ExpressionError> {
        if let Some(compiled) = TEMPLATES.get(text) {
            return Ok(compiled);
        }
        let compiled = Self::compile(text)?;
        TEMPLATES.insert(text.to_string(), compiled.clone());
        Ok(compiled)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_cached_compilation_evaluates_like_a_fresh_one() {
        for _ in 0..2 {
            let e = Expression::compile_cached(".a + 1").unwrap();
            assert_eq!(e.evaluate(&json!({"a": 1})).unwrap(), json!(2));
            let t = Template::compile_cached("n=${{ .a }}").unwrap();
            assert_eq!(t.render_text(&json!({"a": 1})).unwrap(), "n=1");
        }
        assert!(Expression::compile_cached(".a +").is_err());
        assert!(Expression::compile_cached(".a +").is_err(), "failures are not kept");
    }
}
