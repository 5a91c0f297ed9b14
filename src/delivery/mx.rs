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

use super::{AttemptResult, Stage};
use crate::config::DnsSection;
use crate::proto::smtp::address::literal_ip;
use hickory_resolver::config::{ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData};
use hickory_resolver::TokioResolver;
use std::net::IpAddr;
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
        let inner = builder.build().map_err(|e| DnsSetupError(e.to_string()))?;
        Ok(MxResolver { inner, limit: timeout * 2 + Duration::from_millis(500) })
    }

    /// The next hops for mail to `domain`: its MX hosts by preference (equal
    /// preferences in random order), or the domain itself without MX, or a
    /// domain literal's address.
    pub async fn resolve_domain(&self, domain: &str) -> Result<Vec<NextHop>, DnsFailure> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        if domain.starts_with('[') {
            return match literal_ip(&domain) {
                Some(ip) => Ok(vec![NextHop { host: ip.to_string(), preference: None, addrs: vec![ip] }]),
                None => Err(DnsFailure::permanent(&domain, "invalid domain literal", "5.1.2")),
            };
        }
        let name = fqdn(&domain).ok_or_else(|| DnsFailure::permanent(&domain, "invalid domain name", "5.1.2"))?;
        let lookup = tokio::time::timeout(self.limit, self.inner.mx_lookup(name.clone())).await;
        let mut mxs: Vec<(u16, Name)> = match lookup {
            Err(_) => return Err(DnsFailure::temporary(&domain, "timed out")),
            Ok(Ok(l)) => l
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::MX(mx) => Some((mx.preference, mx.exchange.clone())),
                    _ => None,
                })
                .collect(),
            Ok(Err(e)) if e.is_nx_domain() => return Err(DnsFailure::permanent(&domain, "domain not found", "5.1.2")),
            Ok(Err(e)) if e.is_no_records_found() => Vec::new(),
            Ok(Err(e)) => return Err(temporary(&domain, &e)),
        };

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
                Ok(addrs) => Ok(vec![NextHop { host: domain.clone(), preference: None, addrs }]),
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
                Ok(addrs) => found.push((i, NextHop { host, preference: Some(pref), addrs })),
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
            return Ok(NextHop { host: ip.to_string(), preference: None, addrs: vec![ip] });
        }
        let name = fqdn(&host).ok_or_else(|| DnsFailure::permanent(&host, "invalid host name", "5.1.2"))?;
        let addrs = self.addresses(&host, name).await?;
        Ok(NextHop { host, preference: None, addrs })
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
            Ok(Err(e)) if e.is_nx_domain() || e.is_no_records_found() => Ok(Vec::new()),
            Ok(Err(e)) => Err(temporary(&name_text, &e)),
        }
    }

    async fn addresses(&self, host: &str, name: Name) -> Result<Vec<IpAddr>, DnsFailure> {
        match tokio::time::timeout(self.limit, self.inner.lookup_ip(name)).await {
            Err(_) => Err(DnsFailure::temporary(host, "timed out")),
            Ok(Ok(l)) => {
                let mut addrs: Vec<IpAddr> = Vec::new();
                for a in l.iter() {
                    if !addrs.contains(&a) {
                        addrs.push(a);
                    }
                }
                if addrs.is_empty() {
                    Err(DnsFailure::permanent(host, "no address records", "5.4.4"))
                } else {
                    Ok(addrs)
                }
            }
            Ok(Err(e)) if e.is_nx_domain() => Err(DnsFailure::permanent(host, "host not found", "5.4.4")),
            Ok(Err(e)) if e.is_no_records_found() => Err(DnsFailure::permanent(host, "no address records", "5.4.4")),
            Ok(Err(e)) => Err(temporary(host, &e)),
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
