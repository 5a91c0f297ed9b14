//! NNTP transcripts run through the core without sockets, against a tiny
//! in-memory "store", and a property test over random and grammar-shaped
//! input split at random points.

use super::*;
use proptest::prelude::*;

fn settings() -> Settings {
    Settings {
        hostname: "news.example.test".into(),
        starttls: true,
        require_tls: false,
        allow_plaintext_auth: false,
        allow_anonymous_posting: false,
        max_article: 4096,
        max_errors: 10,
    }
}

/// Article `n` of misc.test: a dot-led line and a lone dot line in the body.
fn stored(n: u64) -> Vec<u8> {
    format!("Subject: a{n}\r\nMessage-ID: <a{n}@x>\r\n\r\n.dot\r\n.\r\nline {n}\r\n").into_bytes()
}

const NUMBERS: [u64; 3] = [1, 2, 5];

fn misc() -> GroupEntry {
    GroupEntry {
        name: "misc.test".into(),
        count: 3,
        low: 1,
        high: 5,
        posting: 'y',
        description: "Testing".into(),
        created: 1_795_000_000,
    }
}

/// What a working store answers (the password "secret" is right).
fn store(req: Request) -> Answer {
    let nf = |r: Reply| Answer::Reply(r);
    match req {
        Request::Group { name, list } if name == "misc.test" => {
            let (a, b) = list.unwrap_or((0, 0));
            Answer::Group(misc(), NUMBERS.iter().copied().filter(|n| (a..=b).contains(n)).collect())
        }
        Request::Group { .. } => nf(reply::NO_SUCH_GROUP),
        Request::Article { target: Target::Number { number, .. }, .. } if NUMBERS.contains(&number) => {
            Answer::Article { number, id: format!("<a{number}@x>"), article: stored(number) }
        }
        Request::Article { target: Target::Number { .. }, .. } => nf(reply::NO_SUCH_NUMBER),
        Request::Article { target: Target::Id(id), .. } if id == "<a2@x>" => {
            Answer::Article { number: 0, id, article: stored(2) }
        }
        Request::Article { .. } => nf(reply::NO_SUCH_ID),
        Request::Step { from, forward, .. } => {
            let n =
                if forward { NUMBERS.iter().find(|n| **n > from) } else { NUMBERS.iter().rev().find(|n| **n < from) };
            match n {
                Some(&number) => Answer::Moved { number, id: format!("<a{number}@x>") },
                None if forward => nf(reply::NO_NEXT),
                None => nf(reply::NO_PREVIOUS),
            }
        }
        Request::Over(Span::Range { from, to, .. }) => {
            let lines: Vec<String> = NUMBERS
                .iter()
                .filter(|n| (from..=to).contains(*n))
                .map(|n| format!("{n}\ta{n}\t\t\t<a{n}@x>\t\t9\t1\tXref: h misc.test:{n}"))
                .collect();
            if lines.is_empty() {
                nf(reply::NO_ARTICLES_IN_RANGE)
            } else {
                Answer::Overview(lines)
            }
        }
        Request::Over(Span::Id(_)) => nf(reply::NO_SUCH_ID),
        Request::Hdr { span: Span::Range { from, to, .. }, .. } => Answer::Headers(
            NUMBERS.iter().filter(|n| (from..=to).contains(*n)).map(|n| (*n, format!("a{n}"))).collect(),
        ),
        Request::Hdr { .. } => nf(reply::NO_SUCH_ID),
        Request::Groups(w) => Answer::Groups([misc()].into_iter().filter(|g| w.matches(&g.name)).collect()),
        Request::NewGroups { since } => Answer::Groups([misc()].into_iter().filter(|g| g.created >= since).collect()),
        Request::NewNews { .. } => Answer::Ids(vec!["<a1@x>".into()]),
        Request::Date => Answer::Date(1_795_341_600),
        Request::Post(_) => nf(reply::POSTED),
        Request::Offer(id) if id == "<a1@x>" => nf(reply::NOT_WANTED),
        Request::Offer(_) => Answer::Wanted,
        Request::Ihave { .. } => nf(reply::TRANSFERRED),
        Request::Check(id) if id == "<a1@x>" => nf(Reply::owned(438, id)),
        Request::Check(id) => nf(Reply::owned(238, id)),
        Request::TakeThis { id, .. } => nf(Reply::owned(239, id)),
    }
}

