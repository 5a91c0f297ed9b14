//! The mailbox store: every local user's folders (INBOX plus the SPECIAL-USE
//! folders Sent, Drafts, Trash and Junk, RFC 6154), each with a UIDVALIDITY
//! and UIDNEXT, and per message a UID, flags, the internal date, the size
//! and the bytes. POP3 reads and deletes from INBOX; IMAP4 uses all of it.
//! This module owns the files under `data_dir/mail` and the `mailbox` tree
//! of the shared sled database; it never speaks a protocol, never decides
//! who may log in, and never holds a lock across a network wait.
//!
//! # Layout and durability
//!
//! ```text
//! data_dir/mail/<user>/f<id>/folder.json       name, UIDVALIDITY, UIDNEXT and MODSEQ floors (written + fsynced)
//! data_dir/mail/<user>/f<id>/<uid>             one message, immutable once written; mtime = internal date
//! ```
//!
//! `<user>` is the account key (`local@domain`, lower case) with anything
//! outside `[a-z0-9.@_+-]` %-escaped. One file per message (the maildir
//! idea) rather than an append-only segment: POP3 and IMAP delete
//! constantly, and a deleted file gives its space back at once, where a
//! segment would need compaction — a second writer racing readers. Each
//! message is written to `.tmp-*`, fsynced, hard-linked to its final name
//! (which cannot overwrite an existing UID) and the folder directory is
//! fsynced: only then does [`MailboxStore::deliver`] return. The file name
//! is the UID and its mtime the internal date, so the file alone is enough
//! to rebuild its index entry.
//!
//! sled (the `mailbox` tree) is the index: folder records, message records
//! (flags, date, size, MODSEQ) and each message's cached parse. sled 0.34's `flush()` does not fsync
//! (DEPENDENCIES.md), so it may lag the files after a crash, and
//! [`MailboxStore::open`] reconciles them like `queue::store`: a file without
//! a record is re-indexed; a record without a file is dropped; UIDNEXT
//! becomes at least one past the highest UID on disk and at least the floor
//! in `folder.json`, which an expunge raises (fsynced) *before* it unlinks
//! files — so a UID is never handed out twice under one UIDVALIDITY, even
//! when sled forgot the latest deliveries and the files are gone. Adding
//! writes the file before the record; removing unlinks the file before the
//! record: whichever step a crash interrupts, reconciliation finishes it in
//! the right direction. Flags live only in sled: a flag change in the last
//! moment before a crash may be lost; a delivered message never is.
//!
//! # Failures
//!
//! A write that fails (EIO, ENOSPC, EMFILE...) is a temporary error
//! ([`MailboxError::is_permanent`] is false; local delivery defers and the
//! queue retries) and leaves the index agreeing with the disk: an add takes
//! back every name it made, including a message file linked to its UID
//! whose directory fsync failed, so neither the retry nor a restart makes
//! a second copy; a removal drops the records of the files already gone.
//! A new user's default folders are made with INBOX last, so a failure
//! part-way is finished by the next attempt. [`fault`] is the test seam
//! that injects such errors at every step (`POSTERN_MAILBOX_FAULTS`).
//!
//! # Concurrency
//!
//! Readers (listings, message bytes) take no lock: records are read from
//! sled and message files never change once written (the exceptions: the
//! first access for a user never seen, which creates the default folders,
//! and the first read of a folder's listing, which `cache` then keeps in
//! memory, both under that user's writer lock). A folder's listing
//! ([`MailboxStore::listing`], a [`Snapshot`] every session shares) is
//! read from the index once and then edited by every write, so SELECT of
//! 100,000 messages is a lookup, not 100,000 record decodes; the index
//! stays the truth and a restart reads it again. Writes for one user
//! are serialised by a per-user mutex (one writer per user; different users
//! proceed in parallel). Every method blocks on the disk: call it from
//! `tokio::task::spawn_blocking`, never on the async runtime's threads.
//!
//! Sessions learn of changes through [`MailboxStore::subscribe`]: a tokio
//! broadcast per user carrying a [`Change`] for every append, expunge, flag
//! change and folder change (IMAP IDLE and unsolicited responses). A
//! receiver that lags gets `RecvError::Lagged` and must re-read the folder.
//! POP3's exclusive maildrop (RFC 1939 §8) is [`MailboxStore::lock_maildrop`].
//!
//! # What IMAP4 gets (issue 11)
//!
//! - **Folders** are a hierarchy with [`DELIMITER`] `/`:
//!   a missing parent of a folder is a name only, which
//!   [`MailboxStore::list`] shows as `\Noselect \HasChildren` (with each
//!   folder's `\HasChildren`/`\HasNoChildren` and SPECIAL-USE attributes);
//!   [`MailboxStore::rename_folder`] takes the children along, keeping every
//!   UIDVALIDITY; [`MailboxStore::rename_inbox`] is RFC 3501's RENAME INBOX
//!   (messages move to the new folder, INBOX stays, empty, UIDs never
//!   reused); [`MailboxStore::delete_folder`] leaves the children, so the
//!   name turns `\Noselect` (RFC 3501 §6.3.4). Subscriptions
//!   ([`MailboxStore::set_subscribed`]) live in the index and follow a
//!   rename.
//! - **APPEND, COPY, MOVE, STORE**: [`MailboxStore::append`] returns
//!   (UIDVALIDITY, UID) once durable; [`MailboxStore::copy`] and
//!   [`MailboxStore::move_messages`] return the COPYUID pairs (MOVE is one
//!   copy and one expunge under the writer lock; a crash between them
//!   leaves both copies, never none); [`MailboxStore::store_flags_if`]
//!   returns flags and MODSEQs. Each notifies (see Concurrency).
//! - **CONDSTORE** (RFC 7162): every message has a MODSEQ, set when it
//!   arrives and raised by each flag change; each folder a HIGHESTMODSEQ
//!   (also raised by an expunge) that only grows
//!   ([`MailboxStore::highestmodseq`], [`Listing`]). [`MailboxStore::changed_since`]
//!   lists what changed after a MODSEQ (CHANGEDSINCE);
//!   [`MailboxStore::store_flags_if`] with UNCHANGEDSINCE changes only the
//!   messages not changed since and reports the others. Like flags, MODSEQs
//!   live in sled, but `folder.json` keeps a fsynced floor above every
//!   MODSEQ handed out (moved 1024 ahead when reached) and a restart
//!   resumes above it, so a MODSEQ is never handed out twice even when
//!   sled lost its last writes. Records written before CONDSTORE read
//!   (serde defaults) and get a MODSEQ at the next start.
//! - **The cached parse** ([`parse::Parsed`]): made once with mail-parser at
//!   delivery, APPEND or re-indexing and kept in the index apart from the
//!   message record (listings never decode it), copied with a message:
//!   ENVELOPE fields raw as IMAP sends them, the body structure as a tree
//!   with each part's byte offsets, the decoded fields SEARCH uses and the
//!   header's end. Never an error: what mail-parser cannot parse is one
//!   `text/plain` part; nesting is bounded ([`parse::MAX_DEPTH`]).
//!   [`MailboxStore::parsed`] reads it (parsing, and keeping, it for a
//!   message indexed before it existed). [`imap`] converts it to the
//!   response writer's ENVELOPE and BODYSTRUCTURE and cuts
//!   `BODY[section]<partial>` out of the bytes of [`MailboxStore::read`].
//!
//! # Local delivery (the queue scheduler's API)
//!
//! ```ignore
//! // blocking; from spawn_blocking. `user` is the Accounts key (aliases are
//! // already expanded). Returns only once the message is durable.
//! match store.deliver("alice@example.test", &body, arrived_unix_secs) {
//!     Ok(uid) => { /* delivered: INBOX UID `uid` */ }
//!     Err(e) if e.is_permanent() => { /* no such user: fail the recipient, NDR (e.smtp_status() is 550 5.1.1) */ }
//!     Err(e) => { /* store I/O: retry later (e.smtp_status() is 451 4.3.0) */ }
//! }
//! ```

