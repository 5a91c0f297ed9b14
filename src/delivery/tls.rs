//! Client-side TLS for outbound SMTP: the rustls configurations behind the
//! connector policies (SPEC §7), and the short texts a failed handshake is
//! reported with.
//!
//! `opportunistic` and `required` accept any certificate (RFC 7435: an
//! encrypted channel beats none), but the chain is still checked against
//! the trust roots afterwards so `queue show` can say whether it would have
//! verified. `verify` lets rustls/webpki refuse the handshake unless the
//! chain reaches webpki-roots (or the connector's `tls_ca_file`) and names
//! the host. Nothing here opens a connection or reads a secret.

use crate::config::Connector;
use crate::util::LockExt;
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The TLS configurations of one trust store (webpki-roots, or a CA file).
#[derive(Clone, Debug)]
pub(crate) struct ConnectorTls {
    /// Accepts any certificate: `opportunistic`, `required`, implicit TLS without `verify`.
    pub any: Arc<ClientConfig>,
    /// Refuses a chain that does not verify or does not name the host.
    pub verifying: Arc<ClientConfig>,
    /// For reporting whether a certificate accepted by `any` would have verified.
    pub verifier: Arc<WebPkiServerVerifier>,
}

impl ConnectorTls {
    /// Whether `certs` verify for `name` now, without failing anything.
    pub fn would_verify(&self, certs: &[CertificateDer<'static>], name: &ServerName<'_>) -> bool {
        let Some((leaf, rest)) = certs.split_first() else { return false };
        self.verifier.verify_server_cert(leaf, rest, name, &[], UnixTime::now()).is_ok()
    }
}

/// A connector's TLS client configuration could not be made: its trust
/// roots did not load, or rustls refused the configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("connector {connector:?}: tls_ca_file {path}: {source}")]
    CaFile { connector: String, path: PathBuf, source: rustls_pki_types::pem::Error },
    #[error("connector {connector:?}: tls_ca_file {path}: not a usable CA certificate: {source}")]
    UnusableCa { connector: String, path: PathBuf, source: rustls::Error },
    #[error("connector {connector:?}: tls_ca_file {path}: no certificates in the file")]
    NoCertificates { connector: String, path: PathBuf },
    #[error("connector {connector:?}: TLS setup failed: {source}")]
    Build { connector: String, source: BuildError },
}

/// rustls refused to build a client configuration from the trust roots.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Verifier(#[from] rustls::client::VerifierBuilderError),
    #[error(transparent)]
    Config(#[from] rustls::Error),
}

/// Builds and caches [`ConnectorTls`] per trust store.
#[derive(Debug, Default)]
pub(crate) struct TlsClients {
    cache: Mutex<HashMap<Option<PathBuf>, ConnectorTls>>,
}

impl TlsClients {
    pub fn for_connector(&self, c: &Connector) -> Result<ConnectorTls, TlsSetupError> {
        let key = c.tls_ca_file.clone();
        if let Some(t) = self.cache.lock_or_recover().get(&key) {
            return Ok(t.clone());
        }
        let roots = match &key {
            Some(path) => roots_from_file(path, &c.name)?,
            None => RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() },
        };
        let t = build(roots).map_err(|source| TlsSetupError::Build { connector: c.name.clone(), source })?;
        self.cache.lock_or_recover().insert(key, t.clone());
        Ok(t)
    }
}

fn roots_from_file(path: &Path, connector: &str) -> Result<RootCertStore, TlsSetupError> {
    let (connector, path) = (connector.to_string(), path.to_path_buf());
    let mut roots = RootCertStore::empty();
    let unreadable = |source| TlsSetupError::CaFile { connector: connector.clone(), path: path.clone(), source };
    for cert in CertificateDer::pem_file_iter(&path).map_err(unreadable)? {
        let cert = cert.map_err(unreadable)?;
        roots.add(cert).map_err(|source| TlsSetupError::UnusableCa {
            connector: connector.clone(),
            path: path.clone(),
            source,
        })?;
    }
    if roots.is_empty() {
        return Err(TlsSetupError::NoCertificates { connector, path });
    }
    Ok(roots)
}

pub(crate) fn build(roots: RootCertStore) -> Result<ConnectorTls, BuildError> {
    let provider = crate::tls::provider();
    let versions = crate::tls::client::CLIENT_VERSIONS;
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    let verifying = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)?
        .with_webpki_verifier(verifier.clone())
        .with_no_client_auth();
    let any = crate::tls::client::accept_any_config()?;
    Ok(ConnectorTls { any, verifying: Arc::new(verifying), verifier })
}

/// The name to present (SNI) and verify: the host name, or the address
/// when the host is an IP literal or not a valid DNS name.
pub(crate) fn server_name(host: &str, ip: IpAddr) -> (ServerName<'static>, bool) {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return (ServerName::IpAddress(ip.into()), true);
    }
    match ServerName::try_from(host.to_string()) {
        Ok(n) => (n, true),
        Err(_) => (ServerName::IpAddress(ip.into()), false),
    }
}

/// The queue's short text for a failed handshake, e.g. `certificate not
/// trusted` (stage `tls`); details stay in the log.
pub(crate) fn handshake_failure_text(e: &io::Error) -> String {
    if let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        return match tls {
            rustls::Error::InvalidCertificate(c) => certificate_text(c).to_string(),
            other => format!("handshake failed: {}", crate::proto::smtp::client::clean_text(&other.to_string(), 120)),
        };
    }
    match e.kind() {
        io::ErrorKind::UnexpectedEof => "handshake failed: connection closed".into(),
        io::ErrorKind::TimedOut => "handshake failed: timed out".into(),
        io::ErrorKind::ConnectionReset => "handshake failed: connection reset".into(),
        _ => format!("handshake failed: {}", crate::proto::smtp::client::clean_text(&e.to_string(), 120)),
    }
}

fn certificate_text(c: &CertificateError) -> &'static str {
    match c {
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            "certificate name mismatch"
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => "certificate expired",
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => "certificate not yet valid",
        _ => "certificate not trusted",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_texts() {
        let e = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        assert_eq!(handshake_failure_text(&e), "certificate not trusted");
        let e = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
        );
        assert_eq!(handshake_failure_text(&e), "certificate name mismatch");
        let e = io::Error::new(io::ErrorKind::UnexpectedEof, "eof");
        assert_eq!(handshake_failure_text(&e), "handshake failed: connection closed");
        let e = io::Error::new(io::ErrorKind::InvalidData, rustls::Error::DecryptError);
        assert!(handshake_failure_text(&e).starts_with("handshake failed: "));
    }

    #[test]
    fn names_for_sni() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(matches!(server_name("mx.example.test", ip), (ServerName::DnsName(_), true)));
        assert!(matches!(server_name("10.0.0.1", ip), (ServerName::IpAddress(_), true)));
        assert!(matches!(server_name("bad name", ip), (ServerName::IpAddress(_), false)));
    }

    #[test]
    fn ca_file_errors_name_connector_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ca.pem");
        std::fs::write(&p, "not a pem").unwrap();
        let e = roots_from_file(&p, "internal").unwrap_err().to_string();
        assert!(e.contains("\"internal\"") && e.contains("ca.pem") && e.contains("no certificates"), "{e}");
        let e = roots_from_file(&dir.path().join("missing.pem"), "internal").unwrap_err().to_string();
        assert!(e.contains("missing.pem"), "{e}");
    }

    #[test]
    fn default_roots_build() {
        let t = build(RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() }).unwrap();
        let (name, _) = server_name("mx.example.test", "192.0.2.1".parse().unwrap());
        assert!(!t.would_verify(&[], &name));
    }
}
