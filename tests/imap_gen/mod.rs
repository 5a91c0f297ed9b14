//! Shared by the IMAP property test (tests/imap_property.rs) and the
//! cargo-fuzz target (fuzz/fuzz_targets/imap_session.rs): grammar-shaped
//! client input made from a stream of choices (random bytes from proptest
//! or the fuzzer), a driver that runs the sans-IO IMAP core with a small
//! service answering its events — FETCH and SEARCH through the real
//! `imap::fetch` and `imap::search` over a three-message folder, STORE
//! through `imap::flags` — and a checker that every response is well
//! formed: `* ...`, `+ ...` or `TAG OK|NO|BAD ...`, CRLF-terminated, no bare
//! CR or LF, every literal `{n}` CRLF followed by exactly n octets, data
//! responses with balanced parentheses and proper quoted strings, no 8-bit
//! octet outside a literal.

#![allow(dead_code)]

use bytes::BytesMut;
use postern::imap::fetch::{self, Extra, Source};
use postern::imap::{flags, search};
use postern::mailbox::parse::{parse, Parsed};
use postern::mailbox::{Flag, Flags, MailboxError, MessageInfo};
use postern::proto::imap::command::{Command, CommandKind, FetchAttr, SearchKey};
use postern::proto::imap::reader::Limits;
use postern::proto::imap::response::{self, Code, Data, Status};
use postern::proto::imap::server::{replies, Event, ServerSession, Settings};
use postern::proto::session::{AuthEvent, LineCore};
use std::collections::HashMap;

/// A stream of choices; zeros once it runs out.
pub struct Choices<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Choices<'a> {
    pub fn new(data: &'a [u8]) -> Choices<'a> {
        Choices { data, pos: 0 }
    }
    pub fn done(&self) -> bool {
        self.pos >= self.data.len()
    }
    pub fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    /// A number below `n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        let v = (usize::from(self.byte()) << 8) | usize::from(self.byte());
        v % n.max(1)
    }
    pub fn pick<'b, T>(&mut self, items: &'b [T]) -> &'b T {
        &items[self.below(items.len())]
    }
    pub fn chance(&mut self, in_256: u8) -> bool {
        self.byte() < in_256
    }
    /// Raw bytes, a few of them.
    pub fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max + 1);
        (0..n).map(|_| self.byte()).collect()
    }
}

const TAGS: &[&str] = &["a", "A1", "t.2", "x-y", "*", "+", "", "b{", "c]", "1234567890abcdef", "\u{e9}"];
const SETS: &[&str] =
    &["1", "2", "3", "*", "1:*", "2:4", "4:2", "*:1", "1,3", "2,*", "4294967295", "0", "1:", ",", "1:2,2:3,3:*", "7:9"];
