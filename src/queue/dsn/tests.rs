//! Golden files for the two report kinds (set UPDATE_GOLDEN=1 to rewrite
//! them after an intended change), and the reports parsed back with
//! mail-parser to check their structure.

use super::*;
use crate::queue::{AttemptResult, QueueId, Stage};
use mail_parser::{MessageParser, MimeHeaders, PartType};
use std::path::PathBuf;

const NOW: u64 = 1_795_000_000; // Wed, 18 Nov 2026 ...
const ORIGINAL: &[u8] = b"Received: from client.test ([192.0.2.10])\r\n\tby mail.example.test (Postern) with ESMTPS id 0ABCDEFGHJK;\r\n\tWed, 18 Nov 2026 10:00:00 +0000\r\nFrom: Alice <alice@example.test>\r\nTo: bob@remote.test, carol@remote.test\r\nSubject: Quarterly numbers\r\nMessage-ID: <m1@example.test>\r\n\r\nThe body, which a report never carries.\r\n";

fn result(stage: Stage, code: Option<u16>, enhanced: Option<&str>, text: &str, host: Option<&str>) -> AttemptResult {
    AttemptResult {
        code,
        enhanced: enhanced.map(str::to_string),
        text: text.into(),
        remote_host: host.map(str::to_string),
        stage,
        at: NOW - 60,
    }
}

fn recipient(address: &str, state: RcptState, last: Option<AttemptResult>) -> Recipient {
    let mut r = Recipient::new(address.into(), "internet/remote.test".into());
    r.state = state;
    r.attempts = 3;
    r.last_result = last;
    r
}

fn message(recipients: Vec<Recipient>) -> Message {
    Message {
        id: QueueId::parse("0ABCDEFGHJK").unwrap(),
        sender: "alice@example.test".into(),
        source_server: "submission".into(),
        client_ip: None,
        client_helo: None,
        auth_user: None,
        tls: None,
        arrived: NOW - 2 * 86400,
        size: ORIGINAL.len() as u64,
        body_type: Default::default(),
        smtputf8: false,
        kind: Default::default(),
        frozen: false,
        delay_warned: false,
        require_tls: false,
        tls_optional: false,
        recipients,
        spool: Default::default(),
    }
}

fn failure_message() -> Message {
    message(vec![
        recipient(
            "bob@remote.test",
            RcptState::Failed,
            Some(result(
                Stage::Rcpt,
                Some(550),
                Some("5.1.1"),
                "<bob@remote.test>: Recipient address rejected: User unknown in virtual mailbox table",
                Some("mx1.remote.test"),
            )),
        ),
        recipient(
            "carol@remote.test",
            RcptState::Expired,
            Some(result(Stage::Tls, None, Some("4.7.4"), "STARTTLS not offered", Some("mx1.remote.test"))),
        ),
        recipient(
            "dave@nullmx.test",
            RcptState::Failed,
            Some(result(Stage::Dns, None, Some("5.1.10"), "null MX: the domain accepts no mail", None)),
        ),
    ])
}

fn golden(name: &str, got: &[u8]) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/queue/dsn/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, got).unwrap();
    }
    let want = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()));
    assert!(got == want.as_slice(), "{} differs; got:\n{}", path.display(), String::from_utf8_lossy(got));
}

fn compose_failure() -> Vec<u8> {
    let m = failure_message();
    let rcpts: Vec<&Recipient> = m.recipients.iter().collect();
    compose(ReportKind::Failure, "mail.example.test", &m, &rcpts, header_section(ORIGINAL), NOW)
}

fn compose_delay() -> Vec<u8> {
    let m = message(vec![recipient(
        "bob@remote.test",
        RcptState::Queued,
        Some(result(Stage::Connect, None, Some("4.4.1"), "refused", Some("mx1.remote.test"))),
    )]);
    let rcpts: Vec<&Recipient> = m.recipients.iter().collect();
    compose(
        ReportKind::Delay { retry_until: Some(NOW + 86400) },
        "mail.example.test",
        &m,
        &rcpts,
        header_section(ORIGINAL),
        NOW,
    )
}

#[test]
fn failure_report_golden() {
    golden("failure.eml", &compose_failure());
}

#[test]
fn delay_report_golden() {
    golden("delay.eml", &compose_delay());
}

