//! The IMAP session core's state machine: the greeting and CAPABILITY by
//! state and TLS, LOGINDISABLED and PRIVACYREQUIRED, STARTTLS dropping
//! what was pipelined, LOGIN and AUTHENTICATE PLAIN (SASL-IR), commands in
//! the wrong state, IDLE and DONE, LOGOUT, the error limit, and a property
//! test: any input, split anywhere, gives well-formed responses and no panic.

use super::reader::Limits;
use super::server::{replies, Event, ServerSession, Settings};
use crate::proto::sasl::Credentials;
use crate::proto::session::{AuthEvent, LineCore};
use bytes::BytesMut;
use proptest::prelude::*;

fn settings(require_tls: bool, allow_plaintext_auth: bool) -> Settings {
    Settings {
        hostname: "mx.example.test".into(),
        starttls: true,
        require_tls,
        allow_plaintext_auth,
        max_errors: 5,
        limits: Limits::default(),
    }
}

fn out(s: &mut ServerSession) -> String {
    let mut o = Vec::new();
    s.take_output(&mut o);
    String::from_utf8(o).unwrap()
}

fn feed(s: &mut ServerSession, input: &str) -> (Option<Event>, String) {
    let mut b = BytesMut::from(input.as_bytes());
    let e = s.feed(&mut b);
    (e, out(s))
}

fn logged_in(tls: bool) -> ServerSession {
    let mut s = ServerSession::new(settings(false, true), tls);
    s.greeting();
    out(&mut s);
    let (e, _) = feed(&mut s, "a LOGIN alice pw\r\n");
    assert!(matches!(e, Some(Event::Login(_))));
    s.login_done(Ok("alice@example.test".into()));
    assert!(out(&mut s).starts_with("a OK [CAPABILITY IMAP4rev1 "));
    s
}

#[test]
fn greeting_and_capabilities_follow_tls_and_policy() {
    let mut s = ServerSession::new(settings(false, false), false);
    s.greeting();
    let g = out(&mut s);
    assert!(
        g.starts_with("* OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE UIDPLUS MOVE UNSELECT"),
        "{g}"
    );
    assert!(g.contains(" STARTTLS LOGINDISABLED] mx.example.test Postern ready\r\n"), "{g}");
    let (_, r) = feed(&mut s, "1 CAPABILITY\r\n");
    assert!(
        r.contains("LOGINDISABLED") && !r.contains("AUTH=PLAIN") && r.ends_with("1 OK CAPABILITY completed\r\n"),
        "{r}"
    );
    let mut s = ServerSession::new(settings(false, true), false);
    let (_, r) = feed(&mut s, "1 CAPABILITY\r\n");
    assert!(r.contains("AUTH=PLAIN") && !r.contains("LOGINDISABLED"), "plaintext allowed: {r}");
    let mut s = ServerSession::new(settings(true, true), true);
    let (_, r) = feed(&mut s, "1 CAPABILITY\r\n");
    assert!(r.contains("AUTH=PLAIN") && !r.contains("STARTTLS") && !r.contains("LOGINDISABLED"), "implicit TLS: {r}");
}

#[test]
fn no_credentials_before_tls_under_require_tls() {
    let mut s = ServerSession::new(settings(true, true), false);
    let (e, r) = feed(&mut s, "a LOGIN alice pw\r\nb AUTHENTICATE PLAIN AGFsaWNlAHB3\r\n");
    assert_eq!(e, None);
    assert!(r.starts_with("a NO [PRIVACYREQUIRED] "), "{r}");
    assert!(r.contains("\r\nb NO [PRIVACYREQUIRED] "), "{r}");
    assert!(s.user().is_none());
}

#[test]
fn starttls_drops_what_was_pipelined() {
    let mut s = ServerSession::new(settings(false, false), false);
    let mut input = BytesMut::from(&b"a STARTTLS\r\nb LOGIN alice pw\r\n"[..]);
    assert_eq!(s.feed(&mut input), Some(Event::StartTls));
    assert_eq!(out(&mut s), "a OK Begin TLS negotiation now\r\n");
    // the driver drops the rest of the input; the core forgets any partial command
    input.clear();
    s.tls_started();
    assert!(s.tls_active());
    let (_, r) = feed(&mut s, "c STARTTLS\r\n");
    assert!(r.starts_with("c BAD "), "{r}");
    let (e, _) = feed(&mut s, "d LOGIN alice pw\r\n");
    assert_eq!(e, Some(Event::Login(Credentials { username: "alice".into(), password: "pw".into() })));
}

