//! The RFC 8460 aggregate report: a day's sessions per policy domain,
//! folded from the tracking log's policy fields, as the JSON the RFC
//! defines (§4), gzipped, in the mail the RFC defines (§5.3:
//! `multipart/report; report-type="tlsrpt"` with an
//! `application/tlsrpt+gzip` part, `TLS-Report-Domain` and
//! `TLS-Report-Submitter`). Pure functions of their inputs (the day and
//! the time are parameters), so the output is testable byte for byte.

use super::coverage::{is_outbound_attempt, session_key};
use crate::track::Event;
use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::date::Date;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::MimePart;
use mail_builder::MessageBuilder;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Write;

/// One policy's sessions in the day (RFC 8460 §4.4 `policies[]`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicySessions {
    /// `tlsa`, `sts` or `no-policy-found`.
    pub kind: String,
    pub strings: Vec<String>,
    pub domain: String,
    /// The MX hosts met (DANE, none) or the policy's `mx` patterns (MTA-STS).
    pub mx_hosts: BTreeSet<String>,
    pub successful: u64,
    pub failed: u64,
    /// (result-type, receiving MX host, receiving IP) → failed sessions.
    pub failures: BTreeMap<(String, String, String), u64>,
}

/// The day's sessions per policy domain (lower case), each domain's
/// policies in the order of their type and strings. `events` are every
/// event of the day; sessions are counted once (see [`super::coverage`]).
pub fn aggregate<'a>(events: impl IntoIterator<Item = &'a Event>) -> BTreeMap<String, Vec<PolicySessions>> {
    let mut day = Day::default();
    for e in events {
        day.add(e);
    }
    day.finish()
}

/// The fold behind [`aggregate`], one event at a time, so a day's log is
/// never held in memory: only its sessions' keys and the counts.
#[derive(Default)]
pub struct Day {
    seen: HashSet<(String, String, u32)>,
    by: BTreeMap<String, BTreeMap<(String, Vec<String>), PolicySessions>>,
}

impl Day {
    pub fn finish(self) -> BTreeMap<String, Vec<PolicySessions>> {
        self.by.into_iter().map(|(d, m)| (d, m.into_values().collect())).collect()
    }

    /// Count `e` if it is an outbound attempt under a domain policy.
    pub fn add(&mut self, e: &Event) {
        let (seen, by) = (&mut self.seen, &mut self.by);
        if !is_outbound_attempt(e) {
            return;
        }
        let (Some(kind), Some(domain)) = (&e.policy_type, &e.policy_domain) else { return };
        if !seen.insert(session_key(e)) {
            return;
        }
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let p = by.entry(domain.clone()).or_default().entry((kind.clone(), e.policy_strings.clone())).or_insert_with(
            || PolicySessions {
                kind: kind.clone(),
                strings: e.policy_strings.clone(),
                domain: domain.clone(),
                ..PolicySessions::default()
            },
        );
        let host = e.host.clone().unwrap_or_default();
        if kind == "sts" {
            // RFC 8460 §4.4: for MTA-STS, the policy's `mx` patterns
            for s in &e.policy_strings {
                if let Some(mx) = s.trim().strip_prefix("mx:") {
                    p.mx_hosts.insert(mx.trim().to_string());
                }
            }
        } else if !host.is_empty() {
            p.mx_hosts.insert(host.clone());
        }
        match &e.policy_result {
            None => p.successful += 1,
            Some(r) => {
                p.failed += 1;
                let ip = e.remote_ip.clone().unwrap_or_default();
                *p.failures.entry((r.clone(), host, ip)).or_default() += 1;
            }
        }
    }
}

/// Who sends the report and which day it covers.
#[derive(Clone, Debug)]
pub struct Submitter<'a> {
    /// `organization-name` and the submitter in the subject: our host name.
    pub hostname: &'a str,
    /// `contact-info`: the postmaster.
    pub contact: &'a str,
    /// Unix seconds of the UTC day's start.
    pub day: u64,
}

/// The report id of `domain`'s report for the day (also the subject's
/// `Report-ID` and the mail's Message-ID).
pub fn report_id(s: &Submitter<'_>, domain: &str) -> String {
    let date = crate::util::rfc3339(s.day);
    format!("{}.{domain}@{}", date.get(..10).unwrap_or("day"), s.hostname)
}

