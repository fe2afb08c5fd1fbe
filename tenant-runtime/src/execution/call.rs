//! The `call` step: run another integration of the same tenant as a child
//! execution, inline in the parent's task, and use its output.
//!
//! - The store creates the child once per (parent, step path, attempt) and
//!   returns the same child when asked again, so a resumed parent resumes
//!   (or reads the end of) the child it already had instead of starting a
//!   second one. The worker's resume scan leaves children to their parent.
//! - The child runs at the called integration's current version with
//!   `.trigger = {kind: "call", parent: <id>, body: <input>}`.
//! - Inline: no second concurrency permit, so a parent never waits for a
//!   slot its own child needs; the parent's budget bounds the child too.
//! - At most [`MAX_CALL_DEPTH`] calls deep, so recursion ends in
//!   `call_depth_exceeded` instead of running forever.

use std::{future::Future, pin::Pin};

use serde_json::{json, Value};

use super::{
    retry::Attempted,
    run::{self, At},
    steps, CallRequest, CallStart, Ended, StoreError,
};
use crate::{definition::CallAction, expression::Context};

/// How many calls may nest below an execution a trigger started.
pub(super) const MAX_CALL_DEPTH: u32 = 8;

pub(super) async fn call(
    at: &At<'_>,
    action: &CallAction,
    path: &str,
    attempt: i32,
    context: &Context,
) -> Result<Result<Value, Attempted>, StoreError> {
    let target = action.integration.as_str();
    if at.depth >= MAX_CALL_DEPTH {
        let message = format!("calling `{target}` would nest calls deeper than {MAX_CALL_DEPTH}; is an integration calling itself?");
        return Ok(Err(Attempted::other(path, "call_depth_exceeded", message)));
    }
    let data = context.to_value();
    let body = match &action.input {
        Some(input) => match steps::evaluate(at.tenant.id, input.as_str(), data).await {
            Ok(body) => body,
            Err(e) => return Ok(Err(Attempted::step(path, &e))),
        },
        None => run::recorded_input(&data),
    };
    let request = CallRequest {
        parent: at.id,
        step: path.to_string(),
        attempt,
        integration: target.to_string(),
        trigger: json!({ "kind": "call", "parent": at.id, "body": body }),
    };
    let child = match at.engine.store.start_call(at.tenant, &request).await? {
        CallStart::Child(child) => child,
        CallStart::Unknown => return Ok(Err(Attempted::other(path, "call_failed", format!("there is no integration `{target}`")))),
        CallStart::Disabled => return Ok(Err(Attempted::other(path, "call_failed", format!("integration `{target}` is disabled")))),
        CallStart::OverLimit(e) => return Ok(Err(Attempted::other(path, e.code, format!("calling `{target}`: {e}")))),
    };
    // Boxed: a child execution runs steps that may call again.
    let run: Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + '_>> =
        Box::pin(run::execute(at.tenant, at.engine, child, at.depth + 1));
    run.await?;
    Ok(match at.engine.store.ended(at.tenant, child).await? {
        Some(Ended::Succeeded(output)) => Ok(output),
        Some(Ended::Failed { code, message }) => {
            // Recursion stopped deep down is reported as such all the way up.
            let code = if code == "call_depth_exceeded" { "call_depth_exceeded" } else { "call_failed" };
            Err(Attempted::other(path, code, format!("integration `{target}` failed (execution {child}): {message}")))
        }
        None => Err(Attempted::other(path, "call_failed", format!("execution {child} of `{target}` did not finish"))),
    })
}
