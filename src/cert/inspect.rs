//! `postern cert show`: what an operator asks about a certificate — who it
//! names and who issued it, when it expires, its key, serial and SHA-256
//! fingerprint, whether it is self-signed, which virtual servers use it —
//! and the warnings worth acting on: expired or expiring within 30 days,
//! not yet valid, names that do not cover the server's hostname, RSA keys
//! under 2048 bits, a chain out of order. The same facts serve `cert
//! install`'s checks. This module only reads; it never writes a file. A
//! file that holds no usable chain is a [`ChainError`].

use super::{same_file, CommandError};
use crate::config::Config;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde::Serialize;
use std::path::Path;
use x509_parser::prelude::*;

/// Days before expiry from which a certificate is worth a warning.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// Everything `cert show` says about one certificate (the leaf of a chain).
/// Serialised as-is by `cert show --json`; the README documents the shape.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct CertInfo {
    /// The `[tls.certificates.NAME]` it is, when known.
    pub name: Option<String>,
    /// The file it was read from.
    pub path: Option<String>,
    /// RFC 4514 style, e.g. `CN=mx.example.test, O=Example`.
    pub subject: String,
    pub issuer: String,
    /// Subject alternative names: DNS names as written, IP addresses as text.
    pub sans: Vec<String>,
    /// RFC 3339, UTC.
    pub not_before: String,
    pub not_after: String,
    /// Whole days until `not_after`; negative once expired.
    pub days_left: i64,
    /// `ecdsa-p256`, `ecdsa-p384`, `ecdsa-p521`, `rsa`, `ed25519`, `ed448`,
    /// or the algorithm's OID.
    pub key_type: String,
    pub key_bits: usize,
    /// Hex bytes separated by colons, as openssl prints it.
    pub serial: String,
    /// SHA-256 of the DER certificate, lowercase hex without separators.
    pub fingerprint_sha256: String,
    pub self_signed: bool,
    /// Certificates in the file (leaf first).
    pub chain_length: usize,
    pub used_by: Vec<UsedBy>,
    pub warnings: Vec<String>,
    /// The DNS names TLS matches on: the SANs, or the CN when there are none.
    #[serde(skip)]
    pub dns_names: Vec<String>,
    #[serde(skip)]
    pub not_before_unix: i64,
    #[serde(skip)]
    pub not_after_unix: i64,
}

/// A virtual server that lists the certificate.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct UsedBy {
    pub server: String,
    /// First in its list: served when the client names no host (or one no
    /// certificate covers), so it must name the server's hostname.
    pub default: bool,
}

/// Why bytes read from a file are not a usable certificate chain. The text
/// is what follows the file's name in the operator's sentence ("FILE holds
/// no PEM certificate"): the caller, who knows the file, puts it first.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("holds broken PEM: {0}")]
    BrokenPem(#[source] rustls_pki_types::pem::Error),
    #[error("holds no PEM certificate")]
    NoPemCertificate,
    #[error("holds neither a PEM nor a DER certificate")]
    NeitherPemNorDer,
    #[error("holds no certificate")]
    Empty,
    /// `position` counts from 1, the leaf.
    #[error("certificate {position} of the chain is not valid X.509: {source}")]
    NotX509 { position: usize, source: x509_parser::nom::Err<X509Error> },
}

