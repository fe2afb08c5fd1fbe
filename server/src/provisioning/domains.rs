//! Custom domains (docs/clustering.md, "Custom domains"): a tenant's hooks
//! and APIs served on a domain it brings, e.g.
//! `integrations.acme.com`, once the tenant proved it controls that
//! domain's DNS.
//!
//! Proof is a TXT record, as certificate authorities and hosting platforms
//! ask for it: `_tessera-challenge.<domain>` must hold the value shown when
//! the domain was added. Only a verified domain routes (the load balancer
//! reads `platform.tenant_domains` and hears of every change by trigger),
//! so a tenant cannot take over a domain, or another tenant's, by naming it.

use std::net::SocketAddr;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use hickory_resolver::{
    config::{ConnectionConfig, NameServerConfig, ResolverConfig},
    net::runtime::TokioRuntimeProvider,
    TokioResolver,
};
use serde::Serialize;
use tokio_postgres::error::SqlState;

use crate::database::DbError;

/// The label under a domain that holds its proof.
const CHALLENGE_LABEL: &str = "_tessera-challenge";

#[derive(Debug, thiserror::Error)]
pub enum DomainsError {
    #[error("'{0}' is not a domain a tenant can bring: {1}")]
    Invalid(String, &'static str),
    #[error("domain '{0}' is taken")]
    Taken(String),
    #[error("tenant '{tenant}' has no domain '{domain}'")]
    NotFound { tenant: String, domain: String },
    #[error("there is no tenant '{0}'")]
    NoTenant(String),
    #[error("no TXT record {name} with value \"{value}\" was found; publish it and verify again")]
    NotVerified { name: String, value: String },
    #[error("DNS lookup failed: {0}")]
    Lookup(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<tokio_postgres::Error> for DomainsError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Db(e.into())
    }
}

impl From<deadpool_postgres::PoolError> for DomainsError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Db(e.into())
    }
}

/// The TXT record that proves a domain is the tenant's.
#[derive(Debug, Clone, Serialize)]
pub struct Challenge {
    pub record_type: &'static str,
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TenantDomain {
    pub domain: String,
    pub verified: bool,
    pub verified_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// What to publish (kept after verification: the record may stay).
    pub verification: Challenge,
}

impl TenantDomain {
    fn from_row(row: &tokio_postgres::Row) -> Self {
        let domain: String = row.get(0);
        let token: String = row.get(1);
        let verified_at: Option<DateTime<Utc>> = row.get(2);
        Self {
            verification: challenge(&domain, &token),
            verified: verified_at.is_some(),
            verified_at,
            created_at: row.get(3),
            domain,
        }
    }
}

fn challenge(domain: &str, token: &str) -> Challenge {
    Challenge { record_type: "TXT", name: format!("{CHALLENGE_LABEL}.{domain}"), value: format!("tessera-verification={token}") }
}

const COLUMNS: &str = "d.domain, d.token, d.verified_at, d.created_at";

/// A domain as written by a person (any case, a trailing dot), checked:
/// a DNS name of at least two labels, not an address, and not the
/// platform's own domain or under it.
pub fn normalize(raw: &str, base_domain: &str) -> Result<String, DomainsError> {
    let domain = raw.trim().trim_end_matches('.').to_ascii_lowercase();
    let invalid = |why| Err(DomainsError::Invalid(raw.trim().to_string(), why));
    let labels: Vec<&str> = domain.split('.').collect();
    if domain.len() > 253 || labels.len() < 2 {
        return invalid("a domain has at least two labels and at most 253 characters");
    }
    let label_ok = |l: &&str| {
        !l.is_empty() && l.len() <= 63 && !l.starts_with('-') && !l.ends_with('-') && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if !labels.iter().all(label_ok) {
        return invalid("labels are letters, digits and inner hyphens, 63 characters at most");
    }
    if labels.last().is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit())) {
        return invalid("an address is not a domain");
    }
    let base = base_domain.trim_end_matches('.').to_ascii_lowercase();
    if domain == base || domain.ends_with(&format!(".{base}")) {
        return invalid("the platform's own domain and its subdomains are not for tenants to bring");
    }
    Ok(domain)
}

/// Add `domain` to tenant `slug`, unverified, with a fresh challenge; the
/// same tenant adding it again gets the existing one back.
pub async fn add(pool: &Pool, base_domain: &str, slug: &str, domain: &str) -> Result<TenantDomain, DomainsError> {
    let domain = normalize(domain, base_domain)?;
    let client = pool.get().await?;
    let tenant = tenant_id(&**client, slug).await?;
    let token = random_token();
    let inserted = client
        .query_opt(
            &format!(
                "INSERT INTO platform.tenant_domains AS d (domain, tenant_id, token) VALUES ($1, $2, $3) \
                 ON CONFLICT (domain) DO UPDATE SET domain = d.domain WHERE d.tenant_id = $2 RETURNING {COLUMNS}"
            ),
            &[&domain, &tenant, &token],
        )
        .await;
    match inserted {
        Ok(Some(row)) => Ok(TenantDomain::from_row(&row)),
        // Another tenant's: say so without saying whose.
        Ok(None) => Err(DomainsError::Taken(domain)),
        Err(e) if e.code() == Some(&SqlState::CHECK_VIOLATION) => Err(DomainsError::Invalid(domain, "refused by the directory's rules")),
        Err(e) => Err(e.into()),
    }
}

