//! The spec of a `Connection`: how to authenticate to one external system.
//!
//! Secret-bearing fields are [`Secret`]s, so `Debug` output of any of these
//! types never shows a credential.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Secret, schema::one_key_per_variant};

/// Exactly one kind of credential, written as a one-key object:
/// `bearer: {token: …}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(transform = one_key_per_variant)]
pub enum ConnectionSpec {
    /// An API key sent in a request header.
    ApiKey(ApiKeyConnection),
    /// HTTP basic authentication.
    Basic(BasicConnection),
    /// A static bearer token.
    Bearer(BearerConnection),
    /// OAuth 2.0 client credentials grant; tokens are fetched and refreshed automatically.
    #[serde(rename = "oauth2_client_credentials")]
    OAuth2ClientCredentials(OAuth2ClientCredentialsConnection),
    /// A PostgreSQL database.
    Postgres(PostgresConnection),
    /// An AMQP 0.9.1 broker (RabbitMQ).
    Amqp(AmqpConnection),
}

impl ConnectionSpec {
    pub fn kind(&self) -> ConnectionKind {
        match self {
            Self::ApiKey(_) => ConnectionKind::ApiKey,
            Self::Basic(_) => ConnectionKind::Basic,
            Self::Bearer(_) => ConnectionKind::Bearer,
            Self::OAuth2ClientCredentials(_) => ConnectionKind::OAuth2ClientCredentials,
            Self::Postgres(_) => ConnectionKind::Postgres,
            Self::Amqp(_) => ConnectionKind::Amqp,
        }
    }
}

impl ConnectionSpec {
    /// The hosts an HTTP credential may be sent to (empty: see `hosts`).
    pub fn credential_hosts(&self) -> &[String] {
        match self {
            Self::ApiKey(c) => &c.hosts,
            Self::Basic(c) => &c.hosts,
            Self::Bearer(c) => &c.hosts,
            Self::OAuth2ClientCredentials(c) => &c.hosts,
            Self::Postgres(_) | Self::Amqp(_) => &[],
        }
    }
}

impl ConnectionSpec {
    /// The fields that are not secrets, named one by one per kind (never
    /// "everything but the secrets", so a field added later stays hidden
    /// until it is listed here): what the API shows of a connection, so a
    /// form can edit it without its secrets.
    pub fn settings(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Self::ApiKey(c) => json!({"header": c.header, "hosts": c.hosts}),
            Self::Basic(c) => json!({"username": c.username, "hosts": c.hosts}),
            Self::Bearer(c) => json!({"hosts": c.hosts}),
            Self::OAuth2ClientCredentials(c) => {
                json!({"token_url": c.token_url, "client_id": c.client_id, "scopes": c.scopes, "hosts": c.hosts})
            }
            // The URL as a whole is the secret (it holds the password).
            Self::Postgres(_) | Self::Amqp(_) => json!({}),
        }
    }
}

/// What a connection connects to, without its credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionKind {
    ApiKey,
    Basic,
    Bearer,
    OAuth2ClientCredentials,
    Postgres,
    Amqp,
}

impl ConnectionKind {
    /// The kinds an `http` step can authenticate with.
    pub const HTTP: &[Self] = &[Self::ApiKey, Self::Basic, Self::Bearer, Self::OAuth2ClientCredentials];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApiKey => "api_key",
            Self::Basic => "basic",
            Self::Bearer => "bearer",
            Self::OAuth2ClientCredentials => "oauth2_client_credentials",
            Self::Postgres => "postgres",
            Self::Amqp => "amqp",
        }
    }
}

impl std::str::FromStr for ConnectionKind {
    type Err = String;

    /// The inverse of [`ConnectionKind::as_str`], for kinds stored as text.
    fn from_str(text: &str) -> Result<Self, String> {
        let all = [Self::ApiKey, Self::Basic, Self::Bearer, Self::OAuth2ClientCredentials, Self::Postgres, Self::Amqp];
        all.into_iter().find(|kind| kind.as_str() == text).ok_or_else(|| format!("unknown connection kind `{text}`"))
    }
}

