//! Tenant slugs and the schema names derived from them.
//!
//! A slug is the only tenant-supplied text that ever reaches SQL as an
//! identifier, so it is parsed once into a type that cannot hold anything
//! else ("parse, don't validate").

use std::fmt;

/// Names that are never tenants: they are kept for the platform itself, for
/// the load balancer and for well-known subdomains.
const RESERVED: &[&str] = &[
    "www", "api", "admin", "platform", "static", "assets", "app", "auth", "login", "mail",
    "smtp", "ftp", "sftp", "status", "health", "metrics", "docs", "help", "support", "cdn",
    "internal", "system", "root", "tessera", "localhost", "public", "pg", "postgres",
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SlugError {
    #[error("a tenant slug is 2 to 40 characters: a lowercase letter, then lowercase letters, digits or '-'")]
    Malformed,
    #[error("'{0}' is a reserved name")]
    Reserved(String),
}

/// A validated tenant slug: `^[a-z][a-z0-9-]{1,39}$`, not reserved.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantSlug(String);

impl TenantSlug {
    pub fn parse(raw: &str) -> Result<Self, SlugError> {
        let bytes = raw.as_bytes();
        let well_formed = (2..=40).contains(&bytes.len())
            && bytes[0].is_ascii_lowercase()
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
        if !well_formed {
            return Err(SlugError::Malformed);
        }
        // Punycode labels would let a look-alike of another tenant's name in.
        if RESERVED.contains(&raw) || raw.starts_with("xn--") {
            return Err(SlugError::Reserved(raw.to_string()));
        }
        Ok(Self(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The PostgreSQL schema that holds this tenant's data.
    pub fn schema_name(&self) -> SchemaName {
        SchemaName(format!("t_{}", self.0.replace('-', "_")))
    }
}

impl fmt::Display for TenantSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0) // honours width and alignment, for tables
    }
}

/// A tenant schema name, `t_` followed by `[a-z0-9_]`. It is built only from a
/// [`TenantSlug`] or read back from `platform.tenants` (and re-checked), so it
/// is safe to splice into DDL after quoting.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SchemaName(String);

impl SchemaName {
    /// Re-check a name read from the database before it is used in SQL.
    pub fn from_stored(raw: String) -> Option<Self> {
        let ok = raw.len() <= 63
            && raw.starts_with("t_")
            && raw[2..]
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        ok.then_some(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as a quoted SQL identifier.
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }
}

impl fmt::Display for SchemaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_slugs() {
        for ok in ["acme", "a1", "big-co", "x-2-y"] {
            assert!(TenantSlug::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(TenantSlug::parse("big-co").unwrap().schema_name().as_str(), "t_big_co");
    }

    #[test]
    fn refuses_malformed_and_reserved() {
        let long = "a".repeat(41);
        for bad in ["", "a", "1acme", "-acme", "Acme", "ac_me", "ac.me", "acmé", "../x", long.as_str()] {
            assert_eq!(TenantSlug::parse(bad), Err(SlugError::Malformed), "{bad}");
        }
        for reserved in ["www", "api", "admin", "platform", "static", "xn--80ak6aa92e"] {
            assert!(matches!(TenantSlug::parse(reserved), Err(SlugError::Reserved(_))), "{reserved}");
        }
    }

    #[test]
    fn stored_schema_names_are_rechecked() {
        assert!(SchemaName::from_stored("t_acme".into()).is_some());
        assert!(SchemaName::from_stored("public".into()).is_none());
        assert!(SchemaName::from_stored("t_a\"; drop".into()).is_none());
    }
}
