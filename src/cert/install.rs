//! `postern cert install`: "process the pending request and install the
//! certificate". Checks a CA's answer before anything is written — the key
//! matches, every certificate of the chain parses, the leaf is valid now,
//! and it names the hostname of every virtual server that serves it by
//! default — then stores it as `data_dir/tls/NAME.crt` and `NAME.key` (key
//! mode 0600) and prints the `[tls.certificates.NAME]` lines that point at
//! them. Without `--key` it takes the pending key (see [`super::request`])
//! whose public key is the certificate's, and retires that pending request.
//! It never touches the running server: `postern reload` does that.

use super::inspect;
use super::request::pending_dir;
use super::{same_file, CommandError};
use crate::config::Config;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};

/// Allowed clock difference with the CA, for a certificate issued moments ago.
const CLOCK_SKEW_SECS: i64 = 300;

/// `postern cert install`.
#[derive(Clone, Debug, Default)]
pub struct InstallOptions {
    /// The `[tls.certificates.NAME]` it becomes.
    pub name: String,
    pub cert: PathBuf,
    /// Default: the pending key that matches.
    pub key: Option<PathBuf>,
}

/// Check and store; returns what to tell the operator.
pub fn install(opts: &InstallOptions, config: &Config, now: i64) -> Result<String, CommandError> {
    check_cert_name(&opts.name)?;
    let cert_bytes = read(&opts.cert)?;
    let chain =
        inspect::parse_chain(&cert_bytes).map_err(|m| CommandError::usage(format!("{} {m}", opts.cert.display())))?;
    let mut info =
        inspect::describe(&chain, now).map_err(|m| CommandError::usage(format!("{}: {m}", opts.cert.display())))?;
    let (key_path, key_bytes, pending) = match &opts.key {
        Some(k) => {
            let bytes = read(k)?;
            check_key(&chain, &bytes, &opts.cert, k)?;
            (k.clone(), bytes, false)
        }
        None => {
            let (p, bytes) = find_pending_key(config, &chain, &opts.cert)?;
            (p, bytes, true)
        }
    };
    let shown = opts.cert.display();
    if info.not_after_unix < now {
        return Err(CommandError::usage(format!("the certificate in {shown} expired on {}", info.not_after)));
    }
    if info.not_before_unix > now + CLOCK_SKEW_SECS {
        return Err(CommandError::usage(format!("the certificate in {shown} is not valid before {}", info.not_before)));
    }
    let host = &config.server.hostname;
    let uses = inspect::used_by(config, &opts.name);
    let defaults: Vec<&str> = uses.iter().filter(|u| u.default).map(|u| u.server.as_str()).collect();
    if !defaults.is_empty() && !crate::tls::certs::names_cover(&info.dns_names, host) {
        return Err(CommandError::usage(format!(
            "the certificate in {shown} names {} but not {host}, the hostname of virtual server{} {} that use{} certificate {:?} by default",
            if info.dns_names.is_empty() { "no host".to_string() } else { info.dns_names.join(", ") },
            if defaults.len() == 1 { "" } else { "s" },
            defaults.join(", "),
            if defaults.len() == 1 { "s" } else { "" },
            opts.name
        )));
    }

    let dir = config.server.data_dir.join("tls");
    let cert_dest = dir.join(format!("{}.crt", opts.name));
    let key_dest = dir.join(format!("{}.key", opts.name));
    let cert_pem = if memchr::memmem::find(&cert_bytes, b"-----BEGIN").is_some() { cert_bytes } else { pem(&chain) };
    // Key first: a reload between the two writes sees a mismatch and keeps
    // the old pair, rather than the new certificate with the old key.
    let wrote_key = if same_file(&key_path, &key_dest) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_dest, std::fs::Permissions::from_mode(0o600))
    } else {
        crate::util::write_file_durably(&key_dest, &key_bytes, 0o600)
    };
    wrote_key.map_err(|e| CommandError::runtime(format!("cannot write {}: {e}", key_dest.display())))?;
    crate::util::write_file_durably(&cert_dest, &cert_pem, 0o644)
        .map_err(|e| CommandError::runtime(format!("cannot write {}: {e}", cert_dest.display())))?;

    let mut said = format!(
        "installed certificate {:?} in {} for {} (valid until {}, {} days left); key in {} (mode 0600)\n",
        opts.name,
        cert_dest.display(),
        if info.sans.is_empty() { info.subject.clone() } else { info.sans.join(", ") },
        info.not_after,
        info.days_left,
        key_dest.display()
    );
    if pending {
        said.push_str(&retire_pending(&key_path));
    }
    info.name = Some(opts.name.clone());
    inspect::check_against(&mut info, config);
    for w in &info.warnings {
        said.push_str(&format!("warning: certificate {:?} {w}\n", opts.name));
    }
    said.push_str(&config_lines(config, &opts.name, &cert_dest, &key_dest, uses.is_empty()));
    Ok(said)
}

/// Names become file names under `data_dir/tls/`: keep them plain.
fn check_cert_name(name: &str) -> Result<(), CommandError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(CommandError::usage(format!(
            "--name {name:?} must be 1 to 64 letters, digits, '.', '_' or '-', not starting with '.'"
        )))
    }
}

