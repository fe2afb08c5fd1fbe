//! Admission of an API consumer's call (docs/api-management.md): its key,
//! then its plan's limits, checked where every node of the cluster sees the
//! same state. Each consumer has one row in `api_consumer_usage`: a token
//! bucket (refilled at the plan's rate, at most its burst) and the calls of
//! its current quota window (UTC day or month). One statement looks the key
//! up, refills the bucket and takes a token and a quota call, or takes
//! nothing; the row lock orders concurrent calls from any node, so the
//! limits are exact across the cluster at the cost of one round trip per
//! call, and a revoked key fails its next call everywhere.

use std::{
    sync::{Arc, LazyLock},
    time::Duration,
};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Map, Value};
use tessera_runtime::{
    definition::{Api, ApiAuth, ApiRoute, HttpMethod, Resource},
    expression::{pool, Expression},
};
use uuid::Uuid;

use crate::{
    analytics::Analytics,
    auth::{api_keys, bearer_credential},
    database::DbError,
    engine::endings::Endings,
    resources::{consumers::CONSUMER_KEY_PREFIX, executions, ResourceError},
    starts::{Intake, Run},
    tenancy::{Tenant, TenantDb},
};

/// A call let through, and what is left of the consumer's limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Admitted {
    pub consumer_id: Uuid,
    pub consumer: String,
    pub plan: String,
    pub limits: Limits,
    /// Tokens left in the bucket after this call.
    pub remaining: f64,
    /// Calls left in the quota window after this call, when there is a quota.
    pub quota_remaining: Option<i64>,
}

/// A plan's limits as a call meets them.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub rate_per_second: f64,
    pub burst: i32,
    pub quota: Option<i64>,
    /// When the quota window ends.
    pub quota_resets_at: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    #[error("the API key is not a valid consumer key of this tenant")]
    UnknownKey,
    #[error("consumer '{consumer}' is over its plan's rate of {} calls per second", limits.rate_per_second)]
    RateLimited { consumer: String, limits: Limits, retry_after_ms: u64 },
    #[error("consumer '{consumer}' has used its plan's quota of {} calls", limits.quota.unwrap_or_default())]
    QuotaExceeded { consumer: String, limits: Limits, retry_after_ms: u64 },
    #[error(transparent)]
    Db(#[from] DbError),
}

const ADMIT: &str = "\
WITH key AS (
    SELECT id, consumer_id, last_used_at FROM @tenant.api_consumer_keys WHERE key_hash = $1 AND revoked_at IS NULL
), plan AS (
    SELECT c.id, c.name, p.name AS plan, p.rate_per_second AS rate, p.burst, p.quota,
           CASE p.quota_period WHEN 'day' THEN date_trunc('day', now(), 'UTC') WHEN 'month' THEN date_trunc('month', now(), 'UTC') END AS window_start,
           CASE p.quota_period WHEN 'day' THEN date_trunc('day', now(), 'UTC') + interval '1 day'
                               WHEN 'month' THEN date_trunc('month', now(), 'UTC') + interval '1 month' END AS window_end
    FROM key JOIN @tenant.api_consumers c ON c.id = key.consumer_id JOIN @tenant.api_plans p ON p.name = c.plan
), touched AS (
    UPDATE @tenant.api_consumer_keys k SET last_used_at = now() FROM key
    WHERE k.id = key.id AND (key.last_used_at IS NULL OR key.last_used_at < now() - interval '1 minute')
), taken AS (
    UPDATE @tenant.api_consumer_usage u SET
        tokens = least(plan.burst, u.tokens + plan.rate * greatest(0, extract(epoch FROM now() - u.refilled_at)::float8)) - 1,
        refilled_at = greatest(u.refilled_at, now()),
        window_start = plan.window_start,
        used = CASE WHEN u.window_start IS NOT DISTINCT FROM plan.window_start THEN u.used + 1 ELSE 1 END
    FROM plan
    WHERE u.consumer_id = plan.id
      AND least(plan.burst, u.tokens + plan.rate * greatest(0, extract(epoch FROM now() - u.refilled_at)::float8)) >= 1
      AND (plan.quota IS NULL OR u.window_start IS DISTINCT FROM plan.window_start OR u.used < plan.quota)
    RETURNING u.tokens, u.used
)
SELECT plan.id, plan.name, plan.plan, plan.rate, plan.burst, plan.quota, plan.window_end, taken.tokens, taken.used
FROM plan LEFT JOIN taken ON true";

