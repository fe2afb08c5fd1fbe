//! Per-tenant API keys: random, shown once, stored only as a SHA-256 digest.
//!
//! A key carries 256 random bits, so a fast digest is the right tool here
//! (argon2 is for low-entropy passwords) and lookups stay one indexed read.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{AuthError, Role};
use crate::{
    database::DbError,
    tenancy::{Tenant, TenantDb},
};

pub const KEY_PREFIX: &str = "tsk_";
/// How much of a key is kept in clear so people can tell keys apart.
const DISPLAY_PREFIX_LEN: usize = 12;

pub struct NewKey {
    pub secret: String,
    pub display_prefix: String,
    pub digest: Vec<u8>,
}

pub fn generate() -> NewKey {
    generate_with(KEY_PREFIX)
}

/// A key starting with `prefix`, which says what it is for: a tenant's own
/// API keys and its APIs' consumers' keys never pass for each other.
pub fn generate_with(prefix: &str) -> NewKey {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes));
    NewKey { display_prefix: secret[..DISPLAY_PREFIX_LEN].to_string(), digest: digest(&secret), secret }
}

pub fn digest(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

pub fn looks_like_key(credential: &str) -> bool {
    credential.starts_with(KEY_PREFIX)
}

/// The key behind `secret` in this tenant, if it exists and is not revoked;
/// records its use (at most once a minute, so reads stay cheap), all in one
/// statement.
pub async fn authenticate(db: &TenantDb, tenant: &Tenant, secret: &str) -> Result<(Uuid, String, Role), AuthError> {
    let rows = db
        .statement(
            tenant,
            "WITH key AS (SELECT id, name, role, last_used_at FROM @tenant.api_keys \
                          WHERE key_hash = $1 AND revoked_at IS NULL), \
                  touched AS (UPDATE @tenant.api_keys k SET last_used_at = now() FROM key \
                              WHERE k.id = key.id \
                                AND (key.last_used_at IS NULL OR key.last_used_at < now() - interval '1 minute')) \
             SELECT id, name, role FROM key",
            &[&digest(secret)],
        )
        .await?;
    let row = rows.first().ok_or(AuthError::InvalidApiKey)?;
    let role: Role = row.try_get(2).map_err(DbError::from)?;
    Ok((row.get(0), row.get(1), role))
}
