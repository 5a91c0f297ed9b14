//! SEARCH tests: every key of RFC 3501 §6.4.4 and MODSEQ at least once over
//! three messages (the multipart one with RFC 2047 headers, base64 and
//! quoted-printable parts; a plain one; a Latin-1 quoted-printable one),
//! OR/NOT nesting, sequence and UID sets at and past the end, what is read
//! (cheap keys first, each message once), and a real mailbox store.

use super::*;
use crate::imap::fetch::tests::{info, store, Fake, MULTI, PLAIN, USER};
use crate::imap::fetch::StoreSource;
use crate::proto::imap::command::{self, CommandKind};

/// Latin-1 quoted-printable body, a raw UTF-8 From, a Bcc, no Date.
const LATIN: &str = "From: =?utf-8?q?Zo=C3=AB?= <zoe@example.test>\r\n\
Bcc: secret@example.test\r\n\
Subject: Menu\r\n\
Content-Type: text/plain; charset=iso-8859-1\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
Caf=E9 cr=E8me br=FBl=E9e\r\n";

fn folder() -> (Fake, Vec<MessageInfo>) {
    let src = Fake::new(&[(3, MULTI), (5, PLAIN), (9, LATIN)]);
    let mut m1 = info(3, MULTI.len(), &[Flag::Seen, Flag::Answered]);
    let mut m2 = info(5, PLAIN.len(), &[Flag::Flagged, Flag::Draft, Flag::Keyword("$Junk".into())]);
    let mut m3 = info(9, LATIN.len(), &[Flag::Deleted, Flag::Seen]);
    m2.internal_date = 1_700_050_000; // 15-Nov-2023 12:06:40 UTC
    m3.internal_date = 1_700_100_000; // 16-Nov-2023 02:00:00 UTC
    (m1.modseq, m2.modseq, m3.modseq) = (5, 7, 9);
    (src, vec![m1, m2, m3])
}

/// The key of `SEARCH <q>` (several criteria ANDed).
fn key(q: &str) -> SearchKey {
    match command::parse(format!("a SEARCH {q}").as_bytes()).map(|c| c.kind) {
        Ok(CommandKind::Search { mut criteria, .. }) if criteria.len() == 1 => criteria.remove(0),
        Ok(CommandKind::Search { criteria, .. }) => SearchKey::And(criteria),
        other => panic!("{q}: {other:?}"),
    }
}

const RECENT: &[u32] = &[9, 5];

fn run(src: &mut dyn Source, msgs: &[MessageInfo], q: &str, tz_offset: i32) -> Vec<usize> {
    let found = search(&key(q), msgs, Context { recent: RECENT, tz_offset }, src).unwrap();
    found.into_iter().map(|i| i + 1).collect()
}

