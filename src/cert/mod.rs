//! Certificates for operators: the `cert` subcommands (SPEC §10). Key
//! generation and self-signed certificates come from
//! [`crate::tls::selfsigned`] (the TLS layer makes the first-start
//! certificate and must not depend on this CLI module). It owns PKCS#10 requests and the pending keys kept for them ([`request`]),
//! checking and storing a CA's answer ([`install`]), and describing a
//! certificate to people and scripts ([`inspect`]).
//!
//! It works on files only: it never talks to the running server (the
//! operator runs `postern reload` for that) and never opens the queue
//! database, so every command works whether or not a server runs. All
//! X.509 encoding and decoding goes through rcgen and x509-parser; there is
//! no hand-written ASN.1. ring is the only crypto provider; RSA keys are
//! *generated* with the RustCrypto `rsa` crate because rcgen cannot do that
//! on ring, and then handed to rcgen/ring as PKCS#8 like any other key.

pub mod inspect;
pub mod install;
pub mod request;

pub use inspect::{show, CertInfo};
pub use install::{install, InstallOptions};
pub use request::{pending_dir, request, request_pem, RequestOptions, Subject};
// Key generation and the self-signed certificate live in the TLS layer (it
// makes the first-start certificate); the commands use them from there.
pub use crate::tls::selfsigned::{generate_key, self_signed_pem, KeyType};

use std::fmt;
use std::path::{Path, PathBuf};

/// A failed `cert` command: one sentence, and the exit status it deserves
/// (2 when what the operator gave is wrong, 1 when we failed to do our part).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError {
    pub status: u8,
    pub message: String,
}

impl CommandError {
    pub fn usage(message: impl Into<String>) -> CommandError {
        CommandError { status: 2, message: message.into() }
    }
    pub fn runtime(message: impl Into<String>) -> CommandError {
        CommandError { status: 1, message: message.into() }
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CommandError {}

/// `postern cert self-signed`.
#[derive(Clone, Debug, Default)]
pub struct SelfSignedOptions {
    pub hostname: String,
    pub sans: Vec<String>,
    pub key_type: KeyType,
    pub cert_out: PathBuf,
    pub key_out: PathBuf,
    /// Replace output files that exist.
    pub force: bool,
}

/// Make a self-signed certificate and key and write them; returns what to
/// tell the operator.
pub fn self_signed(opts: &SelfSignedOptions) -> Result<String, CommandError> {
    let names = name_list(&opts.hostname, &opts.sans)?;
    refuse_existing(&[&opts.key_out, &opts.cert_out], opts.force)?;
    let (cert, key) = self_signed_pem(&names, opts.key_type)
        .map_err(|e| CommandError::runtime(format!("cannot make the certificate: {e}")))?;
    write_outputs(&[Output::private(&opts.key_out, &key), Output::public(&opts.cert_out, &cert)], opts.force)?;
    Ok(format!(
        "wrote a self-signed certificate for {} to {} ({} key in {}, mode 0600)\n",
        names.join(", "),
        opts.cert_out.display(),
        opts.key_type,
        opts.key_out.display()
    ))
}

/// The first name and the extra names, checked and without duplicates
/// (compared without regard to case), the first name first.
fn name_list(first: &str, more: &[String]) -> Result<Vec<String>, CommandError> {
    let mut out: Vec<String> = Vec::new();
    for n in std::iter::once(first).chain(more.iter().map(String::as_str)) {
        check_name(n)?;
        if !out.iter().any(|o| o.eq_ignore_ascii_case(n)) {
            out.push(n.to_string());
        }
    }
    Ok(out)
}

/// A host name (optionally `*.` and a domain) or an IP address.
fn check_name(n: &str) -> Result<(), CommandError> {
    let host = n.strip_prefix("*.").unwrap_or(n);
    let ok = n.parse::<std::net::IpAddr>().is_ok() || (crate::config::is_domain_name(host) && !host.ends_with('.'));
    if ok {
        Ok(())
    } else {
        Err(CommandError::usage(format!("{n:?} is not a host name, a wildcard like *.example.com, or an IP address")))
    }
}

/// One file a command writes.
struct Output<'a> {
    path: &'a Path,
    bytes: &'a [u8],
    mode: u32,
}

impl<'a> Output<'a> {
    fn private(path: &'a Path, text: &'a str) -> Output<'a> {
        Output { path, bytes: text.as_bytes(), mode: 0o600 }
    }
    fn public(path: &'a Path, text: &'a str) -> Output<'a> {
        Output { path, bytes: text.as_bytes(), mode: 0o644 }
    }
}