/// Read a chain from PEM (any number of `CERTIFICATE` blocks) or from a
/// single DER certificate, as some CAs hand them out.
pub fn parse_chain(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, ChainError> {
    if memchr::memmem::find(bytes, b"-----BEGIN").is_some() {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(bytes).collect::<Result<_, _>>().map_err(ChainError::BrokenPem)?;
        if chain.is_empty() {
            return Err(ChainError::NoPemCertificate);
        }
        return Ok(chain);
    }
    match X509Certificate::from_der(bytes) {
        Ok((&[], _)) => Ok(vec![CertificateDer::from(bytes.to_vec())]),
        _ => Err(ChainError::NeitherPemNorDer),
    }
}

/// The facts of a chain's leaf, and the warnings that need no configuration.
pub fn describe(chain: &[CertificateDer<'_>], now: i64) -> Result<CertInfo, ChainError> {
    let mut parsed = Vec::with_capacity(chain.len());
    for (i, der) in chain.iter().enumerate() {
        match X509Certificate::from_der(der.as_ref()) {
            Ok((_, c)) => parsed.push(c),
            Err(source) => return Err(ChainError::NotX509 { position: i + 1, source }),
        }
    }
    let Some(leaf) = parsed.first() else { return Err(ChainError::Empty) };
    let mut sans = Vec::new();
    let mut dns_names = Vec::new();
    if let Ok(Some(san)) = leaf.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => {
                    sans.push(d.to_string());
                    dns_names.push(d.to_ascii_lowercase());
                }
                GeneralName::IPAddress(b) => sans.push(ip_text(b)),
                GeneralName::RFC822Name(m) => sans.push(format!("email:{m}")),
                GeneralName::URI(u) => sans.push(format!("URI:{u}")),
                _ => {}
            }
        }
    }
    if dns_names.is_empty() {
        // RFC 6125 §6.4.4: the CN only counts when there are no DNS SANs
        dns_names.extend(leaf.subject().iter_common_name().filter_map(|cn| cn.as_str().ok()).map(str::to_lowercase));
    }
    let (key_type, key_bits) = key_description(leaf.public_key());
    let not_before_unix = leaf.validity().not_before.timestamp();
    let not_after_unix = leaf.validity().not_after.timestamp();
    let self_signed = leaf.subject().as_raw() == leaf.issuer().as_raw() && leaf.verify_signature(None).is_ok();
    let mut info = CertInfo {
        name: None,
        path: None,
        subject: leaf.subject().to_string(),
        issuer: leaf.issuer().to_string(),
        sans,
        not_before: rfc3339(not_before_unix),
        not_after: rfc3339(not_after_unix),
        days_left: (not_after_unix - now).div_euclid(86400),
        key_type,
        key_bits,
        serial: leaf.raw_serial_as_string(),
        fingerprint_sha256: super::sha256_hex(chain[0].as_ref()),
        self_signed,
        chain_length: chain.len(),
        used_by: Vec::new(),
        warnings: Vec::new(),
        dns_names,
        not_before_unix,
        not_after_unix,
    };
    if info.not_after_unix < now {
        let ago = (now - info.not_after_unix).div_euclid(86400);
        info.warnings.push(format!("expired {ago} days ago, on {}", info.not_after));
    } else if info.days_left < EXPIRY_WARNING_DAYS {
        info.warnings.push(format!("expires in {} days, on {}", info.days_left, info.not_after));
    }
    if info.not_before_unix > now {
        info.warnings.push(format!("is not valid before {}", info.not_before));
    }
    if info.key_type == "rsa" && info.key_bits < 2048 {
        info.warnings.push(format!("has a {}-bit RSA key; use 2048 bits or more", info.key_bits));
    }
    for (i, pair) in parsed.windows(2).enumerate() {
        // Clients build the path from the order served: leaf, then each issuer.
        let signed = match pair[0].verify_signature(Some(pair[1].public_key())) {
            Err(X509Error::SignatureVerificationError) => false,
            _ => pair[0].issuer().as_raw() == pair[1].subject().as_raw(),
        };
        if !signed {
            info.warnings.push(format!(
                "the chain is out of order: certificate {} did not issue certificate {} (put the leaf first, then each issuer)",
                i + 2,
                i + 1
            ));
        }
        if pair[1].validity().not_after.timestamp() < now {
            info.warnings.push(format!("certificate {} of the chain ({}) has expired", i + 2, pair[1].subject()));
        }
    }
    Ok(info)
}