#[test]
fn reports_are_crlf_7bit_and_short_lined() {
    for r in [compose_failure(), compose_delay()] {
        assert!(r.is_ascii());
        for (i, &b) in r.iter().enumerate() {
            if b == b'\n' {
                assert_eq!(r[i - 1], b'\r', "bare LF at {i}");
            }
            if b == b'\r' {
                assert_eq!(r.get(i + 1), Some(&b'\n'), "bare CR at {i}");
            }
        }
        let text = String::from_utf8(r).unwrap();
        for l in text.split("\r\n") {
            assert!(l.len() <= 998, "{l}");
        }
        assert!(!text.contains("The body, which a report never carries"));
    }
}

/// The `message/delivery-status` part split into its field groups.
fn status_groups(raw: &[u8]) -> Vec<Vec<(String, String)>> {
    let text = String::from_utf8_lossy(raw).replace("\r\n   ", " ");
    text.split("\r\n\r\n")
        .filter(|g| !g.trim().is_empty())
        .map(|g| {
            g.lines().filter_map(|l| l.split_once(": ").map(|(k, v)| (k.to_string(), v.trim().to_string()))).collect()
        })
        .collect()
}

fn get<'a>(g: &'a [(String, String)], k: &str) -> Option<&'a str> {
    g.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

#[test]
fn failure_report_parses_back() {
    let raw = compose_failure();
    let m = MessageParser::default().parse(&raw).expect("parses");
    assert_eq!(m.subject(), Some("Undelivered Mail Returned to Sender"));
    let from = m.from().and_then(|a| a.first()).and_then(|a| a.address.as_deref());
    assert_eq!(from, Some("MAILER-DAEMON@mail.example.test"));
    let to = m.to().and_then(|a| a.first()).and_then(|a| a.address.as_deref());
    assert_eq!(to, Some("alice@example.test"));
    assert_eq!(m.header_raw("Auto-Submitted").map(str::trim), Some("auto-replied"));
    assert_eq!(m.message_id(), Some("failed.0ABCDEFGHJK.1795000000@mail.example.test"));

    let root = m.part(0).unwrap();
    let ct = root.content_type().unwrap();
    assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")));
    assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
    let parts = root.sub_parts().unwrap();
    assert_eq!(parts.len(), 3);
    let part = |i: usize| m.part(parts[i]).unwrap();

    let human = part(0);
    assert!(human.is_content_type("text", "plain"));
    let t = human.text_contents().unwrap();
    assert!(t.contains("<bob@remote.test>:") && t.contains("rcpt: 550 5.1.1"), "{t}");
    assert!(t.contains("expired") && t.contains("<dave@nullmx.test>:"), "{t}");

    let status = part(1);
    assert!(status.is_content_type("message", "delivery-status"));
    assert_eq!(status.content_transfer_encoding(), Some("7bit"));
    let PartType::Binary(raw_status) = &status.body else { panic!("{:?}", status.body) };
    let groups = status_groups(raw_status);
    assert_eq!(groups.len(), 4, "{groups:?}");
    assert_eq!(get(&groups[0], "Reporting-MTA"), Some("dns; mail.example.test"));
    assert!(get(&groups[0], "Arrival-Date").unwrap().contains("2026"));
    let bob = &groups[1];
    assert_eq!(get(bob, "Final-Recipient"), Some("rfc822; bob@remote.test"));
    assert_eq!(get(bob, "Action"), Some("failed"));
    assert_eq!(get(bob, "Status"), Some("5.1.1"));
    assert_eq!(get(bob, "Remote-MTA"), Some("dns; mx1.remote.test"));
    assert_eq!(
        get(bob, "Diagnostic-Code"),
        Some("smtp; 550 5.1.1 <bob@remote.test>: Recipient address rejected: User unknown in virtual mailbox table")
    );
    assert!(get(bob, "Last-Attempt-Date").is_some());
    let carol = &groups[2];
    assert_eq!((get(carol, "Action"), get(carol, "Status")), (Some("failed"), Some("4.4.7")));
    assert_eq!(get(carol, "Diagnostic-Code"), Some("X-Postern; tls: STARTTLS not offered"));
    let dave = &groups[3];
    assert_eq!(get(dave, "Status"), Some("5.1.10"));
    assert_eq!(get(dave, "Remote-MTA"), None);

    let headers = part(2);
    assert!(headers.is_content_type("text", "rfc822-headers"));
    assert_eq!(headers.text_contents().unwrap().as_bytes(), header_section(ORIGINAL));
}

