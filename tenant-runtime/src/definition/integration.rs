//! The spec of an `Integration`: its triggers, its steps and the policies
//! around them (retries, timeouts, error handlers, concurrency).
//!
//! Choices in one place:
//! - Every "one of several kinds" value (a trigger, a step's action) is an
//!   object with exactly one key naming the kind (`http: {…}`), the way
//!   people write these by hand. The schema states the rule with
//!   [`one_key_per_variant`].
//! - Absent optional fields are omitted, never `null`: `null` is rejected.
//! - Computed values are jq [`Expression`]s. Text with computed parts is a
//!   [`Template`]. Request and message bodies are any JSON value whose
//!   strings are templates.

use std::{collections::BTreeMap, num::NonZeroU32};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    CronExpression, Duration, Expression, Name, StepName, Template, TimeZone,
    error::Path,
    schema::{forbid_unknown_properties, one_key_per_variant},
};

/// What starts an integration's executions and what they do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IntegrationSpec {
    /// A disabled integration keeps its definition, but its triggers do not fire.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// What starts an execution. Without triggers, the integration runs only
    /// when another one calls it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<Trigger>,
    /// What an execution does, in order.
    #[schemars(length(min = 1))]
    pub steps: Vec<Step>,
    /// Steps run when the execution fails: a step failed and had no `on_error` of its own, or the time budget ran out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_error: Vec<Step>,
    /// Time budget of a whole execution; it fails when the budget runs out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// At most this many executions run at once; further ones wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 1000))]
    pub concurrency: Option<NonZeroU32>,
    /// How long finished executions are kept; the node's default
    /// (`runtime.retention_days`) applies to what is not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
}

/// Which finished executions (succeeded, failed, cancelled) are kept:
/// queued and running ones are never deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Delete finished executions created more than this many days ago.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 36500))]
    pub days: Option<NonZeroU32>,
    /// Keep at most the newest this many finished executions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 100000000))]
    pub executions: Option<NonZeroU32>,
}

fn default_true() -> bool {
    true
}

// ---------------------------------------------------------------------------
// Triggers

/// One way to start an execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(transform = one_key_per_variant)]
pub enum Trigger {
    /// Started by hand, from the UI or the API.
    Manual(ManualTrigger),
    /// Started by an HTTP request to the integration's webhook URL.
    Webhook(WebhookTrigger),
    /// Started on a schedule.
    Schedule(ScheduleTrigger),
    /// Started by each message of an AMQP queue.
    Queue(QueueTrigger),
}

/// Takes no settings: `manual: {}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ManualTrigger {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookTrigger {
    /// How callers prove who they are.
    #[serde(default)]
    pub auth: WebhookAuth,
    /// Answer the request with the execution's result instead of `202 Accepted`.
    #[serde(default)]
    pub synchronous: bool,
    /// How long a synchronous request waits for the result before it gets `202 Accepted` (at most 5m; default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

impl WebhookTrigger {
    /// The longest wait of a synchronous webhook: it holds the caller's request open.
    pub const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(300);
}

