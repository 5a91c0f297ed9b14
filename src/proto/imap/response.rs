//! Writes IMAP server responses (RFC 3501 §7): tagged and untagged status
//! lines with response codes, untagged data, the `+ ` continuation, and the
//! encoders they are built from — strings (atom, quoted or literal, chosen
//! so that no CR, LF, 8-bit octet or quote-special is ever sent other than
//! inside a literal), `NIL`, sequence sets, flag lists, INTERNALDATE — plus
//! [`Envelope`] and [`BodyStructure`], plain structs the store fills from
//! its parse of each message, with their §7.4.2 encodings.
//!
//! Every function appends to a `Vec<u8>` the caller owns; nothing here
//! decides what to answer (that is the core's) or reads a message (the
//! store's). Human-readable text is stripped of CR, LF and other controls.

use super::types::{DateTime, Flag, Section, SectionText, SequenceSet, StatusItem};
use std::io::Write;

/// The status of a status response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
    PreAuth,
    Bye,
}

impl Status {
    fn name(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::No => "NO",
            Status::Bad => "BAD",
            Status::PreAuth => "PREAUTH",
            Status::Bye => "BYE",
        }
    }
}

/// A response code (RFC 3501 §7.1, RFC 4315 UIDPLUS, RFC 5530, RFC 7162).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Code {
    Alert,
    Capability(Vec<String>),
    Parse,
    PermanentFlags(Vec<Flag>),
    ReadOnly,
    ReadWrite,
    TryCreate,
    UidNext(u32),
    UidValidity(u32),
    Unseen(u32),
    BadCharset(Vec<String>),
    AppendUid { validity: u32, uid: u32 },
    CopyUid { validity: u32, source: SequenceSet, dest: SequenceSet },
    UidNotSticky,
    HighestModSeq(u64),
    NoModSeq,
    Modified(SequenceSet),
    Closed,
    Nonexistent,
    AlreadyExists,
    AuthenticationFailed,
    AuthorizationFailed,
    Unavailable,
    InUse,
    PrivacyRequired,
    Cannot,
    Limit,
    OverQuota,
    ServerBug,
    ClientBug,
    Expunged,
    NoPerm,
    ContactAdmin,
}

fn write_code(out: &mut Vec<u8>, code: &Code) {
    let simple = match code {
        Code::Alert => "ALERT",
        Code::Parse => "PARSE",
        Code::ReadOnly => "READ-ONLY",
        Code::ReadWrite => "READ-WRITE",
        Code::TryCreate => "TRYCREATE",
        Code::UidNotSticky => "UIDNOTSTICKY",
        Code::NoModSeq => "NOMODSEQ",
        Code::Closed => "CLOSED",
        Code::Nonexistent => "NONEXISTENT",
        Code::AlreadyExists => "ALREADYEXISTS",
        Code::AuthenticationFailed => "AUTHENTICATIONFAILED",
        Code::AuthorizationFailed => "AUTHORIZATIONFAILED",
        Code::Unavailable => "UNAVAILABLE",
        Code::InUse => "INUSE",
        Code::PrivacyRequired => "PRIVACYREQUIRED",
        Code::Cannot => "CANNOT",
        Code::Limit => "LIMIT",
        Code::OverQuota => "OVERQUOTA",
        Code::ServerBug => "SERVERBUG",
        Code::ClientBug => "CLIENTBUG",
        Code::Expunged => "EXPUNGED",
        Code::NoPerm => "NOPERM",
        Code::ContactAdmin => "CONTACTADMIN",
        _ => "",
    };
    out.push(b'[');
    if !simple.is_empty() {
        out.extend_from_slice(simple.as_bytes());
    }
    // writes to a Vec cannot fail
    let _ = match code {
        Code::Capability(caps) => {
            atoms(out, b"CAPABILITY", caps);
            Ok(())
        }
        Code::PermanentFlags(flags) => {
            out.extend_from_slice(b"PERMANENTFLAGS ");
            flag_list(out, flags);
            Ok(())
        }
        Code::UidNext(n) => write!(out, "UIDNEXT {n}"),
        Code::UidValidity(n) => write!(out, "UIDVALIDITY {n}"),
        Code::Unseen(n) => write!(out, "UNSEEN {n}"),
        Code::BadCharset(cs) => {
            out.extend_from_slice(b"BADCHARSET");
            if !cs.is_empty() {
                out.push(b' ');
                list(out, cs, |out, c| astring(out, c.as_bytes()));
            }
            Ok(())
        }
        Code::AppendUid { validity, uid } => write!(out, "APPENDUID {validity} {uid}"),
        Code::CopyUid { validity, source, dest } => write!(out, "COPYUID {validity} {source} {dest}"),
        Code::HighestModSeq(n) => write!(out, "HIGHESTMODSEQ {n}"),
        Code::Modified(set) => write!(out, "MODIFIED {set}"),
        _ => Ok(()),
    };
    out.extend_from_slice(b"] ");
}

