//! Webhook triggers: `POST /hooks/{integration}` on a tenant's host.
//!
//! Nobody logs in: the integration's `webhook` trigger decides who may
//! call (anyone, an editor's API key, or an HMAC signature over the body).
//! An accepted request becomes the trigger payload of a `queued` execution,
//! committed before it is acknowledged (`starts::Intake::run`).
//!
//! Must never create anything for a request it refuses, and never store a
//! caller's credentials in the payload: viewers read executions.

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;
use tessera_runtime::{
    definition::{ConnectionSpec, HmacAlgorithm, HmacAuth, Name, SignatureEncoding, WebhookAuth, WebhookTrigger},
    execution::Outcome as RunOutcome,
};
use uuid::Uuid;

use super::{connections, executions, cache::ResourceCache, parse_name, webhook_replay, ResourceError};
use crate::{
    auth::{api_keys, bearer_credential, AuthError, Role},
    engine::endings::Endings,
    sealing::KeyRing,
    starts::{Intake, Run},
    tenancy::{Tenant, TenantDb},
};

/// Request headers never copied into the payload: they are credentials.
const HIDDEN_HEADERS: [&str; 4] = ["authorization", "cookie", "proxy-authorization", "x-api-key"];

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Missing, malformed and wrong signatures are one error, so a caller
    /// learns nothing about which part it got wrong.
    #[error("the request's signature is missing or does not match")]
    InvalidSignature,
    /// A correct signature, made too long ago (or ahead): a replay.
    #[error("the request was signed more than {}s from now", .tolerance.as_secs())]
    StaleSignature { tolerance: std::time::Duration },
    #[error("Idempotency-Key: {0}")]
    InvalidIdempotencyKey(String),
    /// The connection holding the HMAC secret was deleted, or is of a kind
    /// without a single secret: the integration's configuration is broken.
    #[error("the webhook's secret connection '{0}' is missing or holds no usable secret")]
    SecretUnavailable(String),
    /// The stored trigger no longer reads as a webhook trigger.
    #[error("the stored webhook trigger of '{name}' does not parse: {source}")]
    StoredTrigger { name: String, source: serde_json::Error },
    /// A synchronous webhook's execution ended without succeeding. Only the
    /// id is told: the failure's details may hold data the caller must not
    /// see, and the tenant reads them through the API.
    #[error("execution {id} failed")]
    ExecutionFailed { id: Uuid },
    #[error("a webhook body is JSON (application/json, */*+json) or text (text/*)")]
    UnsupportedMediaType,
    #[error("the request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("the request body is not UTF-8 text")]
    NotUtf8,
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Resource(#[from] ResourceError),
}

/// One webhook request as received: the raw body (what a signature
/// covers), its media type, the headers (names lowercased) and the query.
#[derive(Debug, Default)]
pub struct Delivery {
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
}

impl Delivery {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The payload an execution sees as `.trigger`.
    fn payload(&self) -> Result<Value, WebhookError> {
        let mut headers = Map::new();
        for (name, value) in self.headers.iter().filter(|(n, _)| !HIDDEN_HEADERS.contains(&n.as_str())) {
            // Repeated headers are one comma-separated value, as HTTP defines.
            match headers.get_mut(name) {
                Some(Value::String(joined)) => *joined = format!("{joined}, {value}"),
                _ => {
                    headers.insert(name.clone(), Value::String(value.clone()));
                }
            }
        }
        let mut query = Map::new();
        for (name, value) in &self.query {
            // A repeated parameter keeps every value, in order.
            match query.get_mut(name) {
                Some(Value::Array(values)) => values.push(value.clone().into()),
                Some(first) => *first = json!([first.take(), value]),
                None => {
                    query.insert(name.clone(), value.clone().into());
                }
            }
        }
        Ok(json!({"kind": "webhook", "body": body_value(self.content_type.as_deref(), &self.body)?, "headers": headers, "query": query}))
    }
}

