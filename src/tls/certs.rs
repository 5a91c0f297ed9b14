//! The certificate store: every `[tls.certificates.NAME]` loaded once,
//! shared by all virtual servers of every protocol, and swappable in place
//! (`postern reload`, SIGHUP) without touching open sessions — a handshake
//! looks its certificate up at the moment it happens.

use crate::config::{CertificateConfig, Config};
use crate::util::RwLockExt;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("certificate {name:?}: cannot read {path}: {source}")]
    Read { name: String, path: PathBuf, source: std::io::Error },
    #[error("certificate {name:?}: {path} holds no PEM certificate")]
    NoCertificate { name: String, path: PathBuf },
    #[error("certificate {name:?}: {path} holds no usable PEM private key")]
    NoKey { name: String, path: PathBuf },
    #[error("certificate {name:?}: the private key in {key} does not match the certificate in {cert}")]
    Mismatch { name: String, cert: PathBuf, key: PathBuf },
    #[error("certificate {name:?}: {path}: {source}")]
    Pem { name: String, path: PathBuf, source: rustls_pki_types::pem::Error },
    #[error("certificate {name:?}: {path}: not a valid X.509 certificate: {source}")]
    NotX509 { name: String, path: PathBuf, source: x509_parser::nom::Err<x509_parser::error::X509Error> },
    #[error("certificate {name:?}: cannot write {path}: {source}")]
    Write { name: String, path: PathBuf, source: std::io::Error },
    #[error("certificate {name:?}: cannot generate a self-signed certificate: {source}")]
    Generate { name: String, source: super::selfsigned::GenerateError },
    #[error("no certificate named {0:?} is configured")]
    Unknown(String),
}

/// A certificate ready for handshakes, with the facts operators ask about.
#[derive(Debug)]
pub struct LoadedCert {
    pub name: String,
    pub cert_path: PathBuf,
    pub key: Arc<CertifiedKey>,
    /// DNS names it is valid for (SANs, or the CN when there are none), lower case.
    pub dns_names: Vec<String>,
    pub not_before: i64,
    pub not_after: i64,
}

impl LoadedCert {
    /// Whether the certificate names `host`, exactly or by a one-label wildcard.
    pub fn covers(&self, host: &str) -> bool {
        names_cover(&self.dns_names, host)
    }

    pub fn days_left(&self, now: i64) -> i64 {
        (self.not_after - now).div_euclid(86400)
    }
}

/// RFC 6125 §6.4.3: `*.example.com` matches exactly one leftmost label.
pub fn names_cover(names: &[String], host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    names.iter().any(|n| match n.strip_prefix("*.") {
        Some(suffix) => host.split_once('.').is_some_and(|(first, rest)| !first.is_empty() && rest == suffix),
        None => *n == host,
    })
}

pub fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Read a PEM chain and key and check that they belong together.
pub fn load_pair(name: &str, cert_path: &Path, key_path: &Path) -> Result<LoadedCert, CertError> {
    let cert_pem = std::fs::read(cert_path).map_err(|source| CertError::Read {
        name: name.into(),
        path: cert_path.into(),
        source,
    })?;
    let key_pem = std::fs::read(key_path).map_err(|source| CertError::Read {
        name: name.into(),
        path: key_path.into(),
        source,
    })?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|source| CertError::Pem { name: name.into(), path: cert_path.into(), source })?;
    if chain.is_empty() {
        return Err(CertError::NoCertificate { name: name.into(), path: cert_path.into() });
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|_| CertError::NoKey { name: name.into(), path: key_path.into() })?;
    let facts = parse_facts(&chain[0]).map_err(|source| CertError::NotX509 {
        name: name.into(),
        path: cert_path.into(),
        source,
    })?;
    let provider = super::provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|_| CertError::NoKey { name: name.into(), path: key_path.into() })?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => return Err(CertError::Mismatch { name: name.into(), cert: cert_path.into(), key: key_path.into() }),
    }
    Ok(LoadedCert {
        name: name.into(),
        cert_path: cert_path.into(),
        key: Arc::new(certified),
        dns_names: facts.dns_names,
        not_before: facts.not_before,
        not_after: facts.not_after,
    })
}

struct Facts {
    dns_names: Vec<String>,
    not_before: i64,
    not_after: i64,
}

