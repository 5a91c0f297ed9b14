//! SEARCH (RFC 3501 §6.4.4, CHARSET UTF-8; RFC 7162 MODSEQ) evaluated over a
//! folder's listing: flags, sizes, dates, sequence and UID sets from the
//! listing; header keys from the cached parse; BODY and TEXT from the bytes
//! (decoded, case-insensitive substring).

use super::fetch::Source;
use crate::mailbox::{MailboxError, MessageInfo};
use crate::proto::imap::command::SearchKey;

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
pub fn search(
    key: &SearchKey,
    messages: &[MessageInfo],
    ctx: Context<'_>,
    src: &mut dyn Source,
) -> Result<Vec<usize>, MailboxError> {
    let _ = (key, messages, ctx, src);
    unimplemented!("imap::search is being written (helper imap-fetch)")
}
