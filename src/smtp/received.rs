//! The trace header we prepend to every accepted message (RFC 5321 §4.4,
//! protocol names from RFC 3848), and the Message-ID/Date fix-up that
//! submission servers apply (RFC 6409 §8).

use crate::tls::TlsInfo;
use std::net::IpAddr;

pub struct Trace<'a> {
    pub helo: &'a str,
    pub ip: IpAddr,
    pub hostname: &'a str,
    pub esmtp: bool,
    /// The transaction was SMTPUTF8 (RFC 6531 §3.7.3 protocol names).
    pub utf8: bool,
    pub tls: Option<&'a TlsInfo>,
    pub authenticated: bool,
    pub id: &'a str,
    /// Named only when there is a single recipient (as Postfix does), so a
    /// copy never discloses the other recipients.
    pub for_rcpt: Option<&'a str>,
    pub date: u64,
}

/// Keep a peer-supplied name from breaking the header: printable ASCII
/// without the characters that structure it.
fn clean(s: &str) -> String {
    clean_with(s, false)
}

/// As [`clean`], keeping non-ASCII characters where the header may carry
/// them (an SMTPUTF8 message's recipient, RFC 6532).
fn clean_with(s: &str, utf8: bool) -> String {
    s.chars()
        .take(255)
        .map(|c| {
            let allowed = c.is_ascii_graphic() || (utf8 && !c.is_ascii() && !c.is_control());
            if allowed && !"()<>;\\\"".contains(c) {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// The `with` protocol name: RFC 3848, and RFC 6531 §3.7.3 for SMTPUTF8.
pub fn protocol(esmtp: bool, tls: bool, auth: bool, utf8: bool) -> &'static str {
    match (esmtp, tls, auth, utf8) {
        (false, _, _, _) => "SMTP",
        (true, false, false, false) => "ESMTP",
        (true, true, false, false) => "ESMTPS",
        (true, false, true, false) => "ESMTPA",
        (true, true, true, false) => "ESMTPSA",
        (true, false, false, true) => "UTF8SMTP",
        (true, true, false, true) => "UTF8SMTPS",
        (true, false, true, true) => "UTF8SMTPA",
        (true, true, true, true) => "UTF8SMTPSA",
    }
}

pub fn header(t: &Trace<'_>) -> Vec<u8> {
    let ip = match crate::config::canonical_ip(t.ip) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("IPv6:{v6}"),
    };
    let mut h = format!(
        "Received: from {} ([{ip}])\r\n\tby {} (Postern) with {} id {}",
        clean(t.helo),
        t.hostname,
        protocol(t.esmtp, t.tls.is_some(), t.authenticated, t.utf8),
        t.id
    );
    if let Some(tls) = t.tls {
        h.push_str(&format!("\r\n\t(using {} with cipher {})", tls.version, tls.cipher));
    }
    if let Some(r) = t.for_rcpt {
        h.push_str(&format!("\r\n\tfor <{}>", clean_with(r, t.utf8)));
    }
    h.push_str(&format!(";\r\n\t{}\r\n", crate::util::rfc5322_date(t.date)));
    h.into_bytes()
}

/// Whether the header section of `message` has a field named `name`.
pub fn has_header(message: &[u8], name: &str) -> bool {
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return false;
        }
        if line.len() > name.len()
            && line[name.len()] == b':'
            && line[..name.len()].eq_ignore_ascii_case(name.as_bytes())
        {
            return true;
        }
    }
    false
}

/// Append `Message-ID` and `Date` to `out` when `message` lacks them.
pub fn add_missing_headers(message: &[u8], out: &mut Vec<u8>, id: &str, hostname: &str, now: u64) {
    if !has_header(message, "Message-ID") {
        out.extend_from_slice(format!("Message-ID: <{id}@{hostname}>\r\n").as_bytes());
    }
    if !has_header(message, "Date") {
        out.extend_from_slice(format!("Date: {}\r\n", crate::util::rfc5322_date(now)).as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_with_tls() {
        let tls = TlsInfo { version: "TLSv1.3".into(), cipher: "TLS_AES_256_GCM_SHA384".into(), sni: None };
        let h = String::from_utf8(header(&Trace {
            helo: "client (evil)\r\nX: y",
            ip: "::ffff:127.0.0.1".parse().unwrap(),
            hostname: "mx.example.test",
            esmtp: true,
            utf8: false,
            tls: Some(&tls),
            authenticated: false,
            id: "01ABCDEFGHJ",
            for_rcpt: Some("a@example.test"),
            date: 0,
        }))
        .unwrap();
        assert!(h.starts_with("Received: from client??evil???X:?y ([127.0.0.1])\r\n\tby mx.example.test (Postern) with ESMTPS id 01ABCDEFGHJ\r\n\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)\r\n\tfor <a@example.test>;\r\n\t"), "{h}");
        assert!(h.ends_with("1970 00:00:00 +0000\r\n"), "{h}");
        assert_eq!(protocol(true, true, true, false), "ESMTPSA");
        assert_eq!(protocol(true, true, true, true), "UTF8SMTPSA");
        assert_eq!(protocol(true, false, false, true), "UTF8SMTP");
        assert_eq!(protocol(false, true, true, false), "SMTP");
    }

    #[test]
    fn an_smtputf8_recipient_keeps_its_letters() {
        let t = |utf8| {
            String::from_utf8(header(&Trace {
                helo: "c",
                ip: "127.0.0.1".parse().unwrap(),
                hostname: "mx.example.test",
                esmtp: true,
                utf8,
                tls: None,
                authenticated: false,
                id: "X",
                for_rcpt: Some("jösé@example.test"),
                date: 0,
            }))
            .unwrap()
        };
        let h = t(true);
        assert!(h.contains("with UTF8SMTP id X") && h.contains("for <jösé@example.test>"), "{h}");
        // without SMTPUTF8 the header stays ASCII
        assert!(t(false).contains("for <j?s?@example.test>"));
    }

    #[test]
    fn missing_headers() {
        let mut out = Vec::new();
        add_missing_headers(b"Subject: x\r\nDate: today\r\n\r\nMessage-ID: body\r\n", &mut out, "ID", "h.test", 0);
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("Message-ID: <ID@h.test>\r\n") && !s.contains("Date:"), "{s}");
        assert!(has_header(b"message-id: <x>\r\n\r\n", "Message-ID"));
    }
}
