//! `postern cert request`: "prepare the request now, send it later". Makes
//! a key and a PKCS#10 request (CN, SANs including the CN, O, OU, C, ST, L)
//! for the operator to send to a CA, writes the key mode 0600, and keeps a
//! *pending* copy of key and request under `data_dir/tls/pending/`, named
//! after the CN, so that `cert install` can find the key the CA's answer
//! belongs to without being told. It never sends anything anywhere.

use super::{name_list, refuse_existing, same_file, write_outputs, CommandError, KeyType, Output};
use crate::config::Config;
use std::path::PathBuf;

/// Who the certificate is for, as the CA will see it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subject {
    /// Common name: the host name clients connect to.
    pub cn: String,
    /// More names; the CN is always the first SAN too (clients use SANs only).
    pub sans: Vec<String>,
    pub org: Option<String>,
    pub org_unit: Option<String>,
    /// ISO 3166 two-letter code.
    pub country: Option<String>,
    pub state: Option<String>,
    pub locality: Option<String>,
}

/// `postern cert request`.
#[derive(Clone, Debug, Default)]
pub struct RequestOptions {
    pub subject: Subject,
    pub key_type: KeyType,
    pub csr_out: PathBuf,
    pub key_out: PathBuf,
    /// Replace output files and a pending request for the same CN.
    pub force: bool,
}

/// A PEM request and its PEM private key.
pub fn request_pem(subject: &Subject, key_type: KeyType) -> Result<(String, String), CommandError> {
    use rcgen::{DnType, DnValue};
    let names = name_list(&subject.cn, &subject.sans)?;
    // RFC 5280 appendix A: ub-common-name and friends; CAs refuse longer ones.
    // In the customary order, largest first: C, ST, L, O, OU, CN.
    let fields: [(&str, Option<&String>, usize, DnType); 5] = [
        ("--state", subject.state.as_ref(), 128, DnType::StateOrProvinceName),
        ("--locality", subject.locality.as_ref(), 128, DnType::LocalityName),
        ("--org", subject.org.as_ref(), 64, DnType::OrganizationName),
        ("--org-unit", subject.org_unit.as_ref(), 64, DnType::OrganizationalUnitName),
        ("--cn", Some(&subject.cn), 64, DnType::CommonName),
    ];
    let mut params = rcgen::CertificateParams::new(names)
        .map_err(|e| CommandError::usage(format!("cannot use the names for a request: {e}")))?;
    // rcgen's default subject is a placeholder CN; start from nothing
    params.distinguished_name = rcgen::DistinguishedName::new();
    let dn = &mut params.distinguished_name;
    if let Some(c) = &subject.country {
        // X.520: countryName is a PrintableString of exactly two letters.
        let c = c.to_ascii_uppercase();
        if c.len() != 2 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(CommandError::usage(format!("--country {c:?} is not a two-letter country code such as DE")));
        }
        let printable =
            rcgen::string::PrintableString::try_from(c).map_err(|e| CommandError::usage(format!("--country: {e}")))?;
        dn.push(DnType::CountryName, DnValue::PrintableString(printable));
    }
    for (flag, value, max, ty) in fields {
        let Some(v) = value else { continue };
        if v.trim().is_empty() || v.chars().count() > max || v.chars().any(char::is_control) {
            return Err(CommandError::usage(format!("{flag} {v:?} must be 1 to {max} printable characters")));
        }
        dn.push(ty, v.clone());
    }
    let key = super::generate_key(key_type).map_err(|e| CommandError::runtime(e.to_string()))?;
    let csr = params
        .serialize_request(&key)
        .and_then(|c| c.pem())
        .map_err(|e| CommandError::runtime(format!("cannot make the request: {e}")))?;
    Ok((csr, key.serialize_pem()))
}

/// Where pending keys live: `data_dir/tls/pending/`.
pub fn pending_dir(config: &Config) -> PathBuf {
    config.server.data_dir.join("tls").join("pending")
}

/// The file stem of a pending request: the CN, lower case, with anything
/// unusual in a file name (the `*` of a wildcard) spelt `_`.
pub fn pending_stem(cn: &str) -> String {
    cn.to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' })
        .collect()
}

