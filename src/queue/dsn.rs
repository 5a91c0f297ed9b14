//! Delivery status notifications (RFC 3464). Placeholder until the
//! outbound work lands; the scheduler calls [`compose`].

use super::message::{Message, Recipient};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportKind {
    Failed,
    Delayed,
}

pub fn compose(
    kind: ReportKind,
    hostname: &str,
    message: &Message,
    recipients: &[&Recipient],
    original_headers: &[u8],
    now: u64,
) -> Vec<u8> {
    let mut s = format!(
        "From: MAILER-DAEMON@{hostname}\r\nTo: <{}>\r\nSubject: {}\r\nDate: {}\r\nAuto-Submitted: auto-replied\r\n\r\n",
        message.sender,
        if kind == ReportKind::Failed {
            "Undelivered Mail Returned to Sender"
        } else {
            "Delayed Mail (still being retried)"
        },
        crate::util::rfc5322_date(now)
    );
    for r in recipients {
        s.push_str(&format!("{}: {:?}\r\n", r.address, r.last_result));
    }
    let mut v = s.into_bytes();
    v.extend_from_slice(original_headers);
    v
}
