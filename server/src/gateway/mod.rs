//! Managed APIs served (docs/api-management.md): a call of
//! `/apis/<base path>/<version>/<route>` finds its API and route, is let in
//! by the API's auth (a consumer's key within its plan's limits, or a JWT
//! of the tenant's identity provider), checked and reshaped, then runs the
//! route's integration or is forwarded to its backend through the egress
//! gate. CORS, the version's deprecation and each API's OpenAPI document
//! are answered here too.

mod admission;
mod cors;
mod forward;
mod jwt;

pub use admission::{admit, AdmissionError, Admitted, Limits};
pub use forward::BackendError;
pub use jwt::Jwks;

use std::{
    sync::{Arc, LazyLock},
    time::Duration,
};

use actix_web::web::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Map, Value};
use tessera_runtime::{
    definition::{Api, ApiAuth, ApiRoute, HttpMethod, Resource},
    egress::Egress,
    execution::{http::HttpClient, Engine, Outcome},
    expression::{pool, Expression},
};
use uuid::Uuid;

use crate::{
    analytics::Analytics,
    auth::bearer_credential,
    database::DbError,
    engine::endings::Endings,
    resources::{
        api_document::{self as document, method_name},
        cache::ResourceCache,
        executions, ResourceError,
    },
    starts::{Intake, Run},
    tenancy::{Tenant, TenantDb},
};

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

/// A call's answer: its status, body and the headers that go with it.
pub struct ApiAnswer {
    pub status: u16,
    pub body: AnswerBody,
    /// What the gateway adds: limits, deprecation, CORS.
    pub headers: Vec<(&'static str, String)>,
    /// A backend's own headers, passed on from a forwarded call.
    pub passed: Vec<(String, String)>,
}

pub enum AnswerBody {
    Json(Value),
    /// A backend's answer as it came, with its content type.
    Raw { content_type: Option<String>, bytes: Bytes },
    Empty,
}

impl ApiAnswer {
    fn json(body: Value, headers: Vec<(&'static str, String)>) -> Self {
        Self { status: 200, body: AnswerBody::Json(body), headers, passed: Vec::new() }
    }
}

/// A call refused or failed, with the headers its answer still carries
/// (CORS, so a page can read the error; deprecation).
#[derive(Debug)]
pub struct Refusal {
    pub error: GatewayError,
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
    #[error("the path has a `.` or `..` segment")]
    DotSegment,
    #[error("this API needs a consumer's key: X-API-Key or Authorization: Bearer")]
    MissingKey,
    #[error("this API needs a token of its identity provider: Authorization: Bearer")]
    MissingToken,
    #[error("the token is not accepted: {0}")]
    InvalidToken(String),
    #[error("the identity provider's keys could not be read: {0}")]
    Jwks(String),
    #[error("calls from the origin {origin} are not allowed by the API's CORS settings")]
    CorsRefused { origin: String },
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
    Backend(#[from] BackendError),
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

/// The node's outbound side of its managed APIs: the HTTP clients that
/// forward calls to backends and fetch identity providers' keys, all
/// through the tenant's egress gate, and the keys fetched.
pub struct Outbound {
    pub egress: Arc<Egress>,
    pub http: HttpClient,
    pub jwks: Jwks,
}

impl Outbound {
    pub fn new(egress: Arc<Egress>) -> Self {
        Self { egress, http: HttpClient::new(), jwks: Jwks::default() }
    }
}

/// What serving a managed API uses of the node.
pub struct Gateway<'a> {
    pub db: &'a TenantDb,
    pub intake: &'a Intake,
    pub endings: &'a Endings,
    pub analytics: &'a Analytics,
    pub outbound: &'a Outbound,
    pub hot: &'a ResourceCache,
    pub engine: &'a Engine,
}

impl Gateway<'_> {
    /// Serve one call: find the API; answer a CORS preflight or the API's
    /// document; otherwise find the route, let the caller in, check and
    /// reshape the request, run the route's integration or forward the
    /// call, and answer with the (reshaped) result.
    /// Every call of an API that exists is counted in its analytics,
    /// refused or not; preflights and documents are not calls.
    pub async fn call(&self, tenant: &Tenant, request: ApiRequest) -> Result<ApiAnswer, Refusal> {
        let started = std::time::Instant::now();
        let api = self.api(tenant, &request.base_path, &request.version).await.map_err(|error| Refusal { error, headers: Vec::new() })?;
        let mut headers = deprecation_headers(&api);
        if let Some(preflight) = cors::preflight(&api, &request) {
            return preflight.map(|cors| ApiAnswer { status: 204, body: AnswerBody::Empty, headers: cors, passed: Vec::new() }).map_err(|error| Refusal { error, headers });
        }
        headers.extend(cors::headers(&api, request.header("origin")));
        if request.method == HttpMethod::Get && request.path == document::PATH {
            return Ok(ApiAnswer::json(document::document(&api), headers));
        }
        let mut seen = Seen::default();
        let answer = self.serve(tenant, &api, &request, &mut seen).await;
        let route = seen.route.as_deref().unwrap_or("unmatched");
        let succeeded = answer.as_ref().is_ok_and(|a| a.status < 500);
        self.analytics.record(tenant, api.metadata.name.as_str(), route, seen.consumer.as_deref(), succeeded, started.elapsed());
        match answer {
            Ok(mut answer) => {
                headers.append(&mut answer.headers);
                answer.headers = headers;
                Ok(answer)
            }
            Err(error) => Err(Refusal { error, headers }),
        }
    }

