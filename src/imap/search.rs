//! SEARCH (RFC 3501 §6.4.4, CHARSET UTF-8; RFC 7162 MODSEQ) evaluated over a
//! folder's listing: flags, sizes, dates, sequence and UID sets from the
//! listing; FROM/TO/CC/BCC/SUBJECT and the SENT dates from the cached parse;
//! HEADER from the message's header block (RFC 2047 decoded); BODY and TEXT
//! from the bytes with transfer encodings and charsets decoded by
//! mail-parser. Strings match as case-insensitive substrings (Unicode
//! lower case).
//!
//! The key is compiled once per search (sequence sets resolved to sorted
//! intervals, needles lowered, dates to day numbers) and, within every AND
//! and OR, the keys the listing answers are tried before those that read
//! the store, so a message is only read when the cheap keys leave it in
//! question — and then at most once: its bytes, parse and decoded text are
//! kept while it is evaluated.

use super::fetch::Source;
use crate::mailbox::parse::{header_end, Parsed};
use crate::mailbox::{Flag, MailboxError, MessageInfo};
use crate::proto::imap::command::SearchKey;
use crate::proto::imap::types::SequenceSet;
use mail_parser::{HeaderName, HeaderValue, Message, MessageParser, PartType};

/// What a search needs besides the messages.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// UIDs the session shows as `\Recent`.
    pub recent: &'a [u32],
    /// The server's local offset, seconds east of UTC, for BEFORE/ON/SINCE
    /// (dates of INTERNALDATE compare in the server's time zone, RFC 3501).
    pub tz_offset: i32,
}

