//! FETCH (RFC 3501 §6.4.5, RFC 7162 MODSEQ): one message's untagged
//! `* n FETCH (...)` response from the listing entry, the cached parse and
//! the bytes, each loaded only when an item needs it: UID, FLAGS,
//! INTERNALDATE, RFC822.SIZE and MODSEQ come from the listing alone;
//! ENVELOPE, BODY and BODYSTRUCTURE from the cached parse alone; the
//! message and its top-level header or text (RFC822.*, `BODY[]`,
//! `BODY[HEADER]`, `BODY[TEXT]`) from the bytes alone; a numbered part from
//! the bytes and the parse's offsets. Flags are converted by [`super::flags`].

use super::flags;
use crate::mailbox::imap as conv;
use crate::mailbox::parse::{header_end, Parsed, Part};
use crate::mailbox::{FolderRef, MailboxError, MailboxStore, MessageInfo};
use crate::proto::imap::command::FetchAttr;
use crate::proto::imap::response::{self as resp, FetchItem};
use crate::proto::imap::types::{DateTime, Section, SectionText};
use std::borrow::Cow;

/// Where FETCH and SEARCH get what the listing does not hold.
pub trait Source {
    /// The message's bytes as stored.
    fn bytes(&mut self, uid: u32) -> Result<Vec<u8>, MailboxError>;
    /// The parse cached at delivery or APPEND.
    fn parsed(&mut self, uid: u32) -> Result<Parsed, MailboxError>;
}

/// A [`Source`] reading one folder of one user's store (blocking). The
/// folder is looked up at the first read, not once per message.
pub struct StoreSource<'a> {
    store: &'a MailboxStore,
    user: &'a str,
    folder: &'a str,
    at: Option<FolderRef>,
}

impl<'a> StoreSource<'a> {
    pub fn new(store: &'a MailboxStore, user: &'a str, folder: &'a str) -> StoreSource<'a> {
        StoreSource { store, user, folder, at: None }
    }

    fn at(&mut self) -> Result<FolderRef, MailboxError> {
        if let Some(at) = &self.at {
            return Ok(at.clone());
        }
        let at = self.store.folder_ref(self.user, self.folder)?;
        self.at = Some(at.clone());
        Ok(at)
    }
}

impl Source for StoreSource<'_> {
    fn bytes(&mut self, uid: u32) -> Result<Vec<u8>, MailboxError> {
        let at = self.at()?;
        self.store.read_in(&at, uid)
    }
    fn parsed(&mut self, uid: u32) -> Result<Parsed, MailboxError> {
        let at = self.at()?;
        self.store.parsed_in(&at, uid)
    }
}

/// What the session adds to the items asked for.
#[derive(Clone, Copy, Debug, Default)]
pub struct Extra {
    /// A UID command: UID is always in the response (RFC 3501 §6.4.8).
    pub uid: bool,
    /// CONDSTORE is on for the session (or CHANGEDSINCE was given): MODSEQ
    /// is always in the response (RFC 7162 §3.1.4.1).
    pub modseq: bool,
    /// `\Recent` is shown for this message (a session matter).
    pub recent: bool,
}

/// Whether fetching `attrs` sets `\Seen` (a non-PEEK `BODY[...]`, RFC822,
/// RFC822.TEXT); the session stores the flag first and passes the new
/// flags in `info`, and adds FLAGS to the response when not asked.
pub fn sets_seen(attrs: &[FetchAttr]) -> bool {
    attrs
        .iter()
        .any(|a| matches!(a, FetchAttr::Rfc822 | FetchAttr::Rfc822Text | FetchAttr::BodySection { peek: false, .. }))
}

/// What of the message the items need beyond the listing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    pub bytes: bool,
    pub parse: bool,
}

/// Whether a section is cut from the top-level header alone (no parse
/// needed: the header ends at the first empty line).
fn top_level(section: &Section) -> bool {
    section.part.is_empty() && !matches!(section.text, Some(SectionText::Mime))
}

/// What fetching `attrs` reads: `(UID FLAGS)` reads nothing.
pub fn needs(attrs: &[FetchAttr]) -> Needs {
    let mut n = Needs::default();
    for a in attrs {
        match a {
            FetchAttr::Envelope | FetchAttr::Body | FetchAttr::BodyStructure => n.parse = true,
            FetchAttr::Rfc822 | FetchAttr::Rfc822Header | FetchAttr::Rfc822Text => n.bytes = true,
            FetchAttr::BodySection { section, .. } => {
                n.bytes = true;
                n.parse |= !top_level(section);
            }
            FetchAttr::Flags | FetchAttr::InternalDate | FetchAttr::Rfc822Size | FetchAttr::Uid | FetchAttr::ModSeq => {
            }
        }
    }
    n
}