#[test]
fn login_failure_and_authenticate_plain_with_sasl_ir() {
    let mut s = ServerSession::new(settings(false, true), false);
    let (e, _) = feed(&mut s, "a LOGIN alice wrong\r\n");
    assert!(matches!(e, Some(Event::Login(_))));
    s.login_done(Err(replies::AUTH_FAILED));
    assert_eq!(out(&mut s), "a NO [AUTHENTICATIONFAILED] Authentication failed\r\n");
    let (e, _) = feed(&mut s, "b AUTHENTICATE PLAIN AGFsaWNlAHB3\r\n");
    assert!(matches!(e, Some(Event::Auth(AuthEvent::Start { .. }))));
    s.auth_begin(Ok(()));
    let e = s.feed(&mut BytesMut::new());
    let Some(Event::Auth(AuthEvent::Credentials(c))) = e else { panic!("{e:?}") };
    assert_eq!((c.username.as_str(), c.password.as_str()), ("alice", "pw"));
    s.login_done(Ok("alice@example.test".into()));
    assert!(out(&mut s).starts_with("b OK [CAPABILITY "));
    // without an initial response: a continuation, then the line
    let mut s = ServerSession::new(settings(false, true), false);
    feed(&mut s, "c AUTHENTICATE PLAIN\r\n");
    s.auth_begin(Ok(()));
    assert_eq!(out(&mut s), "+ \r\n");
    let (e, _) = feed(&mut s, "AGFsaWNlAHB3\r\n");
    assert!(matches!(e, Some(Event::Auth(AuthEvent::Credentials(_)))));
    // cancelled
    let mut s = ServerSession::new(settings(false, true), false);
    feed(&mut s, "d AUTHENTICATE PLAIN\r\n");
    s.auth_begin(Ok(()));
    out(&mut s);
    let (_, r) = feed(&mut s, "*\r\n");
    assert_eq!(r, "d BAD AUTHENTICATE cancelled\r\n");
    // throttled
    feed(&mut s, "e AUTHENTICATE PLAIN\r\n");
    s.auth_begin(Err(replies::AUTH_THROTTLED));
    assert!(out(&mut s).starts_with("e NO [UNAVAILABLE] "));
}

#[test]
fn commands_only_in_their_state() {
    let mut s = ServerSession::new(settings(false, true), false);
    let (e, r) = feed(&mut s, "a SELECT INBOX\r\nb FETCH 1 FLAGS\r\nc NOOP\r\n");
    assert_eq!(e, None);
    assert!(r.starts_with("a BAD ") && r.contains("\r\nb BAD ") && r.ends_with("c OK NOOP completed\r\n"), "{r}");
    let mut s = logged_in(false);
    let (e, r) = feed(&mut s, "a FETCH 1 FLAGS\r\nb LOGIN x y\r\nc SELECT INBOX\r\nd NOOP\r\n");
    assert!(r.starts_with("a BAD No mailbox selected\r\nb BAD Already authenticated\r\n"), "{r}");
    let Some(Event::Command(c)) = e else { panic!("{e:?}") };
    assert_eq!(c.tag, "c");
    // nothing more is read until the service answers
    assert_eq!(s.feed(&mut BytesMut::from(&b"x NOOP\r\n"[..])), None);
    s.select(false);
    s.done();
    let (e, _) = feed(&mut s, "e FETCH 1 FLAGS\r\n");
    assert!(matches!(e, Some(Event::Command(_))), "selected now");
}

