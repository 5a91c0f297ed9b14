//! FETCH tests: the exact bytes of each item for a multipart message with
//! an attachment and RFC 2047 headers, what each item reads from the
//! store, and the same items over a real mailbox store. The fixtures (the
//! messages, a counting fake [`Source`], a store in a temp dir) serve the
//! SEARCH tests too.

use super::*;
use crate::auth::Accounts;
use crate::mailbox::{Flag, Flags, MailboxStore};
use crate::proto::imap::command::{self, CommandKind};
use std::collections::HashMap;

pub(crate) const USER: &str = "alice@example.test";

/// A multipart message: a quoted-printable UTF-8 text, a base64 UTF-8
/// text, a PDF attachment, an enclosed message; RFC 2047 headers.
pub(crate) const MULTI: &str = "From: =?utf-8?q?J=C3=B6rg_M=C3=BCller?= <joerg@example.test>\r\n\
To: Alice <alice@example.test>, bob@example.test\r\n\
Cc: carol@example.test\r\n\
Subject: =?utf-8?b?R3LDvMOfZSBhdXMgS8O2bG4=?=\r\n\
Date: Tue, 05 Mar 2024 23:30:00 -0800\r\n\
Message-ID: <m1@example.test>\r\n\
X-Mood: =?iso-8859-1?q?gl=FCcklich?=\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
\r\n\
preamble\r\n\
--b1\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
Sch=C3=B6ne Gr=C3=BC=C3=9Fe vom Rhein\r\n\
--b1\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
R2VoZWltbmlzIGltIEFuaGFuZzogw5xiZXJyYXNjaHVuZyENCg==\r\n\
--b1\r\n\
Content-Type: application/pdf; name=\"a.pdf\"\r\n\
Content-Disposition: attachment; filename=\"a.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
JVBERi0xLjQK\r\n\
--b1\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
Subject: inner\r\n\
From: inner@example.test\r\n\
\r\n\
enclosed words\r\n\
--b1--\r\n";

/// A plain message.
pub(crate) const PLAIN: &str =
    "Subject: hi\r\nFrom: A <a@b.c>\r\nDate: Wed, 1 Feb 2023 10:00:00 +0000\r\nX-Spam: yes\r\n\r\nhello world\r\n";

/// A fake store: messages by UID, counting what is read.
#[derive(Default)]
pub(crate) struct Fake {
    pub messages: HashMap<u32, Vec<u8>>,
    pub bytes_reads: usize,
    pub parse_reads: usize,
    /// Every read fails as a broken disk would.
    pub broken: bool,
}

impl Fake {
    pub fn new(msgs: &[(u32, &str)]) -> Fake {
        Fake { messages: msgs.iter().map(|(u, m)| (*u, m.as_bytes().to_vec())).collect(), ..Fake::default() }
    }
}

impl Source for Fake {
    fn bytes(&mut self, uid: u32) -> Result<Vec<u8>, MailboxError> {
        self.bytes_reads += 1;
        if self.broken {
            return Err(MailboxError::Faults("disk on fire".into()));
        }
        self.messages.get(&uid).cloned().ok_or(MailboxError::NoSuchMessage { folder: "INBOX".into(), uid })
    }
    fn parsed(&mut self, uid: u32) -> Result<Parsed, MailboxError> {
        self.parse_reads += 1;
        if self.broken {
            return Err(MailboxError::Faults("disk on fire".into()));
        }
        let b = self.messages.get(&uid).ok_or(MailboxError::NoSuchMessage { folder: "INBOX".into(), uid })?;
        Ok(crate::mailbox::parse::parse(b))
    }
}

pub(crate) fn info(uid: u32, size: usize, flags: &[Flag]) -> MessageInfo {
    MessageInfo {
        uid,
        size: size as u64,
        internal_date: 1_700_000_000,
        flags: flags.iter().cloned().collect::<Flags>(),
        modseq: 5,
    }
}

/// The FETCH items of `FETCH 1 <items>` as the grammar reads them.
pub(crate) fn attrs(items: &str) -> Vec<FetchAttr> {
    match command::parse(format!("a FETCH 1 {items}").as_bytes()).map(|c| c.kind) {
        Ok(CommandKind::Fetch { items, .. }) => items,
        other => panic!("{items}: {other:?}"),
    }
}

fn fetch_with(src: &mut dyn Source, info: &MessageInfo, items: &str, extra: Extra) -> String {
    let mut out = Vec::new();
    write_fetch(&mut out, 1, info, &attrs(items), extra, src).unwrap();
    String::from_utf8(out).unwrap()
}

