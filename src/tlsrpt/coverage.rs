//! `postern tls report` (SPEC §7): TLS coverage per destination domain,
//! counted from the tracking log's attempt events — the sessions and the
//! messages, how many went over TLS, how many were verified (by `verify`,
//! DANE or MTA-STS), how many fell back to plaintext after a failed
//! handshake, and the TLS failures by category. A pure fold over
//! [`Event`]s: the caller reads the log.
//!
//! A *session* is one delivery attempt of one message to one destination
//! (recipient events sharing message id, destination and attempt number);
//! only attempts that reached a host are sessions (the tracking log has
//! `tls` on those). A session reused for several messages counts once per
//! message. Local deliveries are not counted.

use crate::track::Event;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};

/// The row of one destination domain. Field names are the stable JSON
/// shape (`--json`, one object per line; README).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DomainCoverage {
    /// The recipient domain (lower case).
    pub domain: String,
    /// Attempts that reached a host.
    pub sessions: u64,
    /// Distinct messages among them.
    pub messages: u64,
    /// Sessions that ran over TLS.
    pub tls: u64,
    /// Sessions over TLS whose peer was verified, by any of the three.
    pub verified: u64,
    pub verified_by: VerifiedBy,
    /// Sessions in plaintext (for any reason, fallbacks included).
    pub plaintext: u64,
    /// Sessions in plaintext after a failed handshake (`opportunistic`).
    pub plaintext_fallback: u64,
    /// TLS failures by category (`tls: STARTTLS not offered`,
    /// `mta-sts (testing): certificate-host-mismatch`,
    /// `requiretls: 5.7.10`, ...), counting sessions.
    pub failures: BTreeMap<String, u64>,
}

/// What verified a session: the connector's `verify` (or a certificate
/// that would have passed it), DANE (TLSA), or MTA-STS.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VerifiedBy {
    pub verify: u64,
    pub dane: u64,
    pub mta_sts: u64,
}

/// Whether `e` is one recipient's outcome of an outbound attempt.
pub(crate) fn is_outbound_attempt(e: &Event) -> bool {
    matches!(e.event.as_str(), "delivered" | "deferred" | "failed")
        && e.connector.as_deref().is_some_and(|c| c != "local")
        && e.destination.as_deref().is_some_and(|d| d != "local")
}

/// The session an attempt event belongs to.
pub(crate) fn session_key(e: &Event) -> (String, String, u32) {
    (e.id.to_ascii_uppercase(), e.destination.clone().unwrap_or_default(), e.attempt.unwrap_or(0))
}

fn domain_of(rcpt: &str) -> String {
    rcpt.rsplit_once('@').map(|(_, d)| d).unwrap_or(rcpt).trim_end_matches('.').to_ascii_lowercase()
}

/// Counts per destination domain, sorted by domain.
#[derive(Default)]
pub struct Coverage {
    rows: BTreeMap<String, DomainCoverage>,
    sessions: HashSet<(String, String, u32)>,
    messages: HashSet<(String, String)>,
}

impl Coverage {
    pub fn new() -> Coverage {
        Coverage::default()
    }

    /// Count one event (others than outbound attempts are passed over).
    pub fn add(&mut self, e: &Event) {
        if !is_outbound_attempt(e) {
            return;
        }
        let Some(rcpt) = &e.rcpt else { return };
        let domain = domain_of(rcpt);
        let requiretls = e.enhanced.as_deref() == Some("5.7.10");
        // an attempt without a connection is no session, unless REQUIRETLS refused the host
        let Some(tls) = e.tls.as_deref().or(requiretls.then_some("none")) else { return };
        if !self.sessions.insert(session_key(e)) {
            return;
        }
        let row = self.rows.entry(domain.clone()).or_insert_with(|| DomainCoverage { domain, ..Default::default() });
        row.sessions += 1;
        if self.messages.insert((row.domain.clone(), e.id.to_ascii_uppercase())) {
            row.messages += 1;
        }
        let policy_ok = e.policy_result.is_none() && matches!(e.policy_type.as_deref(), Some("tlsa" | "sts"));
        match tls {
            "none" => {
                row.plaintext += 1;
                if e.tls_note.as_deref().is_some_and(|n| n.contains("after failed handshake")) {
                    row.plaintext_fallback += 1;
                }
            }
            _ => {
                row.tls += 1;
                if tls == "verified" || policy_ok {
                    row.verified += 1;
                    match (policy_ok, e.policy_type.as_deref()) {
                        (true, Some("tlsa")) => row.verified_by.dane += 1,
                        (true, _) => row.verified_by.mta_sts += 1,
                        _ => row.verified_by.verify += 1,
                    }
                }
            }
        }
        if let Some(c) = failure_category(e) {
            *row.failures.entry(c).or_default() += 1;
        }
    }