impl fmt::Display for ConnectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConnection {
    /// The header that carries the key.
    #[schemars(example = "X-Api-Key")]
    pub header: String,
    pub value: Secret,
    /// The hosts these credentials are for, written like egress rules
    /// (`api.example.com`, `*.example.com`, an address or CIDR, each with an
    /// optional `:port`). A step sending them anywhere else fails; a
    /// redirect to another host goes on without them. Unset: only the host
    /// the step's URL names, never a redirect to another.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(example = vec!["api.example.com", "*.example.com:443"])]
    pub hosts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BasicConnection {
    pub username: String,
    pub password: Secret,
    /// The hosts these credentials are for, written like egress rules
    /// (`api.example.com`, `*.example.com`, an address or CIDR, each with an
    /// optional `:port`). A step sending them anywhere else fails; a
    /// redirect to another host goes on without them. Unset: only the host
    /// the step's URL names, never a redirect to another.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(example = vec!["api.example.com", "*.example.com:443"])]
    pub hosts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BearerConnection {
    pub token: Secret,
    /// The hosts these credentials are for, written like egress rules
    /// (`api.example.com`, `*.example.com`, an address or CIDR, each with an
    /// optional `:port`). A step sending them anywhere else fails; a
    /// redirect to another host goes on without them. Unset: only the host
    /// the step's URL names, never a redirect to another.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(example = vec!["api.example.com", "*.example.com:443"])]
    pub hosts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OAuth2ClientCredentialsConnection {
    /// The authorization server's token endpoint.
    #[schemars(example = "https://auth.example.com/oauth/token")]
    pub token_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// The hosts these credentials are for, written like egress rules
    /// (`api.example.com`, `*.example.com`, an address or CIDR, each with an
    /// optional `:port`). A step sending them anywhere else fails; a
    /// redirect to another host goes on without them. Unset: only the host
    /// the step's URL names, never a redirect to another.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(example = vec!["api.example.com", "*.example.com:443"])]
    pub hosts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresConnection {
    /// A connection URL; it usually holds a password, so it is a secret as a whole.
    #[schemars(example = "postgres://app:password@db.internal:5432/orders")]
    pub url: Secret,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AmqpConnection {
    /// A connection URL; it usually holds a password, so it is a secret as a whole.
    #[schemars(example = "amqp://app:password@rabbitmq.internal:5672/%2f")]
    pub url: Secret,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_hold_no_secret_and_every_plain_field() {
        let specs = [
            (r#"{"api_key": {"header": "X-Api-Key", "value": "s3cr3t", "hosts": ["api.example.com"]}}"#, r#"{"header":"X-Api-Key","hosts":["api.example.com"]}"#),
            (r#"{"basic": {"username": "bob", "password": "s3cr3t"}}"#, r#"{"hosts":[],"username":"bob"}"#),
            (r#"{"bearer": {"token": "s3cr3t"}}"#, r#"{"hosts":[]}"#),
            (
                r#"{"oauth2_client_credentials": {"token_url": "https://a/t", "client_id": "id", "client_secret": "s3cr3t", "scopes": ["r"]}}"#,
                r#"{"client_id":"id","hosts":[],"scopes":["r"],"token_url":"https://a/t"}"#,
            ),
            (r#"{"postgres": {"url": "postgres://u:s3cr3t@h/db"}}"#, "{}"),
            (r#"{"amqp": {"url": "amqp://u:s3cr3t@h"}}"#, "{}"),
        ];
        for (json, settings) in specs {
            let spec: ConnectionSpec = serde_json::from_str(json).unwrap();
            assert_eq!(spec.settings().to_string(), settings, "{json}");
        }
    }

    #[test]
    fn debug_masks_every_secret() {
        let specs = [
            r#"{"api_key": {"header": "X-Api-Key", "value": "s3cr3t"}}"#,
            r#"{"basic": {"username": "bob", "password": "s3cr3t"}}"#,
            r#"{"bearer": {"token": "s3cr3t"}}"#,
            r#"{"oauth2_client_credentials": {"token_url": "https://a/t", "client_id": "id", "client_secret": "s3cr3t"}}"#,
            r#"{"postgres": {"url": "postgres://u:s3cr3t@h/db"}}"#,
            r#"{"amqp": {"url": "amqp://u:s3cr3t@h"}}"#,
        ];
        for json in specs {
            let spec: ConnectionSpec = serde_json::from_str(json).unwrap();
            let debug = format!("{spec:?}");
            assert!(!debug.contains("s3cr3t"), "{debug}");
            assert!(debug.contains("***"), "{debug}");
        }
    }
}
