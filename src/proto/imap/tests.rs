//! Tests across the IMAP modules: the reader fed in pieces (literals split
//! across feeds, continuations, refusals and bounds), the writer's encodings
//! read back by the grammar, and a property test over random and
//! grammar-shaped input.

use super::command::{cursor, BadCommand, CommandError, CommandKind};
use super::reader::{CommandReader, Event, Limits};
use super::response::{self, *};
use super::types::*;
use crate::proto::literal::{LiteralError, Mode};
use bytes::BytesMut;
use proptest::prelude::*;

fn limits() -> Limits {
    Limits { max_line: 200, max_literal: 100, max_append_literal: 1000, max_literals: 3 }
}

/// Feed `chunks` one after another, collecting events; continuations are
/// recorded as `Event::Continue`.
fn run(r: &mut CommandReader, chunks: &[&[u8]]) -> Vec<Event> {
    let mut input = BytesMut::new();
    let mut events = Vec::new();
    for c in chunks {
        input.extend_from_slice(c);
        while let Some(e) = r.next(&mut input) {
            events.push(e);
        }
    }
    events
}

fn kinds(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            Event::Continue => "+".to_string(),
            Event::Command(c) => format!("{} {:?}", c.tag, c.kind).chars().take(40).collect(),
            Event::Bad(b) => String::from_utf8_lossy(&b.line()).trim_end().to_string(),
        })
        .collect()
}

#[test]
fn imap_reader_sync_literal_asks_and_every_split_agrees() {
    let wire: &[u8] = b"a1 LOGIN {5}\r\nalice {2}\r\npw\r\na2 NOOP\r\n";
    let mut whole = CommandReader::new(limits(), Mode::Plus);
    let expected = run(&mut whole, &[wire]);
    assert_eq!(expected.iter().filter(|e| **e == Event::Continue).count(), 2);
    assert!(
        matches!(&expected[2], Event::Command(c) if matches!(&c.kind, CommandKind::Login(cr) if cr.username == "alice" && cr.password == "pw"))
    );
    assert!(matches!(&expected[3], Event::Command(c) if c.tag == "a2"));
    for cut in 0..=wire.len() {
        let mut r = CommandReader::new(limits(), Mode::Plus);
        assert_eq!(run(&mut r, &[&wire[..cut], &wire[cut..]]), expected, "split at {cut}");
        assert!(r.is_idle());
    }
    let mut r = CommandReader::new(limits(), Mode::Plus);
    let bytes: Vec<&[u8]> = wire.chunks(1).collect();
    assert_eq!(run(&mut r, &bytes), expected, "one octet at a time");
}

#[test]
fn imap_reader_non_sync_literal_needs_no_continuation() {
    let mut r = CommandReader::new(limits(), Mode::Plus);
    let ev = run(&mut r, &[b"a1 APPEND INBOX {5+}\r\nhel", b"lo\r\n"]);
    assert_eq!(ev.len(), 1, "{:?}", kinds(&ev));
    assert!(
        matches!(&ev[0], Event::Command(c) if matches!(&c.kind, CommandKind::Append { message, .. } if message == b"hello"))
    );
}

