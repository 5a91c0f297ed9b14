//! What a delivery attempt reports, per recipient and per connection: the
//! stage a result came from, the result itself, and how TLS went. The queue
//! stores these in its records (sled and spool JSON), so their serde form is
//! part of the on-disk format: rename nothing here.

use crate::tls::TlsInfo;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Where in a delivery attempt a result came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Dns,
    Connect,
    Tls,
    Auth,
    Mail,
    Rcpt,
    Data,
    Local,
    Queue,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Dns => "dns",
            Stage::Connect => "connect",
            Stage::Tls => "tls",
            Stage::Auth => "auth",
            Stage::Mail => "mail",
            Stage::Rcpt => "rcpt",
            Stage::Data => "data",
            Stage::Local => "local",
            Stage::Queue => "queue",
        })
    }
}

/// The result of the last attempt for one recipient.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptResult {
    #[serde(default)]
    pub code: Option<u16>,
    #[serde(default)]
    pub enhanced: Option<String>,
    pub text: String,
    #[serde(default)]
    pub remote_host: Option<String>,
    pub stage: Stage,
    /// Unix seconds.
    pub at: u64,
}

impl AttemptResult {
    /// The short category `queue summary` shows, e.g. `rcpt: 550 5.1.1`,
    /// `tls: STARTTLS not offered`, `connect: refused`.
    pub fn category(&self) -> String {
        match (self.code, &self.enhanced) {
            (Some(c), Some(e)) => format!("{}: {c} {e}", self.stage),
            (Some(c), None) => format!("{}: {c}", self.stage),
            _ => format!("{}: {}", self.stage, self.text),
        }
    }
}

impl fmt::Display for AttemptResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.stage)?;
        if let Some(c) = self.code {
            write!(f, " {c}")?;
        }
        if let Some(e) = &self.enhanced {
            write!(f, " {e}")?;
        }
        write!(f, " {}", self.text)?;
        if let Some(h) = &self.remote_host {
            write!(f, " (from {h})")?;
        }
        Ok(())
    }
}

/// TLS as it went on the last outbound attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsOutcome {
    /// `None` when the attempt went in plaintext.
    #[serde(default)]
    pub info: Option<TlsInfo>,
    /// The peer's certificate verified against the trust roots and names the host.
    #[serde(default)]
    pub verified: bool,
    /// E.g. "plaintext after a failed handshake: ...".
    #[serde(default)]
    pub note: Option<String>,
    /// The recipient domain's own policy (DANE or MTA-STS) and how it went;
    /// `None` for a smarthost, a domain without one, or older records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyOutcome>,
}

/// The policy kinds of RFC 8460 §4.3 (`policy-type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyKind {
    /// DANE: TLSA records under DNSSEC (RFC 7672).
    Tlsa,
    /// MTA-STS (RFC 8461).
    Sts,
    /// The domain publishes neither (or its DNS is insecure).
    NoPolicyFound,
}

/// One session's result under a domain's TLS policy: what TLS-RPT (RFC 8460)
/// aggregates and `postern tls report` counts. Filled by the DANE and MTA-STS
/// code in delivery; read from the tracking log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyOutcome {
    pub kind: PolicyKind,
    /// The policy domain (the recipient domain).
    pub domain: String,
    /// RFC 8460 `policy-string`: the TLSA records as presented, or the
    /// MTA-STS policy's lines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub strings: Vec<String>,
    /// MTA-STS `mode: testing`: a failure is reported, not enforced.
    #[serde(default)]
    pub testing: bool,
    /// RFC 8460 §4.3 `result-type` when the policy failed
    /// (`starttls-not-supported`, `certificate-host-mismatch`,
    /// `certificate-expired`, `certificate-not-trusted`,
    /// `validation-failure`, `tlsa-invalid`, `dnssec-invalid`,
    /// `dane-required`, `sts-policy-fetch-error`, `sts-policy-invalid`,
    /// `sts-webpki-invalid`); `None` on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

impl fmt::Display for TlsOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.info {
            Some(i) => {
                write!(f, "{} {}{}", i.version, i.cipher, if self.verified { " verified" } else { " unverified" })?
            }
            None => f.write_str("plaintext")?,
        }
        if let Some(n) = &self.note {
            write!(f, " ({n})")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON the queue has on disk (sled and spool) for these types: a
    /// record written before they moved here, and their form today.
    #[test]
    fn the_stored_json_form_is_unchanged() {
        let stored = r#"{"code":451,"enhanced":"4.7.5","text":"certificate name mismatch","remote_host":"mx.example.test","stage":"tls","at":1700000000}"#;
        let r: AttemptResult = serde_json::from_str(stored).unwrap();
        assert_eq!(r.stage, Stage::Tls);
        assert_eq!(r.category(), "tls: 451 4.7.5");
        assert_eq!(serde_json::to_string(&r).unwrap(), stored);
        let old: AttemptResult = serde_json::from_str(r#"{"text":"refused","stage":"connect","at":1}"#).unwrap();
        assert_eq!(old.to_string(), "connect: refused");

        let tls = TlsOutcome {
            info: Some(TlsInfo { version: "TLSv1.3".into(), cipher: "TLS_AES_128_GCM_SHA256".into(), sni: None }),
            verified: true,
            note: None,
            policy: None,
        };
        let json = r#"{"info":{"version":"TLSv1.3","cipher":"TLS_AES_128_GCM_SHA256"},"verified":true,"note":null}"#;
        assert_eq!(serde_json::to_string(&tls).unwrap(), json);
        assert_eq!(serde_json::from_str::<TlsOutcome>(json).unwrap(), tls);
        assert_eq!(serde_json::from_str::<TlsOutcome>("{}").unwrap().to_string(), "plaintext");
    }
}
