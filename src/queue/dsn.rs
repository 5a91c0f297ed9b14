//! Delivery status notifications (SPEC §5): the non-delivery report and the
//! one "delayed" warning, as RFC 3464 `multipart/report;
//! report-type=delivery-status` messages with RFC 3463 status codes, built
//! with mail-builder.
//!
//! A report has three parts: a short text for people, the
//! `message/delivery-status` fields for programs (per message
//! `Reporting-MTA`, `Arrival-Date`; per recipient `Final-Recipient`,
//! `Action`, `Status`, `Remote-MTA`, `Diagnostic-Code`,
//! `Last-Attempt-Date`), and the original message's header section as
//! `text/rfc822-headers` (never its body). One report covers every
//! recipient it is given. Composition is a pure function of its inputs —
//! the clock is a parameter, the boundary and Message-ID derive from the
//! queue id and time — so the output is byte-for-byte testable. This module
//! never queues or sends anything: the scheduler decides when a report is
//! due and enqueues it with the null sender `<>`.

use super::message::{Message, RcptState, Recipient};
use crate::util::rfc5322_date;
use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::date::Date;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::MimePart;
use mail_builder::MessageBuilder;

/// Which report to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportKind {
    /// The recipients will not be delivered: a permanent failure, expiry
    /// after `max_lifetime` (status 4.4.7), or an operator's `queue delete
    /// --ndr`. `Action: failed`.
    Failure,
    /// The one warning after `delay_warning_after`; `retry_until` is when
    /// the message expires, if known. `Action: delayed`.
    Delay { retry_until: Option<u64> },
}

/// The header section of a stored message: everything before the first
/// empty line, with the CRLF that ends the last field (the whole input if
/// there is no body).
pub fn header_section(message: &[u8]) -> &[u8] {
    if message.starts_with(b"\r\n") {
        return &[];
    }
    match memchr::memmem::find(message, b"\r\n\r\n") {
        Some(i) => &message[..i + 2],
        None => message,
    }
}

/// The RFC 3463 status a report gives one recipient.
pub fn status(kind: ReportKind, r: &Recipient) -> String {
    let last = r.last_result.as_ref().and_then(|a| match (&a.enhanced, a.code) {
        (Some(e), _) if is_status(e) => Some(e.clone()),
        (_, Some(c)) if (200..600).contains(&c) => Some(format!("{}.0.0", c / 100)),
        _ => None,
    });
    match kind {
        ReportKind::Delay { .. } => last.filter(|s| s.starts_with('4')).unwrap_or_else(|| "4.0.0".into()),
        ReportKind::Failure => match (r.state, last) {
            // RFC 3463 X.4.7: delivery time expired
            (RcptState::Expired, _) => "4.4.7".into(),
            (RcptState::Deleted, _) => "5.0.0".into(),
            (_, Some(s)) if s.starts_with('5') => s,
            // given up on a temporary failure: that is expiry too
            (_, Some(s)) if s.starts_with('4') => "4.4.7".into(),
            _ => "5.0.0".into(),
        },
    }
}

fn is_status(s: &str) -> bool {
    let p: Vec<&str> = s.split('.').collect();
    p.len() == 3
        && matches!(p[0], "2" | "4" | "5")
        && p[1..].iter().all(|n| (1..=3).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit()))
}

/// One line of printable text: control characters become spaces.
fn clean(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect::<String>().trim().to_string()
}

/// `Name: value`, folded at spaces before 78 columns where it can be
/// (RFC 5322 §2.2.3), CRLF-terminated.
fn field(out: &mut String, name: &str, value: &str) {
    let value = clean(value);
    let mut line_len = name.len() + 1;
    out.push_str(name);
    out.push(':');
    for word in value.split(' ').filter(|w| !w.is_empty()) {
        if line_len + 1 + word.chars().count() > 78 && line_len > name.len() + 1 {
            out.push_str("\r\n   ");
            line_len = 3;
        } else {
            out.push(' ');
            line_len += 1;
        }
        out.push_str(word);
        line_len += word.chars().count();
    }
    out.push_str("\r\n");
}

/// Wrap a paragraph of text at 72 columns, CRLF line ends.
fn paragraph(out: &mut String, text: &str, indent: &str) {
    let mut line = String::from(indent);
    for word in text.split_whitespace() {
        if line.len() > indent.len() && line.len() + 1 + word.len() > 72 {
            out.push_str(line.trim_end());
            out.push_str("\r\n");
            line = String::from(indent);
        }
        if line.len() > indent.len() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(line.trim_end());
    out.push_str("\r\n");
}

/// RFC 3464 address type: `rfc822`, or RFC 6533 `utf-8` for non-ASCII.
fn address_type(a: &str) -> &'static str {
    if a.is_ascii() {
        "rfc822"
    } else {
        "utf-8"
    }
}

/// Why a recipient is in the report, for people.
fn reason(kind: ReportKind, r: &Recipient) -> String {
    let last = r.last_result.as_ref().map(|a| clean(&a.to_string()));
    match (kind, r.state, last) {
        (ReportKind::Delay { .. }, _, Some(l)) => format!("not delivered yet; the last attempt said: {l}"),
        (ReportKind::Delay { .. }, _, None) => "not delivered yet".into(),
        (_, RcptState::Deleted, _) => "deleted from the queue by the mail system administrator".into(),
        (_, RcptState::Expired, Some(l)) => {
            format!("delivery kept failing and the message expired; the last attempt said: {l}")
        }
        (_, RcptState::Expired, None) => "the message expired before it could be delivered".into(),
        (_, _, Some(l)) => l,
        (_, _, None) => "delivery failed".into(),
    }
}