#[test]
fn imap_reader_bounds() {
    // a synchronising literal over the limit: refused at once, no continuation
    let mut r = CommandReader::new(limits(), Mode::Plus);
    let ev = run(&mut r, &[b"a1 LOGIN {101}\r\n", b"a2 NOOP\r\n"]);
    assert_eq!(kinds(&ev), ["a1 BAD the literal of 101 octets exceeds the limit of 100", "a2 Noop"]);
    // APPEND gets the larger limit
    let mut r = CommandReader::new(limits(), Mode::Plus);
    assert_eq!(run(&mut r, &[b"a1 APPEND x {500}\r\n"]), vec![Event::Continue]);
    // a non-synchronising literal over the limit is consumed unkept, then BAD
    let mut r = CommandReader::new(limits(), Mode::Plus);
    let big = [b'x'; 150];
    let ev = run(&mut r, &[b"a1 LOGIN {150+}\r\n", &big[..70], &big[70..], b" pw {3+}\r\nabc\r\na2 NOOP\r\n"]);
    assert_eq!(kinds(&ev), ["a1 BAD the literal of 150 octets exceeds the limit of 100", "a2 Noop"]);
    assert!(r.buffered() == 0);
    // the literal sum counts, not each literal
    let mut r = CommandReader::new(limits(), Mode::Plus);
    let ev = run(&mut r, &[b"a1 LOGIN {60+}\r\n", &[b'a'; 60], b" {60}\r\n", b"a2 NOOP\r\n"]);
    assert_eq!(kinds(&ev), ["a1 BAD the literal of 60 octets exceeds the limit of 40", "a2 Noop"]);
    // LITERAL-: a non-synchronising literal over 4096 is refused
    let lim = Limits { max_literal: 10_000, ..limits() };
    let mut r = CommandReader::new(lim, Mode::Minus);
    let ev = run(&mut r, &[b"a1 LOGIN {5000+}\r\n", &[b'a'; 5000], b" x\r\n"]);
    assert_eq!(
        ev,
        vec![Event::Bad(BadCommand {
            tag: Some("a1".into()),
            error: LiteralError::NonSyncTooBig { size: 5000 }.into()
        })]
    );
    // too many literals
    let mut r = CommandReader::new(limits(), Mode::Plus);
    let ev = run(&mut r, &[b"a1 SEARCH TEXT {1+}\r\na TEXT {1+}\r\nb TEXT {1+}\r\nc TEXT {1+}\r\nd\r\na2 NOOP\r\n"]);
    assert_eq!(kinds(&ev), ["a1 BAD The command has too many literals", "a2 Noop"]);
    // an overlong line: discarded as it arrives, BAD once it ends
    let mut r = CommandReader::new(limits(), Mode::Plus);
    let mut input = BytesMut::from(&[b'a'; 500][..]);
    assert_eq!(r.next(&mut input), None);
    assert!(input.is_empty() && r.buffered() == 0);
    input.extend_from_slice(b"aaa\r\na2 NOOP\r\n");
    assert_eq!(r.next(&mut input), Some(Event::Bad(BadCommand { tag: None, error: CommandError::LineTooLong })));
    assert!(matches!(r.next(&mut input), Some(Event::Command(c)) if c.tag == "a2"));
    // the text of all lines of a command counts against max_line, and the tag is kept
    let mut r = CommandReader::new(limits(), Mode::Plus);
    let long = format!("a1 LOGIN {{1+}}\r\nx {}\r\n", "y".repeat(190));
    assert_eq!(kinds(&run(&mut r, &[long.as_bytes()])), ["a1 BAD The command line is too long"]);
}

#[test]
fn imap_reader_plain_lines_and_reset() {
    let mut r = CommandReader::new(limits(), Mode::Plus);
    let mut input = BytesMut::from(&b"a1 LOGIN {5}\r\nal"[..]);
    assert_eq!(r.next(&mut input), Some(Event::Continue));
    assert_eq!(r.next(&mut input), None);
    assert!(!r.is_idle());
    r.reset();
    assert!(r.is_idle());
    let mut input = BytesMut::from(&b"DONE\r\n"[..]);
    assert_eq!(r.next_line(&mut input), Some(Ok(BytesMut::from(&b"DONE"[..]))));
}

fn quoted_back(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    response::astring(&mut out, s);
    let mut c = cursor(&out);
    let back = c.astring("x").unwrap();
    assert_eq!(c.pos, out.len(), "{:?}", String::from_utf8_lossy(&out));
    back
}

