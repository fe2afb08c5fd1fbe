//! Sealing secrets at rest: connection credentials are stored encrypted and
//! authenticated (ChaCha20-Poly1305) under a key that never enters the
//! database.
//!
//! The node holds a key ring: the current key, which seals everything new,
//! and previous keys, which only open what they sealed. Every sealed value
//! is stored with the id of its key, so a key can be rotated without
//! rewriting anything at once: add the new key as `secrets.key`, move the
//! old one to `secrets.previous_keys`, and rows move to the new key as they
//! are re-sealed (`reseal`, or the next apply of the connection).
//!
//! Each value is bound to a context (the tenant and the connection it
//! belongs to) as associated data, so a sealed value copied into another
//! row or tenant does not open. This module never logs or formats a key or
//! a plaintext.

use std::{collections::HashMap, fmt, path::Path};

use base64::Engine;
use chacha20poly1305::{
    aead::{Aead, AeadCore, KeyInit, OsRng, Payload},
    ChaCha20Poly1305, Key, Nonce,
};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::config::SecretsConfig;

/// ChaCha20-Poly1305 nonces are 96 bits: random ones are safe for far more
/// values than a tenant will ever seal under one key.
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum SealingError {
    #[error(
        "no secrets key configured: set TESSERA_SECRETS__KEY (base64 of 32 random bytes, e.g. `openssl rand -base64 32`) \
         or TESSERA_SECRETS__KEY_FILE"
    )]
    NoKey,
    #[error("{origin}: a secrets key is base64 of exactly 32 bytes")]
    BadKey { origin: String },
    #[error("cannot read the secrets key file {path}: {message}")]
    KeyFile { path: String, message: String },
    #[error("sealed with key {0}, which is not in the key ring")]
    UnknownKey(String),
    /// Wrong key, wrong context or altered bytes: AEAD cannot tell which.
    #[error("a sealed value failed to open (wrong key or context, or altered)")]
    Tampered,
}

/// A sealed value: `nonce || ciphertext+tag`, and the id of the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub bytes: Vec<u8>,
}

struct RingKey {
    id: String,
    cipher: ChaCha20Poly1305,
    /// The audit trail's HMAC key (`audit.rs`), derived from this one so
    /// that it lives where the sealing key does, outside the database, and
    /// rotates with it; never the sealing key itself.
    audit: [u8; 32],
}

impl RingKey {
    fn new(bytes: &[u8; 32]) -> Self {
        let id = hex_prefix(&Sha256::digest(bytes));
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(bytes).expect("HMAC takes a key of any length");
        mac.update(b"tessera audit trail v1");
        let audit = mac.finalize().into_bytes().into();
        Self { id, cipher: ChaCha20Poly1305::new(&Key::from(*bytes)), audit }
    }
}

/// The first 8 hex digits of a key's SHA-256: names a key without revealing it.
fn hex_prefix(digest: &[u8]) -> String {
    digest.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// The current key and every key still accepted for opening.
pub struct KeyRing {
    current: String,
    keys: HashMap<String, RingKey>,
}

/// Key ids only: the keys themselves never reach a log.
impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing").field("current", &self.current).field("keys", &self.keys.keys()).finish()
    }
}

impl KeyRing {
    pub fn new(current: &[u8; 32], previous: &[[u8; 32]]) -> Self {
        let current = RingKey::new(current);
        let id = current.id.clone();
        let mut keys: HashMap<String, RingKey> = previous.iter().map(RingKey::new).map(|k| (k.id.clone(), k)).collect();
        keys.insert(id.clone(), current);
        Self { current: id, keys }
    }