/// What the caller is answered, and whether it repeats the answer to an
/// earlier request with the same idempotency key.
#[derive(Debug)]
pub struct Answer {
    pub outcome: Outcome,
    pub replayed: bool,
}

/// What the caller is answered.
#[derive(Debug)]
pub enum Outcome {
    /// Committed and queued, or still unfinished when a synchronous wait ran out.
    Accepted { id: Uuid, state: String },
    /// A synchronous webhook's execution succeeded with this output.
    Finished(Value),
}

/// What accepting a webhook uses of the node: the tenants' data, the
/// webhook triggers kept hot, the keys that open HMAC secrets, and the
/// intake that starts executions.
pub struct Webhooks<'a> {
    pub db: &'a TenantDb,
    pub hot: &'a ResourceCache,
    pub keys: &'a KeyRing,
    pub intake: &'a Intake,
    pub endings: &'a Endings,
    pub engine: &'a tessera_runtime::execution::Engine,
}

impl Webhooks<'_> {
    /// Accept one webhook request for integration `name` of `tenant`: check
    /// the trigger's auth, commit the execution, and answer as the trigger says.
    pub async fn accept(&self, tenant: &Tenant, name: &str, delivery: Delivery) -> Result<Answer, WebhookError> {
        let name = parse_name("webhook", name)?;
        let (version, trigger) = match self.hot.webhook(tenant.id, name.as_str()) {
            Some(found) => found,
            None => {
                let found = webhook_trigger(self.db, tenant, &name).await?;
                self.hot.keep_webhook(tenant.id, name.as_str(), found.clone());
                found
            }
        };
        authenticate(self.db, self.keys, tenant, &trigger.auth, &delivery).await?;
        let key = delivery
            .header("idempotency-key")
            .map(executions::IdempotencyKey::parse)
            .transpose()
            .map_err(|e| WebhookError::InvalidIdempotencyKey(e.to_string()))?;
        // The version whose trigger accepted the request is the one that runs,
        // even if another version is applied meanwhile.
        let run = Run { integration: name, version: Some(version), trigger: delivery.payload()?, key: key.map(|k| k.as_str().to_string()) };
        if trigger.synchronous {
            // A pure integration runs here, and is stored once it ended.
            if let Some(ended) = self.intake.run_inline(tenant, self.engine, &run).await.map_err(ResourceError::from)? {
                let outcome = match ended.outcome {
                    RunOutcome::Succeeded(output) => Outcome::Finished(output),
                    RunOutcome::Failed(_) => return Err(WebhookError::ExecutionFailed { id: ended.id }),
                };
                return Ok(Answer { outcome, replayed: false });
            }
        }
        let started = self.intake.run(tenant, run).await.map_err(ResourceError::from)?;
        let outcome = answer(self.db, self.endings, tenant, &trigger, started.id, started.state).await?;
        Ok(Answer { outcome, replayed: started.replayed })
    }
}

/// Accepted at once, or (a synchronous trigger) the execution's end.
async fn answer(db: &TenantDb, endings: &Endings, tenant: &Tenant, trigger: &WebhookTrigger, id: Uuid, state: String) -> Result<Outcome, WebhookError> {
    if !trigger.synchronous {
        return Ok(Outcome::Accepted { id, state });
    }
    // A definition stored before the maximum existed may hold a longer wait.
    let limit = trigger.timeout.map_or(executions::MAX_WAIT, |t| t.get().min(WebhookTrigger::MAX_WAIT));
    let execution = executions::wait_for_end(db, endings, tenant, id, limit).await?;
    match execution.state.as_str() {
        "succeeded" => Ok(Outcome::Finished(execution.output.unwrap_or(Value::Null))),
        _ if execution.is_final() => Err(WebhookError::ExecutionFailed { id: execution.id }),
        _ => Ok(Outcome::Accepted { id: execution.id, state: execution.state }),
    }
}