#[test]
fn imap_writer_string_choices_round_trip() {
    let enc = |f: fn(&mut Vec<u8>, &[u8]), s: &[u8]| {
        let mut out = Vec::new();
        f(&mut out, s);
        out
    };
    assert_eq!(enc(response::astring, b"INBOX"), b"INBOX");
    assert_eq!(enc(response::astring, b"nil"), b"\"nil\"");
    assert_eq!(enc(response::astring, b""), b"\"\"");
    assert_eq!(enc(response::astring, b"a b"), b"\"a b\"");
    assert_eq!(enc(response::string, b"a\"b"), b"{3}\r\na\"b");
    assert_eq!(enc(response::string, b"a\\b"), b"{3}\r\na\\b");
    assert_eq!(enc(response::string, b"x\r\ny"), b"{4}\r\nx\r\ny");
    assert_eq!(enc(response::string, "é".as_bytes()), b"{2}\r\n\xc3\xa9");
    let mut out = Vec::new();
    response::nstring(&mut out, None);
    assert_eq!(out, b"NIL");
    for s in [&b"plain"[..], b"", b"NIL", b"a\"b\\c", b"\r\n", b"\xff\x00x", b"(x)", b"{5}", b"a]b"] {
        assert_eq!(quoted_back(s), s);
    }
}

#[test]
fn imap_writer_status_lines_and_codes() {
    let line = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    };
    assert_eq!(line(&|o| tagged(o, "a1", Status::Ok, None, "NOOP done")), "a1 OK NOOP done\r\n");
    assert_eq!(
        line(&|o| tagged(o, "a1", Status::No, Some(&Code::TryCreate), "no such\r\nmailbox")),
        "a1 NO [TRYCREATE] no suchmailbox\r\n"
    );
    assert_eq!(line(&|o| tagged(o, "a1", Status::Ok, Some(&Code::ReadWrite), "")), "a1 OK [READ-WRITE] done\r\n");
    assert_eq!(line(&|o| untagged(o, Status::Ok, None, "[x] y")), "* OK - [x] y\r\n");
    assert_eq!(line(&|o| untagged(o, Status::Bye, None, "shutting down")), "* BYE shutting down\r\n");
    assert_eq!(line(&|o| continuation(o, "Ready")), "+ Ready\r\n");
    let caps = vec!["IMAP4rev1".to_string(), "LITERAL+".into(), "bad cap".into(), "AUTH=PLAIN".into()];
    let perm =
        vec![Flag::Seen, Flag::Deleted, Flag::Keyword("$Junk".into()), Flag::Wildcard, Flag::Keyword("bad(".into())];
    let cases: Vec<(Code, &str)> = vec![
        (Code::Alert, "[ALERT]"),
        (Code::Capability(caps.clone()), "[CAPABILITY IMAP4rev1 LITERAL+ AUTH=PLAIN]"),
        (Code::UidValidity(3857529045), "[UIDVALIDITY 3857529045]"),
        (Code::UidNext(4392), "[UIDNEXT 4392]"),
        (Code::PermanentFlags(perm), "[PERMANENTFLAGS (\\Seen \\Deleted $Junk \\*)]"),
        (Code::ReadOnly, "[READ-ONLY]"),
        (Code::AppendUid { validity: 38505, uid: 3955 }, "[APPENDUID 38505 3955]"),
        (
            Code::CopyUid {
                validity: 38505,
                source: SequenceSet::from_ids(&[304, 319, 320]),
                dest: SequenceSet::from_ids(&[3956, 3957, 3958]),
            },
            "[COPYUID 38505 304,319:320 3956:3958]",
        ),
        (Code::HighestModSeq(715194045007), "[HIGHESTMODSEQ 715194045007]"),
        (Code::Modified(SequenceSet::from_ids(&[7, 9])), "[MODIFIED 7,9]"),
        (Code::Nonexistent, "[NONEXISTENT]"),
        (Code::AlreadyExists, "[ALREADYEXISTS]"),
        (Code::AuthenticationFailed, "[AUTHENTICATIONFAILED]"),
        (Code::Unavailable, "[UNAVAILABLE]"),
        (Code::InUse, "[INUSE]"),
        (Code::PrivacyRequired, "[PRIVACYREQUIRED]"),
        (Code::BadCharset(vec!["UTF-8".into(), "US-ASCII".into()]), "[BADCHARSET (UTF-8 US-ASCII)]"),
        (Code::NoModSeq, "[NOMODSEQ]"),
    ];
    for (code, text) in cases {
        assert_eq!(line(&|o| tagged(o, "t", Status::Ok, Some(&code), "x")), format!("t OK {text} x\r\n"));
    }
}

