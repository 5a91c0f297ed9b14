//! A driver for fuzzing and property tests: runs a session over arbitrary
//! bytes split at arbitrary points, answering every decision one way or the
//! other, and checks that every reply stays well formed and the buffered
//! input stays bounded. Used by the proptest in the normal suite and by the
//! cargo-fuzz target in `fuzz/`.

use super::*;

fn settings(auth: AuthMode) -> Settings {
    Settings {
        hostname: "mx.example.test".into(),
        max_message_size: 10_000,
        max_recipients: 3,
        starttls: true,
        require_tls: false,
        auth,
        allow_plaintext_auth: false,
        max_errors: 10,
    }
}

/// Every byte the session writes is a well-formed reply line.
pub fn well_formed(out: &[u8]) -> bool {
    if out.is_empty() {
        return true;
    }
    if !out.ends_with(b"\r\n") {
        return false;
    }
    out[..out.len() - 2].split(|&b| b == b'\n').all(|l| {
        let l = l.strip_suffix(b"\r").unwrap_or(l);
        l.len() >= 4 && l[..3].iter().all(u8::is_ascii_digit) && (l[3] == b' ' || l[3] == b'-') && !l.contains(&b'\r')
    })
}

/// Drive a session over arbitrary input split at arbitrary points, with
/// arbitrary decisions; assert replies stay well formed.
pub fn drive(data: &[u8], splits: &[usize]) {
    for tls in [false, true] {
        let mut s = ServerSession::new(settings(if tls { AuthMode::Optional } else { AuthMode::Off }), tls);
        s.greeting();
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
                    Event::Mail { .. } => s.mail_decision(if flip { Ok(()) } else { Err(reply::RELAY_DENIED) }),
                    Event::Rcpt { .. } => s.rcpt_decision(if flip { Ok(()) } else { Err(reply::UNKNOWN_USER) }),
                    Event::Message { .. } => s.message_decision(reply::OK),
                    Event::Auth(AuthEvent::Start { .. }) => {
                        s.auth_begin(if flip { Ok(()) } else { Err(reply::AUTH_THROTTLED) })
                    }
                    Event::Auth(_) => s.auth_done(if flip { Ok("u".into()) } else { Err(reply::AUTH_FAILED) }),
                    Event::StartTls => {
                        buf.clear();
                        s.tls_started();
                    }
                    Event::Quit | Event::TooManyErrors => {}
                }
            }
            assert!(buf.len() <= MAX_AUTH_LINE + 2048 + 8192);
        }
        let mut out = Vec::new();
        s.take_output(&mut out);
        assert!(well_formed(&out), "{:?}", String::from_utf8_lossy(&out));
    }
}
