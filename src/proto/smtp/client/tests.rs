//! Client transcripts run through the core without sockets: the server's
//! replies are a fixed script, the client's reactions to events are fixed,
//! and the same transcript must come out however the replies are split.

use super::*;
use proptest::prelude::*;

const EHLO_PIPELINING: &str = "250-mx.example.test\r\n250-PIPELINING\r\n250-SIZE 10000\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250-AUTH PLAIN LOGIN\r\n250 STARTTLS\r\n";
const EHLO_PLAIN: &str = "250-mx.example.test\r\n250 SIZE\r\n";

fn envelope<'a>(rcpts: &'a [&'a str], body: &'a [u8]) -> Envelope<'a> {
    Envelope {
        sender: "a@b.test",
        recipients: rcpts,
        body,
        body_type: BodyType::SevenBit,
        smtputf8: false,
        requiretls: false,
    }
}

/// What the client does on each event: on `Ready` send the message (once),
/// after the transaction QUIT.
struct Script<'a> {
    env: Envelope<'a>,
    sent: bool,
}

/// Feed `chunks` of server output; returns the client's output and events.
fn run(s: &mut ClientSession, script: &mut Script<'_>, chunks: &[&[u8]]) -> (String, Vec<Event>) {
    let mut out = Vec::new();
    let mut events = Vec::new();
    let mut buf = BytesMut::new();
    for c in chunks {
        buf.extend_from_slice(c);
        loop {
            match s.feed(&mut buf) {
                Ok(Some(ev)) => {
                    match &ev {
                        Event::Ready if !script.sent => {
                            script.sent = true;
                            if let Some(r) = s.send_mail(&script.env).unwrap() {
                                events.push(Event::Transaction(r));
                                s.quit();
                            }
                        }
                        Event::Transaction(_) | Event::Rejected { .. } => s.quit(),
                        _ => {}
                    }
                    events.push(ev);
                }
                Ok(None) => break,
                Err(e) => panic!("client error {e}"),
            }
        }
    }
    s.take_output(&mut out);
    (String::from_utf8(out).unwrap(), events)
}

fn transcript(replies: &str, rcpts: &[&str], body: &[u8]) -> (String, Vec<Event>) {
    let mut s = ClientSession::new("client.test", false);
    let mut script = Script { env: envelope(rcpts, body), sent: false };
    run(&mut s, &mut script, &[replies.as_bytes()])
}

fn results(events: &[Event]) -> Vec<RcptResult> {
    events
        .iter()
        .find_map(|e| match e {
            Event::Transaction(t) => Some(t.recipients.clone()),
            _ => None,
        })
        .expect("a transaction result")
}

fn codes(r: &[RcptResult]) -> Vec<Option<u16>> {
    r.iter().map(|r| r.code).collect()
}

// ------------------------------------------------------------- replies

#[test]
fn replies_parse() {
    let mut rd = ReplyReader::default();
    let mut b = BytesMut::from(&b"250-first line\r\n250-2.1.0 second\r\n250 2.1.0 third\r\n220\r\n354 go ahead\n"[..]);
    let r = rd.feed(&mut b).unwrap().unwrap();
    assert_eq!(r.code, 250);
    assert_eq!(r.enhanced.as_deref(), Some("2.1.0"));
    assert_eq!(r.lines, ["first line", "second", "third"]);
    assert_eq!(r.text(), "first line second third");
    let r = rd.feed(&mut b).unwrap().unwrap();
    assert_eq!((r.code, r.lines.len(), r.text().as_str()), (220, 1, ""));
    let r = rd.feed(&mut b).unwrap().unwrap();
    assert_eq!((r.code, r.enhanced.clone()), (354, None));
    assert_eq!(rd.feed(&mut b).unwrap(), None);
}