/// RFC 8460 §4.4 JSON for one policy domain.
pub fn json(s: &Submitter<'_>, domain: &str, policies: &[PolicySessions]) -> Value {
    let policies: Vec<Value> = policies
        .iter()
        .map(|p| {
            let details: Vec<Value> = p
                .failures
                .iter()
                .map(|((result, host, ip), n)| {
                    let mut d = json!({ "result-type": result, "failed-session-count": n });
                    if !host.is_empty() {
                        d["receiving-mx-hostname"] = json!(host);
                    }
                    if !ip.is_empty() {
                        d["receiving-ip"] = json!(ip);
                    }
                    d
                })
                .collect();
            let mut policy = json!({ "policy-type": p.kind, "policy-domain": p.domain });
            if !p.strings.is_empty() {
                policy["policy-string"] = json!(p.strings);
            }
            if !p.mx_hosts.is_empty() {
                policy["mx-host"] = json!(p.mx_hosts);
            }
            json!({
                "policy": policy,
                "summary": {
                    "total-successful-session-count": p.successful,
                    "total-failure-session-count": p.failed,
                },
                "failure-details": details,
            })
        })
        .collect();
    json!({
        "organization-name": s.hostname,
        "date-range": {
            "start-datetime": crate::util::rfc3339(s.day),
            "end-datetime": crate::util::rfc3339(s.day + super::DAY - 1),
        },
        "contact-info": s.contact,
        "report-id": report_id(s, domain),
        "policies": policies,
    })
}

/// The `rua` addresses of a `_smtp._tls` TXT answer (RFC 8460 §3): the
/// `mailto:` ones of the one record that starts `v=TLSRPTv1`; none when
/// there are none, or several such records (the RFC: then none applies).
pub fn mailto_ruas(records: &[String]) -> Vec<String> {
    let ours: Vec<&String> = records.iter().filter(|r| r.trim_start().starts_with("v=TLSRPTv1")).collect();
    let [record] = ours.as_slice() else { return Vec::new() };
    let mut out = Vec::new();
    for field in record.split(';') {
        let Some((k, v)) = field.split_once('=') else { continue };
        if !k.trim().eq_ignore_ascii_case("rua") {
            continue;
        }
        for uri in v.split(',') {
            let uri = uri.trim();
            let Some(addr) = uri.get(..7).filter(|p| p.eq_ignore_ascii_case("mailto:")).and_then(|_| uri.get(7..))
            else {
                continue;
            };
            // a mailto: may carry ?headers; only the address is used
            let addr = addr.split('?').next().unwrap_or_default().trim();
            if addr.contains('@') && !addr.contains(char::is_whitespace) && !out.iter().any(|a: &String| a == addr) {
                out.push(addr.to_string());
            }
        }
    }
    out
}

/// The report JSON, gzipped (RFC 8460 §5.3: `application/tlsrpt+gzip`).
pub fn gzip(report: &Value) -> std::io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&serde_json::to_vec(report).map_err(std::io::Error::other)?)?;
    enc.finish()
}