#[test]
fn imap_writer_untagged_data() {
    let d = |data: Data<'_>| {
        let mut out = Vec::new();
        response::data(&mut out, &data);
        String::from_utf8(out).unwrap()
    };
    assert_eq!(d(Data::Exists(23)), "* 23 EXISTS\r\n");
    assert_eq!(d(Data::Recent(1)), "* 1 RECENT\r\n");
    assert_eq!(d(Data::Expunge(3)), "* 3 EXPUNGE\r\n");
    assert_eq!(d(Data::Flags(&[Flag::Answered, Flag::Flagged])), "* FLAGS (\\Answered \\Flagged)\r\n");
    assert_eq!(d(Data::Capability(&["IMAP4rev1".into(), "IDLE".into()])), "* CAPABILITY IMAP4rev1 IDLE\r\n");
    assert_eq!(d(Data::Enabled(&["CONDSTORE".into()])), "* ENABLED CONDSTORE\r\n");
    let attrs = ["\\HasNoChildren".to_string(), "\\Sent".into()];
    assert_eq!(
        d(Data::List { lsub: false, attributes: &attrs, delimiter: Some('/'), mailbox: "Sent Items" }),
        "* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent Items\"\r\n"
    );
    assert_eq!(
        d(Data::List { lsub: true, attributes: &[], delimiter: None, mailbox: "INBOX" }),
        "* LSUB () NIL INBOX\r\n"
    );
    assert_eq!(
        d(Data::Status { mailbox: "INBOX", items: &[(StatusItem::Messages, 17), (StatusItem::HighestModSeq, 9)] }),
        "* STATUS INBOX (MESSAGES 17 HIGHESTMODSEQ 9)\r\n"
    );
    assert_eq!(d(Data::Search { ids: &[2, 84, 882], modseq: None }), "* SEARCH 2 84 882\r\n");
    assert_eq!(d(Data::Search { ids: &[], modseq: None }), "* SEARCH\r\n");
    assert_eq!(d(Data::Search { ids: &[5], modseq: Some(917162500) }), "* SEARCH 5 (MODSEQ 917162500)\r\n");
    assert_eq!(d(Data::Namespace { prefix: "", delimiter: Some('/') }), "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n");
    assert_eq!(d(Data::Id(Some(&[("name".into(), "Postern".into())]))), "* ID (\"name\" \"Postern\")\r\n");
    assert_eq!(d(Data::Id(None)), "* ID NIL\r\n");
}

fn mp_message() -> (Envelope, BodyStructure) {
    let env = Envelope {
        date: Some(b"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)".to_vec()),
        subject: Some(b"=?UTF-8?B?R3LDvMOfZQ==?= \"quoted\"".to_vec()),
        from: vec![Address::new(Some(b"=?ISO-8859-1?Q?Andr=E9?= Pirard"), b"PIRARD", b"vm1.ulg.ac.be")],
        to: vec![Address::group_start(b"team"), Address::new(None, b"a", b"example.test"), Address::group_end()],
        cc: vec![],
        message_id: Some(b"<B27397-0100000@cac.washington.edu>".to_vec()),
        ..Envelope::default()
    };
    let text = BodyStructure::Single {
        part: SinglePart {
            media_type: "TEXT".into(),
            subtype: "PLAIN".into(),
            params: vec![("CHARSET".into(), "UTF-8".into())],
            id: None,
            description: None,
            encoding: "QUOTED-PRINTABLE".into(),
            size: 3028,
            lines: Some(92),
            message: None,
            md5: None,
        },
        ext: Extension::default(),
    };
    let attachment = BodyStructure::Single {
        part: SinglePart {
            media_type: "APPLICATION".into(),
            subtype: "PDF".into(),
            params: vec![("NAME".into(), "=?UTF-8?Q?r=C3=A9sum=C3=A9.pdf?=".into())],
            id: Some("<part2@x>".into()),
            description: Some(b"CV".to_vec()),
            encoding: "BASE64".into(),
            size: 4554,
            lines: None,
            message: None,
            md5: Some("Q2hlY2sgSW50ZWdyaXR5IQ==".into()),
        },
        ext: Extension {
            disposition: Some(Disposition {
                kind: "attachment".into(),
                params: vec![("filename".into(), "cv.pdf".into())],
            }),
            language: vec!["en".into(), "fr".into()],
            location: None,
        },
    };
    let body = BodyStructure::Multipart {
        parts: vec![text, attachment],
        subtype: "MIXED".into(),
        params: vec![("BOUNDARY".into(), "b1".into())],
        ext: Extension { disposition: None, language: vec!["en".into()], location: Some("http://x/y".into()) },
    };
    (env, body)
}