/// `none`, `api_key` (a Tessera API key of the tenant), or `hmac: {…}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(transform = one_key_per_variant)]
pub enum WebhookAuth {
    /// Anyone who knows the URL may call it.
    #[default]
    None,
    /// Callers send one of the tenant's API keys.
    ApiKey,
    /// Callers sign the body with a shared secret (GitHub, Shopify, Stripe-style webhooks).
    Hmac(HmacAuth),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HmacAuth {
    /// The connection holding the shared secret: an `api_key` (its value) or a `bearer` (its token).
    pub secret_from_connection: Name,
    /// The request header that carries the signature.
    #[schemars(example = "X-Hub-Signature-256")]
    pub header: String,
    #[serde(default)]
    pub algorithm: HmacAlgorithm,
    /// How the signature is written in the header.
    #[serde(default)]
    pub encoding: SignatureEncoding,
    /// Text before the signature in the header, removed before comparing (e.g. `sha256=`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Replay protection: the request header carrying the time of signing
    /// in Unix seconds. When set, the signature covers `<timestamp>.<body>`,
    /// and requests signed outside `tolerance` of now are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = "X-Tessera-Timestamp")]
    pub timestamp_header: Option<String>,
    /// How far the timestamp may be from now, either way (default `5m`, at most `1day`).
    /// Used only with `timestamp_header`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<Duration>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HmacAlgorithm {
    #[default]
    Sha256,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SignatureEncoding {
    #[default]
    Hex,
    Base64,
}

/// `cron` (with an optional `timezone`) or `every`, and what to do about
/// ticks missed while Tessera was down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "ScheduleFields", into = "ScheduleFields")]
pub struct ScheduleTrigger {
    pub schedule: Schedule,
    pub missed: MissedTicks,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// At the times a cron expression matches, read in a time zone (UTC by default).
    Cron { expression: CronExpression, timezone: TimeZone },
    /// At a fixed interval.
    Every(Duration),
}

/// What happens to ticks that fell while no node was running the tenant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MissedTicks {
    /// Forget them; wait for the next tick.
    #[default]
    Skip,
    /// Run once at start-up for all of them together, then resume the schedule.
    RunOnce,
}

/// How a schedule is written. The schema requires exactly one of `cron` and
/// `every`, so the conversion to [`ScheduleTrigger`] cannot fail on
/// validated input.
#[derive(Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ScheduleTrigger", transform = exactly_one_of_cron_or_every)]
struct ScheduleFields {
    /// When to run, as a cron expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cron: Option<CronExpression>,
    /// The time zone the cron expression is read in (only with `cron`; UTC by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timezone: Option<TimeZone>,
    /// Run at this fixed interval instead of a cron expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    every: Option<Duration>,
    /// What to do about ticks missed while Tessera was down.
    #[serde(default)]
    missed: MissedTicks,
}

fn exactly_one_of_cron_or_every(schema: &mut schemars::Schema) {
    schema.insert("oneOf".into(), serde_json::json!([{ "required": ["cron"] }, { "required": ["every"] }]));
    schema.insert("dependentRequired".into(), serde_json::json!({ "timezone": ["cron"] }));
}

impl TryFrom<ScheduleFields> for ScheduleTrigger {
    type Error = &'static str;