/// The current version and webhook trigger of an enabled integration. An
/// unknown or disabled integration, or one without a webhook trigger, is
/// not there for webhook callers.
async fn webhook_trigger(db: &TenantDb, tenant: &Tenant, name: &Name) -> Result<(i32, WebhookTrigger), WebhookError> {
    let sql = "SELECT i.current_version, v.definition -> 'spec' -> 'triggers' FROM @tenant.integrations i \
               JOIN @tenant.integration_versions v ON v.integration = i.name AND v.version = i.current_version \
               WHERE i.name = $1 AND i.enabled";
    let rows = db.statement(tenant, sql, &[&name.as_str()]).await.map_err(ResourceError::from)?;
    let not_found = || ResourceError::NotFound { kind: "webhook", id: name.to_string() };
    let row = rows.first().ok_or_else(not_found)?;
    let triggers: Option<Value> = row.get(1);
    let webhook = triggers
        .as_ref()
        .and_then(Value::as_array)
        .and_then(|all| all.iter().find_map(|t| t.get("webhook")))
        .ok_or_else(not_found)?;
    let trigger = serde_json::from_value(webhook.clone())
        .map_err(|source| WebhookError::StoredTrigger { name: name.to_string(), source })?;
    Ok((row.get(0), trigger))
}

async fn authenticate(db: &TenantDb, keys: &KeyRing, tenant: &Tenant, auth: &WebhookAuth, delivery: &Delivery) -> Result<(), WebhookError> {
    match auth {
        WebhookAuth::None => Ok(()),
        WebhookAuth::ApiKey => {
            let credential =
                bearer_credential(delivery.header("authorization"), delivery.header("x-api-key")).ok_or(AuthError::MissingCredentials)?;
            // Only API keys: a user's token is for the API, not for webhooks.
            if !api_keys::looks_like_key(&credential) {
                return Err(AuthError::InvalidApiKey.into());
            }
            let (_, _, role) = api_keys::authenticate(db, tenant, &credential).await?;
            // Starting a run is an editor's power, as for manual runs.
            if role < Role::Editor {
                return Err(AuthError::Forbidden { required: Role::Editor.as_str() }.into());
            }
            Ok(())
        }
        WebhookAuth::Hmac(hmac) => {
            let secret = hmac_secret(db, keys, tenant, &hmac.secret_from_connection).await?;
            let timestamp = hmac.timestamp_header.as_deref().and_then(|h| delivery.header(h));
            let (signed, signed_at) = webhook_replay::signed_content(hmac, timestamp, &delivery.body)?;
            verify_signature(hmac, secret.as_bytes(), &signed, delivery.header(&hmac.header))?;
            webhook_replay::check_fresh(hmac, signed_at, chrono::Utc::now())
        }
    }
}

/// The shared secret: an `api_key` connection's value or a `bearer`
/// connection's token (the kinds the definition allows here).
async fn hmac_secret(db: &TenantDb, keys: &KeyRing, tenant: &Tenant, name: &Name) -> Result<String, WebhookError> {
    let unavailable = || WebhookError::SecretUnavailable(name.to_string());
    match connections::open(db, keys, tenant, name).await?.ok_or_else(unavailable)?.spec {
        ConnectionSpec::ApiKey(c) => Ok(c.value.expose().to_string()),
        ConnectionSpec::Bearer(c) => Ok(c.token.expose().to_string()),
        _ => Err(unavailable()),
    }
}

/// Check `header` (after the configured prefix) against the HMAC of `body`.
/// The comparison is constant-time (`Mac::verify_slice`), so timing does not
/// reveal how much of a forged signature was right.
fn verify_signature(config: &HmacAuth, secret: &[u8], body: &[u8], header: Option<&str>) -> Result<(), WebhookError> {
    let value = header.ok_or(WebhookError::InvalidSignature)?.trim();
    let value = match config.prefix.as_deref() {
        Some(prefix) => value.strip_prefix(prefix).ok_or(WebhookError::InvalidSignature)?,
        None => value,
    };
    let signature = match config.encoding {
        SignatureEncoding::Hex => decode_hex(value),
        SignatureEncoding::Base64 => base64::engine::general_purpose::STANDARD.decode(value).ok(),
    }
    .ok_or(WebhookError::InvalidSignature)?;
    match config.algorithm {
        HmacAlgorithm::Sha256 => {
            let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
            mac.update(body);
            mac.verify_slice(&signature).map_err(|_| WebhookError::InvalidSignature)
        }
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok()).collect()
}