fn multi() -> (Fake, MessageInfo) {
    (Fake::new(&[(7, MULTI)]), info(7, MULTI.len(), &[Flag::Seen, Flag::Keyword("$Work".into())]))
}

/// A store in a temp dir with one user.
pub(crate) fn store(dir: &std::path::Path) -> MailboxStore {
    let db = sled::Config::new().path(dir.join("db")).open().unwrap();
    let accounts = Accounts::open(&db).unwrap();
    accounts.add_user(USER, "pw").unwrap();
    MailboxStore::open(&db, dir, accounts).unwrap().0
}

#[test]
fn imap_fetch_listing_items_read_nothing() {
    let (mut src, info) = multi();
    let none = Extra::default();
    assert_eq!(fetch_with(&mut src, &info, "(UID FLAGS)", none), "* 1 FETCH (UID 7 FLAGS (\\Seen $Work))\r\n");
    assert_eq!(
        fetch_with(&mut src, &info, "FAST", Extra { recent: true, ..none }),
        format!(
            "* 1 FETCH (FLAGS (\\Seen $Work \\Recent) INTERNALDATE \"14-Nov-2023 22:13:20 +0000\" RFC822.SIZE {})\r\n",
            MULTI.len()
        )
    );
    assert_eq!(
        fetch_with(&mut src, &info, "FLAGS", Extra { uid: true, modseq: true, recent: false }),
        "* 1 FETCH (UID 7 FLAGS (\\Seen $Work) MODSEQ (5))\r\n",
        "a UID command and CONDSTORE add UID first and MODSEQ last"
    );
    assert_eq!(
        fetch_with(&mut src, &info, "(MODSEQ UID)", Extra { uid: true, modseq: true, recent: false }),
        "* 1 FETCH (MODSEQ (5) UID 7)\r\n",
        "asked for, they are not repeated"
    );
    assert_eq!((src.bytes_reads, src.parse_reads), (0, 0));
}

#[test]
fn imap_fetch_envelope_and_bodystructure_read_only_the_parse() {
    let mut src = Fake::new(&[(1, PLAIN)]);
    let i = info(1, PLAIN.len(), &[]);
    assert_eq!(
        fetch_with(&mut src, &i, "(ENVELOPE BODY BODYSTRUCTURE)", Extra::default()),
        "* 1 FETCH (ENVELOPE (\"Wed, 1 Feb 2023 10:00:00 +0000\" \"hi\" ((\"A\" NIL \"a\" \"b.c\")) \
((\"A\" NIL \"a\" \"b.c\")) ((\"A\" NIL \"a\" \"b.c\")) NIL NIL NIL NIL NIL) \
BODY (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 13 1) \
BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 13 1 NIL NIL NIL NIL))\r\n"
    );
    assert_eq!((src.bytes_reads, src.parse_reads), (0, 1), "one parse for all three, no bytes");

    let (mut src, info) = multi();
    let out = fetch_with(&mut src, &info, "(ENVELOPE BODYSTRUCTURE)", Extra::default());
    assert!(out.starts_with("* 1 FETCH (ENVELOPE (\"Tue, 05 Mar 2024 23:30:00 -0800\" \"=?utf-8?b?R3LDvMOfZSBhdXMgS8O2bG4=?=\" ((\"=?utf-8?b?"), "{out}");
    assert!(out.contains("NIL \"joerg\" \"example.test\"))"), "{out}");
    assert!(out.contains(" ((\"Alice\" NIL \"alice\" \"example.test\")(NIL NIL \"bob\" \"example.test\")) ((NIL NIL \"carol\" \"example.test\")) NIL NIL \"<m1@example.test>\")"), "{out}");
    assert!(
        out.contains("BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 37 1 NIL NIL NIL NIL)"),
        "{out}"
    );
    assert!(
        out.contains("(\"application\" \"pdf\" (\"name\" \"a.pdf\") NIL NIL \"base64\" 12 NIL (\"attachment\" (\"filename\" \"a.pdf\")) NIL NIL)"),
        "{out}"
    );
    assert!(
        out.contains(
            "(\"message\" \"rfc822\" NIL NIL NIL \"7BIT\" 58 (NIL \"inner\" ((NIL NIL \"inner\" \"example.test\"))"
        ),
        "{out}"
    );
    assert!(out.ends_with(" \"mixed\" (\"boundary\" \"b1\") NIL NIL NIL))\r\n"), "{out}");
    assert_eq!((src.bytes_reads, src.parse_reads), (0, 1));
}

