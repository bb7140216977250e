//! TLS to `https://` upstreams (SPEC §1 `tls_server_name` / `ca`, §3): the rustls client
//! configuration of one upstream, built once per configuration, and the words a 502 uses
//! when a handshake fails.
//!
//! - Trust: the upstream's `ca` file, else the operating system's roots (read once per
//!   configuration load from the OS store by `rustls-native-certs`: `SSL_CERT_FILE`,
//!   `SSL_CERT_DIR`, or the distribution's bundle).
//! - Name: `tls_server_name` is sent as SNI and checked against the certificate; without it
//!   no SNI is sent and the certificate must cover the target's IP address.
//! - TLS 1.2 and 1.3, ALPN `http/1.1`, client-side session resumption (tickets and session
//!   ids, [`CLIENT_SESSIONS`] per upstream) so that a new pooled connection is a short
//!   handshake.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CertificateError, ClientConfig, Error, RootCertStore};

use super::stream::HandshakeError;

/// TLS sessions each upstream's client configuration keeps for resumption.
pub const CLIENT_SESSIONS: usize = 256;

/// The operating system's trust roots, or why there are none.
pub fn system_roots() -> Result<Vec<CertificateDer<'static>>, String> {
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        let why = found
            .errors
            .first()
            .map_or("none found".to_string(), |e| e.to_string());
        return Err(format!(
            "no system trust roots ({why}); install ca-certificates or set `ca`"
        ));
    }
    Ok(found.certs)
}

/// The client configuration of one upstream, trusting `roots`.
pub fn client_config(roots: &[CertificateDer<'static>]) -> Result<Arc<ClientConfig>, String> {
    let mut store = RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(roots.iter().cloned());
    if added == 0 {
        return Err("none of the trust roots is a usable CA certificate".to_string());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(store)
        .with_no_client_auth();
    cfg.alpn_protocols = super::ALPN.iter().map(|p| p.to_vec()).collect();
    cfg.resumption = rustls::client::Resumption::in_memory_sessions(CLIENT_SESSIONS);
    Ok(Arc::new(cfg))
}

/// The name to verify for a target: `tls_server_name`, else the target's IP address.
pub fn server_name(
    configured: Option<&ServerName<'static>>,
    ip: std::net::IpAddr,
) -> ServerName<'static> {
    configured
        .cloned()
        .unwrap_or_else(|| ServerName::IpAddress(ip.into()))
}

/// Why an upstream handshake failed, in the words of the 502's message.
pub fn upstream_failure(e: &HandshakeError) -> String {
    match e {
        HandshakeError::Tls(Error::InvalidCertificate(c)) => match c {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                "upstream certificate not trusted".to_string()
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                "upstream name mismatch".to_string()
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "upstream certificate expired".to_string()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "upstream certificate not valid yet".to_string()
            }
            other => format!("upstream certificate rejected: {other:?}"),
        },
        HandshakeError::Tls(Error::AlertReceived(alert)) => {
            format!("upstream TLS handshake failed: the backend sent the alert {alert:?}")
        }
        HandshakeError::Tls(Error::NoApplicationProtocol) => {
            "upstream TLS handshake failed: the backend does not speak http/1.1 (ALPN)".to_string()
        }
        HandshakeError::Tls(other) => format!("upstream TLS handshake failed: {other}"),
        HandshakeError::NoServerName => "upstream TLS handshake failed: no server name".to_string(),
        HandshakeError::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            "upstream closed the connection during the TLS handshake".to_string()
        }
        HandshakeError::Io(io) => format!("upstream TLS handshake failed: {}", io.kind()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_failures_in_words() {
        let cases: Vec<(HandshakeError, &str)> = vec![
            (
                HandshakeError::Tls(Error::InvalidCertificate(CertificateError::UnknownIssuer)),
                "upstream certificate not trusted",
            ),
            (
                HandshakeError::Tls(Error::InvalidCertificate(CertificateError::NotValidForName)),
                "upstream name mismatch",
            ),
            (
                HandshakeError::Tls(Error::InvalidCertificate(CertificateError::Expired)),
                "upstream certificate expired",
            ),
            (
                HandshakeError::Tls(Error::AlertReceived(
                    rustls::AlertDescription::HandshakeFailure,
                )),
                "upstream TLS handshake failed: the backend sent the alert HandshakeFailure",
            ),
            (
                HandshakeError::Io(std::io::ErrorKind::UnexpectedEof.into()),
                "upstream closed the connection during the TLS handshake",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(upstream_failure(&e), want);
        }
    }

    #[test]
    fn without_a_configured_name_the_target_ip_is_verified() {
        let ip: std::net::IpAddr = "10.0.0.7".parse().unwrap();
        assert_eq!(server_name(None, ip), ServerName::IpAddress(ip.into()));
        let dns = ServerName::try_from("clb.internal").unwrap();
        assert_eq!(server_name(Some(&dns), ip), dns);
    }

    #[test]
    fn a_configuration_needs_a_usable_root() {
        assert!(client_config(&[]).is_err());
        assert!(client_config(&[CertificateDer::from(vec![1, 2, 3])]).is_err());
    }
}
