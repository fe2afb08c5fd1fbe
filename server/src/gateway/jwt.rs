//! `auth: jwt`: a call carries a token of the identity provider the tenant
//! names (`spec.jwt`), signed by a key of the provider's JWKS, from its
//! issuer, for one of its audiences, and not expired. The JWKS is fetched
//! through the tenant's egress gate and kept five minutes; a token signed
//! by a key not in it (the provider rotated) fetches it again, at most
//! once every 30 s, so unknown `kid`s cannot make the node hammer the
//! provider. Symmetric algorithms are refused: a key published in a JWKS
//! is public, and `HS256` under a public key would let anyone sign.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use jsonwebtoken::{
    decode, decode_header,
    jwk::{Jwk, JwkSet},
    Algorithm, DecodingKey, Validation,
};
use serde_json::{Map, Value};
use tessera_runtime::definition::ApiJwt;
use uuid::Uuid;

use super::{GatewayError, Outbound};
use crate::tenancy::Tenant;

/// How long a fetched JWKS is used.
const KEEP: Duration = Duration::from_secs(300);
/// The least time between two fetches of one JWKS for unknown keys.
const REFETCH_AFTER: Duration = Duration::from_secs(30);
/// The largest JWKS read.
const MAX_JWKS_BYTES: usize = 256 * 1024;
/// How long the provider has to answer.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 30;

/// The JWKS of each tenant's providers, as last fetched.
pub struct Jwks {
    sets: moka::sync::Cache<(Uuid, String), Arc<Fetched>>,
}

impl Default for Jwks {
    fn default() -> Self {
        Self { sets: moka::sync::Cache::builder().max_capacity(10_000).time_to_live(KEEP).build() }
    }
}

struct Fetched {
    set: JwkSet,
    at: Instant,
}

impl Jwks {
    /// The claims of `token`, when the provider signed it for this API.
    pub async fn verify(&self, outbound: &Outbound, tenant: &Tenant, provider: &ApiJwt, token: &str) -> Result<Map<String, Value>, GatewayError> {
        let invalid = |why: &str| GatewayError::InvalidToken(why.to_string());
        let header = decode_header(token).map_err(|_| invalid("it is not a JWT"))?;
        if matches!(header.alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
            return Err(invalid("symmetric signatures (HS256, HS384, HS512) are not accepted"));
        }
        let mut fetched = self.key_set(outbound, tenant, &provider.jwks_url, false).await?;
        if signing_key(&fetched.set, header.kid.as_deref()).is_none() && fetched.at.elapsed() >= REFETCH_AFTER {
            fetched = self.key_set(outbound, tenant, &provider.jwks_url, true).await?;
        }
        let jwk = signing_key(&fetched.set, header.kid.as_deref()).ok_or_else(|| invalid("no key of the identity provider's JWKS signed it"))?;
        if jwk.common.key_algorithm.is_some_and(|alg| name_of(&alg) != name_of(&header.alg)) {
            return Err(invalid("its algorithm is not its key's"));
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|_| invalid("its key in the JWKS cannot be used"))?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&provider.issuer]);
        validation.set_audience(&provider.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = LEEWAY_SECS;
        let data = decode::<Map<String, Value>>(token, &key, &validation).map_err(|e| GatewayError::InvalidToken(reason(&e)))?;
        Ok(data.claims)
    }

    async fn key_set(&self, outbound: &Outbound, tenant: &Tenant, url: &str, refetch: bool) -> Result<Arc<Fetched>, GatewayError> {
        let key = (tenant.id, url.to_string());
        if !refetch {
            if let Some(fetched) = self.sets.get(&key) {
                return Ok(fetched);
            }
        }
        let set = fetch(outbound, tenant, url).await.map_err(GatewayError::Jwks)?;
        let fetched = Arc::new(Fetched { set, at: Instant::now() });
        self.sets.insert(key, fetched.clone());
        Ok(fetched)
    }
}

async fn fetch(outbound: &Outbound, tenant: &Tenant, url: &str) -> Result<JwkSet, String> {
    let url = reqwest::Url::parse(url).map_err(|e| format!("the JWKS URL is not a URL: {e}"))?;
    let client = outbound.http.client_for(&outbound.egress, tenant.id, &url).await.map_err(|e| e.to_string())?;
    let mut response = client.get(url).timeout(FETCH_TIMEOUT).send().await.map_err(|e| unreachable(&e))?;
    if !response.status().is_success() {
        return Err(format!("the provider answered {}", response.status().as_u16()));
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| unreachable(&e))? {
        if bytes.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(format!("the JWKS is larger than {} KiB", MAX_JWKS_BYTES / 1024));
        }
        bytes.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("the answer is not a JWKS: {e}"))
}

fn unreachable(e: &reqwest::Error) -> String {
    match tessera_runtime::egress::denied_in(e) {
        Some(denied) => denied.to_string(),
        None if e.is_timeout() => format!("the provider did not answer within {} s", FETCH_TIMEOUT.as_secs()),
        None => "the provider could not be reached".into(),
    }
}

/// The key named by `kid`; without one, the set's only key.
fn signing_key<'a>(set: &'a JwkSet, kid: Option<&str>) -> Option<&'a Jwk> {
    match kid {
        Some(kid) => set.find(kid),
        None if set.keys.len() == 1 => set.keys.first(),
        None => None,
    }
}

/// An algorithm's name as JOSE writes it, for either of the crate's types.
fn name_of(alg: &impl serde::Serialize) -> Option<String> {
    serde_json::to_value(alg).ok()?.as_str().map(str::to_string)
}

/// What is wrong with a token, in words a caller can act on.
fn reason(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind::*;
    match e.kind() {
        ExpiredSignature => "it has expired".into(),
        ImmatureSignature => "it is not valid yet".into(),
        InvalidIssuer => "its issuer is not the API's identity provider".into(),
        InvalidAudience => "its audience is not this API's".into(),
        InvalidSignature => "its signature does not match".into(),
        MissingRequiredClaim(claim) => format!("it has no `{claim}` claim"),
        _ => "it cannot be read".into(),
    }
}

/// The caller a token names: its `claim` (`sub` unless the API says otherwise).
pub(super) fn consumer(claims: &Map<String, Value>, claim: &str) -> Result<String, GatewayError> {
    match claims.get(claim) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.chars().take(200).collect()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        _ => Err(GatewayError::InvalidToken(format!("it has no `{claim}` claim naming the caller"))),
    }
}
