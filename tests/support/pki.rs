//! Test certificates, generated per test in a temporary directory (nothing checked in that
//! could expire): a test CA, leaves it signs, and rustls configurations over them.

use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// A test CA in a temporary directory, with two leaves: `api.crt`/`api.key` for
/// `api.example.test` and `wild.crt`/`wild.key` for `*.wild.test`.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca_der: CertificateDer<'static>,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    pub fn new() -> Pki {
        Pki::named("ringway test CA")
    }

    /// A CA with its own common name (`ca.pem`) and the two standard leaves.
    pub fn named(ca_name: &str) -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, ca_name);
        let issuer = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.path().join("ca.pem"), issuer.pem()).unwrap();
        let pki = Pki {
            ca_der: issuer.der().clone(),
            issuer,
            dir,
        };
        pki.leaf("api", &["api.example.test"]);
        pki.leaf("wild", &["*.wild.test"]);
        pki
    }

    /// Writes `<file>.crt` and `<file>.key`: a leaf the CA signs for `names` (DNS names or
    /// IP addresses).
    pub fn leaf(&self, file: &str, names: &[&str]) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        std::fs::write(self.path(&format!("{file}.crt")), cert.pem()).unwrap();
        std::fs::write(self.path(&format!("{file}.key")), key.serialize_pem()).unwrap();
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    pub fn ca_file(&self) -> String {
        self.path("ca.pem").display().to_string()
    }

    /// `[[certificates]]` tables for the two standard leaves.
    pub fn certificates_section(&self) -> String {
        let mut s = String::new();
        for (name, host) in [("api", "api.example.test"), ("wild", "*.wild.test")] {
            s.push_str(&format!(
                "[[certificates]]\nhosts = [\"{host}\"]\ncert = \"{}\"\nkey = \"{}\"\n\n",
                self.path(&format!("{name}.crt")).display(),
                self.path(&format!("{name}.key")).display()
            ));
        }
        s
    }

    /// A rustls client trusting the test CA; `versions` empty: rustls's defaults.
    pub fn client(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
        alpn: &[&[u8]],
        sni: bool,
    ) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider);
        let builder = if versions.is_empty() {
            builder.with_safe_default_protocol_versions()
        } else {
            builder.with_protocol_versions(versions)
        };
        let mut cfg = builder
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        cfg.enable_sni = sni;
        Arc::new(cfg)
    }

    /// A rustls server presenting the leaf `<file>` (TLS 1.2 and 1.3, session tickets on).
    pub fn server(&self, file: &str) -> Arc<ServerConfig> {
        let chain = CertificateDer::pem_file_iter(self.path(&format!("{file}.crt")))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(self.path(&format!("{file}.key"))).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        cfg.ticketer = rustls::crypto::ring::Ticketer::new().unwrap();
        Arc::new(cfg)
    }
}