    /// The ring the configuration describes: `secrets.key` (or else the key
    /// in `secrets.key_file`) is current; `secrets.previous_keys` only open.
    pub fn from_config(config: &SecretsConfig) -> Result<Self, SealingError> {
        let current = match (&config.key, &config.key_file) {
            (Some(key), _) => decode_key(key, "secrets.key")?,
            (None, Some(path)) => decode_key(&read_key_file(path)?, &path.display().to_string())?,
            (None, None) => return Err(SealingError::NoKey),
        };
        let previous = config
            .previous_keys
            .iter()
            .enumerate()
            .map(|(i, key)| decode_key(key, &format!("secrets.previous_keys[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(&current, &previous))
    }

    pub fn current_key_id(&self) -> &str {
        &self.current
    }

    /// The audit trail's key derived from the key `key_id`, if the ring has it.
    pub fn audit_key(&self, key_id: &str) -> Option<&[u8; 32]> {
        self.keys.get(key_id).map(|k| &k.audit)
    }

    /// Seal `plaintext` with the current key, bound to `context`.
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Sealed {
        let key = &self.keys[&self.current];
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ciphertext = key
            .cipher
            .encrypt(&nonce, Payload { msg: plaintext, aad: context })
            .expect("ChaCha20-Poly1305 encrypts any message shorter than 256 GiB");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&ciphertext);
        Sealed { key_id: key.id.clone(), bytes }
    }

    /// Open a value sealed under the key `key_id` with the same `context`.
    pub fn open(&self, sealed: &Sealed, context: &[u8]) -> Result<Vec<u8>, SealingError> {
        let key = self.keys.get(&sealed.key_id).ok_or_else(|| SealingError::UnknownKey(sealed.key_id.clone()))?;
        if sealed.bytes.len() < NONCE_LEN {
            return Err(SealingError::Tampered);
        }
        let (nonce, ciphertext) = sealed.bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("split at the nonce length");
        key.cipher
            .decrypt(&Nonce::from(nonce), Payload { msg: ciphertext, aad: context })
            .map_err(|_| SealingError::Tampered)
    }

    /// The same plaintext sealed with the current key: what rotation does
    /// to each stored value.
    pub fn reseal(&self, sealed: &Sealed, context: &[u8]) -> Result<Sealed, SealingError> {
        Ok(self.seal(&self.open(sealed, context)?, context))
    }
}

fn decode_key(text: &str, origin: &str) -> Result<[u8; 32], SealingError> {
    let bad = || SealingError::BadKey { origin: origin.to_string() };
    let bytes = base64::engine::general_purpose::STANDARD.decode(text.trim()).map_err(|_| bad())?;
    bytes.try_into().map_err(|_| bad())
}

fn read_key_file(path: &Path) -> Result<String, SealingError> {
    std::fs::read_to_string(path)
        .map_err(|e| SealingError::KeyFile { path: path.display().to_string(), message: e.to_string() })
}

/// A new random key, base64 as configuration holds it (`tessera dev`).
pub fn generate_key() -> String {
    base64::engine::general_purpose::STANDARD.encode(ChaCha20Poly1305::generate_key(&mut OsRng))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTEXT: &[u8] = b"tenant-1/connection/orders-db";

    fn key(byte: u8) -> [u8; 32] {
        [byte; 32]
    }

    #[test]
    fn what_is_sealed_opens_and_does_not_show_the_plaintext() {
        let ring = KeyRing::new(&key(1), &[]);
        let sealed = ring.seal(b"postgres://u:s3cr3t@h/db", CONTEXT);
        assert!(!sealed.bytes.windows(6).any(|w| w == b"s3cr3t"));
        assert_eq!(sealed.key_id, ring.current_key_id());
        assert_eq!(sealed.key_id.len(), 8);
        assert_eq!(ring.open(&sealed, CONTEXT).unwrap(), b"postgres://u:s3cr3t@h/db");
        // A fresh nonce each time: equal plaintexts do not look equal.
        assert_ne!(ring.seal(b"same", CONTEXT).bytes, ring.seal(b"same", CONTEXT).bytes);
    }

    #[test]
    fn another_key_or_context_does_not_open_it() {
        let sealed = KeyRing::new(&key(1), &[]).seal(b"secret", CONTEXT);
        let other = KeyRing::new(&key(2), &[]);
        assert!(matches!(other.open(&sealed, CONTEXT), Err(SealingError::UnknownKey(_))));
        // Same id claimed, different key: authentication fails.
        let forged = Sealed { key_id: other.current_key_id().into(), bytes: sealed.bytes.clone() };
        assert!(matches!(other.open(&forged, CONTEXT), Err(SealingError::Tampered)));
        let ring = KeyRing::new(&key(1), &[]);
        assert!(matches!(ring.open(&sealed, b"tenant-2/connection/orders-db"), Err(SealingError::Tampered)));
    }

    #[test]
    fn altered_bytes_are_refused() {
        let ring = KeyRing::new(&key(1), &[]);
        let sealed = ring.seal(b"secret", CONTEXT);
        for i in [0, NONCE_LEN, sealed.bytes.len() - 1] {
            let mut tampered = sealed.clone();
            tampered.bytes[i] ^= 0x01;
            assert!(matches!(ring.open(&tampered, CONTEXT), Err(SealingError::Tampered)), "byte {i}");
        }
        let truncated = Sealed { key_id: sealed.key_id.clone(), bytes: sealed.bytes[..5].to_vec() };
        assert!(matches!(ring.open(&truncated, CONTEXT), Err(SealingError::Tampered)));
    }

    #[test]
    fn after_rotation_old_values_open_and_reseal_moves_them_to_the_new_key() {
        let old = KeyRing::new(&key(1), &[]);
        let sealed = old.seal(b"secret", CONTEXT);
        let rotated = KeyRing::new(&key(2), &[key(1)]);
        assert_ne!(rotated.current_key_id(), old.current_key_id());
        assert_eq!(rotated.open(&sealed, CONTEXT).unwrap(), b"secret");
        let moved = rotated.reseal(&sealed, CONTEXT).unwrap();
        assert_eq!(moved.key_id, rotated.current_key_id());
        // Once the old key is retired, only the re-sealed value opens.
        let retired = KeyRing::new(&key(2), &[]);
        assert_eq!(retired.open(&moved, CONTEXT).unwrap(), b"secret");
        assert!(retired.open(&sealed, CONTEXT).is_err());
    }

    #[test]
    fn configuration_names_the_current_and_previous_keys() {
        let b64 = |k: [u8; 32]| base64::engine::general_purpose::STANDARD.encode(k);
        let config = SecretsConfig { key: Some(b64(key(2))), key_file: None, previous_keys: vec![b64(key(1))] };
        let ring = KeyRing::from_config(&config).unwrap();
        assert_eq!(ring.current_key_id(), KeyRing::new(&key(2), &[]).current_key_id());
        assert!(ring.open(&KeyRing::new(&key(1), &[]).seal(b"x", CONTEXT), CONTEXT).is_ok());
        assert!(!format!("{ring:?}").contains(&b64(key(2))));

        assert!(matches!(KeyRing::from_config(&SecretsConfig::default()), Err(SealingError::NoKey)));
        let short = SecretsConfig { key: Some(b64(key(1))[..20].into()), ..SecretsConfig::default() };
        assert!(matches!(KeyRing::from_config(&short), Err(SealingError::BadKey { .. })));
        let generated = SecretsConfig { key: Some(generate_key()), ..SecretsConfig::default() };
        assert!(KeyRing::from_config(&generated).is_ok());
    }

    #[test]
    fn a_key_file_holds_the_key_in_base64() {
        let path = std::env::temp_dir().join(format!("tessera-secrets-{}.key", uuid::Uuid::new_v4().simple()));
        std::fs::write(&path, generate_key() + "\n").unwrap();
        let config = SecretsConfig { key_file: Some(path.clone()), ..SecretsConfig::default() };
        assert!(KeyRing::from_config(&config).is_ok());
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(KeyRing::from_config(&config), Err(SealingError::KeyFile { .. })));
    }
}
