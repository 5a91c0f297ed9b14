//! The news store: newsgroups, their articles and the Message-ID history
//! behind NNTP reading, posting and feeds (SPEC §9). It owns the files under
//! `data_dir/news` and the `news` tree of the shared sled database; it never
//! speaks a protocol and never decides who may post.
//!
//! # Layout and durability
//!
//! ```text
//! data_dir/news/groups/<name>.json     name, description, y|n|m, created, a high-water floor (written + fsynced)
//! data_dir/news/articles/<sha256(id)>  one article as stored (with our Xref), immutable; mtime = arrival
//! data_dir/news/history                `<forget-at> <message-id>` per removed article (appended + fsynced)
//! data_dir/news/quarantine/            article files reconciliation could not read
//! data_dir/news/log/<seq>.log          the write-ahead log: runs of articles (appended + fdatasynced)
//! ```
//!
//! The files are the truth, as in [`crate::mailbox`]: an article file names
//! its own Message-ID and, in the `Xref` line the store writes into it, every
//! group and number it has; its mtime is its arrival. One file per article
//! however many groups it is cross-posted to. [`NewsStore::post_many`]
//! (and [`NewsStore::post`], a run of one) makes a run of articles durable
//! with one sequential append to the write-ahead log and one fdatasync (a
//! group commit, however many articles pipelined TAKETHIS brings); only
//! then does it write their files (not fsynced: the log covers them) and
//! the index, and return Ok: only then may the caller answer
//! `240`/`235`/`239`. The log is retired by a checkpoint (`syncfs`, then
//! the segments unlinked) when a segment grows past 128 MiB, before any
//! article is removed, and at open, where every segment left is first
//! replayed into the article files: a crash after the fsync loses nothing.
//! A crash before it leaves a torn tail that replay ignores, and nothing of
//! that run was acknowledged (see `log.rs`). sled (the `news` tree) is the index: group records,
//! `group+number → id`, `id → overview and Xref` (computed once, at
//! arrival), arrival order for NEWNEWS and expiry, and the history. sled's
//! `flush()` does not fsync, so [`NewsStore::open`] reconciles: an index
//! entry whose file is gone is dropped; a file without an index entry is
//! re-indexed from its own headers (Message-ID, Xref, mtime) — or moved to
//! `quarantine/` when it has neither a valid Message-ID nor an Xref naming
//! numbers; a file whose groups were all deleted is removed.
//!
//! Article numbers never go back: a group's high-water mark after a restart
//! is at least the index's, at least the highest number any file claims,
//! and at least the floor in the group's file, which expiry, deletion and
//! group removal raise (fsynced) *before* they unlink files. A deleted group
//! keeps its file (marked deleted) so that adding it again continues its
//! numbers. A removed article's Message-ID goes to the history file
//! (fsynced, before the unlink) and is refused for `history_after`; expired
//! history lines are dropped by [`NewsStore::expire`].
//!
//! # Concurrency
//!
//! Writes (post, expire, group add/delete) are serialised by one mutex per
//! store, so numbers are handed out without races; reads take no lock
//! (records come from sled, files never change once written). Every method
//! blocks on the disk: call it from `spawn_blocking`.

pub mod article;
pub mod feed;
mod log;
mod reconcile;
mod store;
#[cfg(test)]
mod tests;

pub use article::Overview;
pub use store::NewsStore;

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// What the configuration gives the store (`[news]` and the server's name).
#[derive(Clone, Debug)]
pub struct NewsSettings {
    /// The name in `Xref` lines (and, for the service, in `Path`).
    pub host: String,
    /// Articles older than this are removed by [`NewsStore::expire`];
    /// `None` keeps them forever (`expire_after = "0s"`).
    pub expire_after: Option<Duration>,
    /// How long a removed article's Message-ID is still refused.
    pub history_after: Duration,
}

impl NewsSettings {
    /// 90 days of articles, and a week of history after them.
    pub fn new(host: &str) -> NewsSettings {
        NewsSettings {
            host: host.to_string(),
            expire_after: Some(Duration::from_secs(90 * 86_400)),
            history_after: Duration::from_secs(7 * 86_400),
        }
    }
}

