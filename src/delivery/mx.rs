//! Next-hop resolution for outbound SMTP (RFC 5321 §5.1, RFC 7505): the
//! recipient domain's MX hosts in preference order (equal preferences
//! shuffled), the domain itself when it has no MX (the implicit MX), a
//! domain literal's address, or a smarthost's addresses — each host with
//! the IP addresses to try.
//!
//! Failures are typed for the queue: [`DnsFailure`] says whether the
//! failure is permanent (NXDOMAIN, a null MX, a domain with neither MX nor
//! address records) or temporary (timeouts, SERVFAIL, unreachable name
//! servers), with a short text that reads well as `dns: <text>` in `queue
//! summary`. This module only asks DNS; it never connects to a mail server
//! and never decides what a failure means for a message.
//!
//! With `[dns] dnssec = true` every answer is validated (hickory's DNSSEC
//! with the ring provider, from `[dns] trust_anchor` or the root KSK), and
//! each [`NextHop`] says whether its MX RRset and its address records were
//! [`Dnssec::Secure`]: DANE (RFC 7672 §2.2) applies only where both are.
//! A bogus answer is never used: it is a temporary failure
//! (`dns: dnssec: bogus MX records`), and an MX host whose addresses are
//! bogus is left out like one without addresses. [`MxResolver::tlsa`]
//! looks up a host's TLSA records with their security.

use super::dane::Tlsa;
use super::{AttemptResult, Stage};
use crate::config::DnsSection;
use crate::proto::smtp::address::literal_ip;
use hickory_resolver::config::{ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::dnssec::{Proof, TrustAnchors};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData, Record};
use hickory_resolver::TokioResolver;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// At most this many MX hosts are used (RFC 5321 §5.1 lets a client limit them).
pub const MAX_MX_HOSTS: usize = 10;

/// One host to try, with its addresses in the order to try them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NextHop {
    /// The MX exchange or smarthost name (ASCII, lower case, no trailing
    /// dot), or the address text of a domain literal or IP smarthost. TLS
    /// `verify` checks the certificate against this name.
    pub host: String,
    /// The MX preference; `None` for an implicit MX, a literal or a smarthost.
    pub preference: Option<u16>,
    pub addrs: Vec<IpAddr>,
    /// The MX RRset that named this host (for an implicit MX: the
    /// domain's own address records). Insecure without `[dns] dnssec`,
    /// for literals and smarthosts.
    pub mx_dnssec: Dnssec,
    /// This host's address records.
    pub addr_dnssec: Dnssec,
}

impl NextHop {
    fn unsigned(host: String, preference: Option<u16>, addrs: Vec<IpAddr>) -> NextHop {
        NextHop { host, preference, addrs, mx_dnssec: Dnssec::Insecure, addr_dnssec: Dnssec::Insecure }
    }

    /// RFC 7672 §2.2.1-2: the MX RRset and the host's addresses are both
    /// secure, so the host's TLSA records may be used.
    pub fn dane_eligible(&self) -> bool {
        self.mx_dnssec == Dnssec::Secure && self.addr_dnssec == Dnssec::Secure
    }
}

/// What DNSSEC made of an answer (RFC 4035 §4.3). Bogus answers never
/// reach a [`NextHop`]; they end as failures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Dnssec {
    /// Validated from the trust anchor.
    Secure,
    /// Unsigned (or validation off): usable, but proves nothing.
    #[default]
    Insecure,
    /// Should have validated and did not.
    Bogus,
}

impl Dnssec {
    /// Secure if every record is; bogus if any is; else insecure.
    fn of<'a>(records: impl Iterator<Item = &'a Record>) -> Dnssec {
        let mut all_secure = true;
        let mut any = false;
        for r in records {
            any = true;
            match r.proof {
                Proof::Secure => {}
                Proof::Bogus => return Dnssec::Bogus,
                _ => all_secure = false,
            }
        }
        if any && all_secure {
            Dnssec::Secure
        } else {
            Dnssec::Insecure
        }
    }
}

/// A host's TLSA records (`_<port>._tcp.<host>`) and their security;
/// no records (NXDOMAIN, NODATA) is an empty list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsaAnswer {
    /// The name looked up, e.g. `_25._tcp.mx.example.net`.
    pub name: String,
    pub dnssec: Dnssec,
    pub records: Vec<Tlsa>,
}

/// Why no next hop could be found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("DNS lookup for {name}: {text}")]
pub struct DnsFailure {
    /// The domain or host that was looked up.
    pub name: String,
    /// Retrying will not help: NXDOMAIN, null MX, no mail records at all.
    pub permanent: bool,
    /// Short and stable, e.g. `domain not found`, `null MX`, `timed out`.
    pub text: String,
    /// RFC 3463 status for the DSN.
    pub enhanced: &'static str,
}