/// `HEAD A B C` for names that must be atoms (capabilities, ENABLED);
/// anything not an atom is dropped rather than sent broken.
fn atoms(out: &mut Vec<u8>, head: &[u8], names: &[String]) {
    out.extend_from_slice(head);
    for n in names.iter().filter(|n| !n.is_empty() && n.bytes().all(super::command::is_atom_char)) {
        out.push(b' ');
        out.extend_from_slice(n.as_bytes());
    }
}

/// Human-readable text: printable ASCII only, never empty (resp-text needs
/// text), never starting with `[` (it would read as a code).
fn text(out: &mut Vec<u8>, t: &str) {
    let start = out.len();
    out.extend(t.bytes().filter(|b| (0x20..0x7f).contains(b)));
    if out.len() == start {
        out.extend_from_slice(b"done");
    } else if out[start] == b'[' {
        out.splice(start..start, *b"- ");
    }
}

fn status_line(out: &mut Vec<u8>, tag: &str, status: Status, code: Option<&Code>, t: &str) {
    out.extend_from_slice(tag.as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.name().as_bytes());
    out.push(b' ');
    if let Some(c) = code {
        write_code(out, c);
    }
    text(out, t);
    out.extend_from_slice(b"\r\n");
}

/// `<tag> OK|NO|BAD [code] text`. The tag is the one the command carried
/// (the reader only accepts tags of safe characters).
pub fn tagged(out: &mut Vec<u8>, tag: &str, status: Status, code: Option<&Code>, t: &str) {
    status_line(out, tag, status, code, t);
}

/// `* OK|NO|BAD|PREAUTH|BYE [code] text`.
pub fn untagged(out: &mut Vec<u8>, status: Status, code: Option<&Code>, t: &str) {
    status_line(out, "*", status, code, t);
}

/// `+ text` (a continuation request; SASL challenges go through `proto::sasl`).
pub fn continuation(out: &mut Vec<u8>, t: &str) {
    out.extend_from_slice(b"+ ");
    text(out, t);
    out.extend_from_slice(b"\r\n");
}