/// The bytes of each RFC822.* and section item in `attrs`, in order.
fn message_data<'b>(attrs: &[FetchAttr], bytes: &'b [u8], parsed: Option<&Parsed>) -> Vec<Cow<'b, [u8]>> {
    // the top part a top-level section is cut from when no parse was read:
    // the header up to the first empty line, the text after it
    let top = match parsed {
        Some(p) => Cow::Borrowed(&p.body),
        None => Cow::Owned(Part { body: header_end(bytes), end: bytes.len() as u32, ..Part::default() }),
    };
    let mut data = Vec::new();
    for a in attrs {
        let d = match a {
            FetchAttr::Rfc822 => Cow::Borrowed(bytes),
            FetchAttr::Rfc822Header => Cow::Borrowed(bytes.get(..top.body as usize).unwrap_or(bytes)),
            FetchAttr::Rfc822Text => Cow::Borrowed(bytes.get(top.body as usize..).unwrap_or_default()),
            FetchAttr::BodySection { section, partial, .. } => {
                // a section that does not exist is the empty string (RFC 3501
                // as its author reads it), never an error
                let whole = conv::section(bytes, &top, section).unwrap_or_default();
                match (partial, whole) {
                    (Some((origin, count)), Cow::Borrowed(b)) => Cow::Borrowed(conv::partial(b, *origin, Some(*count))),
                    (Some((origin, count)), Cow::Owned(b)) => {
                        Cow::Owned(conv::partial(&b, *origin, Some(*count)).to_vec())
                    }
                    (None, w) => w,
                }
            }
            _ => continue,
        };
        data.push(d);
    }
    data
}

/// Append `* seq FETCH (...)` for one message to `out`. The items come in
/// the order asked, UID first when a UID command did not ask for it, MODSEQ
/// last when CONDSTORE wants it and it was not asked. On an error (the
/// message's file or parse is gone: [`MailboxError::NoSuchMessage`] when
/// another session expunged it) nothing is appended.
pub fn write_fetch(
    out: &mut Vec<u8>,
    seq: u32,
    info: &MessageInfo,
    attrs: &[FetchAttr],
    extra: Extra,
    src: &mut dyn Source,
) -> Result<(), MailboxError> {
    let need = needs(attrs);
    let bytes = if need.bytes { Some(src.bytes(info.uid)?) } else { None };
    let parsed = if need.parse { Some(src.parsed(info.uid)?) } else { None };
    let bytes = bytes.as_deref().unwrap_or_default();
    let flag_list = attrs.contains(&FetchAttr::Flags).then(|| flags::to_protocol(&info.flags, extra.recent));
    let envelope =
        parsed.as_ref().filter(|_| attrs.contains(&FetchAttr::Envelope)).map(|p| conv::envelope(&p.envelope));
    let structure = parsed
        .as_ref()
        .filter(|_| attrs.iter().any(|a| matches!(a, FetchAttr::Body | FetchAttr::BodyStructure)))
        .map(|p| conv::body_structure(&p.body));
    // the bytes of each section and RFC822.* item, in the order asked
    let data = if need.bytes { message_data(attrs, bytes, parsed.as_ref()) } else { Vec::new() };

    let mut items: Vec<FetchItem<'_>> = Vec::with_capacity(attrs.len() + 2);
    if extra.uid && !attrs.contains(&FetchAttr::Uid) {
        items.push(FetchItem::Uid(info.uid));
    }
    let mut data_iter = data.iter();
    for a in attrs {
        let item = match a {
            FetchAttr::Flags => FetchItem::Flags(flag_list.as_deref().unwrap_or_default()),
            FetchAttr::InternalDate => {
                let ts = i64::try_from(info.internal_date).unwrap_or(i64::MAX / 2);
                FetchItem::InternalDate(DateTime::from_unix(ts, 0))
            }
            FetchAttr::Rfc822Size => FetchItem::Rfc822Size(u32::try_from(info.size).unwrap_or(u32::MAX)),
            FetchAttr::Uid => FetchItem::Uid(info.uid),
            FetchAttr::ModSeq => FetchItem::ModSeq(info.modseq),
            FetchAttr::Envelope => match &envelope {
                Some(e) => FetchItem::Envelope(e),
                None => continue,
            },
            FetchAttr::Body => match &structure {
                Some(b) => FetchItem::Body(b),
                None => continue,
            },
            FetchAttr::BodyStructure => match &structure {
                Some(b) => FetchItem::BodyStructure(b),
                None => continue,
            },
            FetchAttr::Rfc822 => FetchItem::Rfc822(data_iter.next().map(|d| &**d)),
            FetchAttr::Rfc822Header => FetchItem::Rfc822Header(data_iter.next().map(|d| &**d)),
            FetchAttr::Rfc822Text => FetchItem::Rfc822Text(data_iter.next().map(|d| &**d)),
            FetchAttr::BodySection { section, partial, .. } => FetchItem::BodySection {
                section,
                origin: partial.map(|p| p.0),
                data: Some(data_iter.next().map(|d| &**d).unwrap_or_default()),
            },
        };
        items.push(item);
    }
    if extra.modseq && !attrs.contains(&FetchAttr::ModSeq) {
        items.push(FetchItem::ModSeq(info.modseq));
    }
    resp::fetch(out, seq, &items);
    Ok(())
}

#[cfg(test)]
#[path = "fetch_tests.rs"]
pub(crate) mod tests;
