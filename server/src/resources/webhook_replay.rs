//! Replay protection of HMAC webhooks: when the trigger names a
//! `timestamp_header`, the sender signs `<timestamp>.<body>` and a request
//! whose timestamp is further than `tolerance` (default 5 minutes) from now
//! is refused, so a captured request cannot be sent again later.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tessera_runtime::definition::HmacAuth;

use super::webhooks::WebhookError;

pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// What the signature covers, and the signing time when the trigger asks
/// for one. A missing or malformed timestamp is a bad signature: the
/// caller learns nothing about which part was wrong.
pub fn signed_content(config: &HmacAuth, timestamp: Option<&str>, body: &[u8]) -> Result<(Vec<u8>, Option<i64>), WebhookError> {
    if config.timestamp_header.is_none() {
        return Ok((body.to_vec(), None));
    }
    let text = timestamp.map(str::trim).ok_or(WebhookError::InvalidSignature)?;
    let seconds: i64 = text.parse().map_err(|_| WebhookError::InvalidSignature)?;
    let mut content = Vec::with_capacity(text.len() + 1 + body.len());
    content.extend_from_slice(text.as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    Ok((content, Some(seconds)))
}

/// Refuse a (correctly signed) request signed outside the tolerance, in
/// either direction: a clock ahead of ours is no licence to replay later.
pub fn check_fresh(config: &HmacAuth, signed_at: Option<i64>, now: DateTime<Utc>) -> Result<(), WebhookError> {
    let Some(signed_at) = signed_at else { return Ok(()) };
    let tolerance = config.tolerance.map_or(DEFAULT_TOLERANCE, |t| t.get());
    let skew = now.timestamp().abs_diff(signed_at);
    if skew > tolerance.as_secs() {
        return Err(WebhookError::StaleSignature { tolerance });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use tessera_runtime::definition::{HmacAlgorithm, Name, SignatureEncoding};

    use super::*;

    fn config(timestamp_header: Option<&str>) -> HmacAuth {
        HmacAuth {
            secret_from_connection: Name::try_from("secret".to_string()).unwrap(),
            header: "X-Signature".into(),
            algorithm: HmacAlgorithm::Sha256,
            encoding: SignatureEncoding::Hex,
            prefix: None,
            timestamp_header: timestamp_header.map(Into::into),
            tolerance: None,
        }
    }

    #[test]
    fn the_timestamp_is_signed_with_the_body_when_asked_for() {
        assert_eq!(signed_content(&config(None), Some("1"), b"{}").unwrap(), (b"{}".to_vec(), None));
        let with = config(Some("X-Tessera-Timestamp"));
        assert_eq!(signed_content(&with, Some("1700000000"), b"{}").unwrap(), (b"1700000000.{}".to_vec(), Some(1_700_000_000)));
        assert!(matches!(signed_content(&with, None, b"{}"), Err(WebhookError::InvalidSignature)));
        assert!(matches!(signed_content(&with, Some("yesterday"), b"{}"), Err(WebhookError::InvalidSignature)));
    }

    #[test]
    fn only_requests_within_the_tolerance_are_fresh() {
        let with = config(Some("X-Tessera-Timestamp"));
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        assert!(check_fresh(&with, Some(1_700_000_000 - 300), now).is_ok());
        assert!(check_fresh(&with, Some(1_700_000_000 + 300), now).is_ok());
        assert!(matches!(check_fresh(&with, Some(1_700_000_000 - 301), now), Err(WebhookError::StaleSignature { .. })));
        assert!(matches!(check_fresh(&with, Some(1_700_000_000 + 301), now), Err(WebhookError::StaleSignature { .. })));
        assert!(check_fresh(&config(None), None, now).is_ok());
    }
}