/// A group's posting status, as `LIST ACTIVE` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Posting {
    /// `y`: posting allowed.
    #[serde(rename = "y")]
    Yes,
    /// `n`: no local posting (feeds may still bring articles).
    #[serde(rename = "n")]
    No,
    /// `m`: moderated.
    #[serde(rename = "m")]
    Moderated,
}

impl Posting {
    pub fn letter(self) -> char {
        match self {
            Posting::Yes => 'y',
            Posting::No => 'n',
            Posting::Moderated => 'm',
        }
    }
}

/// A group as GROUP and LIST show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupInfo {
    pub name: String,
    pub description: String,
    pub posting: Posting,
    /// Unix seconds.
    pub created: u64,
    /// Articles present.
    pub count: u64,
    /// The lowest number present (`high + 1` when the group is empty).
    pub low: u64,
    /// The highest number ever given (0 before the first article).
    pub high: u64,
}

/// A stored article's place in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Posted {
    pub message_id: String,
    /// Group and number, in the order of its `Xref`.
    pub numbers: Vec<(String, u64)>,
    /// Unix seconds.
    pub arrived: u64,
}

/// What start-up reconciliation found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    pub groups: usize,
    pub articles: usize,
    /// Index entries dropped because their file was gone (Message-IDs).
    pub dropped: Vec<String>,
    /// Files re-indexed because the index did not know them (Message-IDs).
    pub reindexed: Vec<String>,
    /// Files moved to `quarantine/` (their file names).
    pub quarantined: Vec<String>,
    /// Files removed because every group they were in is deleted.
    pub orphans_removed: usize,
}

/// What one [`NewsStore::expire`] run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expired {
    pub articles: usize,
    pub history_forgotten: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum NewsError {
    #[error("newsgroup name {0:?} is not valid: {1}")]
    InvalidGroupName(String, &'static str),
    #[error("newsgroup {0} already exists")]
    GroupExists(String),
    #[error("newsgroup {0} does not exist")]
    NoSuchGroup(String),
    #[error("the article's Newsgroups header {0:?} names no newsgroup that exists here")]
    NoGroups(String),
    #[error("the article has no Newsgroups header")]
    NoNewsgroups,
    #[error("the article has no Message-ID header")]
    NoMessageId,
    #[error("message-id {0:?} is not a valid message-id")]
    InvalidMessageId(String),
    #[error("article {0} is a duplicate: it is stored already or in the history")]
    Duplicate(String),
    #[error("news store file {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("news index: {0}")]
    Index(#[from] sled::Error),
    #[error("news index entry {0} is corrupt: {1}")]
    Corrupt(String, String),
}

impl NewsError {
    pub(crate) fn io(path: impl Into<PathBuf>, e: std::io::Error) -> NewsError {
        NewsError::Io(path.into(), e)
    }

    /// True for a refusal the same article will meet again (a duplicate, a
    /// bad header, no such group: `437`/`439`/`441`); false for store
    /// trouble worth a retry (`436`/`431`).
    pub fn is_permanent(&self) -> bool {
        !matches!(self, NewsError::Io(..) | NewsError::Index(_) | NewsError::Corrupt(..))
    }
}

/// The longest newsgroup name accepted, in octets (it is also a file name).
pub const MAX_GROUP_NAME: usize = 200;

/// A newsgroup-name per RFC 5536 §3.1.4: dot-separated components of
/// `ALPHA / DIGIT / "+" / "-" / "_"`.
pub fn check_group_name(name: &str) -> Result<(), NewsError> {
    let bad = |why| Err(NewsError::InvalidGroupName(name.chars().take(MAX_GROUP_NAME + 10).collect(), why));
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > MAX_GROUP_NAME {
        return bad("it is longer than 200 octets");
    }
    for component in name.split('.') {
        if component.is_empty() {
            return bad("it has an empty component (a leading, trailing or doubled dot)");
        }
        if !component.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-_".contains(&b)) {
            return bad("a component has a character other than a letter, digit, +, - or _");
        }
    }
    Ok(())
}
