//! OAuth 2.0 client credentials: fetching an access token from a
//! connection's token endpoint, and the node's cache of tokens per tenant
//! and connection, so steps do not ask for a token on every request.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use serde::Deserialize;
use uuid::Uuid;

use super::{
    http::HttpClient,
    io::{IoError, scrub},
};
use crate::{
    definition::OAuth2ClientCredentialsConnection,
    egress::{denied_in, Egress},
};

/// A token is used until this long before it expires, so a request never
/// leaves with a token that expires on the way.
const EXPIRY_MARGIN: Duration = Duration::from_secs(30);
/// How long a token without `expires_in` is kept.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// Bound on a token request.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(15);

/// An access token and when to stop using it.
#[derive(Clone)]
pub struct Token {
    pub access_token: String,
    pub refresh_at: Instant,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Ask `connection`'s token endpoint for a token (the client credentials
/// grant, client id and secret in HTTP basic auth as RFC 6749 §2.3.1 asks),
/// through `tenant`'s gated client for the endpoint. A redirect is not
/// followed: the client secret goes to the configured endpoint only.
pub async fn fetch_token(
    http: &HttpClient,
    egress: &Egress,
    tenant: Uuid,
    connection: &OAuth2ClientCredentialsConnection,
) -> Result<Token, IoError> {
    let secrets = [connection.client_secret.expose().to_string()];
    let mut form = vec![("grant_type", "client_credentials".to_string())];
    if !connection.scopes.is_empty() {
        form.push(("scope", connection.scopes.join(" ")));
    }
    let url = reqwest::Url::parse(&connection.token_url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| IoError::ConnectionUnavailable("the token_url is not an http or https URL".into()))?;
    let client = http.client_for(egress, tenant, &url).await?;
    let answer = client
        .post(url)
        .basic_auth(&connection.client_id, Some(connection.client_secret.expose()))
        .form(&form)
        .timeout(TOKEN_TIMEOUT)
        .send()
        .await
        .map_err(|e| match denied_in(&e) {
            Some(denied) => IoError::EgressDenied(denied),
            None => IoError::ConnectionFailed(scrub(&format!("token request failed: {}", chain(&e)), &secrets)),
        })?;
    let status = answer.status();
    let body = answer.text().await.map_err(|e| IoError::ConnectionFailed(format!("token request failed: {}", chain(&e))))?;
    if !status.is_success() {
        let excerpt = super::io::excerpt(&scrub(&body, &secrets), 200);
        return Err(IoError::ConnectionUnavailable(format!("the token endpoint answered {}: {excerpt}", status.as_u16())));
    }
    let token: TokenAnswer = serde_json::from_str(&body)
        .map_err(|_| IoError::ConnectionUnavailable("the token endpoint's answer has no `access_token`".into()))?;
    let lifetime = token.expires_in.map(Duration::from_secs).unwrap_or(DEFAULT_LIFETIME);
    // `expires_in` is the token endpoint's to choose: a huge one must not overflow the clock.
    let now = Instant::now();
    let refresh_at = now.checked_add(lifetime.saturating_sub(EXPIRY_MARGIN)).unwrap_or(now + DEFAULT_LIFETIME);
    Ok(Token { access_token: token.access_token, refresh_at })
}

/// An error with its sources, which is where reqwest says what went wrong.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Tokens by tenant and connection name. An entry remembers the connection
/// it was fetched for, so a re-applied connection (new secret, new
/// endpoint) gets a new token.
#[derive(Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<(Uuid, String), (OAuth2ClientCredentialsConnection, Token)>>,
}

impl TokenCache {
    /// A token for `name`, from the cache while it is fresh.
    pub async fn token(
        &self,
        http: &HttpClient,
        egress: &Egress,
        tenant: Uuid,
        name: &str,
        connection: &OAuth2ClientCredentialsConnection,
    ) -> Result<String, IoError> {
        let key = (tenant, name.to_string());
        if let Some((cached_for, token)) = self.entries.lock().unwrap_or_else(PoisonError::into_inner).get(&key)
            && cached_for == connection
            && token.refresh_at > Instant::now()
        {
            return Ok(token.access_token.clone());
        }
        let token = fetch_token(http, egress, tenant, connection).await?;
        let access_token = token.access_token.clone();
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).insert(key, (connection.clone(), token));
        Ok(access_token)
    }

    /// Drop `name`'s token: the API refused it (401), so it was revoked
    /// or expired early.
    pub fn forget(&self, tenant: Uuid, name: &str) {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).remove(&(tenant, name.to_string()));
    }
}
