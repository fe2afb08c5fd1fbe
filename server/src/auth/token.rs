//! Signed access tokens (JWT, HS256).
//!
//! A token names exactly one audience: `tenant:<tenant id>` for a tenant's
//! users, `platform` for platform owners. The audience is checked on every
//! request against the host the request came to, so a token is worthless on
//! any other tenant's host and on the platform host.

use chrono::Utc;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{AuthError, Role};

const ISSUER: &str = "tessera";
pub const PLATFORM_AUDIENCE: &str = "platform";

pub fn tenant_audience(tenant_id: Uuid) -> String {
    format!("tenant:{tenant_id}")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub aud: String,
    pub iss: String,
    pub iat: i64,
    pub exp: i64,
    pub email: String,
    /// Tenant tokens only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
}

#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl_secs: i64,
}

#[derive(Debug, Serialize)]
pub struct IssuedToken {
    pub token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
}

impl TokenKeys {
    pub fn from_secret(secret: &[u8], ttl_secs: u64) -> Result<Self, String> {
        if secret.len() < 32 {
            return Err("the token secret must be at least 32 bytes".into());
        }
        Ok(Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            ttl_secs: ttl_secs as i64,
        })
    }

    pub fn issue(&self, sub: Uuid, email: &str, audience: String, tid: Option<Uuid>, role: Option<Role>) -> Result<IssuedToken, AuthError> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub,
            aud: audience,
            iss: ISSUER.into(),
            iat: now,
            exp: now + self.ttl_secs,
            email: email.into(),
            tid,
            role,
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AuthError::Token(e.to_string()))?;
        Ok(IssuedToken { token, token_type: "Bearer", expires_in: self.ttl_secs })
    }

    /// Decode and check signature, expiry, issuer and that the audience is
    /// exactly `audience`.
    pub fn verify(&self, token: &str, audience: &str) -> Result<Claims, AuthError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[audience]);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        validation.leeway = 30;
        let claims = decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|_| AuthError::InvalidToken)?
            .claims;
        if claims.aud != audience {
            return Err(AuthError::InvalidToken);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audience_binds_a_token_to_one_tenant() {
        let keys = TokenKeys::from_secret(&[7u8; 32], 60).unwrap();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let token = keys.issue(Uuid::new_v4(), "x@y.z", tenant_audience(a), Some(a), Some(Role::Admin)).unwrap().token;
        assert!(keys.verify(&token, &tenant_audience(a)).is_ok());
        assert!(matches!(keys.verify(&token, &tenant_audience(b)), Err(AuthError::InvalidToken)));
        assert!(matches!(keys.verify(&token, PLATFORM_AUDIENCE), Err(AuthError::InvalidToken)));
        let other = TokenKeys::from_secret(&[8u8; 32], 60).unwrap();
        assert!(matches!(other.verify(&token, &tenant_audience(a)), Err(AuthError::InvalidToken)));
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(TokenKeys::from_secret(b"short", 60).is_err());
    }
}