/// Feed `chunks`, answering every event the way a working server would;
/// returns the output and the requests seen.
fn run_chunks(s: &mut ServerSession, chunks: &[&[u8]]) -> (String, Vec<Request>) {
    let mut requests = Vec::new();
    let mut buf = BytesMut::new();
    for c in chunks {
        buf.extend_from_slice(c);
        while let Some(ev) = s.feed(&mut buf) {
            match ev {
                Event::StartTls => {
                    // what the driver does: discard the rest, then reset
                    buf.clear();
                    s.tls_started();
                }
                Event::Login(c) | Event::Auth(AuthEvent::Credentials(c)) => {
                    s.login_done(if c.password == "secret" { Ok(c.username) } else { Err(reply::AUTH_FAILED) })
                }
                Event::Auth(AuthEvent::Start { .. }) => s.auth_begin(Ok(())),
                Event::Auth(AuthEvent::Failed(_)) => s.login_done(Err(reply::AUTH_FAILED)),
                Event::Request(r) => {
                    requests.push(r.clone());
                    s.answer(store(r));
                }
                Event::Quit | Event::TooManyErrors => {}
            }
        }
    }
    let mut out = Vec::new();
    s.take_output(&mut out);
    (String::from_utf8(out).unwrap(), requests)
}

fn run(s: &mut ServerSession, input: &str) -> String {
    run_chunks(s, &[input.as_bytes()]).0
}

fn codes(out: &str) -> Vec<&str> {
    out.split("\r\n")
        .filter(|l| {
            l.len() >= 3
                && l.as_bytes()[..3].iter().all(u8::is_ascii_digit)
                && (l.len() == 3 || l.as_bytes()[3] == b' ')
        })
        .map(|l| &l[..3])
        .collect()
}

#[test]
fn capabilities_before_and_after_tls_and_login() {
    let mut s = ServerSession::new(settings(), false, false);
    s.greeting();
    let out = run(&mut s, "CAPABILITIES\r\n");
    assert!(out.starts_with("200 news.example.test"), "{out}");
    assert!(out.contains("101 Capability list:\r\nVERSION 2\r\nREADER\r\n"), "{out}");
    assert!(out.contains("\r\nSTARTTLS\r\n") && !out.contains("AUTHINFO") && !out.contains("IHAVE"), "{out}");
    let out = run(&mut s, "STARTTLS\r\nCAPABILITIES\r\n");
    assert_eq!(out, "382 Continue with TLS negotiation\r\n", "pipelined input after STARTTLS is discarded");
    let out = run(&mut s, "CAPABILITIES\r\n");
    assert!(out.contains("AUTHINFO USER SASL\r\nSASL PLAIN\r\n") && !out.contains("STARTTLS"), "{out}");
    let out =
        run(&mut s, "STARTTLS\r\nAUTHINFO USER alice\r\nAUTHINFO PASS secret\r\nCAPABILITIES\r\nAUTHINFO USER x\r\n");
    assert_eq!(codes(&out), ["502", "381", "281", "101", "502"], "{out}");
    assert!(!out.contains("AUTHINFO USER SASL"), "no AUTHINFO once authenticated: {out}");
    assert_eq!(s.user(), Some("alice"));
}

#[test]
fn feeders_see_ihave_and_streaming() {
    let mut s = ServerSession::new(settings(), true, true);
    let out = run(&mut s, "CAPABILITIES\r\nMODE STREAM\r\nCHECK <a1@x>\r\nCHECK <new@x>\r\n");
    assert!(out.contains("IHAVE\r\nSTREAMING\r\n"), "{out}");
    assert_eq!(codes(&out), ["101", "203", "438", "238"], "{out}");
    let out = run(
        &mut s,
        "TAKETHIS <new@x>\r\nPath: a\r\n\r\n..body\r\n.\r\nIHAVE <a1@x>\r\nIHAVE <b@x>\r\nX: y\r\n\r\nz\r\n.\r\n",
    );
    assert_eq!(codes(&out), ["239", "435", "335", "235"], "{out}");
    let (_, reqs) = run_chunks(&mut s, &[b"TAKETHIS <t@x>\r\nA: b\r\n\r\n.x\r\n.\r\n"]);
    assert_eq!(reqs, [Request::TakeThis { id: "<t@x>".into(), article: b"A: b\r\n\r\nx\r\n".to_vec() }]);

    let mut s = ServerSession::new(settings(), true, false);
    let out =
        run(&mut s, "MODE STREAM\r\nIHAVE <b@x>\r\nCHECK <b@x>\r\nTAKETHIS <b@x>\r\nA: b\r\n\r\nQUIT\r\n.\r\nDATE\r\n");
    assert_eq!(codes(&out), ["502", "502", "502", "502", "111"], "TAKETHIS's article is read and dropped: {out}");
}