const FETCH_ITEMS: &[&str] = &[
    "FLAGS",
    "UID",
    "ALL",
    "FAST",
    "FULL",
    "ENVELOPE",
    "BODY",
    "BODYSTRUCTURE",
    "RFC822",
    "RFC822.HEADER",
    "RFC822.SIZE",
    "RFC822.TEXT",
    "INTERNALDATE",
    "MODSEQ",
    "BODY[]",
    "BODY.PEEK[]",
    "BODY[1]",
    "BODY[1.2]",
    "BODY[2.MIME]",
    "BODY[4.HEADER]",
    "BODY[4.TEXT]",
    "BODY[4.1]",
    "BODY[9.9.9]",
    "BODY[HEADER]",
    "BODY[TEXT]",
    "BODY[]<0.10>",
    "BODY.PEEK[1]<3.5>",
    "BODY[]<100000.1>",
    "BODY[HEADER.FIELDS (Subject From)]",
    "BODY.PEEK[HEADER.FIELDS.NOT (\"To\" {2}\r\nCc)]",
    "BODY[HEADER.FIELDS ()]",
    "BODY[MIME]",
    "BODY[",
    "FOO",
];
const SEARCH_KEYS: &[&str] = &[
    "ALL",
    "ANSWERED",
    "DELETED",
    "DRAFT",
    "FLAGGED",
    "NEW",
    "OLD",
    "RECENT",
    "SEEN",
    "UNANSWERED",
    "UNDELETED",
    "UNDRAFT",
    "UNFLAGGED",
    "UNSEEN",
    "KEYWORD $Junk",
    "UNKEYWORD $Junk",
    "LARGER 10",
    "SMALLER 100",
    "BEFORE 1-Jan-2030",
    "ON 14-Nov-2023",
    "SINCE 1-Feb-1994",
    "SENTBEFORE 1-Jan-2030",
    "SENTON 5-Mar-2024",
    "SENTSINCE 30-Feb-2024",
    "FROM m\u{fc}ller",
    "TO \"bob\"",
    "CC {5}\r\ncarol",
    "BCC {3+}\r\nsec",
    "SUBJECT \"K\u{f6}ln\"",
    "HEADER X-Mood \"\"",
    "HEADER Subject gr",
    "BODY sch\u{f6}ne",
    "BODY \"\"",
    "TEXT rhein",
    "UID 1:*",
    "UID *",
    "MODSEQ 3",
    "MODSEQ \"/flags/\\\\seen\" all 1",
    "2:*",
    "*",
    "NOT",
    "OR",
    "(",
    ")",
    "CHARSET UTF-8",
    "CHARSET KOI8-R",
];
const FLAGS: &[&str] =
    &["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "\\Recent", "\\*", "$Junk", "\\X"];

/// A string argument in one of its three forms (or a broken one).
fn string(c: &mut Choices, s: &str) -> String {
    match c.below(6) {
        0 | 1 => s.to_string(),
        2 => format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")),
        3 => format!("{{{}}}\r\n{s}", s.len()),
        4 => format!("{{{}+}}\r\n{s}", s.len()),
        _ => format!("{{{}}}\r\n{s}", s.len() + c.below(3)),
    }
}

fn search_keys(c: &mut Choices, depth: usize) -> String {
    let n = 1 + c.below(4);
    let mut out = Vec::new();
    for _ in 0..n {
        let k = match c.below(10) {
            0 if depth < 6 => format!("NOT {}", search_keys(c, depth + 1)),
            1 if depth < 6 => format!("OR {} {}", search_keys(c, depth + 1), search_keys(c, depth + 1)),
            2 if depth < 6 => format!("({})", search_keys(c, depth + 1)),
            _ => c.pick(SEARCH_KEYS).to_string(),
        };
        out.push(k);
    }
    out.join(" ")
}

fn fetch_items(c: &mut Choices) -> String {
    if c.chance(100) {
        return c.pick(FETCH_ITEMS).to_string();
    }
    let n = c.below(5);
    let items: Vec<&str> = (0..n).map(|_| *c.pick(FETCH_ITEMS)).collect();
    format!("({})", items.join(" "))
}

fn flag_list(c: &mut Choices) -> String {
    let n = c.below(4);
    let f: Vec<&str> = (0..n).map(|_| *c.pick(FLAGS)).collect();
    if c.chance(200) {
        format!("({})", f.join(" "))
    } else {
        f.join(" ")
    }
}

/// One client command line (with its literals), or noise.
pub fn command(c: &mut Choices) -> Vec<u8> {
    let tag = if c.chance(230) { format!("t{}", c.below(100)) } else { c.pick(TAGS).to_string() };
    let uid = if c.chance(60) { "UID " } else { "" };
    let body = match c.below(30) {
        0 => "LOGIN alice pw".to_string(),
        1 => format!("LOGIN {} {}", string(c, "alice"), string(c, "p w\"")),
        2 => "AUTHENTICATE PLAIN AGFsaWNlAHB3".into(),
        3 => "AUTHENTICATE PLAIN\r\nAGFsaWNlAHB3".into(),
        4 => format!("AUTHENTICATE {}", c.pick(&["PLAIN =", "PLAIN\r\n*", "LOGIN", "PLAIN !!!", "PLAIN\r\n%%"])),
        5 | 6 => format!("{} INBOX{}", c.pick(&["SELECT", "EXAMINE"]), c.pick(&["", " (CONDSTORE)", " (FOO)"])),
        7..=10 => format!(
            "{uid}FETCH {} {}{}",
            c.pick(SETS),
            fetch_items(c),
            c.pick(&["", "", " (CHANGEDSINCE 2)", " (CHANGEDSINCE 0)"])
        ),
        11..=13 => format!("{uid}SEARCH {}", search_keys(c, 0)),
        14 | 15 => format!(
            "{uid}STORE {} {}{}FLAGS{} {}",
            c.pick(SETS),
            c.pick(&["", "(UNCHANGEDSINCE 3) "]),
            c.pick(&["", "+", "-"]),
            c.pick(&["", ".SILENT"]),
            flag_list(c)
        ),
        16 => {
            let msg = c.pick(&["Subject: x\r\n\r\nhi\r\n", "", "x"]).to_string();
            format!("APPEND {} {}{}", string(c, "INBOX"), c.pick(&["", "(\\Seen) ", "(\\Recent) "]), string(c, &msg))
        }
        17 => "IDLE".into(),
        18 => "DONE".into(),
        19 => c.pick(&["NOOP", "CAPABILITY", "CHECK", "NAMESPACE", "ID NIL", "ID (\"name\" \"x\")"]).to_string(),
        20 => c.pick(&["ENABLE CONDSTORE", "ENABLE X", "STARTTLS", "UNSELECT", "CLOSE", "EXPUNGE"]).to_string(),
        21 => format!("{uid}{} {} {}", c.pick(&["COPY", "MOVE"]), c.pick(SETS), string(c, "Trash")),
        22 => format!("UID EXPUNGE {}", c.pick(SETS)),
        23 => format!("LIST {} {}", string(c, ""), c.pick(&["*", "%", "INBOX*", "\"\""])),
        24 => format!("STATUS INBOX ({})", c.pick(&["MESSAGES", "UIDNEXT UNSEEN", "HIGHESTMODSEQ", ""])),
        25 => c.pick(&["CREATE a/b", "DELETE x", "RENAME a b", "SUBSCRIBE a", "LSUB \"\" *"]).to_string(),
        26 if c.chance(40) => "LOGOUT".into(),
        27 => String::from_utf8_lossy(&c.bytes(40)).into_owned(),
        _ => {
            let noise = c.bytes(30);
            return [format!("{tag} ").into_bytes(), noise, b"\r\n".to_vec()].concat();
        }
    };
    let end = *c.pick(&["\r\n", "\r\n", "\r\n", "\n", ""]);
    format!("{tag} {body}{end}").into_bytes()
}

/// A session's worth of client input: mostly grammar-shaped commands,
/// sometimes raw bytes.
pub fn session_input(c: &mut Choices) -> Vec<u8> {
    let mut out = Vec::new();
    if c.chance(200) {
        out.extend_from_slice(b"t0 LOGIN alice pw\r\nt1 SELECT INBOX\r\n");
    }
    while !c.done() && out.len() < 16 * 1024 {
        if c.chance(20) {
            out.extend(c.bytes(64));
        } else {
            out.extend(command(c));
        }
    }
    out
}

/// Where to split `len` bytes into arrivals.
pub fn cuts(c: &mut Choices, len: usize) -> Vec<usize> {
    let n = c.below(12);
    let mut v: Vec<usize> = (0..n).map(|_| c.below(len + 1)).collect();
    v.sort_unstable();
    v
}

pub const MULTI: &str = "From: =?utf-8?q?J=C3=B6rg?= <joerg@example.test>\r\n\
To: bob@example.test\r\nCc: carol@example.test\r\nSubject: =?utf-8?b?R3LDvMOfZSBhdXMgS8O2bG4=?=\r\n\
Date: Tue, 05 Mar 2024 23:30:00 -0800\r\nX-Mood: =?iso-8859-1?q?gl=FCcklich?=\r\n\
Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
Sch=C3=B6ne Gr=C3=BC=C3=9Fe vom Rhein\r\n--b\r\nContent-Type: application/pdf\r\n\
Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n\
Subject: inner\r\n\r\nenclosed\r\n--b--\r\n";

/// The folder the service answers from: three messages, the third of
/// which has lost its file (another session expunged it).
pub struct Folder {
    pub messages: Vec<MessageInfo>,
    pub files: Files,
}

pub struct Files(HashMap<u32, Vec<u8>>);

impl Source for Files {
    fn bytes(&mut self, uid: u32) -> Result<Vec<u8>, MailboxError> {
        self.0.get(&uid).cloned().ok_or(MailboxError::NoSuchMessage { folder: "INBOX".into(), uid })
    }
    fn parsed(&mut self, uid: u32) -> Result<Parsed, MailboxError> {
        self.0.get(&uid).map(|b| parse(b)).ok_or(MailboxError::NoSuchMessage { folder: "INBOX".into(), uid })
    }
}

impl Folder {
    pub fn new() -> Folder {
        let info = |uid: u32, size: usize, flags: &[Flag]| MessageInfo {
            uid,
            size: size as u64,
            internal_date: 1_700_000_000 + u64::from(uid),
            flags: flags.iter().cloned().collect::<Flags>(),
            modseq: u64::from(uid),
        };
        let plain = "Subject: hi\r\n\r\nhello\r\n";
        let files = Files(HashMap::from([(2, MULTI.as_bytes().to_vec()), (5, plain.as_bytes().to_vec())]));
        let messages = vec![
            info(2, MULTI.len(), &[Flag::Seen]),
            info(5, plain.len(), &[Flag::Keyword("$Junk".into())]),
            info(6, 10, &[Flag::Deleted]),
        ];
        Folder { messages, files }
    }
}

impl Default for Folder {
    fn default() -> Folder {
        Folder::new()
    }
}

fn tagged(s: &mut ServerSession, status: Status, code: Option<&Code>, text: &str) {
    let tag = s.tag().to_string();
    response::tagged(s.out(), &tag, status, code, text);
    if status != Status::Ok {
        s.count_error();
    }
}

/// The messages a set names, as (index, id).
fn chosen(folder: &Folder, uid: bool, set: &postern::proto::imap::types::SequenceSet) -> Vec<usize> {
    let largest = if uid { folder.messages.last().map_or(0, |m| m.uid) } else { folder.messages.len() as u32 };
    (0..folder.messages.len())
        .filter(|&i| set.contains(if uid { folder.messages[i].uid } else { i as u32 + 1 }, largest))
        .collect()
}

/// Answer one command the core handed out, as a service would.
fn answer(s: &mut ServerSession, folder: &mut Folder, cmd: Command, turn: usize) {
    use CommandKind as K;
    match cmd.kind {
        K::Select { condstore, .. } | K::Examine { condstore, .. } => {
            if condstore {
                s.enable_condstore();
            }
            let n = folder.messages.len() as u32;
            response::data(s.out(), &Data::Exists(n));
            response::data(s.out(), &Data::Flags(&flags::to_protocol(&Flags::new(), true)));
            s.select(false);
            tagged(s, Status::Ok, Some(&Code::ReadWrite), "SELECT completed");
        }
        K::Fetch { uid, set, items, changed_since } => {
            if changed_since.is_some() {
                s.enable_condstore();
            }
            let modseq = s.condstore();
            let seen = fetch::sets_seen(&items);
            let mut attrs = items.clone();
            if seen && !attrs.contains(&FetchAttr::Flags) {
                attrs.push(FetchAttr::Flags);
            }
            for i in chosen(folder, uid, &set) {
                if changed_since.is_some_and(|c| folder.messages[i].modseq <= c) {
                    continue;
                }
                if seen {
                    folder.messages[i].flags.insert(Flag::Seen);
                }
                let extra = Extra { uid, modseq, recent: i == 0 };
                // a vanished message is left out, as the service does
                let _ =
                    fetch::write_fetch(s.out(), i as u32 + 1, &folder.messages[i], &attrs, extra, &mut folder.files);
            }
            tagged(s, Status::Ok, None, "FETCH completed");
        }
        K::Search { uid, criteria, .. } => {
            let key = SearchKey::And(criteria);
            let ctx = search::Context { recent: &[2], tz_offset: 3600 };
            match search::search(&key, &folder.messages, ctx, &mut folder.files) {
                Ok(found) => {
                    let ids: Vec<u32> =
                        found.iter().map(|&i| if uid { folder.messages[i].uid } else { i as u32 + 1 }).collect();
                    let modseq = search::uses_modseq(&key)
                        .then(|| found.iter().map(|&i| folder.messages[i].modseq).max().unwrap_or(0));
                    response::data(s.out(), &Data::Search { ids: &ids, modseq });
                    tagged(s, Status::Ok, None, "SEARCH completed");
                }
                Err(_) => tagged(s, Status::No, None, "The mailbox is unavailable"),
            }
        }
        K::Store { uid, set, silent, flags: asked, .. } => match flags::to_store(&asked) {
            Err(e) => tagged(s, Status::Bad, None, &e.to_string()),
            Ok(f) => {
                for i in chosen(folder, uid, &set) {
                    folder.messages[i].flags = f.clone();
                    if !silent {
                        let shown = flags::to_protocol(&folder.messages[i].flags, i == 0);
                        let items = [response::FetchItem::Flags(&shown)];
                        response::fetch(s.out(), i as u32 + 1, &items);
                    }
                }
                tagged(s, Status::Ok, None, "STORE completed");
            }
        },
        K::Append { flags: asked, .. } => match flags::to_store(&asked) {
            Err(e) => tagged(s, Status::Bad, None, &e.to_string()),
            Ok(_) => tagged(s, Status::Ok, Some(&Code::AppendUid { validity: 1, uid: 7 }), "APPEND completed"),
        },
        K::Close | K::Unselect => {
            s.deselect();
            tagged(s, Status::Ok, None, "done");
        }
        K::Expunge => {
            response::data(s.out(), &Data::Expunge(3));
            tagged(s, Status::Ok, None, "EXPUNGE completed");
        }
        _ if turn % 5 == 4 => tagged(s, Status::No, Some(&Code::TryCreate), "No such mailbox"),
        _ => tagged(s, Status::Ok, None, "done"),
    }
    s.done();
}

/// Settings varied by one choice: policies and bounds small and large.
pub fn settings(c: &mut Choices) -> (Settings, bool) {
    let small = Limits { max_line: 256, max_literal: 64, max_append_literal: 128, max_literals: 3 };
    let limits = if c.chance(60) { small } else { Limits::default() };
    let settings = Settings {
        hostname: "imap.example.test".into(),
        starttls: c.chance(200),
        require_tls: c.chance(60),
        allow_plaintext_auth: c.chance(200),
        max_errors: if c.chance(40) { 3 } else { 1000 },
        limits,
    };
    (settings, c.chance(60))
}

/// Run a session over `input` arriving in pieces cut at `cuts`; the
/// output, all of it.
pub fn drive(settings: Settings, tls: bool, input: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut s = ServerSession::new(settings, tls);
    let mut folder = Folder::new();
    s.greeting();
    let mut out = Vec::new();
    s.take_output(&mut out);
    let mut buf = BytesMut::new();
    let mut prev = 0;
    let mut turn = 0;
    for cut in cuts.iter().map(|&c| c.min(input.len())).chain([input.len()]) {
        if s.is_closed() {
            break;
        }
        if cut < prev {
            continue;
        }
        buf.extend_from_slice(&input[prev..cut]);
        prev = cut;
        while let Some(e) = s.feed(&mut buf) {
            turn += 1;
            match e {
                Event::Login(_) | Event::Auth(AuthEvent::Credentials(_)) => s.login_done(if turn % 7 == 3 {
                    Err(replies::AUTH_FAILED)
                } else {
                    Ok("alice@example.test".into())
                }),
                Event::Auth(AuthEvent::Failed(_)) => s.login_done(Err(replies::AUTH_FAILED)),
                Event::Auth(AuthEvent::Start { .. }) => {
                    s.auth_begin(if turn % 11 == 5 { Err(replies::AUTH_THROTTLED) } else { Ok(()) })
                }
                Event::StartTls => {
                    buf.clear();
                    s.tls_started();
                }
                Event::Command(cmd) => answer(&mut s, &mut folder, cmd, turn),
                Event::IdleDone { tag } => {
                    response::tagged(s.out(), &tag, Status::Ok, None, "IDLE terminated");
                    s.done();
                }
                Event::Idle => {
                    // something changed while idling
                    response::data(s.out(), &Data::Exists(3));
                }
                Event::Logout | Event::TooManyErrors => {}
            }
            s.take_output(&mut out);
        }
        s.take_output(&mut out);
    }
    out
}

/// Where the response starting at `i` ends (after its CRLF), literals
/// skipped.
fn response_end(out: &[u8], mut i: usize) -> Result<usize, String> {
    loop {
        let nl = i + out[i..].iter().position(|&b| b == b'\n').ok_or("a response without its line end")?;
        if nl == i || out[nl - 1] != b'\r' {
            return Err(format!("a bare LF at octet {nl}"));
        }
        let line = &out[i..nl - 1];
        if let Some(p) = line.iter().position(|&b| b == b'\r') {
            return Err(format!("a bare CR at octet {}", i + p));
        }
        i = nl + 1;
        match literal_len(line) {
            Some(n) if out.len() - i < n => return Err(format!("a literal of {n} cut short at the end")),
            Some(n) => i += n,
            None => return Ok(i),
        }
    }
}

/// `{n}` at the end of a line.
fn literal_len(line: &[u8]) -> Option<usize> {
    let body = line.strip_suffix(b"}")?;
    let open = body.iter().rposition(|&b| b == b'{')?;
    let digits = &body[open + 1..];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn is_tag_char(b: u8) -> bool {
    (0x21..0x7f).contains(&b) && !b"(){%*\"\\+".contains(&b)
}

/// The values of a data response: quoted strings closed on their line,
/// literals exact, parentheses balanced, nothing 8-bit or control outside
/// literals.
fn check_values(r: &[u8]) -> Result<(), String> {
    let mut depth = 0i32;
    let mut j = 0;
    let body = r.strip_suffix(b"\r\n").ok_or("no CRLF")?;
    while j < body.len() {
        match body[j] {
            b'"' => {
                j += 1;
                loop {
                    match body.get(j) {
                        Some(b'\\') if matches!(body.get(j + 1), Some(b'"' | b'\\')) => j += 2,
                        Some(b'"') => break,
                        Some(b) if (0x20..0x7f).contains(b) && *b != b'\\' => j += 1,
                        other => return Err(format!("a bad quoted string at {j}: {other:?}")),
                    }
                }
                j += 1;
            }
            b'{' => {
                let close = j + body[j..].iter().position(|&b| b == b'}').ok_or("an unclosed {")?;
                let n: usize = std::str::from_utf8(&body[j + 1..close])
                    .ok()
                    .and_then(|d| d.parse().ok())
                    .ok_or(format!("a bad literal length at {j}"))?;
                if body.get(close + 1..close + 3) != Some(b"\r\n") {
                    return Err(format!("a literal length not followed by CRLF at {close}"));
                }
                j = close + 3 + n;
                if j > body.len() {
                    return Err("a literal past the response".into());
                }
            }
            b'(' => {
                depth += 1;
                j += 1;
            }
            b')' => {
                depth -= 1;
                if depth < 0 {
                    return Err(format!("an unopened ) at {j}"));
                }
                j += 1;
            }
            b if !(0x20..0x7f).contains(&b) => return Err(format!("octet {b:#x} outside a literal at {j}")),
            _ => j += 1,
        }
    }
    if depth != 0 {
        return Err("unbalanced parentheses".into());
    }
    Ok(())
}

/// Status text (after `OK `/`NO `/...): printable, an optional balanced `[code]`.
fn check_status_text(t: &[u8]) -> Result<(), String> {
    let body = t.strip_suffix(b"\r\n").ok_or("no CRLF")?;
    if let Some(b) = body.iter().find(|b| !(0x20..0x7f).contains(*b)) {
        return Err(format!("octet {b:#x} in status text"));
    }
    if body.starts_with(b"[") && !body.contains(&b']') {
        return Err("an unclosed response code".into());
    }
    Ok(())
}

fn check_response(r: &[u8]) -> Result<(), String> {
    if let Some(rest) = r.strip_prefix(b"+ ") {
        return check_status_text(rest);
    }
    if let Some(rest) = r.strip_prefix(b"* ") {
        for status in [&b"OK "[..], b"NO ", b"BAD ", b"BYE ", b"PREAUTH "] {
            if let Some(t) = rest.strip_prefix(status) {
                return check_status_text(t);
            }
        }
        let word_end = rest.iter().position(|&b| b == b' ' || b == b'\r').unwrap_or(rest.len());
        if word_end == 0 {
            return Err("an empty untagged response".into());
        }
        if rest[..word_end].iter().all(u8::is_ascii_digit) {
            let kind = &rest[word_end..];
            let known = [&b" FETCH ("[..], b" EXISTS\r\n", b" RECENT\r\n", b" EXPUNGE\r\n"];
            if !known.iter().any(|k| kind.starts_with(k)) {
                return Err("an unknown numbered response".into());
            }
            if kind.starts_with(b" FETCH (") && !kind.ends_with(b")\r\n") {
                return Err("a FETCH response not closed".into());
            }
        }
        return check_values(rest);
    }
    let sp = r.iter().position(|&b| b == b' ').ok_or("a response without a space")?;
    let tag = &r[..sp];
    if tag.is_empty() || !tag.iter().all(|&b| is_tag_char(b)) {
        return Err(format!("a bad tag {:?}", String::from_utf8_lossy(tag)));
    }
    let rest = &r[sp + 1..];
    for status in [&b"OK "[..], b"NO ", b"BAD "] {
        if let Some(t) = rest.strip_prefix(status) {
            return check_status_text(t);
        }
    }
    Err("a tagged response without OK, NO or BAD".into())
}

/// Every response in `out` is well formed; the first is the greeting.
pub fn check(out: &[u8]) -> Result<(), String> {
    if !out.starts_with(b"* OK ") {
        return Err("no greeting".into());
    }
    let mut i = 0;
    while i < out.len() {
        let end = response_end(out, i)?;
        check_response(&out[i..end]).map_err(|e| {
            format!("{e} in response at octet {i}: {:?}", String::from_utf8_lossy(&out[i..end.min(i + 400)]))
        })?;
        i = end;
    }
    Ok(())
}

/// One run from a stream of choices: settings, input, cuts; the output checked.
pub fn run(data: &[u8]) -> Result<(), String> {
    let mut c = Choices::new(data);
    let (settings, tls) = settings(&mut c);
    let raw = c.chance(30);
    let input = if raw { c.bytes(4096) } else { session_input(&mut c) };
    // the cuts come from the stream's start again: the input ate the rest
    let mut c2 = Choices::new(data);
    let cuts = cuts(&mut c2, input.len());
    let out = drive(settings, tls, &input, &cuts);
    check(&out).map_err(|e| format!("{e}\ninput: {:?}", String::from_utf8_lossy(&input)))
}
