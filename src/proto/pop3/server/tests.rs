//! POP3 transcripts run through the core without sockets, and a property
//! test over random and grammar-shaped input split at random points.

use super::*;
use proptest::prelude::*;

fn settings() -> Settings {
    Settings {
        hostname: "mail.example.test".into(),
        stls: true,
        require_tls: false,
        allow_plaintext_auth: false,
        max_errors: 10,
    }
}

/// Stored messages: one with a dot-led line and a lone dot line.
fn stored(uid: u32) -> Vec<u8> {
    format!("Received: by mx\r\nSubject: m{uid}\r\n\r\n.dot\r\n.\r\nline {uid}\r\n").into_bytes()
}

fn maildrop() -> Vec<Entry> {
    [7u32, 9, 12]
        .iter()
        .map(|&uid| Entry { uid, size: stored(uid).len() as u64, unique_id: format!("1700000000.{uid}") })
        .collect()
}

/// Feed `chunks`, answering every event the way a working server would
/// (the password "secret" is right); returns the output and the events.
fn run_chunks(s: &mut ServerSession, chunks: &[&[u8]]) -> (String, Vec<String>) {
    let mut events = Vec::new();
    let mut buf = BytesMut::new();
    for c in chunks {
        buf.extend_from_slice(c);
        while let Some(ev) = s.feed(&mut buf) {
            events.push(format!("{ev:?}"));
            match ev {
                Event::StartTls => {
                    // what the driver does: discard the rest, then reset
                    buf.clear();
                    s.tls_started();
                }
                Event::Login(c) if c.password == "secret" => s.login_done(Ok((c.username, maildrop()))),
                Event::Login(_) => s.login_done(Err(reply::AUTH_FAILED)),
                Event::Auth(AuthEvent::Start { .. }) => s.auth_begin(Ok(())),
                Event::Auth(AuthEvent::Credentials(c)) => s.login_done(Ok((c.username, maildrop()))),
                Event::Auth(AuthEvent::Failed(_)) => s.login_done(Err(reply::AUTH_FAILED)),
                Event::Retrieve { uid, .. } => s.message(Ok(&stored(uid))),
                Event::Update { .. } => s.update_done(Ok(())),
                Event::Quit | Event::TooManyErrors => {}
            }
        }
    }
    let mut out = Vec::new();
    s.take_output(&mut out);
    (String::from_utf8(out).unwrap(), events)
}

fn session(st: Settings, tls: bool) -> ServerSession {
    let mut s = ServerSession::new(st, tls);
    s.greeting();
    s
}

const TRANSCRIPT: &str = "CAPA\r\nUSER alice\r\nSTLS\r\nCAPA\r\nUSER alice\r\nPASS secret\r\nSTAT\r\nLIST\r\nLIST 2\r\nUIDL\r\nUIDL 3\r\nDELE 1\r\nDELE 1\r\nLIST 1\r\nSTAT\r\nRETR 2\r\nTOP 3 0\r\nRSET\r\nDELE 2\r\nNOOP\r\nQUIT\r\n";

fn expected_transcript() -> String {
    let m9 = "Received: by mx\r\nSubject: m9\r\n\r\n..dot\r\n..\r\nline 9\r\n.\r\n";
    let sizes: Vec<usize> = [7, 9, 12].iter().map(|&u| stored(u).len()).collect();
    let total: usize = sizes.iter().sum();
    [
        "+OK mail.example.test POP3 server ready\r\n".to_string(),
        "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nSTLS\r\n.\r\n".into(),
        "-ERR [AUTH] Plaintext authentication is disabled: send STLS before any credentials\r\n".into(),
        "+OK Begin TLS negotiation\r\n".into(),
        "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nUSER\r\nSASL PLAIN\r\n.\r\n".into(),
        "+OK Send your password\r\n".into(),
        format!("+OK Logged in, 3 messages ({total} octets)\r\n"),
        format!("+OK 3 {total}\r\n"),
        format!("+OK 3 messages ({total} octets)\r\n1 {}\r\n2 {}\r\n3 {}\r\n.\r\n", sizes[0], sizes[1], sizes[2]),
        format!("+OK 2 {}\r\n", sizes[1]),
        "+OK Unique-id listing follows\r\n1 1700000000.7\r\n2 1700000000.9\r\n3 1700000000.12\r\n.\r\n".into(),
        "+OK 3 1700000000.12\r\n".into(),
        "+OK Message deleted\r\n".into(),
        "-ERR Message already deleted\r\n".into(),
        "-ERR Message already deleted\r\n".into(),
        format!("+OK 2 {}\r\n", sizes[1] + sizes[2]),
        format!("+OK {} octets\r\n{m9}", sizes[1]),
        "+OK Top of message follows\r\nReceived: by mx\r\nSubject: m12\r\n\r\n.\r\n".into(),
        format!("+OK Maildrop has 3 messages ({total} octets)\r\n"),
        "+OK Message deleted\r\n".into(),
        "+OK\r\n".into(),
        "+OK Bye, 2 messages left\r\n".into(),
    ]
    .concat()
}