#[test]
fn enhanced_code_must_match_the_class() {
    let mut rd = ReplyReader::default();
    let mut b = BytesMut::from(&b"550 2.1.1 odd\r\n451 4.3.0 try later\r\n250 1.2 not one\r\n"[..]);
    assert_eq!(rd.feed(&mut b).unwrap().unwrap().enhanced, None);
    assert_eq!(rd.feed(&mut b).unwrap().unwrap().enhanced.as_deref(), Some("4.3.0"));
    let r = rd.feed(&mut b).unwrap().unwrap();
    assert_eq!((r.enhanced.clone(), r.text()), (None, "1.2 not one".to_string()));
}

#[test]
fn bad_replies_are_errors() {
    for bad in ["hello\r\n", "25\r\n", "250x\r\n", "650 no\r\n", "2a0 x\r\n", "\r\n"] {
        let mut b = BytesMut::from(bad.as_bytes());
        assert!(ReplyReader::default().feed(&mut b).is_err(), "{bad:?}");
    }
    let mut b = BytesMut::from(&b"250-a\r\n550 b\r\n"[..]);
    assert_eq!(ReplyReader::default().feed(&mut b), Err(ClientError::MixedCodes(250, 550)));
    let mut b = BytesMut::from(vec![b'2'; MAX_REPLY_LINE + 10].as_slice());
    assert_eq!(ReplyReader::default().feed(&mut b), Err(ClientError::LineTooLong));
    let mut b = BytesMut::from("250-x\r\n".repeat(MAX_REPLY_LINES + 1).as_bytes());
    assert_eq!(ReplyReader::default().feed(&mut b), Err(ClientError::TooManyLines));
}

#[test]
fn reply_text_is_clean_and_bounded() {
    let mut b = BytesMut::from(format!("550 5.1.1 bad\x07bell {}\r\n", "x".repeat(900)).as_bytes());
    let r = ReplyReader::default().feed(&mut b).unwrap().unwrap();
    let t = r.text();
    assert!(t.starts_with("bad?bell x"), "{t}");
    assert!(t.chars().count() <= 503 && t.ends_with("..."));
}

#[test]
fn extensions_parse() {
    let mut b = BytesMut::from(EHLO_PIPELINING.as_bytes());
    let e = Extensions::parse(&ReplyReader::default().feed(&mut b).unwrap().unwrap());
    assert!(e.esmtp && e.pipelining && e.eight_bit_mime && e.smtputf8 && e.starttls && e.enhanced_status_codes);
    assert_eq!(e.size, Some(10000));
    assert_eq!(e.auth, ["PLAIN", "LOGIN"]);
    let mut b = BytesMut::from(&b"250-x\r\n250-auth=login cram-md5\r\n250-AUTH PLAIN\r\n250 size\r\n"[..]);
    let e = Extensions::parse(&ReplyReader::default().feed(&mut b).unwrap().unwrap());
    assert_eq!(e.auth, ["LOGIN", "CRAM-MD5", "PLAIN"]);
    assert_eq!(e.size, Some(0));
    assert!(!e.pipelining && !e.starttls);
    assert!(e.offers_auth(AuthMechanism::Login));
}

// ------------------------------------------------------------- transactions

#[test]
fn pipelined_transaction_in_one_batch() {
    let replies = format!("220 mx ESMTP\r\n{EHLO_PIPELINING}250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 no such user\r\n354 go\r\n250 2.0.0 queued\r\n221 bye\r\n");
    let (out, events) = transcript(&replies, &["x@c.test", "nobody@c.test"], b"Subject: hi\r\n\r\n.dot\r\nend");
    assert_eq!(
        out,
        "EHLO client.test\r\nMAIL FROM:<a@b.test> SIZE=26\r\nRCPT TO:<x@c.test>\r\nRCPT TO:<nobody@c.test>\r\nDATA\r\nSubject: hi\r\n\r\n..dot\r\nend\r\n.\r\nQUIT\r\n"
    );
    let r = results(&events);
    assert_eq!(codes(&r), [Some(250), Some(550)]);
    assert_eq!((r[0].stage, r[1].stage), (TxStage::Data, TxStage::Rcpt));
    assert_eq!(r[1].enhanced.as_deref(), Some("5.1.1"));
    assert!(r[0].is_success() && r[1].is_permanent());
    assert_eq!(events.last(), Some(&Event::Closed));
}

