//! Routing: which connector carries mail for a recipient domain (SPEC §6).
//!
//! A pure function of (domain, source virtual server, connectors): the most
//! specific matching address space wins whatever the cost — an exact domain
//! beats any wildcard, a wildcard with more labels beats one with fewer, `*`
//! is last; among equally specific matches the lowest cost wins and equal
//! costs share the load. Only equally specific connectors are failover
//! candidates, so a domain pinned to a TLS-required connector never leaks
//! onto an opportunistic one. Domains arrive here in their canonical A-label
//! form ([`crate::domain::canonical`], applied by the address parser and the
//! config), so every spelling of a pinned domain meets the same connector.

use crate::config::{AddressSpace, Config, Connector, OutboundTls, SmarthostTls};
use serde::Serialize;
use std::cmp::Ordering;
use std::fmt;

/// How specifically an address space matched: compare as a tuple.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Specificity {
    /// 2 exact, 1 subdomain wildcard, 0 `*`.
    class: u8,
    /// Labels in a wildcard's domain (more is more specific).
    labels: usize,
}

/// Whether `space` matches `domain` (lower case), and how specifically.
pub fn matches(space: &AddressSpace, domain: &str) -> Option<Specificity> {
    let domain = domain.trim_end_matches('.');
    match space {
        AddressSpace::Any => Some(Specificity { class: 0, labels: 0 }),
        AddressSpace::Subdomains(d) => {
            let strict_sub = domain.len() > d.len() + 1
                && domain.ends_with(d.as_str())
                && domain.as_bytes()[domain.len() - d.len() - 1] == b'.';
            strict_sub.then(|| Specificity { class: 1, labels: d.split('.').count() })
        }
        AddressSpace::Exact(d) => (d.eq_ignore_ascii_case(domain)).then_some(Specificity { class: 2, labels: 0 }),
    }
}

/// A connector's best-matching address space for a domain.
#[derive(Clone, Debug)]
pub struct Candidate<'a> {
    pub connector: &'a Connector,
    pub space: &'a AddressSpace,
    pub specificity: Specificity,
}

fn best_match<'a>(c: &'a Connector, domain: &str) -> Option<Candidate<'a>> {
    c.address_spaces
        .iter()
        .filter_map(|s| matches(s, domain).map(|sp| (s, sp)))
        .max_by_key(|(_, sp)| *sp)
        .map(|(space, specificity)| Candidate { connector: c, space, specificity })
}

/// The connectors that may carry mail for `domain` from `source`: the most
/// specific group, cheapest first (ties in configuration order).
pub fn select<'a>(connectors: &'a [Connector], domain: &str, source: &str) -> Vec<Candidate<'a>> {
    let cands: Vec<Candidate<'a>> =
        connectors.iter().filter(|c| c.serves(source)).filter_map(|c| best_match(c, domain)).collect();
    let Some(top) = cands.iter().map(|c| c.specificity).max() else {
        return Vec::new();
    };
    let mut group: Vec<Candidate<'a>> = cands.into_iter().filter(|c| c.specificity == top).collect();
    group.sort_by_key(|c| c.connector.cost);
    group
}

/// Pick one of the cheapest in a group; equal costs share the load.
pub fn choose<'a, 'b>(group: &'b [Candidate<'a>]) -> Option<&'b Candidate<'a>> {
    let cheapest = group.first()?.connector.cost;
    let ties: Vec<&Candidate<'a>> = group.iter().filter(|c| c.connector.cost == cheapest).collect();
    ties.get(fastrand::usize(..ties.len())).copied()
}

/// Where a connector sends mail for `domain`: its smarthost, or the domain (via MX).
pub fn next_hop(c: &Connector, domain: &str) -> String {
    match &c.smarthost_addr {
        Some(h) => format!("{}:{}", h.host, c.smarthost_port()),
        None => domain.trim_end_matches('.').to_ascii_lowercase(),
    }
}

/// The queue's destination key: `connector/next-hop`.
pub fn destination(c: &Connector, domain: &str) -> String {
    format!("{}/{}", c.name, next_hop(c, domain))
}

/// Split a destination key into connector name and next hop.
pub fn parse_destination(d: &str) -> Option<(&str, &str)> {
    d.split_once('/')
}

#[derive(Clone, Debug, Serialize)]
pub struct RouteChoice {
    pub connector: String,
    pub address_space: String,
    pub cost: u32,
    pub tls: String,
    pub next_hop: String,
    pub destination: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct PassedOver {
    pub connector: String,
    pub reason: String,
}

/// `postern route explain`: the winner, and why every other connector lost.
#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    pub address: String,
    /// The canonical (A-label) form routing uses.
    pub domain: String,
    /// The same domain in Unicode (U-labels), for people to read.
    pub domain_unicode: String,
    pub server: String,
    /// Delivered to local mailboxes; connectors are not consulted.
    pub local: bool,
    pub route: Option<RouteChoice>,
    pub passed_over: Vec<PassedOver>,
}