mod cache;
mod disk;
pub mod fault;
pub mod imap;
mod index;
mod notify;
pub mod parse;
mod reconcile;
mod store;

pub use cache::Snapshot;
pub use index::{Flag, Flags, SpecialUse};
pub use notify::{Change, ChangeKind, MaildropLock};
pub use parse::Parsed;
pub use store::{FlagsStored, FolderRef, ListEntry, Listing, MailboxStore};

use std::path::PathBuf;

/// Run a blocking store call off the async threads (every store method
/// blocks on the disk); a call that panicked is an I/O error, not a crash.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, MailboxError> + Send + 'static,
) -> Result<T, MailboxError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(MailboxError::Io { path: "mailbox".into(), source: std::io::Error::other(e.to_string()) })
    })
}

/// The folder every user has and every delivery goes to.
pub const INBOX: &str = "INBOX";

/// The hierarchy delimiter of folder names (IMAP LIST's delimiter).
pub const DELIMITER: char = '/';

/// Folders created for every user, with their RFC 6154 attribute.
pub const DEFAULT_FOLDERS: [(&str, Option<SpecialUse>); 5] = [
    (INBOX, None),
    ("Sent", Some(SpecialUse::Sent)),
    ("Drafts", Some(SpecialUse::Drafts)),
    ("Trash", Some(SpecialUse::Trash)),
    ("Junk", Some(SpecialUse::Junk)),
];

