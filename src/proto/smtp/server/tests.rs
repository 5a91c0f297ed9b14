//! Session transcripts run through the core without sockets.

use super::*;
use proptest::prelude::*;

pub(crate) fn settings() -> Settings {
    Settings {
        hostname: "mx.example.test".into(),
        max_message_size: 10_000,
        max_recipients: 3,
        starttls: true,
        require_tls: false,
        auth: AuthMode::Off,
        allow_plaintext_auth: false,
        max_errors: 10,
    }
}

/// Feed `input` in the given chunks, accepting every decision; returns the
/// output and the events seen.
fn run_chunks(s: &mut ServerSession, chunks: &[&[u8]]) -> (String, Vec<String>) {
    let mut out = Vec::new();
    let mut events = Vec::new();
    let mut buf = BytesMut::new();
    for c in chunks {
        buf.extend_from_slice(c);
        while let Some(ev) = s.feed(&mut buf) {
            events.push(match &ev {
                Event::Message { body } => format!("message {}", body.len()),
                e => format!("{e:?}"),
            });
            match ev {
                Event::Mail { .. } => s.mail_decision(Ok(())),
                Event::Rcpt { to } if to.local == "nobody" => s.rcpt_decision(Err(reply::UNKNOWN_USER)),
                Event::Rcpt { .. } => s.rcpt_decision(Ok(())),
                Event::Message { .. } => s.message_decision(Reply::owned(250, "2.0.0", "Ok: queued as X")),
                Event::Auth(AuthEvent::Start { .. }) => s.auth_begin(Err(reply::AUTH_FAILED)),
                Event::Auth(_) => s.auth_done(Err(reply::AUTH_FAILED)),
                Event::StartTls => {
                    // what the driver does: discard the rest, then reset
                    buf.clear();
                    s.tls_started();
                }
                Event::Quit | Event::TooManyErrors => {}
            }
        }
    }
    s.take_output(&mut out);
    (String::from_utf8(out).unwrap(), events)
}

fn run(input: &str) -> String {
    let mut s = ServerSession::new(settings(), false);
    s.greeting();
    run_chunks(&mut s, &[input.as_bytes()]).0
}

fn codes(out: &str) -> Vec<String> {
    out.lines().filter(|l| l.as_bytes().get(3) == Some(&b' ')).map(|l| l[..3].to_string()).collect()
}

const TRANSACTION: &str = "EHLO client.test\r\nMAIL FROM:<a@b.test> SIZE=100 BODY=8BITMIME\r\nRCPT TO:<x@example.test>\r\nRCPT TO:<nobody@example.test>\r\nDATA\r\nSubject: hi\r\n\r\n..body\r\n.\r\nQUIT\r\n";

#[test]
fn full_transaction() {
    let out = run(TRANSACTION);
    assert_eq!(codes(&out), ["220", "250", "250", "250", "550", "354", "250", "221"]);
    assert!(out.contains("250-PIPELINING\r\n250-SIZE 10000\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250 STARTTLS\r\n"));
    assert!(out.starts_with("220 mx.example.test ESMTP\r\n"));
}

#[test]
fn every_split_gives_the_same_transcript() {
    let whole = run(TRANSACTION);
    let bytes = TRANSACTION.as_bytes();
    for i in 0..=bytes.len() {
        let mut s = ServerSession::new(settings(), false);
        s.greeting();
        let (out, events) = run_chunks(&mut s, &[&bytes[..i], &bytes[i..]]);
        assert_eq!(out, whole, "split at {i}");
        assert!(events.contains(&"message 22".to_string()), "split at {i}: {events:?}");
    }
}

#[test]
fn starttls_advertised_then_gone_and_injection_discarded() {
    let mut s = ServerSession::new(settings(), false);
    s.greeting();
    let (out, events) = run_chunks(&mut s, &[b"EHLO c\r\nSTARTTLS\r\nRSET\r\nMAIL FROM:<a@b.test>\r\n"]);
    assert_eq!(codes(&out), ["220", "250", "220"], "{out}");
    assert_eq!(events, ["StartTls"]);
    let (out, _) = run_chunks(&mut s, &[b"MAIL FROM:<a@b.test>\r\nEHLO c\r\nSTARTTLS\r\n"]);
    assert_eq!(codes(&out), ["503", "250", "503"], "{out}");
    assert!(!out.contains("STARTTLS"));
}

