//! What the steps that talk to other systems (`http`, `sql`) share: the
//! node's clients (one HTTP client, the OAuth token cache, the SQL pools),
//! kept in the [`Engine`](super::Engine) and built once; their one error
//! type, classified for retry policies; and the scrubbing that keeps a
//! connection's secrets out of anything recorded.

use serde_json::Value;

use std::sync::Arc;

use super::{http::HttpClient, sql::SqlPools, steps::FailureClass};
use crate::egress::{Denied, Egress, EgressError};

/// The node's clients for steps that reach other systems. Built once per
/// node and shared by every tenant's worker (each entry inside is keyed by
/// tenant and connection). Every one of them connects only through the
/// egress gate.
#[derive(Default)]
pub struct Io {
    pub(crate) http: HttpClient,
    pub(crate) sql: SqlPools,
    pub egress: Arc<Egress>,
}

impl Io {
    pub fn new(egress: Arc<Egress>) -> Self {
        Self { http: HttpClient::default(), sql: SqlPools::default(), egress }
    }

    /// The node's HTTP clients (OAuth token requests of connection tests use them too).
    pub fn http(&self) -> &HttpClient {
        &self.http
    }
}

/// Why an `http` or `sql` step failed. Messages never hold a connection's
/// secrets: they are scrubbed with [`scrub`] before they are built.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// The connection is unknown, of the wrong kind, or cannot be opened.
    #[error("{0}")]
    ConnectionUnavailable(String),
    /// The other system could not be reached, or the connection was lost.
    #[error("{0}")]
    ConnectionFailed(String),
    /// The request could not be built from the step (URL, header, …).
    #[error("{0}")]
    InvalidRequest(String),
    /// An HTTP answer that is not 2xx.
    #[error("the server answered {status}: {excerpt}")]
    HttpStatus { status: u16, excerpt: String },
    /// The answer cannot be read as asked (not JSON, too large).
    #[error("{0}")]
    InvalidResponse(String),
    /// A parameter of an `sql` step does not fit its PostgreSQL type.
    #[error("parameter ${index} ({expected}): {message}")]
    InvalidParameter { index: usize, expected: String, message: String },
    /// The database refused the statement.
    #[error("{0}")]
    SqlFailed(String),
    /// One of the tenant's limits (`sql_pools`) refused it.
    #[error(transparent)]
    Limit(#[from] crate::limits::LimitExceeded),
    /// More rows than a step may return.
    #[error("the statement returned more than {0} rows; add a LIMIT")]
    TooManyRows(usize),
    /// The egress gate refused the connection: nothing was sent.
    #[error(transparent)]
    EgressDenied(Denied),
    /// A connection's credentials are not for the host the step asked for.
    #[error("the credentials of connection `{connection}` are not for {host} (its `hosts`: {hosts})")]
    CredentialNotForHost { connection: String, host: String, hosts: String },
    /// Tessera's own database failed while the step read its connection:
    /// not the step's failure. The execution is interrupted, and runs the
    /// step again once the database answers (see `run::perform`).
    #[error(transparent)]
    Store(#[from] super::StoreError),
}

impl IoError {
    pub(super) fn class(&self) -> FailureClass {
        match self {
            Self::ConnectionFailed(_) => FailureClass::Connection,
            Self::HttpStatus { status: 429, .. } => FailureClass::Http429,
            Self::HttpStatus { status: 500..=599, .. } => FailureClass::Http5xx,
            _ => FailureClass::Other,
        }
    }

    pub(super) fn code(&self) -> &'static str {
        match self {
            Self::ConnectionUnavailable(_) => "connection_unavailable",
            Self::ConnectionFailed(_) => "connection_failed",
            Self::InvalidRequest(_) => "invalid_request",
            Self::HttpStatus { .. } => "http_status",
            Self::InvalidResponse(_) => "invalid_response",
            Self::InvalidParameter { .. } => "invalid_parameter",
            Self::SqlFailed(_) => "sql_failed",
            Self::TooManyRows(_) => "too_many_rows",
            Self::Limit(e) => e.code,
            Self::EgressDenied(_) => "egress_denied",
            Self::CredentialNotForHost { .. } => "credential_not_for_host",
            Self::Store(_) => "store_unavailable",
        }
    }
}

