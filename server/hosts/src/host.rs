//! Host header → which part of the platform a request is for.
//!
//! This runs before any database work, so it must reject every hostile or
//! foreign host on its own: it only accepts ASCII names under the configured
//! base domain, with at most one label in front of it.

use crate::slug::{SlugError, TenantSlug};

/// What a request's host names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostTarget {
    /// The bare base domain: the platform-owner API.
    Platform,
    /// `<slug>.<base_domain>`.
    Tenant(TenantSlug),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HostError {
    #[error("the request has no Host header")]
    Missing,
    #[error("the Host header is not a valid host name")]
    Malformed,
    #[error("this server does not serve that domain")]
    ForeignDomain,
    #[error("no tenant can have that name: {0}")]
    NotATenant(#[from] SlugError),
}

/// Longest DNS name; anything longer is refused before it is looked at.
const MAX_HOST_LEN: usize = 253;

/// Classify `host` (as sent, possibly with a port) against `base_domain`.
pub fn classify(host: Option<&str>, base_domain: &str) -> Result<HostTarget, HostError> {
    let host = host.ok_or(HostError::Missing)?;
    if host.is_empty() {
        return Err(HostError::Missing);
    }
    if host.len() > MAX_HOST_LEN + 6 || !host.is_ascii() {
        return Err(HostError::Malformed);
    }
    let name = strip_port(host)?.to_ascii_lowercase();
    let name = name.strip_suffix('.').unwrap_or(&name);
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if name.is_empty() || !valid_chars || name.split('.').any(str::is_empty) {
        return Err(HostError::Malformed);
    }
    if name == base_domain {
        return Ok(HostTarget::Platform);
    }
    let label = name
        .strip_suffix(base_domain)
        .and_then(|rest| rest.strip_suffix('.'))
        .ok_or(HostError::ForeignDomain)?;
    if label.contains('.') {
        return Err(HostError::ForeignDomain);
    }
    Ok(HostTarget::Tenant(TenantSlug::parse(label)?))
}

fn strip_port(host: &str) -> Result<&str, HostError> {
    match host.rsplit_once(':') {
        None => Ok(host),
        Some((name, port)) if !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(name)
        }
        Some(_) => Err(HostError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(s: &str) -> HostTarget {
        HostTarget::Tenant(TenantSlug::parse(s).unwrap())
    }

    #[test]
    fn platform_and_tenant_hosts() {
        assert_eq!(classify(Some("localhost"), "localhost"), Ok(HostTarget::Platform));
        assert_eq!(classify(Some("localhost:8080"), "localhost"), Ok(HostTarget::Platform));
        assert_eq!(classify(Some("acme.localhost:8080"), "localhost"), Ok(tenant("acme")));
        assert_eq!(classify(Some("ACME.Localhost"), "localhost"), Ok(tenant("acme")));
        assert_eq!(classify(Some("acme.eu1.example.com"), "eu1.example.com"), Ok(tenant("acme")));
        assert_eq!(classify(Some("acme.localhost."), "localhost"), Ok(tenant("acme")));
    }

    #[test]
    fn malformed_and_foreign_hosts_are_refused() {
        let long = format!("{}.localhost", "a".repeat(300));
        assert_eq!(classify(None, "localhost"), Err(HostError::Missing));
        assert_eq!(classify(Some(""), "localhost"), Err(HostError::Missing));
        for bad in ["../etc.localhost", "acme..localhost", "аcme.localhost", long.as_str(), "acme.localhost:http", "a cme.localhost", "acme.localhost:123456"] {
            assert_eq!(classify(Some(bad), "localhost"), Err(HostError::Malformed), "{bad}");
        }
        for foreign in ["acme.evil.com", "evil.com", "a.b.localhost", "acmelocalhost", "127.0.0.1:8080"] {
            assert_eq!(classify(Some(foreign), "localhost"), Err(HostError::ForeignDomain), "{foreign}");
        }
        assert!(matches!(classify(Some("www.localhost"), "localhost"), Err(HostError::NotATenant(_))));
        assert!(matches!(classify(Some("Ab_c.localhost"), "localhost"), Err(HostError::Malformed)));
    }
}
