//! The expression language of integrations: jq, as implemented by jaq,
//! and templates that embed jq in text. Library only: compiling and
//! evaluating, no I/O, no knowledge of steps or triggers.
//!
//! # Expressions
//!
//! An [`Expression`] is compiled once ([`Expression::compile`]) and
//! evaluated any number of times, from any task (it is cheap to clone and
//! `Send + Sync`). [`Expression::evaluate`] folds jq's stream of outputs
//! into one JSON value:
//!
//! | outputs | result |
//! |---|---|
//! | none (`empty`, `.[]` on `[]`) | `null` |
//! | one | that value |
//! | several (`.items[]`) | an array of them, in order |
//!
//! [`Expression::evaluate_all`] gives the outputs unfolded. A run-time
//! error ends the evaluation with [`ExpressionError::Runtime`], which holds
//! the expression and jq's message (jq messages name the offending value,
//! e.g. `cannot index number with "id"`; jaq does not report the data path
//! that failed, so the engine adds the step's path to the error).
//!
//! # Limits
//!
//! Expressions are tenant code and run in a sandbox ([`sandbox`]): the
//! text's length, nesting and operators are bounded before jaq parses it,
//! and every evaluation is metered: past its steps, its deadline, its stack
//! or its memory it ends with [`ExpressionError::Limit`]. jaq evaluates
//! lazily, so one evaluation collects at most [`MAX_OUTPUTS`] values; a
//! result may be nested at most [`MAX_DEPTH`] levels and take at most
//! `sandbox::MAX_RESULT_BYTES`. The engine evaluates on the evaluation pool
//! ([`pool`]), where an evaluation whose step gave up stops within
//! milliseconds.
//! Filters that reach outside the evaluation are neutralised:
//! `env` is `{}` and `$ENV` is undefined, `halt` is an error, `debug` and
//! `stderr` write nothing, `import`/`include` are refused.
//!
//! # The context
//!
//! The engine evaluates every expression and template against one value,
//! built by [`Context`]:
//!
//! ```json
//! {
//!   "trigger":   { "body": { "id": 42, "items": [ { "sku": "A-1", "qty": 2 } ] } },
//!   "steps":     { "fetch": { "status": 200, "body": [ … ] } },
//!   "vars":      { "region": "eu" },
//!   "execution": { "id": "0193…", "integration": "orders-sync", "version": 3 },
//!   "step":      { "name": "charge", "path": "each/items[0]/charge", "idempotency_key": "…", "attempt": 1 },
//!   "item":      { … }
//! }
//! ```
//!
//! - `trigger`: what started the execution (a webhook's request, a queue
//!   message, a caller's input);
//! - `steps`: each finished step's output, by step name (step names use
//!   underscores so `.steps.fetch_orders` parses);
//! - `vars`: the tenant's variables;
//! - `execution`: the execution's id, integration name and version;
//! - `step`: the step the expression belongs to: its name, path, idempotency
//!   key (the same on every attempt and after a resume) and attempt (from 1);
//! - `item`: only inside a `foreach`, the current item; `index`, its position (from 0).
//! - `error`: only inside `on_error` steps, the failure they handle (`{code, message, step}`).
//!
//! Examples: `.trigger.body.items | map(select(.qty > 0))`,
//! `.steps.fetch.status == 200`, `[.trigger.body.items[].sku] | unique`.
//!
//! # Templates
//!
//! A [`Template`] is text with jq between `${{` and `}}`:
//! `"order ${{ .trigger.body.id }} has ${{ .steps.fetch.body | length }} lines"`.
//! - A template that is exactly one placeholder (`"${{ .trigger.body }}"`)
//!   renders to that expression's JSON value, of any type.
//! - Otherwise each placeholder's value (folded as above) is written as
//!   text: a string as it is, anything else as compact JSON (`null`, `3`,
//!   `{"a":1}`), and the pieces are joined.
//! - A placeholder ends at the first `}}` that is outside jq string
//!   literals (and their `\(…)` interpolations), outside `#` comments and
//!   not closing a `{` opened inside the placeholder: `${{ "}}" }}` and
//!   `${{ {id: .x} }}` both work.
//! - `$${{` is a literal `${{`.
//!
//! A [`ValueTemplate`] is a JSON value (a request or message body) whose
//! strings are templates; object keys are literal.

mod cache;
mod context;
mod error;
mod jq;
pub mod pool;
pub mod sandbox;
pub mod share;
mod template;

pub use context::{Context, ExecutionInfo, StepInfo};
pub use error::{ExpressionError, SourceKind};
pub use jq::{Expression, MAX_DEPTH, MAX_OUTPUTS, is_truthy};
pub use sandbox::{CountingAllocator, Limit};
pub use template::{PathSegment, Template, ValueTemplate, strings_in, to_text};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod sandbox_tests;