/// Why a call was refused, read after the refusal: the statement that
/// refused it saw the row as of its start, before the calls it waited for.
const STATE: &str = "SELECT least(p.burst, u.tokens + p.rate_per_second * greatest(0, extract(epoch FROM clock_timestamp() - u.refilled_at)::float8)),
       p.quota IS NOT NULL AND u.used >= p.quota
         AND u.window_start IS NOT DISTINCT FROM
             CASE p.quota_period WHEN 'day' THEN date_trunc('day', now(), 'UTC') WHEN 'month' THEN date_trunc('month', now(), 'UTC') END
FROM @tenant.api_consumer_usage u JOIN @tenant.api_consumers c ON c.id = u.consumer_id JOIN @tenant.api_plans p ON p.name = c.plan
WHERE u.consumer_id = $1";

/// Let one call of the consumer holding `key` through, or say why not.
pub async fn admit(db: &TenantDb, tenant: &Tenant, key: &str) -> Result<Admitted, AdmissionError> {
    if !key.starts_with(CONSUMER_KEY_PREFIX) {
        return Err(AdmissionError::UnknownKey);
    }
    let rows = db.statement(tenant, ADMIT, &[&api_keys::digest(key)]).await?;
    let row = rows.first().ok_or(AdmissionError::UnknownKey)?;
    let consumer: String = row.get(1);
    let limits = Limits { rate_per_second: row.get(3), burst: row.get(4), quota: row.get(5), quota_resets_at: row.get(6) };
    let (tokens, used): (Option<f64>, Option<i64>) = (row.get(7), row.get(8));
    if let (Some(remaining), Some(used)) = (tokens, used) {
        let quota_remaining = limits.quota.map(|q| q - used);
        return Ok(Admitted { consumer_id: row.get(0), consumer, plan: row.get(2), limits, remaining, quota_remaining });
    }
    let consumer_id: Uuid = row.get(0);
    let state = db.statement(tenant, STATE, &[&consumer_id]).await?;
    let (available, quota_spent) = state.first().map(|r| (r.get::<_, f64>(0), r.get::<_, bool>(1))).unwrap_or((0.0, false));
    Err(refusal(consumer, limits, available, quota_spent))
}

fn refusal(consumer: String, limits: Limits, available: f64, quota_spent: bool) -> AdmissionError {
    if !quota_spent {
        // The time until the bucket holds a whole token again.
        let retry_after_ms = ((1.0 - available).max(0.0) / limits.rate_per_second * 1000.0).ceil().max(1.0) as u64;
        return AdmissionError::RateLimited { consumer, limits, retry_after_ms };
    }
    let until_reset = limits.quota_resets_at.map(|at| (at - Utc::now()).num_milliseconds().max(1) as u64).unwrap_or(1000);
    AdmissionError::QuotaExceeded { consumer, limits, retry_after_ms: until_reset }
}

/// How long a call waits for its integration's answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What a call turned out to be, for its analytics.
#[derive(Default)]
struct Seen {
    route: Option<String>,
    consumer: Option<String>,
}