/// The literal a FETCH response carries for `item`.
fn literal_of<'a>(out: &'a str, item: &str) -> &'a str {
    let at = out.find(&format!("{item} {{")).unwrap_or_else(|| panic!("{item} in {out}")) + item.len() + 2;
    let close = at + out[at..].find('}').unwrap();
    let n: usize = out[at..close].parse().unwrap();
    &out[close + 3..close + 3 + n]
}

#[test]
fn imap_fetch_sections_are_cut_exactly() {
    let (mut src, info) = multi();
    let header_len = MULTI.find("\r\n\r\n").unwrap() + 4;
    let out = fetch_with(
        &mut src,
        &info,
        "(RFC822.HEADER RFC822.TEXT BODY.PEEK[] BODY[HEADER] BODY[TEXT])",
        Extra::default(),
    );
    assert_eq!(literal_of(&out, "RFC822.HEADER"), &MULTI[..header_len]);
    assert_eq!(literal_of(&out, "RFC822.TEXT"), &MULTI[header_len..]);
    assert_eq!(literal_of(&out, "BODY[]"), MULTI);
    assert_eq!(literal_of(&out, "BODY[HEADER]"), &MULTI[..header_len]);
    assert_eq!(literal_of(&out, "BODY[TEXT]"), &MULTI[header_len..]);
    assert_eq!((src.bytes_reads, src.parse_reads), (1, 0), "top-level sections need no parse");

    let out = fetch_with(&mut src, &info, "RFC822", Extra::default());
    assert_eq!(out, format!("* 1 FETCH (RFC822 {{{}}}\r\n{MULTI})\r\n", MULTI.len()));

    let (mut src, info) = multi();
    let out = fetch_with(
        &mut src,
        &info,
        "(BODY[1] BODY.PEEK[1.MIME] BODY[2] BODY[3] BODY[4.HEADER] BODY[4.TEXT] BODY[4.1])",
        Extra::default(),
    );
    assert_eq!(literal_of(&out, "BODY[1]"), "Sch=C3=B6ne Gr=C3=BC=C3=9Fe vom Rhein");
    assert_eq!(
        literal_of(&out, "BODY[1.MIME]"),
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    );
    assert_eq!(literal_of(&out, "BODY[2]"), "R2VoZWltbmlzIGltIEFuaGFuZzogw5xiZXJyYXNjaHVuZyENCg==");
    assert_eq!(literal_of(&out, "BODY[3]"), "JVBERi0xLjQK");
    assert_eq!(literal_of(&out, "BODY[4.HEADER]"), "Subject: inner\r\nFrom: inner@example.test\r\n\r\n");
    assert_eq!(literal_of(&out, "BODY[4.TEXT]"), "enclosed words");
    assert_eq!(literal_of(&out, "BODY[4.1]"), "enclosed words");
    assert_eq!((src.bytes_reads, src.parse_reads), (1, 1));

    let out = fetch_with(&mut src, &info, "(BODY[HEADER.FIELDS (subject \"X-Mood\")] BODY[HEADER.FIELDS.NOT (To Cc From Date Subject Message-ID X-Mood)])", Extra::default());
    assert!(out.starts_with("* 1 FETCH (BODY[HEADER.FIELDS (subject X-Mood)] {"), "names as asked: {out}");
    assert_eq!(
        literal_of(&out, "BODY[HEADER.FIELDS (subject X-Mood)]"),
        "Subject: =?utf-8?b?R3LDvMOfZSBhdXMgS8O2bG4=?=\r\nX-Mood: =?iso-8859-1?q?gl=FCcklich?=\r\n\r\n"
    );
    assert_eq!(
        literal_of(&out, "BODY[HEADER.FIELDS.NOT (To Cc From Date Subject Message-ID X-Mood)]"),
        "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
    );
}

