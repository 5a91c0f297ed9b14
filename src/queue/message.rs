//! What the queue keeps about a message and each of its recipients.
//! Serialised as JSON both in the spool (the state at arrival) and in the
//! sled index (the current state); fields added later carry defaults so
//! older records still read.

use super::QueueId;
// what a delivery attempt reports is delivery's; the queue keeps it as it is
pub use crate::delivery::{AttemptResult, Stage, TlsOutcome};
use crate::proto::smtp::server::BodyType;
use crate::tls::TlsInfo;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;

/// Where a message's bytes live in the spool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpoolRef {
    pub segment: u32,
    /// Offset of the body within the segment file.
    pub offset: u64,
    pub len: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// Received from a client.
    #[default]
    Inbound,
    /// A delivery status notification we generated (NDR or delay warning).
    Report,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: QueueId,
    /// The reverse-path; empty for the null sender `<>`.
    pub sender: String,
    pub source_server: String,
    #[serde(default)]
    pub client_ip: Option<IpAddr>,
    #[serde(default)]
    pub client_helo: Option<String>,
    #[serde(default)]
    pub auth_user: Option<String>,
    #[serde(default)]
    pub tls: Option<TlsInfo>,
    /// Unix seconds.
    pub arrived: u64,
    pub size: u64,
    #[serde(default, with = "body_type_format")]
    pub body_type: BodyType,
    #[serde(default)]
    pub smtputf8: bool,
    #[serde(default)]
    pub kind: MessageKind,
    #[serde(default)]
    pub frozen: bool,
    /// The one "delayed" DSN has been sent.
    #[serde(default)]
    pub delay_warned: bool,
    /// RFC 8689: received with `MAIL FROM:<..> REQUIRETLS`; relayed only
    /// to hosts that offer REQUIRETLS over verified TLS, else returned.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_tls: bool,
    /// RFC 8689 §4.2.2: the message carries `TLS-Required: No`; the
    /// connector's certificate checks are waived for it. Never set together
    /// with `require_tls` (REQUIRETLS wins).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls_optional: bool,
    pub recipients: Vec<Recipient>,
    #[serde(default)]
    pub spool: SpoolRef,
}

/// The stored form of [`BodyType`] (`"7bit"`, `"8bitmime"`), kept here so
/// the SMTP core stays free of the queue's format; records on disk use it.
mod body_type_format {
    use super::BodyType;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(remote = "BodyType")]
    enum Stored {
        #[serde(rename = "7bit")]
        SevenBit,
        #[serde(rename = "8bitmime")]
        EightBitMime,
    }

    pub fn serialize<S: Serializer>(b: &BodyType, s: S) -> Result<S::Ok, S::Error> {
        Stored::serialize(b, s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BodyType, D::Error> {
        Stored::deserialize(d)
    }
}

impl Message {
    pub fn is_null_sender(&self) -> bool {
        self.sender.is_empty()
    }

    /// Every recipient has reached a final state.
    pub fn is_finished(&self) -> bool {
        self.recipients.iter().all(|r| r.state.is_final())
    }

    pub fn pending(&self) -> impl Iterator<Item = &Recipient> {
        self.recipients.iter().filter(|r| r.state == RcptState::Queued)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub address: String,
    /// `local`, or `connector/next-hop` (see `routing`).
    pub destination: String,
    pub state: RcptState,
    #[serde(default)]
    pub attempts: u32,
    /// Unix seconds of the next attempt; `None` means as soon as possible.
    #[serde(default)]
    pub next_attempt: Option<u64>,
    #[serde(default)]
    pub last_result: Option<AttemptResult>,
    /// TLS outcome of the last delivery attempt.
    #[serde(default)]
    pub tls: Option<TlsOutcome>,
    /// The address as the client gave it, when alias expansion changed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<String>,
}

impl Recipient {
    pub fn new(address: String, destination: String) -> Recipient {
        Recipient {
            address,
            destination,
            state: RcptState::Queued,
            attempts: 0,
            next_attempt: None,
            last_result: None,
            tls: None,
            original: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RcptState {
    Queued,
    Delivered,
    Failed,
    Expired,
    Deleted,
}

impl RcptState {
    pub fn is_final(self) -> bool {
        self != RcptState::Queued
    }

    pub fn parse(s: &str) -> Option<RcptState> {
        Some(match s.to_ascii_lowercase().as_str() {
            "queued" => RcptState::Queued,
            "delivered" => RcptState::Delivered,
            "failed" => RcptState::Failed,
            "expired" => RcptState::Expired,
            "deleted" => RcptState::Deleted,
            _ => return None,
        })
    }
}

impl fmt::Display for RcptState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RcptState::Queued => "queued",
            RcptState::Delivered => "delivered",
            RcptState::Failed => "failed",
            RcptState::Expired => "expired",
            RcptState::Deleted => "deleted",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_type_keeps_its_stored_form() {
        #[derive(Serialize, Deserialize)]
        struct Field {
            #[serde(default, with = "body_type_format")]
            b: BodyType,
        }
        let json = serde_json::to_string(&Field { b: BodyType::EightBitMime }).unwrap();
        assert_eq!(json, r#"{"b":"8bitmime"}"#);
        let back: Field = serde_json::from_str(r#"{"b":"7bit"}"#).unwrap();
        assert_eq!(back.b, BodyType::SevenBit);
        let missing: Field = serde_json::from_str("{}").unwrap();
        assert_eq!(missing.b, BodyType::SevenBit);
    }
}