/// One call of a managed API, as received.
pub struct ApiRequest {
    pub method: HttpMethod,
    pub base_path: String,
    pub version: String,
    /// The route's part of the path, after `/apis/<base>/<version>`.
    pub path: String,
    pub query: Vec<(String, String)>,
    /// Lowercased names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ApiRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// A call's answer: the body and the headers that go with it.
pub struct ApiAnswer {
    pub body: Value,
    pub headers: Vec<(&'static str, String)>,
}

/// A request body that does not match its route's schema: where and why.
#[derive(Debug, Serialize)]
pub struct SchemaProblem {
    pub path: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("there is no API at /apis/{base_path}/{version}")]
    NoSuchApi { base_path: String, version: String },
    #[error("the API has no route {path}")]
    NoSuchRoute { path: String },
    #[error("the route {path} does not answer {method}")]
    MethodNotAllowed { path: String, method: String },
    #[error("this API needs a consumer's key: X-API-Key or Authorization: Bearer")]
    MissingKey,
    #[error(transparent)]
    Admission(#[from] AdmissionError),
    #[error("the request body is not JSON: {0}")]
    InvalidJson(String),
    #[error("the request body does not match the route's schema ({} problem(s))", .0.len())]
    RequestInvalid(Vec<SchemaProblem>),
    #[error("the route's {which} transform failed: {message}")]
    Transform { which: &'static str, message: String },
    #[error("the integration failed: {message}")]
    Failed { execution_id: Uuid, message: String },
    #[error("the integration did not answer within {} s", CALL_TIMEOUT.as_secs())]
    Unfinished { execution_id: Uuid },
    #[error(transparent)]
    Start(ResourceError),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// `RateLimit-*` headers: the bucket's size, the calls left now, and the
/// seconds until it is full again (or, refused, until the next call may pass).
pub fn rate_headers(limits: &Limits, remaining: f64, retry_after_ms: Option<u64>) -> Vec<(&'static str, String)> {
    let reset = match retry_after_ms {
        Some(ms) => ms.div_ceil(1000),
        None => ((f64::from(limits.burst) - remaining).max(0.0) / limits.rate_per_second).ceil() as u64,
    };
    vec![
        ("RateLimit-Limit", limits.burst.to_string()),
        ("RateLimit-Remaining", (remaining.max(0.0).floor() as u64).to_string()),
        ("RateLimit-Reset", reset.to_string()),
    ]
}

/// What serving a managed API uses of the node.
pub struct Gateway<'a> {
    pub db: &'a TenantDb,
    pub intake: &'a Intake,
    pub endings: &'a Endings,
    pub analytics: &'a Analytics,
}

impl Gateway<'_> {
    /// Serve one call: find the API and its route, admit the consumer,
    /// check and reshape the request, run the route's integration and
    /// answer with its (reshaped) output.
    /// Every call of an API that exists is counted in its analytics,
    /// refused or not.
    pub async fn call(&self, tenant: &Tenant, request: ApiRequest) -> Result<ApiAnswer, GatewayError> {
        let started = std::time::Instant::now();
        let api = self.api(tenant, &request.base_path, &request.version).await?;
        let mut seen = Seen::default();
        let answer = self.serve(tenant, &api, &request, &mut seen).await;
        let route = seen.route.as_deref().unwrap_or("unmatched");
        self.analytics.record(tenant, api.metadata.name.as_str(), route, seen.consumer.as_deref(), answer.is_ok(), started.elapsed());
        answer
    }

    async fn serve(&self, tenant: &Tenant, api: &Api, request: &ApiRequest, seen: &mut Seen) -> Result<ApiAnswer, GatewayError> {
        let (route, params) = route_for(api, request)?;
        seen.route = Some(format!("{} {}", method_name(route.method), route.path));
        let mut headers = deprecation_headers(api);
        let consumer = match api.spec.auth {
            ApiAuth::None => None,
            ApiAuth::ApiKey => {
                let credential = bearer_credential(request.header("authorization"), request.header("x-api-key"));
                let admitted = admit(self.db, tenant, &credential.ok_or(GatewayError::MissingKey)?).await.inspect_err(|e| {
                    if let AdmissionError::RateLimited { consumer, .. } | AdmissionError::QuotaExceeded { consumer, .. } = e {
                        seen.consumer = Some(consumer.clone());
                    }
                })?;
                seen.consumer = Some(admitted.consumer.clone());
                headers.extend(rate_headers(&admitted.limits, admitted.remaining, None));
                Some(admitted.consumer)
            }
        };
        let body = parse_body(&request.body)?;
        if let Some(schema) = &route.request_schema {
            // The tenant's schema (its patterns, its nesting) is tenant code:
            // checked on the evaluation pool, as its jq is.
            let (schema, checked) = (schema.clone(), body.clone());
            let verdict = pool::pool().run(&tenant.id.to_string(), move || check_schema(&schema, &checked)).await;
            verdict.map_err(|e| GatewayError::Transform { which: "schema", message: e.to_string() })??;
        }
        let query: Map<String, Value> = request.query.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
        let view = json!({"body": body, "params": params, "query": query, "headers": visible_headers(&request.headers)});
        let payload = match &route.request {
            Some(transform) => transform_with(tenant, "request", transform.as_str(), view.clone()).await?,
            None => body,
        };
        let trigger = json!({
            "kind": "api", "api": api.metadata.name.as_str(), "version": api.spec.version, "route": route.path,
            "consumer": consumer, "body": payload, "params": view["params"], "query": view["query"],
        });
        let output = self.run(tenant, route, trigger).await?;
        let body = match &route.response {
            Some(transform) => transform_with(tenant, "response", transform.as_str(), output).await?,
            None => output,
        };
        Ok(ApiAnswer { body, headers })
    }

    async fn api(&self, tenant: &Tenant, base_path: &str, version: &str) -> Result<Api, GatewayError> {
        let rows = self.db.statement(tenant, "SELECT definition FROM @tenant.apis WHERE base_path = $1 AND version = $2", &[&base_path, &version]).await?;
        let missing = || GatewayError::NoSuchApi { base_path: base_path.to_string(), version: version.to_string() };
        let definition: Value = rows.first().ok_or_else(missing)?.get(0);
        match serde_json::from_value(definition) {
            Ok(Resource::Api(api)) => Ok(api),
            _ => Err(missing()),
        }
    }

    /// Start the route's integration and wait for its end: its output, or why not.
    async fn run(&self, tenant: &Tenant, route: &ApiRoute, trigger: Value) -> Result<Value, GatewayError> {
        let run = Run { integration: route.integration.clone(), version: None, trigger, key: None };
        let started = self.intake.run(tenant, run).await.map_err(|e| GatewayError::Start(e.into()))?;
        let execution = executions::wait_for_end(self.db, self.endings, tenant, started.id, CALL_TIMEOUT).await.map_err(GatewayError::Start)?;
        match execution.state.as_str() {
            "succeeded" => Ok(execution.output.unwrap_or(Value::Null)),
            state if execution.is_final() => {
                let message = execution.error.as_ref().and_then(|e| e["message"].as_str()).unwrap_or(state).to_string();
                Err(GatewayError::Failed { execution_id: execution.id, message })
            }
            _ => Err(GatewayError::Unfinished { execution_id: execution.id }),
        }
    }
}

fn route_for<'a>(api: &'a Api, request: &ApiRequest) -> Result<(&'a ApiRoute, Map<String, Value>), GatewayError> {
    let mut matching = api.spec.routes.iter().filter_map(|route| Some((route, route.matches(&request.path)?))).peekable();
    if matching.peek().is_none() {
        return Err(GatewayError::NoSuchRoute { path: request.path.clone() });
    }
    matching.find(|(route, _)| route.method == request.method).ok_or_else(|| GatewayError::MethodNotAllowed {
        path: request.path.clone(),
        method: method_name(request.method),
    })
}

/// `Deprecation` and `Sunset` (RFC 8594) on every answer of a version with a sunset.
fn deprecation_headers(api: &Api) -> Vec<(&'static str, String)> {
    let Some(sunset) = api.spec.sunset.as_deref().and_then(|s| DateTime::parse_from_rfc3339(s).ok()) else { return Vec::new() };
    vec![("Deprecation", "true".into()), ("Sunset", sunset.with_timezone(&Utc).to_rfc2822().replace("+0000", "GMT"))]
}

fn parse_body(body: &[u8]) -> Result<Value, GatewayError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body).map_err(|e| GatewayError::InvalidJson(e.to_string()))
}