#[test]
fn full_session_after_stls() {
    let mut s = session(settings(), false);
    let (out, events) = run_chunks(&mut s, &[TRANSCRIPT.as_bytes()]);
    // STLS drops what was pipelined after it: send the rest after the handshake
    assert_eq!(events, ["StartTls"]);
    let after = TRANSCRIPT.split_once("STLS\r\n").unwrap().1;
    let (out2, events) = run_chunks(&mut s, &[after.as_bytes()]);
    assert_eq!(out + &out2, expected_transcript());
    assert!(events.contains(&"Update { deleted: [9] }".to_string()), "{events:?}");
    assert!(events.iter().any(|e| e.contains("Login(Credentials { username: \"alice\"")), "{events:?}");
    assert!(s.is_closed());
}

#[test]
fn every_split_gives_the_same_transcript() {
    let after = TRANSCRIPT.split_once("STLS\r\n").unwrap().1.as_bytes();
    let mut whole = session(settings(), true);
    let (expected, _) = run_chunks(&mut whole, &[after]);
    for i in 0..=after.len() {
        let mut s = session(settings(), true);
        let (out, _) = run_chunks(&mut s, &[&after[..i], &after[i..]]);
        assert_eq!(out, expected, "split at {i}");
    }
}

#[test]
fn require_tls_refuses_credentials_and_hides_them_in_capa() {
    let mut st = settings();
    st.require_tls = true;
    st.allow_plaintext_auth = true;
    let mut s = session(st, false);
    let (out, events) = run_chunks(&mut s, &[b"CAPA\r\nUSER alice\r\nPASS secret\r\nAUTH PLAIN AGFAYg==\r\nAUTH\r\n"]);
    assert!(events.is_empty(), "{events:?}");
    assert!(!out.contains("\r\nUSER\r\n") && !out.contains("SASL PLAIN"), "{out}");
    assert_eq!(
        out.matches("-ERR [AUTH] This server requires a secure channel: send STLS before any credentials\r\n").count(),
        3,
        "{out}"
    );
    assert!(out.ends_with("+OK Supported SASL mechanisms follow\r\n.\r\n"), "{out}");
    // and after STLS, the same credentials work
    let (out, events) = run_chunks(&mut s, &[b"STLS\r\n"]);
    assert_eq!(events, ["StartTls"]);
    assert!(out.ends_with("+OK Begin TLS negotiation\r\n"));
    let (out, _) = run_chunks(&mut s, &[b"USER alice\r\nPASS secret\r\nSTLS\r\n"]);
    assert!(out.contains("+OK Logged in, 3 messages"), "{out}");
    assert!(out.ends_with("-ERR Command not valid in this state\r\n"), "{out}");
}