fn parse_facts(der: &CertificateDer<'_>) -> Result<Facts, x509_parser::nom::Err<x509_parser::error::X509Error>> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der.as_ref())?;
    let mut dns_names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                dns_names.push(d.to_ascii_lowercase());
            }
        }
    }
    if dns_names.is_empty() {
        for cn in cert.subject().iter_common_name() {
            if let Ok(s) = cn.as_str() {
                dns_names.push(s.to_ascii_lowercase());
            }
        }
    }
    Ok(Facts {
        dns_names,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// Outcome of re-reading the certificate files.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ReloadReport {
    pub reloaded: Vec<String>,
    /// Certificates left as they were, with the reason.
    pub failed: Vec<(String, String)>,
}

/// All configured certificates, by name.
#[derive(Debug)]
pub struct CertStore {
    configs: BTreeMap<String, CertificateConfig>,
    hostname: String,
    loaded: RwLock<Arc<BTreeMap<String, Arc<LoadedCert>>>>,
}

impl CertStore {
    /// Load every certificate; generate the self-signed ones that are
    /// missing and allowed to be. Any failure refuses to start.
    pub fn open(config: &Config) -> Result<CertStore, CertError> {
        let mut loaded = BTreeMap::new();
        for (name, c) in &config.tls.certificates {
            if c.self_signed_if_missing && !c.cert.exists() && !c.key.exists() {
                generate_missing(name, c, &config.server.hostname)?;
            }
            loaded.insert(name.clone(), Arc::new(load_pair(name, &c.cert, &c.key)?));
        }
        Ok(CertStore {
            configs: config.tls.certificates.clone(),
            hostname: config.server.hostname.clone(),
            loaded: RwLock::new(Arc::new(loaded)),
        })
    }

    pub fn get(&self, name: &str) -> Option<Arc<LoadedCert>> {
        self.snapshot().get(name).cloned()
    }

    pub fn snapshot(&self) -> Arc<BTreeMap<String, Arc<LoadedCert>>> {
        self.loaded.read_or_recover().clone()
    }

    /// Re-read every certificate from disk. A certificate that fails to load
    /// keeps its old version; the report says why.
    pub fn reload(&self) -> ReloadReport {
        let mut report = ReloadReport::default();
        let mut next = (*self.snapshot()).clone();
        for (name, c) in &self.configs {
            match load_pair(name, &c.cert, &c.key) {
                Ok(l) => {
                    next.insert(name.clone(), Arc::new(l));
                    report.reloaded.push(name.clone());
                }
                Err(e) => report.failed.push((name.clone(), e.to_string())),
            }
        }
        *self.loaded.write_or_recover() = Arc::new(next);
        report
    }

    /// Sentences about certificates that work but deserve attention:
    /// expired or expiring within 30 days, or not naming the server.
    pub fn warnings(&self, config: &Config) -> Vec<String> {
        let now = unix_now();
        let mut out = Vec::new();
        for (name, c) in self.snapshot().iter() {
            let days = c.days_left(now);
            if c.not_after < now {
                out.push(format!("certificate {name:?} ({}) expired {} days ago", c.cert_path.display(), -days));
            } else if days < 30 {
                out.push(format!("certificate {name:?} ({}) expires in {days} days", c.cert_path.display()));
            }
            let used = config.virtual_servers.iter().any(|v| v.certificates.first() == Some(name));
            if used && !c.covers(&self.hostname) {
                out.push(format!(
                    "certificate {name:?} ({}) names {} but not the server hostname {}",
                    c.cert_path.display(),
                    c.dns_names.join(", "),
                    self.hostname
                ));
            }
        }
        out
    }
}

/// Write a fresh self-signed certificate and key for `hostname`.
fn generate_missing(name: &str, c: &CertificateConfig, hostname: &str) -> Result<(), CertError> {
    let (cert_pem, key_pem) =
        super::selfsigned::self_signed_pem(&[hostname.to_string()], super::selfsigned::KeyType::EcdsaP256)
            .map_err(|source| CertError::Generate { name: name.into(), source })?;
    write_private(&c.key, key_pem.as_bytes()).map_err(|source| CertError::Write {
        name: name.into(),
        path: c.key.clone(),
        source,
    })?;
    crate::util::write_file_durably(&c.cert, cert_pem.as_bytes(), 0o644).map_err(|source| CertError::Write {
        name: name.into(),
        path: c.cert.clone(),
        source,
    })?;
    tracing::info!(certificate = name, cert = %c.cert.display(), "generated a self-signed certificate for {hostname}");
    Ok(())
}

/// A private key file: mode 0600 from the moment it exists.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    crate::util::write_file_durably(path, bytes, 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_matching() {
        let names = vec!["mail.example.com".to_string(), "*.example.net".to_string()];
        assert!(names_cover(&names, "MAIL.example.com"));
        assert!(names_cover(&names, "imap.example.net"));
        assert!(!names_cover(&names, "example.net"));
        assert!(!names_cover(&names, "a.b.example.net"));
        assert!(!names_cover(&names, "other.example.com"));
    }
}