    async fn serve(&self, tenant: &Tenant, api: &Api, request: &ApiRequest, seen: &mut Seen) -> Result<ApiAnswer, GatewayError> {
        let (route, params) = route_for(api, request)?;
        seen.route = Some(format!("{} {}", method_name(route.method), route.path));
        let (caller, mut headers) = self.caller(tenant, api, request, seen).await?;
        let mut body = match &route.forward {
            // A forwarded body need not be JSON, unless the route reads it.
            Some(_) if route.request_schema.is_none() && route.request.is_none() => Value::Null,
            _ => parse_body(&request.body)?,
        };
        if let Some(schema) = &route.request_schema {
            // The tenant's schema (its patterns, its nesting) is tenant code:
            // checked on the evaluation pool, as its jq is. The body goes
            // there and comes back, not copied.
            let schema = schema.clone();
            let verdict = pool::pool().run(&tenant.id.to_string(), move || check_schema(&schema, &body).map(|()| body)).await;
            body = verdict.map_err(|e| GatewayError::Transform { which: "schema", message: e.to_string() })??;
        }
        let query: Value = request.query.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect::<Map<_, _>>().into();
        let params = Value::Object(params);
        // The request transform's output replaces the body (`payload`); without one, the body goes as it came.
        let (payload, body) = match &route.request {
            Some(transform) => {
                let view = json!({"body": body, "params": params.clone(), "query": query.clone(), "headers": visible_headers(&request.headers)});
                (Some(transform_with(tenant, "request", transform.as_str(), view).await?), Value::Null)
            }
            None => (None, body),
        };
        if let Some(backend) = &route.forward {
            let mut answer = forward::forward(self.outbound, tenant, backend, request, payload, caller.consumer.as_deref()).await?;
            if let Some(transform) = &route.response {
                let output = forward::json_of(&answer)?;
                answer.body = AnswerBody::Json(transform_with(tenant, "response", transform.as_str(), output).await?);
                answer.passed.retain(|(name, _)| name != "content-type");
            }
            answer.headers.append(&mut headers);
            return Ok(answer);
        }
        let trigger = json!({
            "kind": "api", "api": api.metadata.name.as_str(), "version": api.spec.version, "route": route.path,
            "consumer": caller.consumer, "claims": caller.claims, "body": payload.unwrap_or(body),
            "params": params, "query": query,
        });
        let integration = route.integration.as_ref().expect("a route without a backend runs an integration");
        let output = self.run(tenant, integration, trigger).await?;
        let body = match &route.response {
            Some(transform) => transform_with(tenant, "response", transform.as_str(), output).await?,
            None => output,
        };
        Ok(ApiAnswer::json(body, headers))
    }

