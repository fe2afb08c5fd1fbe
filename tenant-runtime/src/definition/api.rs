//! `kind: Api`: an integration (or several) published as a managed API,
//! served at `/apis/<basePath>/<version>/<route>` on the tenant's hosts
//! (docs/api-management.md). Each route runs an integration synchronously
//! and answers with its output, or forwards the call to a backend through
//! the egress gate; a request can be checked against a JSON Schema and
//! reshaped with jq before, and the answer after.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Duration, Expression, HttpMethod, Name};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiSpec {
    /// The API's path under `/apis/`: lowercase letters, digits and dashes.
    pub base_path: Name,
    /// The version in its paths, `v1`, `v2`...: two versions of an API live
    /// side by side, each an `Api` resource of its own.
    #[schemars(regex(pattern = r"^v[0-9]{1,3}$"))]
    pub version: String,
    /// Who may call it: consumers with their keys (`apiKey`, the default),
    /// holders of a token from the identity provider in `jwt` (`jwt`), or
    /// anyone (`none`).
    #[serde(default)]
    pub auth: ApiAuth,
    /// With `auth: jwt`: the identity provider whose tokens are accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<ApiJwt>,
    /// Calls from web pages on other origins: which origins, headers and
    /// how long a browser keeps a preflight's answer. Unset: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<ApiCors>,
    /// When the version stops being served (RFC 3339): until then its
    /// answers carry `Deprecation` and `Sunset` headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"))]
    pub sunset: Option<String>,
    #[schemars(length(min = 1, max = 100))]
    pub routes: Vec<ApiRoute>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ApiAuth {
    /// `X-API-Key` or `Authorization: Bearer` with a consumer's key; its plan's limits apply.
    #[default]
    ApiKey,
    /// `Authorization: Bearer` with a JWT signed by a key of the provider's
    /// JWKS, from its issuer and for one of its audiences.
    Jwt,
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiJwt {
    /// The `iss` every token must carry.
    #[schemars(length(min = 1, max = 500))]
    pub issuer: String,
    /// The `aud` values a token may carry; it must name one of them.
    #[schemars(length(min = 1, max = 10))]
    pub audiences: Vec<String>,
    /// Where the provider publishes its signing keys, fetched through the
    /// egress gate and kept for five minutes.
    #[schemars(url, example = "https://login.example.com/.well-known/jwks.json")]
    pub jwks_url: String,
    /// The claim that names the caller, in analytics and in the trigger.
    #[serde(default = "subject_claim")]
    #[schemars(length(min = 1, max = 100))]
    pub consumer_claim: String,
}

fn subject_claim() -> String {
    "sub".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiCors {
    /// Origins whose pages may call the API (`https://app.example.com`), or `*` for any.
    #[schemars(length(min = 1, max = 50), inner(regex(pattern = r"^(\*|https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?)$")))]
    pub allow_origins: Vec<String>,
    /// Request headers pages may send besides the safelisted ones.
    /// Default: `authorization`, `content-type`, `x-api-key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 50), inner(regex(pattern = r"^[A-Za-z0-9-]{1,100}$")))]
    pub allow_headers: Option<Vec<String>>,
    /// How long a browser keeps a preflight's answer: at most a day. Default 10 minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 86400))]
    pub max_age_seconds: Option<u32>,
    /// Let pages send cookies and read answers to credentialed calls (not with `*`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_credentials: bool,
}

impl ApiCors {
    pub const DEFAULT_HEADERS: [&'static str; 3] = ["authorization", "content-type", "x-api-key"];
    pub const DEFAULT_MAX_AGE: u32 = 600;

    /// The value of `Access-Control-Allow-Origin` for a call from `origin`, when it may be made.
    pub fn allowed_origin(&self, origin: &str) -> Option<String> {
        if self.allow_origins.iter().any(|o| o.eq_ignore_ascii_case(origin)) {
            return Some(origin.to_string());
        }
        (self.allow_origins.iter().any(|o| o == "*") && !self.allow_credentials).then(|| "*".to_string())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiForward {
    /// The backend's base URL: the call's path under the route's API and
    /// its query are appended (`https://backend.internal/v2` and
    /// `/orders/42` make `https://backend.internal/v2/orders/42`).
    #[schemars(url, example = "https://backend.example.com/v2")]
    pub url: String,
    /// How long the backend may take to answer. Default 30 s, at most 5 minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

impl ApiForward {
    pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
    pub const MAX_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiRoute {
    pub method: HttpMethod,
    /// The route's path under the API's, with `{name}` parameters:
    /// `/orders/{id}`.
    #[schemars(regex(pattern = r"^/$|^(/([a-z0-9._~-]+|\{[a-z_][a-z0-9_]{0,30}\})){1,10}$"))]
    pub path: String,
    /// The integration run for each call; its output is the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration: Option<Name>,
    /// Instead of an integration: the backend each call is forwarded to,
    /// whose answer (status, headers, body) is the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward: Option<ApiForward>,
    /// A JSON Schema the request body must match; a request that does not
    /// gets 400 with the schema's errors and runs nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_schema: Option<Value>,
    /// jq over `{body, params, query, headers}`: the integration's trigger
    /// body (`.trigger.body`). Default: the request body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Expression>,
    /// jq over the integration's output (or a forwarded call's JSON answer):
    /// the answer's body. Default: the output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Expression>,
}

impl ApiRoute {
    /// The values of the route's parameters in `path`, when it matches.
    pub fn matches(&self, path: &str) -> Option<serde_json::Map<String, Value>> {
        let pattern: Vec<&str> = self.path.split('/').filter(|s| !s.is_empty()).collect();
        let actual: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        if pattern.len() != actual.len() {
            return None;
        }
        let mut params = serde_json::Map::new();
        for (want, got) in pattern.iter().zip(&actual) {
            match want.strip_prefix('{').and_then(|w| w.strip_suffix('}')) {
                Some(name) => {
                    params.insert(name.to_string(), Value::String((*got).to_string()));
                }
                None if want == got => {}
                None => return None,
            }
        }
        Some(params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &str) -> ApiRoute {
        ApiRoute {
            method: HttpMethod::Get,
            path: path.into(),
            integration: Some(Name::try_from("x".to_string()).unwrap()),
            forward: None,
            request_schema: None,
            request: None,
            response: None,
        }
    }

    #[test]
    fn a_route_template_matches_its_paths_and_names_its_parameters() {
        let orders = route("/orders/{id}/lines/{line}");
        let params = orders.matches("/orders/42/lines/7").unwrap();
        assert_eq!((params["id"].as_str(), params["line"].as_str()), (Some("42"), Some("7")));
        assert!(orders.matches("/orders/42/lines").is_none());
        assert!(orders.matches("/orders/42/notes/7").is_none());
        assert!(route("/").matches("/").unwrap().is_empty());
        assert!(route("/health").matches("/health/").is_some(), "a trailing slash is the same path");
    }
}
