//! Key generation and self-signed certificates: what the TLS layer needs to
//! make the first-start certificate (SPEC §10), and what the `cert` CLI
//! commands build on. It lives here so that `tls` never imports `cert`.
//! ring is the only crypto provider; RSA keys are *generated* with the
//! RustCrypto `rsa` crate because rcgen cannot do that on ring, and then
//! handed to rcgen/ring as PKCS#8 like any other key. Failures are a
//! [`GenerateError`]; a key type name that does not parse is an
//! [`UnknownKeyType`].

use std::fmt;
use std::str::FromStr;

/// A `--key-type` that is none of [`KeyType::ALL`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown key type {0:?}: use ecdsa-p256, rsa2048 or rsa3072")]
pub struct UnknownKeyType(pub String);

/// Making a key or a self-signed certificate failed (the system's random
/// generator, or the crypto libraries refusing what we asked of them).
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("cannot generate an ECDSA key: {0}")]
    Ecdsa(#[source] rcgen::Error),
    #[error("cannot generate an RSA {bits}-bit key: {source}")]
    Rsa { bits: usize, source: rsa::Error },
    #[error("cannot encode the RSA key: {0}")]
    EncodeRsa(#[source] rsa::pkcs8::Error),
    #[error("cannot load the generated RSA key: {0}")]
    LoadRsa(#[source] rcgen::Error),
    #[error("the system random generator failed")]
    Random,
    /// rcgen refused the names or could not sign; its text says which.
    #[error(transparent)]
    Certificate(rcgen::Error),
}

/// Key algorithms Postern generates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KeyType {
    /// The default: small, fast, and what every current client accepts.
    #[default]
    EcdsaP256,
    Rsa2048,
    Rsa3072,
}

impl KeyType {
    pub const ALL: [KeyType; 3] = [KeyType::EcdsaP256, KeyType::Rsa2048, KeyType::Rsa3072];

    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::EcdsaP256 => "ecdsa-p256",
            KeyType::Rsa2048 => "rsa2048",
            KeyType::Rsa3072 => "rsa3072",
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyType {
    type Err = UnknownKeyType;
    fn from_str(s: &str) -> Result<KeyType, UnknownKeyType> {
        KeyType::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownKeyType(s.to_string()))
    }
}

/// A fresh private key of the given type, ready for rcgen to sign with.
pub fn generate_key(key_type: KeyType) -> Result<rcgen::KeyPair, GenerateError> {
    match key_type {
        KeyType::EcdsaP256 => rcgen::KeyPair::generate().map_err(GenerateError::Ecdsa),
        KeyType::Rsa2048 => rsa_key(2048),
        KeyType::Rsa3072 => rsa_key(3072),
    }
}

/// rcgen on ring cannot generate RSA keys, so the `rsa` crate does, and the
/// key goes to rcgen as PKCS#8 (ring signs with RSA keys it did not make).
fn rsa_key(bits: usize) -> Result<rcgen::KeyPair, GenerateError> {
    use rsa::pkcs8::{EncodePrivateKey, LineEnding};
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, bits)
        .map_err(|source| GenerateError::Rsa { bits, source })?;
    let pem = key.to_pkcs8_pem(LineEnding::LF).map_err(GenerateError::EncodeRsa)?;
    rcgen::KeyPair::from_pem(&pem).map_err(GenerateError::LoadRsa)
}

/// A random positive serial number of 16 bytes (RFC 5280 §4.1.2.2 allows
/// up to 20), so two certificates for one key still differ.
fn random_serial() -> Result<rcgen::SerialNumber, GenerateError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut bytes).map_err(|_| GenerateError::Random)?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01; // never a leading zero byte, so the length is stable
    Ok(rcgen::SerialNumber::from_slice(&bytes))
}

/// A self-signed certificate for `names` (the first is the CN), valid from
/// yesterday (clock skew) for a year, as PEM certificate and PEM private key.
pub fn self_signed_pem(names: &[String], key_type: KeyType) -> Result<(String, String), GenerateError> {
    let key = generate_key(key_type)?;
    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(GenerateError::Certificate)?;
    if let Some(cn) = names.first() {
        params.distinguished_name.push(rcgen::DnType::CommonName, cn.clone());
    }
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(365);
    params.serial_number = Some(random_serial()?);
    let cert = params.self_signed(&key).map_err(GenerateError::Certificate)?;
    Ok((cert.pem(), key.serialize_pem()))
}
