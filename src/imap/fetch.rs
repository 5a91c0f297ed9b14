//! FETCH (RFC 3501 §6.4.5, RFC 7162 MODSEQ): one message's untagged
//! `* n FETCH (...)` response from the listing entry, the cached parse and
//! the bytes, loaded only when an item needs them; and the one place where
//! the store's flags become the protocol's and back.

use crate::mailbox::parse::Parsed;
use crate::mailbox::{MailboxError, MailboxStore, MessageInfo};
use crate::proto::imap::command::FetchAttr;

/// Where FETCH and SEARCH get what the listing does not hold.
pub trait Source {
    /// The message's bytes as stored.
    fn bytes(&mut self, uid: u32) -> Result<Vec<u8>, MailboxError>;
    /// The parse cached at delivery or APPEND.
    fn parsed(&mut self, uid: u32) -> Result<Parsed, MailboxError>;
}

/// A [`Source`] reading one folder of one user's store (blocking).
pub struct StoreSource<'a> {
    pub store: &'a MailboxStore,
    pub user: &'a str,
    pub folder: &'a str,
}

impl Source for StoreSource<'_> {
    fn bytes(&mut self, uid: u32) -> Result<Vec<u8>, MailboxError> {
        self.store.read(self.user, self.folder, uid)
    }
    fn parsed(&mut self, uid: u32) -> Result<Parsed, MailboxError> {
        self.store.parsed(self.user, self.folder, uid)
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
    let _ = attrs;
    todo_interface()
}

/// Append `* seq FETCH (...)` for one message to `out`.
pub fn write_fetch(
    out: &mut Vec<u8>,
    seq: u32,
    info: &MessageInfo,
    attrs: &[FetchAttr],
    extra: Extra,
    src: &mut dyn Source,
) -> Result<(), MailboxError> {
    let _ = (out, seq, info, attrs, extra, src);
    todo_interface()
}

fn todo_interface() -> ! {
    unimplemented!("imap::fetch is being written (helper imap-fetch)")
}