#[test]
fn imap_writer_envelope_and_bodystructure_of_a_multipart() {
    let (env, body) = mp_message();
    let mut out = Vec::new();
    envelope(&mut out, &env);
    let from = "((\"=?ISO-8859-1?Q?Andr=E9?= Pirard\" NIL \"PIRARD\" \"vm1.ulg.ac.be\"))";
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!(
            "(\"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\" {{33}}\r\n=?UTF-8?B?R3LDvMOfZQ==?= \"quoted\" {from} {from} {from} \
             ((NIL NIL \"team\" NIL)(NIL NIL \"a\" \"example.test\")(NIL NIL NIL NIL)) NIL NIL NIL \
             \"<B27397-0100000@cac.washington.edu>\")"
        ),
        "sender and reply-to default to from; the subject with quotes goes as a literal"
    );
    let mut out = Vec::new();
    body_structure(&mut out, &body, true);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"UTF-8\") NIL NIL \"QUOTED-PRINTABLE\" 3028 92 NIL NIL NIL NIL)\
         (\"APPLICATION\" \"PDF\" (\"NAME\" \"=?UTF-8?Q?r=C3=A9sum=C3=A9.pdf?=\") \"<part2@x>\" \"CV\" \"BASE64\" 4554 \
         \"Q2hlY2sgSW50ZWdyaXR5IQ==\" (\"attachment\" (\"filename\" \"cv.pdf\")) (\"en\" \"fr\") NIL) \
         \"MIXED\" (\"BOUNDARY\" \"b1\") NIL \"en\" \"http://x/y\")"
    );
    let mut out = Vec::new();
    body_structure(&mut out, &body, false);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"UTF-8\") NIL NIL \"QUOTED-PRINTABLE\" 3028 92)\
         (\"APPLICATION\" \"PDF\" (\"NAME\" \"=?UTF-8?Q?r=C3=A9sum=C3=A9.pdf?=\") \"<part2@x>\" \"CV\" \"BASE64\" 4554) \"MIXED\")"
    );
    // a message/rfc822 part carries the inner envelope, structure and lines
    let inner = BodyStructure::Single {
        part: SinglePart {
            media_type: "MESSAGE".into(),
            subtype: "RFC822".into(),
            params: vec![],
            id: None,
            description: None,
            encoding: "7BIT".into(),
            size: 100,
            lines: Some(4),
            message: Some(Box::new(mp_message())),
            md5: None,
        },
        ext: Extension::default(),
    };
    let mut out = Vec::new();
    body_structure(&mut out, &inner, false);
    let s = String::from_utf8_lossy(&out);
    assert!(
        s.starts_with("(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 100 (\"Wed,") && s.ends_with("\"MIXED\") 4)"),
        "{s}"
    );
    // the grammar's shape holds whatever the store left out or added
    let bare = |media: &str, sub: &str, lines: Option<u32>| BodyStructure::Single {
        part: SinglePart {
            media_type: media.into(),
            subtype: sub.into(),
            params: vec![],
            id: None,
            description: None,
            encoding: "7bit".into(),
            size: 1,
            lines,
            message: None,
            md5: None,
        },
        ext: Extension::default(),
    };
    let enc = |b: &BodyStructure| {
        let mut out = Vec::new();
        body_structure(&mut out, b, false);
        String::from_utf8(out).unwrap()
    };
    assert_eq!(enc(&bare("text", "html", None)), "(\"text\" \"html\" NIL NIL NIL \"7bit\" 1 0)");
    assert_eq!(enc(&bare("image", "png", Some(3))), "(\"image\" \"png\" NIL NIL NIL \"7bit\" 1)");
    assert_eq!(
        enc(&bare("message", "rfc822", None)),
        "(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 1 (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) \
         (\"text\" \"plain\" NIL NIL NIL \"7bit\" 0 0) 0)"
    );
    let empty =
        BodyStructure::Multipart { parts: vec![], subtype: "mixed".into(), params: vec![], ext: Extension::default() };
    assert_eq!(enc(&empty), "((\"text\" \"plain\" NIL NIL NIL \"7bit\" 0 0) \"mixed\")");
}