impl DnsFailure {
    fn permanent(name: &str, text: &str, enhanced: &'static str) -> DnsFailure {
        DnsFailure { name: name.to_string(), permanent: true, text: text.to_string(), enhanced }
    }

    fn temporary(name: &str, text: impl Into<String>) -> DnsFailure {
        // RFC 3463 X.4.3: directory server failure
        DnsFailure { name: name.to_string(), permanent: false, text: text.into(), enhanced: "4.4.3" }
    }

    /// The same failure, but never permanent (a smarthost's name is our
    /// configuration, not the recipient's fault).
    pub fn into_temporary(self) -> DnsFailure {
        DnsFailure { permanent: false, enhanced: "4.4.3", ..self }
    }

    /// The queue's record of this failure (stage `dns`, no SMTP code).
    pub fn result(&self, at: u64) -> AttemptResult {
        AttemptResult {
            code: None,
            enhanced: Some(self.enhanced.to_string()),
            text: self.text.clone(),
            remote_host: None,
            stage: Stage::Dns,
            at,
        }
    }
}

/// A resolver could not be built from the configuration.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up DNS resolution: {0}")]
pub struct DnsSetupError(String);

/// Resolves next hops with hickory, honouring `[dns] nameservers` (empty:
/// the system's `/etc/resolv.conf`) and `[dns] timeout`. Cheap to clone.
#[derive(Clone)]
pub struct MxResolver {
    inner: TokioResolver,
    /// Bound on one lookup, whatever the resolver's own retries do.
    limit: Duration,
    /// `[dns] dnssec`: answers are validated.
    dnssec: bool,
}

impl std::fmt::Debug for MxResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MxResolver").field("limit", &self.limit).finish_non_exhaustive()
    }
}