#[test]
fn delay_report_parses_back() {
    let raw = compose_delay();
    let m = MessageParser::default().parse(&raw).expect("parses");
    assert_eq!(m.subject(), Some("Delayed Mail (still being retried)"));
    let parts = m.part(0).unwrap().sub_parts().unwrap().to_vec();
    let PartType::Binary(raw_status) = &m.part(parts[1]).unwrap().body else { panic!() };
    let groups = status_groups(raw_status);
    assert_eq!(groups.len(), 2);
    assert_eq!(get(&groups[1], "Action"), Some("delayed"));
    assert_eq!(get(&groups[1], "Status"), Some("4.4.1"));
    assert!(get(&groups[1], "Will-Retry-Until").is_some());
    let t = m.part(parts[0]).unwrap().text_contents().unwrap().to_string();
    assert!(t.contains("will keep trying until") && t.contains("connect: 4.4.1 refused"), "{t}");
}

#[test]
fn statuses() {
    let r = |state, last| recipient("x@y.test", state, last);
    let smtp = |code, e: Option<&str>| Some(result(Stage::Rcpt, Some(code), e, "t", None));
    let f = ReportKind::Failure;
    let d = ReportKind::Delay { retry_until: None };
    assert_eq!(status(f, &r(RcptState::Failed, smtp(550, Some("5.7.1")))), "5.7.1");
    assert_eq!(status(f, &r(RcptState::Failed, smtp(554, None))), "5.0.0");
    assert_eq!(status(f, &r(RcptState::Failed, smtp(550, Some("bogus")))), "5.0.0");
    assert_eq!(status(f, &r(RcptState::Expired, smtp(550, Some("5.1.1")))), "4.4.7");
    assert_eq!(status(f, &r(RcptState::Failed, smtp(451, Some("4.3.0")))), "4.4.7");
    assert_eq!(status(f, &r(RcptState::Deleted, None)), "5.0.0");
    assert_eq!(status(f, &r(RcptState::Failed, None)), "5.0.0");
    assert_eq!(status(d, &r(RcptState::Queued, smtp(452, Some("4.2.2")))), "4.2.2");
    assert_eq!(status(d, &r(RcptState::Queued, None)), "4.0.0");
}

#[test]
fn header_sections() {
    assert_eq!(header_section(b"A: 1\r\nB: 2\r\n\r\nbody\r\n"), b"A: 1\r\nB: 2\r\n");
    assert_eq!(header_section(b"A: 1\r\n"), b"A: 1\r\n");
    assert_eq!(header_section(b"\r\nbody"), b"");
}

#[test]
fn long_fields_fold_and_odd_input_stays_one_field() {
    let mut out = String::new();
    field(&mut out, "Diagnostic-Code", &format!("smtp; 550 5.7.1 {}\r\nInjected: yes", "word ".repeat(40)));
    assert!(out.lines().all(|l| l.len() <= 78), "{out}");
    assert!(out.lines().skip(1).all(|l| l.starts_with("   ")), "{out}");
    assert!(!out.contains("\r\nInjected"), "no header injection: {out}");
}

#[test]
fn non_ascii_addresses_make_a_global_report() {
    let m = message(vec![recipient(
        "jörg@remote.test",
        RcptState::Failed,
        Some(result(Stage::Rcpt, Some(550), Some("5.1.1"), "unknown", Some("mx.remote.test"))),
    )]);
    let rcpts: Vec<&Recipient> = m.recipients.iter().collect();
    let raw = compose(ReportKind::Failure, "mail.example.test", &m, &rcpts, header_section(ORIGINAL), NOW);
    let parsed = MessageParser::default().parse(&raw).expect("parses");
    let parts = parsed.part(0).unwrap().sub_parts().unwrap().to_vec();
    let status = parsed.part(parts[1]).unwrap();
    assert!(status.is_content_type("message", "global-delivery-status"));
    assert!(String::from_utf8_lossy(status.contents()).contains("Final-Recipient: utf-8; jörg@remote.test"));
}