#[test]
fn imap_writer_fetch_response() {
    let (env, body) = mp_message();
    let section = Section { part: vec![1], text: Some(SectionText::HeaderFields(vec!["From".into(), "x y".into()])) };
    let dt = DateTime { date: Date::new(1996, 7, 17).unwrap(), hour: 2, minute: 44, second: 25, zone_minutes: -420 };
    let mut out = Vec::new();
    fetch(
        &mut out,
        12,
        &[
            FetchItem::Uid(4827313),
            FetchItem::Flags(&[Flag::Seen]),
            FetchItem::InternalDate(dt),
            FetchItem::Rfc822Size(44827),
            FetchItem::ModSeq(65402),
            FetchItem::BodySection { section: &section, origin: Some(0), data: Some(b"From: a\r\n\r\n") },
            FetchItem::BodySection { section: &Section::default(), origin: None, data: None },
            FetchItem::Rfc822Header(Some(b"")),
        ],
    );
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "* 12 FETCH (UID 4827313 FLAGS (\\Seen) INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" RFC822.SIZE 44827 \
         MODSEQ (65402) BODY[1.HEADER.FIELDS (From \"x y\")]<0> {11}\r\nFrom: a\r\n\r\n BODY[] NIL RFC822.HEADER {0}\r\n)\r\n"
    );
    let mut out = Vec::new();
    fetch(&mut out, 1, &[FetchItem::Envelope(&env), FetchItem::Body(&body), FetchItem::BodyStructure(&body)]);
    assert!(out.starts_with(b"* 1 FETCH (ENVELOPE (\"Wed,") && out.ends_with(b")\r\n"));
}

#[test]
fn imap_writer_sequence_sets_read_back() {
    for ids in [vec![1u32], vec![1, 2, 3, 10, 12, 13], vec![5, 3, 4, 100, 99], vec![u32::MAX, 1]] {
        let s = SequenceSet::from_ids(&ids).to_string();
        let mut c = cursor(s.as_bytes());
        let set = c.sequence_set().unwrap();
        assert_eq!(c.pos, s.len());
        let mut got: Vec<u32> = ids.iter().copied().filter(|&i| set.contains(i, u32::MAX)).collect();
        got.sort_unstable();
        let mut want = ids.clone();
        want.sort_unstable();
        assert_eq!(got, want, "{s}");
        let span: u64 = set.0.iter().map(|r| r.resolve(0)).map(|(a, b)| u64::from(b - a) + 1).sum();
        assert_eq!(span, want.len() as u64, "{s} names exactly the ids");
    }
}

/// A response line is well formed: tag or `*`, `BAD`, one printable
/// sentence, CRLF, nothing else.
fn well_formed_bad(line: &[u8]) -> bool {
    let Some(body) = line.strip_suffix(b"\r\n") else { return false };
    let mut parts = body.splitn(3, |&b| b == b' ');
    let (Some(tag), Some(status), Some(text)) = (parts.next(), parts.next(), parts.next()) else { return false };
    let tag_ok =
        tag == b"*" || (!tag.is_empty() && tag.iter().all(|&b| super::command::is_astring_char(b) && b != b'+'));
    tag_ok
        && status == b"BAD"
        && !text.is_empty()
        && !text.starts_with(b"[")
        && text.iter().all(|b| (0x20..0x7f).contains(b))
}

const PIECES: &[&str] = &[
    "a1 ",
    "A2 ",
    "* ",
    "+ ",
    "UID ",
    "FETCH ",
    "STORE ",
    "SEARCH ",
    "LOGIN ",
    "APPEND ",
    "SELECT ",
    "LIST ",
    "STATUS ",
    "AUTHENTICATE ",
    "ID ",
    "ENABLE ",
    "COPY ",
    "MOVE ",
    "IDLE",
    "NOOP",
    "DONE",
    "1:*",
    "1,3:5",
    "*",
    "0",
    "4294967296",
    "(",
    ")",
    "[",
    "]",
    "<0.10>",
    "BODY.PEEK[1.2.HEADER.FIELDS (From To)]",
    "BODY[]",
    "FLAGS",
    "+FLAGS.SILENT",
    "(\\Seen $x)",
    "\\Deleted",
    "INBOX",
    "\"quo\\\"ted\"",
    "\"unterminated",
    "{3}\r\nabc",
    "{5+}\r\nhello",
    "{0}\r\n",
    "{999999}\r\n",
    "{4294967295+}\r\n",
    "{2}",
    "\r\n",
    "\n",
    " ",
    "  ",
    "OR ",
    "NOT ",
    "CHARSET UTF-8 ",
    "HEADER ",
    "SINCE 1-Jan-2024",
    "\"01-Jan-2024 00:00:00 +0000\"",
    "(CHANGEDSINCE 5)",
    "(UNCHANGEDSINCE 5)",
    "MODSEQ 3",
    "NIL",
    "RETURN (CHILDREN SPECIAL-USE)",
    "(CONDSTORE)",
    "\u{e9}",
    "\x00",
    "\x7f",
    "\u{ff}",
];

fn grammar_shaped() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(PIECES), 0..40).prop_map(|v| v.concat().into_bytes())
}