/// Write a report about `recipients` of `message` to its sender, from
/// `MAILER-DAEMON@hostname`, dated `now` (Unix seconds). `original_headers`
/// is the stored message's header section ([`header_section`]). The result
/// has CRLF line ends; it is 7-bit unless a recipient address is not ASCII
/// (then queue it as 8BITMIME).
pub fn compose(
    kind: ReportKind,
    hostname: &str,
    message: &Message,
    recipients: &[&Recipient],
    original_headers: &[u8],
    now: u64,
) -> Vec<u8> {
    let (subject, action, word) = match kind {
        ReportKind::Failure => ("Undelivered Mail Returned to Sender", "failed", "failed"),
        ReportKind::Delay { .. } => ("Delayed Mail (still being retried)", "delayed", "delayed"),
    };

    // The part for people.
    let mut text = String::new();
    paragraph(&mut text, &format!("This is the mail system at host {hostname}."), "");
    text.push_str("\r\n");
    match kind {
        ReportKind::Failure => paragraph(
            &mut text,
            "Your message could not be delivered to one or more recipients. The reasons are below, \
             and the headers of your message are attached.",
            "",
        ),
        ReportKind::Delay { retry_until } => {
            let until = retry_until.map(|t| format!(" until {}", rfc5322_date(t))).unwrap_or_default();
            paragraph(
                &mut text,
                &format!(
                    "Your message has not been delivered yet to the recipients below. The mail system \
                     will keep trying{until}. You do not need to send it again."
                ),
                "",
            );
        }
    }
    for r in recipients {
        text.push_str("\r\n");
        paragraph(&mut text, &format!("<{}>:", clean(&r.address)), "");
        paragraph(&mut text, &reason(kind, r), "    ");
    }

    // The part for programs (RFC 3464 §2.2, §2.3).
    let mut status_fields = String::new();
    field(&mut status_fields, "Reporting-MTA", &format!("dns; {hostname}"));
    field(&mut status_fields, "X-Postern-Queue-ID", message.id.as_str());
    field(&mut status_fields, "Arrival-Date", &rfc5322_date(message.arrived));
    for r in recipients {
        status_fields.push_str("\r\n");
        if let Some(o) = &r.original {
            field(&mut status_fields, "Original-Recipient", &format!("{}; {o}", address_type(o)));
        }
        field(&mut status_fields, "Final-Recipient", &format!("{}; {}", address_type(&r.address), r.address));
        field(&mut status_fields, "Action", action);
        field(&mut status_fields, "Status", &status(kind, r));
        if let Some(a) = &r.last_result {
            if let Some(h) = &a.remote_host {
                field(&mut status_fields, "Remote-MTA", &format!("dns; {h}"));
            }
            let diagnostic = match (a.code, &a.enhanced) {
                (Some(c), Some(e)) => format!("smtp; {c} {e} {}", a.text),
                (Some(c), None) => format!("smtp; {c} {}", a.text),
                // not an SMTP reply: say which step failed (RFC 3464 §2.3.6 allows our own type)
                (None, _) => format!("X-Postern; {}: {}", a.stage, a.text),
            };
            field(&mut status_fields, "Diagnostic-Code", &diagnostic);
            field(&mut status_fields, "Last-Attempt-Date", &rfc5322_date(a.at));
        }
        if let ReportKind::Delay { retry_until: Some(t) } = kind {
            field(&mut status_fields, "Will-Retry-Until", &rfc5322_date(t));
        }
    }
    let utf8 = !status_fields.is_ascii();
    let status_type = if utf8 { "message/global-delivery-status" } else { "message/delivery-status" };
    let status_part = MimePart::new(ContentType::new(status_type), status_fields.into_bytes())
        .transfer_encoding(if utf8 { "8bit" } else { "7bit" });

    // The original headers, as they are when they are plain 7-bit text
    // (RFC 3462 §2); otherwise mail-builder encodes them.
    let headers_part = if original_headers.is_ascii() && original_headers.split(|&b| b == b'\n').all(|l| l.len() <= 998)
    {
        MimePart::new(ContentType::new("text/rfc822-headers"), original_headers.to_vec()).transfer_encoding("7bit")
    } else {
        let h = String::from_utf8_lossy(original_headers).into_owned();
        MimePart::new(ContentType::new("text/rfc822-headers").attribute("charset", "utf-8"), h)
    };

    let text_type =
        ContentType::new("text/plain").attribute("charset", if text.is_ascii() { "us-ascii" } else { "utf-8" });
    let boundary = format!("=_postern.{}.{now}", message.id);
    let report = MimePart::new(
        ContentType::new("multipart/report")
            .attribute("report-type", "delivery-status")
            .attribute("boundary", boundary),
        vec![MimePart::new(text_type, text), status_part, headers_part],
    );

    let to: Address<'_> = if message.sender.is_empty() {
        // A report about a report (null sender) is never sent (SPEC §5); if
        // a caller composes one anyway, it goes nowhere visible.
        Address::new_address(None::<&str>, format!("MAILER-DAEMON@{hostname}"))
    } else {
        Address::new_address(None::<&str>, message.sender.as_str())
    };
    let builder = MessageBuilder::new()
        .from(Address::new_address(Some("Mail Delivery System"), format!("MAILER-DAEMON@{hostname}")))
        .to(to)
        .subject(subject)
        .date(Date::new(now as i64))
        .message_id(format!("{word}.{}.{now}@{hostname}", message.id))
        .header("Auto-Submitted", Raw::new("auto-replied"))
        .body(report);
    let mut out = Vec::new();
    builder.serialize(&mut out);
    out
}

#[cfg(test)]
mod tests;
