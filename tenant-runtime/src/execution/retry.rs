//! A step's attempts under its `retry` policy: how many, which failures
//! earn another one (`retry.on`, read through `steps::FailureClass`), and
//! the exponential back-off with jitter between them.
//!
//! Every attempt runs under the step's `timeout`. A failed attempt that is
//! retried is checkpointed (state `failed`, its attempt number and times)
//! before the wait, and the next attempt's checkpoint replaces it; the
//! checkpoint that stays is that of the attempt that ended the step. The
//! wait is a plain timer inside the execution's budget, so the budget (or a
//! stopping worker) cancels it.

use std::{sync::atomic::Ordering, time::Duration};

use chrono::Utc;
use rand::Rng;
use serde_json::Value;

use super::{
    run::{self, At},
    steps::{FailureClass, StepError},
    Failure, StepRecord, StepState, StoreError,
};
use crate::{
    definition::{Action, Backoff, RetryOn, RetryPolicy, Step},
    expression::Context,
    limits::{json_size, LimitExceeded},
};

/// A failed attempt: what is recorded, and how a retry policy sees it.
#[derive(Debug)]
pub(super) struct Attempted {
    pub failure: Failure,
    pub class: FailureClass,
}

impl Attempted {
    pub(super) fn step(path: &str, e: &StepError) -> Self {
        Self { failure: run::step_failure(path, e), class: e.class() }
    }

    /// A failure of a nested step, which already went through that step's
    /// own retries: only `retry.on: [any]` retries the enclosing step.
    pub(super) fn nested(failure: Failure) -> Self {
        Self { failure, class: FailureClass::Other }
    }

    /// A failure of the step itself that no other class describes.
    pub(super) fn other(path: &str, code: &'static str, message: impl Into<String>) -> Self {
        Self { failure: Failure { code, message: message.into(), step: Some(path.to_string()) }, class: FailureClass::Other }
    }
}

/// Run `step` until an attempt succeeds or its policy gives up; return the
/// committed checkpoint of the attempt that ended it.
pub(super) async fn run_attempts(at: &At<'_>, step: &Step, path: String, context: &mut Context) -> Result<StepRecord, StoreError> {
    let policy = step.retry.as_ref();
    let attempts = policy.map_or(1, |p| p.attempts.get());
    let input = run::recorded_input(&context.to_value());
    let mut attempt: u32 = 1;
    let mut recorded = 0;
    loop {
        let started_at = Utc::now();
        let result = attempt_once(at, step, &path, attempt as i32, context).await?;
        let mut record = StepRecord {
            path: path.clone(),
            state: StepState::Succeeded,
            attempt: attempt as i32,
            input: input.clone(),
            output: None,
            error: None,
            started_at,
            finished_at: Utc::now(),
        };
        let mut retry_after = match result {
            Ok(output) => {
                record.output = Some(output);
                None
            }
            Err(failed) => {
                record.state = StepState::Failed;
                record.error = Some(failed.failure);
                policy.filter(|p| attempt < attempts && retries(p, failed.class)).map(|p| wait(&p.backoff, attempt))
            }
        };
        // The attempt before this one is replaced by its checkpoint: its bytes no longer count.
        at.recorded.fetch_sub(std::mem::take(&mut recorded), Ordering::AcqRel);
        match within_limits(at, &mut record) {
            Ok(bytes) => recorded = bytes,
            Err(()) => retry_after = None, // the same step would only grow as large again
        }
        // A step with no effect outside the execution need not be durable
        // before the next one starts: lost in a crash, it runs again to
        // the same result. Its checkpoint goes with the next write, which
        // takes a commit off every such step's path.
        let pure = retry_after.is_none() && matches!(step.action, Action::Transform(_) | Action::Log(_) | Action::Fail(_));
        match pure {
            true => at.engine.store.checkpoint_pure(at.tenant, at.id, &record).await?,
            false => at.engine.store.checkpoint(at.tenant, at.id, &record).await?,
        }
        let Some(wait) = retry_after else { return Ok(record) };
        tracing::info!(tenant = %at.tenant.slug, execution_id = %at.id, step = %path, attempt, wait_ms = wait.as_millis() as u64, "step failed; retrying");
        tokio::time::sleep(wait).await;
        attempt += 1;
    }
}

async fn attempt_once(
    at: &At<'_>,
    step: &Step,
    path: &str,
    attempt: i32,
    context: &mut Context,
) -> Result<Result<Value, Attempted>, StoreError> {
    let work = run::perform(at, step, path, attempt, context);
    match step.timeout {
        Some(limit) => match tokio::time::timeout(limit.get(), work).await {
            Ok(result) => result,
            Err(_) => Ok(Err(Attempted::step(path, &StepError::Timeout(limit.get())))),
        },
        None => work.await,
    }
}

/// Hold `record` to the tenant's limits `step_output_bytes` and
/// `execution_record_bytes`, and count its bytes in the execution's record.
/// Over either, what is too large is not kept: the record becomes a failure
/// (`output_too_large`, `execution_too_large`) naming the limit, and
/// `Err` says so. Ok: the bytes the record added.
fn within_limits(at: &At<'_>, record: &mut StepRecord) -> Result<usize, ()> {
    let limits = &at.tenant.limits;
    let output = record.output.as_ref().map_or(0, json_size);
    if output > limits.step_output_bytes {
        let e = LimitExceeded::new("output_too_large", "the step's output in bytes", output, "step_output_bytes", limits.step_output_bytes);
        fail(record, e.code, e.message);
        return Err(());
    }
    let error = record.error.as_ref().map_or(0, |e| e.message.len() + e.code.len());
    let bytes = json_size(&record.input) + output + error;
    let total = at.recorded.fetch_add(bytes, Ordering::AcqRel) + bytes;
    if total > limits.execution_record_bytes {
        at.recorded.fetch_sub(bytes, Ordering::AcqRel);
        let (what, max) = ("the execution's record in bytes", limits.execution_record_bytes);
        let e = LimitExceeded::new("execution_too_large", what, total, "execution_record_bytes", max);
        record.input = Value::Null;
        fail(record, e.code, e.message);
        return Err(());
    }
    Ok(bytes)
}

fn fail(record: &mut StepRecord, code: &'static str, message: String) {
    record.state = StepState::Failed;
    record.output = None;
    record.error = Some(Failure { code, message, step: Some(record.path.clone()) });
}

/// Does `policy` retry a failure of `class`?
pub(super) fn retries(policy: &RetryPolicy, class: FailureClass) -> bool {
    policy.on.iter().any(|on| match on {
        RetryOn::Any => true,
        RetryOn::Timeout => class == FailureClass::Timeout,
        RetryOn::Http5xx => class == FailureClass::Http5xx,
        RetryOn::Http429 => class == FailureClass::Http429,
        RetryOn::Connection => class == FailureClass::Connection,
    })
}

/// The wait after failed attempt `attempt` (from 1): `initial ×
/// multiplier^(attempt-1)`, at most `max`; with jitter, a random 50% to
/// 150% of that (still at most `max`), so executions failing together do
/// not retry in lockstep.
pub(super) fn wait(backoff: &Backoff, attempt: u32) -> Duration {
    let max = backoff.max.get().as_secs_f64();
    let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
    let base = (backoff.initial.get().as_secs_f64() * backoff.multiplier.powi(exponent)).min(max);
    let factor = if backoff.jitter { rand::rng().random_range(0.5..=1.5) } else { 1.0 };
    // A `max` stored before durations had a maximum may not survive the round trip through f64.
    Duration::try_from_secs_f64((base * factor).min(max).max(0.0)).unwrap_or(backoff.max.get())
}
