//! The `http` step: render the request from the step's templates, add the
//! connection's credentials, send it with the node's one HTTP client and
//! give back `{status, headers, body}`.
//!
//! Credentials are added to the request only: the recorded input is the
//! execution's data (which holds none), and the output and error messages
//! are scrubbed of every secret of the connection, in case the other side
//! echoes them.

use std::{sync::Arc, time::Duration};

use reqwest::{header::HeaderMap, Method, Url};
use serde_json::{json, Map, Value};

use super::{
    io::{excerpt, scrub, scrub_value, IoError},
    oauth::{chain, TokenCache},
    steps::{StepError, Who},
};
use crate::{
    definition::{ConnectionKind, ConnectionSpec, HttpAction, HttpMethod, ResponseFormat},
    egress::{denied_in, normalise_host, Egress, EgressError, Rule, TenantGate},
    expression::{ExpressionError, Template, ValueTemplate},
};

/// Time limit of a request whose step sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest response body a step reads.
pub const MAX_RESPONSE_BYTES: usize = 10 * 1024 * 1024;
/// How much of an error answer's body goes into the failure message.
const EXCERPT_CHARS: usize = 300;

/// The node's HTTP clients (connection pools, TLS) and its OAuth tokens.
///
/// One client per tenant and origin (host and port), built around a
/// resolver that asks the egress gate: the resolver knows the port it
/// resolves for, so the gate checks the address and port the client then
/// connects to, with no second lookup in between. Clients follow no
/// redirect: [`Request::send`] follows them, hop by hop, through the gate.
pub struct HttpClient {
    clients: moka::sync::Cache<ClientKey, reqwest::Client>,
    tokens: TokenCache,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    tenant: uuid::Uuid,
    /// The generation of the tenant's egress rules the client checks with.
    generation: u64,
    host: String,
    port: u16,
}

/// Clients idle this long are dropped with their pooled connections.
const CLIENT_IDLE: Duration = Duration::from_secs(600);
/// Redirects one request follows at most.
const MAX_REDIRECTS: usize = 10;

impl HttpClient {
    pub fn new() -> Self {
        Self { clients: moka::sync::Cache::builder().max_capacity(10_000).time_to_idle(CLIENT_IDLE).build(), tokens: TokenCache::default() }
    }

