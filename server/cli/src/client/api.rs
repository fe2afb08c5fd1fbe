//! The calls the CLI makes to a tenant's REST API, and the one mapping from
//! HTTP answers to `CallError`s a person can act on.

use std::{net::SocketAddr, time::Duration};

use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde::Deserialize;
use serde_json::{json, Value};

/// Long enough for a big apply on a busy node; short enough that CI does
/// not hang on a black-holed address.
const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("invalid server URL {0:?}: expected http://HOST[:PORT] or https://HOST[:PORT]")]
    InvalidServer(String),
    #[error("cannot reach {server}: {reason}")]
    Unreachable { server: String, reason: String },
    #[error("sign-in refused: {0}")]
    LoginRefused(String),
    #[error("not authenticated (401: {0}); run `tessera login` (or pass --token)")]
    Unauthorized(String),
    #[error("permission denied (403: {0})")]
    Forbidden(String),
    #[error("not found (404: {0})")]
    NotFound(String),
    #[error("the definition is invalid ({} error(s))", .0.len())]
    InvalidDefinition(Vec<DefinitionProblem>),
    #[error("the server refused the request ({status}: {code}: {message})")]
    Refused { status: u16, code: String, message: String },
    #[error("unexpected answer from {server}: {reason}")]
    Protocol { server: String, reason: String },
    #[error("setting up the HTTP client: {0}")]
    Client(reqwest::Error),
}

/// One problem of an invalid definition, as `POST /api/apply` reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct DefinitionProblem {
    pub document: Option<usize>,
    pub path: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// One resource stored by an apply.
#[derive(Debug, Clone, Deserialize)]
pub struct AppliedResource {
    pub kind: String,
    pub name: String,
    pub version: i64,
    pub result: String,
}

/// The kinds of resource `get` and `delete` work on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Integration,
    Connection,
}

impl Kind {
    pub fn collection(self) -> &'static str {
        match self {
            Kind::Integration => "integrations",
            Kind::Connection => "connections",
        }
    }

    pub fn singular(self) -> &'static str {
        match self {
            Kind::Integration => "integration",
            Kind::Connection => "connection",
        }
    }
}

/// The filters `get executions` and `logs --integration` send.
#[derive(Debug, Clone, Default)]
pub struct ExecutionFilter {
    pub integration: Option<String>,
    pub state: Option<String>,
    pub limit: Option<u32>,
}

/// Whether an execution (as the API answers it) is over.
pub fn is_final(execution: &Value) -> bool {
    matches!(execution["state"].as_str(), Some("succeeded" | "failed" | "cancelled"))
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    errors: Vec<DefinitionProblem>,
}

/// A client of one tenant's API, with an optional bearer credential.
pub struct ApiClient {
    http: reqwest::Client,
    server: Url,
    credential: Option<String>,
}

impl ApiClient {
    pub fn new(server: &str, credential: Option<String>) -> Result<Self, CallError> {
        let server = parse_server(server)?;
        let mut builder = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .user_agent(concat!("tessera-cli/", env!("CARGO_PKG_VERSION")));
        if let Some(host) = server.host_str().filter(|h| is_localhost(h)) {
            // Browsers and curl treat every *.localhost name as loopback
            // (RFC 6761), but the system resolver often knows only
            // `localhost` itself; tenants are told apart by the Host header,
            // which still carries the name.
            let port = server.port_or_known_default().unwrap_or(80);
            let loopback = [SocketAddr::from(([127, 0, 0, 1], port)), SocketAddr::from(([0u16, 0, 0, 0, 0, 0, 0, 1], port))];
            builder = builder.resolve_to_addrs(host, &loopback);
        }
        Ok(Self { http: builder.build().map_err(CallError::Client)?, server, credential })
    }

    /// The server URL as given (normalised), for messages.
    pub fn server(&self) -> &str {
        self.server.as_str().trim_end_matches('/')
    }

    /// `POST /api/auth/login`: a session token for this tenant.
    pub async fn login(&self, email: &str, password: &str) -> Result<String, CallError> {
        #[derive(Deserialize)]
        struct Issued {
            token: String,
        }
        let request = self.http.post(self.url(&["auth", "login"])).json(&json!({"email": email, "password": password}));
        let response = match self.send(request).await {
            Err(CallError::Unauthorized(message)) => return Err(CallError::LoginRefused(message)),
            other => other?,
        };
        let issued: Issued = self.body(response).await?;
        Ok(issued.token)
    }