    fn try_from(fields: ScheduleFields) -> Result<Self, Self::Error> {
        let schedule = match (fields.cron, fields.every, fields.timezone) {
            (Some(expression), None, timezone) => Schedule::Cron { expression, timezone: timezone.unwrap_or_default() },
            (None, Some(every), None) => Schedule::Every(every),
            (None, Some(_), Some(_)) => return Err("`timezone` applies only to `cron` schedules"),
            _ => return Err("a schedule needs exactly one of `cron` and `every`"),
        };
        Ok(Self { schedule, missed: fields.missed })
    }
}

impl From<ScheduleTrigger> for ScheduleFields {
    fn from(trigger: ScheduleTrigger) -> Self {
        let (cron, timezone, every) = match trigger.schedule {
            Schedule::Cron { expression, timezone } => (Some(expression), Some(timezone), None),
            Schedule::Every(every) => (None, None, Some(every)),
        };
        Self { cron, timezone, every, missed: trigger.missed }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueTrigger {
    /// An `amqp` connection.
    pub connection: Name,
    /// The queue to consume (an AMQP short string: at most 255 bytes).
    #[schemars(length(min = 1, max = 255))]
    pub queue: String,
    /// Messages delivered ahead of acknowledgement; bounds the executions in flight from this queue.
    #[serde(default = "default_prefetch")]
    #[schemars(range(max = 1000))]
    pub prefetch: NonZeroU32,
}

fn default_prefetch() -> NonZeroU32 {
    NonZeroU32::new(10).expect("10 is not zero")
}

// ---------------------------------------------------------------------------
// Steps

/// One unit of work: a name, exactly one action, and the policies around it.
//
// serde cannot deny unknown fields on a struct with a flattened field (the
// flattened action takes all the keys it does not know), so the schema is
// what rejects them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(transform = forbid_unknown_properties)]
pub struct Step {
    /// Unique in the integration, including nested steps; later steps read this step's output as `.steps.<name>`.
    pub name: StepName,
    #[serde(flatten)]
    pub action: Action,
    /// Run the action again when it fails in one of the listed ways.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Time limit of one attempt of the action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Steps run instead of failing the execution when this step fails for good (after its retries); the execution
    /// then goes on with the next step. A `fail` step here fails the execution after all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_error: Vec<Step>,
}

/// What a step does; one key per kind of action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(transform = one_key_per_variant)]
pub enum Action {
    /// Send an HTTP request.
    Http(HttpAction),
    /// Compute a new value from the data with jq.
    Transform(TransformAction),
    /// Run the steps of the first branch whose condition holds.
    Choice(ChoiceAction),
    /// Run steps once per item of a list.
    Foreach(ForeachAction),
    /// Run several branches of steps at the same time.
    Parallel(ParallelAction),
    /// Run an SQL statement on a PostgreSQL connection.
    Sql(SqlAction),
    /// Publish a message to an AMQP exchange.
    Publish(PublishAction),
    /// Wait.
    Delay(DelayAction),
    /// Write a line to the execution's log.
    Log(LogAction),
    /// Stop the execution as failed.
    Fail(FailAction),
    /// Run another integration and use its result.
    Call(CallAction),
}

impl Action {
    /// The lists of steps nested in this action, each with its path from
    /// the step (`choice.branches[0].steps`), so checks can walk the whole
    /// tree of steps.
    pub(crate) fn nested_steps(&self) -> Vec<(Path, &[Step])> {
        let action = Path::root().key(self.key());
        let branch = |i: usize| action.key("branches").index(i).key("steps");
        match self {
            Self::Choice(choice) => {
                let mut nested: Vec<_> =
                    choice.branches.iter().enumerate().map(|(i, b)| (branch(i), &b.steps[..])).collect();
                nested.push((action.key("otherwise"), &choice.otherwise[..]));
                nested
            }
            Self::Foreach(foreach) => vec![(action.key("steps"), &foreach.steps[..])],
            Self::Parallel(parallel) => {
                parallel.branches.iter().enumerate().map(|(i, b)| (branch(i), &b.steps[..])).collect()
            }
            _ => Vec::new(),
        }
    }

    /// The key this action is written under (`http`, `sql`, …).
    pub fn key(&self) -> &'static str {
        match self {
            Self::Http(_) => "http",
            Self::Transform(_) => "transform",
            Self::Choice(_) => "choice",
            Self::Foreach(_) => "foreach",
            Self::Parallel(_) => "parallel",
            Self::Sql(_) => "sql",
            Self::Publish(_) => "publish",
            Self::Delay(_) => "delay",
            Self::Log(_) => "log",
            Self::Fail(_) => "fail",
            Self::Call(_) => "call",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpAction {
    #[serde(default)]
    pub method: HttpMethod,
    #[schemars(example = "https://api.example.com/orders/${{ .order.id }}")]
    pub url: Template,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, Template>,
    /// Query parameters, added to those already in `url`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query: BTreeMap<String, Template>,
    /// The request body, sent as JSON; its strings are templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// The connection that authenticates the request: `api_key`, `basic`, `bearer` or `oauth2_client_credentials`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<Name>,
    /// Time limit of the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// How to read the response body.
    #[serde(default)]
    pub response: ResponseFormat,
    /// Send the step's idempotency key (`.step.idempotency_key`, the same on
    /// every retry and after a resume) as the `Idempotency-Key` header:
    /// `true` on any method, `false` never. Unset: on every method but GET.
    /// An `Idempotency-Key` header set in `headers` is sent instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<bool>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    #[default]
    Get,
    Post,
    Put,
    Patch,
    Delete,
    Head,
    Options,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Parse the body as JSON.
    #[default]
    Json,
    /// Keep the body as text.
    Text,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TransformAction {
    /// The jq expression whose result is the step's output.
    pub expression: Expression,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChoiceAction {
    /// Tried in order; the first whose `when` is true runs.
    #[schemars(length(min = 1))]
    pub branches: Vec<ChoiceBranch>,
    /// Run when no branch matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub otherwise: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChoiceBranch {
    /// A jq expression; the branch runs when it is true.
    pub when: Expression,
    #[schemars(length(min = 1))]
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ForeachAction {
    /// A jq expression yielding the list to iterate over; each item is `.item` in the nested steps.
    pub items: Expression,
    /// How many items run at the same time.
    #[serde(default = "one")]
    #[schemars(range(max = 1000))]
    pub concurrency: NonZeroU32,
    #[schemars(length(min = 1))]
    pub steps: Vec<Step>,
}

fn one() -> NonZeroU32 {
    NonZeroU32::MIN
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParallelAction {
    /// The branches; the step's output maps each branch name to the output of its last step.
    #[schemars(length(min = 1))]
    pub branches: Vec<ParallelBranch>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParallelBranch {
    /// Unique among the branches of this step.
    pub name: StepName,
    #[schemars(length(min = 1))]
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlAction {
    /// A `postgres` connection.
    pub connection: Name,
    /// One SQL statement, with `$1`, `$2`, … for the parameters.
    #[schemars(length(min = 1))]
    pub statement: String,
    /// jq expressions giving `$1`, `$2`, … in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<Expression>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishAction {
    /// An `amqp` connection.
    pub connection: Name,
    /// The exchange to publish to; empty for the default exchange (routing key = queue name). At most 255 bytes.
    #[serde(default)]
    #[schemars(length(max = 255))]
    pub exchange: String,
    pub routing_key: Template,
    /// The message, sent as JSON; its strings are templates.
    pub body: Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DelayAction {
    pub duration: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogAction {
    pub message: Template,
    #[serde(default)]
    pub level: LogLevel,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FailAction {
    /// Why the execution failed, as shown in its record.
    pub message: Template,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CallAction {
    /// The integration to run.
    pub integration: Name,
    /// A jq expression giving the called integration's input; the current data when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Expression>,
}

// ---------------------------------------------------------------------------
// Retries

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included.
    #[schemars(range(max = 100))]
    pub attempts: NonZeroU32,
    #[serde(default)]
    pub backoff: Backoff,
    /// The failures worth another attempt; by default the transient ones (everything but `any`).
    #[serde(default = "RetryOn::transient")]
    pub on: Vec<RetryOn>,
}

/// Exponential back-off between attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    /// The wait before the second attempt.
    #[serde(default = "Backoff::default_initial")]
    pub initial: Duration,
    /// The longest wait between two attempts.
    #[serde(default = "Backoff::default_max")]
    pub max: Duration,
    /// Each wait is the previous one times this.
    #[serde(default = "Backoff::default_multiplier")]
    #[schemars(range(min = 1.0, max = 10.0))]
    pub multiplier: f64,
    /// Randomise each wait by up to ±50% so that many failing executions do not retry in lockstep.
    #[serde(default = "default_true")]
    pub jitter: bool,
}

impl Backoff {
    fn default_initial() -> Duration {
        Duration::from_secs(1)
    }

    fn default_max() -> Duration {
        Duration::from_secs(60)
    }

    fn default_multiplier() -> f64 {
        2.0
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Self::default_initial(),
            max: Self::default_max(),
            multiplier: Self::default_multiplier(),
            jitter: true,
        }
    }
}

/// A kind of failure a retry policy can match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RetryOn {
    /// The attempt ran out of time.
    Timeout,
    /// An HTTP response with a 5xx status.
    #[serde(rename = "http_5xx")]
    Http5xx,
    /// An HTTP 429 Too Many Requests response.
    #[serde(rename = "http_429")]
    Http429,
    /// The connection could not be made or was lost.
    Connection,
    /// Any failure, including a `fail` step and 4xx responses.
    Any,
}

impl RetryOn {
    fn transient() -> Vec<Self> {
        vec![Self::Timeout, Self::Http5xx, Self::Http429, Self::Connection]
    }
}