#[test]
fn every_split_gives_the_same_transcript() {
    let replies = format!("220 mx ESMTP\r\n{EHLO_PIPELINING}250 2.1.0 ok\r\n250 2.1.5 ok\r\n451 4.3.0 later\r\n354 go\r\n250 2.0.0 queued\r\n221 bye\r\n");
    let rcpts = ["x@c.test", "y@c.test"];
    let body = b"a\r\n.b\r\n";
    let whole = transcript(&replies, &rcpts, body);
    let bytes = replies.as_bytes();
    for i in 0..=bytes.len() {
        let mut s = ClientSession::new("client.test", false);
        let mut script = Script { env: envelope(&rcpts, body), sent: false };
        let got = run(&mut s, &mut script, &[&bytes[..i], &bytes[i..]]);
        assert_eq!(got, whole, "split at {i}");
    }
    // byte by byte too
    let mut s = ClientSession::new("client.test", false);
    let mut script = Script { env: envelope(&rcpts, body), sent: false };
    let chunks: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(run(&mut s, &mut script, &chunks), whole);
}

#[test]
fn without_pipelining_one_command_at_a_time() {
    // The core answers each reply with the next command; with the whole
    // script fed at once, the output shows the order it chose.
    let replies =
        format!("220 mx\r\n{EHLO_PLAIN}250 ok\r\n550 5.1.1 unknown\r\n250 ok\r\n354 go\r\n250 queued\r\n221 bye\r\n");
    let (out, events) = transcript(&replies, &["nobody@c.test", "x@c.test"], b"hello\r\n");
    assert_eq!(
        out,
        "EHLO client.test\r\nMAIL FROM:<a@b.test> SIZE=7\r\nRCPT TO:<nobody@c.test>\r\nRCPT TO:<x@c.test>\r\nDATA\r\nhello\r\n.\r\nQUIT\r\n"
    );
    assert_eq!(codes(&results(&events)), [Some(550), Some(250)]);
}

#[test]
fn mail_rejected_applies_to_everyone() {
    // pipelined: the RCPT and DATA replies are read and ignored
    let replies = format!("220 mx\r\n{EHLO_PIPELINING}553 5.7.1 sender refused\r\n503 5.5.1 no\r\n503 5.5.1 no\r\n554 5.5.1 no\r\n221 bye\r\n");
    let (out, events) = transcript(&replies, &["x@c.test", "y@c.test"], b"hi\r\n");
    let r = results(&events);
    assert_eq!(codes(&r), [Some(553), Some(553)]);
    assert!(r.iter().all(|r| r.stage == TxStage::Mail && r.is_permanent()));
    assert!(out.ends_with("DATA\r\nQUIT\r\n"), "{out}");
    // not pipelined: nothing after MAIL
    let replies = format!("220 mx\r\n{EHLO_PLAIN}451 4.7.1 greylisted\r\n221 bye\r\n");
    let (out, events) = transcript(&replies, &["x@c.test"], b"hi\r\n");
    assert_eq!(codes(&results(&events)), [Some(451)]);
    assert!(out.ends_with("SIZE=4\r\nQUIT\r\n"), "{out}");
}

#[test]
fn data_rejected_applies_to_accepted_recipients() {
    let replies = format!(
        "220 mx\r\n{EHLO_PIPELINING}250 ok\r\n250 ok\r\n550 5.1.1 no\r\n354 go\r\n554 5.7.1 spam\r\n221 bye\r\n"
    );
    let r = results(&transcript(&replies, &["x@c.test", "y@c.test"], b"hi\r\n").1);
    assert_eq!(codes(&r), [Some(554), Some(550)]);
    assert_eq!((r[0].stage, r[1].stage), (TxStage::Data, TxStage::Rcpt));
    // DATA itself refused
    let replies = format!("220 mx\r\n{EHLO_PLAIN}250 ok\r\n250 ok\r\n451 4.3.0 not now\r\n221 bye\r\n");
    let r = results(&transcript(&replies, &["x@c.test"], b"hi\r\n").1);
    assert_eq!((r[0].code, r[0].stage), (Some(451), TxStage::Data));
}