#[test]
fn deferred_takethis_outcomes_keep_command_order() {
    let mut s = ServerSession::new(settings(), true, true);
    let big = "x".repeat(5000);
    let input = format!(
        "TAKETHIS <1@x>\r\nA: 1\r\n\r\nb\r\n.\r\ntakethis <2@x>\r\nA: 2\r\n\r\n.\r\n\
         TAKETHIS <3@x>\r\nA: 3\r\n\r\n{big}\r\n.\r\nTAKETHIS <4@x>\r\nA: 4\r\n\r\n.\r\nDATE\r\nTAKETHIS <5@x>\r\n"
    );
    let mut input = BytesMut::from(input.as_bytes());
    let mut ids = Vec::new();
    while let Some(e) = s.feed(&mut input) {
        let Event::Request(Request::TakeThis { id, .. }) = e else { panic!("{e:?}") };
        ids.push(id);
        s.defer();
    }
    assert_eq!(ids, ["<1@x>", "<2@x>", "<4@x>"], "the too-big <3@x> is the core's own 439");
    assert_eq!(s.deferred(), 3);
    let mut out = Vec::new();
    s.take_output(&mut out);
    assert!(out.is_empty(), "nothing before the deferred outcomes: {}", String::from_utf8_lossy(&out));
    assert!(input.starts_with(b"DATE"), "DATE waits for them");
    s.answer_deferred([Reply::owned(239, "<1@x>"), Reply::owned(439, "<2@x> duplicate"), Reply::owned(239, "<4@x>")]);
    assert_eq!(s.deferred(), 0);
    let e = s.feed(&mut input);
    assert_eq!(e, Some(Event::Request(Request::Date)));
    s.answer(Answer::Date(0));
    s.take_output(&mut out);
    let out = String::from_utf8(out).unwrap();
    assert_eq!(codes(&out), ["239", "439", "439", "239", "111"], "{out}");
    assert!(out.contains("439 <3@x> Article too large"), "{out}");
}

#[test]
fn reading_a_group() {
    let mut s = ServerSession::new(settings(), true, false);
    let out =
        run(&mut s, "ARTICLE 1\r\nNEXT\r\nGROUP nope\r\nGROUP misc.test\r\nSTAT\r\nNEXT\r\nNEXT\r\nNEXT\r\nLAST\r\n");
    assert_eq!(codes(&out), ["412", "412", "411", "211", "223", "223", "223", "421", "223"], "{out}");
    assert!(out.contains("211 3 1 5 misc.test\r\n223 1 <a1@x> Article exists\r\n223 2 <a2@x>"), "{out}");
    assert!(out.ends_with("223 2 <a2@x> Article found\r\n"), "{out}");
    let out = run(&mut s, "BODY\r\nHEAD 5\r\nARTICLE <a2@x>\r\nSTAT 3\r\nSTAT <zz@x>\r\nSTAT\r\n");
    assert_eq!(
        out,
        "222 2 <a2@x> Body follows\r\n..dot\r\n..\r\nline 2\r\n.\r\n\
         221 5 <a5@x> Headers follow\r\nSubject: a5\r\nMessage-ID: <a5@x>\r\n.\r\n\
         220 0 <a2@x> Article follows\r\nSubject: a2\r\nMessage-ID: <a2@x>\r\n\r\n..dot\r\n..\r\nline 2\r\n.\r\n\
         423 No article with that number\r\n430 No article with that message-id\r\n\
         223 5 <a5@x> Article exists\r\n",
        "by message-id the current article stays"
    );
    let out = run(
        &mut s,
        "LISTGROUP\r\nLISTGROUP misc.test 2-\r\nOVER\r\nXOVER 2-3\r\nOVER 7-\r\nHDR Subject 1-\r\nXHDR Subject\r\n",
    );
    assert!(
        out.starts_with("211 3 1 5 misc.test\r\n1\r\n2\r\n5\r\n.\r\n211 3 1 5 misc.test\r\n2\r\n5\r\n.\r\n"),
        "{out}"
    );
    assert!(
        out.contains("224 Overview information follows\r\n1\ta1\t"),
        "LISTGROUP set the current article to 1: {out}"
    );
    assert_eq!(codes(&out), ["211", "211", "224", "224", "423", "225", "221"], "{out}");
    assert!(
        out.ends_with(
            "225 Headers follow\r\n1 a1\r\n2 a2\r\n5 a5\r\n.\r\n221 Header information follows\r\n1 a1\r\n.\r\n"
        ),
        "{out}"
    );
}