pub async fn list(pool: &Pool, slug: &str) -> Result<Vec<TenantDomain>, DomainsError> {
    let client = pool.get().await?;
    let tenant = tenant_id(&**client, slug).await?;
    let rows = client
        .query(&format!("SELECT {COLUMNS} FROM platform.tenant_domains d WHERE d.tenant_id = $1 ORDER BY d.domain"), &[&tenant])
        .await?;
    Ok(rows.iter().map(TenantDomain::from_row).collect())
}

pub async fn remove(pool: &Pool, slug: &str, domain: &str) -> Result<(), DomainsError> {
    let client = pool.get().await?;
    let tenant = tenant_id(&**client, slug).await?;
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    let removed = client.execute("DELETE FROM platform.tenant_domains WHERE domain = $1 AND tenant_id = $2", &[&domain, &tenant]).await?;
    if removed == 0 {
        return Err(DomainsError::NotFound { tenant: slug.to_string(), domain });
    }
    Ok(())
}

/// Look the challenge up in DNS (`nameservers`, or the system's resolver
/// when empty) and mark the domain verified when it is there. A verified
/// domain verifies again without a lookup.
pub async fn verify(pool: &Pool, nameservers: &[SocketAddr], slug: &str, domain: &str) -> Result<TenantDomain, DomainsError> {
    let client = pool.get().await?;
    let tenant = tenant_id(&**client, slug).await?;
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    let row = client
        .query_opt(&format!("SELECT {COLUMNS} FROM platform.tenant_domains d WHERE d.domain = $1 AND d.tenant_id = $2"), &[&domain, &tenant])
        .await?
        .ok_or_else(|| DomainsError::NotFound { tenant: slug.to_string(), domain: domain.clone() })?;
    let found = TenantDomain::from_row(&row);
    if found.verified {
        return Ok(found);
    }
    let Challenge { name, value, .. } = found.verification.clone();
    if !txt_values(nameservers, &name).await?.iter().any(|v| *v == value) {
        return Err(DomainsError::NotVerified { name, value });
    }
    let row = client
        .query_one(
            &format!("UPDATE platform.tenant_domains d SET verified_at = now() WHERE d.domain = $1 RETURNING {COLUMNS}"),
            &[&domain],
        )
        .await?;
    tracing::info!(tenant = %slug, domain = %domain, "custom domain verified");
    Ok(TenantDomain::from_row(&row))
}

/// Every TXT string at `name`; none when the name does not exist.
async fn txt_values(nameservers: &[SocketAddr], name: &str) -> Result<Vec<String>, DomainsError> {
    let lookup_failed = |e: &dyn std::fmt::Display| DomainsError::Lookup(e.to_string());
    let builder = if nameservers.is_empty() {
        TokioResolver::builder_tokio().map_err(|e| lookup_failed(&e))?
    } else {
        let servers = nameservers
            .iter()
            .map(|address| {
                let (mut udp, mut tcp) = (ConnectionConfig::udp(), ConnectionConfig::tcp());
                udp.port = address.port();
                tcp.port = address.port();
                NameServerConfig::new(address.ip(), true, vec![udp, tcp])
            })
            .collect();
        TokioResolver::builder_with_config(ResolverConfig::from_parts(None, vec![], servers), TokioRuntimeProvider::default())
    };
    let resolver = builder.build().map_err(|e| lookup_failed(&e))?;
    // Fully qualified: no search domain is tried.
    match resolver.txt_lookup(format!("{name}.")).await {
        Ok(lookup) => Ok(lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                hickory_resolver::proto::rr::RData::TXT(txt) => Some(txt.to_string()),
                _ => None,
            })
            .collect()),
        Err(e) if e.is_no_records_found() || e.is_nx_domain() => Ok(Vec::new()),
        Err(e) => Err(lookup_failed(&e)),
    }
}

async fn tenant_id(client: &impl tokio_postgres::GenericClient, slug: &str) -> Result<uuid::Uuid, DomainsError> {
    let row = client.query_opt("SELECT id FROM platform.tenants WHERE slug = $1", &[&slug]).await?;
    row.map(|r| r.get(0)).ok_or_else(|| DomainsError::NoTenant(slug.to_string()))
}

fn random_token() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn a_brought_domain_is_a_dns_name_outside_the_platform_s_own() {
        assert_eq!(normalize(" Integrations.Acme.COM. ", "example.com").unwrap(), "integrations.acme.com");
        for bad in ["acme", "example.com", "acme.example.com", "10.0.0.1", "a..b.com", "-a.com", "a_b.com", "acme.com:443", "ac me.com", ""] {
            assert!(normalize(bad, "example.com").is_err(), "{bad}");
        }
        assert!(normalize(&format!("{}.com", "a".repeat(64)), "example.com").is_err());
    }
}