#[test]
fn data_accepted_without_recipients_gets_an_empty_message() {
    // RFC 2920 §3.1: a server that says 354 though every RCPT failed
    let replies =
        format!("220 mx\r\n{EHLO_PIPELINING}250 ok\r\n550 5.1.1 no\r\n354 go\r\n250 queued nothing\r\n221 bye\r\n");
    let (out, events) = transcript(&replies, &["x@c.test"], b"secret body\r\n");
    assert!(out.ends_with("DATA\r\n.\r\nQUIT\r\n"), "{out}");
    assert!(!out.contains("secret"));
    assert_eq!(codes(&results(&events)), [Some(550)]);
}

#[test]
fn params_follow_extensions() {
    let mut s = ClientSession::new("c.test", false);
    let mut b = BytesMut::from(format!("220 mx\r\n{EHLO_PIPELINING}").as_bytes());
    assert_eq!(s.feed(&mut b).unwrap(), Some(Event::Ready));
    let rcpts = ["x@c.test"];
    let env = Envelope { body_type: BodyType::EightBitMime, smtputf8: true, ..envelope(&rcpts, b"\xc3\xa9\r\n") };
    assert_eq!(s.send_mail(&env).unwrap(), None);
    let mut out = Vec::new();
    s.take_output(&mut out);
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains("EHLO c.test\r\nMAIL FROM:<a@b.test> SIZE=4 BODY=8BITMIME SMTPUTF8\r\n"), "{out}");

    // HELO-only server: no parameters at all
    let mut s = ClientSession::new("c.test", false);
    let mut b = BytesMut::from(&b"220 mx\r\n502 5.5.1 what\r\n250 mx\r\n"[..]);
    assert_eq!(s.feed(&mut b).unwrap(), Some(Event::Ready));
    assert_eq!(s.extensions(), &Extensions::default());
    assert_eq!(s.send_mail(&envelope(&rcpts, b"x\r\n")).unwrap(), None);
    let mut out = Vec::new();
    s.take_output(&mut out);
    assert_eq!(String::from_utf8_lossy(&out), "EHLO c.test\r\nHELO c.test\r\nMAIL FROM:<a@b.test>\r\n");
}

#[test]
fn ehlo_refused_temporarily_is_not_retried_with_helo() {
    let mut s = ClientSession::new("c.test", false);
    let mut b = BytesMut::from(&b"220 mx\r\n421 4.3.2 shutting down\r\n"[..]);
    match s.feed(&mut b).unwrap() {
        Some(Event::Rejected { step: Step::Helo, reply }) => assert_eq!(reply.code, 421),
        e => panic!("{e:?}"),
    }
    assert!(!s.is_ready());
}

#[test]
fn smtputf8_needed_but_not_offered() {
    let mut s = ClientSession::new("c.test", false);
    let mut b = BytesMut::from(format!("220 mx\r\n{EHLO_PLAIN}").as_bytes());
    assert_eq!(s.feed(&mut b).unwrap(), Some(Event::Ready));
    // a non-ASCII recipient fails alone; the other is sent
    let rcpts = ["jörg@c.test", "x@c.test"];
    let env = Envelope { smtputf8: true, ..envelope(&rcpts, b"x\r\n") };
    assert_eq!(s.send_mail(&env).unwrap(), None);
    let mut out = Vec::new();
    s.take_output(&mut out);
    let out = String::from_utf8(out).unwrap();
    assert!(out.ends_with("MAIL FROM:<a@b.test> SIZE=3\r\n") && !out.contains("SMTPUTF8"), "{out}");
    let mut b = BytesMut::from(&b"250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n"[..]);
    let Some(Event::Transaction(t)) = s.feed(&mut b).unwrap() else { panic!() };
    assert_eq!(t.recipients[0].enhanced.as_deref(), Some("5.6.7"));
    assert!(t.recipients[0].is_permanent() && t.recipients[1].is_success());

    // a non-ASCII sender fails the whole message without a command
    s.take_output(&mut Vec::new());
    let rcpts = ["x@c.test"];
    let env = Envelope { sender: "jörg@b.test", smtputf8: true, ..envelope(&rcpts, b"x\r\n") };
    let r = s.send_mail(&env).unwrap().expect("decided locally");
    assert!(r.recipients[0].is_permanent());
    assert!(!s.has_output());
}