fn is_quotable(b: u8) -> bool {
    (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'
}

/// An IMAP `string`: quoted when every octet is printable ASCII other than
/// `"` and `\`, else a literal.
pub fn string(out: &mut Vec<u8>, s: &[u8]) {
    if s.iter().all(|&b| is_quotable(b)) {
        out.push(b'"');
        out.extend_from_slice(s);
        out.push(b'"');
    } else {
        literal(out, s);
    }
}

/// `{n}` CRLF and the octets.
pub fn literal(out: &mut Vec<u8>, s: &[u8]) {
    let _ = write!(out, "{{{}}}\r\n", s.len());
    out.extend_from_slice(s);
}

/// An `astring`: a bare atom when it is one (and not `NIL`, which a reader
/// of an nstring would take for nothing), else a string.
pub fn astring(out: &mut Vec<u8>, s: &[u8]) {
    if !s.is_empty() && s.iter().all(|&b| super::command::is_astring_char(b)) && !s.eq_ignore_ascii_case(b"NIL") {
        out.extend_from_slice(s);
    } else {
        string(out, s);
    }
}

/// An `nstring`: `NIL` for none.
pub fn nstring(out: &mut Vec<u8>, s: Option<&[u8]>) {
    match s {
        Some(s) => string(out, s),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// `(\Seen $Keyword)`; keywords that are not atoms are left out.
pub fn flag_list(out: &mut Vec<u8>, flags: &[Flag]) {
    out.push(b'(');
    let mut first = true;
    for f in flags {
        let s = f.to_string();
        let name = s.strip_prefix('\\').unwrap_or(&s);
        if name.is_empty() || !(name == "*" || name.bytes().all(super::command::is_atom_char)) {
            continue;
        }
        if !first {
            out.push(b' ');
        }
        first = false;
        out.extend_from_slice(s.as_bytes());
    }
    out.push(b')');
}

/// `"dd-Mon-yyyy hh:mm:ss +zzzz"`.
pub fn date_time(out: &mut Vec<u8>, dt: &DateTime) {
    let _ = write!(out, "\"{dt}\"");
}

/// An e-mail address of an envelope (RFC 3501 §7.4.2). A group start has
/// `mailbox` = the group name and no host; a group end has neither.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Address {
    pub name: Option<Vec<u8>>,
    pub adl: Option<Vec<u8>>,
    pub mailbox: Option<Vec<u8>>,
    pub host: Option<Vec<u8>>,
}

impl Address {
    pub fn new(name: Option<&[u8]>, mailbox: &[u8], host: &[u8]) -> Address {
        Address {
            name: name.map(<[u8]>::to_vec),
            adl: None,
            mailbox: Some(mailbox.to_vec()),
            host: Some(host.to_vec()),
        }
    }

    pub fn group_start(name: &[u8]) -> Address {
        Address { mailbox: Some(name.to_vec()), ..Address::default() }
    }

    pub fn group_end() -> Address {
        Address::default()
    }
}

/// The ENVELOPE of a message: header values as they stand in the message
/// (still RFC 2047-encoded; IMAP sends them so), addresses parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Envelope {
    pub date: Option<Vec<u8>>,
    pub subject: Option<Vec<u8>>,
    pub from: Vec<Address>,
    /// Empty means "same as from" (RFC 3501 §7.4.2); the encoder fills it.
    pub sender: Vec<Address>,
    /// Empty means "same as from".
    pub reply_to: Vec<Address>,
    pub to: Vec<Address>,
    pub cc: Vec<Address>,
    pub bcc: Vec<Address>,
    pub in_reply_to: Option<Vec<u8>>,
    pub message_id: Option<Vec<u8>>,
}

fn address_list(out: &mut Vec<u8>, list: &[Address]) {
    if list.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for a in list {
        out.push(b'(');
        nstring(out, a.name.as_deref());
        out.push(b' ');
        nstring(out, a.adl.as_deref());
        out.push(b' ');
        nstring(out, a.mailbox.as_deref());
        out.push(b' ');
        nstring(out, a.host.as_deref());
        out.push(b')');
    }
    out.push(b')');
}

/// `(date subject from sender reply-to to cc bcc in-reply-to message-id)`.
pub fn envelope(out: &mut Vec<u8>, e: &Envelope) {
    out.push(b'(');
    nstring(out, e.date.as_deref());
    out.push(b' ');
    nstring(out, e.subject.as_deref());
    out.push(b' ');
    address_list(out, &e.from);
    out.push(b' ');
    address_list(out, if e.sender.is_empty() { &e.from } else { &e.sender });
    out.push(b' ');
    address_list(out, if e.reply_to.is_empty() { &e.from } else { &e.reply_to });
    for list in [&e.to, &e.cc, &e.bcc] {
        out.push(b' ');
        address_list(out, list);
    }
    out.push(b' ');
    nstring(out, e.in_reply_to.as_deref());
    out.push(b' ');
    nstring(out, e.message_id.as_deref());
    out.push(b')');
}

/// A Content-Disposition: `("attachment" ("filename" "a.pdf"))`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disposition {
    pub kind: String,
    pub params: Vec<(String, String)>,
}

/// The extension data both kinds of part share (BODYSTRUCTURE only).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extension {
    pub disposition: Option<Disposition>,
    pub language: Vec<String>,
    pub location: Option<String>,
}

