//! TLS for the HTTPS listener: certificates from PEM files, picked per connection by the
//! client's SNI (exact host first, then a one-label wildcard, then the first certificate).

use std::collections::HashMap;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::TlsCertificate;

/// Picks a certificate by SNI.
#[derive(Debug)]
struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// By the parent domain of `*.parent`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    fn pick(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = sni.map(|s| s.trim_end_matches('.').to_ascii_lowercase()) else {
            return self.default.clone();
        };
        if let Some(k) = self.exact.get(&name) {
            return k.clone();
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(k) = self.wildcard.get(parent) {
                return k.clone();
            }
        }
        self.default.clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(hello.server_name()))
    }
}

/// Builds the TLS acceptor of `certs` (at least one); `http2` offers `h2` by ALPN.
pub fn acceptor(
    certs: &[TlsCertificate],
    http2: bool,
) -> Result<tokio_rustls::TlsAcceptor, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut exact = HashMap::new();
    let mut wildcard = HashMap::new();
    let mut default = None;
    for c in certs {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&c.cert_file)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("tls cert_file {}: {e}", c.cert_file.display()))?;
        if chain.is_empty() {
            return Err(format!(
                "tls cert_file {}: no certificate in it",
                c.cert_file.display()
            ));
        }
        let key = PrivateKeyDer::from_pem_file(&c.key_file)
            .map_err(|e| format!("tls key_file {}: {e}", c.key_file.display()))?;
        let key = CertifiedKey::from_der(chain, key, &provider).map_err(|e| {
            format!(
                "tls {} / {}: {e}",
                c.cert_file.display(),
                c.key_file.display()
            )
        })?;
        let key = Arc::new(key);
        default.get_or_insert_with(|| key.clone());
        for h in &c.hosts {
            let h = h.to_ascii_lowercase();
            match h.strip_prefix("*.") {
                Some(parent) => wildcard.insert(parent.to_owned(), key.clone()),
                None => exact.insert(h, key.clone()),
            };
        }
    }
    let default = default.ok_or("tls: no certificate configured")?;
    let resolver = SniResolver {
        exact,
        wildcard,
        default,
    };
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    cfg.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}