#[test]
fn control_characters_never_reach_a_command_line() {
    let mut s = ClientSession::new("c.test", false);
    let mut b = BytesMut::from(format!("220 mx\r\n{EHLO_PIPELINING}").as_bytes());
    s.feed(&mut b).unwrap();
    s.take_output(&mut Vec::new());
    let rcpts = ["x@c.test>\r\nRSET", "y@c.test"];
    assert_eq!(s.send_mail(&envelope(&rcpts, b"x\r\n")).unwrap(), None);
    let mut out = Vec::new();
    s.take_output(&mut out);
    let out = String::from_utf8(out).unwrap();
    assert!(!out.contains("RSET") && out.contains("RCPT TO:<y@c.test>"), "{out}");
    let mut b = BytesMut::from(&b"250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n"[..]);
    let Some(Event::Transaction(t)) = s.feed(&mut b).unwrap() else { panic!() };
    assert_eq!(t.recipients[0].enhanced.as_deref(), Some("5.1.3"));
    assert!(t.recipients[0].is_permanent() && t.recipients[1].is_success());
    s.take_output(&mut Vec::new());
    let env = Envelope { sender: "a@b\r\nQUIT", ..envelope(&rcpts[1..], b"") };
    let r = s.send_mail(&env).unwrap().expect("refused locally");
    assert_eq!(r.recipients[0].enhanced.as_deref(), Some("5.1.7"));
    assert!(!s.has_output());
}