#[derive(Debug, thiserror::Error)]
pub enum MailboxError {
    #[error("no local user {0}")]
    NoSuchUser(String),
    #[error("{0:?} is not a valid mailbox user name")]
    InvalidUser(String),
    #[error("user {user} has no folder {folder:?}")]
    NoSuchFolder { user: String, folder: String },
    #[error("user {user} already has a folder {folder:?}")]
    FolderExists { user: String, folder: String },
    #[error("folder name {0:?}: {1}")]
    InvalidFolderName(String, &'static str),
    #[error("folder {folder:?} has no message with UID {uid}")]
    NoSuchMessage { folder: String, uid: u32 },
    #[error("the maildrop of {0} is in use by another session")]
    InUse(String),
    #[error("folder {0:?} has used up its UIDs")]
    UidsExhausted(String),
    #[error("mailbox file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("mailbox index: {0}")]
    Index(#[from] sled::Error),
    #[error("mailbox index entry {0}: {1}")]
    Corrupt(String, String),
    #[error("mailbox user lookup: {0}")]
    Accounts(#[from] crate::auth::AccountError),
    #[error("{0}")]
    Faults(String),
}

impl MailboxError {
    /// True when retrying cannot help (the user does not exist); false for
    /// store trouble, which a later attempt may get past.
    pub fn is_permanent(&self) -> bool {
        matches!(self, MailboxError::NoSuchUser(_) | MailboxError::InvalidUser(_))
    }

    /// The SMTP code and enhanced status (RFC 3463) a delivery report
    /// should carry for this failure.
    pub fn smtp_status(&self) -> (u16, &'static str) {
        if self.is_permanent() {
            (550, "5.1.1")
        } else {
            (451, "4.3.0")
        }
    }

    fn io(path: impl Into<PathBuf>, source: std::io::Error) -> MailboxError {
        MailboxError::Io { path: path.into(), source }
    }
}

/// One folder as a client sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderInfo {
    pub name: String,
    pub special_use: Option<SpecialUse>,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub messages: u32,
    pub unseen: u32,
    pub subscribed: bool,
    /// Some folder's name starts with this one's and [`DELIMITER`].
    pub has_children: bool,
}

impl FolderInfo {
    /// The LIST attributes (RFC 3348 CHILDREN, RFC 6154 SPECIAL-USE).
    pub fn attributes(&self) -> Vec<&'static str> {
        let mut a = vec![if self.has_children { "\\HasChildren" } else { "\\HasNoChildren" }];
        a.extend(self.special_use.map(SpecialUse::attribute));
        a
    }
}

/// One message as a listing shows it (ascending UID).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageInfo {
    pub uid: u32,
    pub size: u64,
    /// Unix seconds (IMAP INTERNALDATE).
    pub internal_date: u64,
    pub flags: Flags,
    /// RFC 7162 MODSEQ.
    pub modseq: u64,
}

/// What a successful append stored (RFC 4315 APPENDUID needs both).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    pub uidvalidity: u32,
    pub uid: u32,
}

/// How [`MailboxStore::store_flags`] combines the given flags (IMAP STORE).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlagChange {
    Add,
    Remove,
    Replace,
}

/// What start-up reconciliation found.
#[derive(Debug, Default)]
pub struct Recovery {
    pub users: usize,
    pub folders: usize,
    pub messages: usize,
    /// Messages found on disk but not in the index, re-indexed: (user, folder, uid).
    pub reindexed: Vec<(String, String, u32)>,
    /// Index entries whose file was gone, dropped: (user, folder, uid).
    pub dropped: Vec<(String, String, u32)>,
    /// Folders whose UIDNEXT had to be raised to stay ahead of the disk.
    pub uidnext_raised: usize,
}

/// IMAP treats `INBOX` case-insensitively (RFC 3501 §5.1); every other name
/// is taken as given.
pub fn canonical_folder(name: &str) -> &str {
    if name.eq_ignore_ascii_case(INBOX) {
        INBOX
    } else {
        name
    }
}

#[cfg(test)]
mod imap_tests;
#[cfg(test)]
mod tests;
