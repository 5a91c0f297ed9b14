//! The IMAP4rev1 command grammar (RFC 3501 §9, with the extensions Postern
//! offers: LITERAL+, SASL-IR, IDLE, UIDPLUS, MOVE, NAMESPACE, ID, ENABLE,
//! UNSELECT, LIST-EXTENDED/SPECIAL-USE/CHILDREN return options, CONDSTORE).
//! [`parse`] turns one complete command in its wire form — the line with
//! each literal inlined as `{n}` CRLF and its n octets, as
//! [`super::reader::CommandReader`] assembles it — into a typed
//! [`Command`], or a [`BadCommand`] from which the core answers
//! `<tag> BAD ...` (or `* BAD ...` when no tag could be read).
//!
//! Only syntax lives here: whether a command is allowed in the session's
//! state, what a sequence number or mailbox names and which SASL mechanisms
//! exist are the core's and the service's. One exception: SEARCH in a
//! charset other than UTF-8 or US-ASCII is its own error
//! ([`CommandError::Charset`]), which the core answers `NO [BADCHARSET]`
//! rather than BAD. Bounds: a sequence set holds at most
//! [`super::types::MAX_SEQUENCE_RANGES`] ranges, search keys nest at most
//! [`MAX_SEARCH_DEPTH`] deep, ID carries at most 30 pairs.

use super::types::{
    Date, DateTime, Flag, Mailbox, Section, SectionText, SeqBound, SeqRange, SequenceSet, StatusItem,
    MAX_SEQUENCE_RANGES,
};
use crate::proto::sasl::Credentials;
use std::fmt;

/// How deep SEARCH keys may nest (parentheses, NOT, OR), so a hostile
/// command cannot exhaust the stack.
pub const MAX_SEARCH_DEPTH: usize = 32;

/// The most field-value pairs in ID (RFC 2971 §3.3).
pub const MAX_ID_PAIRS: usize = 30;

/// A parsed command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub tag: String,
    pub kind: CommandKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandKind {
    Capability,
    Noop,
    Logout,
    StartTls,
    /// The mechanism name upper-cased (`proto::sasl::Mechanism::parse`
    /// decides if we know it) and the SASL-IR initial response, `=` included
    /// as sent (the exchange reads `=` as empty).
    Authenticate {
        mechanism: String,
        initial: Option<Vec<u8>>,
    },
    Login(Credentials),
    Select {
        mailbox: Mailbox,
        condstore: bool,
    },
    Examine {
        mailbox: Mailbox,
        condstore: bool,
    },
    Create(Mailbox),
    Delete(Mailbox),
    Rename {
        from: Mailbox,
        to: Mailbox,
    },
    Subscribe(Mailbox),
    Unsubscribe(Mailbox),
    /// LIST, with RFC 5258 selection and return options; `patterns` has one
    /// entry for the classic form.
    List {
        selection: ListSelection,
        reference: String,
        patterns: Vec<String>,
        returns: ListReturn,
    },
    Lsub {
        reference: String,
        pattern: String,
    },
    Status {
        mailbox: Mailbox,
        items: Vec<StatusItem>,
    },
    Append {
        mailbox: Mailbox,
        flags: Vec<Flag>,
        date: Option<DateTime>,
        message: Vec<u8>,
    },
    Check,
    Close,
    Unselect,
    Expunge,
    /// UID EXPUNGE (UIDPLUS).
    UidExpunge(SequenceSet),
    Search {
        uid: bool,
        charset: Option<String>,
        /// All keys, ANDed.
        criteria: Vec<SearchKey>,
    },
    Fetch {
        uid: bool,
        set: SequenceSet,
        items: Vec<FetchAttr>,
        changed_since: Option<u64>,
    },
    Store {
        uid: bool,
        set: SequenceSet,
        unchanged_since: Option<u64>,
        mode: StoreMode,
        silent: bool,
        flags: Vec<Flag>,
    },
    Copy {
        uid: bool,
        set: SequenceSet,
        mailbox: Mailbox,
    },
    Move {
        uid: bool,
        set: SequenceSet,
        mailbox: Mailbox,
    },
    Idle,
    Namespace,
    /// `None` for `ID NIL`.
    Id(Option<Vec<(String, Option<String>)>>),
    /// Capability names upper-cased.
    Enable(Vec<String>),
}

/// RFC 5258 selection options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListSelection {
    pub subscribed: bool,
    pub remote: bool,
    pub recursive_match: bool,
    pub special_use: bool,
}

/// RFC 5258 / 6154 / 5819 return options.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListReturn {
    pub subscribed: bool,
    pub children: bool,
    pub special_use: bool,
    /// LIST-STATUS (RFC 5819): the STATUS items to return for each mailbox.
    pub status: Option<Vec<StatusItem>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreMode {
    Replace,
    Add,
    Remove,
}

/// A FETCH data item; macros (ALL, FAST, FULL) arrive expanded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchAttr {
    Envelope,
    Flags,
    InternalDate,
    Rfc822,
    Rfc822Header,
    Rfc822Size,
    Rfc822Text,
    Uid,
    /// BODY without a section: the non-extensible body structure.
    Body,
    BodyStructure,
    /// `BODY[section]<origin.count>` or `BODY.PEEK[...]`.
    BodySection {
        peek: bool,
        section: Section,
        partial: Option<(u32, u32)>,
    },
    ModSeq,
}

/// A SEARCH key (RFC 3501 §6.4.4, RFC 7162 MODSEQ). Strings are UTF-8
/// (checked); matching them is the store's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SearchKey {
    All,
    Answered,
    Bcc(String),
    Before(Date),
    Body(String),
    Cc(String),
    Deleted,
    Draft,
    Flagged,
    From(String),
    Header(String, String),
    Keyword(String),
    Larger(u32),
    New,
    Not(Box<SearchKey>),
    Old,
    On(Date),
    Or(Box<SearchKey>, Box<SearchKey>),
    Recent,
    Seen,
    SentBefore(Date),
    SentOn(Date),
    SentSince(Date),
    Since(Date),
    Smaller(u32),
    Subject(String),
    Text(String),
    To(String),
    Uid(SequenceSet),
    Unanswered,
    Undeleted,
    Undraft,
    Unflagged,
    Unkeyword(String),
    Unseen,
    SequenceSet(SequenceSet),
    /// A parenthesised list: all of them.
    And(Vec<SearchKey>),
    /// MODSEQ with its optional entry name and type (ignored by a server
    /// without per-flag modseqs, but parsed).
    ModSeq {
        entry: Option<(String, String)>,
        modseq: u64,
    },
}

/// What was wrong with a command; Display is the sentence sent after `BAD`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("The line is empty")]
    Empty,
    #[error("The tag is missing or not valid")]
    BadTag,
    #[error("The command name is missing")]
    NoCommand,
    #[error("Unknown command {0}")]
    Unknown(String),
    #[error("Expected {what} at octet {at}")]
    Expected { what: &'static str, at: usize },
    #[error("Unexpected text after the command at octet {0}")]
    Trailing(usize),
    #[error("The {0} is not valid UTF-8")]
    NotUtf8(&'static str),
    #[error("The number at octet {0} is out of range")]
    NumberRange(usize),
    #[error("The date at octet {0} is not a valid date")]
    BadDate(usize),
    #[error("The sequence set has more than {MAX_SEQUENCE_RANGES} ranges")]
    TooManyRanges,
    #[error("Search keys nest deeper than {MAX_SEARCH_DEPTH} levels")]
    TooDeep,
    #[error("ID has more than {MAX_ID_PAIRS} field-value pairs")]
    TooManyIdPairs,
    #[error("Unknown {what} {name}")]
    UnknownName { what: &'static str, name: String },
    /// SEARCH in a charset other than UTF-8 and US-ASCII: the core answers
    /// `NO [BADCHARSET (UTF-8 US-ASCII)]` rather than BAD (RFC 3501 §6.4.4).
    #[error("The charset {0} is not supported")]
    Charset(String),
    #[error("The command line is too long")]
    LineTooLong,
    #[error("The command has too many literals")]
    TooManyLiterals,
    #[error("{0}")]
    Literal(#[from] crate::proto::literal::LiteralError),
}

/// A command that cannot be run, with the tag if one was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadCommand {
    pub tag: Option<String>,
    pub error: CommandError,
}

impl BadCommand {
    /// The whole reply line, CRLF included: `<tag> BAD <sentence>` or `* BAD
    /// <sentence>`; a tagged SEARCH in a charset we lack is `<tag> NO
    /// [BADCHARSET (UTF-8 US-ASCII)] <sentence>` (RFC 3501 §6.4.4).
    pub fn line(&self) -> Vec<u8> {
        let tag = self.tag.as_deref().unwrap_or("*");
        let mut out = match (&self.error, &self.tag) {
            (CommandError::Charset(_), Some(_)) => format!("{tag} NO [BADCHARSET (UTF-8 US-ASCII)] ").into_bytes(),
            _ => format!("{tag} BAD ").into_bytes(),
        };
        // every piece of the message is ours or an atom/tag we read, but a
        // reply line must never be split, whatever a future variant holds
        out.extend(self.error.to_string().bytes().filter(|b| (0x20..0x7f).contains(b)));
        out.extend_from_slice(b"\r\n");
        out
    }
}

impl fmt::Display for BadCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.line()))
    }
}