#[test]
fn id_enable_namespace_idle_and_logout() {
    let mut s = logged_in(true);
    let (_, r) = feed(&mut s, "a ID NIL\r\nb ENABLE CONDSTORE X-FOO\r\nc NAMESPACE\r\n");
    assert_eq!(
        r,
        "* ID (\"name\" \"Postern\")\r\na OK ID completed\r\n* ENABLED CONDSTORE\r\nb OK ENABLE completed\r\n\
         * NAMESPACE ((\"\" \"/\")) NIL NIL\r\nc OK NAMESPACE completed\r\n"
    );
    assert!(s.condstore());
    let (e, r) = feed(&mut s, "d IDLE\r\n");
    assert_eq!((e, r.as_str()), (Some(Event::Idle), "+ idling\r\n"));
    assert!(s.is_idle());
    let (e, _) = feed(&mut s, "done\r\n");
    assert_eq!(e, Some(Event::IdleDone { tag: "d".into() }));
    s.done();
    let mut input = BytesMut::from(&b"f IDLE\r\nnot done\r\n"[..]);
    assert_eq!(s.feed(&mut input), Some(Event::Idle));
    assert_eq!(s.feed(&mut input), None);
    assert_eq!(out(&mut s), "+ idling\r\nf BAD Expected DONE to end IDLE\r\n");
    let (e, r) = feed(&mut s, "z LOGOUT\r\nafter\r\n");
    assert_eq!(e, Some(Event::Logout));
    assert_eq!(r, "* BYE Logging out\r\nz OK LOGOUT completed\r\n");
    assert!(s.is_closed());
}

#[test]
fn synchronising_literals_are_invited_and_errors_close() {
    let mut s = ServerSession::new(settings(false, true), false);
    let (e, r) = feed(&mut s, "a LOGIN {5}\r\n");
    assert_eq!((e, r.as_str()), (None, "+ Ready\r\n"));
    let (e, _) = feed(&mut s, "alice pw\r\n");
    assert!(matches!(e, Some(Event::Login(_))));
    let mut s = ServerSession::new(settings(false, true), false);
    let (e, r) = feed(&mut s, "a FOO\r\nb BAR\r\nc\r\nd x\r\ne y\r\nf z\r\n");
    assert_eq!(e, Some(Event::TooManyErrors));
    assert!(r.ends_with("* BYE Too many errors, closing the connection\r\n"), "{r}");
}

/// Every response line is untagged data or status, a continuation, or a
/// tagged status (no literals: this core sends no message data).
fn well_formed(out: &[u8]) -> bool {
    out.split(|&b| b == b'\n').filter(|l| !l.is_empty()).all(|l| {
        let Some(sp) = l.iter().position(|&b| b == b' ') else { return false };
        let (head, rest) = l.split_at(sp + 1);
        let status = [&b"OK "[..], b"NO ", b"BAD "].iter().any(|s| rest.starts_with(s));
        l.ends_with(b"\r") && (head == b"* " || head == b"+ " || status)
    })
}

proptest! {
    #[test]
    fn any_input_split_anywhere_is_answered_well(
        chunks in proptest::collection::vec(
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..40),
                proptest::sample::select(vec![
                    b"a LOGIN alice pw\r\n".to_vec(), b"b CAPABILITY\r\n".to_vec(), b"c SELECT {3}\r\n".to_vec(),
                    b"abc\r\n".to_vec(), b"d IDLE\r\n".to_vec(), b"DONE\r\n".to_vec(), b"e AUTHENTICATE PLAIN\r\n".to_vec(),
                    b"*\r\n".to_vec(), b"f APPEND INBOX {5+}\r\nhello\r\n".to_vec(), b"g STARTTLS\r\n".to_vec(),
                ]),
            ],
            0..20,
        )
    ) {
        let mut s = ServerSession::new(settings(false, true), false);
        s.greeting();
        let mut input = BytesMut::new();
        let mut all = Vec::new();
        for c in chunks {
            input.extend_from_slice(&c);
            while let Some(e) = s.feed(&mut input) {
                match e {
                    Event::Login(_) | Event::Auth(AuthEvent::Credentials(_) | AuthEvent::Failed(_)) => {
                        s.login_done(Err(replies::AUTH_FAILED))
                    }
                    Event::Auth(AuthEvent::Start { .. }) => s.auth_begin(Ok(())),
                    Event::StartTls => { input.clear(); s.tls_started() }
                    Event::Command(_) | Event::IdleDone { .. } => s.done(),
                    Event::Idle | Event::Logout | Event::TooManyErrors => {}
                }
            }
            s.take_output(&mut all);
        }
        prop_assert!(well_formed(&all), "{}", String::from_utf8_lossy(&all));
    }
}