#[test]
fn rset_opens_the_next_transaction_when_one_was_left_open() {
    let mut s = ClientSession::new("c.test", false);
    let mut b = BytesMut::from(format!("220 mx\r\n{EHLO_PIPELINING}").as_bytes());
    s.feed(&mut b).unwrap();
    let rcpts = ["x@c.test"];
    s.send_mail(&envelope(&rcpts, b"x\r\n")).unwrap();
    let mut b = BytesMut::from(&b"250 ok\r\n550 no\r\n554 no valid recipients\r\n"[..]);
    assert!(matches!(s.feed(&mut b).unwrap(), Some(Event::Transaction(_))));
    let mut out = Vec::new();
    s.take_output(&mut out);
    s.send_mail(&envelope(&rcpts, b"x\r\n")).unwrap();
    out.clear();
    s.take_output(&mut out);
    assert!(out.starts_with(b"RSET\r\nMAIL FROM:"), "{}", String::from_utf8_lossy(&out));
    let mut b = BytesMut::from(&b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250 2.0.0 done\r\n"[..]);
    let Some(Event::Transaction(t)) = s.feed(&mut b).unwrap() else { panic!() };
    assert!(t.recipients[0].is_success());
    assert_eq!(s.transactions(), 1);
    // after a completed transaction, no RSET is needed
    s.take_output(&mut Vec::new());
    s.send_mail(&envelope(&rcpts, b"x\r\n")).unwrap();
    out.clear();
    s.take_output(&mut out);
    assert!(out.starts_with(b"MAIL FROM:"));
}

#[test]
fn explicit_rset_and_starttls() {
    let mut s = ClientSession::new("c.test", false);
    let mut b = BytesMut::from(format!("220 mx\r\n{EHLO_PIPELINING}").as_bytes());
    s.feed(&mut b).unwrap();
    assert!(s.extensions().starttls);
    s.starttls().unwrap();
    // what a server sends after its 220 must be discarded by the caller
    let mut b = BytesMut::from(&b"220 2.0.0 go ahead\r\n250 injected\r\n"[..]);
    assert_eq!(s.feed(&mut b).unwrap(), Some(Event::StartTls));
    discard(&mut b);
    s.tls_started();
    assert!(s.tls_active());
    assert_eq!(s.extensions(), &Extensions::default());
    assert!(s.starttls().is_err(), "no STARTTLS twice");
    let mut b = BytesMut::from(&b"250-mx\r\n250 AUTH PLAIN\r\n"[..]);
    assert_eq!(s.feed(&mut b).unwrap(), Some(Event::Ready));
    s.reset().unwrap();
    let mut b = BytesMut::from(&b"250 2.0.0 ok\r\n"[..]);
    assert_eq!(s.feed(&mut b).unwrap(), Some(Event::Reset));
    let mut out = Vec::new();
    s.take_output(&mut out);
    assert_eq!(out, b"EHLO c.test\r\nSTARTTLS\r\nEHLO c.test\r\nRSET\r\n");
    // STARTTLS refused
    let mut s = ClientSession::new("c.test", false);
    let mut b = BytesMut::from(format!("220 mx\r\n{EHLO_PIPELINING}").as_bytes());
    s.feed(&mut b).unwrap();
    s.starttls().unwrap();
    let mut b = BytesMut::from(&b"454 4.7.0 TLS not available\r\n"[..]);
    assert!(matches!(s.feed(&mut b).unwrap(), Some(Event::Rejected { step: Step::StartTls, .. })));
    assert!(s.is_ready(), "the session goes on in plaintext");
}

#[test]
fn auth_plain_and_login() {
    let pass = Secret("s3cret".into());
    let mut s = ClientSession::new("c.test", true);
    let mut b = BytesMut::from(format!("220 mx\r\n{EHLO_PIPELINING}").as_bytes());
    s.feed(&mut b).unwrap();
    s.auth(AuthMechanism::Plain, "user", &pass).unwrap();
    let mut b = BytesMut::from(&b"235 2.7.0 ok\r\n"[..]);
    assert_eq!(s.feed(&mut b).unwrap(), Some(Event::Authenticated));
    assert!(s.authenticated());
    let mut out = Vec::new();
    s.take_output(&mut out);
    assert!(out.ends_with(b"AUTH PLAIN AHVzZXIAczNjcmV0\r\n"), "{}", String::from_utf8_lossy(&out));

    let mut s = ClientSession::new("c.test", true);
    let mut b = BytesMut::from(format!("220 mx\r\n{EHLO_PIPELINING}").as_bytes());
    s.feed(&mut b).unwrap();
    s.auth(AuthMechanism::Login, "user", &pass).unwrap();
    assert!(!format!("{s:?}").contains("s3cret"), "Debug never shows the password");
    let mut b = BytesMut::from(&b"334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n535 5.7.8 bad\r\n"[..]);
    match s.feed(&mut b).unwrap() {
        Some(Event::Rejected { step: Step::Auth, reply }) => assert_eq!(reply.code, 535),
        e => panic!("{e:?}"),
    }
    let mut out = Vec::new();
    s.take_output(&mut out);
    assert!(out.ends_with(b"AUTH LOGIN\r\ndXNlcg==\r\nczNjcmV0\r\n"), "{}", String::from_utf8_lossy(&out));

    // an unexpected challenge is cancelled
    let mut s = ClientSession::new("c.test", true);
    let mut b = BytesMut::from(format!("220 mx\r\n{EHLO_PIPELINING}").as_bytes());
    s.feed(&mut b).unwrap();
    s.auth(AuthMechanism::Plain, "user", &pass).unwrap();
    let mut b = BytesMut::from(&b"334 \r\n501 5.0.0 cancelled\r\n"[..]);
    match s.feed(&mut b).unwrap() {
        Some(Event::Rejected { step: Step::Auth, reply }) => assert_eq!(reply.code, 501),
        e => panic!("{e:?}"),
    }
    let mut out = Vec::new();
    s.take_output(&mut out);
    assert!(out.ends_with(b"\r\n*\r\n"));
}

#[test]
fn greeting_refused_and_421_mark_the_session_unusable() {
    let mut s = ClientSession::new("c.test", false);
    let mut b = BytesMut::from(&b"554 5.7.1 go away\r\n"[..]);
    assert!(matches!(s.feed(&mut b).unwrap(), Some(Event::Rejected { step: Step::Greeting, .. })));
    assert!(!s.is_ready());
    s.quit();
    let mut b = BytesMut::from(&b"221 bye\r\n"[..]);
    assert_eq!(s.feed(&mut b).unwrap(), Some(Event::Closed));
    assert!(s.is_closed());

    let mut s = ClientSession::new("c.test", false);
    let mut b = BytesMut::from(format!("220 mx\r\n{EHLO_PIPELINING}").as_bytes());
    s.feed(&mut b).unwrap();
    let rcpts = ["x@c.test"];
    s.send_mail(&envelope(&rcpts, b"x\r\n")).unwrap();
    let mut b = BytesMut::from(&b"421 4.4.2 closing\r\n"[..]);
    assert_eq!(s.feed(&mut b).unwrap(), None);
    let r = s.connection_lost("connection lost").unwrap();
    assert_eq!(r.recipients[0].code, Some(421));
    assert_eq!(r.recipients[0].stage, TxStage::Mail);
    assert!(!r.recipients[0].is_permanent());
    assert!(s.is_closed() && !s.is_ready());
}

#[test]
fn connection_lost_keeps_what_was_decided() {
    let mut s = ClientSession::new("c.test", false);
    let mut b = BytesMut::from(format!("220 mx\r\n{EHLO_PIPELINING}").as_bytes());
    s.feed(&mut b).unwrap();
    let rcpts = ["x@c.test", "y@c.test"];
    s.send_mail(&envelope(&rcpts, b"x\r\n")).unwrap();
    let mut b = BytesMut::from(&b"250 ok\r\n550 5.1.1 no\r\n250 ok\r\n354 go\r\n"[..]);
    assert_eq!(s.feed(&mut b).unwrap(), None);
    assert_eq!(s.waiting(), Waiting::DataEnd);
    let r = s.connection_lost("timed out").unwrap();
    assert_eq!(codes(&r.recipients), [Some(550), None]);
    assert_eq!(r.recipients[1].stage, TxStage::Data);
    assert_eq!(r.recipients[1].text, "timed out");
}

#[test]
fn unexpected_replies_are_errors_not_panics() {
    let mut s = ClientSession::new("c.test", false);
    let mut b = BytesMut::from(format!("220 mx\r\n{EHLO_PLAIN}250 surprise\r\n").as_bytes());
    assert_eq!(s.feed(&mut b).unwrap(), Some(Event::Ready));
    assert!(matches!(s.feed(&mut b), Err(ClientError::Unexpected(_))));
    assert!(s.reset().is_ok(), "the state is kept");
    assert!(s.send_mail(&envelope(&["x@c.test"], b"")).is_err(), "one thing at a time");
}

#[test]
fn waiting_tracks_the_expected_reply() {
    let mut s = ClientSession::new("c.test", false);
    assert_eq!(s.waiting(), Waiting::Greeting);
    let mut b = BytesMut::from(format!("220 mx\r\n{EHLO_PLAIN}").as_bytes());
    s.feed(&mut b).unwrap();
    assert_eq!(s.waiting(), Waiting::Nothing);
    s.send_mail(&envelope(&["x@c.test"], b"")).unwrap();
    assert_eq!(s.waiting(), Waiting::Command);
    let mut b = BytesMut::from(&b"250 ok\r\n250 ok\r\n"[..]);
    s.feed(&mut b).unwrap();
    assert_eq!(s.waiting(), Waiting::DataStart);
}

// ------------------------------------------------------------- DATA

fn stuffed(body: &[u8]) -> (String, usize) {
    let mut out = Vec::new();
    let n = stuff_body(body, &mut out);
    (String::from_utf8(out).unwrap(), n)
}

#[test]
fn dot_stuffing_and_line_ends() {
    assert_eq!(stuffed(b""), (".\r\n".into(), 0));
    assert_eq!(stuffed(b"a\r\n"), ("a\r\n.\r\n".into(), 3));
    assert_eq!(stuffed(b"a"), ("a\r\n.\r\n".into(), 3));
    assert_eq!(stuffed(b".\r\n..x\r\n"), ("..\r\n...x\r\n.\r\n".into(), 8));
    assert_eq!(stuffed(b"a\n.b\rc\r\n"), ("a\r\n..b\r\nc\r\n.\r\n".into(), 10));
    assert_eq!(stuffed(b"x.\r\n.\r\n"), ("x.\r\n..\r\n.\r\n".into(), 7));
    assert_eq!(stuffed(b"\r\r\n"), ("\r\n\r\n.\r\n".into(), 4));
}

/// Undo stuffing as a server would (RFC 5321 §4.5.2).
fn unstuff(wire: &[u8]) -> Vec<u8> {
    let text = wire.strip_suffix(b".\r\n").expect("final dot");
    let mut out = Vec::new();
    for line in text.split_inclusive(|&b| b == b'\n') {
        out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
    }
    out
}

proptest! {
    #[test]
    fn stuffing_round_trips(body in proptest::collection::vec(prop_oneof![Just(b'.'), Just(b'\r'), Just(b'\n'), Just(b'a')], 0..64)) {
        let mut wire = Vec::new();
        stuff_body(&body, &mut wire);
        // CRLF only, never a lone dot line before the end
        for (i, &b) in wire.iter().enumerate() {
            if b == b'\n' { prop_assert_eq!(wire[i - 1], b'\r'); }
            if b == b'\r' { prop_assert_eq!(wire.get(i + 1), Some(&b'\n')); }
        }
        let end = wire.len() - 3;
        prop_assert!(!wire[..end].windows(5).any(|w| w == b"\r\n.\r\n"));
        prop_assert!(!wire.starts_with(b".\r\n") || wire.len() == 3);
        // what a server reads back is the body with CRLF line ends
        let mut normal = Vec::new();
        let mut i = 0;
        while i < body.len() {
            match body[i] {
                b'\r' if body.get(i + 1) == Some(&b'\n') => { normal.extend_from_slice(b"\r\n"); i += 2; continue; }
                b'\r' | b'\n' => normal.extend_from_slice(b"\r\n"),
                b => normal.push(b),
            }
            i += 1;
        }
        if !normal.is_empty() && !normal.ends_with(b"\r\n") { normal.extend_from_slice(b"\r\n"); }
        prop_assert_eq!(unstuff(&wire), normal);
    }

    #[test]
    fn random_server_replies_never_panic(
        lines in proptest::collection::vec(
            prop_oneof![
                "[2-5][0-9][0-9]( |-)[ -~]{0,20}\r\n",
                Just("220 mx\r\n".to_string()),
                Just("250-PIPELINING\r\n".to_string()),
                Just("250 ok\r\n".to_string()),
                Just("354 go\r\n".to_string()),
                Just("334 \r\n".to_string()),
                "[ -~\r\n]{0,12}",
            ],
            0..40),
        split in 0usize..400,
    ) {
        let all: Vec<u8> = lines.concat().into_bytes();
        let split = split.min(all.len());
        let rcpts = ["x@c.test", "y@c.test"];
        let env = envelope(&rcpts, b"body\r\n");
        let pass = Secret("p".into());
        let mut s = ClientSession::new("c.test", false);
        let mut buf = BytesMut::new();
        let mut step = 0;
        for chunk in [&all[..split], &all[split..]] {
            buf.extend_from_slice(chunk);
            loop {
                match s.feed(&mut buf) {
                    Ok(Some(_)) => {
                        // exercise every entry point; misuse must be an Err, never a panic
                        step += 1;
                        let _ = match step % 5 {
                            0 => s.send_mail(&env).map(|_| ()),
                            1 => s.auth(AuthMechanism::Login, "u", &pass),
                            2 => s.starttls(),
                            3 => s.reset(),
                            _ => { s.quit(); Ok(()) }
                        };
                    }
                    Ok(None) => break,
                    Err(_) => { buf.clear(); break; }
                }
                let mut out = Vec::new();
                s.take_output(&mut out);
            }
        }
        let _ = s.connection_lost("gone");
        prop_assert!(s.is_closed());
    }
}
