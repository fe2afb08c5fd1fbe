//! `kind: Api`: an integration (or several) published as a managed API,
//! served at `/apis/<basePath>/<version>/<route>` on the tenant's hosts
//! (docs/api-management.md). Each route runs an integration synchronously
//! and answers with its output; a request can be checked against a JSON
//! Schema and reshaped with jq before the run, and the output after it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Expression, HttpMethod, Name};

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
    /// or anyone (`none`).
    #[serde(default)]
    pub auth: ApiAuth,
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
    None,
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
    pub integration: Name,
    /// A JSON Schema the request body must match; a request that does not
    /// gets 400 with the schema's errors and runs nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_schema: Option<Value>,
    /// jq over `{body, params, query, headers}`: the integration's trigger
    /// body (`.trigger.body`). Default: the request body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Expression>,
    /// jq over the integration's output: the answer's body. Default: the output.
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
            integration: Name::try_from("x".to_string()).unwrap(),
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