    /// The client through which `tenant` may reach `url`, after the gate
    /// checked an address written in the URL (the resolver never sees those).
    pub async fn client_for(&self, egress: &Egress, tenant: uuid::Uuid, url: &Url) -> Result<reqwest::Client, IoError> {
        let gate = egress.tenant(tenant).await.map_err(IoError::Store)?;
        let host = url.host_str().map(normalise_host).ok_or_else(|| IoError::InvalidRequest(format!("the URL `{url}` has no host")))?;
        let port = url.port_or_known_default().unwrap_or(80);
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            gate.check(None, ip, port).map_err(IoError::EgressDenied)?;
        }
        let key = ClientKey { tenant, generation: gate.generation, host, port };
        if let Some(client) = self.clients.get(&key) {
            return Ok(client);
        }
        let client = reqwest::Client::builder()
            .user_agent(concat!("tessera/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            // A proxy from the environment would be connected to instead of the checked address.
            .no_proxy()
            .dns_resolver(Arc::new(GateResolver { gate, port }))
            .build()
            .expect("the HTTP client's TLS backend initialises");
        self.clients.insert(key, client.clone());
        Ok(client)
    }
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

/// Resolves names for one tenant's client of one port, through the gate.
struct GateResolver {
    gate: TenantGate,
    port: u16,
}

impl reqwest::dns::Resolve for GateResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let (gate, port, name) = (self.gate.clone(), self.port, name.as_str().to_string());
        Box::pin(async move {
            let addrs = gate.resolve(&name, port).await.map_err(|e| -> Box<dyn std::error::Error + Send + Sync> {
                match e {
                    EgressError::Denied(denied) => Box::new(denied),
                    other => Box::new(other),
                }
            })?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The request with its templates rendered.
struct Rendered {
    url: String,
    headers: Vec<(String, String)>,
    query: Vec<(String, String)>,
    body: Option<Value>,
}

/// How the connection authenticates the request.
enum Auth {
    None,
    Header(String, String),
    Basic(String, String),
    Bearer(String),
    OAuth2(crate::definition::OAuth2ClientCredentialsConnection),
}

/// A connection's credentials and the hosts they may be sent to.
struct Credentials {
    auth: Auth,
    /// The connection's `hosts`; empty: only the host the step's URL names
    /// (a redirect elsewhere loses them).
    hosts: Vec<Rule>,
    connection: String,
}

impl Credentials {
    /// May the credentials go to `url`, where the step's first URL was `first`?
    fn may_go_to(&self, url: &Url, first: &Url) -> bool {
        let host = url.host_str().unwrap_or_default();
        let port = url.port_or_known_default().unwrap_or(80);
        match self.hosts.is_empty() {
            true => host == first.host_str().unwrap_or_default() && url.port_or_known_default() == first.port_or_known_default(),
            false => self.hosts.iter().any(|rule| rule.matches_host(host, port)),
        }
    }
}

pub(super) async fn perform(action: &HttpAction, data: Value, who: &Who<'_>) -> Result<Value, StepError> {
    let rendered = render(who.spec.id, action.clone(), data).await?;
    let (credentials, secrets) = match &action.connection {
        Some(name) => auth_for(who, name.as_str()).await?,
        None => (Credentials { auth: Auth::None, hosts: Vec::new(), connection: String::new() }, Vec::new()),
    };
    let timeout = action.timeout.map(|t| t.get()).unwrap_or(DEFAULT_TIMEOUT);
    let request = Request { action, rendered: &rendered, who, timeout, secrets: &secrets, credentials: &credentials };
    let first = request.url()?;
    if !matches!(credentials.auth, Auth::None) && !credentials.may_go_to(&first, &first) {
        let hosts = credentials.hosts.iter().map(Rule::as_str).collect::<Vec<_>>().join(", ");
        let host = first.host_str().unwrap_or_default().to_string();
        return Err(IoError::CredentialNotForHost { connection: credentials.connection.clone(), host, hosts }.into());
    }
    let response = match &credentials.auth {
        Auth::OAuth2(connection) => send_with_oauth(&request, connection).await?,
        _ => request.send(None).await?,
    };
    read_response(response, action.response, timeout, &secrets).await
}

/// Render url, headers, query and body on the evaluation pool (jq).
async fn render(tenant: uuid::Uuid, action: HttpAction, data: Value) -> Result<Rendered, StepError> {
    let work = move || -> Result<Rendered, ExpressionError> {
        let text = |t: &crate::definition::Template| Template::compile_cached(t.as_str())?.render_text(&data);
        let pairs = |map: &std::collections::BTreeMap<String, crate::definition::Template>| {
            map.iter().map(|(k, v)| Ok((k.clone(), text(v)?))).collect::<Result<Vec<_>, ExpressionError>>()
        };
        let body = action.body.as_ref().map(|b| ValueTemplate::compile(b)?.render(&data)).transpose()?;
        Ok(Rendered { url: text(&action.url)?, headers: pairs(&action.headers)?, query: pairs(&action.query)?, body })
    };
    super::steps::on_pool(tenant, work).await
}

/// The connection's credentials, and every secret string that must not
/// appear in what the step records.
async fn auth_for(who: &Who<'_>, name: &str) -> Result<(Credentials, Vec<String>), IoError> {
    let spec = super::io::open_connection(who, name).await?;
    let hosts = spec.credential_hosts().iter().map(|h| h.parse::<Rule>()).collect::<Result<Vec<_>, _>>();
    let hosts = hosts.map_err(|e| IoError::ConnectionUnavailable(format!("the connection `{name}`: {e}")))?;
    let (auth, secrets) = match spec {
        ConnectionSpec::ApiKey(c) => {
            let value = c.value.expose().to_string();
            (Auth::Header(c.header, value.clone()), vec![value])
        }
        ConnectionSpec::Basic(c) => {
            let password = c.password.expose().to_string();
            let encoded = basic_encoded(&c.username, &password);
            (Auth::Basic(c.username, password.clone()), vec![password, encoded])
        }
        ConnectionSpec::Bearer(c) => {
            let token = c.token.expose().to_string();
            (Auth::Bearer(token.clone()), vec![token])
        }
        ConnectionSpec::OAuth2ClientCredentials(c) => {
            let secret = c.client_secret.expose().to_string();
            (Auth::OAuth2(c), vec![secret])
        }
        other => return Err(wrong_kind(name, other.kind())),
    };
    Ok((Credentials { auth, hosts, connection: name.to_string() }, secrets))
}

fn wrong_kind(name: &str, kind: ConnectionKind) -> IoError {
    let wanted: Vec<_> = ConnectionKind::HTTP.iter().map(|k| k.as_str()).collect();
    IoError::ConnectionUnavailable(format!("the connection `{name}` is a {kind} connection; an http step needs {}", wanted.join(", ")))
}

/// What a server sees of basic credentials (base64 of `user:password`),
/// so an echo of the header can be scrubbed too.
fn basic_encoded(username: &str, password: &str) -> String {
    let probe = reqwest::Client::new().get("http://localhost/").basic_auth(username, Some(password)).build();
    probe
        .ok()
        .and_then(|r| r.headers().get(reqwest::header::AUTHORIZATION)?.to_str().ok().map(str::to_string))
        .and_then(|h| h.strip_prefix("Basic ").map(str::to_string))
        .unwrap_or_default()
}

/// One request of the step, ready to send (once, or twice after a 401
/// with an OAuth token).
struct Request<'a> {
    action: &'a HttpAction,
    rendered: &'a Rendered,
    who: &'a Who<'a>,
    timeout: Duration,
    secrets: &'a [String],
    credentials: &'a Credentials,
}

/// One hop of a request: where it goes, how, and whether the credentials go along.
struct Hop {
    url: Url,
    method: Method,
    body: bool,
    credentials: bool,
}

impl Request<'_> {
    fn url(&self) -> Result<Url, IoError> {
        let mut url = Url::parse(&self.rendered.url)
            .map_err(|e| IoError::InvalidRequest(format!("the URL `{}` is not valid: {e}", self.rendered.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(IoError::InvalidRequest(format!("the URL `{}` is not http or https", self.rendered.url)));
        }
        if !self.rendered.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&self.rendered.query);
        }
        Ok(url)
    }

    /// Send, following redirects one hop at a time: each hop's address is
    /// checked by the gate, and the credentials go only where they may.
    async fn send(&self, token: Option<&str>) -> Result<reqwest::Response, StepError> {
        let first = self.url()?;
        let mut hop = Hop { url: first.clone(), method: method(self.action.method), body: true, credentials: true };
        for _ in 0..=MAX_REDIRECTS {
            let response = self.send_hop(&hop, token).await?;
            let location = response.headers().get(reqwest::header::LOCATION).and_then(|l| l.to_str().ok());
            let Some(next) = location.filter(|_| response.status().is_redirection()).and_then(|l| hop.url.join(l).ok()) else {
                return Ok(response);
            };
            if !matches!(next.scheme(), "http" | "https") {
                return Err(IoError::InvalidResponse(format!("a redirect to `{}`, which is not http or https", next.scheme())).into());
            }
            let status = response.status().as_u16();
            // 303, and 301/302 after a POST, turn into a GET without a body (as browsers and reqwest do).
            if status == 303 || (matches!(status, 301 | 302) && hop.method == Method::POST) {
                (hop.method, hop.body) = (if hop.method == Method::HEAD { Method::HEAD } else { Method::GET }, false);
            }
            hop.credentials = hop.credentials && self.credentials.may_go_to(&next, &first);
            hop.url = next;
        }
        Err(IoError::InvalidResponse(format!("more than {MAX_REDIRECTS} redirects")).into())
    }

    async fn send_hop(&self, hop: &Hop, token: Option<&str>) -> Result<reqwest::Response, StepError> {
        let io = &self.who.engine.io;
        let client = io.http.client_for(&io.egress, self.who.spec.id, &hop.url).await?;
        let mut builder = client.request(hop.method.clone(), hop.url.clone()).timeout(self.timeout);
        let named = |name: &str| self.rendered.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
        // A retried or resumed step sends the same key, so the receiver can
        // tell a repeat from a new request. By default every method but GET
        // is keyed; a step's `idempotency_key` decides instead; a key the
        // step sets in its own headers wins.
        let keyed = self.action.idempotency_key.unwrap_or(self.action.method != HttpMethod::Get);
        if keyed && !named("idempotency-key") {
            builder = builder.header("Idempotency-Key", self.who.idempotency_key());
        }
        for (name, value) in &self.rendered.headers {
            builder = builder.header(name, value);
        }
        if hop.credentials {
            builder = match (&self.credentials.auth, token) {
                (Auth::Header(name, value), _) => builder.header(name, value),
                (Auth::Basic(user, password), _) => builder.basic_auth(user, Some(password)),
                (Auth::Bearer(token), _) => builder.bearer_auth(token),
                (_, Some(token)) => builder.bearer_auth(token),
                _ => builder,
            };
        }
        if let Some(body) = self.rendered.body.as_ref().filter(|_| hop.body) {
            builder = builder.json(body);
        }
        let request = builder.build().map_err(|e| IoError::InvalidRequest(scrub(&chain(&e), self.secrets)))?;
        client.execute(request).await.map_err(|e| self.send_error(&e))
    }

    fn send_error(&self, e: &reqwest::Error) -> StepError {
        if let Some(denied) = denied_in(e) {
            return IoError::EgressDenied(denied).into();
        }
        if e.is_timeout() {
            return StepError::Timeout(self.timeout);
        }
        IoError::ConnectionFailed(scrub(&chain(e), self.secrets)).into()
    }
}

/// Send with a cached token; on 401, fetch a new token and send once more.
async fn send_with_oauth(
    request: &Request<'_>,
    connection: &crate::definition::OAuth2ClientCredentialsConnection,
) -> Result<reqwest::Response, StepError> {
    let (io, who) = (&request.who.engine.io, request.who);
    let name = request.action.connection.as_ref().map(|n| n.as_str()).unwrap_or_default();
    let token = io.http.tokens.token(&io.http, &io.egress, who.spec.id, name, connection).await?;
    let response = request.send(Some(&token)).await?;
    if response.status() != reqwest::StatusCode::UNAUTHORIZED {
        return Ok(response);
    }
    io.http.tokens.forget(who.spec.id, name);
    let token = io.http.tokens.token(&io.http, &io.egress, who.spec.id, name, connection).await?;
    request.send(Some(&token)).await
}

/// The reqwest method of a definition's.
pub fn method(method: HttpMethod) -> Method {
    match method {
        HttpMethod::Get => Method::GET,
        HttpMethod::Post => Method::POST,
        HttpMethod::Put => Method::PUT,
        HttpMethod::Patch => Method::PATCH,
        HttpMethod::Delete => Method::DELETE,
        HttpMethod::Head => Method::HEAD,
        HttpMethod::Options => Method::OPTIONS,
    }
}

/// `{status, headers, body}`, or the failure a non-2xx answer is.
async fn read_response(
    mut response: reqwest::Response,
    format: ResponseFormat,
    timeout: Duration,
    secrets: &[String],
) -> Result<Value, StepError> {
    let status = response.status().as_u16();
    let headers = headers_json(response.headers());
    let mut bytes = Vec::new();
    loop {
        let chunk = response.chunk().await.map_err(|e| match e.is_timeout() {
            true => StepError::Timeout(timeout),
            false => IoError::ConnectionFailed(scrub(&chain(&e), secrets)).into(),
        })?;
        let Some(chunk) = chunk else { break };
        if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
            let limit = MAX_RESPONSE_BYTES / (1024 * 1024);
            return Err(IoError::InvalidResponse(format!("the response body is larger than {limit} MiB")).into());
        }
        bytes.extend_from_slice(&chunk);
    }
    let text = String::from_utf8_lossy(&bytes);
    if !(200..300).contains(&status) {
        return Err(IoError::HttpStatus { status, excerpt: excerpt(&scrub(text.trim(), secrets), EXCERPT_CHARS) }.into());
    }
    let body = match format {
        ResponseFormat::Text => Value::String(text.into_owned()),
        _ if bytes.iter().all(u8::is_ascii_whitespace) => Value::Null,
        ResponseFormat::Json => serde_json::from_slice(&bytes).map_err(|e| {
            let shown = excerpt(&scrub(text.trim(), secrets), 80);
            IoError::InvalidResponse(format!("the response body is not JSON ({e}): {shown}; set `response: text` to keep it as text"))
        })?,
    };
    Ok(scrub_value(json!({"status": status, "headers": headers, "body": body}), secrets))
}

/// Response headers by lower-case name; repeated headers joined by `, `.
fn headers_json(headers: &HeaderMap) -> Value {
    let mut out = Map::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match out.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(&value);
            }
            _ => {
                out.insert(name.as_str().to_string(), Value::String(value));
            }
        }
    }
    Value::Object(out)
}