fn any_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![prop::collection::vec(any::<u8>(), 0..600), grammar_shaped()]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Random and grammar-shaped bytes split at random points: the reader
    /// never panics, holds no more than its bounds allow, every BAD is a
    /// well-formed line, and the events do not depend on the splits.
    #[test]
    fn imap_reader_never_panics_and_stays_bounded(
        input in any_input(),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
        minus in any::<bool>(),
    ) {
        let lim = limits();
        let mode = if minus { Mode::Minus } else { Mode::Plus };
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (input.len() + 1)).collect();
        cuts.push(input.len());
        cuts.sort_unstable();
        let bound = lim.max_line + 2 * lim.max_literals + lim.max_append_literal as usize;
        let mut r = CommandReader::new(lim, mode);
        let mut buf = BytesMut::new();
        let mut events = Vec::new();
        let mut from = 0;
        for cut in cuts {
            buf.extend_from_slice(&input[from..cut]);
            from = cut;
            while let Some(e) = r.next(&mut buf) {
                events.push(e);
            }
            prop_assert!(r.buffered() <= bound, "{} buffered", r.buffered());
            prop_assert!(buf.len() <= lim.max_line + 1, "{} left in the input", buf.len());
        }
        for e in &events {
            if let Event::Bad(b) = e {
                prop_assert!(well_formed_bad(&b.line()), "{:?}", String::from_utf8_lossy(&b.line()));
            }
        }
        let mut whole = CommandReader::new(lim, mode);
        let once = run(&mut whole, &[&input]);
        prop_assert_eq!(once, events);
    }

    /// Every string the writer produces reads back as the same octets.
    #[test]
    fn imap_astring_round_trips(s in prop::collection::vec(any::<u8>(), 0..64)) {
        prop_assert_eq!(quoted_back(&s), s);
    }
}