/// [`describe`] for PEM text.
pub fn describe_pem(pem: &[u8], now: i64) -> Result<CertInfo, ChainError> {
    describe(&parse_chain(pem)?, now)
}

fn ip_text(b: &[u8]) -> String {
    match b.len() {
        4 => std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string(),
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(b);
            std::net::Ipv6Addr::from(a).to_string()
        }
        _ => b.iter().map(|x| format!("{x:02x}")).collect(),
    }
}

fn rfc3339(t: i64) -> String {
    crate::util::rfc3339(t.max(0) as u64)
}

/// The key's algorithm (in `--key-type`'s words where one fits) and size.
fn key_description(spki: &SubjectPublicKeyInfo<'_>) -> (String, usize) {
    let alg = spki.algorithm.algorithm.to_id_string();
    let param = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| x509_parser::asn1_rs::Oid::try_from(p).ok())
        .map(|o| o.to_id_string());
    match (alg.as_str(), param.as_deref()) {
        ("1.2.840.113549.1.1.1", _) => {
            let bits = match spki.parsed() {
                Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => bit_length(rsa.modulus),
                _ => 0,
            };
            ("rsa".into(), bits)
        }
        ("1.2.840.10045.2.1", Some("1.2.840.10045.3.1.7")) => ("ecdsa-p256".into(), 256),
        ("1.2.840.10045.2.1", Some("1.3.132.0.34")) => ("ecdsa-p384".into(), 384),
        ("1.2.840.10045.2.1", Some("1.3.132.0.35")) => ("ecdsa-p521".into(), 521),
        ("1.3.101.112", _) => ("ed25519".into(), 256),
        ("1.3.101.113", _) => ("ed448".into(), 448),
        _ => (alg, spki.parsed().map(|k| k.key_size()).unwrap_or(0)),
    }
}

/// Bits in a big-endian unsigned integer (DER adds a leading zero byte).
fn bit_length(n: &[u8]) -> usize {
    let n = &n[n.iter().take_while(|b| **b == 0).count()..];
    match n.first() {
        Some(first) => (n.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
        None => 0,
    }
}

/// The virtual servers that list certificate `name`.
pub fn used_by(config: &Config, name: &str) -> Vec<UsedBy> {
    config
        .virtual_servers
        .iter()
        .filter(|v| v.certificates.iter().any(|c| c == name))
        .map(|v| UsedBy { server: v.name.clone(), default: v.certificates.first().is_some_and(|c| c == name) })
        .collect()
}

/// Fill in `used_by` and warn when the certificate will be served for the
/// server's hostname without naming it. A certificate only chosen by SNI is
/// served for the names it has, so only a default (or unused, or
/// unconfigured) one is held to the hostname.
pub fn check_against(info: &mut CertInfo, config: &Config) {
    info.used_by = info.name.as_deref().map(|n| used_by(config, n)).unwrap_or_default();
    let served_as_default = info.used_by.is_empty() || info.used_by.iter().any(|u| u.default);
    let host = &config.server.hostname;
    if served_as_default && !crate::tls::certs::names_cover(&info.dns_names, host) {
        let names = if info.dns_names.is_empty() { "no host name".to_string() } else { info.dns_names.join(", ") };
        info.warnings.push(format!("names {names} but not the server hostname {host}"));
    }
}

/// Text for people: one fact per line, then the warnings.
pub fn render(info: &CertInfo) -> String {
    let title = match (&info.name, &info.path) {
        (Some(n), Some(p)) => format!("certificate {n:?} ({p})"),
        (None, Some(p)) => format!("certificate in {p}"),
        (Some(n), None) => format!("certificate {n:?}"),
        (None, None) => "certificate".into(),
    };
    let days = if info.days_left < 0 { "expired".to_string() } else { format!("{} days left", info.days_left) };
    let key = match info.key_type.as_str() {
        "rsa" => "RSA".to_string(),
        "ed25519" => "Ed25519".to_string(),
        "ed448" => "Ed448".to_string(),
        t => match t.strip_prefix("ecdsa-p") {
            Some(bits) => format!("ECDSA P-{bits}"),
            None => t.to_string(),
        },
    };
    let fingerprint = info
        .fingerprint_sha256
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).to_ascii_uppercase())
        .collect::<Vec<_>>()
        .join(":");
    let used = if info.used_by.is_empty() {
        "no virtual server".to_string()
    } else {
        info.used_by
            .iter()
            .map(|u| format!("{} ({})", u.server, if u.default { "default" } else { "by SNI" }))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let rows = [
        ("subject", info.subject.clone()),
        ("issuer", info.issuer.clone()),
        ("names", if info.sans.is_empty() { "-".into() } else { info.sans.join(", ") }),
        ("valid from", info.not_before.clone()),
        ("valid until", format!("{} ({days})", info.not_after)),
        ("key", format!("{key}, {} bits", info.key_bits)),
        ("serial", info.serial.clone()),
        ("SHA-256", fingerprint),
        ("self-signed", if info.self_signed { "yes" } else { "no" }.into()),
        ("chain", format!("{} certificate{}", info.chain_length, if info.chain_length == 1 { "" } else { "s" })),
        ("used by", used),
    ];
    let mut out = format!("{title}\n");
    for (label, value) in rows {
        out.push_str(&format!("  {label:<12} {value}\n"));
    }
    for w in &info.warnings {
        out.push_str(&format!("warning: {} {w}\n", title));
    }
    out
}

