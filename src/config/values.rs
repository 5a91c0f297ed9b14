//! Small value types that appear in the config file: durations, sizes, TLS
//! versions and modes, CIDR lists and address spaces. Each parses from the
//! string an operator writes and fails with a [`ValueError`], a sentence
//! that says what was expected, so the loader can prefix the file, line and
//! key.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// A config value that does not parse. The text names the value as written
/// and what to write instead; the loader puts the file, line and key before it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("invalid duration {0:?}: write a number and a unit, e.g. \"30s\", \"5m\", \"4h\", \"2d\"")]
    Duration(String),
    #[error("invalid size {0:?}: write a number of bytes or e.g. \"512KB\", \"25MB\", \"1GB\"")]
    Size(String),
    #[error(
        "invalid address space {0:?}: write a domain (\"example.com\"), its subdomains (\"*.example.com\") or \"*\""
    )]
    AddressSpace(String),
    #[error("invalid host {0:?}: write \"host\" or \"host:port\"")]
    Host(String),
}

/// A duration written `"30s"`, `"5m"`, `"4h"`, `"2d"` (humantime syntax).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Dur(pub Duration);

impl TryFrom<String> for Dur {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, ValueError> {
        match humantime::parse_duration(s.trim()) {
            Ok(d) => Ok(Dur(d)),
            Err(_) => Err(ValueError::Duration(s)),
        }
    }
}

impl From<Dur> for String {
    fn from(d: Dur) -> String {
        humantime::format_duration(d.0).to_string()
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// A size in bytes: a plain integer, or a string such as `"25MB"`.
/// Units are binary (KB = 1024 bytes), as mail administrators expect from
/// message size limits; `KiB`/`MiB`/`GiB` are accepted as synonyms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Str(String),
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("invalid size: write a number of bytes or a string such as \"25MB\"")
        })? {
            Raw::Int(n) => Ok(Size(n)),
            Raw::Str(s) => parse_size(&s).map(Size).map_err(serde::de::Error::custom),
        }
    }
}

pub fn parse_size(s: &str) -> Result<u64, ValueError> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let err = || ValueError::Size(s.to_string());
    let n: u64 = num.parse().map_err(|_| err())?;
    let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => return Err(err()),
    };
    n.checked_mul(mult).ok_or_else(err)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Smtp,
    Pop3,
    Imap,
    Nntp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Smtp => "smtp",
            Protocol::Pop3 => "pop3",
            Protocol::Imap => "imap",
            Protocol::Nntp => "nntp",
        })
    }
}

/// How a listener offers TLS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    #[default]
    None,
    Starttls,
    Implicit,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TlsVersion {
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    #[default]
    Off,
    Optional,
    Required,
}

/// Outbound TLS policy of a connector (SPEC §7).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboundTls {
    None,
    #[default]
    Opportunistic,
    Required,
    Verify,
}

impl fmt::Display for OutboundTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OutboundTls::None => "none",
            OutboundTls::Opportunistic => "opportunistic",
            OutboundTls::Required => "required",
            OutboundTls::Verify => "verify",
        })
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmarthostTls {
    #[default]
    Starttls,
    Implicit,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// A connector address space: `example.com`, `*.example.com` or `*`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum AddressSpace {
    /// `*`: every domain.
    Any,
    /// `*.example.com`: strict subdomains of the stored (lower-case) domain.
    Subdomains(String),
    /// `example.com`: exactly this (lower-case) domain.
    Exact(String),
}

impl TryFrom<String> for AddressSpace {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, ValueError> {
        let t = s.trim().to_ascii_lowercase();
        if t == "*" {
            return Ok(AddressSpace::Any);
        }
        let (wild, dom) = match t.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, t.as_str()),
        };
        // the canonical (A-label) form, as recipient domains are parsed
        let dom = match crate::domain::canonical(dom) {
            Ok(d) if is_domain_name(&d) => d,
            _ => return Err(ValueError::AddressSpace(s)),
        };
        Ok(if wild { AddressSpace::Subdomains(dom) } else { AddressSpace::Exact(dom) })
    }
}

impl From<AddressSpace> for String {
    fn from(a: AddressSpace) -> String {
        a.to_string()
    }
}

