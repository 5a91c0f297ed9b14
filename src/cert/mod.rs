//! Certificates for operators: generating self-signed certificates (also
//! used at first start), and — in the `cert` subcommands — requests,
//! installation and inspection. Uses rcgen and x509-parser; no hand-written
//! ASN.1.

/// Key algorithms Postern generates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KeyType {
    #[default]
    EcdsaP256,
}

/// A self-signed certificate for `names` (the first is the CN), valid for
/// a year, as PEM certificate and PEM private key.
pub fn self_signed_pem(names: &[String], key_type: KeyType) -> Result<(String, String), String> {
    let KeyType::EcdsaP256 = key_type;
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(|e| e.to_string())?;
    if let Some(cn) = names.first() {
        params.distinguished_name.push(rcgen::DnType::CommonName, cn.clone());
    }
    let now = time_now();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(365);
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}