    /// `GET /api/me`: who the credential is (used to check an API key).
    pub async fn me(&self) -> Result<Value, CallError> {
        self.get_json(&["me"]).await
    }

    /// `POST /api/apply` with one definition file.
    pub async fn apply(&self, text: String, content_type: &str) -> Result<Vec<AppliedResource>, CallError> {
        #[derive(Deserialize)]
        struct Applied {
            items: Vec<AppliedResource>,
        }
        let request = self.authorised(Method::POST, &["apply"]).header(reqwest::header::CONTENT_TYPE, content_type).body(text);
        let response = self.send(request).await?;
        Ok(self.body::<Applied>(response).await?.items)
    }

    /// `GET /api/{kind}s`: `{"items": [...]}`.
    pub async fn list(&self, kind: Kind) -> Result<Value, CallError> {
        self.get_json(&[kind.collection()]).await
    }

    /// `GET /api/{kind}s/{name}`.
    pub async fn get(&self, kind: Kind, name: &str) -> Result<Value, CallError> {
        self.get_json(&[kind.collection(), name]).await
    }

    /// `GET /api/integrations/{name}/versions`: `{"items": [...]}`.
    pub async fn versions(&self, name: &str) -> Result<Value, CallError> {
        self.get_json(&["integrations", name, "versions"]).await
    }

    /// `POST /api/integrations/{name}/rollback`: the integration as it now is.
    pub async fn rollback(&self, name: &str, version: i32) -> Result<Value, CallError> {
        let request = self.authorised(Method::POST, &["integrations", name, "rollback"]).json(&json!({"version": version}));
        let response = self.send(request).await?;
        self.body(response).await
    }

    /// `DELETE /api/{kind}s/{name}`.
    pub async fn delete(&self, kind: Kind, name: &str) -> Result<(), CallError> {
        self.send(self.authorised(Method::DELETE, &[kind.collection(), name])).await.map(drop)
    }

    /// `POST /api/integrations/{name}/run[?wait=true]`: `{id, state}`, or
    /// with `wait` the execution (final unless the server's wait ran out).
    pub async fn run(&self, name: &str, payload: Option<&Value>, wait: bool) -> Result<Value, CallError> {
        let mut url = self.url(&["integrations", name, "run"]);
        if wait {
            url.query_pairs_mut().append_pair("wait", "true");
        }
        let mut request = self.authorised_url(Method::POST, url);
        if let Some(payload) = payload {
            request = request.json(payload);
        }
        let response = self.send(request).await?;
        self.body(response).await
    }

    /// `GET /api/executions/{id}`: the execution with its steps.
    pub async fn execution(&self, id: &str) -> Result<Value, CallError> {
        self.get_json(&["executions", id]).await
    }

    /// `POST /api/executions/{id}/cancel`: the execution after the cancel.
    pub async fn cancel(&self, id: &str) -> Result<Value, CallError> {
        let response = self.send(self.authorised(Method::POST, &["executions", id, "cancel"])).await?;
        self.body(response).await
    }

    /// `POST /api/executions/{id}/retry`: the failed execution, queued again.
    pub async fn retry(&self, id: &str) -> Result<Value, CallError> {
        let response = self.send(self.authorised(Method::POST, &["executions", id, "retry"])).await?;
        self.body(response).await
    }

    /// `GET /api/executions?...`: `{"items": [...], "next_cursor": ...}`.
    pub async fn executions(&self, filter: &ExecutionFilter) -> Result<Value, CallError> {
        let mut url = self.url(&["executions"]);
        {
            let mut query = url.query_pairs_mut();
            let pairs = [("integration", filter.integration.clone()), ("state", filter.state.clone()), ("limit", filter.limit.map(|l| l.to_string()))];
            for (key, value) in pairs {
                if let Some(value) = value {
                    query.append_pair(key, &value);
                }
            }
        }
        let response = self.send(self.authorised_url(Method::GET, url)).await?;
        self.body(response).await
    }

    /// `GET /api/audit[/verify]?...`: a page of records, or the chain's check.
    pub async fn audit(&self, path: &[&str], pairs: &[(&str, String)]) -> Result<Value, CallError> {
        let response = self.audit_call(path, pairs).await?;
        self.body(response).await
    }

    /// `GET /api/audit/export?...`: JSON lines, as the server wrote them.
    pub async fn audit_export(&self, pairs: &[(&str, String)]) -> Result<String, CallError> {
        let response = self.audit_call(&["audit", "export"], pairs).await?;
        response.text().await.map_err(|e| CallError::Protocol { server: self.server().to_string(), reason: innermost(&e) })
    }