#[test]
fn plaintext_credentials_when_the_operator_allows_them() {
    let mut st = settings();
    st.allow_plaintext_auth = true;
    st.stls = false;
    let mut s = session(st, false);
    let (out, _) = run_chunks(
        &mut s,
        &[b"CAPA\r\nSTLS\r\nPASS secret\r\nUSER alice\r\nPASS wrong\r\nUSER alice\r\nPASS secret\r\n"],
    );
    assert!(out.contains("USER\r\nSASL PLAIN\r\n.\r\n") && !out.contains("STLS\r\n."), "{out}");
    assert!(out.contains("-ERR STLS is not available on this server\r\n-ERR Send USER first\r\n"), "{out}");
    assert!(out.contains("-ERR [AUTH] Authentication failed\r\n+OK Send your password\r\n+OK Logged in"), "{out}");
}

#[test]
fn auth_plain_with_and_without_initial_response() {
    let mut s = session(settings(), true);
    let (out, events) =
        run_chunks(&mut s, &[b"AUTH\r\nAUTH LOGIN\r\nAUTH PLAIN\r\n*\r\nAUTH PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\n"]);
    assert_eq!(
        events,
        [
            "Auth(Start { mechanism: Plain })",
            "Auth(Start { mechanism: Plain })",
            "Auth(Credentials(Credentials { username: \"alice\", password: \"<redacted>\" }))"
        ]
    );
    assert!(out.starts_with("+OK mail.example.test POP3 server ready\r\n+OK Supported SASL mechanisms follow\r\nPLAIN\r\n.\r\n-ERR Unrecognized authentication mechanism\r\n+ \r\n-ERR Authentication cancelled\r\n+ \r\n+OK Logged in"), "{out}");
    let mut s = session(settings(), true);
    let (_, events) = run_chunks(&mut s, &[b"auth plain AGFsaWNlAHNlY3JldA==\r\n"]);
    assert_eq!(
        events,
        [
            "Auth(Start { mechanism: Plain })",
            "Auth(Credentials(Credentials { username: \"alice\", password: \"<redacted>\" }))"
        ]
    );
}

#[test]
fn state_and_syntax_errors() {
    let mut st = settings();
    st.max_errors = 20;
    let mut s = session(st, true);
    let (out, _) = run_chunks(&mut s, &[b"STAT\r\nBOGUS\r\nAPOP a b\r\nUSER\r\n"]);
    assert!(out.ends_with("-ERR Command not valid in this state\r\n-ERR Unknown command\r\n-ERR APOP is not supported; use USER/PASS or AUTH PLAIN over TLS\r\n-ERR Syntax error in arguments\r\n"), "{out}");
    let (out, _) = run_chunks(
        &mut s,
        &[b"USER a\r\nPASS secret\r\nRETR\r\nRETR x\r\nRETR 0\r\nRETR 4\r\nTOP 1\r\nTOP 1 -1\r\nSTAT 1\r\nUSER a\r\n"],
    );
    let errs: Vec<&str> = out.lines().filter(|l| l.starts_with("-ERR")).collect();
    assert_eq!(
        errs,
        [
            "-ERR Syntax error in arguments",
            "-ERR Syntax error in arguments",
            "-ERR No such message",
            "-ERR No such message",
            "-ERR Syntax error in arguments",
            "-ERR Syntax error in arguments",
            "-ERR Syntax error in arguments",
            "-ERR Command not valid in this state"
        ]
    );
}

#[test]
fn quit_before_login_and_no_deletions_without_quit() {
    let mut s = session(settings(), true);
    let (out, events) = run_chunks(&mut s, &[b"QUIT\r\nNOOP\r\n"]);
    assert_eq!(events, ["Quit"]);
    assert!(out.ends_with("+OK Bye\r\n"));
    let mut s = session(settings(), true);
    let (_, events) = run_chunks(&mut s, &[b"USER a\r\nPASS secret\r\nDELE 1\r\n"]);
    assert_eq!(s.marked(), 1);
    s.close_with(&reply::IDLE_TIMEOUT);
    let (out, more) = run_chunks(&mut s, &[b"QUIT\r\n"]);
    assert_eq!(out, "-ERR Disconnected for inactivity\r\n");
    assert!(!events.iter().chain(&more).any(|e| e.starts_with("Update")), "{events:?}");
}