#[test]
fn lists_dates_and_help() {
    let mut s = ServerSession::new(settings(), false, false);
    let out = run(&mut s, "LIST\r\nLIST ACTIVE nothing.*\r\nLIST NEWSGROUPS\r\nLIST ACTIVE.TIMES\r\nLIST OVERVIEW.FMT\r\nLIST HEADERS\r\n");
    assert_eq!(
        out,
        "215 Information follows\r\nmisc.test 5 1 y\r\n.\r\n215 Information follows\r\n.\r\n\
         215 Descriptions in form \"group description\"\r\nmisc.test\tTesting\r\n.\r\n\
         215 Information follows\r\nmisc.test 1795000000 news@news.example.test\r\n.\r\n\
         215 Order of fields in overview database\r\nSubject:\r\nFrom:\r\nDate:\r\nMessage-ID:\r\nReferences:\r\n:bytes\r\n:lines\r\nXref:full\r\n.\r\n\
         215 Headers and metadata items supported\r\n:\r\n:bytes\r\n:lines\r\n.\r\n"
    );
    let out = run(&mut s, "NEWGROUPS 20260101 000000 GMT\r\nNEWGROUPS 20270101 000000\r\nNEWNEWS * 20260101 000000\r\nDATE\r\nHELP\r\nMODE READER\r\nQUIT\r\nDATE\r\n");
    assert!(out.starts_with("231 List of new newsgroups follows\r\nmisc.test 5 1 y\r\n.\r\n231 List of new newsgroups follows\r\n.\r\n230 List of new articles follows\r\n<a1@x>\r\n.\r\n111 20261122100000\r\n100 "), "{out}");
    assert!(out.ends_with(".\r\n200 Reader mode, posting permitted\r\n205 Bye\r\n"), "nothing after QUIT: {out}");
}

#[test]
fn posting_needs_authentication_unless_anonymous() {
    let mut s = ServerSession::new(settings(), true, false);
    let out = run(&mut s, "POST\r\nAUTHINFO SASL PLAIN AGFsaWNlAHNlY3JldA==\r\nPOST\r\n");
    assert_eq!(out, "480 Authentication required\r\n281 Authentication accepted\r\n340 Send article to be posted\r\n");
    let (out, reqs) = run_chunks(&mut s, &[b"From: a@b\r\n\r\n..x\r", b"\n..\r\n.\r\n"]);
    assert_eq!(out, "240 Article received OK\r\n");
    assert_eq!(reqs, [Request::Post(b"From: a@b\r\n\r\n.x\r\n.\r\n".to_vec())]);

    let mut st = settings();
    st.allow_anonymous_posting = true;
    st.max_article = 10;
    let mut s = ServerSession::new(st, false, false);
    let out = run(&mut s, "POST\r\nFrom: someone@example.test\r\n\r\ntoo long\r\n.\r\nDATE\r\n");
    assert_eq!(codes(&out), ["340", "441", "111"], "over max_article: read, dropped, 441: {out}");
}

#[test]
fn credentials_rules() {
    let mut st = settings();
    st.require_tls = true;
    st.allow_plaintext_auth = true;
    let mut s = ServerSession::new(st, false, false);
    let out = run(&mut s, "AUTHINFO USER alice\r\nAUTHINFO PASS secret\r\nAUTHINFO SASL PLAIN\r\n");
    assert_eq!(codes(&out), ["483", "483", "483"], "{out}");
    let mut st = settings();
    st.allow_plaintext_auth = true;
    let mut s = ServerSession::new(st, false, false);
    let out = run(&mut s, "AUTHINFO PASS x\r\nAUTHINFO SASL LOGIN\r\nAUTHINFO SASL PLAIN\r\n*\r\nAUTHINFO SASL PLAIN\r\n!!\r\nAUTHINFO USER a\r\nAUTHINFO PASS wrong\r\nAUTHINFO SASL PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\n");
    assert_eq!(codes(&out), ["482", "503", "383", "481", "383", "504", "381", "481", "383", "281"], "{out}");
}