    async fn audit_call(&self, path: &[&str], pairs: &[(&str, String)]) -> Result<Response, CallError> {
        let mut url = self.url(path);
        if !pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(pairs);
        }
        self.send(self.authorised_url(Method::GET, url)).await
    }

    async fn get_json(&self, segments: &[&str]) -> Result<Value, CallError> {
        let response = self.send(self.authorised(Method::GET, segments)).await?;
        self.body(response).await
    }

    /// `<server>/api/<segments>`, each segment percent-encoded, so a name
    /// can never change the path it is sent to.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.server.clone();
        url.path_segments_mut()
            .expect("an http(s) URL has a path")
            .pop_if_empty()
            .push("api")
            .extend(segments);
        url
    }

    fn authorised(&self, method: Method, segments: &[&str]) -> RequestBuilder {
        self.authorised_url(method, self.url(segments))
    }

    fn authorised_url(&self, method: Method, url: Url) -> RequestBuilder {
        let request = self.http.request(method, url);
        match &self.credential {
            Some(secret) => request.bearer_auth(secret),
            None => request,
        }
    }

    /// Sends a request; any answer but 2xx becomes an `CallError`.
    async fn send(&self, request: RequestBuilder) -> Result<Response, CallError> {
        let response = request.send().await.map_err(|e| self.transport_error(&e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let detail = response.json::<ErrorBody>().await.ok().map(|b| b.error);
        Err(error_for(status, detail))
    }

    async fn body<T: serde::de::DeserializeOwned>(&self, response: Response) -> Result<T, CallError> {
        response.json().await.map_err(|e| CallError::Protocol { server: self.server().to_string(), reason: innermost(&e) })
    }

    fn transport_error(&self, error: &reqwest::Error) -> CallError {
        let server = self.server().to_string();
        if error.is_connect() || error.is_timeout() {
            CallError::Unreachable { server, reason: innermost(error) }
        } else {
            CallError::Protocol { server, reason: innermost(error) }
        }
    }
}

fn error_for(status: StatusCode, detail: Option<ErrorDetail>) -> CallError {
    let (code, message, errors) = match detail {
        Some(d) => (d.code, d.message, d.errors),
        None => (String::new(), status.canonical_reason().unwrap_or("error").to_string(), Vec::new()),
    };
    match status {
        StatusCode::UNAUTHORIZED => CallError::Unauthorized(message),
        StatusCode::FORBIDDEN => CallError::Forbidden(message),
        StatusCode::NOT_FOUND => CallError::NotFound(message),
        StatusCode::BAD_REQUEST if code == "invalid_definition" && !errors.is_empty() => CallError::InvalidDefinition(errors),
        _ => CallError::Refused { status: status.as_u16(), code, message },
    }
}

fn parse_server(server: &str) -> Result<Url, CallError> {
    let invalid = || CallError::InvalidServer(server.to_string());
    let url = Url::parse(server.trim()).map_err(|_| invalid())?;
    let plain = url.query().is_none() && url.fragment().is_none() && url.username().is_empty() && url.password().is_none();
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() || !plain {
        return Err(invalid());
    }
    Ok(url)
}

fn is_localhost(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost")
}

/// The deepest cause of an error ("Connection refused (os error 111)"):
/// reqwest's own message repeats the URL and says little.
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_built_under_api_with_names_encoded() {
        let client = ApiClient::new("http://acme.localhost:8080/", None).unwrap();
        assert_eq!(client.url(&["integrations", "a/b c"]).as_str(), "http://acme.localhost:8080/api/integrations/a%2Fb%20c");
        assert_eq!(client.server(), "http://acme.localhost:8080");
        let prefixed = ApiClient::new("https://example.test/tessera", None).unwrap();
        assert_eq!(prefixed.url(&["apply"]).as_str(), "https://example.test/tessera/api/apply");
    }

    #[test]
    fn only_plain_http_urls_are_servers() {
        for bad in ["acme.localhost:8080", "ftp://x", "http://u:p@x", "http://x/?q=1", ""] {
            assert!(matches!(ApiClient::new(bad, None), Err(CallError::InvalidServer(_))), "{bad}");
        }
    }

    #[test]
    fn localhost_names_are_recognised() {
        assert!(is_localhost("localhost") && is_localhost("acme.localhost") && is_localhost("ACME.LOCALHOST."));
        assert!(!is_localhost("localhost.example") && !is_localhost("notlocalhost"));
    }
}