#[test]
fn imap_search_every_key() {
    let (mut src, msgs) = folder();
    let (small, big) = (PLAIN.len().min(LATIN.len()), PLAIN.len().max(LATIN.len()));
    let smaller_one = if PLAIN.len() < LATIN.len() { 2 } else { 3 };
    let cases: Vec<(String, Vec<usize>)> = vec![
        ("ALL".into(), vec![1, 2, 3]),
        ("ANSWERED".into(), vec![1]),
        ("UNANSWERED".into(), vec![2, 3]),
        ("DELETED".into(), vec![3]),
        ("UNDELETED".into(), vec![1, 2]),
        ("DRAFT".into(), vec![2]),
        ("UNDRAFT".into(), vec![1, 3]),
        ("FLAGGED".into(), vec![2]),
        ("UNFLAGGED".into(), vec![1, 3]),
        ("SEEN".into(), vec![1, 3]),
        ("UNSEEN".into(), vec![2]),
        ("KEYWORD $junk".into(), vec![2]),
        ("UNKEYWORD $Junk".into(), vec![1, 3]),
        ("KEYWORD $Other".into(), vec![]),
        ("RECENT".into(), vec![2, 3]),
        ("NEW".into(), vec![2]),
        ("OLD".into(), vec![1]),
        (format!("LARGER {small}"), vec![1, 5 - smaller_one]),
        (format!("SMALLER {big}"), vec![smaller_one]),
        (format!("LARGER {}", MULTI.len()), vec![]),
        ("BEFORE 15-Nov-2023".into(), vec![1]),
        ("ON 14-Nov-2023".into(), vec![1]),
        ("SINCE 15-Nov-2023".into(), vec![2, 3]),
        ("SENTBEFORE 1-Jan-2024".into(), vec![2]),
        ("SENTON 5-Mar-2024".into(), vec![1]),
        ("SENTON 6-Mar-2024".into(), vec![]),
        ("SENTSINCE 1-Feb-2023".into(), vec![1, 2]),
        ("SENTSINCE 2-Feb-2023".into(), vec![1]),
        ("FROM \"müller\"".into(), vec![1]),
        ("FROM \"JÖRG M\"".into(), vec![1]),
        ("FROM joerg@example".into(), vec![1]),
        ("FROM \"ZOË\"".into(), vec![3]),
        ("TO bob@".into(), vec![1]),
        ("TO alice".into(), vec![1]),
        ("CC carol".into(), vec![1]),
        ("BCC secret".into(), vec![3]),
        ("SUBJECT \"grüße\"".into(), vec![1]),
        ("SUBJECT \"KÖLN\"".into(), vec![1]),
        ("SUBJECT \"\"".into(), vec![1, 2, 3]),
        ("HEADER X-Mood \"GLÜCK\"".into(), vec![1]),
        ("HEADER x-spam \"\"".into(), vec![2]),
        ("HEADER X-Spam no".into(), vec![]),
        ("HEADER Message-ID m1@".into(), vec![1]),
        ("HEADER From \"zoë\"".into(), vec![3]),
        ("BODY \"schöne\"".into(), vec![1]),
        ("BODY \"ÜBERRASCHUNG\"".into(), vec![1]),
        ("BODY \"café crème\"".into(), vec![3]),
        ("BODY hello".into(), vec![2]),
        ("BODY \"enclosed words\"".into(), vec![1]),
        ("BODY x-spam".into(), vec![]),
        ("TEXT x-spam".into(), vec![2]),
        ("TEXT rhein".into(), vec![1]),
        ("TEXT alice@example".into(), vec![1]),
        ("TEXT \"brûlée\"".into(), vec![3]),
        ("UID 5:*".into(), vec![2, 3]),
        ("UID *".into(), vec![3]),
        ("UID 100:*".into(), vec![3]),
        ("UID 4,6:8".into(), vec![]),
        ("UID 1:3,9".into(), vec![1, 3]),
        ("2:*".into(), vec![2, 3]),
        ("*".into(), vec![3]),
        ("5:7".into(), vec![]),
        ("1,3".into(), vec![1, 3]),
        ("3:1".into(), vec![1, 2, 3]),
        ("MODSEQ 7".into(), vec![2, 3]),
        ("MODSEQ \"/flags/\\\\seen\" all 9".into(), vec![3]),
        ("OR SEEN FLAGGED".into(), vec![1, 2, 3]),
        ("NOT (SEEN DELETED)".into(), vec![1, 2]),
        ("OR (FROM \"müller\" NOT ANSWERED) BODY \"café\"".into(), vec![3]),
        ("NOT OR 1 BODY hello".into(), vec![3]),
        ("OR NOT OR 1 2 (UID 3 TEXT \"köln\")".into(), vec![1, 3]),
        ("UNSEEN NOT NOT (KEYWORD $junk OR HEADER X-Spam yes 1)".into(), vec![2]),
        ("SEEN SUBJECT menu BODY \"crème\" UID 9 1:*".into(), vec![3]),
    ];
    for (q, want) in cases {
        assert_eq!(run(&mut src, &msgs, &q, 0), want, "SEARCH {q}");
    }
}

#[test]
fn imap_search_internal_dates_in_the_server_zone() {
    let (mut src, msgs) = folder();
    // 14-Nov-2023 22:13:20 UTC is the 15th two hours east, the 14th west
    assert_eq!(run(&mut src, &msgs, "ON 15-Nov-2023", 7200), vec![1, 2]);
    assert_eq!(run(&mut src, &msgs, "ON 14-Nov-2023", -7200), vec![1]);
    assert_eq!(run(&mut src, &msgs, "ON 15-Nov-2023", -10800), vec![2, 3], "16-Nov 02:00 UTC is the 15th at -3");
    assert_eq!(run(&mut src, &msgs, "BEFORE 15-Nov-2023", 7200), Vec::<usize>::new());
}