/// A non-multipart part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinglePart {
    /// `text`, `image`, `message`, ... (sent as given; IMAP compares case-insensitively).
    pub media_type: String,
    pub subtype: String,
    pub params: Vec<(String, String)>,
    pub id: Option<String>,
    pub description: Option<Vec<u8>>,
    pub encoding: String,
    /// Octets of the body as transferred (still encoded).
    pub size: u32,
    /// Lines of the body, for `text/*` and `message/rfc822`.
    pub lines: Option<u32>,
    /// For `message/rfc822`: the enclosed message's envelope and structure.
    pub message: Option<Box<(Envelope, BodyStructure)>>,
    pub md5: Option<String>,
}

/// The structure of a message or part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodyStructure {
    Single { part: SinglePart, ext: Extension },
    Multipart { parts: Vec<BodyStructure>, subtype: String, params: Vec<(String, String)>, ext: Extension },
}

fn params(out: &mut Vec<u8>, ps: &[(String, String)]) {
    if ps.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    pairs(out, ps);
}

/// `("k" "v" "k2" "v2")`.
fn pairs(out: &mut Vec<u8>, ps: &[(String, String)]) {
    list(out, ps, |out, (k, v)| {
        string(out, k.as_bytes());
        out.push(b' ');
        string(out, v.as_bytes());
    });
}

/// `(a b c)`, each item written by `item`.
fn list<T>(out: &mut Vec<u8>, items: &[T], mut item: impl FnMut(&mut Vec<u8>, &T)) {
    out.push(b'(');
    for (i, t) in items.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        item(out, t);
    }
    out.push(b')');
}

