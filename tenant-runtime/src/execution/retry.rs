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

use std::time::Duration;

use chrono::Utc;
use rand::Rng;
use serde_json::Value;

use super::{
    run::{self, At},
    steps::{FailureClass, StepError},
    Failure, StepRecord, StepState, StoreError,
};
use crate::{
    definition::{Backoff, RetryOn, RetryPolicy, Step},
    expression::Context,
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
        let retry_after = match result {
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
        at.engine.store.checkpoint(at.tenant, at.id, &record).await?;
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
