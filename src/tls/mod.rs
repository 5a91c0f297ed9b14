//! The shared TLS layer: one certificate store for every virtual server of
//! every protocol, SNI choice among a virtual server's certificates, the
//! `min_tls_version` floor, and a stream that upgrades in place for
//! STARTTLS/STLS. The protocol cores never see any of it; they are told
//! only that TLS is up, and the session gets the [`TlsInfo`] facts.
//!
//! One crypto provider (ring) is used everywhere; see DEPENDENCIES.md for why
//! having two compiled in would make rustls panic.

pub mod certs;
pub mod client;
pub mod selfsigned;
mod stream;

pub use certs::{CertError, CertStore, LoadedCert, ReloadReport};
pub use stream::Stream;

use crate::config::TlsVersion;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::sync::{Arc, OnceLock};

/// The ring provider, shared.
pub fn provider() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())).clone()
}

/// What a session may know about its TLS: for logs, Received headers and
/// the queue's per-message record.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TlsInfo {
    /// `TLSv1.2` or `TLSv1.3`.
    pub version: String,
    /// The IANA suite name, e.g. `TLS_AES_256_GCM_SHA384` or
    /// `TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`.
    pub cipher: String,
    /// The name the client asked for (server side) or that we asked for (client side).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
}

impl TlsInfo {
    /// Version and cipher for a session's log line, `-` without TLS.
    pub fn log_fields(tls: Option<&TlsInfo>) -> (&str, &str) {
        match tls {
            Some(t) => (t.version.as_str(), t.cipher.as_str()),
            None => ("-", "-"),
        }
    }

    pub fn from_common(conn: &rustls::CommonState, sni: Option<String>) -> TlsInfo {
        let version = match conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
            Some(v) => format!("{v:?}"),
            None => "unknown".to_string(),
        };
        let cipher = conn.negotiated_cipher_suite().map(|s| iana_name(s.suite())).unwrap_or_else(|| "unknown".into());
        TlsInfo { version, cipher, sni }
    }
}

/// The IANA registry's name of a suite: rustls names the TLS 1.3 suites
/// `TLS13_*`, the registry `TLS_*` (RFC 8446 §B.4); TLS 1.2 names agree.
pub fn iana_name(suite: rustls::CipherSuite) -> String {
    let name = format!("{suite:?}");
    match name.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => name,
    }
}

/// Picks among one virtual server's certificates by SNI: an exact or
/// wildcard SAN match, else the first. Looks the store up per handshake,
/// so a reload takes effect on the next connection.
#[derive(Debug)]
struct SniResolver {
    store: Arc<CertStore>,
    names: Vec<String>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let all = self.store.snapshot();
        let mine = self.names.iter().filter_map(|n| all.get(n));
        if let Some(sni) = hello.server_name() {
            if let Some(c) = mine.clone().find(|c| c.covers(sni)) {
                return Some(c.key.clone());
            }
        }
        mine.map(|c| c.key.clone()).next()
    }
}

/// The rustls server configuration of one virtual server.
pub fn server_config(
    store: Arc<CertStore>,
    certificates: &[String],
    min: TlsVersion,
) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let versions: &[&'static rustls::SupportedProtocolVersion] = match min {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver { store, names: certificates.to_vec() }));
    Ok(Arc::new(config))
}