impl MxResolver {
    pub fn from_config(dns: &DnsSection) -> Result<MxResolver, DnsSetupError> {
        let mut builder = if dns.nameserver_addrs.is_empty() {
            TokioResolver::builder_tokio()
                .map_err(|e| DnsSetupError(format!("reading /etc/resolv.conf: {e}; set [dns] nameservers")))?
        } else {
            let servers = dns
                .nameserver_addrs
                .iter()
                .map(|a| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = a.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = a.port();
                    NameServerConfig::new(a.ip(), true, vec![udp, tcp])
                })
                .collect();
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            )
        };
        let timeout = dns.timeout.0.max(Duration::from_millis(100));
        let opts = builder.options_mut();
        opts.timeout = timeout;
        opts.attempts = 2;
        // IPv4 first: where IPv6 is not routed, the IPv4 address is tried at once.
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        if dns.dnssec {
            opts.validate = true;
            if let Some(path) = &dns.trust_anchor {
                let anchors = TrustAnchors::from_file(path)
                    .map_err(|e| DnsSetupError(format!("dns.trust_anchor {}: {e}", path.display())))?;
                builder = builder.with_trust_anchor(Arc::new(anchors));
            }
        }
        let inner = builder.build().map_err(|e| DnsSetupError(e.to_string()))?;
        Ok(MxResolver { inner, limit: timeout * 2 + Duration::from_millis(500), dnssec: dns.dnssec })
    }

    /// Whether answers are validated (`[dns] dnssec`).
    pub fn dnssec(&self) -> bool {
        self.dnssec
    }

    /// The next hops for mail to `domain`: its MX hosts by preference (equal
    /// preferences in random order), or the domain itself without MX, or a
    /// domain literal's address.
    pub async fn resolve_domain(&self, domain: &str) -> Result<Vec<NextHop>, DnsFailure> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        if domain.starts_with('[') {
            return match literal_ip(&domain) {
                Some(ip) => Ok(vec![NextHop::unsigned(ip.to_string(), None, vec![ip])]),
                None => Err(DnsFailure::permanent(&domain, "invalid domain literal", "5.1.2")),
            };
        }
        let name = fqdn(&domain).ok_or_else(|| DnsFailure::permanent(&domain, "invalid domain name", "5.1.2"))?;
        let lookup = tokio::time::timeout(self.limit, self.inner.mx_lookup(name.clone())).await;
        let mut mx_dnssec = Dnssec::Insecure;
        let mut mxs: Vec<(u16, Name)> = match lookup {
            Err(_) => return Err(DnsFailure::temporary(&domain, "timed out")),
            Ok(Ok(l)) => {
                mx_dnssec = Dnssec::of(l.answers().iter().filter(|r| matches!(r.data, RData::MX(_))));
                l.answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::MX(mx) => Some((mx.preference, mx.exchange.clone())),
                        _ => None,
                    })
                    .collect()
            }
            Ok(Err(e)) if is_bogus(&e) => return Err(bogus(&domain, "MX records")),
            Ok(Err(e)) => match negative(&e) {
                Some(true) => return Err(DnsFailure::permanent(&domain, "domain not found", "5.1.2")),
                Some(false) => Vec::new(),
                None => return Err(temporary(&domain, &e)),
            },
        };
        if mx_dnssec == Dnssec::Bogus {
            return Err(bogus(&domain, "MX records"));
        }

        // RFC 7505 §3: a single MX whose exchange is "." says "no mail here".
        if mxs.iter().any(|(_, x)| x.is_root()) {
            mxs.retain(|(_, x)| !x.is_root());
            if mxs.is_empty() {
                return Err(DnsFailure::permanent(&domain, "null MX: the domain accepts no mail", "5.1.10"));
            }
        }

        if mxs.is_empty() {
            // RFC 5321 §5.1: no MX, so the domain itself is the implicit MX.
            return match self.addresses(&domain, name).await {
                // the domain's own records stand for the MX RRset (RFC 7672 §2.2.2)
                Ok((addrs, sec)) => Ok(vec![NextHop {
                    host: domain.clone(),
                    preference: None,
                    addrs,
                    mx_dnssec: sec,
                    addr_dnssec: sec,
                }]),
                Err(f) if f.permanent => {
                    Err(DnsFailure::permanent(&domain, "no MX or address records for the domain", "5.4.4"))
                }
                Err(f) => Err(f),
            };
        }

        let ordered = order_by_preference(mxs);
        let mut set = tokio::task::JoinSet::new();
        for (i, (pref, exchange)) in ordered.into_iter().take(MAX_MX_HOSTS).enumerate() {
            let me = self.clone();
            set.spawn(async move {
                let host = exchange.to_ascii().trim_end_matches('.').to_ascii_lowercase();
                let r = me.addresses(&host, exchange).await;
                (i, pref, host, r)
            });
        }
        let mut found = Vec::new();
        let mut failures = Vec::new();
        while let Some(joined) = set.join_next().await {
            let Ok((i, pref, host, r)) = joined else { continue };
            match r {
                Ok((addrs, addr_dnssec)) => {
                    found.push((i, NextHop { host, preference: Some(pref), addrs, mx_dnssec, addr_dnssec }))
                }
                Err(f) => {
                    tracing::debug!(domain = %domain, mx = %host, "MX host has no usable address: {f}");
                    failures.push(f);
                }
            }
        }
        if found.is_empty() {
            // An MX pointing nowhere is usually a transient mistake; the
            // message expires if it stays so.
            let why = failures.first().map(|f| f.text.clone()).unwrap_or_default();
            return Err(DnsFailure::temporary(&domain, format!("no address for any MX host ({why})")));
        }
        found.sort_by_key(|(i, _)| *i);
        Ok(found.into_iter().map(|(_, h)| h).collect())
    }

    /// The addresses of one host (a smarthost, or an MX exchange): an IP
    /// address is taken as it is.
    pub async fn resolve_host(&self, host: &str) -> Result<NextHop, DnsFailure> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(NextHop::unsigned(ip.to_string(), None, vec![ip]));
        }
        let name = fqdn(&host).ok_or_else(|| DnsFailure::permanent(&host, "invalid host name", "5.1.2"))?;
        let (addrs, addr_dnssec) = self.addresses(&host, name).await?;
        // a smarthost is the operator's own choice: DANE never applies to it
        Ok(NextHop { addr_dnssec, ..NextHop::unsigned(host, None, addrs) })
    }

    /// The TXT records at `name` (e.g. `_mta-sts.example.net`,
    /// `_smtp._tls.example.net`), each record's strings joined as RFC 7208
    /// §3.3 and RFC 8461 §3.1 say. No records (or NXDOMAIN) is an empty
    /// list; timeouts and SERVFAIL are temporary failures.
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, DnsFailure> {
        let name_text = name.trim_end_matches('.').to_ascii_lowercase();
        let fq = fqdn(&name_text).ok_or_else(|| DnsFailure::permanent(&name_text, "invalid name", "5.1.2"))?;
        match tokio::time::timeout(self.limit, self.inner.txt_lookup(fq)).await {
            Err(_) => Err(DnsFailure::temporary(&name_text, "timed out")),
            Ok(Ok(l)) => Ok(l
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::TXT(t) => {
                        Some(t.txt_data.iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect::<String>())
                    }
                    _ => None,
                })
                .collect()),
            Ok(Err(e)) if is_bogus(&e) => Err(bogus(&name_text, "TXT records")),
            Ok(Err(e)) if negative(&e).is_some() => Ok(Vec::new()),
            Ok(Err(e)) => Err(temporary(&name_text, &e)),
        }
    }

    /// The TLSA records of `host` for `port` (RFC 7672 §2.2:
    /// `_<port>._tcp.<host>`). None (NXDOMAIN, NODATA) is an empty list;
    /// a bogus answer, a timeout or SERVFAIL is a temporary failure, so
    /// the host is not used (never a downgrade to no DANE).
    pub async fn tlsa(&self, host: &str, port: u16) -> Result<TlsaAnswer, DnsFailure> {
        let name_text = format!("_{port}._tcp.{}", host.trim_end_matches('.').to_ascii_lowercase());
        let fq = fqdn(&name_text).ok_or_else(|| DnsFailure::permanent(&name_text, "invalid name", "5.1.2"))?;
        match tokio::time::timeout(self.limit, self.inner.tlsa_lookup(fq)).await {
            Err(_) => Err(DnsFailure::temporary(&name_text, "TLSA lookup timed out")),
            Ok(Ok(l)) => {
                let tlsa = || l.answers().iter().filter(|r| matches!(r.data, RData::TLSA(_)));
                let dnssec = Dnssec::of(tlsa());
                if dnssec == Dnssec::Bogus {
                    return Err(bogus(&name_text, "TLSA records"));
                }
                let records = tlsa()
                    .filter_map(|r| match &r.data {
                        RData::TLSA(t) => Some(Tlsa {
                            usage: t.cert_usage.into(),
                            selector: t.selector.into(),
                            matching: t.matching.into(),
                            data: t.cert_data.clone(),
                        }),
                        _ => None,
                    })
                    .collect();
                Ok(TlsaAnswer { name: name_text, dnssec, records })
            }
            Ok(Err(e)) if is_bogus(&e) => Err(bogus(&name_text, "TLSA records")),
            Ok(Err(e)) if negative(&e).is_some() => {
                Ok(TlsaAnswer { name: name_text, dnssec: Dnssec::Insecure, records: Vec::new() })
            }
            Ok(Err(e)) => {
                let f = temporary(&name_text, &e);
                Err(DnsFailure { text: format!("TLSA lookup: {}", f.text), ..f })
            }
        }
    }

    async fn addresses(&self, host: &str, name: Name) -> Result<(Vec<IpAddr>, Dnssec), DnsFailure> {
        match tokio::time::timeout(self.limit, self.inner.lookup_ip(name)).await {
            Err(_) => Err(DnsFailure::temporary(host, "timed out")),
            Ok(Ok(l)) => {
                let records = l.as_lookup().answers();
                let sec = Dnssec::of(records.iter().filter(|r| matches!(r.data, RData::A(_) | RData::AAAA(_))));
                if sec == Dnssec::Bogus {
                    return Err(bogus(host, "address records"));
                }
                let mut addrs: Vec<IpAddr> = Vec::new();
                for a in l.iter() {
                    if !addrs.contains(&a) {
                        addrs.push(a);
                    }
                }
                if addrs.is_empty() {
                    Err(DnsFailure::permanent(host, "no address records", "5.4.4"))
                } else {
                    Ok((addrs, sec))
                }
            }
            Ok(Err(e)) if is_bogus(&e) => Err(bogus(host, "address records")),
            Ok(Err(e)) => match negative(&e) {
                Some(true) => Err(DnsFailure::permanent(host, "host not found", "5.4.4")),
                Some(false) => Err(DnsFailure::permanent(host, "no address records", "5.4.4")),
                None => Err(temporary(host, &e)),
            },
        }
    }
}