/// The body as the execution sees it: JSON as JSON, text as a string,
/// nothing as `null`; any other media type is refused.
fn body_value(content_type: Option<&str>, body: &[u8]) -> Result<Value, WebhookError> {
    let essence = content_type.and_then(|c| c.split(';').next()).unwrap_or("").trim().to_ascii_lowercase();
    if body.is_empty() {
        Ok(Value::Null)
    } else if essence == "application/json" || essence.ends_with("+json") {
        serde_json::from_slice(body).map_err(|e| WebhookError::InvalidJson(e.to_string()))
    } else if essence.starts_with("text/") {
        String::from_utf8(body.to_vec()).map(Value::String).map_err(|_| WebhookError::NotUtf8)
    } else {
        Err(WebhookError::UnsupportedMediaType)
    }
}

#[cfg(test)]
mod tests {
    use actix_web::ResponseError;
    use proptest::prelude::*;

    use super::*;
    use crate::error::ApiError;

    /// Media types as senders write them, right and wrong.
    fn content_type() -> impl Strategy<Value = Option<String>> {
        let known = prop::sample::select(vec![
            "application/json", "application/JSON; charset=utf-8", "text/plain", "text/csv;x", "application/vnd.x+json",
            "application/xml", "multipart/form-data; boundary=x", ";", "", " application/json ;",
        ]);
        prop::option::of(prop_oneof![known.prop_map(str::to_owned), ".{0,60}"])
    }