fn extension(out: &mut Vec<u8>, ext: &Extension) {
    out.push(b' ');
    match &ext.disposition {
        Some(d) => {
            out.push(b'(');
            string(out, d.kind.as_bytes());
            out.push(b' ');
            params(out, &d.params);
            out.push(b')');
        }
        None => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    match ext.language.as_slice() {
        [] => out.extend_from_slice(b"NIL"),
        [one] => string(out, one.as_bytes()),
        many => list(out, many, |out, l| string(out, l.as_bytes())),
    }
    out.push(b' ');
    nstring(out, ext.location.as_ref().map(|l| l.as_bytes()));
}

/// An empty text part, shown where the grammar needs a part and there is none.
const EMPTY_PART: &[u8] = b"(\"text\" \"plain\" NIL NIL NIL \"7bit\" 0 0)";

/// The body structure: `extensible` gives BODYSTRUCTURE (with MD5,
/// disposition, language, location), otherwise BODY.
pub fn body_structure(out: &mut Vec<u8>, b: &BodyStructure, extensible: bool) {
    out.push(b'(');
    match b {
        BodyStructure::Single { part, ext } => {
            string(out, part.media_type.as_bytes());
            out.push(b' ');
            string(out, part.subtype.as_bytes());
            out.push(b' ');
            params(out, &part.params);
            out.push(b' ');
            nstring(out, part.id.as_ref().map(|s| s.as_bytes()));
            out.push(b' ');
            nstring(out, part.description.as_deref());
            out.push(b' ');
            string(out, part.encoding.as_bytes());
            let _ = write!(out, " {}", part.size);
            // the grammar decides by the type what follows the size: a
            // message/rfc822 part always has envelope, body and lines, a text
            // part lines, any other nothing — whatever the store filled in
            let is_message =
                part.media_type.eq_ignore_ascii_case("message") && part.subtype.eq_ignore_ascii_case("rfc822");
            if is_message {
                out.push(b' ');
                match &part.message {
                    Some(m) => {
                        envelope(out, &m.0);
                        out.push(b' ');
                        body_structure(out, &m.1, extensible);
                    }
                    None => {
                        envelope(out, &Envelope::default());
                        out.extend_from_slice(b" ");
                        out.extend_from_slice(EMPTY_PART);
                    }
                }
            }
            if is_message || part.media_type.eq_ignore_ascii_case("text") {
                let _ = write!(out, " {}", part.lines.unwrap_or(0));
            }
            if extensible {
                out.push(b' ');
                nstring(out, part.md5.as_ref().map(|s| s.as_bytes()));
                extension(out, ext);
            }
        }
        BodyStructure::Multipart { parts, subtype, params: ps, ext } => {
            if parts.is_empty() {
                // body-type-mpart needs a part; an empty multipart shows one empty text part
                out.extend_from_slice(EMPTY_PART);
            }
            for p in parts {
                body_structure(out, p, extensible);
            }
            out.push(b' ');
            string(out, subtype.as_bytes());
            if extensible {
                out.push(b' ');
                params(out, ps);
                extension(out, ext);
            }
        }
    }
    out.push(b')');
}

/// The specifier between the brackets, as the client wrote it (part
/// numbers, HEADER, HEADER.FIELDS with the field names as astrings, ...).
fn section_spec(out: &mut Vec<u8>, s: &Section) {
    for (i, p) in s.part.iter().enumerate() {
        let _ = write!(out, "{}{p}", if i > 0 { "." } else { "" });
    }
    let Some(text) = &s.text else { return };
    if !s.part.is_empty() {
        out.push(b'.');
    }
    let (name, fields): (&[u8], _) = match text {
        SectionText::Header => (b"HEADER", None),
        SectionText::HeaderFields(h) => (b"HEADER.FIELDS ", Some(h)),
        SectionText::HeaderFieldsNot(h) => (b"HEADER.FIELDS.NOT ", Some(h)),
        SectionText::Text => (b"TEXT", None),
        SectionText::Mime => (b"MIME", None),
    };
    out.extend_from_slice(name);
    if let Some(fields) = fields {
        list(out, fields, |out, f| astring(out, f.as_bytes()));
    }
}

/// One FETCH data item in a response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchItem<'a> {
    Flags(&'a [Flag]),
    InternalDate(DateTime),
    Rfc822Size(u32),
    Uid(u32),
    ModSeq(u64),
    Envelope(&'a Envelope),
    /// BODY (non-extensible).
    Body(&'a BodyStructure),
    BodyStructure(&'a BodyStructure),
    /// `BODY[section]<origin> data`; `None` data is NIL.
    BodySection {
        section: &'a Section,
        origin: Option<u32>,
        data: Option<&'a [u8]>,
    },
    Rfc822(Option<&'a [u8]>),
    Rfc822Header(Option<&'a [u8]>),
    Rfc822Text(Option<&'a [u8]>),
}

/// `* n FETCH (items)`. Message bodies always go as literals, whatever
/// they hold, so their size is exact.
pub fn fetch(out: &mut Vec<u8>, seq: u32, items: &[FetchItem<'_>]) {
    let _ = write!(out, "* {seq} FETCH (");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        let body = |out: &mut Vec<u8>, d: Option<&[u8]>| match d {
            Some(d) => literal(out, d),
            None => out.extend_from_slice(b"NIL"),
        };
        match item {
            FetchItem::Flags(f) => {
                out.extend_from_slice(b"FLAGS ");
                flag_list(out, f);
            }
            FetchItem::InternalDate(dt) => {
                out.extend_from_slice(b"INTERNALDATE ");
                date_time(out, dt);
            }
            FetchItem::Rfc822Size(n) => {
                let _ = write!(out, "RFC822.SIZE {n}");
            }
            FetchItem::Uid(n) => {
                let _ = write!(out, "UID {n}");
            }
            FetchItem::ModSeq(n) => {
                let _ = write!(out, "MODSEQ ({n})");
            }
            FetchItem::Envelope(e) => {
                out.extend_from_slice(b"ENVELOPE ");
                envelope(out, e);
            }
            FetchItem::Body(b) => {
                out.extend_from_slice(b"BODY ");
                body_structure(out, b, false);
            }
            FetchItem::BodyStructure(b) => {
                out.extend_from_slice(b"BODYSTRUCTURE ");
                body_structure(out, b, true);
            }
            FetchItem::BodySection { section, origin, data } => {
                out.extend_from_slice(b"BODY[");
                section_spec(out, section);
                out.push(b']');
                if let Some(o) = origin {
                    let _ = write!(out, "<{o}>");
                }
                out.push(b' ');
                body(out, *data);
            }
            FetchItem::Rfc822(d) => {
                out.extend_from_slice(b"RFC822 ");
                body(out, *d);
            }
            FetchItem::Rfc822Header(d) => {
                out.extend_from_slice(b"RFC822.HEADER ");
                body(out, *d);
            }
            FetchItem::Rfc822Text(d) => {
                out.extend_from_slice(b"RFC822.TEXT ");
                body(out, *d);
            }
        }
    }
    out.extend_from_slice(b")\r\n");
}

/// Untagged data other than FETCH.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Data<'a> {
    Capability(&'a [String]),
    Enabled(&'a [String]),
    Flags(&'a [Flag]),
    Exists(u32),
    Recent(u32),
    Expunge(u32),
    /// LIST or LSUB: attributes (`\HasChildren`, `\Sent`, ...), the
    /// hierarchy delimiter, the name.
    List {
        lsub: bool,
        attributes: &'a [String],
        delimiter: Option<char>,
        mailbox: &'a str,
    },
    Status {
        mailbox: &'a str,
        items: &'a [(StatusItem, u64)],
    },
    /// SEARCH results, with the highest MODSEQ when the search used MODSEQ.
    Search {
        ids: &'a [u32],
        modseq: Option<u64>,
    },
    /// One personal namespace with its prefix and delimiter; no others.
    Namespace {
        prefix: &'a str,
        delimiter: Option<char>,
    },
    /// ID: the server's field-value pairs, or NIL.
    Id(Option<&'a [(String, String)]>),
}

fn delimiter(out: &mut Vec<u8>, d: Option<char>) {
    match d {
        Some(c) if c.is_ascii() && is_quotable(c as u8) => {
            let _ = write!(out, "\"{c}\"");
        }
        Some(c @ ('"' | '\\')) => {
            let _ = write!(out, "\"\\{c}\"");
        }
        _ => out.extend_from_slice(b"NIL"),
    }
}

/// Write `* ...` untagged data.
pub fn data(out: &mut Vec<u8>, d: &Data<'_>) {
    out.extend_from_slice(b"* ");
    let _ = match d {
        Data::Capability(caps) => {
            atoms(out, b"CAPABILITY", caps);
            Ok(())
        }
        Data::Enabled(caps) => {
            atoms(out, b"ENABLED", caps);
            Ok(())
        }
        Data::Flags(f) => {
            out.extend_from_slice(b"FLAGS ");
            flag_list(out, f);
            Ok(())
        }
        Data::Exists(n) => write!(out, "{n} EXISTS"),
        Data::Recent(n) => write!(out, "{n} RECENT"),
        Data::Expunge(n) => write!(out, "{n} EXPUNGE"),
        Data::List { lsub, attributes, delimiter: d, mailbox } => {
            out.extend_from_slice(if *lsub { b"LSUB " } else { b"LIST " });
            let attrs: Vec<&String> = attributes
                .iter()
                .filter(|a| {
                    let n = a.strip_prefix('\\').unwrap_or(a);
                    !n.is_empty() && n.bytes().all(super::command::is_atom_char)
                })
                .collect();
            list(out, &attrs, |out, a| out.extend_from_slice(a.as_bytes()));
            out.push(b' ');
            delimiter(out, *d);
            out.push(b' ');
            astring(out, mailbox.as_bytes());
            Ok(())
        }
        Data::Status { mailbox, items } => {
            out.extend_from_slice(b"STATUS ");
            astring(out, mailbox.as_bytes());
            out.push(b' ');
            list(out, items, |out, (item, n)| {
                let _ = write!(out, "{} {n}", item.name());
            });
            Ok(())
        }
        Data::Search { ids, modseq } => {
            out.extend_from_slice(b"SEARCH");
            for id in ids.iter() {
                let _ = write!(out, " {id}");
            }
            match modseq {
                Some(m) => write!(out, " (MODSEQ {m})"),
                None => Ok(()),
            }
        }
        Data::Namespace { prefix, delimiter: d } => {
            out.extend_from_slice(b"NAMESPACE ((");
            string(out, prefix.as_bytes());
            out.push(b' ');
            delimiter(out, *d);
            out.extend_from_slice(b")) NIL NIL");
            Ok(())
        }
        Data::Id(None) => write!(out, "ID NIL"),
        Data::Id(Some(ps)) => {
            out.extend_from_slice(b"ID ");
            pairs(out, ps);
            Ok(())
        }
    };
    out.extend_from_slice(b"\r\n");
}
