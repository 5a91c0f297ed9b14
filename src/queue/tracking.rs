//! The queue's records as tracking events ([`crate::track`]): what a
//! message looked like when it arrived, what one attempt did for one
//! recipient (reply, host, TLS), which report a bounce queued. The hooks
//! beside the queue's log lines (and the SMTP service's "message queued")
//! call these, so each hook stays one line and the tracking module never
//! needs to know the queue's types.

use super::dsn::ReportKind;
use super::{AttemptResult, Message, MessageKind, QueueId, Recipient, TlsOutcome};
use crate::delivery::PolicyKind;
use crate::track::Event;
use std::net::IpAddr;

/// `received` for a message from a client (`created` for one of our reports).
pub fn received(m: &Message) -> Event {
    let mut e = Event::new(&m.id, if m.kind == MessageKind::Report { "created" } else { "received" });
    e.from = Some(m.sender.clone());
    e.recipients = m.recipients.iter().map(|r| r.address.clone()).collect();
    e.client_ip = m.client_ip.map(|ip| ip.to_string());
    e.helo = m.client_helo.clone();
    e.server = Some(m.source_server.clone());
    e.auth_user = m.auth_user.clone();
    e.size = Some(m.size);
    if m.kind == MessageKind::Inbound {
        // a client's certificate is never checked: TLS in is "unverified"
        e.tls = Some(if m.tls.is_some() { "unverified" } else { "none" }.into());
        e.tls_version = m.tls.as_ref().map(|t| t.version.clone());
        e.tls_cipher = m.tls.as_ref().map(|t| t.cipher.clone());
    }
    e
}

/// `created`: report `m` (an NDR or delay DSN) about message `about`.
pub fn report_created(m: &Message, about: &QueueId, kind: &ReportKind) -> Event {
    let mut e = received(m);
    e.report_for = Some(about.to_string());
    e.report_kind = Some(kind_name(kind).into());
    e
}

fn kind_name(kind: &ReportKind) -> &'static str {
    match kind {
        ReportKind::Failure => "failure",
        ReportKind::Delay { .. } => "delay",
    }
}

/// `bounced` (or `delay_warned`): report `report` about `rcpts` of `m`, going to `to`.
pub fn report_queued(m: &Message, rcpts: &[usize], kind: &ReportKind, report: &QueueId, to: &str) -> Event {
    let name = if matches!(kind, ReportKind::Failure) { "bounced" } else { "delay_warned" };
    let mut e = Event::new(&m.id, name);
    e.recipients = rcpts.iter().filter_map(|&i| m.recipients.get(i)).map(|r| r.address.clone()).collect();
    e.report = Some(report.to_string());
    e.report_kind = Some(kind_name(kind).into());
    e.to = Some(to.to_string());
    e
}

/// How an attempt went out: the destination, and what the attempt's
/// report says of the connection.
pub struct Via<'a> {
    pub destination: &'a str,
    /// TLS as it went on the connection (None: no connection was made).
    pub tls: Option<&'a TlsOutcome>,
    /// The address of the host that answered.
    pub ip: Option<IpAddr>,
}

/// One attempt's outcome for recipient `r` (`delivered`, `deferred`,
/// `failed`, `expired`), with the reply, the host, and TLS.
pub fn attempt(id: &QueueId, r: &Recipient, name: &str, via: &Via<'_>, res: &AttemptResult) -> Event {
    let destination = via.destination;
    let mut e = Event::new(id, name);
    e.rcpt = Some(r.address.clone());
    e.destination = Some(destination.to_string());
    e.connector = Some(destination.split_once('/').map(|(c, _)| c).unwrap_or(destination).to_string());
    e.host = res.remote_host.clone();
    e.remote_ip = via.ip.map(|ip| ip.to_string());
    if destination == "local" && name == "delivered" {
        // local delivery puts mail in the user's INBOX (delivery::local)
        e.mailbox = Some("INBOX".into());
    }
    e.stage = Some(res.stage.to_string());
    e.code = res.code;
    e.enhanced = res.enhanced.clone();
    e.text = Some(res.text.clone());
    e.attempt = Some(r.attempts);
    if let Some(t) = via.tls {
        e.tls = Some(
            match (&t.info, t.verified) {
                (None, _) => "none",
                (Some(_), false) => "unverified",
                (Some(_), true) => "verified",
            }
            .into(),
        );
        e.tls_version = t.info.as_ref().map(|i| i.version.clone());
        e.tls_cipher = t.info.as_ref().map(|i| i.cipher.clone());
        e.tls_note = t.note.clone();
        if let Some(p) = &t.policy {
            e.policy_type = Some(
                match p.kind {
                    PolicyKind::Tlsa => "tlsa",
                    PolicyKind::Sts => "sts",
                    PolicyKind::NoPolicyFound => "no-policy-found",
                }
                .into(),
            );
            e.policy_domain = Some(p.domain.clone());
            e.policy_strings = p.strings.clone();
            e.policy_result = p.failure.clone();
            e.policy_testing = p.testing;
        }
    }
    e
}

/// `deferred`, with when the next attempt is due.
pub fn deferred(id: &QueueId, r: &Recipient, via: &Via<'_>, res: &AttemptResult, next: u64) -> Event {
    let mut e = attempt(id, r, "deferred", via, res);
    e.next_attempt = Some(crate::util::rfc3339(next));
    e
}

/// `rerouted`: recipient `r` leaves destination `r.destination` for `to`.
pub fn rerouted(id: &QueueId, r: &Recipient, to: &str) -> Event {
    let mut e = Event::new(id, "rerouted");
    e.rcpt = Some(r.address.clone());
    e.previous = Some(r.destination.clone());
    e.destination = Some(to.to_string());
    e
}

/// An event with a text and nothing else (`no_ndr`, a worker's failure).
pub fn note(id: &QueueId, name: &str, text: impl Into<String>) -> Event {
    Event { text: Some(text.into()), ..Event::new(id, name) }
}