/// Make the key and request and write them (and the pending copy, when a
/// configuration says where the data directory is).
pub fn request(opts: &RequestOptions, config: Option<&Config>) -> Result<String, CommandError> {
    let pending = config.map(|c| {
        let dir = pending_dir(c);
        let stem = pending_stem(&opts.subject.cn);
        (dir.join(format!("{stem}.key")), dir.join(format!("{stem}.csr")))
    });
    if let Some((pkey, _)) = &pending {
        if !opts.force && pkey.exists() {
            return Err(CommandError::usage(format!(
                "a request for {} is already pending ({}); install its certificate first, or pass --force to replace it",
                opts.subject.cn,
                pkey.display()
            )));
        }
    }
    refuse_existing(&[&opts.key_out, &opts.csr_out], opts.force)?;
    let (csr, key) = request_pem(&opts.subject, opts.key_type)?;
    let mut outputs = vec![Output::private(&opts.key_out, &key), Output::public(&opts.csr_out, &csr)];
    if let Some((pkey, pcsr)) = &pending {
        // the same paths as --key-out/--csr-out: write once
        if !same_file(pkey, &opts.key_out) {
            outputs.push(Output::private(pkey, &key));
        }
        if !same_file(pcsr, &opts.csr_out) {
            outputs.push(Output::public(pcsr, &csr));
        }
    }
    write_outputs(&outputs, opts.force)?;
    let mut said = format!(
        "wrote a certificate request for {} to {} ({} key in {}, mode 0600)\n",
        opts.subject.cn,
        opts.csr_out.display(),
        opts.key_type,
        opts.key_out.display()
    );
    match &pending {
        Some((pkey, _)) => said.push_str(&format!(
            "pending key kept in {}: once the CA answers, run\n  postern cert install --name NAME --cert FILE\n",
            pkey.display()
        )),
        None => said.push_str(
            "no configuration was found, so no pending copy of the key was kept: once the CA answers, run\n  postern cert install --name NAME --cert FILE --key KEY\n",
        ),
    }
    Ok(said)
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::*;

    fn subject() -> Subject {
        Subject {
            cn: "mx.example.test".into(),
            sans: vec!["mail.example.test".into(), "MX.example.test".into()],
            org: Some("Example Org".into()),
            org_unit: Some("Mail".into()),
            country: Some("de".into()),
            state: Some("Berlin".into()),
            locality: Some("Berlin".into()),
        }
    }

    #[test]
    fn request_carries_subject_and_names() {
        for kt in [KeyType::EcdsaP256, KeyType::Rsa2048] {
            let (csr, key) = request_pem(&subject(), kt).unwrap();
            assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
            use rustls_pki_types::pem::PemObject;
            let der = rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(csr.as_bytes()).unwrap();
            let (_, req) = X509CertificationRequest::from_der(der.as_ref()).unwrap();
            req.verify_signature().unwrap();
            let subj = req.certification_request_info.subject.to_string();
            for part in ["CN=mx.example.test", "O=Example Org", "OU=Mail", "C=DE", "ST=Berlin", "L=Berlin"] {
                assert!(subj.contains(part), "{part} in {subj}");
            }
            let mut names = Vec::new();
            for ext in req.requested_extensions().into_iter().flatten() {
                if let ParsedExtension::SubjectAlternativeName(san) = ext {
                    for n in &san.general_names {
                        if let GeneralName::DNSName(d) = n {
                            names.push(d.to_string());
                        }
                    }
                }
            }
            assert_eq!(names, ["mx.example.test", "mail.example.test"], "CN first, duplicates dropped");
            // and a CA (rcgen here) accepts it
            rcgen::CertificateSigningRequestParams::from_pem(&csr).unwrap();
        }
    }

    #[test]
    fn bad_subject_fields_are_usage_errors() {
        let mut s = subject();
        s.country = Some("Germany".into());
        let e = request_pem(&s, KeyType::EcdsaP256).unwrap_err();
        assert_eq!(e.status, 2);
        assert!(e.message.contains("--country"), "{e}");
        let mut s = subject();
        s.org = Some("".into());
        assert!(request_pem(&s, KeyType::EcdsaP256).unwrap_err().message.contains("--org"));
        let mut s = subject();
        s.cn = format!("{}.example.test", "a".repeat(60));
        assert!(request_pem(&s, KeyType::EcdsaP256).unwrap_err().message.contains("--cn"));
    }

    #[test]
    fn pending_stems_are_plain_file_names() {
        assert_eq!(pending_stem("MX.Example.test"), "mx.example.test");
        assert_eq!(pending_stem("*.example.test"), "_.example.test");
    }
}