#[test]
fn require_tls_blocks_mail() {
    let mut st = settings();
    st.require_tls = true;
    let mut s = ServerSession::new(st, false);
    let (out, _) =
        run_chunks(&mut s, &[b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<a@b.test>\r\nDATA\r\nVRFY x\r\nNOOP\r\n"]);
    assert_eq!(codes(&out), ["250", "530", "530", "530", "530", "250"]);
    assert!(out.contains("530 5.7.0 Must issue a STARTTLS command first"));
}

/// RFC 8689: REQUIRETLS is advertised only after TLS, and refused in plaintext.
#[test]
fn requiretls_only_over_tls() {
    let mut s = ServerSession::new(settings(), false);
    let (out, events) = run_chunks(&mut s, &[b"EHLO c\r\nMAIL FROM:<a@b.test> REQUIRETLS\r\n"]);
    assert!(!out.contains("REQUIRETLS\r\n250"), "{out}");
    assert!(out.ends_with("530 5.7.10 REQUIRETLS needs TLS: issue STARTTLS first\r\n"), "{out}");
    assert!(events.is_empty(), "{events:?}");
    let mut s = ServerSession::new(settings(), true);
    let (out, events) = run_chunks(&mut s, &[b"EHLO c\r\nMAIL FROM:<a@b.test> REQUIRETLS\r\n"]);
    assert!(out.contains("250-REQUIRETLS\r\n") || out.contains("250 REQUIRETLS\r\n"), "{out}");
    assert!(events[0].contains("requiretls: true"), "{events:?}");
}

#[test]
fn sequence_errors() {
    let out = run("MAIL FROM:<a@b.test>\r\nEHLO c\r\nRCPT TO:<a@b.test>\r\nDATA\r\nMAIL FROM:<a@b.test>\r\nDATA\r\nMAIL FROM:<a@b.test>\r\nEXPN x\r\nVRFY x\r\nBOGUS\r\n");
    assert_eq!(codes(&out), ["220", "503", "250", "503", "503", "250", "554", "503", "502", "252", "500"]);
    assert!(out.contains("554 5.5.1"));
    assert!(out.contains("500 5.5.2"));
}

#[test]
fn address_syntax_and_params() {
    let out = run("EHLO c\r\nMAIL FROM:a@b.test\r\nMAIL FROM:<a@b.test> FOO=1\r\nMAIL FROM:<> SIZE=20000\r\nMAIL FROM:<>\r\nRCPT TO:<bad@>\r\nRCPT TO:<Postmaster>\r\nRCPT TO:<x@y.test> NOTIFY=NEVER\r\n");
    assert_eq!(codes(&out), ["220", "250", "501", "555", "552", "250", "501", "250", "555"], "{out}");
    assert!(out.contains("501 5.1.7") && out.contains("501 5.1.3") && out.contains("552 5.3.4"));
}

#[test]
fn recipient_limit() {
    let out = run("EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nRCPT TO:<c@x.test>\r\nRCPT TO:<d@x.test>\r\n");
    assert!(out.ends_with("452 4.5.3 Too many recipients\r\n"), "{out}");
}

#[test]
fn long_lines() {
    let long = format!("NOOP {}\r\nNOOP\r\n", "x".repeat(600));
    let out = run(&long);
    assert_eq!(codes(&out), ["220", "500", "250"]);
    assert!(out.contains("500 5.5.2 Line too long"));
    // an endless line is discarded without buffering, answered when it ends
    let mut s = ServerSession::new(settings(), false);
    let mut buf = BytesMut::new();
    for _ in 0..100 {
        buf.extend_from_slice(&[b'a'; 4096]);
        assert!(s.feed(&mut buf).is_none());
        assert!(buf.len() <= MAX_AUTH_LINE + 4096);
    }
    buf.extend_from_slice(b"\r\nNOOP\r\n");
    s.feed(&mut buf);
    let mut out = Vec::new();
    s.take_output(&mut out);
    assert_eq!(out, b"500 5.5.2 Line too long\r\n250 2.0.0 Ok\r\n");
}

#[test]
fn ten_errors_close() {
    let out = run(&"BOGUS\r\n".repeat(12));
    assert_eq!(out.matches("500 5.5.2").count(), 10);
    assert!(out.ends_with("421 4.7.0 Too many errors, closing connection\r\n"), "{out}");
}

#[test]
fn size_limit_by_counting_and_loop_detection() {
    let big =
        format!("EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<a@x.test>\r\nDATA\r\n{}\r\n.\r\nNOOP\r\n", "y".repeat(20_000));
    let out = run(&big);
    assert_eq!(codes(&out), ["220", "250", "250", "250", "354", "552", "250"]);
    let hops = "Received: x\r\n".repeat(51);
    let out = run(&format!("EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<a@x.test>\r\nDATA\r\n{hops}\r\nbody\r\n.\r\n"));
    assert!(out.ends_with("554 5.4.6 Too many Received headers: mail loop\r\n"), "{out}");
    let ok = "Received: x\r\n".repeat(50);
    let out = run(&format!("EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<a@x.test>\r\nDATA\r\n{ok}\r\nbody\r\n.\r\n"));
    assert!(out.ends_with("250 2.0.0 Ok: queued as X\r\n"), "{out}");
}

#[test]
fn auth_offering() {
    let mut st = settings();
    st.auth = AuthMode::Optional;
    let mut s = ServerSession::new(st.clone(), false);
    let (out, _) = run_chunks(&mut s, &[b"EHLO c\r\nAUTH PLAIN AGFAYg==\r\n"]);
    assert!(!out.contains("AUTH PLAIN"));
    assert!(out.contains("538 5.7.11"));
    let mut s = ServerSession::new(st.clone(), true);
    let (out, events) = run_chunks(&mut s, &[b"EHLO c\r\nAUTH PLAIN AGFAYg==\r\nAUTH CRAM-MD5\r\n"]);
    assert!(out.contains("250 AUTH PLAIN LOGIN"), "{out}");
    assert!(out.contains("535 5.7.8") && out.contains("504 5.5.4"), "{out}");
    assert_eq!(events, ["Auth(Start { mechanism: Plain })"]);
    st.auth = AuthMode::Required;
    let mut s = ServerSession::new(st, true);
    let (out, _) = run_chunks(&mut s, &[b"EHLO c\r\nMAIL FROM:<a@b.test>\r\n"]);
    assert!(out.ends_with("530 5.7.0 Authentication required\r\n"), "{out}");
}

/// SPEC §4, §13.8: on a `require_tls` server `allow_plaintext_auth` changes
/// nothing; AUTH is neither offered nor taken before STARTTLS.
#[test]
fn require_tls_overrides_plaintext_auth() {
    let mut st = settings();
    st.auth = AuthMode::Optional;
    st.require_tls = true;
    st.allow_plaintext_auth = true;
    let mut s = ServerSession::new(st, false);
    let (out, events) = run_chunks(&mut s, &[b"EHLO c\r\nAUTH PLAIN AGFAYg==\r\nAUTH LOGIN\r\n"]);
    assert!(!out.contains("AUTH PLAIN LOGIN"), "{out}");
    assert_eq!(codes(&out), ["250", "538", "538"], "{out}");
    assert!(out.contains("538 5.7.11"), "{out}");
    assert!(events.is_empty(), "{events:?}");
    let (out, events) = run_chunks(&mut s, &[b"STARTTLS\r\n", b"EHLO c\r\nAUTH PLAIN AGFAYg==\r\n"]);
    assert!(out.contains("250 AUTH PLAIN LOGIN"), "{out}");
    assert_eq!(events[0], "StartTls");
    assert!(events[1].starts_with("Auth(Start {"), "{events:?}");
}

#[test]
fn auth_challenge_and_cancel() {
    let mut st = settings();
    st.auth = AuthMode::Optional;
    let mut s = ServerSession::new(st, true);
    let mut buf = BytesMut::from(&b"EHLO c\r\nAUTH LOGIN\r\n"[..]);
    assert!(matches!(s.feed(&mut buf), Some(Event::Auth(AuthEvent::Start { .. }))));
    s.auth_begin(Ok(()));
    buf.extend_from_slice(b"YWxpY2U=\r\n");
    assert_eq!(s.feed(&mut buf), None, "the exchange runs in the core");
    buf.extend_from_slice(b"*\r\n");
    assert_eq!(s.feed(&mut buf), None);
    let mut out = Vec::new();
    s.take_output(&mut out);
    let out = String::from_utf8(out).unwrap();
    assert!(out.ends_with("334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n501 5.0.0 Authentication cancelled\r\n"), "{out}");
}

fn grammar_line() -> impl Strategy<Value = Vec<u8>> {
    let verbs = prop::sample::select(vec![
        "EHLO c",
        "HELO c",
        "MAIL FROM:<a@b.test>",
        "MAIL FROM:<>",
        "RCPT TO:<x@y.test>",
        "RCPT TO:<\"q@r\"@y.test>",
        "DATA",
        "RSET",
        "NOOP",
        "QUIT",
        "VRFY x",
        "EXPN x",
        "STARTTLS",
        "AUTH PLAIN",
        "AUTH LOGIN",
        "BDAT 10",
        ".",
        "..x",
        "Subject: x",
        "",
        "*",
        "MAIL FROM:<a@b.test> SIZE=99999999999999999999",
        "\u{0}\u{ff}",
    ]);
    let ends = prop::sample::select(vec!["\r\n", "\n", "\r", ""]);
    (verbs, ends).prop_map(|(v, e)| format!("{v}{e}").into_bytes())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..2048), splits in prop::collection::vec(0usize..2048, 0..8)) {
        super::fuzz::drive(&data, &splits);
    }

    #[test]
    fn grammar_shaped_input_never_panics(lines in prop::collection::vec(grammar_line(), 0..40), splits in prop::collection::vec(0usize..2048, 0..8)) {
        super::fuzz::drive(&lines.concat(), &splits);
    }
}