#[test]
fn imap_search_reads_cheap_keys_first_and_each_message_once() {
    let (mut src, msgs) = folder();
    run(&mut src, &msgs, "ALL SEEN UNDELETED OR FLAGGED 1:2 UID 1:* MODSEQ 1 LARGER 1 SINCE 1-Jan-2000", 0);
    assert_eq!((src.bytes_reads, src.parse_reads), (0, 0), "the listing answers these");

    let (mut src, msgs) = folder();
    assert_eq!(run(&mut src, &msgs, "BODY \"café\" SEEN", 0), vec![3]);
    assert_eq!(src.bytes_reads, 2, "only the two seen messages are read");

    let (mut src, msgs) = folder();
    assert_eq!(run(&mut src, &msgs, "OR BODY hello FLAGGED", 0), vec![2]);
    assert_eq!(src.bytes_reads, 2, "the flagged one is found without its bytes");

    let (mut src, msgs) = folder();
    assert_eq!(run(&mut src, &msgs, "FROM \"müller\" SUBJECT \"köln\" SENTSINCE 1-Jan-2020 SUBJECT \"\"", 0), vec![1]);
    assert_eq!((src.bytes_reads, src.parse_reads), (0, 3), "one parse per message");

    let (mut src, msgs) = folder();
    assert_eq!(run(&mut src, &msgs, "NOT BODY zzz TEXT e HEADER Subject \"\" OR TEXT q BODY e", 0), vec![1, 2, 3]);
    assert_eq!(src.bytes_reads, 3, "one read per message");
}

#[test]
fn imap_search_edges_never_panic() {
    let mut src = Fake::new(&[]);
    for q in ["*", "UID *", "1:*", "UID 1:*", "NOT *", "4294967295", "UID 4294967295:*", "BODY x", "ALL"] {
        assert_eq!(run(&mut src, &[], q, 0), Vec::<usize>::new(), "{q} on an empty folder");
    }
    let (mut src, msgs) = folder();
    assert_eq!(run(&mut src, &msgs, "100:200", 0), Vec::<usize>::new());
    assert_eq!(run(&mut src, &msgs, "4294967295:*", 0), vec![3], "n:* covers the last message");
    assert_eq!(run(&mut src, &msgs, "UID 4294967295", 0), Vec::<usize>::new());
    assert_eq!(run(&mut src, &msgs, "SEEN", i32::MAX), vec![1, 3]);
    assert_eq!(run(&mut src, &msgs, "ON 1-Jan-1970", i32::MIN), Vec::<usize>::new());

    // a message expunged by another session meanwhile is no match
    let mut gone = Fake::new(&[(3, MULTI)]);
    assert_eq!(run(&mut gone, &msgs, "BODY e", 0), vec![1]);
    assert_eq!(run(&mut gone, &msgs, "ALL", 0), vec![1, 2, 3]);
    // any other store error ends the search
    let mut broken = Fake { broken: true, ..Fake::new(&[(3, MULTI)]) };
    assert!(search(&key("BODY e"), &msgs, Context { recent: &[], tz_offset: 0 }, &mut broken).is_err());
    assert!(search(&key("SEEN"), &msgs, Context { recent: &[], tz_offset: 0 }, &mut broken).is_ok());

    // bodies and headers that are not mail at all
    let mut junk =
        Fake::new(&[(1, ""), (2, "\r\n\r\n"), (3, "no header\nat all"), (4, "X: =?utf-8?b?////?=\r\n\r\n\u{1}")]);
    let m: Vec<MessageInfo> = (1..=4).map(|u| info(u, 1, &[])).collect();
    for q in ["BODY a", "TEXT a", "HEADER X \"\"", "FROM a", "SENTON 1-Jan-2000", "SUBJECT \"\""] {
        let _ = run(&mut junk, &m, q, 0);
    }
    assert_eq!(run(&mut junk, &m, "HEADER X \"\"", 0), vec![4]);
}

#[test]
fn imap_search_uses_modseq() {
    assert!(uses_modseq(&key("OR SEEN NOT (UID 1 MODSEQ 5)")));
    assert!(!uses_modseq(&key("OR SEEN NOT (UID 1 BODY x)")));
}

#[test]
fn imap_search_over_the_mailbox_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    for m in [MULTI, PLAIN, LATIN] {
        store.deliver(USER, m.as_bytes(), 1_700_000_000).unwrap();
    }
    let listing = store.messages(USER, "INBOX").unwrap();
    let mut src = StoreSource::new(&store, USER, "INBOX");
    let msgs = &listing.messages;
    assert_eq!(run(&mut src, msgs, "BODY \"überraschung\"", 0), vec![1]);
    assert_eq!(run(&mut src, msgs, "HEADER X-Mood \"glück\"", 0), vec![1]);
    assert_eq!(run(&mut src, msgs, "OR SUBJECT menu FROM a@b.c", 0), vec![2, 3]);
    assert_eq!(run(&mut src, msgs, "TEXT \"brûlée\" NOT SEEN UID 1:*", 0), vec![3]);
    assert_eq!(run(&mut src, msgs, "SENTON 5-Mar-2024", 0), vec![1]);
}
