//! DANE for SMTP (RFC 7672): TLSA records, and the rustls certificate
//! verifier that accepts a server's chain if and only if one of them
//! matches.
//!
//! Only what SMTP uses is usable (RFC 7672 §3.1): usages DANE-TA (2) and
//! DANE-EE (3), selectors full certificate (0) and SubjectPublicKeyInfo
//! (1), matching types exact (0), SHA-256 (1) and SHA-512 (2). DANE-EE
//! pins the leaf and ignores its names and dates (§3.1.1). DANE-TA names a
//! certificate of the presented chain as the trust anchor; the chain from
//! it must then validate, dates included, for the MX host name (the TLSA
//! base domain) or the recipient domain (§3.2.2). A secure TLSA RRset
//! without a usable record still makes TLS mandatory, unauthenticated
//! (§2.2). The handshake's own signatures are always checked with the ring
//! provider. Nothing here asks DNS or opens a connection: the delivery
//! code hands in records that validated (`mx::MxResolver::tlsa`).

use super::{PolicyKind, PolicyOutcome};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};
use std::fmt;
use std::sync::Arc;

/// The short text (after `tls: `) of a chain no TLSA record matched.
pub const NO_MATCH: &str = "dane: no TLSA record matched";

/// One TLSA record (RFC 6698 §2.1).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Tlsa {
    pub usage: u8,
    pub selector: u8,
    pub matching: u8,
    pub data: Vec<u8>,
}