impl fmt::Display for AddressSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressSpace::Any => f.write_str("*"),
            AddressSpace::Subdomains(d) => write!(f, "*.{d}"),
            AddressSpace::Exact(d) => f.write_str(d),
        }
    }
}

/// A host name as DNS allows it (letters, digits, hyphens; dots between labels).
/// Accepts a trailing dot. Used for config validation, not for peers' input.
pub fn is_domain_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// `host:port`, with a default port when none is given. IPv6 literals are
/// written in brackets: `[2001:db8::1]:25`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: Option<u16>,
}

impl HostPort {
    pub fn parse(s: &str) -> Result<HostPort, ValueError> {
        let t = s.trim();
        let err = || ValueError::Host(s.to_string());
        let (host, port) = if let Some(rest) = t.strip_prefix('[') {
            let (h, after) = rest.split_once(']').ok_or_else(err)?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p.parse::<u16>().map_err(|_| err())?),
                None if after.is_empty() => None,
                None => return Err(err()),
            };
            h.parse::<std::net::Ipv6Addr>().map_err(|_| err())?;
            (h.to_string(), port)
        } else {
            match t.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p.parse::<u16>().map_err(|_| err())?)),
                None => (t.to_string(), None),
            }
        };
        if host.parse::<std::net::IpAddr>().is_err() && !is_domain_name(&host) {
            return Err(err());
        }
        Ok(HostPort { host: host.to_ascii_lowercase(), port })
    }

    pub fn port_or(&self, default: u16) -> u16 {
        self.port.unwrap_or(default)
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        match self.port {
            Some(p) => write!(f, "{h}:{p}"),
            None => f.write_str(&h),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("25MB").unwrap(), 25 << 20);
        assert_eq!(parse_size("512kb").unwrap(), 512 << 10);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(parse_size("25 parsecs").is_err());
        assert!(parse_size("MB").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(Dur::try_from("30s".to_string()).unwrap().0, Duration::from_secs(30));
        assert_eq!(Dur::try_from("2d".to_string()).unwrap().0, Duration::from_secs(172800));
        assert!(Dur::try_from("five minutes".to_string()).is_err());
    }

    #[test]
    fn address_spaces() {
        assert_eq!(AddressSpace::try_from("*".to_string()).unwrap(), AddressSpace::Any);
        assert_eq!(
            AddressSpace::try_from("*.Example.COM".to_string()).unwrap(),
            AddressSpace::Subdomains("example.com".into())
        );
        assert_eq!(
            AddressSpace::try_from("example.com".to_string()).unwrap(),
            AddressSpace::Exact("example.com".into())
        );
        assert!(AddressSpace::try_from("*.*".to_string()).is_err());
        assert!(AddressSpace::try_from("exa mple".to_string()).is_err());
    }

    #[test]
    fn value_errors_name_the_value_and_what_to_write() {
        let text = |e: ValueError| e.to_string();
        assert_eq!(
            text(Dur::try_from("soon".to_string()).unwrap_err()),
            r#"invalid duration "soon": write a number and a unit, e.g. "30s", "5m", "4h", "2d""#
        );
        assert_eq!(
            text(parse_size("9 parsecs").unwrap_err()),
            r#"invalid size "9 parsecs": write a number of bytes or e.g. "512KB", "25MB", "1GB""#
        );
        assert_eq!(
            text(AddressSpace::try_from("*.*".to_string()).unwrap_err()),
            r#"invalid address space "*.*": write a domain ("example.com"), its subdomains ("*.example.com") or "*""#
        );
        assert_eq!(text(HostPort::parse("a b").unwrap_err()), r#"invalid host "a b": write "host" or "host:port""#);
    }

    #[test]
    fn host_ports() {
        let h = HostPort::parse("relay.example.net:587").unwrap();
        assert_eq!((h.host.as_str(), h.port), ("relay.example.net", Some(587)));
        let h = HostPort::parse("[::1]:2526").unwrap();
        assert_eq!((h.host.as_str(), h.port), ("::1", Some(2526)));
        assert_eq!(HostPort::parse("127.0.0.1").unwrap().port, None);
        assert!(HostPort::parse("bad host:25").is_err());
        assert!(HostPort::parse("host:99999").is_err());
    }
}
