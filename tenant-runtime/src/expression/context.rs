//! The data an execution's expressions and templates read: see the module
//! documentation of [`super`] for its shape.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::definition::Name;

/// Everything an expression can read during one execution. The engine
/// builds it, adds each step's output as the step finishes, and converts it
/// with [`Context::to_value`] for evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Context {
    /// What started the execution: a webhook's request, a queue message,
    /// the caller's input.
    pub trigger: Value,
    /// The output of each step that has finished, by step name.
    pub steps: Map<String, Value>,
    /// The tenant's variables.
    pub vars: Map<String, Value>,
    pub execution: ExecutionInfo,
    /// In the steps nested in a `foreach`: the current item. Absent elsewhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<Value>,
    /// In the steps nested in a `foreach`: the current item's position (from 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// In `on_error` steps: the failure they handle, `{code, message, step}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    /// While a step runs: which step and attempt it is. The engine sets it
    /// for one attempt of one step and clears it after, so it is never
    /// part of a checkpoint or of a sibling's scope.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<StepInfo>,
}

/// Which execution is running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecutionInfo {
    pub id: uuid::Uuid,
    pub integration: Name,
    pub version: u32,
}

/// The step being run, as `.step` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepInfo {
    /// The step's name, as written (`charge`).
    pub name: String,
    /// Its place in the execution, as its checkpoint is keyed
    /// (`each/items[3]/charge`): unique to one run of one step.
    pub path: String,
    /// Derived from the execution id and `path` alone: the same on every
    /// attempt and after a resume, different for every other step run.
    pub idempotency_key: String,
    /// Which attempt of the step this is, from 1 (its `retry` policy).
    pub attempt: u32,
}

impl Context {
    /// A context with no step run yet.
    pub fn new(trigger: Value, vars: Map<String, Value>, execution: ExecutionInfo) -> Self {
        Self { trigger, steps: Map::new(), vars, execution, item: None, index: None, error: None, step: None }
    }

    /// The JSON value expressions see as `.`.
    pub fn to_value(&self) -> Value {
        // Serialising plain JSON maps and strings cannot fail.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}