impl fmt::Display for Tlsa {
    /// The presentation form RFC 8460 reports as `policy-string`: `3 1 1 ab12...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {} ", self.usage, self.selector, self.matching)?;
        for b in &self.data {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl Tlsa {
    /// Usable for SMTP (RFC 7672 §3.1): DANE-TA or DANE-EE, a known
    /// selector, a known matching type whose digest has the right length.
    pub fn is_usable(&self) -> bool {
        let length_ok = match self.matching {
            0 => !self.data.is_empty(),
            1 => self.data.len() == 32,
            2 => self.data.len() == 64,
            _ => false,
        };
        matches!(self.usage, 2 | 3) && matches!(self.selector, 0 | 1) && length_ok
    }

    /// Whether this record's association data matches `cert`.
    fn matches(&self, cert: &CertificateDer<'_>) -> bool {
        let selected: Vec<u8> = match self.selector {
            0 => cert.as_ref().to_vec(),
            1 => match x509_parser::parse_x509_certificate(cert.as_ref()) {
                Ok((_, c)) => c.tbs_certificate.subject_pki.raw.to_vec(),
                Err(_) => return false,
            },
            _ => return false,
        };
        match self.matching {
            0 => selected == self.data,
            1 => ring::digest::digest(&ring::digest::SHA256, &selected).as_ref() == self.data.as_slice(),
            2 => ring::digest::digest(&ring::digest::SHA512, &selected).as_ref() == self.data.as_slice(),
            _ => false,
        }
    }
}

/// No TLSA record matched the presented chain.
#[derive(Debug, thiserror::Error)]
#[error("no TLSA record matched the certificate chain")]
pub struct NoMatch;

/// DANE for one MX host: its validated TLSA records, the recipient domain
/// they protect, and the client configuration that enforces them.
#[derive(Clone, Debug)]
pub struct DaneHop {
    /// The policy domain (the recipient domain), for reports.
    pub domain: String,
    /// The MX host (the TLSA base domain).
    pub host: String,
    pub records: Vec<Tlsa>,
    /// rustls with [`DaneVerifier`]; SNI is the MX host name.
    pub config: Arc<ClientConfig>,
}

impl DaneHop {
    pub fn new(domain: &str, host: &str, records: Vec<Tlsa>) -> Result<DaneHop, rustls::Error> {
        let provider = crate::tls::provider();
        let mut names = Vec::new();
        for n in [host, domain] {
            if let Ok(name) = ServerName::try_from(n.to_string()) {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        let verifier = DaneVerifier { records: records.clone(), names, provider: provider.clone() };
        let config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(crate::tls::client::CLIENT_VERSIONS)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        Ok(DaneHop { domain: domain.to_string(), host: host.to_string(), records, config: Arc::new(config) })
    }

    /// At least one record can authenticate the server; without one, TLS
    /// is still required but not authenticated (RFC 7672 §2.2).
    pub fn authenticates(&self) -> bool {
        self.records.iter().any(Tlsa::is_usable)
    }

    /// This hop's result under the domain's DANE policy (RFC 8460): `failure`
    /// is the result-type, None on success.
    pub fn outcome(&self, failure: Option<&str>) -> PolicyOutcome {
        let failure = match failure {
            Some(f) => Some(f.to_string()),
            None if !self.authenticates() => Some("tlsa-invalid".to_string()),
            None => None,
        };
        PolicyOutcome {
            kind: PolicyKind::Tlsa,
            domain: self.domain.clone(),
            strings: self.records.iter().map(Tlsa::to_string).collect(),
            testing: false,
            failure,
        }
    }
}

/// Accepts a chain iff a usable TLSA record matches it (module doc).
#[derive(Debug)]
pub struct DaneVerifier {
    records: Vec<Tlsa>,
    /// The names a DANE-TA chain may be issued to: the MX host, the recipient domain.
    names: Vec<ServerName<'static>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl DaneVerifier {
    /// DANE-TA: `anchor` (a certificate of the chain) is trusted, and the
    /// chain must validate from it for one of the names.
    fn chain_from(
        &self,
        anchor: &CertificateDer<'_>,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> bool {
        let mut roots = RootCertStore::empty();
        if roots.add(anchor.clone().into_owned()).is_err() {
            return false;
        }
        let Ok(v) = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone()).build() else {
            return false;
        };
        self.names.iter().any(|n| v.verify_server_cert(end_entity, intermediates, n, &[], now).is_ok())
    }
}

impl ServerCertVerifier for DaneVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let usable: Vec<&Tlsa> = self.records.iter().filter(|r| r.is_usable()).collect();
        if usable.is_empty() {
            // RFC 7672 §2.2: mandatory TLS, no authentication possible
            return Ok(ServerCertVerified::assertion());
        }
        if usable.iter().any(|r| r.usage == 3 && r.matches(end_entity)) {
            return Ok(ServerCertVerified::assertion());
        }
        for r in usable.iter().filter(|r| r.usage == 2) {
            // the anchor must issue something: it is one of the chain's other certificates
            for anchor in intermediates.iter().filter(|c| r.matches(c)) {
                if self.chain_from(anchor, end_entity, intermediates, now) {
                    return Ok(ServerCertVerified::assertion());
                }
            }
        }
        Err(rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(NoMatch)))))
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The queue's text (after `tls: `) for a handshake that failed under
/// DANE: [`NO_MATCH`] when the verifier refused the chain.
pub fn handshake_failure_text(e: &std::io::Error) -> String {
    let refused = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()).is_some_and(|t| {
        matches!(t, rustls::Error::InvalidCertificate(CertificateError::Other(o)) if o.0.downcast_ref::<NoMatch>().is_some())
    });
    match refused {
        true => NO_MATCH.to_string(),
        false => format!("dane: {}", super::tls::handshake_failure_text(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(name: &str) -> CertificateDer<'static> {
        rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap().cert.der().clone()
    }

    fn digest(alg: &'static ring::digest::Algorithm, b: &[u8]) -> Vec<u8> {
        ring::digest::digest(alg, b).as_ref().to_vec()
    }

    #[test]
    fn selectors_and_matching_types() {
        let c = cert("mx.example.test");
        let (_, parsed) = x509_parser::parse_x509_certificate(c.as_ref()).unwrap();
        let spki = parsed.tbs_certificate.subject_pki.raw.to_vec();
        for (selector, selected) in [(0u8, c.as_ref().to_vec()), (1, spki)] {
            for (matching, data) in [
                (0u8, selected.clone()),
                (1, digest(&ring::digest::SHA256, &selected)),
                (2, digest(&ring::digest::SHA512, &selected)),
            ] {
                let r = Tlsa { usage: 3, selector, matching, data };
                assert!(r.is_usable() && r.matches(&c), "{r}");
                assert!(!r.matches(&cert("other.test")), "{r}");
            }
        }
        let r = Tlsa { usage: 3, selector: 1, matching: 1, data: vec![0xab; 32] };
        assert!(r.to_string().starts_with("3 1 1 abab"));
        assert!(!Tlsa { usage: 1, ..r.clone() }.is_usable(), "PKIX-EE is not for SMTP");
        assert!(!Tlsa { data: vec![1; 31], ..r.clone() }.is_usable(), "a SHA-256 digest is 32 bytes");
        assert!(!Tlsa { matching: 3, ..r }.is_usable());
    }

    #[test]
    fn outcomes_and_texts() {
        let good = Tlsa { usage: 3, selector: 1, matching: 1, data: vec![7; 32] };
        let hop = DaneHop::new("example.test", "mx.example.test", vec![good]).unwrap();
        assert!(hop.authenticates());
        let o = hop.outcome(None);
        assert_eq!((o.kind, o.domain.as_str(), o.failure.as_deref()), (PolicyKind::Tlsa, "example.test", None));
        assert_eq!(o.strings.len(), 1);
        let unusable =
            DaneHop::new("example.test", "mx.example.test", vec![Tlsa { usage: 0, ..hop.records[0].clone() }]);
        assert_eq!(unusable.unwrap().outcome(None).failure.as_deref(), Some("tlsa-invalid"));

        let e = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(NoMatch)))),
        );
        assert_eq!(handshake_failure_text(&e), NO_MATCH);
        let e = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "eof");
        assert_eq!(handshake_failure_text(&e), "dane: handshake failed: connection closed");
    }
}