#[test]
fn long_lines_and_error_limit() {
    let mut s = session(settings(), true);
    let long = format!("NOOP {}\r\nCAPA\r\n", "x".repeat(300));
    let (out, _) = run_chunks(&mut s, &[long.as_bytes()]);
    assert!(out.contains("-ERR Line too long\r\n+OK Capability list follows"), "{out}");
    // a long PASS is fine (and is a password, spaces included)
    let mut buf = BytesMut::from(format!("USER a\r\nPASS {} x\r\n", "p".repeat(400)).as_bytes());
    match s.feed(&mut buf) {
        Some(Event::Login(c)) => assert_eq!(c.password, format!("{} x", "p".repeat(400))),
        other => panic!("{other:?}"),
    }
    // an endless line is dropped as it comes, answered when it ends
    let mut s = session(settings(), true);
    let mut buf = BytesMut::new();
    for _ in 0..100 {
        buf.extend_from_slice(&[b'a'; 4096]);
        assert!(s.feed(&mut buf).is_none());
        assert!(buf.len() <= MAX_AUTH_LINE + 4096);
    }
    let (out, _) = run_chunks(&mut s, &[b"\r\nCAPA\r\n"]);
    assert!(out.contains("-ERR Line too long\r\n+OK Capability"), "{out}");
    let mut s = session(settings(), true);
    let (out, events) = run_chunks(&mut s, &["BOGUS\r\n".repeat(12).as_bytes()]);
    assert_eq!(out.matches("-ERR Unknown command").count(), 10);
    assert!(out.ends_with("-ERR Too many errors, closing connection\r\n"));
    assert_eq!(events, ["TooManyErrors"]);
}

#[test]
fn pipelined_output_is_taken_in_bounded_slices() {
    let mut s = session(settings(), true);
    let mut buf = BytesMut::from(&b"USER a\r\nPASS secret\r\n"[..]);
    let Some(Event::Login(_)) = s.feed(&mut buf) else { panic!("no login") };
    let big: Vec<Entry> = (1..=20_000).map(|uid| Entry { uid, size: 1000, unique_id: format!("1.{uid}") }).collect();
    s.login_done(Ok(("a".into(), big)));
    let mut out = Vec::new();
    s.take_output(&mut out);
    // a client pipelines 3000 LISTs of a 20000-message maildrop (~650 MB of answers)
    buf.extend_from_slice("LIST\r\n".repeat(3000).as_bytes());
    let mut slices = 0;
    let mut lists = 0;
    while !buf.is_empty() {
        assert_eq!(s.feed(&mut buf), None);
        assert!(s.output_full() || buf.is_empty());
        let mut slice = Vec::new();
        s.take_output(&mut slice);
        assert!(slice.len() < OUTPUT_HIGH_WATER + 300_000, "one slice is {} bytes", slice.len());
        lists += slice.windows(10).filter(|w| w == b"20000 1000").count();
        slices += 1;
        if slices > 10 {
            break;
        }
    }
    assert!(slices > 10 && lists <= 11 * 2, "{slices} slices, {lists} listings");
}

/// Every byte the session writes parses as POP3 responses: status lines,
/// challenges, and multi-line bodies whose lines never read as the end.
fn well_formed(out: &[u8]) -> Result<(), String> {
    let text = out;
    if !text.is_empty() && !text.ends_with(b"\r\n") {
        return Err("does not end in CRLF".into());
    }
    let mut lines = text.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").ok_or("a bare LF"));
    let mut multi_until_dot = false;
    // the last split piece after the final LF is empty and has no CR
    let n = text.iter().filter(|&&b| b == b'\n').count();
    for _ in 0..n {
        let l = lines.next().ok_or("short")??;
        if multi_until_dot {
            // a stuffed body line never reads as the terminator
            multi_until_dot = l != b".";
            continue;
        }
        let s = String::from_utf8_lossy(l);
        if s.starts_with("+ ") {
            continue;
        }
        if !(s.starts_with("+OK") || s.starts_with("-ERR")) {
            return Err(format!("not a status line: {s:?}"));
        }
        if s.bytes().any(|b| b < 0x20) {
            return Err(format!("control character in {s:?}"));
        }
        multi_until_dot = s == "+OK Capability list follows"
            || s == "+OK Supported SASL mechanisms follow"
            || s == "+OK Unique-id listing follows"
            || s == "+OK Top of message follows"
            || (s.starts_with("+OK ") && (s.ends_with(" octets") && !s.contains('(')))
            || (s.starts_with("+OK ")
                && s.contains(" messages (")
                && !s.starts_with("+OK Logged")
                && !s.starts_with("+OK Maildrop"));
    }
    if multi_until_dot {
        return Err("unterminated multi-line response".into());
    }
    Ok(())
}