    /// Bodies: random bytes, JSON-looking text, deep nesting, big numbers.
    fn body() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..2_000),
            "[\\[\\]{}:,\"a-z0-9 .eE+-]{0,400}".prop_map(String::into_bytes),
            (1usize..200_000, prop::sample::select(vec!["[", "{\"a\":"])).prop_map(|(depth, open)| open.repeat(depth).into_bytes()),
            "-?[0-9]{1,500}(\\.[0-9]{0,50})?(e[+-]?[0-9]{1,6})?".prop_map(String::into_bytes),
        ]
    }

    /// A rejection must be a 4xx with a code.
    fn refused_with_a_code(e: WebhookError) -> Result<(), TestCaseError> {
        let answer = ApiError::from(e);
        prop_assert!(answer.status_code().is_client_error(), "{}", answer.status_code());
        prop_assert!(!answer.code().is_empty());
        Ok(())
    }

    proptest! {
        #![proptest_config(crate::hostile_config())]

        /// Any body under any media type, with any headers and query: a
        /// payload for the execution, or a refusal that is a 4xx with a code.
        #[test]
        fn hostile_webhook_deliveries_become_a_payload_or_a_4xx(
            content_type in content_type(),
            body in body(),
            headers in prop::collection::vec(("[a-z-]{1,20}", ".{0,80}"), 0..12),
            query in prop::collection::vec((".{0,10}", ".{0,20}"), 0..12),
        ) {
            let delivery = Delivery { content_type, body, headers, query };
            match delivery.payload() {
                Ok(payload) => prop_assert_eq!(&payload["kind"], "webhook"),
                Err(e) => refused_with_a_code(e)?,
            }
        }

        /// Any signature header, under any encoding and prefix: it verifies
        /// or is refused 401 `invalid_signature`.
        #[test]
        fn hostile_signature_headers_are_refused_with_a_code(
            header in prop::option::of(".{0,200}"),
            base64 in any::<bool>(),
            prefix in prop::option::of("[a-z0-9=]{0,8}"),
            body in prop::collection::vec(any::<u8>(), 0..256),
        ) {
            let encoding = if base64 { SignatureEncoding::Base64 } else { SignatureEncoding::Hex };
            let config = hmac(encoding, prefix.as_deref());
            if let Err(e) = verify_signature(&config, b"secret", &body, header.as_deref()) {
                prop_assert!(matches!(e, WebhookError::InvalidSignature));
                refused_with_a_code(e)?;
            }
        }
    }

    fn hmac(encoding: SignatureEncoding, prefix: Option<&str>) -> HmacAuth {
        HmacAuth {
            secret_from_connection: Name::try_from("secret".to_string()).unwrap(),
            header: "X-Signature".into(),
            algorithm: HmacAlgorithm::Sha256,
            encoding,
            prefix: prefix.map(Into::into),
            timestamp_header: None,
            tolerance: None,
        }
    }

    fn sign(secret: &[u8], body: &[u8]) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(body);
        mac.finalize().into_bytes().to_vec()
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn a_signature_checks_in_hex_or_base64_after_its_prefix() {
        let (secret, body) = (b"s3cret".as_slice(), br#"{"a":1}"#.as_slice());
        let hex_sig = format!("sha256={}", hex(&sign(secret, body)));
        let config = hmac(SignatureEncoding::Hex, Some("sha256="));
        assert!(verify_signature(&config, secret, body, Some(&hex_sig)).is_ok());
        assert!(verify_signature(&config, secret, body, Some(&hex_sig.to_uppercase().replace("SHA256=", "sha256="))).is_ok());
        let b64 = base64::engine::general_purpose::STANDARD.encode(sign(secret, body));
        assert!(verify_signature(&hmac(SignatureEncoding::Base64, None), secret, body, Some(&b64)).is_ok());

        let refused = |header: Option<&str>, body: &[u8]| {
            matches!(verify_signature(&config, secret, body, header), Err(WebhookError::InvalidSignature))
        };
        assert!(refused(None, body));
        assert!(refused(Some(&hex_sig), br#"{"a":2}"#), "another body");
        assert!(refused(Some(hex_sig.trim_start_matches("sha256=")), body), "prefix missing");
        assert!(refused(Some("sha256=zz"), body), "not hex");
        assert!(refused(Some(&hex_sig[..hex_sig.len() - 2]), body), "truncated");
        assert!(verify_signature(&config, b"other", body, Some(&hex_sig)).is_err(), "another secret");
    }

    #[test]
    fn bodies_are_json_text_or_nothing() {
        assert_eq!(body_value(Some("application/json; charset=utf-8"), br#"{"a":1}"#).unwrap(), json!({"a": 1}));
        assert_eq!(body_value(Some("application/vnd.api+json"), b"[1]").unwrap(), json!([1]));
        assert_eq!(body_value(Some("text/plain"), b"hello").unwrap(), json!("hello"));
        assert_eq!(body_value(None, b"").unwrap(), Value::Null);
        assert!(matches!(body_value(Some("application/json"), b"{"), Err(WebhookError::InvalidJson(_))));
        assert!(matches!(body_value(Some("application/octet-stream"), b"\x00"), Err(WebhookError::UnsupportedMediaType)));
        assert!(matches!(body_value(None, b"x"), Err(WebhookError::UnsupportedMediaType)));
    }

    #[test]
    fn the_payload_hides_credentials_and_keeps_repeated_values() {
        let delivery = Delivery {
            content_type: Some("application/json".into()),
            body: b"{}".to_vec(),
            headers: [("authorization", "Bearer x"), ("cookie", "c"), ("x-api-key", "k"), ("x-tag", "a"), ("x-tag", "b")]
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .to_vec(),
            query: [("q", "1"), ("q", "2"), ("r", "3")].map(|(n, v)| (n.to_string(), v.to_string())).to_vec(),
        };
        let payload = delivery.payload().unwrap();
        assert_eq!(payload, json!({"kind": "webhook", "body": {}, "headers": {"x-tag": "a, b"}, "query": {"q": ["1", "2"], "r": "3"}}));
    }
}