/// `postern cert show FILE|NAME [--json]`.
pub fn show(target: &str, config: Option<&Config>, json: bool, now: i64) -> Result<String, CommandError> {
    let configured =
        config.and_then(|c| c.tls.certificates.get(target).map(|cc| (target.to_string(), cc.cert.clone())));
    let (name, path) = match configured {
        Some((n, p)) => (Some(n), p),
        None => {
            let p = Path::new(target).to_path_buf();
            if !p.exists() {
                return Err(CommandError::usage(match config {
                    Some(c) => format!("{target:?} is neither a certificate named in {} nor a file", c.path.display()),
                    None => format!("{target}: no such file"),
                }));
            }
            // a file the configuration names is that certificate
            let name = config.and_then(|c| {
                c.tls.certificates.iter().find(|(_, cc)| same_file(&cc.cert, &p)).map(|(n, _)| n.clone())
            });
            (name, p)
        }
    };
    let bytes = std::fs::read(&path).map_err(|e| {
        let whose = name.as_ref().map(|n| format!("certificate {n:?}: ")).unwrap_or_default();
        CommandError::usage(format!("{whose}cannot read {}: {e}", path.display()))
    })?;
    let mut info = parse_chain(&bytes)
        .and_then(|chain| describe(&chain, now))
        .map_err(|m| CommandError::usage(format!("{} {m}", path.display())))?;
    info.name = name;
    info.path = Some(path.display().to_string());
    if let Some(c) = config {
        check_against(&mut info, c);
    }
    Ok(if json { format!("{}\n", serde_json::to_string(&info).unwrap_or_default()) } else { render(&info) })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86400;

    fn cert_with(names: &[&str], not_before: i64, not_after: i64) -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        p.not_before = ::time::OffsetDateTime::from_unix_timestamp(not_before).unwrap();
        p.not_after = ::time::OffsetDateTime::from_unix_timestamp(not_after).unwrap();
        p.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn facts_of_a_self_signed_certificate() {
        let now = 1_800_000_000;
        let pem = cert_with(&["mx.example.test", "127.0.0.1"], now - DAY, now + 100 * DAY + 5);
        let info = describe_pem(pem.as_bytes(), now).unwrap();
        assert_eq!(info.sans, ["mx.example.test", "127.0.0.1"]);
        assert_eq!(info.dns_names, ["mx.example.test"]);
        assert_eq!(info.days_left, 100);
        assert_eq!((info.key_type.as_str(), info.key_bits), ("ecdsa-p256", 256));
        assert!(info.self_signed);
        assert_eq!(info.chain_length, 1);
        assert_eq!(info.fingerprint_sha256.len(), 64);
        assert!(info.warnings.is_empty(), "{:?}", info.warnings);
        assert_eq!(info.not_after, crate::util::rfc3339((now + 100 * DAY + 5) as u64));
    }

    #[test]
    fn expiry_warnings() {
        let now = 1_800_000_000;
        let soon = describe_pem(cert_with(&["a.test"], now - DAY, now + 10 * DAY).as_bytes(), now).unwrap();
        assert!(soon.warnings.iter().any(|w| w.starts_with("expires in 10 days")), "{:?}", soon.warnings);
        let gone = describe_pem(cert_with(&["a.test"], now - 9 * DAY, now - 3 * DAY).as_bytes(), now).unwrap();
        assert!(gone.days_left < 0);
        assert!(gone.warnings.iter().any(|w| w.starts_with("expired 3 days ago")), "{:?}", gone.warnings);
        let early = describe_pem(cert_with(&["a.test"], now + DAY, now + 99 * DAY).as_bytes(), now).unwrap();
        assert!(early.warnings.iter().any(|w| w.starts_with("is not valid before")), "{:?}", early.warnings);
    }

    #[test]
    fn short_rsa_keys_are_reported() {
        use rsa::pkcs8::EncodePublicKey;
        // ring will not sign with (or load) a 1024-bit key, so a CA key signs
        // a certificate for its public half
        let small = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).unwrap();
        let spki = small.to_public_key().to_public_key_der().unwrap();
        let public = rcgen::SubjectPublicKeyInfo::from_der(spki.as_bytes()).unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::Issuer::new(rcgen::CertificateParams::new(Vec::<String>::new()).unwrap(), ca_key);
        let cert = rcgen::CertificateParams::new(vec!["old.example.test".to_string()])
            .unwrap()
            .signed_by(&public, &ca)
            .unwrap();
        let info = describe(&[cert.der().clone()], crate::tls::certs::unix_now()).unwrap();
        assert_eq!((info.key_type.as_str(), info.key_bits), ("rsa", 1024));
        assert!(!info.self_signed);
        assert!(info.warnings.iter().any(|w| w.contains("1024-bit RSA key")), "{:?}", info.warnings);
    }

    #[test]
    fn chain_order_is_checked() {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let ca = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf =
            rcgen::CertificateParams::new(vec!["a.test".to_string()]).unwrap().signed_by(&leaf_key, &ca).unwrap();
        let now = crate::tls::certs::unix_now();
        let good = describe(&[leaf.der().clone(), ca_cert.der().clone()], now).unwrap();
        assert_eq!(good.chain_length, 2);
        assert!(good.warnings.is_empty(), "{:?}", good.warnings);
        let bad = describe(&[ca_cert.der().clone(), leaf.der().clone()], now).unwrap();
        assert!(bad.warnings.iter().any(|w| w.contains("out of order")), "{:?}", bad.warnings);
    }

    #[test]
    fn der_input_is_accepted() {
        let pem = cert_with(&["a.test"], 0, 4_000_000_000);
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        assert_eq!(parse_chain(der.as_ref()).unwrap().len(), 1);
        assert!(parse_chain(b"hello").unwrap_err().to_string().contains("neither"));
        assert!(parse_chain(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
            .unwrap_err()
            .to_string()
            .contains("no PEM certificate"));
    }

    #[test]
    fn rsa_bit_length_ignores_the_sign_byte() {
        assert_eq!(bit_length(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(bit_length(&[0x7f, 0x00]), 15);
        assert_eq!(bit_length(&[]), 0);
    }
}