fn choice(c: &Candidate<'_>, domain: &str) -> RouteChoice {
    let conn = c.connector;
    let tls = match (&conn.smarthost_addr, conn.smarthost_tls) {
        (Some(_), SmarthostTls::Implicit) => {
            format!("{} (implicit TLS to the smarthost)", conn.tls)
        }
        _ => conn.tls.to_string(),
    };
    RouteChoice {
        connector: conn.name.clone(),
        address_space: c.space.to_string(),
        cost: conn.cost,
        tls,
        next_hop: match &conn.smarthost_addr {
            Some(_) => format!("smarthost {}", next_hop(conn, domain)),
            None => format!("MX of {domain}"),
        },
        destination: destination(conn, domain),
    }
}

/// Why `route explain` has nothing to explain.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("{0:?} is not an address (local@domain)")]
    NotAnAddress(String),
    #[error("{0:?}: {1}")]
    BadDomain(String, #[source] crate::domain::DomainError),
    #[error("no virtual server named {0:?}")]
    NoSuchServer(String),
}

/// Explain the route for `address` as received on `server` (default: the
/// first SMTP virtual server).
pub fn explain(config: &Config, address: &str, server: Option<&str>) -> Result<Explanation, ExplainError> {
    let written = address
        .rsplit_once('@')
        .map(|(_, d)| d)
        .filter(|d| !d.is_empty())
        .ok_or_else(|| ExplainError::NotAnAddress(address.to_string()))?;
    let domain = crate::domain::canonical(written).map_err(|e| ExplainError::BadDomain(address.to_string(), e))?;
    let server = match server {
        Some(s) => {
            config.virtual_server(s).ok_or_else(|| ExplainError::NoSuchServer(s.to_string()))?;
            s.to_string()
        }
        None => config
            .virtual_servers
            .iter()
            .find(|v| v.protocol == crate::config::Protocol::Smtp)
            .map(|v| v.name.clone())
            .unwrap_or_default(),
    };
    let mut ex = Explanation {
        address: address.to_string(),
        domain: domain.clone(),
        domain_unicode: crate::domain::to_unicode(&domain),
        server: server.clone(),
        local: config.is_local_domain(&domain),
        route: None,
        passed_over: Vec::new(),
    };
    if ex.local {
        for c in &config.connectors {
            ex.passed_over.push(PassedOver {
                connector: c.name.clone(),
                reason: format!("{domain} is a local domain: delivered to local mailboxes"),
            });
        }
        return Ok(ex);
    }
    let group = select(&config.connectors, &domain, &server);
    let winner = group.first();
    if let Some(w) = winner {
        ex.route = Some(choice(w, &domain));
    }
    for c in &config.connectors {
        if winner.is_some_and(|w| std::ptr::eq(w.connector, c)) {
            continue;
        }
        let reason = if !c.serves(&server) {
            let list = c.source_servers.as_deref().unwrap_or_default().join(", ");
            format!("not used for mail received on {server:?} (source_servers: {list})")
        } else {
            match (best_match(c, &domain), winner) {
                (None, _) => {
                    let spaces: Vec<String> = c.address_spaces.iter().map(|s| s.to_string()).collect();
                    format!("no address space matches {domain} ({})", spaces.join(", "))
                }
                (Some(mine), Some(w)) => match mine.specificity.cmp(&w.specificity) {
                    Ordering::Less => format!("less specific: {} loses to {}", mine.space, w.space),
                    _ if c.cost > w.connector.cost => format!(
                        "equally specific ({}), higher cost ({} > {}): used only if every next hop of {:?} fails at connect or TLS",
                        mine.space, c.cost, w.connector.cost, w.connector.name
                    ),
                    _ => format!("equally specific ({}) and equal cost ({}): shares the load with {:?}", mine.space, c.cost, w.connector.name),
                },
                (Some(_), None) => "not selected".to_string(),
            }
        };
        ex.passed_over.push(PassedOver { connector: c.name.clone(), reason });
    }
    Ok(ex)
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} (domain {}, Unicode {}, received on virtual server {:?})",
            self.address, self.domain, self.domain_unicode, self.server
        )?;
        if self.local {
            writeln!(f, "route: local delivery ({} is a local domain)", self.domain)?;
        } else {
            match &self.route {
                Some(r) => {
                    writeln!(
                        f,
                        "route: connector {:?}, address space {}, cost {}",
                        r.connector, r.address_space, r.cost
                    )?;
                    writeln!(f, "  tls: {}", r.tls)?;
                    writeln!(f, "  next hop: {}", r.next_hop)?;
                    writeln!(f, "  queue destination: {}", r.destination)?;
                }
                None => writeln!(f, "route: none; RCPT would be refused with 550 5.4.4")?,
            }
        }
        if !self.passed_over.is_empty() {
            writeln!(f, "passed over:")?;
            for p in &self.passed_over {
                writeln!(f, "  {:?}: {}", p.connector, p.reason)?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Specificity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.class, self.labels)
    }
}

/// Whether a connector's policy demands TLS (for messages and summaries).
pub fn requires_tls(c: &Connector) -> bool {
    matches!(c.tls, OutboundTls::Required | OutboundTls::Verify) || c.smarthost_tls == SmarthostTls::Implicit
}

pub mod expand;

#[cfg(test)]
mod tests;