#[test]
fn every_split_gives_the_same_transcript() {
    let input = "GROUP misc.test\r\nARTICLE 2\r\nPOST\r\nMODE READER\r\nAUTHINFO USER a\r\nAUTHINFO PASS secret\r\nPOST\r\nA: b\r\n\r\n..x\r\n.\r\nOVER 1-2\r\nQUIT\r\n";
    let whole = run(&mut ServerSession::new(settings(), true, false), input);
    for cut in 0..=input.len() {
        let mut s = ServerSession::new(settings(), true, false);
        let (out, _) = run_chunks(&mut s, &[&input.as_bytes()[..cut], &input.as_bytes()[cut..]]);
        assert_eq!(out, whole, "split at {cut}");
    }
}

#[test]
fn long_lines_unknown_commands_and_the_error_limit() {
    let mut s = ServerSession::new(settings(), false, false);
    let long = format!("GROUP {}\r\n", "x".repeat(20_000));
    let out = run(&mut s, &format!("{long}FROB\r\nGROUP\r\n"));
    assert_eq!(codes(&out), ["501", "500", "501"], "{out}");
    let out = run(&mut s, &"FROB\r\n".repeat(10));
    assert!(out.ends_with("400 Too many errors, closing connection\r\n"), "{out}");
    assert!(s.is_closed());
}

/// Every response is a status line (3 digits, then a space or the end);
/// those that carry a block are followed by lines ending in `.`; only
/// CRLF line ends.
fn well_formed(out: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(out);
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        return Err("output does not end with CRLF".into());
    }
    let lines: Vec<&str> = text.split("\r\n").collect();
    let lines = &lines[..lines.len().saturating_sub(1)];
    if lines.iter().any(|l| l.contains(['\r', '\n'])) {
        return Err("a bare CR or LF".into());
    }
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        let b = l.as_bytes();
        if b.len() < 3 || !b[..3].iter().all(u8::is_ascii_digit) || (b.len() > 3 && b[3] != b' ') {
            return Err(format!("not a status line: {l:?}"));
        }
        let code = &l[..3];
        i += 1;
        let next_is_block = |i: usize| {
            lines.get(i).is_some_and(|n| *n == "." || (n.len() < 3 && n.bytes().all(|c| c.is_ascii_digit())))
        };
        let multi = matches!(code, "100" | "101" | "215" | "220" | "221" | "222" | "224" | "225" | "230" | "231")
            || (code == "211" && next_is_block(i));
        if multi {
            loop {
                match lines.get(i) {
                    None => return Err(format!("block after {l:?} is not terminated")),
                    Some(&".") => break,
                    Some(_) => i += 1,
                }
            }
            i += 1;
        }
    }
    Ok(())
}