/// A fully qualified name, so no search domain is ever appended.
fn fqdn(domain: &str) -> Option<Name> {
    if domain.is_empty() || domain.len() > 253 {
        return None;
    }
    Name::from_utf8(format!("{domain}.")).ok()
}

/// A DNSSEC validation failure: retry later, never use the answer.
fn is_bogus(e: &NetError) -> bool {
    matches!(e, NetError::Dns(DnsError::DnssecBogus))
        || matches!(e, NetError::Dns(DnsError::Nsec { proof: Proof::Bogus, .. }))
}

fn bogus(name: &str, what: &str) -> DnsFailure {
    DnsFailure::temporary(name, format!("dnssec: bogus {what}"))
}

/// A negative answer: `Some(true)` NXDOMAIN, `Some(false)` no records of the
/// type; None for any other error. With validation on, hickory hands an
/// insecure or indeterminate denial over as an NSEC error.
fn negative(e: &NetError) -> Option<bool> {
    match e {
        _ if e.is_nx_domain() => Some(true),
        _ if e.is_no_records_found() => Some(false),
        NetError::Dns(DnsError::Nsec { response, .. }) => Some(response.response_code == ResponseCode::NXDomain),
        _ => None,
    }
}

fn temporary(name: &str, e: &NetError) -> DnsFailure {
    let text = match e {
        NetError::Timeout => "timed out".to_string(),
        NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail)) => "server failure (SERVFAIL)".to_string(),
        NetError::Dns(DnsError::ResponseCode(ResponseCode::Refused)) => "query refused (REFUSED)".to_string(),
        NetError::Dns(DnsError::ResponseCode(code)) => format!("error response ({code})"),
        NetError::NoConnections => "no name server reachable".to_string(),
        other => format!("lookup failed: {}", crate::proto::smtp::client::clean_text(&other.to_string(), 200)),
    };
    DnsFailure::temporary(name, text)
}