    /// Who is calling, as the API's auth says, and the headers that say
    /// what is left of their limits.
    async fn caller(&self, tenant: &Tenant, api: &Api, request: &ApiRequest, seen: &mut Seen) -> Result<(Caller, Vec<(&'static str, String)>), GatewayError> {
        match (api.spec.auth, &api.spec.jwt) {
            (ApiAuth::None, _) => Ok((Caller::default(), Vec::new())),
            (ApiAuth::Jwt, Some(provider)) => {
                let token = bearer_credential(request.header("authorization"), None).ok_or(GatewayError::MissingToken)?;
                let claims = self.outbound.jwks.verify(self.outbound, tenant, provider, &token).await?;
                let consumer = jwt::consumer(&claims, &provider.consumer_claim)?;
                seen.consumer = Some(consumer.clone());
                Ok((Caller { consumer: Some(consumer), claims: Some(claims) }, Vec::new()))
            }
            (ApiAuth::Jwt, None) => Err(GatewayError::MissingToken),
            (ApiAuth::ApiKey, _) => {
                let credential = bearer_credential(request.header("authorization"), request.header("x-api-key"));
                let admitted = admit(self.db, tenant, &credential.ok_or(GatewayError::MissingKey)?).await.inspect_err(|e| {
                    if let AdmissionError::RateLimited { consumer, .. } | AdmissionError::QuotaExceeded { consumer, .. } = e {
                        seen.consumer = Some(consumer.clone());
                    }
                })?;
                seen.consumer = Some(admitted.consumer.clone());
                let headers = rate_headers(&admitted.limits, admitted.remaining, None);
                Ok((Caller { consumer: Some(admitted.consumer), claims: None }, headers))
            }
        }
    }

    /// The API at `base_path`/`version`, from the node's one-second copy
    /// (`resources::cache`) or the tenant's schema.
    async fn api(&self, tenant: &Tenant, base_path: &str, version: &str) -> Result<Arc<Api>, GatewayError> {
        let missing = || GatewayError::NoSuchApi { base_path: base_path.to_string(), version: version.to_string() };
        if let Some(kept) = self.hot.api(tenant.id, base_path, version) {
            return kept.ok_or_else(missing);
        }
        let rows = self.db.statement(tenant, "SELECT definition FROM @tenant.apis WHERE base_path = $1 AND version = $2", &[&base_path, &version]).await?;
        let api = match rows.first().map(|row| serde_json::from_value(row.get(0))) {
            Some(Ok(Resource::Api(api))) => Some(Arc::new(api)),
            _ => None,
        };
        self.hot.keep_api(tenant.id, base_path, version, api.clone());
        api.ok_or_else(missing)
    }

    /// Start the route's integration and wait for its end: its output, or why not.
    /// An integration whose steps are all pure runs here, inline, and is
    /// stored once finished; any other is started on its tenant's worker.
    async fn run(&self, tenant: &Tenant, integration: &tessera_runtime::definition::Name, trigger: Value) -> Result<Value, GatewayError> {
        let run = Run { integration: integration.clone(), version: None, trigger, key: None };
        let inline = self.intake.run_inline(tenant, self.engine, &run).await.map_err(|e| GatewayError::Start(e.into()))?;
        if let Some(ended) = inline {
            return match ended.outcome {
                Outcome::Succeeded(output) => Ok(output),
                Outcome::Failed(failure) => Err(GatewayError::Failed { execution_id: ended.id, message: failure.message }),
            };
        }
        let started = self.intake.run(tenant, run).await.map_err(|e| GatewayError::Start(e.into()))?;
        let execution = executions::wait_for_final(self.db, self.endings, tenant, started.id, CALL_TIMEOUT).await.map_err(GatewayError::Start)?;
        match execution.state.as_str() {
            "succeeded" => Ok(execution.output.unwrap_or(Value::Null)),
            state if execution.is_final() => {
                let message = execution.error.as_ref().and_then(|e| e["message"].as_str()).unwrap_or(state).to_string();
                Err(GatewayError::Failed { execution_id: started.id, message })
            }
            _ => Err(GatewayError::Unfinished { execution_id: started.id }),
        }
    }
}

/// The caller as the API's auth found them: a consumer's name (or a
/// token's subject) and, with a JWT, its claims.
#[derive(Default)]
struct Caller {
    consumer: Option<String>,
    claims: Option<Map<String, Value>>,
}

fn route_for<'a>(api: &'a Api, request: &ApiRequest) -> Result<(&'a ApiRoute, Map<String, Value>), GatewayError> {
    if request.path.split('/').any(|segment| segment == "." || segment == "..") {
        return Err(GatewayError::DotSegment);
    }
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