fn grammar_line() -> impl Strategy<Value = Vec<u8>> {
    let verbs = prop::sample::select(vec![
        "CAPABILITIES",
        "MODE READER",
        "MODE STREAM",
        "LIST",
        "LIST ACTIVE misc.*",
        "LIST NEWSGROUPS",
        "LIST OVERVIEW.FMT",
        "LIST HEADERS",
        "LIST ACTIVE.TIMES",
        "GROUP misc.test",
        "GROUP nope",
        "LISTGROUP",
        "LISTGROUP misc.test 1-3",
        "ARTICLE",
        "ARTICLE 1",
        "ARTICLE <a2@x>",
        "HEAD 2",
        "BODY 5",
        "STAT",
        "NEXT",
        "LAST",
        "OVER",
        "OVER 1-",
        "XOVER 2-3",
        "OVER <a1@x>",
        "HDR Subject",
        "HDR Subject 1-",
        "XHDR From <a2@x>",
        "NEWGROUPS 20260101 000000",
        "NEWNEWS * 260101 000000 GMT",
        "POST",
        "IHAVE <n@x>",
        "IHAVE <a1@x>",
        "CHECK <n@x>",
        "TAKETHIS <n@x>",
        "TAKETHIS x",
        "DATE",
        "HELP",
        "QUIT",
        "STARTTLS",
        "AUTHINFO USER alice",
        "AUTHINFO PASS secret",
        "AUTHINFO PASS wrong",
        "AUTHINFO SASL PLAIN",
        "AUTHINFO SASL PLAIN AGFsaWNlAHNlY3JldA==",
        "*",
        "=",
        "AGFsaWNlAHNlY3JldA==",
        ".",
        "..",
        "Subject: x",
        "",
        "FROB",
    ]);
    let ends = prop::sample::select(vec!["\r\n", "\n", "\r", " \r\n", ""]);
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

/// Drive sessions (plaintext and TLS, feeder or not) over arbitrary input
/// split at arbitrary points, answering with the toy store or, every other
/// time, a refusal; the output stays well formed and the buffer bounded.
fn fuzz_once(data: &[u8], splits: &[usize]) {
    for (tls, feeder, plaintext) in [(false, false, false), (false, true, true), (true, true, false)] {
        let mut st = settings();
        st.allow_plaintext_auth = plaintext;
        st.allow_anonymous_posting = feeder;
        st.max_errors = 25;
        let mut s = ServerSession::new(st, tls, feeder);
        s.greeting();
        let mut cuts: Vec<usize> = splits.iter().map(|&c| c.min(data.len())).collect();
        cuts.sort_unstable();
        let mut prev = 0;
        let mut buf = BytesMut::new();
        let mut flip = false;
        for cut in cuts.into_iter().chain([data.len()]) {
            buf.extend_from_slice(&data[prev..cut]);
            prev = cut;
            loop {
                let Some(ev) = s.feed(&mut buf) else {
                    // what the service does when the core stops: answer what it deferred
                    if s.deferred() == 0 {
                        break;
                    }
                    let n = s.deferred();
                    s.answer_deferred((0..n).map(|i| Reply::owned(if i % 2 == 0 { 239 } else { 439 }, "<x@y>")));
                    continue;
                };
                flip = !flip;
                match ev {
                    Event::StartTls => {
                        buf.clear();
                        s.tls_started();
                    }
                    // every other TAKETHIS is deferred, as the service does in a run
                    Event::Request(Request::TakeThis { .. }) if flip => s.defer(),
                    Event::Login(c) | Event::Auth(AuthEvent::Credentials(c)) => {
                        s.login_done(if flip { Ok(c.username) } else { Err(reply::AUTH_FAILED) })
                    }
                    Event::Auth(AuthEvent::Failed(_)) => s.login_done(Err(reply::AUTH_FAILED)),
                    Event::Auth(AuthEvent::Start { .. }) => {
                        s.auth_begin(if flip { Ok(()) } else { Err(reply::AUTH_THROTTLED) })
                    }
                    Event::Request(r) => s.answer(if flip { store(r) } else { Answer::Reply(reply::STORE_FAILED) }),
                    Event::Quit | Event::TooManyErrors => {}
                }
            }
            assert!(buf.len() <= session::MAX_SASL_LINE + 2048 + 8192);
        }
        let mut out = Vec::new();
        s.take_output(&mut out);
        if let Err(e) = well_formed(&out) {
            panic!("{e}: {:?}", String::from_utf8_lossy(&out));
        }
    }
}

#[test]
fn more_is_expected_mid_article_and_mid_line_only() {
    let mut s = ServerSession::new(settings(), true, true);
    let mut input = BytesMut::from(&b"TAKETHIS <1@x>\r\nA: 1\r\n\r\nb\r\n.\r\nTAKETHIS <2@x>\r\nA: 2\r\n"[..]);
    assert!(matches!(s.feed(&mut input), Some(Event::Request(Request::TakeThis { .. }))));
    s.defer();
    assert_eq!(s.feed(&mut input), None);
    assert!(s.expects_more(&input), "in the middle of <2@x>");
    input.extend_from_slice(b"\r\nb\r\n.\r\nTAKE");
    assert!(matches!(s.feed(&mut input), Some(Event::Request(Request::TakeThis { .. }))));
    s.defer();
    assert_eq!(s.feed(&mut input), None);
    assert!(s.expects_more(&input), "a partial line");
    input.extend_from_slice(b"\r\nCHECK <3@x>\r\n");
    assert_eq!(s.feed(&mut input), None);
    assert!(!s.expects_more(&input), "a whole other command: the peer may be waiting");
    s.abandon_deferred();
    assert_eq!(s.deferred(), 0);
}
