//! Feed arbitrary bytes, split at fuzzer-chosen points, to the NNTP server
//! core (plaintext and TLS, feed peer or not), answering every event one
//! way or the other from a tiny fixed "store". No panics, input buffered
//! stays bounded, and the output is well formed: status lines of three
//! digits, the multi-line blocks `.`-terminated, CRLF line ends only.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use postern::proto::nntp::reply::{self, Reply};
use postern::proto::nntp::server::{Answer, Event, GroupEntry, Request, ServerSession, Settings, Span, Target};
use postern::proto::session::{AuthEvent, LineCore, MAX_SASL_LINE};

const ARTICLE: &[u8] = b"Subject: s\r\nMessage-ID: <a@x>\r\n\r\n.dot\r\n.\r\n\r\nend\r\n";

fn group() -> GroupEntry {
    GroupEntry {
        name: "misc.test".into(),
        count: 2,
        low: 1,
        high: 2,
        posting: 'y',
        description: "d\r\n.".into(),
        created: 1,
    }
}

fn store(req: Request, yes: bool) -> Answer {
    if !yes {
        return Answer::Reply(reply::STORE_FAILED);
    }
    match req {
        Request::Group { list, .. } => Answer::Group(group(), if list.is_some() { vec![1, 2] } else { vec![] }),
        Request::Article { target: Target::Number { number, .. }, .. } => {
            Answer::Article { number, id: "<a@x>".into(), article: ARTICLE.to_vec() }
        }
        Request::Article { target: Target::Id(id), .. } => Answer::Article { number: 0, id, article: ARTICLE.to_vec() },
        Request::Step { from, .. } => Answer::Moved { number: from.saturating_add(1), id: "<b@x>".into() },
        Request::Over(Span::Range { from, .. }) => {
            Answer::Overview(vec![format!("{from}\ts\t\t\t<a@x>\t\t1\t1\tXref: h")])
        }
        Request::Over(Span::Id(_)) => Answer::Overview(vec![".0\tweird\r\n".into()]),
        Request::Hdr { .. } => Answer::Headers(vec![(1, "v\r\n.".into()), (2, String::new())]),
        Request::Groups(_) | Request::NewGroups { .. } => Answer::Groups(vec![group()]),
        Request::NewNews { .. } => Answer::Ids(vec!["<a@x>".into()]),
        Request::Date => Answer::Date(1_795_341_600),
        Request::Offer(_) => Answer::Wanted,
        Request::Check(id) => Answer::Reply(Reply::owned(238, id)),
        Request::TakeThis { id, .. } => Answer::Reply(Reply::owned(239, id)),
        Request::Post(_) | Request::Ihave { .. } => Answer::Reply(reply::POSTED),
    }
}

fn well_formed(out: &[u8]) {
    assert!(out.is_empty() || out.ends_with(b"\r\n"), "{:?}", String::from_utf8_lossy(out));
    let text = String::from_utf8_lossy(out);
    let lines: Vec<&str> = text.split("\r\n").collect();
    let lines = &lines[..lines.len().saturating_sub(1)];
    assert!(lines.iter().all(|l| !l.contains(['\r', '\n'])), "a bare CR or LF: {text:?}");
    let mut i = 0;
    while i < lines.len() {
        let b = lines[i].as_bytes();
        assert!(
            b.len() >= 3 && b[..3].iter().all(u8::is_ascii_digit) && (b.len() == 3 || b[3] == b' '),
            "not a status line: {:?} in {text:?}",
            lines[i]
        );
        let code = &lines[i][..3];
        i += 1;
        let listgroup = code == "211" && lines.get(i).is_some_and(|n| *n == "." || *n == "1");
        if listgroup || matches!(code, "100" | "101" | "215" | "220" | "221" | "222" | "224" | "225" | "230" | "231") {
            while lines.get(i).is_some_and(|l| *l != ".") {
                i += 1;
            }
            assert!(i < lines.len(), "an unterminated block: {text:?}");
            i += 1;
        }
    }
}

fn drive(data: &[u8], splits: &[usize], tls: bool, feeder: bool) {
    let settings = Settings {
        hostname: "news.example.test".into(),
        starttls: !tls,
        require_tls: feeder,
        allow_plaintext_auth: !feeder,
        allow_anonymous_posting: feeder,
        max_article: 512,
        max_errors: 10,
    };
    let mut s = ServerSession::new(settings, tls, feeder);
    s.greeting();
    let mut cuts: Vec<usize> = splits.iter().map(|&c| c.min(data.len())).collect();
    cuts.sort_unstable();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut flip = false;
    let mut prev = 0;
    for cut in cuts.into_iter().chain([data.len()]) {
        if s.is_closed() {
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
                Event::Login(c) | Event::Auth(AuthEvent::Credentials(c)) => {
                    s.login_done(if flip { Ok(c.username) } else { Err(reply::AUTH_FAILED) })
                }
                Event::Auth(AuthEvent::Failed(_)) => s.login_done(Err(reply::AUTH_FAILED)),
                Event::Auth(AuthEvent::Start { .. }) => {
                    s.auth_begin(if flip { Ok(()) } else { Err(reply::AUTH_THROTTLED) })
                }
                Event::Request(r) => s.answer(store(r, flip)),
                Event::Quit | Event::TooManyErrors => {}
            }
            s.take_output(&mut out);
        }
        s.take_output(&mut out);
        assert!(buf.len() <= MAX_SASL_LINE + 2 + 8192 + (data.len() - prev).max(1024), "{} buffered", buf.len());
    }
    well_formed(&out);
}

fuzz_target!(|data: &[u8]| {
    let (head, rest) = data.split_at(data.len().min(8));
    let splits: Vec<usize> = head.iter().map(|&b| b as usize * rest.len() / 256).collect();
    for (tls, feeder) in [(false, false), (true, true), (false, true)] {
        drive(rest, &splits, tls, feeder);
    }
});
