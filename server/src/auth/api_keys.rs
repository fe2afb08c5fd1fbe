//! Per-tenant API keys: random, shown once, stored only as a SHA-256 digest.
//!
//! A key carries 256 random bits, so a fast digest is the right tool here
//! (argon2 is for low-entropy passwords) and lookups stay one indexed read.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{AuthError, Role};
use crate::tenancy::TenantTx;

pub const KEY_PREFIX: &str = "tsk_";
/// How much of a key is kept in clear so people can tell keys apart.
const DISPLAY_PREFIX_LEN: usize = 12;

pub struct NewKey {
    pub secret: String,
    pub display_prefix: String,
    pub digest: Vec<u8>,
}

pub fn generate() -> NewKey {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    NewKey { display_prefix: secret[..DISPLAY_PREFIX_LEN].to_string(), digest: digest(&secret), secret }
}

pub fn digest(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

pub fn looks_like_key(credential: &str) -> bool {
    credential.starts_with(KEY_PREFIX)
}

/// The key behind `secret` in this tenant, if it exists and is not revoked;
/// records its use (at most once a minute, to keep reads cheap).
pub async fn authenticate(tx: &mut TenantTx, secret: &str) -> Result<(Uuid, String, Role), AuthError> {
    let row = tx
        .query_opt(
            "SELECT id, name, role FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
            &[&digest(secret)],
        )
        .await?
        .ok_or(AuthError::InvalidApiKey)?;
    let id: Uuid = row.get(0);
    let role = Role::parse(row.get(2)).ok_or(AuthError::InvalidApiKey)?;
    tx.execute(
        "UPDATE api_keys SET last_used_at = now() \
         WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
        &[&id],
    )
    .await?;
    Ok((id, row.get(1), role))
}