#[test]
fn imap_fetch_partials_echo_their_origin() {
    let mut src = Fake::new(&[(1, PLAIN)]);
    let i = info(1, PLAIN.len(), &[]);
    assert_eq!(
        fetch_with(&mut src, &i, "BODY.PEEK[]<0.7>", Extra::default()),
        "* 1 FETCH (BODY[]<0> {7}\r\nSubject)\r\n"
    );
    assert_eq!(
        fetch_with(&mut src, &i, "BODY[TEXT]<6.100>", Extra::default()),
        "* 1 FETCH (BODY[TEXT]<6> {7}\r\nworld\r\n)\r\n",
        "truncated at the end"
    );
    assert_eq!(fetch_with(&mut src, &i, "BODY[]<5000.10>", Extra::default()), "* 1 FETCH (BODY[]<5000> {0}\r\n)\r\n");
    assert_eq!(
        fetch_with(&mut src, &i, "BODY[HEADER.FIELDS (X-Spam)]<2.4>", Extra::default()),
        "* 1 FETCH (BODY[HEADER.FIELDS (X-Spam)]<2> {4}\r\nSpam)\r\n"
    );
    // a section that does not exist is the empty string
    assert_eq!(
        fetch_with(&mut src, &i, "(BODY[2] BODY[1.2] BODY[1.HEADER])", Extra::default()),
        "* 1 FETCH (BODY[2] {0}\r\n BODY[1.2] {0}\r\n BODY[1.HEADER] {0}\r\n)\r\n"
    );
    assert_eq!(
        fetch_with(&mut src, &i, "BODY[1]", Extra::default()),
        "* 1 FETCH (BODY[1] {13}\r\nhello world\r\n)\r\n",
        "part 1 of a single-part message is its body"
    );
}

#[test]
fn imap_fetch_of_a_vanished_message_is_the_store_error_and_writes_nothing() {
    let mut src = Fake::new(&[]);
    let mut out = b"* 3 EXISTS\r\n".to_vec();
    let i = info(9, 10, &[]);
    let err = write_fetch(&mut out, 1, &i, &attrs("(FLAGS BODY[])"), Extra::default(), &mut src).unwrap_err();
    assert!(matches!(err, MailboxError::NoSuchMessage { uid: 9, .. }), "{err:?}");
    assert!(write_fetch(&mut out, 1, &i, &attrs("ENVELOPE"), Extra::default(), &mut src).is_err());
    assert_eq!(out, b"* 3 EXISTS\r\n");
    // what needs neither still answers
    write_fetch(&mut out, 1, &i, &attrs("(UID RFC822.SIZE)"), Extra::default(), &mut src).unwrap();
    assert!(out.ends_with(b"* 1 FETCH (UID 9 RFC822.SIZE 10)\r\n"));
}

#[test]
fn imap_fetch_which_items_set_seen() {
    for (items, seen) in [
        ("(UID FLAGS ENVELOPE BODYSTRUCTURE BODY RFC822.SIZE RFC822.HEADER)", false),
        ("BODY.PEEK[]", false),
        ("(BODY.PEEK[1] BODY.PEEK[HEADER])", false),
        ("BODY[]", true),
        ("BODY[HEADER]<0.10>", true),
        ("RFC822", true),
        ("RFC822.TEXT", true),
        ("(FLAGS BODY.PEEK[] BODY[1.MIME])", true),
    ] {
        assert_eq!(sets_seen(&attrs(items)), seen, "{items}");
    }
}

#[test]
fn imap_fetch_needs() {
    assert_eq!(needs(&attrs("ALL")), Needs { bytes: false, parse: true });
    assert_eq!(needs(&attrs("(UID FLAGS MODSEQ)")), Needs::default());
    assert_eq!(needs(&attrs("(BODY.PEEK[HEADER.FIELDS (From)] RFC822.SIZE)")), Needs { bytes: true, parse: false });
    assert_eq!(needs(&attrs("BODY[1.MIME]")), Needs { bytes: true, parse: true });
}

#[test]
fn imap_fetch_over_the_mailbox_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let uid = store.deliver(USER, MULTI.as_bytes(), 1_700_000_000).unwrap();
    let listing = store.messages(USER, "INBOX").unwrap();
    let m = &listing.messages[0];
    let mut src = StoreSource::new(&store, USER, "INBOX");
    let out =
        fetch_with(&mut src, m, "(UID RFC822.SIZE BODY.PEEK[] BODY[2] BODY[3]<0.4> BODYSTRUCTURE)", Extra::default());
    assert!(out.starts_with(&format!("* 1 FETCH (UID {uid} RFC822.SIZE {} BODY[] {{", MULTI.len())), "{out}");
    assert_eq!(literal_of(&out, "BODY[]"), MULTI);
    assert_eq!(literal_of(&out, "BODY[2]"), "R2VoZWltbmlzIGltIEFuaGFuZzogw5xiZXJyYXNjaHVuZyENCg==");
    assert_eq!(literal_of(&out, "BODY[3]<0>"), "JVBE");
    assert!(out.contains("BODYSTRUCTURE ((\"text\" \"plain\""), "{out}");
    store.expunge(USER, "INBOX", &[uid]).unwrap();
    let err = write_fetch(&mut Vec::new(), 1, m, &attrs("BODY[]"), Extra::default(), &mut src).unwrap_err();
    assert!(matches!(err, MailboxError::NoSuchMessage { .. }), "{err:?}");
}