/// Sort by preference, shuffling each group of equal preference (RFC 5321
/// §5.1: spread the load across equally preferred hosts).
pub fn order_by_preference<T>(mut mxs: Vec<(u16, T)>) -> Vec<(u16, T)> {
    mxs.sort_by_key(|(p, _)| *p);
    let mut start = 0;
    while start < mxs.len() {
        let pref = mxs[start].0;
        let end = mxs[start..].iter().position(|(p, _)| *p != pref).map(|n| start + n).unwrap_or(mxs.len());
        fastrand::shuffle(&mut mxs[start..end]);
        start = end;
    }
    mxs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preference_order_with_shuffled_ties() {
        let mut seen_b_first = false;
        let mut seen_c_first = false;
        for _ in 0..200 {
            let o = order_by_preference(vec![(20, "b"), (30, "d"), (10, "a"), (20, "c")]);
            let names: Vec<&str> = o.iter().map(|(_, n)| *n).collect();
            assert_eq!(names[0], "a");
            assert_eq!(names[3], "d");
            seen_b_first |= names[1] == "b";
            seen_c_first |= names[1] == "c";
        }
        assert!(seen_b_first && seen_c_first, "equal preferences are shuffled");
    }

    #[test]
    fn failures_make_attempt_results() {
        let f = DnsFailure::permanent("example.invalid", "domain not found", "5.1.2");
        assert_eq!(f.to_string(), "DNS lookup for example.invalid: domain not found");
        let r = f.result(7);
        assert_eq!(r.category(), "dns: domain not found");
        assert_eq!((r.stage, r.at, r.enhanced.as_deref()), (Stage::Dns, 7, Some("5.1.2")));
        let t = f.into_temporary();
        assert!(!t.permanent && t.enhanced.starts_with('4'));
    }

    #[test]
    fn names_are_fully_qualified() {
        assert!(fqdn("example.com").unwrap().is_fqdn());
        assert!(fqdn("").is_none());
        assert!(fqdn(&"a.".repeat(200)).is_none());
    }

    #[test]
    fn builds_outside_a_runtime() {
        let dns = DnsSection { nameserver_addrs: vec!["127.0.0.1:53".parse().unwrap()], ..DnsSection::default() };
        assert!(MxResolver::from_config(&dns).is_ok());
    }

    #[tokio::test]
    async fn literals_need_no_dns() {
        let dns = DnsSection {
            nameserver_addrs: vec!["127.0.0.1:9".parse().unwrap()],
            timeout: crate::config::Dur(Duration::from_millis(200)),
            ..DnsSection::default()
        };
        let r = MxResolver::from_config(&dns).unwrap();
        let hops = r.resolve_domain("[192.0.2.7]").await.unwrap();
        assert_eq!(hops[0].addrs, ["192.0.2.7".parse::<IpAddr>().unwrap()]);
        let hops = r.resolve_domain("[IPv6:2001:db8::1]").await.unwrap();
        assert_eq!(hops[0].host, "2001:db8::1");
        let f = r.resolve_domain("[not an ip]").await.unwrap_err();
        assert!(f.permanent);
        let h = r.resolve_host("[::1]").await.unwrap();
        assert_eq!(h.addrs, ["::1".parse::<IpAddr>().unwrap()]);
        assert_eq!(r.resolve_host("10.1.2.3").await.unwrap().host, "10.1.2.3");
    }
}
