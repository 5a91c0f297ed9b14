//! Feed arbitrary bytes, split at fuzzer-chosen points, to the POP3 server
//! core (before and after login, plaintext and TLS), answering every event
//! one way or the other from a small fixed maildrop. No panics, input
//! buffered stays bounded, output is whole CRLF lines.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use postern::proto::session::LineCore;
use postern::proto::pop3::server::{Entry, Event, ServerSession, Settings, MAX_AUTH_LINE};
use postern::proto::pop3::Reply;
use postern::proto::session::AuthEvent;

const MESSAGES: [&[u8]; 3] =
    [b"Subject: one\r\n\r\nbody\r\n.leading dot\r\n", b"", b"no final line end\r\n.\r\n..\r\nx"];

fn maildrop() -> Vec<Entry> {
    MESSAGES
        .iter()
        .enumerate()
        .map(|(i, m)| Entry { uid: i as u32 + 1, size: m.len() as u64, unique_id: format!("uid-{i}") })
        .collect()
}

fn drive(data: &[u8], splits: &[usize], tls: bool, stls: bool) {
    let settings = Settings {
        hostname: "pop.example.test".into(),
        stls,
        require_tls: !tls && stls,
        allow_plaintext_auth: !stls,
        max_errors: 10,
    };
    let mut s = ServerSession::new(settings, tls);
    s.greeting();
    let mut cuts: Vec<usize> = splits.iter().map(|&c| c.min(data.len())).collect();
    cuts.sort_unstable();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut flip = false;
    let mut prev = 0;
    for cut in cuts.into_iter().chain([data.len()]) {
        if s.is_closed() {
            // the driver stops reading here
            break;
        }
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
                    s.login_done(if flip {
                        Ok(("alice@example.test".into(), maildrop()))
                    } else {
                        Err(Reply::err("[AUTH] no"))
                    })
                }
                Event::Auth(AuthEvent::Start { .. }) => s.auth_begin(Ok(())),
                Event::Retrieve { uid, .. } => {
                    let m = MESSAGES.get(uid as usize - 1).copied().unwrap_or_default();
                    s.message(if flip { Ok(m) } else { Err(Reply::err("[SYS/TEMP] gone")) })
                }
                Event::Update { deleted } => {
                    assert!(deleted.iter().all(|&u| (1..=3).contains(&u)), "{deleted:?}");
                    s.update_done(Ok(()))
                }
                Event::Quit | Event::TooManyErrors => {}
            }
            s.take_output(&mut out);
        }
        s.take_output(&mut out);
        assert!(buf.len() <= MAX_AUTH_LINE + 2 + (data.len() - prev).max(1024), "{} buffered", buf.len());
    }
    assert!(out.is_empty() || out.ends_with(b"\r\n"), "{:?}", String::from_utf8_lossy(&out));
}

fuzz_target!(|data: &[u8]| {
    let (head, rest) = data.split_at(data.len().min(8));
    let splits: Vec<usize> = head.iter().map(|&b| b as usize * rest.len() / 256).collect();
    for (tls, stls) in [(false, true), (true, false), (false, false)] {
        drive(rest, &splits, tls, stls);
    }
});