/// The indices into `messages` (sequence number − 1) that match `key`, in
/// order. `messages` is the session's view of the folder, ascending UID.
/// A message whose file another session expunged meanwhile
/// ([`MailboxError::NoSuchMessage`]) does not match; any other store error
/// ends the search.
pub fn search(
    key: &SearchKey,
    messages: &[MessageInfo],
    ctx: Context<'_>,
    src: &mut dyn Source,
) -> Result<Vec<usize>, MailboxError> {
    let mut recent = ctx.recent.to_vec();
    recent.sort_unstable();
    let env = Env {
        last_seq: u32::try_from(messages.len()).unwrap_or(u32::MAX),
        max_uid: messages.last().map_or(0, |m| m.uid),
        recent,
        tz_offset: i64::from(ctx.tz_offset),
    };
    let node = compile(key, &env);
    let mut out = Vec::new();
    for (i, info) in messages.iter().enumerate() {
        let seq = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let mut m = Msg { info, seq, loaded: Loaded::default() };
        match eval(&node, &mut m, &env, src) {
            Ok(true) => out.push(i),
            Ok(false) | Err(MailboxError::NoSuchMessage { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Whether `key` uses MODSEQ: the SEARCH response then carries the highest
/// MODSEQ of the messages found (RFC 7162 §3.1.5).
pub fn uses_modseq(key: &SearchKey) -> bool {
    match key {
        SearchKey::ModSeq { .. } => true,
        SearchKey::Not(k) => uses_modseq(k),
        SearchKey::Or(a, b) => uses_modseq(a) || uses_modseq(b),
        SearchKey::And(ks) => ks.iter().any(uses_modseq),
        _ => false,
    }
}

struct Env {
    last_seq: u32,
    max_uid: u32,
    /// Sorted.
    recent: Vec<u32>,
    tz_offset: i64,
}

impl Env {
    fn is_recent(&self, uid: u32) -> bool {
        self.recent.binary_search(&uid).is_ok()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmp {
    Before,
    On,
    Since,
}

impl Cmp {
    fn holds(self, day: i64, key: i64) -> bool {
        match self {
            Cmp::Before => day < key,
            Cmp::On => day == key,
            Cmp::Since => day >= key,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    From,
    To,
    Cc,
    Bcc,
    Subject,
}

/// A search key ready to evaluate.
#[derive(Debug)]
enum Node {
    Const(bool),
    Flag(Flag),
    Keyword(String),
    Recent,
    /// Sorted, disjoint `lo..=hi` intervals of sequence numbers or UIDs.
    Seq(Vec<(u32, u32)>),
    Uid(Vec<(u32, u32)>),
    Larger(u64),
    Smaller(u64),
    ModSeq(u64),
    Internal(Cmp, i64),
    Sent(Cmp, i64),
    Field(Field, String),
    /// Field name and lowered value (empty: the field is present).
    Header(String, String),
    Body(String),
    Text(String),
    Not(Box<Node>),
    And(Vec<Node>),
    Or(Box<Node>, Box<Node>),
}

/// What evaluating a node may read: the listing, the cached parse, the
/// header block, the whole message decoded.
fn cost(n: &Node) -> u8 {
    match n {
        Node::Sent(..) | Node::Field(..) => 1,
        Node::Header(..) => 2,
        Node::Body(_) | Node::Text(_) => 3,
        Node::Not(k) => cost(k),
        Node::And(ks) => ks.iter().map(cost).max().unwrap_or(0),
        Node::Or(a, b) => cost(a).max(cost(b)),
        _ => 0,
    }
}

fn intervals(set: &SequenceSet, largest: u32) -> Vec<(u32, u32)> {
    let mut v: Vec<(u32, u32)> = set.0.iter().map(|r| r.resolve(largest)).collect();
    v.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::with_capacity(v.len());
    for (lo, hi) in v {
        match merged.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    merged
}

fn in_intervals(v: &[(u32, u32)], n: u32) -> bool {
    let i = v.partition_point(|&(_, hi)| hi < n);
    v.get(i).is_some_and(|&(lo, _)| lo <= n)
}

fn lower(s: &str) -> String {
    s.to_lowercase()
}

fn compile(key: &SearchKey, env: &Env) -> Node {
    use SearchKey as K;
    let not = |n: Node| Node::Not(Box::new(n));
    let day = |d: &crate::proto::imap::types::Date| d.days_since_epoch();
    match key {
        K::All => Node::Const(true),
        K::Answered => Node::Flag(Flag::Answered),
        K::Deleted => Node::Flag(Flag::Deleted),
        K::Draft => Node::Flag(Flag::Draft),
        K::Flagged => Node::Flag(Flag::Flagged),
        K::Seen => Node::Flag(Flag::Seen),
        K::Unanswered => not(Node::Flag(Flag::Answered)),
        K::Undeleted => not(Node::Flag(Flag::Deleted)),
        K::Undraft => not(Node::Flag(Flag::Draft)),
        K::Unflagged => not(Node::Flag(Flag::Flagged)),
        K::Unseen => not(Node::Flag(Flag::Seen)),
        K::Keyword(k) => Node::Keyword(k.clone()),
        K::Unkeyword(k) => not(Node::Keyword(k.clone())),
        K::Recent => Node::Recent,
        K::Old => not(Node::Recent),
        K::New => Node::And(vec![Node::Recent, not(Node::Flag(Flag::Seen))]),
        K::SequenceSet(s) => Node::Seq(intervals(s, env.last_seq)),
        K::Uid(s) => Node::Uid(intervals(s, env.max_uid)),
        K::Larger(n) => Node::Larger(u64::from(*n)),
        K::Smaller(n) => Node::Smaller(u64::from(*n)),
        K::ModSeq { modseq, .. } => Node::ModSeq(*modseq),
        K::Before(d) => Node::Internal(Cmp::Before, day(d)),
        K::On(d) => Node::Internal(Cmp::On, day(d)),
        K::Since(d) => Node::Internal(Cmp::Since, day(d)),
        K::SentBefore(d) => Node::Sent(Cmp::Before, day(d)),
        K::SentOn(d) => Node::Sent(Cmp::On, day(d)),
        K::SentSince(d) => Node::Sent(Cmp::Since, day(d)),
        K::From(s) => Node::Field(Field::From, lower(s)),
        K::To(s) => Node::Field(Field::To, lower(s)),
        K::Cc(s) => Node::Field(Field::Cc, lower(s)),
        K::Bcc(s) => Node::Field(Field::Bcc, lower(s)),
        K::Subject(s) => Node::Field(Field::Subject, lower(s)),
        K::Header(name, value) => Node::Header(name.clone(), lower(value)),
        K::Body(s) => Node::Body(lower(s)),
        K::Text(s) => Node::Text(lower(s)),
        K::Not(k) => not(compile(k, env)),
        K::Or(a, b) => {
            let (a, b) = (compile(a, env), compile(b, env));
            if cost(&b) < cost(&a) {
                Node::Or(Box::new(b), Box::new(a))
            } else {
                Node::Or(Box::new(a), Box::new(b))
            }
        }
        K::And(ks) => {
            let mut v: Vec<Node> = ks.iter().map(|k| compile(k, env)).collect();
            v.sort_by_key(cost);
            Node::And(v)
        }
    }
}

/// What has been read of the message being evaluated.
#[derive(Default)]
struct Loaded {
    bytes: Option<Vec<u8>>,
    parsed: Option<Parsed>,
    /// Each header field: its name and its value decoded and lowered.
    headers: Option<Vec<(String, String)>>,
    /// The decoded text of the body's text parts, lowered.
    body: Option<String>,
}

struct Msg<'a> {
    info: &'a MessageInfo,
    seq: u32,
    loaded: Loaded,
}

impl Msg<'_> {
    fn bytes(&mut self, src: &mut dyn Source) -> Result<&[u8], MailboxError> {
        if self.loaded.bytes.is_none() {
            self.loaded.bytes = Some(src.bytes(self.info.uid)?);
        }
        Ok(self.loaded.bytes.as_deref().unwrap_or_default())
    }

    fn parsed(&mut self, src: &mut dyn Source) -> Result<&Parsed, MailboxError> {
        if self.loaded.parsed.is_none() {
            self.loaded.parsed = Some(src.parsed(self.info.uid)?);
        }
        // just filled in
        Ok(self.loaded.parsed.get_or_insert_with(Parsed::default))
    }

    fn headers(&mut self, src: &mut dyn Source) -> Result<&[(String, String)], MailboxError> {
        if self.loaded.headers.is_none() {
            let h = decoded_headers(self.bytes(src)?);
            self.loaded.headers = Some(h);
        }
        Ok(self.loaded.headers.as_deref().unwrap_or_default())
    }

    fn body(&mut self, src: &mut dyn Source) -> Result<&str, MailboxError> {
        if self.loaded.body.is_none() {
            let b = body_text(self.bytes(src)?);
            self.loaded.body = Some(b);
        }
        Ok(self.loaded.body.as_deref().unwrap_or_default())
    }
}

fn eval(n: &Node, m: &mut Msg<'_>, env: &Env, src: &mut dyn Source) -> Result<bool, MailboxError> {
    let info = m.info;
    Ok(match n {
        Node::Const(b) => *b,
        Node::Flag(f) => info.flags.contains(f),
        Node::Keyword(k) => info.flags.iter().any(|f| matches!(f, Flag::Keyword(have) if have.eq_ignore_ascii_case(k))),
        Node::Recent => env.is_recent(info.uid),
        Node::Seq(v) => in_intervals(v, m.seq),
        Node::Uid(v) => in_intervals(v, info.uid),
        Node::Larger(n) => info.size > *n,
        Node::Smaller(n) => info.size < *n,
        Node::ModSeq(n) => info.modseq >= *n,
        Node::Internal(cmp, key) => {
            let ts = i64::try_from(info.internal_date).unwrap_or(i64::MAX / 2);
            cmp.holds((ts + env.tz_offset).div_euclid(86_400), *key)
        }
        Node::Sent(cmp, key) => sent_day(m.parsed(src)?).is_some_and(|d| cmp.holds(d, *key)),
        Node::Field(f, needle) => {
            let s = &m.parsed(src)?.search;
            let hay = match f {
                Field::From => &s.from,
                Field::To => &s.to,
                Field::Cc => &s.cc,
                Field::Bcc => &s.bcc,
                Field::Subject => &s.subject,
            };
            contains(hay, needle)
        }
        Node::Header(name, needle) => {
            m.headers(src)?.iter().any(|(n, v)| n.eq_ignore_ascii_case(name) && v.contains(needle.as_str()))
        }
        Node::Body(needle) => m.body(src)?.contains(needle.as_str()),
        Node::Text(needle) => {
            let in_header = m.headers(src)?.iter().any(|(n, v)| v.contains(needle.as_str()) || contains(n, needle));
            in_header || m.body(src)?.contains(needle.as_str())
        }
        Node::Not(k) => !eval(k, m, env, src)?,
        Node::And(ks) => {
            for k in ks {
                if !eval(k, m, env, src)? {
                    return Ok(false);
                }
            }
            true
        }
        Node::Or(a, b) => eval(a, m, env, src)? || eval(b, m, env, src)?,
    })
}

/// `hay` holds `needle` (already lowered), ignoring case.
fn contains(hay: &str, needle: &str) -> bool {
    needle.is_empty() || lower(hay).contains(needle)
}

/// The day of the Date: field as written, its own zone disregarded (RFC
/// 3501 SENT*); the instant's UTC day when the raw field cannot be read.
fn sent_day(p: &Parsed) -> Option<i64> {
    let written = p.envelope.date.as_deref().and_then(mail_parser::DateTime::parse_rfc822).filter(|d| d.is_valid());
    match written {
        Some(d) => {
            let date = crate::proto::imap::types::Date { year: d.year, month: d.month, day: d.day };
            Some(date.days_since_epoch())
        }
        None => p.search.sent.map(|t| t.div_euclid(86_400)),
    }
}

/// A header value as text: unstructured fields decoded (RFC 2047), others
/// as they stand, unfolded.
fn value_text(bytes: &[u8], h: &mail_parser::Header<'_>) -> String {
    match &h.value {
        HeaderValue::Text(t) => t.to_string(),
        HeaderValue::TextList(l) => l.join(", "),
        _ => {
            let raw = bytes.get(h.offset_start as usize..h.offset_end as usize).unwrap_or_default();
            let unfolded: Vec<u8> = raw.iter().copied().filter(|&c| c != b'\r' && c != b'\n').collect();
            String::from_utf8_lossy(&unfolded).trim().to_string()
        }
    }
}

/// The message's header fields, every value read as unstructured text
/// (encoded words decoded, the rest kept), lowered.
fn decoded_headers(bytes: &[u8]) -> Vec<(String, String)> {
    let block = bytes.get(..header_end(bytes) as usize).unwrap_or(bytes);
    // mail-parser uses its default for unnamed fields only once some field
    // is named; naming one as text makes every field unstructured text
    let parser = MessageParser::new().header_text(HeaderName::Subject).default_header_text();
    let Some(m) = parser.parse_headers(block) else { return Vec::new() };
    m.parts
        .first()
        .map(|p| p.headers.iter().map(|h| (h.name.as_str().to_string(), lower(&value_text(block, h)))).collect())
        .unwrap_or_default()
}

/// How deep enclosed messages are searched.
const MAX_NESTING: usize = 16;

/// The decoded text of every text part (HTML as it stands), in order, lowered.
fn body_text(bytes: &[u8]) -> String {
    let mut out = String::new();
    match MessageParser::default().parse(bytes) {
        Some(m) => collect_text(&m, &mut out, 0),
        None => out.push_str(&String::from_utf8_lossy(bytes.get(header_end(bytes) as usize..).unwrap_or_default())),
    }
    lower(&out)
}

fn collect_text(m: &Message<'_>, out: &mut String, depth: usize) {
    for p in &m.parts {
        match &p.body {
            PartType::Text(t) | PartType::Html(t) => {
                out.push_str(t);
                out.push('\n');
            }
            PartType::Message(inner) if depth < MAX_NESTING => collect_text(inner, out, depth + 1),
            _ => {}
        }
    }
}

#[cfg(test)]
#[path = "search_tests.rs"]
mod tests;