type R<T> = Result<T, CommandError>;

fn is_ctl(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

/// ATOM-CHAR: any 7-bit CHAR but atom-specials.
pub(crate) fn is_atom_char(b: u8) -> bool {
    b > 0 && b < 0x80 && !is_ctl(b) && !b"(){ %*\"\\]".contains(&b)
}

/// ASTRING-CHAR: ATOM-CHAR or `]`.
pub(crate) fn is_astring_char(b: u8) -> bool {
    is_atom_char(b) || b == b']'
}

fn is_list_char(b: u8) -> bool {
    is_astring_char(b) || b == b'%' || b == b'*'
}

/// A client-supplied name as an error shows it: at most 32 characters
/// (our atoms hold no CR, LF or controls).
fn shown(name: &[u8]) -> String {
    String::from_utf8_lossy(name).chars().take(32).collect()
}

/// The tag a command line starts with, if it has a valid one followed by a
/// space or the end of the line.
pub fn read_tag(input: &[u8]) -> Option<String> {
    let mut c = Cursor { buf: input, pos: 0 };
    let t = c.take_while(|b| is_astring_char(b) && b != b'+');
    (!t.is_empty() && matches!(c.peek(), None | Some(b' '))).then(|| String::from_utf8_lossy(t).into_owned())
}

/// Parse one complete command in wire form (no final line end).
pub fn parse(input: &[u8]) -> Result<Command, BadCommand> {
    if input.is_empty() {
        return Err(BadCommand { tag: None, error: CommandError::Empty });
    }
    let Some(tag) = read_tag(input) else {
        return Err(BadCommand { tag: None, error: CommandError::BadTag });
    };
    let mut c = Cursor { buf: input, pos: tag.len() };
    if !c.eat(b' ') || c.at_end() {
        return Err(BadCommand { tag: Some(tag), error: CommandError::NoCommand });
    }
    let kind = c.command().and_then(|k| c.end().map(|()| k));
    kind.map(|kind| Command { tag: tag.clone(), kind }).map_err(|error| BadCommand { tag: Some(tag), error })
}

/// Whether an IDLE client line is `DONE` (any case).
pub fn is_done(line: &[u8]) -> bool {
    line.eq_ignore_ascii_case(b"DONE")
}

pub(crate) struct Cursor<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    fn expected(&self, what: &'static str) -> CommandError {
        CommandError::Expected { what, at: self.pos }
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, b: u8, what: &'static str) -> R<()> {
        if self.eat(b) {
            Ok(())
        } else {
            Err(self.expected(what))
        }
    }

    fn sp(&mut self) -> R<()> {
        self.expect(b' ', "a space")
    }

    fn end(&self) -> R<()> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(CommandError::Trailing(self.pos))
        }
    }

    fn at_end(&self) -> bool {
        self.pos == self.buf.len()
    }

    /// Case-insensitive keyword followed by a non-atom character.
    fn keyword(&mut self, kw: &str) -> bool {
        let end = self.pos + kw.len();
        let matches = self.buf.get(self.pos..end).is_some_and(|s| s.eq_ignore_ascii_case(kw.as_bytes()))
            && !self.buf.get(end).is_some_and(|&b| is_atom_char(b));
        if matches {
            self.pos = end;
        }
        matches
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        &self.buf[start..self.pos]
    }

    fn atom(&mut self, what: &'static str) -> R<&'a [u8]> {
        let a = self.take_while(is_atom_char);
        if a.is_empty() {
            return Err(self.expected(what));
        }
        Ok(a)
    }

    fn upper_atom(&mut self, what: &'static str) -> R<String> {
        Ok(String::from_utf8_lossy(self.atom(what)?).to_ascii_uppercase())
    }

    fn number64(&mut self, what: &'static str) -> R<u64> {
        let at = self.pos;
        let d = self.take_while(|b| b.is_ascii_digit());
        if d.is_empty() {
            return Err(self.expected(what));
        }
        if d.len() > 20 {
            return Err(CommandError::NumberRange(at));
        }
        std::str::from_utf8(d).ok().and_then(|s| s.parse::<u64>().ok()).ok_or(CommandError::NumberRange(at))
    }

    /// `number`: 32 bits.
    fn number(&mut self, what: &'static str) -> R<u32> {
        let at = self.pos;
        u32::try_from(self.number64(what)?).map_err(|_| CommandError::NumberRange(at))
    }

    fn nz_number(&mut self, what: &'static str) -> R<u32> {
        let at = self.pos;
        match self.number(what)? {
            0 => Err(CommandError::NumberRange(at)),
            n => Ok(n),
        }
    }

    /// `mod-sequence-value`: 1..2^63-1 (RFC 7162); `zero` allows 0 (mod-sequence-valzer).
    fn modseq(&mut self, zero: bool) -> R<u64> {
        let at = self.pos;
        let n = self.number64("a mod-sequence value")?;
        if (n == 0 && !zero) || n > i64::MAX as u64 {
            return Err(CommandError::NumberRange(at));
        }
        Ok(n)
    }

    fn quoted(&mut self) -> R<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(b @ (b'"' | b'\\')) => out.push(b),
                        _ => return Err(self.expected("a quoted special after the backslash")),
                    }
                    self.pos += 1;
                }
                // RFC 9051 utf8-quoted: 8-bit allowed, never CR, LF or NUL
                Some(b) if b != b'\r' && b != b'\n' && b != 0 => {
                    out.push(b);
                    self.pos += 1;
                }
                _ => return Err(self.expected("the closing quote")),
            }
        }
    }

    /// `{n}` or `{n+}`, CRLF and n octets (the reader put them there).
    fn literal(&mut self) -> R<Vec<u8>> {
        let at = self.pos;
        let n = self.number64("a literal size")?;
        self.eat(b'+');
        self.expect(b'}', "the closing brace of the literal")?;
        if !(self.eat(b'\r') && self.eat(b'\n')) {
            return Err(self.expected("the line end after a literal"));
        }
        let n = usize::try_from(n).map_err(|_| CommandError::NumberRange(at))?;
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or(CommandError::NumberRange(at))?;
        let v = self.buf[self.pos..end].to_vec();
        self.pos = end;
        Ok(v)
    }

    /// `string`: quoted or literal.
    fn string_opt(&mut self) -> Option<R<Vec<u8>>> {
        if self.eat(b'"') {
            Some(self.quoted())
        } else if self.eat(b'{') {
            Some(self.literal())
        } else {
            None
        }
    }

    pub(crate) fn string(&mut self, what: &'static str) -> R<Vec<u8>> {
        self.string_opt().unwrap_or_else(|| Err(self.expected(what)))
    }

    pub(crate) fn astring(&mut self, what: &'static str) -> R<Vec<u8>> {
        if let Some(s) = self.string_opt() {
            return s;
        }
        let a = self.take_while(is_astring_char);
        if a.is_empty() {
            return Err(self.expected(what));
        }
        Ok(a.to_vec())
    }

    pub(crate) fn nstring(&mut self, what: &'static str) -> R<Option<Vec<u8>>> {
        if self.keyword("NIL") {
            return Ok(None);
        }
        self.string(what).map(Some)
    }

    fn utf8(v: Vec<u8>, what: &'static str) -> R<String> {
        String::from_utf8(v).map_err(|_| CommandError::NotUtf8(what))
    }

    fn astring_utf8(&mut self, what: &'static str) -> R<String> {
        let v = self.astring(what)?;
        Self::utf8(v, what)
    }

    fn mailbox(&mut self) -> R<Mailbox> {
        Ok(Mailbox::new(self.astring_utf8("a mailbox name")?))
    }

    /// `list-mailbox`: wildcards allowed bare.
    fn list_mailbox(&mut self) -> R<String> {
        if let Some(s) = self.string_opt() {
            return Self::utf8(s?, "mailbox pattern");
        }
        let a = self.take_while(is_list_char);
        if a.is_empty() {
            return Err(self.expected("a mailbox pattern"));
        }
        Self::utf8(a.to_vec(), "mailbox pattern")
    }

    fn seq_bound(&mut self) -> R<SeqBound> {
        if self.eat(b'*') {
            Ok(SeqBound::Star)
        } else {
            self.nz_number("a sequence number or *").map(SeqBound::Num)
        }
    }

    pub(crate) fn sequence_set(&mut self) -> R<SequenceSet> {
        let mut ranges = Vec::new();
        loop {
            if ranges.len() == MAX_SEQUENCE_RANGES {
                return Err(CommandError::TooManyRanges);
            }
            let start = self.seq_bound()?;
            let end = if self.eat(b':') { self.seq_bound()? } else { start };
            ranges.push(SeqRange { start, end });
            if !self.eat(b',') {
                return Ok(SequenceSet(ranges));
            }
        }
    }

    fn flag(&mut self) -> R<Flag> {
        let at = self.pos;
        // `\*` is only for PERMANENTFLAGS in responses: here it fails as no atom
        let system = self.eat(b'\\');
        let a = self.atom("a flag").map_err(|_| CommandError::Expected { what: "a flag", at })?;
        let name = String::from_utf8_lossy(a);
        Ok(if system { Flag::from_name(&format!("\\{name}")) } else { Flag::Keyword(name.into_owned()) })
    }

    /// `flag-list`: `(` [flag *(SP flag)] `)`.
    fn flag_list(&mut self) -> R<Vec<Flag>> {
        self.expect(b'(', "a flag list")?;
        let mut flags = Vec::new();
        if self.eat(b')') {
            return Ok(flags);
        }
        loop {
            flags.push(self.flag()?);
            if self.eat(b')') {
                return Ok(flags);
            }
            self.sp()?;
        }
    }

    /// A parenthesised list of items separated by spaces; `item` reads one.
    fn paren_list<T>(&mut self, what: &'static str, mut item: impl FnMut(&mut Self) -> R<T>) -> R<Vec<T>> {
        self.expect(b'(', what)?;
        let mut v = Vec::new();
        loop {
            v.push(item(self)?);
            if self.eat(b')') {
                return Ok(v);
            }
            self.sp()?;
        }
    }

    /// `(` [option *(SP option)] `)` of upper-cased atoms, each handed to `f`.
    fn options(&mut self, what: &'static str, mut f: impl FnMut(&mut Self, String) -> R<()>) -> R<()> {
        self.expect(b'(', what)?;
        if self.eat(b')') {
            return Ok(());
        }
        loop {
            let opt = self.upper_atom(what)?;
            f(self, opt)?;
            if self.eat(b')') {
                return Ok(());
            }
            self.sp()?;
        }
    }

    fn month(&mut self) -> R<u8> {
        let at = self.pos;
        let m =
            self.buf.get(self.pos..self.pos + 3).and_then(Date::month_from_name).ok_or(CommandError::BadDate(at))?;
        self.pos += 3;
        Ok(m)
    }

    fn digits(&mut self, min: usize, max: usize, what: &'static str) -> R<u16> {
        let start = self.pos;
        let d = self.take_while(|b| b.is_ascii_digit());
        if d.len() < min || d.len() > max {
            self.pos = start;
            return Err(self.expected(what));
        }
        Ok(d.iter().fold(0u16, |n, &b| n * 10 + u16::from(b - b'0')))
    }

    /// `date-text`: `d-Mon-yyyy`.
    fn date_text(&mut self) -> R<Date> {
        let at = self.pos;
        let day = self.digits(1, 2, "a date")? as u8;
        self.expect(b'-', "a dash in the date")?;
        let month = self.month()?;
        self.expect(b'-', "a dash in the date")?;
        let year = self.digits(4, 4, "a four-digit year")?;
        Date::new(year, month, day).ok_or(CommandError::BadDate(at))
    }

    /// SEARCH `date`: bare or quoted.
    fn date(&mut self) -> R<Date> {
        if self.eat(b'"') {
            let d = self.date_text()?;
            self.expect(b'"', "the closing quote of the date")?;
            Ok(d)
        } else {
            self.date_text()
        }
    }

    /// `date-time`: `"dd-Mon-yyyy hh:mm:ss +zzzz"` (day may be space-padded).
    fn date_time(&mut self) -> R<DateTime> {
        let at = self.pos;
        self.expect(b'"', "a quoted date-time")?;
        self.eat(b' ');
        let date = self.date_text()?;
        self.sp()?;
        let hour = self.digits(2, 2, "the hour")? as u8;
        self.expect(b':', "a colon in the time")?;
        let minute = self.digits(2, 2, "the minutes")? as u8;
        self.expect(b':', "a colon in the time")?;
        let second = self.digits(2, 2, "the seconds")? as u8;
        self.sp()?;
        let sign: i16 = match self.peek() {
            Some(b'+') => 1,
            Some(b'-') => -1,
            _ => return Err(self.expected("the zone sign")),
        };
        self.pos += 1;
        let z = self.digits(4, 4, "a four-digit zone")? as i16;
        self.expect(b'"', "the closing quote of the date-time")?;
        if hour > 23 || minute > 59 || second > 60 || z % 100 > 59 {
            return Err(CommandError::BadDate(at));
        }
        Ok(DateTime { date, hour, minute, second, zone_minutes: sign * (z / 100 * 60 + z % 100) })
    }

    fn command(&mut self) -> R<CommandKind> {
        let name = self.atom("a command name").map_err(|_| CommandError::NoCommand)?;
        let name = String::from_utf8_lossy(name).to_ascii_uppercase();
        let simple = match name.as_str() {
            "CAPABILITY" => Some(CommandKind::Capability),
            "NOOP" => Some(CommandKind::Noop),
            "LOGOUT" => Some(CommandKind::Logout),
            "STARTTLS" => Some(CommandKind::StartTls),
            "CHECK" => Some(CommandKind::Check),
            "CLOSE" => Some(CommandKind::Close),
            "UNSELECT" => Some(CommandKind::Unselect),
            "EXPUNGE" => Some(CommandKind::Expunge),
            "IDLE" => Some(CommandKind::Idle),
            "NAMESPACE" => Some(CommandKind::Namespace),
            _ => None,
        };
        if let Some(k) = simple {
            return Ok(k);
        }
        // every other command takes arguments
        let known = [
            "AUTHENTICATE",
            "LOGIN",
            "SELECT",
            "EXAMINE",
            "CREATE",
            "DELETE",
            "RENAME",
            "SUBSCRIBE",
            "UNSUBSCRIBE",
            "LIST",
            "LSUB",
            "STATUS",
            "APPEND",
            "SEARCH",
            "FETCH",
            "STORE",
            "COPY",
            "MOVE",
            "UID",
            "ID",
            "ENABLE",
        ];
        if !known.contains(&name.as_str()) {
            return Err(CommandError::Unknown(shown(name.as_bytes())));
        }
        self.sp()?;
        Ok(match name.as_str() {
            "AUTHENTICATE" => {
                let mechanism = self.upper_atom("a SASL mechanism")?;
                let initial = if self.eat(b' ') {
                    let r = self.take_while(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
                    if r.is_empty() {
                        return Err(self.expected("a base64 initial response"));
                    }
                    Some(r.to_vec())
                } else {
                    None
                };
                CommandKind::Authenticate { mechanism, initial }
            }
            "LOGIN" => {
                let username = self.astring_utf8("a user name")?;
                self.sp()?;
                let password = self.astring_utf8("a password")?;
                CommandKind::Login(Credentials { username, password })
            }
            "SELECT" | "EXAMINE" => {
                let mailbox = self.mailbox()?;
                let mut condstore = false;
                if self.eat(b' ') {
                    for p in self.paren_list("select parameters", |c| c.upper_atom("a select parameter"))? {
                        match p.as_str() {
                            "CONDSTORE" => condstore = true,
                            _ => return Err(CommandError::UnknownName { what: "select parameter", name: p }),
                        }
                    }
                }
                if name == "SELECT" {
                    CommandKind::Select { mailbox, condstore }
                } else {
                    CommandKind::Examine { mailbox, condstore }
                }
            }
            "CREATE" => CommandKind::Create(self.mailbox()?),
            "DELETE" => CommandKind::Delete(self.mailbox()?),
            "SUBSCRIBE" => CommandKind::Subscribe(self.mailbox()?),
            "UNSUBSCRIBE" => CommandKind::Unsubscribe(self.mailbox()?),
            "RENAME" => {
                let from = self.mailbox()?;
                self.sp()?;
                CommandKind::Rename { from, to: self.mailbox()? }
            }
            "LIST" => self.list()?,
            "LSUB" => {
                let reference = self.astring_utf8("a reference name")?;
                self.sp()?;
                CommandKind::Lsub { reference, pattern: self.list_mailbox()? }
            }
            "STATUS" => {
                let mailbox = self.mailbox()?;
                self.sp()?;
                CommandKind::Status { mailbox, items: self.status_items()? }
            }
            "APPEND" => self.append()?,
            "SEARCH" => self.search(false)?,
            "FETCH" => self.fetch(false)?,
            "STORE" => self.store(false)?,
            "COPY" | "MOVE" => self.copy_move(&name, false)?,
            "UID" => {
                let sub = self.upper_atom("a UID command")?;
                if !["FETCH", "STORE", "SEARCH", "COPY", "MOVE", "EXPUNGE"].contains(&sub.as_str()) {
                    return Err(CommandError::UnknownName { what: "UID command", name: shown(sub.as_bytes()) });
                }
                self.sp()?;
                match sub.as_str() {
                    "FETCH" => self.fetch(true)?,
                    "STORE" => self.store(true)?,
                    "SEARCH" => self.search(true)?,
                    "COPY" | "MOVE" => self.copy_move(&sub, true)?,
                    "EXPUNGE" => CommandKind::UidExpunge(self.sequence_set()?),
                    _ => return Err(CommandError::UnknownName { what: "UID command", name: sub }),
                }
            }
            "ID" => self.id()?,
            "ENABLE" => {
                let mut caps = vec![self.upper_atom("a capability")?];
                while self.eat(b' ') {
                    caps.push(self.upper_atom("a capability")?);
                }
                CommandKind::Enable(caps)
            }
            _ => return Err(CommandError::Unknown(name)),
        })
    }

    fn status_items(&mut self) -> R<Vec<StatusItem>> {
        self.paren_list("a list of status items", |c| {
            let a = c.atom("a status item")?;
            StatusItem::from_name(a).ok_or_else(|| CommandError::UnknownName { what: "status item", name: shown(a) })
        })
    }

    fn list(&mut self) -> R<CommandKind> {
        let mut selection = ListSelection::default();
        if self.peek() == Some(b'(') {
            self.options("a selection option", |_, opt| {
                match opt.as_str() {
                    "SUBSCRIBED" => selection.subscribed = true,
                    "REMOTE" => selection.remote = true,
                    "RECURSIVEMATCH" => selection.recursive_match = true,
                    "SPECIAL-USE" => selection.special_use = true,
                    _ => return Err(CommandError::UnknownName { what: "selection option", name: opt }),
                }
                Ok(())
            })?;
            self.sp()?;
        }
        let reference = self.astring_utf8("a reference name")?;
        self.sp()?;
        let patterns = if self.peek() == Some(b'(') {
            self.paren_list("a list of mailbox patterns", |c| c.list_mailbox())?
        } else {
            vec![self.list_mailbox()?]
        };
        let mut returns = ListReturn::default();
        if self.eat(b' ') {
            if !self.keyword("RETURN") {
                return Err(self.expected("RETURN"));
            }
            self.sp()?;
            self.options("a return option", |c, opt| {
                match opt.as_str() {
                    "SUBSCRIBED" => returns.subscribed = true,
                    "CHILDREN" => returns.children = true,
                    "SPECIAL-USE" => returns.special_use = true,
                    "STATUS" => {
                        c.sp()?;
                        returns.status = Some(c.status_items()?);
                    }
                    _ => return Err(CommandError::UnknownName { what: "return option", name: opt }),
                }
                Ok(())
            })?;
        }
        if selection.recursive_match && !(selection.subscribed || selection.special_use) {
            // RFC 5258 §3: RECURSIVEMATCH alone is a syntax error
            return Err(CommandError::Expected { what: "SUBSCRIBED or SPECIAL-USE with RECURSIVEMATCH", at: self.pos });
        }
        Ok(CommandKind::List { selection, reference, patterns, returns })
    }

    fn append(&mut self) -> R<CommandKind> {
        let mailbox = self.mailbox()?;
        self.sp()?;
        let mut flags = Vec::new();
        let mut date = None;
        if self.peek() == Some(b'(') {
            flags = self.flag_list()?;
            self.sp()?;
        }
        if self.peek() == Some(b'"') {
            date = Some(self.date_time()?);
            self.sp()?;
        }
        self.expect(b'{', "the message literal")?;
        let message = self.literal()?;
        Ok(CommandKind::Append { mailbox, flags, date, message })
    }

    fn copy_move(&mut self, name: &str, uid: bool) -> R<CommandKind> {
        let set = self.sequence_set()?;
        self.sp()?;
        let mailbox = self.mailbox()?;
        Ok(if name == "COPY" {
            CommandKind::Copy { uid, set, mailbox }
        } else {
            CommandKind::Move { uid, set, mailbox }
        })
    }

    fn store(&mut self, uid: bool) -> R<CommandKind> {
        let set = self.sequence_set()?;
        self.sp()?;
        let mut unchanged_since = None;
        if self.eat(b'(') {
            if !self.keyword("UNCHANGEDSINCE") {
                return Err(self.expected("UNCHANGEDSINCE"));
            }
            self.sp()?;
            unchanged_since = Some(self.modseq(true)?);
            self.expect(b')', "the end of the store modifiers")?;
            self.sp()?;
        }
        let mode = if self.eat(b'+') {
            StoreMode::Add
        } else if self.eat(b'-') {
            StoreMode::Remove
        } else {
            StoreMode::Replace
        };
        let item = self.upper_atom("FLAGS")?;
        let silent = match item.as_str() {
            "FLAGS" => false,
            "FLAGS.SILENT" => true,
            _ => return Err(CommandError::UnknownName { what: "store item", name: item }),
        };
        self.sp()?;
        let flags = if self.peek() == Some(b'(') {
            self.flag_list()?
        } else {
            let mut v = vec![self.flag()?];
            while self.eat(b' ') {
                v.push(self.flag()?);
            }
            v
        };
        Ok(CommandKind::Store { uid, set, unchanged_since, mode, silent, flags })
    }

    fn fetch(&mut self, uid: bool) -> R<CommandKind> {
        let set = self.sequence_set()?;
        self.sp()?;
        let items = if self.keyword("ALL") {
            vec![FetchAttr::Flags, FetchAttr::InternalDate, FetchAttr::Rfc822Size, FetchAttr::Envelope]
        } else if self.keyword("FAST") {
            vec![FetchAttr::Flags, FetchAttr::InternalDate, FetchAttr::Rfc822Size]
        } else if self.keyword("FULL") {
            vec![FetchAttr::Flags, FetchAttr::InternalDate, FetchAttr::Rfc822Size, FetchAttr::Envelope, FetchAttr::Body]
        } else if self.peek() == Some(b'(') {
            self.paren_list("a list of fetch items", |c| c.fetch_attr())?
        } else {
            vec![self.fetch_attr()?]
        };
        let mut changed_since = None;
        if self.eat(b' ') {
            self.expect(b'(', "fetch modifiers")?;
            loop {
                if !self.keyword("CHANGEDSINCE") {
                    return Err(self.expected("CHANGEDSINCE"));
                }
                self.sp()?;
                changed_since = Some(self.modseq(false)?);
                if self.eat(b')') {
                    break;
                }
                self.sp()?;
            }
        }
        Ok(CommandKind::Fetch { uid, set, items, changed_since })
    }

    fn fetch_attr(&mut self) -> R<FetchAttr> {
        let at = self.pos;
        let name = self.take_while(|b| is_atom_char(b) && b != b'[').to_ascii_uppercase();
        Ok(match name.as_slice() {
            b"ENVELOPE" => FetchAttr::Envelope,
            b"FLAGS" => FetchAttr::Flags,
            b"INTERNALDATE" => FetchAttr::InternalDate,
            b"RFC822" => FetchAttr::Rfc822,
            b"RFC822.HEADER" => FetchAttr::Rfc822Header,
            b"RFC822.SIZE" => FetchAttr::Rfc822Size,
            b"RFC822.TEXT" => FetchAttr::Rfc822Text,
            b"UID" => FetchAttr::Uid,
            b"BODYSTRUCTURE" => FetchAttr::BodyStructure,
            b"MODSEQ" => FetchAttr::ModSeq,
            b"BODY" | b"BODY.PEEK" if self.peek() == Some(b'[') => {
                self.pos += 1;
                let section = self.section()?;
                let partial = if self.eat(b'<') {
                    let origin = self.number("the partial origin")?;
                    self.expect(b'.', "a dot in the partial range")?;
                    let count = self.nz_number("the partial length")?;
                    self.expect(b'>', "the end of the partial range")?;
                    Some((origin, count))
                } else {
                    None
                };
                FetchAttr::BodySection { peek: name.len() > 4, section, partial }
            }
            b"BODY" => FetchAttr::Body,
            b"" => return Err(CommandError::Expected { what: "a fetch item", at }),
            other => return Err(CommandError::UnknownName { what: "fetch item", name: shown(other) }),
        })
    }

    /// After `[`: `section-spec` then `]`.
    fn section(&mut self) -> R<Section> {
        let mut s = Section::default();
        if self.eat(b']') {
            return Ok(s);
        }
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            s.part.push(self.nz_number("a part number")?);
            if !self.eat(b'.') {
                self.expect(b']', "the end of the section")?;
                return Ok(s);
            }
        }
        let at = self.pos;
        let name = self.take_while(|b| b.is_ascii_alphabetic() || b == b'.').to_ascii_uppercase();
        s.text = Some(match name.as_slice() {
            b"HEADER" => SectionText::Header,
            b"TEXT" => SectionText::Text,
            b"MIME" if !s.part.is_empty() => SectionText::Mime,
            b"HEADER.FIELDS" | b"HEADER.FIELDS.NOT" => {
                self.sp()?;
                let fields = self.paren_list("a list of header field names", |c| {
                    let f = c.astring_utf8("a header field name")?;
                    if f.is_empty() || !f.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
                        return Err(CommandError::Expected { what: "a header field name", at: c.pos });
                    }
                    Ok(f)
                })?;
                if name.len() > 13 {
                    SectionText::HeaderFieldsNot(fields)
                } else {
                    SectionText::HeaderFields(fields)
                }
            }
            _ => return Err(CommandError::Expected { what: "a section specifier", at }),
        });
        self.expect(b']', "the end of the section")?;
        Ok(s)
    }

    fn search(&mut self, uid: bool) -> R<CommandKind> {
        let mut charset = None;
        if self.keyword("CHARSET") {
            self.sp()?;
            let name = self.astring_utf8("a charset")?.to_ascii_uppercase();
            // known before any string is read, so an 8-bit string in another
            // charset gets NO [BADCHARSET], not a BAD about UTF-8
            if name != "UTF-8" && name != "US-ASCII" {
                return Err(CommandError::Charset(shown(name.as_bytes())));
            }
            charset = Some(name);
            self.sp()?;
        }
        let mut criteria = vec![self.search_key(0)?];
        while self.eat(b' ') {
            criteria.push(self.search_key(0)?);
        }
        Ok(CommandKind::Search { uid, charset, criteria })
    }

    fn search_string(&mut self) -> R<String> {
        self.sp()?;
        self.astring_utf8("a search string")
    }

    fn search_date(&mut self) -> R<Date> {
        self.sp()?;
        self.date()
    }

    fn search_key(&mut self, depth: usize) -> R<SearchKey> {
        if depth >= MAX_SEARCH_DEPTH {
            return Err(CommandError::TooDeep);
        }
        if self.eat(b'(') {
            let mut keys = vec![self.search_key(depth + 1)?];
            while !self.eat(b')') {
                self.sp()?;
                keys.push(self.search_key(depth + 1)?);
            }
            return Ok(SearchKey::And(keys));
        }
        if self.peek().is_some_and(|b| b.is_ascii_digit() || b == b'*') {
            return Ok(SearchKey::SequenceSet(self.sequence_set()?));
        }
        let name = self.upper_atom("a search key")?;
        Ok(match name.as_str() {
            "ALL" => SearchKey::All,
            "ANSWERED" => SearchKey::Answered,
            "DELETED" => SearchKey::Deleted,
            "DRAFT" => SearchKey::Draft,
            "FLAGGED" => SearchKey::Flagged,
            "NEW" => SearchKey::New,
            "OLD" => SearchKey::Old,
            "RECENT" => SearchKey::Recent,
            "SEEN" => SearchKey::Seen,
            "UNANSWERED" => SearchKey::Unanswered,
            "UNDELETED" => SearchKey::Undeleted,
            "UNDRAFT" => SearchKey::Undraft,
            "UNFLAGGED" => SearchKey::Unflagged,
            "UNSEEN" => SearchKey::Unseen,
            "BCC" => SearchKey::Bcc(self.search_string()?),
            "BODY" => SearchKey::Body(self.search_string()?),
            "CC" => SearchKey::Cc(self.search_string()?),
            "FROM" => SearchKey::From(self.search_string()?),
            "SUBJECT" => SearchKey::Subject(self.search_string()?),
            "TEXT" => SearchKey::Text(self.search_string()?),
            "TO" => SearchKey::To(self.search_string()?),
            "HEADER" => {
                let field = self.search_string()?;
                SearchKey::Header(field, self.search_string()?)
            }
            "KEYWORD" | "UNKEYWORD" => {
                self.sp()?;
                let k = String::from_utf8_lossy(self.atom("a keyword")?).into_owned();
                if name == "KEYWORD" {
                    SearchKey::Keyword(k)
                } else {
                    SearchKey::Unkeyword(k)
                }
            }
            "BEFORE" => SearchKey::Before(self.search_date()?),
            "ON" => SearchKey::On(self.search_date()?),
            "SINCE" => SearchKey::Since(self.search_date()?),
            "SENTBEFORE" => SearchKey::SentBefore(self.search_date()?),
            "SENTON" => SearchKey::SentOn(self.search_date()?),
            "SENTSINCE" => SearchKey::SentSince(self.search_date()?),
            "LARGER" | "SMALLER" => {
                self.sp()?;
                let n = self.number("a size")?;
                if name == "LARGER" {
                    SearchKey::Larger(n)
                } else {
                    SearchKey::Smaller(n)
                }
            }
            "UID" => {
                self.sp()?;
                SearchKey::Uid(self.sequence_set()?)
            }
            "NOT" => {
                self.sp()?;
                SearchKey::Not(Box::new(self.search_key(depth + 1)?))
            }
            "OR" => {
                self.sp()?;
                let a = self.search_key(depth + 1)?;
                self.sp()?;
                SearchKey::Or(Box::new(a), Box::new(self.search_key(depth + 1)?))
            }
            "MODSEQ" => {
                self.sp()?;
                let mut entry = None;
                if self.peek() == Some(b'"') {
                    let e = Self::utf8(self.string("an entry name")?, "entry name")?;
                    self.sp()?;
                    let t = self.upper_atom("an entry type")?;
                    if !["PRIV", "SHARED", "ALL"].contains(&t.as_str()) {
                        return Err(CommandError::UnknownName { what: "entry type", name: t });
                    }
                    entry = Some((e, t));
                    self.sp()?;
                }
                SearchKey::ModSeq { entry, modseq: self.modseq(true)? }
            }
            _ => return Err(CommandError::UnknownName { what: "search key", name: shown(name.as_bytes()) }),
        })
    }

    fn id(&mut self) -> R<CommandKind> {
        if self.keyword("NIL") {
            return Ok(CommandKind::Id(None));
        }
        self.expect(b'(', "a list of ID fields or NIL")?;
        let mut pairs = Vec::new();
        if self.eat(b')') {
            return Ok(CommandKind::Id(Some(pairs)));
        }
        loop {
            if pairs.len() == MAX_ID_PAIRS {
                return Err(CommandError::TooManyIdPairs);
            }
            let field = Self::utf8(self.string("an ID field name")?, "ID field name")?;
            self.sp()?;
            let value = match self.nstring("an ID value")? {
                Some(v) => Some(Self::utf8(v, "ID value")?),
                None => None,
            };
            pairs.push((field, value));
            if self.eat(b')') {
                return Ok(CommandKind::Id(Some(pairs)));
            }
            self.sp()?;
        }
    }
}