fn grammar_line() -> impl Strategy<Value = Vec<u8>> {
    let verbs = prop::sample::select(vec![
        "CAPA",
        "USER alice",
        "USER",
        "PASS secret",
        "PASS wrong",
        "PASS",
        "AUTH",
        "AUTH PLAIN",
        "AUTH PLAIN AGFhAGI=",
        "AUTH LOGIN",
        "*",
        "=",
        "STLS",
        "STLS x",
        "APOP a b",
        "STAT",
        "LIST",
        "LIST 1",
        "LIST 2",
        "LIST 99",
        "UIDL",
        "UIDL 3",
        "RETR 1",
        "RETR 2",
        "RETR 0",
        "TOP 1 0",
        "TOP 2 1",
        "TOP 3 99999999999999999999",
        "DELE 1",
        "DELE 3",
        "RSET",
        "NOOP",
        "QUIT",
        "",
        ".",
        "\u{0}\u{ff}",
        "list   2",
    ]);
    let ends = prop::sample::select(vec!["\r\n", "\n", "\r", ""]);
    (verbs, ends).prop_map(|(v, e)| format!("{v}{e}").into_bytes())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..2048), splits in prop::collection::vec(0usize..2048, 0..8)) {
        fuzz_once(&data, &splits);
    }

    #[test]
    fn grammar_shaped_input_never_panics(lines in prop::collection::vec(grammar_line(), 0..40), splits in prop::collection::vec(0usize..2048, 0..8)) {
        fuzz_once(&lines.concat(), &splits);
    }
}

/// Drive a session over arbitrary input split at arbitrary points, with
/// arbitrary decisions; assert the output stays well formed and the
/// buffer bounded.
fn fuzz_once(data: &[u8], splits: &[usize]) {
    for (tls, plaintext) in [(false, false), (false, true), (true, false)] {
        let mut st = settings();
        st.allow_plaintext_auth = plaintext;
        st.max_errors = 25;
        let mut s = session(st, tls);
        let mut cuts: Vec<usize> = splits.iter().map(|&c| c.min(data.len())).collect();
        cuts.sort_unstable();
        let mut prev = 0;
        let mut buf = BytesMut::new();
        let mut flip = false;
        for cut in cuts.into_iter().chain([data.len()]) {
            buf.extend_from_slice(&data[prev..cut]);
            prev = cut;
            while let Some(ev) = s.feed(&mut buf) {
                flip = !flip;
                match ev {
                    Event::StartTls => {
                        buf.clear();
                        s.tls_started();
                    }
                    Event::Login(_) | Event::Auth(AuthEvent::Credentials(_) | AuthEvent::Failed(_)) => {
                        s.login_done(if flip { Ok(("u".into(), maildrop())) } else { Err(reply::IN_USE) })
                    }
                    Event::Auth(AuthEvent::Start { .. }) => s.auth_begin(Ok(())),
                    Event::Retrieve { uid, .. } => {
                        let m = stored(uid);
                        s.message(if flip { Ok(&m) } else { Err(reply::MESSAGE_GONE) })
                    }
                    Event::Update { .. } => s.update_done(if flip { Ok(()) } else { Err(reply::UPDATE_FAILED) }),
                    Event::Quit | Event::TooManyErrors => {}
                }
            }
            assert!(buf.len() <= MAX_AUTH_LINE + 2048 + 8192);
        }
        let mut out = Vec::new();
        s.take_output(&mut out);
        if let Err(e) = well_formed(&out) {
            panic!("{e}: {:?}", String::from_utf8_lossy(&out));
        }
    }
}