/// The report mail from the postmaster to `ruas` (RFC 8460 §5.3), dated `now`.
pub fn compose(s: &Submitter<'_>, domain: &str, ruas: &[String], gz: Vec<u8>, now: u64) -> Vec<u8> {
    let id = report_id(s, domain);
    let text = format!(
        "This is an aggregate TLS report (RFC 8460) from {} for {domain},\r\n\
         covering {} to {}.\r\n",
        s.hostname,
        crate::util::rfc3339(s.day),
        crate::util::rfc3339(s.day + super::DAY - 1)
    );
    // RFC 8460 §5.3: sender!policy-domain!begin!end!unique-id.json.gz
    let filename = format!("{}!{domain}!{}!{}!001.json.gz", s.hostname, s.day, s.day + super::DAY - 1);
    let report = MimePart::new(
        ContentType::new("multipart/report")
            .attribute("report-type", "tlsrpt")
            .attribute("boundary", format!("=_postern.tlsrpt.{}.{now}", s.day)),
        vec![
            MimePart::new(ContentType::new("text/plain").attribute("charset", "us-ascii"), text),
            MimePart::new(ContentType::new("application/tlsrpt+gzip"), gz).attachment(filename),
        ],
    );
    let to = Address::new_list(ruas.iter().map(|a| Address::new_address(None::<&str>, a.clone())).collect());
    let builder = MessageBuilder::new()
        .from(Address::new_address(None::<&str>, s.contact.to_string()))
        .to(to)
        .subject(format!("Report Domain: {domain} Submitter: {} Report-ID: <{id}>", s.hostname))
        .date(Date::new(now as i64))
        .message_id(format!("tlsrpt.{id}.{now}"))
        .header("TLS-Report-Domain", Raw::new(domain.to_string()))
        .header("TLS-Report-Submitter", Raw::new(s.hostname.to_string()))
        .header("Auto-Submitted", Raw::new("auto-generated"))
        .body(report);
    let mut out = Vec::new();
    builder.serialize(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str, kind: &str, result: Option<&str>) -> Event {
        Event {
            rcpt: Some("x@pol.test".into()),
            connector: Some("internet".into()),
            destination: Some("internet/pol.test".into()),
            attempt: Some(1),
            host: Some("mx.pol.test".into()),
            remote_ip: Some("192.0.2.1".into()),
            tls: Some("unverified".into()),
            policy_type: Some(kind.into()),
            policy_domain: Some("Pol.test".into()),
            policy_strings: vec!["version: STSv1".into(), "mode: enforce".into(), "mx: *.pol.test".into()],
            policy_result: result.map(str::to_string),
            ..Event::new(id, "delivered")
        }
    }

    #[test]
    fn a_day_folds_into_rfc8460_json() {
        let events = [
            session("A", "sts", None),
            session("A", "sts", None), // a second recipient of the same session
            session("B", "sts", None),
            session("C", "sts", Some("certificate-host-mismatch")),
            Event::new("D", "received"),
        ];
        let by = aggregate(&events);
        let p = &by["pol.test"];
        assert_eq!((p.len(), p[0].successful, p[0].failed), (1, 2, 1));
        let s = Submitter { hostname: "mx.example.test", contact: "postmaster@example.test", day: 1_795_910_400 };
        let j = json(&s, "pol.test", p);
        assert_eq!(j["date-range"]["start-datetime"], "2026-11-29T00:00:00Z");
        assert_eq!(j["date-range"]["end-datetime"], "2026-11-29T23:59:59Z");
        assert_eq!(j["report-id"], "2026-11-29.pol.test@mx.example.test");
        let pol = &j["policies"][0];
        assert_eq!(pol["policy"]["policy-type"], "sts");
        assert_eq!(pol["policy"]["mx-host"][0], "*.pol.test");
        assert_eq!(pol["summary"]["total-successful-session-count"], 2);
        assert_eq!(pol["failure-details"][0]["result-type"], "certificate-host-mismatch");
        assert_eq!(pol["failure-details"][0]["receiving-ip"], "192.0.2.1");
        assert_eq!(pol["failure-details"][0]["failed-session-count"], 1);
        let mail = compose(&s, "pol.test", &["r@rua.test".into()], gzip(&j).unwrap(), s.day + 90_000);
        let text = String::from_utf8_lossy(&mail);
        assert!(text.contains("TLS-Report-Domain: pol.test\r\n"), "{text}");
        assert!(text.contains("report-type=\"tlsrpt\"") || text.contains("report-type=tlsrpt"), "{text}");
        assert!(text.contains("application/tlsrpt+gzip"), "{text}");
    }

    #[test]
    fn only_mailto_ruas_of_one_record() {
        let r = |s: &str| vec![s.to_string()];
        assert_eq!(
            mailto_ruas(&r("v=TLSRPTv1; rua=mailto:a@x.test,https://r.test/x, MAILTO:b@x.test?subject=1")),
            ["a@x.test", "b@x.test"]
        );
        assert!(mailto_ruas(&r("v=spf1 -all")).is_empty());
        assert!(mailto_ruas(&["v=TLSRPTv1; rua=mailto:a@x.test".into(), "v=TLSRPTv1; rua=mailto:b@x.test".into()])
            .is_empty());
    }
}