impl From<EgressError> for IoError {
    fn from(e: EgressError) -> Self {
        match e {
            EgressError::Denied(denied) => Self::EgressDenied(denied),
            EgressError::Resolve { .. } => Self::ConnectionFailed(e.to_string()),
            EgressError::Store(store) => Self::Store(store),
        }
    }
}

/// `text` with every one of `secrets` replaced by `***`: for messages and
/// answers that might echo a credential (an error naming a URL, a server
/// that echoes the request's headers).
/// The tenant's connection `name`, opened, for an `http` or `sql` step.
pub(super) async fn open_connection(who: &super::steps::Who<'_>, name: &str) -> Result<crate::definition::ConnectionSpec, IoError> {
    match who.engine.connections.open(who.spec, name).await {
        Ok(Some(spec)) => Ok(spec),
        Ok(None) => Err(IoError::ConnectionUnavailable(format!("there is no connection `{name}`"))),
        Err(super::OpenError::Store(e)) => Err(IoError::Store(e)),
        Err(super::OpenError::Unusable(why)) => Err(IoError::ConnectionUnavailable(format!("the connection `{name}` cannot be opened: {why}"))),
    }
}

pub fn scrub(text: &str, secrets: &[String]) -> String {
    secrets.iter().filter(|s| !s.is_empty()).fold(text.to_string(), |text, secret| text.replace(secret.as_str(), "***"))
}

/// The secrets in a connection URL: the URL itself and its password (as
/// written and decoded), which a driver's message might quote alone.
pub fn url_secrets(url: &str) -> Vec<String> {
    let mut secrets = vec![url.to_string()];
    if let Some(password) = reqwest::Url::parse(url).ok().and_then(|u| u.password().map(str::to_string)) {
        let decoded = reqwest::Url::parse(&format!("x://u:{password}@h")).ok().map(|_| percent_decode(&password));
        secrets.extend(decoded.into_iter().filter(|d| *d != password));
        secrets.push(password);
    }
    secrets
}

/// `%XX` escapes decoded (a password written percent-encoded in a URL).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// [`scrub`] applied to every string (and key) of a JSON value.
pub(super) fn scrub_value(value: Value, secrets: &[String]) -> Value {
    if secrets.is_empty() {
        return value;
    }
    match value {
        Value::String(text) => Value::String(scrub(&text, secrets)),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| scrub_value(v, secrets)).collect()),
        Value::Object(fields) => {
            Value::Object(fields.into_iter().map(|(k, v)| (scrub(&k, secrets), scrub_value(v, secrets))).collect())
        }
        other => other,
    }
}

/// The first `max` characters of `text`, marked when cut.
pub(super) fn excerpt(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn scrubbing_removes_every_secret_everywhere() {
        let secrets = vec!["s3cr3t".to_string(), String::new()];
        let value = json!({"a": "Bearer s3cr3t", "s3cr3t": [1, "xs3cr3tx"]});
        assert_eq!(scrub_value(value, &secrets), json!({"a": "Bearer ***", "***": [1, "x***x"]}));
    }

    #[test]
    fn classes_follow_the_status() {
        let status = |status| IoError::HttpStatus { status, excerpt: String::new() };
        assert_eq!(status(503).class(), FailureClass::Http5xx);
        assert_eq!(status(429).class(), FailureClass::Http429);
        assert_eq!(status(404).class(), FailureClass::Other);
        assert_eq!(IoError::ConnectionFailed("x".into()).class(), FailureClass::Connection);
        assert_eq!(excerpt("héllo", 2), "hé…");
        let secrets = url_secrets("postgres://app:p%40ss@db/x");
        assert!(secrets.contains(&"p@ss".to_string()) && secrets.contains(&"p%40ss".to_string()), "{secrets:?}");
    }
}