fn read(path: &Path) -> Result<Vec<u8>, CommandError> {
    std::fs::read(path).map_err(|e| CommandError::usage(format!("cannot read {}: {e}", path.display())))
}

/// Whether the key in `key_bytes` is the private half of the leaf's key.
fn key_matches(chain: &[CertificateDer<'static>], key_bytes: &[u8], key_path: &Path) -> Result<bool, CommandError> {
    let key = PrivateKeyDer::from_pem_slice(key_bytes).map_err(|_| {
        CommandError::usage(format!(
            "{} holds no PEM private key (an encrypted key must be decrypted first)",
            key_path.display()
        ))
    })?;
    let signing = crate::tls::provider().key_provider.load_private_key(key).map_err(|_| {
        CommandError::usage(format!(
            "{} holds a private key Postern cannot use (ECDSA P-256/P-384, Ed25519, or RSA of 2048 to 8192 bits)",
            key_path.display()
        ))
    })?;
    // The same comparison the TLS layer makes when it loads the pair.
    match CertifiedKey::new(chain.to_vec(), signing).keys_match() {
        Ok(()) => Ok(true),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => Ok(false),
        Err(e) => Err(CommandError::usage(format!(
            "cannot compare the key in {} with the certificate: {e}",
            key_path.display()
        ))),
    }
}

fn check_key(chain: &[CertificateDer<'static>], key_bytes: &[u8], cert: &Path, key: &Path) -> Result<(), CommandError> {
    if key_matches(chain, key_bytes, key)? {
        Ok(())
    } else {
        Err(CommandError::usage(format!(
            "the private key in {} does not match the certificate in {}; nothing was installed",
            key.display(),
            cert.display()
        )))
    }
}

/// The pending key whose public key is the certificate's.
fn find_pending_key(
    config: &Config,
    chain: &[CertificateDer<'static>],
    cert: &Path,
) -> Result<(PathBuf, Vec<u8>), CommandError> {
    let dir = pending_dir(config);
    let mut keys: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "key"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(CommandError::runtime(format!("cannot list {}: {e}", dir.display()))),
    };
    keys.sort();
    for k in keys {
        let Ok(bytes) = std::fs::read(&k) else { continue };
        // a pending key that cannot be read or used is simply not this one
        if key_matches(chain, &bytes, &k).unwrap_or(false) {
            return Ok((k, bytes));
        }
    }
    Err(CommandError::usage(format!(
        "no pending key in {} matches the certificate in {}; give its key with --key",
        dir.display(),
        cert.display()
    )))
}

/// The pending request is answered: remove its key and request copies.
fn retire_pending(key: &Path) -> String {
    let csr = key.with_extension("csr");
    for p in [key, csr.as_path()] {
        if let Err(e) = std::fs::remove_file(p) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return format!(
                    "note: the pending request is installed, but {} could not be removed: {e}\n",
                    p.display()
                );
            }
        }
    }
    format!("the pending request whose key was in {} is done\n", key.display())
}

/// PEM text for a DER chain (only DER input needs it).
fn pem(chain: &[CertificateDer<'_>]) -> Vec<u8> {
    use base64::Engine;
    let mut out = String::new();
    for c in chain {
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let b64 = base64::engine::general_purpose::STANDARD.encode(c.as_ref());
        for line in b64.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out.into_bytes()
}

/// The `[tls.certificates.NAME]` lines, and what the operator does next.
fn config_lines(config: &Config, name: &str, cert: &Path, key: &Path, unused: bool) -> String {
    let quote = |p: &Path| toml::Value::String(p.display().to_string()).to_string();
    let lines = format!("[tls.certificates.{name}]\ncert = {}\nkey = {}\n", quote(cert), quote(key));
    let file = config.path.display();
    match config.tls.certificates.get(name) {
        Some(c) if same_file(&c.cert, cert) && same_file(&c.key, key) => format!(
            "{file} already points at it:\n\n{lines}\nrun `postern reload` (or send the server SIGHUP) to use it without dropping a session\n{}",
            if unused { format!("note: no virtual server lists {name:?} in its certificates yet\n") } else { String::new() }
        ),
        Some(c) => format!(
            "certificate {name:?} in {file} points at {} and {}; change its lines to\n\n{lines}\nand restart the server\n",
            c.cert.display(),
            c.key.display()
        ),
        None => format!(
            "add these lines to {file}, and {name:?} to the certificates of the virtual servers that should use it, then restart the server:\n\n{lines}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_plain() {
        for ok in ["main", "mx-2026", "a.b_c"] {
            check_cert_name(ok).unwrap();
        }
        for bad in ["", ".hidden", "../etc", "a/b", "with space"] {
            assert_eq!(check_cert_name(bad).unwrap_err().status, 2, "{bad:?}");
        }
    }

    #[test]
    fn der_chains_become_pem() {
        let (pem_text, _) = super::super::self_signed_pem(&["a.test".into()], Default::default()).unwrap();
        let chain = inspect::parse_chain(pem_text.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(pem(&chain)).unwrap(), pem_text.replace("\r\n", "\n"));
    }
}
