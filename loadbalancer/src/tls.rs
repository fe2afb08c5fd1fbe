//! HTTPS: rustls on the aws-lc-rs provider, HTTP/2 and HTTP/1.1 offered by
//! ALPN, the certificate picked by SNI (exact name, then one wildcard
//! label, then the default certificate).

use std::{collections::HashMap, path::Path, sync::Arc};

use rustls::{
    crypto::aws_lc_rs,
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
    ServerConfig,
};
use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsConfig;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {reason}")]
    Pem { path: String, reason: String },
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
}

pub fn acceptor(config: &TlsConfig) -> Result<TlsAcceptor, TlsError> {
    let provider = Arc::new(aws_lc_rs::default_provider());
    let resolver = SniResolver::load(config, &provider)?;
    let mut server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server)))
}

#[derive(Debug)]
struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` stored as `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    fn load(config: &TlsConfig, provider: &rustls::crypto::CryptoProvider) -> Result<Self, TlsError> {
        let (mut exact, mut wildcard, mut default) = (HashMap::new(), HashMap::new(), None);
        for cert in &config.certificates {
            let key = Arc::new(certified_key(&cert.cert_file, &cert.key_file, provider)?);
            if cert.domains.is_empty() && default.is_none() {
                default = Some(key.clone());
            }
            for domain in &cert.domains {
                let domain = domain.to_ascii_lowercase();
                match domain.strip_prefix("*.") {
                    Some(parent) => wildcard.insert(parent.to_string(), key.clone()),
                    None => exact.insert(domain, key.clone()),
                };
            }
        }
        let first = || config.certificates.first().map(|c| certified_key(&c.cert_file, &c.key_file, provider).map(Arc::new));
        let default = match default {
            Some(key) => key,
            None => first().transpose()?.ok_or_else(|| TlsError::Pem { path: "tls.certificates".into(), reason: "none configured".into() })?,
        };
        Ok(Self { exact, wildcard, default })
    }

    fn pick(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = name.map(str::to_ascii_lowercase) else { return self.default.clone() };
        if let Some(key) = self.exact.get(&name) {
            return key.clone();
        }
        let parent = name.split_once('.').map(|(_, parent)| parent);
        parent.and_then(|p| self.wildcard.get(p)).cloned().unwrap_or_else(|| self.default.clone())
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(hello.server_name()))
    }
}

fn certified_key(cert: &Path, key: &Path, provider: &rustls::crypto::CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let pem_error = |path: &Path, e: &dyn std::fmt::Display| TlsError::Pem { path: path.display().to_string(), reason: e.to_string() };
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(cert).map_err(|e| pem_error(cert, &e))?.collect::<Result<_, _>>().map_err(|e| pem_error(cert, &e))?;
    if chain.is_empty() {
        return Err(pem_error(cert, &"no certificate in the file"));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, &e))?;
    let signing = provider.key_provider.load_private_key(private)?;
    Ok(CertifiedKey::new(chain, signing))
}
