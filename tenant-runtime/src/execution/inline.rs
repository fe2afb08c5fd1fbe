//! An execution run where its synchronous caller waits, kept in memory
//! from its start to its end and stored once, finished (by the caller of
//! [`Engine::run_inline`]). Only for integrations whose every step is pure
//! ([`is_pure`]: `transform`, `log`, `fail`, and `choice`, `foreach` and
//! `parallel` of such steps): they reach nothing outside the execution, so
//! an execution lost with its node before it was stored changed nothing,
//! and its caller, who was never answered, calls again. What it saves is
//! the durable start, the claim and a checkpoint per step: one write per
//! execution instead of three or more, each awaited in turn.

use std::sync::{Arc, Mutex, PoisonError};

use futures::FutureExt;
use std::panic::AssertUnwindSafe;
use uuid::Uuid;

use super::{
    run, CallRequest, CallStart, Claimed, Ended, Engine, ExecutionStore, Failure, Outcome, StepRecord, StoreError, StoreFuture,
};
use crate::{
    definition::{Action, Integration, Step},
    worker::TenantSpec,
};

/// Whether every step of `integration`, nested ones and error handlers
/// included, is pure.
pub fn is_pure(integration: &Integration) -> bool {
    fn pure(steps: &[Step]) -> bool {
        steps.iter().all(|step| {
            let own = matches!(
                step.action,
                Action::Transform(_) | Action::Log(_) | Action::Fail(_) | Action::Choice(_) | Action::Foreach(_) | Action::Parallel(_)
            );
            own && pure(&step.on_error) && step.action.nested_steps().iter().all(|(_, nested)| pure(nested))
        })
    }
    pure(&integration.spec.steps)
}

/// How an inline execution ended, and the records of its steps (the last
/// attempt of each, by path, in the order they ended).
pub struct InlineRun {
    pub outcome: Outcome,
    pub steps: Vec<StepRecord>,
}

impl Engine {
    /// Run `claimed` as execution `id` of `tenant` in memory, under the
    /// same limits as on its worker (time budget, sizes, the evaluation
    /// pool). Nothing is stored. A panic fails the execution.
    pub async fn run_inline(&self, tenant: &TenantSpec, id: Uuid, claimed: Claimed) -> InlineRun {
        let store = Arc::new(Memory { claimed: Mutex::new(Some(claimed)), steps: Mutex::default(), outcome: Mutex::default() });
        let engine = Engine {
            store: store.clone(),
            connections: self.connections.clone(),
            limits: self.limits,
            triggers: self.triggers.clone(),
            publishers: Default::default(),
            io: self.io.clone(),
            versions: self.versions.clone(),
        };
        let ran = AssertUnwindSafe(run::execute(tenant, &engine, id, 0)).catch_unwind().await;
        let outcome = match ran {
            Ok(_) => store.outcome.lock().unwrap_or_else(PoisonError::into_inner).take(),
            Err(panic) => Some(Outcome::Failed(Failure::new("panic", format!("the execution stopped unexpectedly: {}", super::panic_message(panic.as_ref()))))),
        };
        let outcome = outcome.unwrap_or_else(|| Outcome::Failed(Failure::new("internal", "the execution did not end")));
        let steps = std::mem::take(&mut *store.steps.lock().unwrap_or_else(PoisonError::into_inner));
        InlineRun { outcome, steps }
    }
}

/// The store of one inline execution: what it claims is handed in, what
/// it records is kept.
struct Memory {
    claimed: Mutex<Option<Claimed>>,
    steps: Mutex<Vec<StepRecord>>,
    outcome: Mutex<Option<Outcome>>,
}

fn unsupported(what: &str) -> StoreError {
    StoreError(format!("an inline execution cannot {what}").into())
}

impl ExecutionStore for Memory {
    fn unfinished<'a>(&'a self, _: &'a TenantSpec) -> StoreFuture<'a, Vec<Uuid>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn claim<'a>(&'a self, _: &'a TenantSpec, _: Uuid) -> StoreFuture<'a, Option<Claimed>> {
        Box::pin(async { Ok(self.claimed.lock().unwrap_or_else(PoisonError::into_inner).take()) })
    }

    fn checkpoint<'a>(&'a self, _: &'a TenantSpec, _: Uuid, step: &'a StepRecord) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut steps = self.steps.lock().unwrap_or_else(PoisonError::into_inner);
            // A retried step's later attempt replaces its earlier one, as the stored checkpoint would.
            steps.retain(|s| s.path != step.path);
            steps.push(step.clone());
            Ok(())
        })
    }

    fn finish<'a>(&'a self, _: &'a TenantSpec, _: Uuid, outcome: &'a Outcome) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            *self.outcome.lock().unwrap_or_else(PoisonError::into_inner) = Some(outcome.clone());
            Ok(())
        })
    }

    fn cancelled<'a>(&'a self, _: &'a TenantSpec, _: Uuid) -> StoreFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    fn start_call<'a>(&'a self, _: &'a TenantSpec, _: &'a CallRequest) -> StoreFuture<'a, CallStart> {
        Box::pin(async { Err(unsupported("call another integration")) })
    }

    fn ended<'a>(&'a self, _: &'a TenantSpec, _: Uuid) -> StoreFuture<'a, Option<Ended>> {
        Box::pin(async { Ok(None) })
    }

    fn retire<'a>(&'a self, _: &'a TenantSpec) -> StoreFuture<'a, bool> {
        Box::pin(async { Ok(false) })
    }
}