/// Unless `force`, refuse if an output exists: a private key overwritten by
/// mistake (say, the one a CA is about to certify) cannot be had back.
/// Checked before the (for RSA, slow) key generation, and again at writing.
fn refuse_existing(paths: &[&Path], force: bool) -> Result<(), CommandError> {
    for (i, p) in paths.iter().enumerate() {
        if paths[..i].iter().any(|q| same_file(p, q)) {
            return Err(CommandError::usage(format!("{} is named for two outputs", p.display())));
        }
        if !force && p.exists() {
            return Err(CommandError::usage(format!(
                "{} exists; remove it or pass --force to replace it",
                p.display()
            )));
        }
    }
    Ok(())
}

/// Write every output durably, in order, once none is in the way.
fn write_outputs(outputs: &[Output<'_>], force: bool) -> Result<(), CommandError> {
    refuse_existing(&outputs.iter().map(|o| o.path).collect::<Vec<_>>(), force)?;
    for o in outputs {
        crate::util::write_file_durably(o.path, o.bytes, o.mode)
            .map_err(|e| CommandError::runtime(format!("cannot write {}: {e}", o.path.display())))?;
    }
    Ok(())
}

/// Whether two paths name the same file (which need not exist yet): equal
/// as written, or equal once their directories are resolved.
pub(crate) fn same_file(a: &Path, b: &Path) -> bool {
    let canon = |p: &Path| {
        let dir = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        dir.canonicalize().ok().map(|d| d.join(p.file_name().unwrap_or_default()))
    };
    a == b || matches!((canon(a), canon(b)), (Some(x), Some(y)) if x == y)
}

/// SHA-256 of `bytes`, as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Load the configuration if its file exists: commands that can do without
/// one (show a file, make a request) still work where there is none, but a
/// broken one is reported rather than silently ignored.
pub fn optional_config(path: &Path) -> Result<Option<crate::config::Config>, CommandError> {
    if !path.exists() {
        return Ok(None);
    }
    crate::config::Config::load(path).map(Some).map_err(|e| CommandError::usage(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_types_parse_by_their_names() {
        for k in KeyType::ALL {
            assert_eq!(k.as_str().parse::<KeyType>(), Ok(k));
        }
        assert!("dsa".parse::<KeyType>().unwrap_err().to_string().contains("ecdsa-p256, rsa2048 or rsa3072"));
    }

    #[test]
    fn names_are_checked_and_deduplicated() {
        let n = name_list("mx.example.test", &["MX.example.test".into(), "*.example.test".into(), "10.0.0.1".into()])
            .unwrap();
        assert_eq!(n, ["mx.example.test", "*.example.test", "10.0.0.1"]);
        for bad in ["", "two words", "a..b", "*.", "mx.example.test.", "-x.test", "*.*.test"] {
            assert_eq!(name_list(bad, &[]).unwrap_err().status, 2, "{bad:?}");
        }
    }

    #[test]
    fn self_signed_rsa_keys_load_in_rustls() {
        let (cert, key) = self_signed_pem(&["mx.example.test".into()], KeyType::Rsa2048).unwrap();
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8: {key}");
        let info = inspect::describe_pem(cert.as_bytes(), 0).unwrap();
        assert_eq!((info.key_type.as_str(), info.key_bits), ("rsa", 2048));
        assert!(info.self_signed);
        use rustls_pki_types::pem::PemObject;
        let der = rustls_pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
        crate::tls::provider().key_provider.load_private_key(der).unwrap();
    }

    #[test]
    fn outputs_are_not_overwritten_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k.pem");
        std::fs::write(&key, "old").unwrap();
        let e = write_outputs(&[Output::private(&key, "new")], false).unwrap_err();
        assert_eq!(e.status, 2);
        assert!(e.message.contains("--force"), "{e}");
        assert_eq!(std::fs::read_to_string(&key).unwrap(), "old");
        write_outputs(&[Output::private(&key, "new")], true).unwrap();
        assert_eq!(std::fs::read_to_string(&key).unwrap(), "new");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