/// `GET`, `POST`...: the method as definitions write it.
fn method_name(method: HttpMethod) -> String {
    serde_json::to_value(method).ok().and_then(|m| m.as_str().map(String::from)).unwrap_or_default()
}

/// Compiled request schemas by their text: compiling one costs far more
/// than checking a body against it, and a route's schema changes only with
/// its API. Bounded; an entry unused for ten minutes goes.
static VALIDATORS: LazyLock<moka::sync::Cache<String, Arc<jsonschema::Validator>>> =
    LazyLock::new(|| moka::sync::Cache::builder().max_capacity(1_000).time_to_idle(Duration::from_secs(600)).build());

/// Every way `body` fails the route's schema (the schema compiled when the
/// API was applied; at most 20 problems are named).
fn check_schema(schema: &Value, body: &Value) -> Result<(), GatewayError> {
    let text = schema.to_string();
    let validator = match VALIDATORS.get(&text) {
        Some(validator) => validator,
        None => {
            let compiled = jsonschema::validator_for(schema)
                .map_err(|e| GatewayError::RequestInvalid(vec![SchemaProblem { path: String::new(), message: e.to_string() }]))?;
            let compiled = Arc::new(compiled);
            VALIDATORS.insert(text, compiled.clone());
            compiled
        }
    };
    let problems: Vec<SchemaProblem> =
        validator.iter_errors(body).take(20).map(|e| SchemaProblem { path: e.instance_path().to_string(), message: e.to_string() }).collect();
    if problems.is_empty() { Ok(()) } else { Err(GatewayError::RequestInvalid(problems)) }
}

/// Headers a transform may read: never the caller's credentials.
fn visible_headers(headers: &[(String, String)]) -> Map<String, Value> {
    const HIDDEN: [&str; 4] = ["authorization", "cookie", "proxy-authorization", "x-api-key"];
    headers.iter().filter(|(n, _)| !HIDDEN.contains(&n.as_str())).map(|(n, v)| (n.clone(), Value::String(v.clone()))).collect()
}

/// The tenant's jq, on the evaluation pool under its bounds.
async fn transform_with(tenant: &Tenant, which: &'static str, text: &str, input: Value) -> Result<Value, GatewayError> {
    let text = text.to_string();
    let failed = |message: String| GatewayError::Transform { which, message };
    pool::pool()
        .run(&tenant.id.to_string(), move || Expression::compile_cached(&text)?.evaluate(&input))
        .await
        .map_err(|e| failed(e.to_string()))?
        .map_err(|e| failed(e.message()))
}
