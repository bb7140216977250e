//! TLS termination (SPEC §5): the rustls server configuration of one configuration, its SNI
//! certificate resolver, certificate checks for `ringway check`, and [`stream::TlsStream`],
//! the client stream over TLS.
//!
//! - One [`rustls::ServerConfig`] per configuration, built at load and shared by every worker
//!   through an `Arc`: TLS 1.2 and 1.3, rustls's default suites (ring provider), ALPN
//!   `h2` and `http/1.1` (SPEC §10), session
//!   resumption with tickets and a bounded session cache.
//! - [`SniResolver`]: exact name, then one wildcard label. No SNI, or a name no certificate
//!   covers: no certificate, so the handshake fails with an alert.

pub mod client;
pub mod der;
pub mod stream;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::Certificate;
use crate::router::HostPattern;

/// A certificate that expires sooner than this is a warning in `check`'s summary.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);
/// TLS sessions kept for resumption (stateful, TLS 1.2 without tickets), per configuration.
pub const SESSION_CACHE_ENTRIES: usize = 4096;
/// The ALPN protocols offered to upstreams: HTTP/1.1 only.
pub const ALPN: &[&[u8]] = &[b"http/1.1"];
/// The ALPN protocols the HTTPS listeners offer clients: HTTP/2, then HTTP/1.1 (SPEC §10).
pub const SERVER_ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// Picks a certificate by SNI: exact name first, then a one-label wildcard.
pub struct SniResolver {
    exact: HashMap<Box<str>, Arc<CertifiedKey>>,
    /// Keyed by the part after `*.`.
    wildcard: HashMap<Box<str>, Arc<CertifiedKey>>,
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniResolver")
            .field("exact", &self.exact.keys().collect::<Vec<_>>())
            .field("wildcard", &self.wildcard.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl SniResolver {
    /// The certificate for a server name, if any covers it.
    pub fn lookup(&self, name: &str) -> Option<&Arc<CertifiedKey>> {
        let name = name.strip_suffix('.').unwrap_or(name);
        let mut lower = [0u8; crate::router::host::MAX_HOST_BYTES];
        if name.len() > lower.len() {
            return None;
        }
        let lower = &mut lower[..name.len()];
        lower.copy_from_slice(name.as_bytes());
        lower.make_ascii_lowercase();
        let name = std::str::from_utf8(lower).ok()?;
        self.exact.get(name).or_else(|| {
            crate::router::host::wildcard_key(name).and_then(|suffix| self.wildcard.get(suffix))
        })
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        hello.server_name().and_then(|n| self.lookup(n)).cloned()
    }
}

/// What checking the certificates found: errors per certificate index, and warnings.
#[derive(Default)]
pub struct Checked {
    pub keys: Vec<Option<Arc<CertifiedKey>>>,
    pub errors: Vec<(usize, &'static str, String)>,
    pub warnings: Vec<String>,
}

/// Loads each certificate's key, checks that it matches, that the chain parses, and its
/// validity at `now`.
pub fn check_certificates(certs: &[Certificate], now: SystemTime) -> Checked {
    let provider = rustls::crypto::ring::default_provider();
    let now_secs = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut out = Checked::default();
    for (i, c) in certs.iter().enumerate() {
        let mut ok = true;
        for (n, der) in c.chain.iter().enumerate() {
            match der::validity(der) {
                Ok((_, not_after)) if n == 0 => {
                    let name = c.cert_file.display();
                    if not_after <= now_secs {
                        out.errors.push((
                            i,
                            "cert",
                            format!(
                                "the certificate in {name} expired ({})",
                                der::date(not_after)
                            ),
                        ));
                        ok = false;
                    } else if not_after - now_secs < EXPIRY_WARNING.as_secs() as i64 {
                        out.warnings.push(format!(
                            "warning: certificates[{i}]: the certificate in {name} expires soon ({})",
                            der::date(not_after)
                        ));
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    out.errors.push((
                        i,
                        "cert",
                        format!(
                            "certificate {} of the chain in {} does not parse: {e}",
                            n + 1,
                            c.cert_file.display()
                        ),
                    ));
                    ok = false;
                }
            }
        }
        let key = match provider.key_provider.load_private_key(c.key.clone_key()) {
            Ok(k) => Some(k),
            Err(e) => {
                out.errors.push((
                    i,
                    "key",
                    format!("the key in {} is not usable: {e}", c.key_file.display()),
                ));
                None
            }
        };
        let certified = key.and_then(|k| {
            let ck = CertifiedKey::new(c.chain.clone(), k);
            match ck.keys_match() {
                Ok(()) => Some(ck),
                Err(e) => {
                    let why = match e {
                        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                            "it does not match".to_string()
                        }
                        other => other.to_string(),
                    };
                    out.errors.push((
                        i,
                        "key",
                        format!(
                            "the key in {} is not the key of the certificate in {}: {why}",
                            c.key_file.display(),
                            c.cert_file.display()
                        ),
                    ));
                    None
                }
            }
        });
        out.keys
            .push(if ok { certified.map(Arc::new) } else { None });
    }
    out
}

/// The server configuration for checked certificates (`keys[i]` is `certs[i]`'s key).
pub fn server_config(
    certs: &[Certificate],
    keys: &[Option<Arc<CertifiedKey>>],
) -> Result<Arc<ServerConfig>, String> {
    let mut resolver = SniResolver {
        exact: HashMap::new(),
        wildcard: HashMap::new(),
    };
    for (c, k) in certs.iter().zip(keys) {
        let Some(k) = k else { continue };
        for h in &c.hosts {
            // The first certificate that names a host serves it.
            let _ = match h {
                HostPattern::Exact(n) => resolver.exact.entry(n.clone()).or_insert(k.clone()),
                HostPattern::Wildcard(n) => resolver.wildcard.entry(n.clone()).or_insert(k.clone()),
            };
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    cfg.alpn_protocols = SERVER_ALPN.iter().map(|p| p.to_vec()).collect();
    cfg.session_storage = rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
    cfg.ticketer = rustls::crypto::ring::Ticketer::new().map_err(|e| format!("TLS: {e}"))?;
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sni_picks_exact_then_one_wildcard_label() {
        let key = rustls::crypto::ring::default_provider()
            .key_provider
            .load_private_key(rustls_pki_types::PrivateKeyDer::Pkcs8(ring_pkcs8().into()))
            .unwrap();
        let a = Arc::new(CertifiedKey::new(Vec::new(), key.clone()));
        let b = Arc::new(CertifiedKey::new(Vec::new(), key));
        let r = SniResolver {
            exact: [("api.example.com".into(), a.clone())]
                .into_iter()
                .collect(),
            wildcard: [("example.com".into(), b.clone())].into_iter().collect(),
        };
        assert!(Arc::ptr_eq(r.lookup("api.example.com").unwrap(), &a));
        assert!(Arc::ptr_eq(r.lookup("API.Example.com.").unwrap(), &a));
        assert!(Arc::ptr_eq(r.lookup("x.example.com").unwrap(), &b));
        assert!(r.lookup("a.b.example.com").is_none());
        assert!(r.lookup("example.com").is_none());
        assert!(r.lookup("other.test").is_none());
    }

    fn ring_pkcs8() -> Vec<u8> {
        let rng = ring::rand::SystemRandom::new();
        ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &rng,
        )
        .unwrap()
        .as_ref()
        .to_vec()
    }
}