    pub fn rows(self) -> Vec<DomainCoverage> {
        self.rows.into_values().collect()
    }
}

/// The TLS failure an attempt event shows, if any.
fn failure_category(e: &Event) -> Option<String> {
    if e.stage.as_deref() == Some("tls") && e.event != "delivered" {
        return Some(format!("tls: {}", e.text.as_deref().unwrap_or("failed")));
    }
    if e.enhanced.as_deref() == Some("5.7.10") {
        return Some("requiretls: 5.7.10".into());
    }
    let result = e.policy_result.as_deref()?;
    let kind = match e.policy_type.as_deref() {
        Some("tlsa") => "dane",
        Some("sts") => "mta-sts",
        _ => "policy",
    };
    Some(match e.policy_testing {
        true => format!("{kind} (testing): {result}"),
        false => format!("{kind}: {result}"),
    })
}

/// The rows for people: an aligned table, failures on indented lines.
pub fn table(rows: &[DomainCoverage]) -> String {
    let mut out = String::new();
    let w = rows.iter().map(|r| r.domain.len()).max().unwrap_or(0).max("DOMAIN".len());
    out.push_str(&format!(
        "{:<w$}  {:>8}  {:>8}  {:>6}  {:>8}  {:>9}  {:>8}\n",
        "DOMAIN", "SESSIONS", "MESSAGES", "TLS", "VERIFIED", "PLAINTEXT", "FALLBACK"
    ));
    for r in rows {
        out.push_str(&format!(
            "{:<w$}  {:>8}  {:>8}  {:>6}  {:>8}  {:>9}  {:>8}\n",
            r.domain, r.sessions, r.messages, r.tls, r.verified, r.plaintext, r.plaintext_fallback
        ));
        if r.verified > 0 {
            let by = &r.verified_by;
            out.push_str(&format!(
                "{:w$}  verified by: verify {}, dane {}, mta-sts {}\n",
                "", by.verify, by.dane, by.mta_sts
            ));
        }
        for (c, n) in &r.failures {
            out.push_str(&format!("{:w$}  {n} x {c}\n", ""));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(id: &str, rcpt: &str, name: &str, tls: Option<&str>) -> Event {
        Event {
            rcpt: Some(rcpt.into()),
            connector: Some("internet".into()),
            destination: Some(format!("internet/{}", domain_of(rcpt))),
            attempt: Some(1),
            tls: tls.map(str::to_string),
            stage: Some("data".into()),
            ..Event::new(id, name)
        }
    }

    #[test]
    fn sessions_messages_tls_and_failures_are_counted_per_domain() {
        let mut c = Coverage::new();
        // two recipients of one message in one session
        c.add(&attempt("A", "x@one.test", "delivered", Some("verified")));
        c.add(&attempt("A", "y@One.test", "delivered", Some("verified")));
        c.add(&Event {
            tls_note: Some("plaintext after failed handshake: x".into()),
            ..attempt("B", "x@one.test", "delivered", Some("none"))
        });
        c.add(&Event {
            stage: Some("tls".into()),
            text: Some("STARTTLS not offered".into()),
            ..attempt("C", "x@two.test", "deferred", Some("none"))
        });
        c.add(&Event {
            policy_type: Some("sts".into()),
            policy_domain: Some("two.test".into()),
            policy_result: Some("certificate-host-mismatch".into()),
            policy_testing: true,
            ..attempt("D", "x@two.test", "delivered", Some("unverified"))
        });
        c.add(&Event {
            policy_type: Some("tlsa".into()),
            ..attempt("E", "x@two.test", "delivered", Some("unverified"))
        });
        c.add(&attempt("F", "x@three.test", "deferred", None)); // connect failure: no session
        c.add(&Event { connector: Some("local".into()), ..attempt("G", "x@four.test", "delivered", None) });
        let rows = c.rows();
        assert_eq!(rows.len(), 2, "{rows:?}");
        let one = &rows[0];
        assert_eq!(
            (one.sessions, one.messages, one.tls, one.verified, one.plaintext, one.plaintext_fallback),
            (2, 2, 1, 1, 1, 1)
        );
        let two = &rows[1];
        assert_eq!((two.sessions, two.messages, two.tls, two.verified, two.plaintext), (3, 3, 2, 1, 1));
        assert_eq!(two.verified_by, VerifiedBy { verify: 0, dane: 1, mta_sts: 0 });
        assert_eq!(two.failures.get("tls: STARTTLS not offered"), Some(&1));
        assert_eq!(two.failures.get("mta-sts (testing): certificate-host-mismatch"), Some(&1));
        let t = table(&rows);
        assert!(t.starts_with("DOMAIN") && t.contains("1 x tls: STARTTLS not offered"), "{t}");
    }
}
