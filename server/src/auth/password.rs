//! Password hashing with argon2id at OWASP's recommended cost
//! (19 MiB, 2 passes, 1 lane), off the async threads.

use std::sync::{Arc, OnceLock};

use argon2::{
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Algorithm, Argon2, Params, Version,
};
use rand::RngCore;
use tokio::sync::Semaphore;

use super::AuthError;

pub const MIN_PASSWORD_LEN: usize = 8;
const DUMMY_PASSWORD: &str = "tessera-dummy-password-never-valid";
/// Hashing cost grows with input; refuse absurd inputs before hashing.
pub const MAX_PASSWORD_LEN: usize = 1024;

#[derive(Clone)]
pub struct Passwords {
    /// Each hash holds 19 MiB; bound how many run at once.
    permits: Arc<Semaphore>,
    /// Verified against when the account does not exist, so an unknown user
    /// costs the same time as a wrong password. Made on first need: a CLI
    /// command that only hashes never pays for it.
    dummy_hash: Arc<OnceLock<String>>,
}

fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("OWASP argon2id parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hash_blocking(password: &str) -> Result<String, AuthError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| AuthError::Hashing(e.to_string()))?;
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hashing(e.to_string()))
}

fn verify_blocking(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => argon2().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

impl Passwords {
    pub fn new(max_concurrent: usize) -> Self {
        Self { permits: Arc::new(Semaphore::new(max_concurrent.max(1))), dummy_hash: Arc::new(OnceLock::new()) }
    }

    /// Make the dummy hash now, off the request path (servers call this at
    /// start so even the first unknown-user login takes the usual time).
    pub fn warm_up(&self) {
        let dummy = self.dummy_hash.clone();
        tokio::task::spawn_blocking(move || {
            dummy.get_or_init(|| hash_blocking(DUMMY_PASSWORD).expect("hashing works"));
        });
    }

    /// Check the length rules a new password must meet.
    pub fn check_policy(password: &str) -> Result<(), String> {
        if password.chars().count() < MIN_PASSWORD_LEN {
            return Err(format!("a password has at least {MIN_PASSWORD_LEN} characters"));
        }
        if password.len() > MAX_PASSWORD_LEN {
            return Err(format!("a password has at most {MAX_PASSWORD_LEN} bytes"));
        }
        Ok(())
    }

    pub async fn hash(&self, password: String) -> Result<String, AuthError> {
        let _permit = self.permits.acquire().await.map_err(|e| AuthError::Hashing(e.to_string()))?;
        tokio::task::spawn_blocking(move || hash_blocking(&password))
            .await
            .map_err(|e| AuthError::Hashing(e.to_string()))?
    }

    /// Verify `password` against `hash`, or against a dummy when the account
    /// is unknown (always false then, in the same time).
    pub async fn verify(&self, password: String, hash: Option<String>) -> Result<bool, AuthError> {
        if password.len() > MAX_PASSWORD_LEN {
            return Ok(false);
        }
        let known = hash.is_some();
        let dummy = self.dummy_hash.clone();
        let _permit = self.permits.acquire().await.map_err(|e| AuthError::Hashing(e.to_string()))?;
        let ok = tokio::task::spawn_blocking(move || {
            let hash = hash.unwrap_or_else(|| {
                dummy.get_or_init(|| hash_blocking(DUMMY_PASSWORD).expect("hashing works")).clone()
            });
            verify_blocking(&password, &hash)
        })
            .await
            .map_err(|e| AuthError::Hashing(e.to_string()))?;
        Ok(ok && known)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let passwords = Passwords::new(2);
        let hash = passwords.hash("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(passwords.verify("correct horse".into(), Some(hash.clone())).await.unwrap());
        assert!(!passwords.verify("wrong horse".into(), Some(hash)).await.unwrap());
        assert!(!passwords.verify("tessera-dummy-password-never-valid".into(), None).await.unwrap());
    }
}
