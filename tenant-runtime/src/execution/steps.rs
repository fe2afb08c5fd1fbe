//! What each kind of step does. jq is evaluated on the evaluation pool
//! (`expression::pool`), never on a worker's async task: an evaluation may
//! run for up to its time budget, and the pool bounds how many threads one
//! tenant's evaluations hold. A step's timeout drops the wait, which stops
//! the evaluation.

use std::time::Duration;

use serde_json::Value;
use uuid::Uuid;

use super::{io::IoError, Engine};
use crate::{
    definition::{Action, LogLevel, Step},
    worker::TenantSpec,
    expression::{is_truthy, pool, Expression, ExpressionError, Template},
};

/// Whose step it is: for the events a `log` step writes, and for the
/// steps that use the tenant's connections and the node's clients.
pub(super) struct Who<'a> {
    pub tenant: &'a str,
    pub execution_id: Uuid,
    pub step: &'a str,
    /// The step's checkpoint path (`route/branches[0]/notify`).
    pub path: &'a str,
    pub spec: &'a TenantSpec,
    pub engine: &'a Engine,
}

impl Who<'_> {
    /// The step's idempotency key (see [`super::idempotency_key`]).
    pub(super) fn idempotency_key(&self) -> String {
        super::idempotency_key(self.execution_id, self.path)
    }
}

#[derive(Debug, thiserror::Error)]
pub(super) enum StepError {
    #[error(transparent)]
    Expression(#[from] ExpressionError),
    /// A `fail` step, with its rendered message.
    #[error("{0}")]
    Failed(String),
    #[error("the step ran longer than its timeout of {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    #[error("`{0}` steps are not supported yet")]
    Unsupported(&'static str),
    #[error("the expression evaluation stopped unexpectedly: {0}")]
    Evaluator(#[from] pool::PoolError),
    /// A `publish` step's broker could not be reached or refused the message.
    #[error("publish failed: {0}")]
    Publish(String),
    /// A `publish` step's message that AMQP cannot carry (a routing key over 255 bytes).
    #[error("cannot publish: {0}")]
    Unpublishable(String),
    /// An `http` or `sql` step's failure.
    #[error(transparent)]
    Io(#[from] IoError),
}

/// How a failure looks to a retry policy (`retry.on`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FailureClass {
    Timeout,
    /// An HTTP answer with a 5xx status.
    Http5xx,
    /// An HTTP 429 Too Many Requests answer.
    Http429,
    /// The connection to the other system could not be made or was lost.
    Connection,
    /// Anything else: only `retry.on: [any]` retries it.
    Other,
}

impl StepError {
    /// The store failure inside, if that is what stopped the step: it
    /// interrupts the execution instead of failing the step.
    pub(super) fn into_store_error(self) -> Result<super::StoreError, Self> {
        match self {
            Self::Io(IoError::Store(e)) => Ok(e),
            other => Err(other),
        }
    }

    /// Every step kind classifies its own failures here, so retry policies
    /// read one vocabulary.
    pub(super) fn class(&self) -> FailureClass {
        match self {
            Self::Timeout(_) => FailureClass::Timeout,
            Self::Publish(_) => FailureClass::Connection,
            Self::Io(e) => e.class(),
            Self::Expression(_) | Self::Failed(_) | Self::Unsupported(_) | Self::Evaluator(_) | Self::Unpublishable(_) => {
                FailureClass::Other
            }
        }
    }

    pub(super) fn code(&self) -> &'static str {
        match self {
            Self::Expression(e) if e.is_limit() => "expression_limit",
            Self::Expression(_) => "expression_failed",
            Self::Failed(_) => "fail",
            Self::Timeout(_) => "timeout",
            Self::Unsupported(_) => "unsupported_step",
            Self::Evaluator(_) => "internal",
            Self::Publish(_) => "publish_failed",
            Self::Unpublishable(_) => "publish_invalid",
            Self::Io(e) => e.code(),
        }
    }
}

/// Run `step`'s action against `data` (the execution's context) and
/// return its output.
pub(super) async fn perform(step: &Step, data: Value, who: &Who<'_>) -> Result<Value, StepError> {
    match &step.action {
        Action::Transform(transform) => {
            let text = transform.expression.as_str().to_string();
            on_pool(who.spec.id, move || Expression::compile_cached(&text)?.evaluate(&data)).await
        }
        Action::Log(log) => {
            let message = render_text(who.spec.id, log.message.as_str(), data).await?;
            emit(log.level, who, &message);
            Ok(Value::String(message))
        }
        Action::Fail(fail) => Err(StepError::Failed(render_text(who.spec.id, fail.message.as_str(), data).await?)),
        Action::Delay(delay) => {
            tokio::time::sleep(delay.duration.get()).await;
            Ok(Value::Null)
        }
        Action::Publish(publish) => super::publish::publish(publish, data, who).await,
        Action::Http(http) => super::http::perform(http, data, who).await,
        Action::Sql(sql) => super::sql::perform(sql, data, who).await,
        // `choice` is run by the execution loop, which checkpoints its nested steps.
        other => Err(StepError::Unsupported(other.key())),
    }
}

/// Does jq expression `expression` hold (jq truthiness) for `data`?
pub(super) async fn holds(tenant: Uuid, expression: &str, data: Value) -> Result<bool, StepError> {
    let text = expression.to_string();
    on_pool(tenant, move || Ok(is_truthy(&Expression::compile_cached(&text)?.evaluate(&data)?))).await
}

/// The value of jq expression `expression` for `data`.
pub(super) async fn evaluate(tenant: Uuid, expression: &str, data: Value) -> Result<Value, StepError> {
    let text = expression.to_string();
    on_pool(tenant, move || Expression::compile_cached(&text)?.evaluate(&data)).await
}

async fn render_text(tenant: Uuid, template: &str, data: Value) -> Result<String, StepError> {
    let text = template.to_string();
    on_pool(tenant, move || Template::compile_cached(&text)?.render_text(&data)).await
}

/// Run `work` (compiling and evaluating `tenant`'s jq) on the evaluation pool.
pub(super) async fn on_pool<T: Send + 'static>(
    tenant: Uuid,
    work: impl FnOnce() -> Result<T, ExpressionError> + Send + 'static,
) -> Result<T, StepError> {
    Ok(pool::pool().run(&tenant.to_string(), work).await??)
}

fn emit(level: LogLevel, who: &Who<'_>, message: &str) {
    let (tenant, execution_id, step) = (who.tenant, who.execution_id, who.step);
    match level {
        LogLevel::Debug => tracing::debug!(tenant, %execution_id, step, "{message}"),
        LogLevel::Info => tracing::info!(tenant, %execution_id, step, "{message}"),
        LogLevel::Warn => tracing::warn!(tenant, %execution_id, step, "{message}"),
        LogLevel::Error => tracing::error!(tenant, %execution_id, step, "{message}"),
    }
}