#[cfg(test)]
pub(crate) fn cursor(buf: &[u8]) -> Cursor<'_> {
    Cursor { buf, pos: 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::imap::types::SeqBound::{Num, Star};

    fn ok(line: &str) -> CommandKind {
        match parse(line.as_bytes()) {
            Ok(c) => {
                assert_eq!(c.tag, "a1");
                c.kind
            }
            Err(b) => panic!("{line:?}: {}", b.error),
        }
    }

    fn bad(line: &[u8]) -> BadCommand {
        match parse(line) {
            Ok(c) => panic!("{:?} parsed as {c:?}", String::from_utf8_lossy(line)),
            Err(b) => b,
        }
    }

    fn mb(s: &str) -> Mailbox {
        Mailbox::new(s.into())
    }

    fn set(ranges: &[(SeqBound, SeqBound)]) -> SequenceSet {
        SequenceSet(ranges.iter().map(|&(start, end)| SeqRange { start, end }).collect())
    }

    #[test]
    fn imap_simple_commands_any_case() {
        for (line, kind) in [
            ("a1 CAPABILITY", CommandKind::Capability),
            ("a1 noop", CommandKind::Noop),
            ("a1 Logout", CommandKind::Logout),
            ("a1 STARTTLS", CommandKind::StartTls),
            ("a1 CHECK", CommandKind::Check),
            ("a1 CLOSE", CommandKind::Close),
            ("a1 UNSELECT", CommandKind::Unselect),
            ("a1 EXPUNGE", CommandKind::Expunge),
            ("a1 IDLE", CommandKind::Idle),
            ("a1 NAMESPACE", CommandKind::Namespace),
        ] {
            assert_eq!(ok(line), kind, "{line}");
        }
        assert!(is_done(b"done") && !is_done(b"DONE "));
    }

    #[test]
    fn imap_tags_and_untagged_errors() {
        assert_eq!(bad(b""), BadCommand { tag: None, error: CommandError::Empty });
        assert_eq!(bad(b"+a NOOP").tag, None, "+ cannot start a tag");
        assert_eq!(bad(b"(x) NOOP").tag, None);
        assert_eq!(bad(b" NOOP").tag, None);
        assert_eq!(bad(b"a1").error, CommandError::NoCommand);
        assert_eq!(bad(b"a1").tag.as_deref(), Some("a1"));
        assert_eq!(bad(b"a1 ").error, CommandError::NoCommand);
        assert_eq!(bad(b"a1 FROB x").error, CommandError::Unknown("FROB".into()));
        assert_eq!(bad(b"a1 NOOP extra").error, CommandError::Trailing(7));
        assert_eq!(bad(b"a1 NOOP extra").line(), b"a1 BAD Unexpected text after the command at octet 7\r\n");
        assert_eq!(bad(b"\xff NOOP").line(), b"* BAD The tag is missing or not valid\r\n");
        assert_eq!(parse(b"A.b]c NOOP").map(|c| c.tag), Ok("A.b]c".to_string()), "] is an ASTRING-CHAR");
    }

    #[test]
    fn imap_authenticate_and_login() {
        assert_eq!(ok("a1 AUTHENTICATE plain"), CommandKind::Authenticate { mechanism: "PLAIN".into(), initial: None });
        assert_eq!(
            ok("a1 AUTHENTICATE PLAIN AGFsaWNlAHB3"),
            CommandKind::Authenticate { mechanism: "PLAIN".into(), initial: Some(b"AGFsaWNlAHB3".to_vec()) }
        );
        assert_eq!(
            ok("a1 AUTHENTICATE PLAIN ="),
            CommandKind::Authenticate { mechanism: "PLAIN".into(), initial: Some(b"=".to_vec()) }
        );
        assert!(matches!(bad(b"a1 AUTHENTICATE PLAIN a!b").error, CommandError::Trailing(_)));
        assert!(matches!(bad(b"a1 AUTHENTICATE").error, CommandError::Expected { .. }));
        let login = |u: &str, p: &str| CommandKind::Login(Credentials { username: u.into(), password: p.into() });
        assert_eq!(ok("a1 LOGIN alice secret"), login("alice", "secret"));
        assert_eq!(ok(r#"a1 LOGIN "al ice" "se\"c\\ret""#), login("al ice", "se\"c\\ret"));
        assert_eq!(ok("a1 LOGIN {5}\r\nalice {3+}\r\np w"), login("alice", "p w"));
        assert_eq!(ok("a1 LOGIN \"\" \"\""), login("", ""));
        assert!(matches!(bad(b"a1 LOGIN alice").error, CommandError::Expected { .. }));
        assert!(matches!(bad(b"a1 LOGIN \"alice pw").error, CommandError::Expected { .. }));
        assert!(matches!(bad(b"a1 LOGIN \"a\\x\" pw").error, CommandError::Expected { .. }), "only \\\" and \\\\");
        assert_eq!(bad(b"a1 LOGIN {2}\r\n\xff\xfe pw").error, CommandError::NotUtf8("a user name"));
        assert!(matches!(bad(b"a1 LOGIN {9}\r\nab pw").error, CommandError::NumberRange(_)), "short literal");
    }

    #[test]
    fn imap_mailbox_commands() {
        assert_eq!(ok("a1 SELECT inbox"), CommandKind::Select { mailbox: mb("INBOX"), condstore: false });
        assert_eq!(ok("a1 select \"INBOX\""), CommandKind::Select { mailbox: mb("INBOX"), condstore: false });
        assert_eq!(
            ok("a1 SELECT Archive (CONDSTORE)"),
            CommandKind::Select { mailbox: mb("Archive"), condstore: true }
        );
        assert_eq!(ok("a1 EXAMINE &ZeVnLIqe-"), CommandKind::Examine { mailbox: mb("&ZeVnLIqe-"), condstore: false });
        assert!(matches!(bad(b"a1 SELECT x (QRESYNC)").error, CommandError::UnknownName { .. }));
        assert_eq!(ok("a1 CREATE a/b"), CommandKind::Create(mb("a/b")));
        assert_eq!(ok("a1 DELETE \"a b\""), CommandKind::Delete(mb("a b")));
        assert_eq!(ok("a1 RENAME a b"), CommandKind::Rename { from: mb("a"), to: mb("b") });
        assert_eq!(ok("a1 SUBSCRIBE a"), CommandKind::Subscribe(mb("a")));
        assert_eq!(ok("a1 UNSUBSCRIBE a"), CommandKind::Unsubscribe(mb("a")));
        assert!(matches!(bad(b"a1 CREATE a%").error, CommandError::Trailing(_)), "no wildcards in a mailbox");
        assert!(matches!(bad(b"a1 RENAME a").error, CommandError::Expected { .. }));
        assert_eq!(
            ok("a1 STATUS INBOX (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ)"),
            CommandKind::Status {
                mailbox: mb("INBOX"),
                items: vec![
                    StatusItem::Messages,
                    StatusItem::Recent,
                    StatusItem::UidNext,
                    StatusItem::UidValidity,
                    StatusItem::Unseen,
                    StatusItem::HighestModSeq
                ]
            }
        );
        assert!(matches!(bad(b"a1 STATUS INBOX (SIZE)").error, CommandError::UnknownName { .. }));
        assert!(matches!(bad(b"a1 STATUS INBOX ()").error, CommandError::Expected { .. }));
    }

    #[test]
    fn imap_list_and_lsub() {
        let classic = |r: &str, p: &str| CommandKind::List {
            selection: ListSelection::default(),
            reference: r.into(),
            patterns: vec![p.into()],
            returns: ListReturn::default(),
        };
        assert_eq!(ok("a1 LIST \"\" *"), classic("", "*"));
        assert_eq!(ok("a1 LIST ~/Mail/ %"), classic("~/Mail/", "%"));
        assert_eq!(ok("a1 LIST \"\" INBOX.%.x]"), classic("", "INBOX.%.x]"));
        assert_eq!(
            ok("a1 LIST (SPECIAL-USE RECURSIVEMATCH) \"\" (INBOX* \"Sent\") RETURN (CHILDREN SPECIAL-USE SUBSCRIBED STATUS (MESSAGES))"),
            CommandKind::List {
                selection: ListSelection { special_use: true, recursive_match: true, ..Default::default() },
                reference: String::new(),
                patterns: vec!["INBOX*".into(), "Sent".into()],
                returns: ListReturn {
                    children: true,
                    special_use: true,
                    subscribed: true,
                    status: Some(vec![StatusItem::Messages])
                },
            }
        );
        assert!(matches!(ok("a1 LIST () \"\" % RETURN ()"), CommandKind::List { .. }));
        assert!(matches!(bad(b"a1 LIST (RECURSIVEMATCH) \"\" %").error, CommandError::Expected { .. }));
        assert!(matches!(bad(b"a1 LIST \"\" % RETURN (FOO)").error, CommandError::UnknownName { .. }));
        assert!(matches!(bad(b"a1 LIST \"\"").error, CommandError::Expected { .. }));
        assert_eq!(ok("a1 LSUB \"\" *"), CommandKind::Lsub { reference: String::new(), pattern: "*".into() });
    }

    #[test]
    fn imap_append() {
        assert_eq!(
            ok("a1 APPEND Drafts (\\Seen \\Draft $Fwd) \" 5-Mar-2024 07:08:09 -0130\" {12}\r\nhello\r\nworld"),
            CommandKind::Append {
                mailbox: mb("Drafts"),
                flags: vec![Flag::Seen, Flag::Draft, Flag::Keyword("$Fwd".into())],
                date: Some(DateTime {
                    date: Date::new(2024, 3, 5).unwrap(),
                    hour: 7,
                    minute: 8,
                    second: 9,
                    zone_minutes: -90
                }),
                message: b"hello\r\nworld".to_vec(),
            }
        );
        assert_eq!(
            ok("a1 APPEND INBOX {3+}\r\nabc"),
            CommandKind::Append { mailbox: mb("INBOX"), flags: vec![], date: None, message: b"abc".to_vec() }
        );
        assert!(matches!(ok("a1 APPEND INBOX () \"05-Mar-2024 23:59:60 +1400\" {0}\r\n"), CommandKind::Append { .. }));
        assert!(matches!(bad(b"a1 APPEND INBOX \"message\"").error, CommandError::Expected { .. }));
        assert!(matches!(
            bad(b"a1 APPEND INBOX \"31-Feb-2024 00:00:00 +0000\" {0}\r\n").error,
            CommandError::BadDate(_)
        ));
        assert!(matches!(
            bad(b"a1 APPEND INBOX \"01-Feb-2024 24:00:00 +0000\" {0}\r\n").error,
            CommandError::BadDate(_)
        ));
        assert!(matches!(
            bad(b"a1 APPEND INBOX \"01-Foo-2024 00:00:00 +0000\" {0}\r\n").error,
            CommandError::BadDate(_)
        ));
        assert!(matches!(bad(b"a1 APPEND INBOX (\\Seen {0}\r\n").error, CommandError::Expected { .. }));
        assert!(matches!(bad(b"a1 APPEND INBOX {3}\r\nabcd").error, CommandError::Trailing(_)));
    }

    #[test]
    fn imap_sequence_sets_and_bounds() {
        let fetch_set = |line: &str| match ok(line) {
            CommandKind::Fetch { set, .. } => set,
            other => panic!("{other:?}"),
        };
        assert_eq!(fetch_set("a1 FETCH 1 FLAGS"), set(&[(Num(1), Num(1))]));
        assert_eq!(
            fetch_set("a1 FETCH 1:3,5,7:*,* FLAGS"),
            set(&[(Num(1), Num(3)), (Num(5), Num(5)), (Num(7), Star), (Star, Star)])
        );
        assert_eq!(fetch_set("a1 FETCH 4:2 FLAGS"), set(&[(Num(4), Num(2))]));
        assert_eq!(fetch_set("a1 FETCH 4294967295 FLAGS"), set(&[(Num(u32::MAX), Num(u32::MAX))]));
        for wrong in
            [&b"a1 FETCH 0 FLAGS"[..], b"a1 FETCH 4294967296 FLAGS", b"a1 FETCH 1: FLAGS", b"a1 FETCH ,1 FLAGS"]
        {
            let e = bad(wrong).error;
            assert!(matches!(e, CommandError::NumberRange(_) | CommandError::Expected { .. }), "{e:?}");
        }
        let many = (0..MAX_SEQUENCE_RANGES).map(|i| (2 * i + 1).to_string()).collect::<Vec<_>>().join(",");
        assert!(matches!(ok(&format!("a1 FETCH {many} FLAGS")), CommandKind::Fetch { .. }));
        assert_eq!(bad(format!("a1 FETCH {many},1 FLAGS").as_bytes()).error, CommandError::TooManyRanges);
    }

    #[test]
    fn imap_fetch_items() {
        let items = |line: &str| match ok(line) {
            CommandKind::Fetch { items, changed_since, .. } => (items, changed_since),
            other => panic!("{other:?}"),
        };
        use FetchAttr::*;
        assert_eq!(items("a1 FETCH 1 ALL").0, vec![Flags, InternalDate, Rfc822Size, Envelope]);
        assert_eq!(items("a1 FETCH 1 fast").0, vec![Flags, InternalDate, Rfc822Size]);
        assert_eq!(items("a1 FETCH 1 FULL").0, vec![Flags, InternalDate, Rfc822Size, Envelope, Body]);
        assert_eq!(
            items("a1 FETCH 1:* (FLAGS INTERNALDATE RFC822 RFC822.HEADER RFC822.SIZE RFC822.TEXT UID ENVELOPE BODY BODYSTRUCTURE MODSEQ)").0,
            vec![Flags, InternalDate, Rfc822, Rfc822Header, Rfc822Size, Rfc822Text, Uid, Envelope, Body, BodyStructure, ModSeq]
        );
        let sect = |part: Vec<u32>, text: Option<SectionText>| Section { part, text };
        assert_eq!(
            items("a1 FETCH 1 (BODY[] BODY.PEEK[1.2] body[HEADER]<0.100> BODY.PEEK[2.TEXT] BODY[1.MIME] BODY[TEXT])").0,
            vec![
                BodySection { peek: false, section: sect(vec![], None), partial: None },
                BodySection { peek: true, section: sect(vec![1, 2], None), partial: None },
                BodySection { peek: false, section: sect(vec![], Some(SectionText::Header)), partial: Some((0, 100)) },
                BodySection { peek: true, section: sect(vec![2], Some(SectionText::Text)), partial: None },
                BodySection { peek: false, section: sect(vec![1], Some(SectionText::Mime)), partial: None },
                BodySection { peek: false, section: sect(vec![], Some(SectionText::Text)), partial: None },
            ]
        );
        assert_eq!(
            items("a1 FETCH 1 (BODY.PEEK[HEADER.FIELDS (From \"Subject\" X-A)] BODY[1.HEADER.FIELDS.NOT (To)])").0,
            vec![
                BodySection {
                    peek: true,
                    section: sect(
                        vec![],
                        Some(SectionText::HeaderFields(vec!["From".into(), "Subject".into(), "X-A".into()]))
                    ),
                    partial: None
                },
                BodySection {
                    peek: false,
                    section: sect(vec![1], Some(SectionText::HeaderFieldsNot(vec!["To".into()]))),
                    partial: None
                },
            ]
        );
        assert_eq!(items("a1 FETCH 1:* (UID FLAGS) (CHANGEDSINCE 12345)"), (vec![Uid, Flags], Some(12345)));
        assert_eq!(
            items("a1 FETCH 1 BODY[]<5.10>").0,
            vec![BodySection { peek: false, section: Section::default(), partial: Some((5, 10)) }]
        );
        for wrong in [
            &b"a1 FETCH 1 (FLAGS"[..],
            b"a1 FETCH 1 ()",
            b"a1 FETCH 1 FOO",
            b"a1 FETCH 1 BODY[MIME]",
            b"a1 FETCH 1 BODY[0]",
            b"a1 FETCH 1 BODY[1.2",
            b"a1 FETCH 1 BODY[HEADER.FIELDS ()]",
            b"a1 FETCH 1 BODY[HEADER.FIELDS (a:b)]",
            b"a1 FETCH 1 BODY[]<5>",
            b"a1 FETCH 1 BODY[]<5.0>",
            b"a1 FETCH 1 BODY.PEEK",
            b"a1 FETCH 1 FLAGS (CHANGEDSINCE 0)",
            b"a1 FETCH 1 FLAGS (VANISHED)",
            b"a1 FETCH 1 FLAGS (CHANGEDSINCE 9223372036854775808)",
            b"a1 FETCH FLAGS",
        ] {
            let b = bad(wrong);
            assert_eq!(b.tag.as_deref(), Some("a1"), "{:?}", String::from_utf8_lossy(wrong));
        }
    }

    #[test]
    fn imap_store_copy_move_uid() {
        assert_eq!(
            ok("a1 STORE 1:2 +FLAGS.SILENT (\\Deleted)"),
            CommandKind::Store {
                uid: false,
                set: set(&[(Num(1), Num(2))]),
                unchanged_since: None,
                mode: StoreMode::Add,
                silent: true,
                flags: vec![Flag::Deleted]
            }
        );
        assert_eq!(
            ok("a1 UID STORE 7 (UNCHANGEDSINCE 300) -flags \\Seen $Junk"),
            CommandKind::Store {
                uid: true,
                set: set(&[(Num(7), Num(7))]),
                unchanged_since: Some(300),
                mode: StoreMode::Remove,
                silent: false,
                flags: vec![Flag::Seen, Flag::Keyword("$Junk".into())]
            }
        );
        assert!(matches!(ok("a1 STORE * FLAGS ()"), CommandKind::Store { mode: StoreMode::Replace, .. }));
        assert!(matches!(bad(b"a1 STORE 1 FLAGS").error, CommandError::Expected { .. }));
        assert!(matches!(bad(b"a1 STORE 1 FLAGS (\\*)").error, CommandError::Expected { .. }), "\\* is not a flag");
        assert!(matches!(bad(b"a1 STORE 1 LABELS (x)").error, CommandError::UnknownName { .. }));
        assert!(matches!(bad(b"a1 STORE 1 (UNCHANGEDSINCE x) FLAGS ()").error, CommandError::Expected { .. }));
        assert_eq!(
            ok("a1 COPY 1:* Trash"),
            CommandKind::Copy { uid: false, set: set(&[(Num(1), Star)]), mailbox: mb("Trash") }
        );
        assert_eq!(
            ok("a1 UID MOVE 5 inbox"),
            CommandKind::Move { uid: true, set: set(&[(Num(5), Num(5))]), mailbox: mb("INBOX") }
        );
        assert_eq!(
            ok("a1 MOVE 5 x"),
            CommandKind::Move { uid: false, set: set(&[(Num(5), Num(5))]), mailbox: mb("x") }
        );
        assert!(matches!(ok("a1 UID COPY 5 x"), CommandKind::Copy { uid: true, .. }));
        assert!(matches!(ok("a1 UID FETCH 1:* FLAGS"), CommandKind::Fetch { uid: true, .. }));
        assert!(matches!(ok("a1 UID SEARCH ALL"), CommandKind::Search { uid: true, .. }));
        assert_eq!(ok("a1 UID EXPUNGE 3:5"), CommandKind::UidExpunge(set(&[(Num(3), Num(5))])));
        assert!(matches!(bad(b"a1 UID NOOP").error, CommandError::UnknownName { .. }));
        assert!(matches!(bad(b"a1 UID").error, CommandError::Expected { .. }));
    }

    #[test]
    fn imap_search_keys() {
        let crit = |line: &str| match ok(line) {
            CommandKind::Search { criteria, charset, .. } => (charset, criteria),
            other => panic!("{other:?}"),
        };
        use SearchKey::*;
        let d = |y, m, day| Date::new(y, m, day).unwrap();
        assert_eq!(
            crit("a1 SEARCH ALL ANSWERED DELETED DRAFT FLAGGED NEW OLD RECENT SEEN UNANSWERED UNDELETED UNDRAFT UNFLAGGED UNSEEN").1,
            vec![All, Answered, Deleted, Draft, Flagged, New, Old, Recent, Seen, Unanswered, Undeleted, Undraft, Unflagged, Unseen]
        );
        assert_eq!(
            crit("a1 SEARCH BCC a BODY \"b c\" CC c FROM d SUBJECT {2}\r\nhi TEXT t TO u HEADER X-Spam yes KEYWORD $a UNKEYWORD $b").1,
            vec![
                Bcc("a".into()),
                Body("b c".into()),
                Cc("c".into()),
                From("d".into()),
                Subject("hi".into()),
                Text("t".into()),
                To("u".into()),
                Header("X-Spam".into(), "yes".into()),
                Keyword("$a".into()),
                Unkeyword("$b".into())
            ]
        );
        assert_eq!(
            crit("a1 SEARCH BEFORE 1-Feb-1994 ON \"01-Feb-1994\" SINCE 29-feb-2024 SENTBEFORE 1-Jan-2000 SENTON 2-Jan-2000 SENTSINCE 3-Jan-2000").1,
            vec![Before(d(1994, 2, 1)), On(d(1994, 2, 1)), Since(d(2024, 2, 29)), SentBefore(d(2000, 1, 1)), SentOn(d(2000, 1, 2)), SentSince(d(2000, 1, 3))]
        );
        assert_eq!(
            crit("a1 SEARCH LARGER 100 SMALLER 2000 UID 1:5 2,4:* MODSEQ 7 MODSEQ \"/flags/\\\\draft\" all 620162338")
                .1,
            vec![
                Larger(100),
                Smaller(2000),
                Uid(set(&[(Num(1), Num(5))])),
                SequenceSet(set(&[(Num(2), Num(2)), (Num(4), Star)])),
                ModSeq { entry: None, modseq: 7 },
                ModSeq { entry: Some(("/flags/\\draft".into(), "ALL".into())), modseq: 620162338 }
            ]
        );
        assert_eq!(
            crit("a1 SEARCH CHARSET utf-8 OR NOT SEEN (FROM \"ä\" TO b) NOT NOT 3"),
            (
                Some("UTF-8".into()),
                vec![
                    Or(Box::new(Not(Box::new(Seen))), Box::new(And(vec![From("ä".into()), To("b".into())]))),
                    Not(Box::new(Not(Box::new(SequenceSet(set(&[(Num(3), Num(3))]))))))
                ]
            )
        );
        let deep = format!("a1 SEARCH {}ALL{}", "(".repeat(MAX_SEARCH_DEPTH), ")".repeat(MAX_SEARCH_DEPTH));
        assert_eq!(bad(deep.as_bytes()).error, CommandError::TooDeep);
        let charset = bad(b"a1 SEARCH CHARSET iso-8859-1 TEXT {1}\r\n\xe9");
        assert_eq!(charset.error, CommandError::Charset("ISO-8859-1".into()));
        assert_eq!(charset.line(), b"a1 NO [BADCHARSET (UTF-8 US-ASCII)] The charset ISO-8859-1 is not supported\r\n");
        assert!(matches!(ok("a1 SEARCH CHARSET US-ASCII ALL"), CommandKind::Search { .. }));
        let deep_not = format!("a1 SEARCH {}ALL", "NOT ".repeat(MAX_SEARCH_DEPTH));
        assert_eq!(bad(deep_not.as_bytes()).error, CommandError::TooDeep);
        let ok_depth = format!("a1 SEARCH {}ALL{}", "(".repeat(MAX_SEARCH_DEPTH - 1), ")".repeat(MAX_SEARCH_DEPTH - 1));
        assert!(matches!(ok(&ok_depth), CommandKind::Search { .. }));
        for wrong in [
            &b"a1 SEARCH"[..],
            b"a1 SEARCH FOO",
            b"a1 SEARCH OR SEEN",
            b"a1 SEARCH (SEEN",
            b"a1 SEARCH ()",
            b"a1 SEARCH BEFORE 1-Feb-94",
            b"a1 SEARCH ON 30-Feb-2024",
            b"a1 SEARCH LARGER x",
            b"a1 SEARCH HEADER X",
            b"a1 SEARCH FROM {2}\r\n\xff\xfe",
            b"a1 SEARCH MODSEQ \"/flags/x\" BOTH 3",
            b"a1 SEARCH CHARSET",
        ] {
            assert_eq!(bad(wrong).tag.as_deref(), Some("a1"), "{:?}", String::from_utf8_lossy(wrong));
        }
    }

    #[test]
    fn imap_id_and_enable() {
        assert_eq!(ok("a1 ID NIL"), CommandKind::Id(None));
        assert_eq!(ok("a1 ID ()"), CommandKind::Id(Some(vec![])));
        assert_eq!(
            ok("a1 ID (\"name\" \"imaplib\" \"version\" NIL)"),
            CommandKind::Id(Some(vec![("name".into(), Some("imaplib".into())), ("version".into(), None)]))
        );
        let many = (0..=MAX_ID_PAIRS).map(|i| format!("\"k{i}\" NIL")).collect::<Vec<_>>().join(" ");
        assert_eq!(bad(format!("a1 ID ({many})").as_bytes()).error, CommandError::TooManyIdPairs);
        assert!(matches!(bad(b"a1 ID (name x)").error, CommandError::Expected { .. }));
        assert_eq!(
            ok("a1 ENABLE condstore utf8=accept"),
            CommandKind::Enable(vec!["CONDSTORE".into(), "UTF8=ACCEPT".into()])
        );
        assert!(matches!(bad(b"a1 ENABLE").error, CommandError::Expected { .. }));
    }

    #[test]
    fn imap_cursor_strings() {
        let mut c = cursor(b"NIL");
        assert_eq!(c.nstring("x"), Ok(None));
        let mut c = cursor(b"\"NIL\"");
        assert_eq!(c.nstring("x"), Ok(Some(b"NIL".to_vec())));
        let mut c = cursor(b"{3}\r\na\"b");
        assert_eq!(c.astring("x"), Ok(b"a\"b".to_vec()));
        let mut c = cursor(b"{99999999999999999999}\r\n");
        assert!(c.string("x").is_err());
    }
}
